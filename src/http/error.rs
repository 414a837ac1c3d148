//! One error type for every route, mapped to FastAPI-compatible bodies:
//! `{"detail": "...", "code": "...", "request_id": "..."}`, and for validation
//! failures 422 `{"detail": [{"loc": [...], "msg": "...", "type": "..."}], ...}`.
//!
//! Client errors say precisely what was wrong; server errors say nothing about
//! why — the cause chain goes to the log, tagged with the request id the
//! client sees, never into the body.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::request_context;

/// The body of every non-validation error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Human-readable explanation, safe to show to an end user.
    #[schema(example = "Not found")]
    pub detail: String,
    /// Stable machine-readable code; clients branch on this, never on `detail`.
    #[schema(example = "not_found")]
    pub code: String,
    /// The `X-Request-ID` of the request, for support and log correlation.
    pub request_id: String,
}

/// One failed check of a request's input, as FastAPI (Pydantic v2) reports
/// it; [`crate::http::pydantic`] fills it in and docs/api.md lists the types.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ValidationIssue {
    /// Where the problem is: `["body", "email"]`, `["query", "limit"]`, `["path", "id"]`.
    pub loc: Vec<LocPart>,
    pub msg: String,
    /// Pydantic v2's error type, e.g. `missing`, `extra_forbidden`,
    /// `string_too_short`, `greater_than_equal`, `enum`, `value_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value that failed; absent for secrets (passwords, tokens,
    /// credentials) and where the input is not at hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub input: Option<serde_json::Value>,
    /// The check's parameters, as Pydantic gives them: `min_length`,
    /// `max_length`, `ge`, `le`, `pattern`, `expected`, `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ctx: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A `loc` element: a field name or a list index.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocPart {
    Key(String),
    Index(usize),
}

impl From<&str> for LocPart {
    fn from(key: &str) -> Self {
        LocPart::Key(key.to_owned())
    }
}

impl ValidationIssue {
    pub fn new(loc: Vec<LocPart>, msg: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            loc,
            msg: msg.into(),
            kind: kind.into(),
            input: None,
            ctx: None,
        }
    }

    /// Adds the failing value, unless `loc` names a secret.
    pub fn with_input(mut self, input: Option<&serde_json::Value>) -> Self {
        if !crate::http::pydantic::is_secret(&self.loc) {
            self.input = input.cloned();
        }
        self
    }

    pub fn with_ctx(mut self, ctx: Option<serde_json::Map<String, serde_json::Value>>) -> Self {
        self.ctx = ctx.filter(|ctx| !ctx.is_empty());
        self
    }
}

/// The body of a 422.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationErrorBody {
    pub detail: Vec<ValidationIssue>,
    /// Always `validation_error`.
    pub code: String,
    pub request_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request validation failed")]
    Validation(Vec<ValidationIssue>),
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// Missing or unusable credentials. `challenge` is the `WWW-Authenticate` value.
    #[error("{detail}")]
    Unauthorized {
        code: &'static str,
        detail: String,
        challenge: &'static str,
    },
    /// Authenticated, but not allowed.
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    /// Not found, or belonging to another tenant: the two are indistinguishable.
    #[error("{detail}")]
    NotFound { detail: String },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// Well-formed, but refused as a whole (not one field): a 422 with an
    /// error body and its own code, e.g. `idempotency_key_reused`.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    #[error("Method not allowed")]
    MethodNotAllowed { allow: Vec<String> },
    #[error("Request body too large: the limit is {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("Unsupported media type: {detail}")]
    UnsupportedMediaType { detail: String },
    #[error("{detail}")]
    ServiceUnavailable {
        code: &'static str,
        detail: String,
        retry_after_secs: Option<u64>,
    },
    /// A rate limit refused the request.
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
    },
    /// Anything unexpected. The cause is logged; the client sees a generic message.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound {
            detail: format!("{what} not found"),
        }
    }

    /// A 422 for a body field the request needs in this case.
    pub fn missing_field(field: &str, msg: impl Into<String>) -> Self {
        ApiError::Validation(vec![ValidationIssue::new(
            vec!["body".into(), field.into()],
            msg,
            "missing",
        )])
    }

    /// A 422 about one field of the body that a custom check refused
    /// (Pydantic's `value_error`, with the message as `ctx.error`).
    pub fn invalid_value(field: &str, input: serde_json::Value, error: &str) -> Self {
        ApiError::Validation(vec![
            ValidationIssue::new(
                vec!["body".into(), field.into()],
                format!("Value error, {error}"),
                "value_error",
            )
            .with_ctx(Some(serde_json::Map::from_iter([(
                "error".to_owned(),
                error.into(),
            )])))
            .with_input(Some(&input)),
        ])
    }

    /// Stable code sent to clients.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_error",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized { code, .. } => code,
            ApiError::Forbidden { code, .. } => code,
            ApiError::NotFound { .. } => "not_found",
            ApiError::Conflict { code, .. } => code,
            ApiError::Unprocessable { code, .. } => code,
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::ServiceUnavailable { code, .. } => code,
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ServiceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let request_id = request_context::current_request_id().unwrap_or_default();
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Validation(issues) => {
                // `loc` may echo a client-chosen key: keep NUL (which no JSON
                // consumer expects in text) out of the response.
                let detail = issues
                    .iter()
                    .cloned()
                    .map(|mut issue| {
                        for part in &mut issue.loc {
                            if let LocPart::Key(key) = part
                                && key.contains('\0')
                            {
                                *key = key.replace('\0', "\\u0000");
                            }
                        }
                        issue
                    })
                    .collect();
                return response.json(ValidationErrorBody {
                    detail,
                    code: self.code().to_owned(),
                    request_id,
                });
            }
            ApiError::Unauthorized { challenge, .. } => {
                response.insert_header((header::WWW_AUTHENTICATE, *challenge));
            }
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                    response.insert_header((header::ALLOW, value));
                }
            }
            ApiError::ServiceUnavailable {
                retry_after_secs: Some(secs),
                ..
            } => {
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::Internal(cause) => {
                // `{:#}` prints the whole cause chain on one line.
                tracing::error!(
                    error = format!("{cause:#}"),
                    "request failed with an internal error"
                );
                // Reported within the request's Sentry hub, so it carries the
                // request id, tenant and user. Panics were reported by the hook.
                if !cause.is::<crate::http::panic_guard::HandlerPanic>() {
                    sentry::integrations::anyhow::capture_anyhow(cause);
                }
            }
            _ => {}
        }
        let detail = match self {
            ApiError::Internal(_) => "Internal server error".to_owned(),
            other => other.to_string(),
        };
        response.json(ErrorBody {
            detail,
            code: self.code().to_owned(),
            request_id,
        })
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // The pool gave up waiting, the breaker is open, or the connection
            // broke: the database is saturated or gone. Telling the client to
            // retry is more honest than a 500.
            err if crate::db::is_connection_failure(&err) => ApiError::ServiceUnavailable {
                code: "database_unavailable",
                detail: "The database is temporarily unavailable; retry shortly".into(),
                retry_after_secs: Some(1),
            },
            other => ApiError::internal(other),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        match err.downcast::<sqlx::Error>() {
            Ok(sqlx_error) => sqlx_error.into(),
            Err(other) => ApiError::Internal(other),
        }
    }
}
