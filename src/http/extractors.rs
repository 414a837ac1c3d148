//! Input extractors that report bad input in the product's shapes.
//!
//! - [`ValidatedJson`]: the JSON body extractor for every route. It checks the
//!   content type (415), the size (413), parses with the exact field path of
//!   any error (`serde_path_to_error`, 422 with `loc`), and then runs the
//!   type's `garde` rules (422 listing every failing field).
//! - [`configure`]: error handlers for actix's own `Query`, `Path`, `Form`
//!   and `Json` extractors, so no extractor can answer in actix's plain-text
//!   format.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError, UrlencodedError};
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::strict_json::StrictValue;
use crate::http::error::{ApiError, LocPart, ValidationIssue};

/// Registers the error handlers of actix's built-in extractors.
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(BodyLimit(max_body_bytes))
        .app_data(
            web::JsonConfig::default()
                .limit(max_body_bytes)
                .error_handler(|err, _req| json_payload_error(err).into()),
        )
        .app_data(
            web::FormConfig::default()
                .limit(max_body_bytes)
                .error_handler(|err, _req| form_error(err).into()),
        )
        .app_data(web::QueryConfig::default().error_handler(|err, _req| query_error(err).into()))
        .app_data(web::PathConfig::default().error_handler(|err, _req| path_error(err).into()));
}

/// Query parameters, parsed with the path of any bad parameter (422 with
/// `loc: ["query", name]`), then validated with the type's `garde` rules.
/// Request types use `#[serde(deny_unknown_fields)]`, so a misspelt filter is
/// an error rather than silently ignored.
#[derive(Debug)]
pub struct ValidatedQuery<T>(pub T);

impl<T> FromRequest for ValidatedQuery<T>
where
    T: DeserializeOwned + garde::Validate + 'static,
    T::Context: Default,
{
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(ValidatedQuery))
    }
}

pub fn parse_query<T>(query: &str) -> Result<T, ApiError>
where
    T: DeserializeOwned + garde::Validate,
    T::Context: Default,
{
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    let value: T = serde_path_to_error::deserialize(de).map_err(|err| {
        let mut loc: Vec<LocPart> = vec!["query".into()];
        loc.extend(path_to_loc(err.path()));
        ApiError::Validation(vec![data_issue(loc, &err.inner().to_string())])
    })?;
    value.validate().map_err(|report| {
        let issues = garde_issues(&report)
            .into_iter()
            .map(|mut issue| {
                issue.loc[0] = "query".into();
                issue
            })
            .collect();
        ApiError::Validation(issues)
    })?;
    Ok(value)
}

/// The largest body [`ValidatedJson`] reads.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body, parsed and validated. Unknown fields are refused when the type
/// says `#[serde(deny_unknown_fields)]`, which every request type does.
#[derive(Debug)]
pub struct ValidatedJson<T>(pub T);

impl<T> FromRequest for ValidatedJson<T>
where
    T: DeserializeOwned + garde::Validate + 'static,
    T::Context: Default,
{
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(1_048_576);
        let content_type_ok = is_json_content_type(req);
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType {
                    detail: "expected Content-Type: application/json".into(),
                });
            }
            if declared_length.is_some_and(|len| len > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            let body = read_body(payload, limit).await?;
            let value = parse_json::<T>(&body)?;
            value
                .validate()
                .map_err(|report| ApiError::Validation(garde_issues(&report)))?;
            Ok(ValidatedJson(value))
        })
    }
}

/// Reads a body of at most `limit` bytes (413 beyond).
pub async fn read_body(mut payload: Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| ApiError::BadRequest {
            code: "body_read_error",
            detail: format!("could not read the request body: {err}"),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn is_json_content_type(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION
                && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        })
}

/// Parses a JSON body, reporting the path of the first bad field.
///
/// The body is read as a JSON value first, so strings holding NUL characters
/// (which PostgreSQL text cannot store) are refused with their location
/// before any handler sees them.
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|err| {
        ApiError::Validation(vec![ValidationIssue::new(
            vec!["body".into()],
            format!("JSON decode error: {err}"),
            "json_invalid",
        )])
    })?;
    let mut path = vec![LocPart::from("body")];
    if let Some(loc) = find_nul(&value, &mut path) {
        return Err(ApiError::Validation(vec![ValidationIssue::new(
            loc,
            "Text must not contain NUL characters",
            "string_nul",
        )]));
    }
    deserialize_at(value, &["body"])
}

/// Deserializes a JSON value found at `loc` (e.g. `["body", "credentials"]`),
/// reporting problems with their full location. For bodies whose parts are
/// typed by another field (a discriminator such as `kind`).
pub fn deserialize_at<T: DeserializeOwned>(
    value: serde_json::Value,
    loc: &[&str],
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(StrictValue(value)).map_err(|err| {
        let mut issue = serde_issue("body", path_to_loc(err.path()), err.inner());
        if issue.kind != "json_invalid" {
            let mut full: Vec<LocPart> = loc.iter().map(|k| LocPart::from(*k)).collect();
            full.extend(issue.loc.into_iter().skip(1));
            issue.loc = full;
        }
        ApiError::Validation(vec![issue])
    })
}

/// Runs a type's garde rules, reporting failures under `loc`.
pub fn validate_at<T>(value: &T, loc: &[&str]) -> Result<(), ApiError>
where
    T: garde::Validate,
    T::Context: Default,
{
    value.validate().map_err(|report| {
        let prefix: Vec<LocPart> = loc.iter().map(|k| LocPart::from(*k)).collect();
        ApiError::Validation(
            garde_issues(&report)
                .into_iter()
                .map(|mut issue| {
                    let mut full = prefix.clone();
                    full.extend(issue.loc.into_iter().skip(1));
                    issue.loc = full;
                    issue
                })
                .collect(),
        )
    })
}

/// The location of the first string (or key) containing U+0000, if any.
fn find_nul(value: &serde_json::Value, path: &mut Vec<LocPart>) -> Option<Vec<LocPart>> {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(path.clone()),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path.push(LocPart::Index(i));
            let found = find_nul(item, path);
            path.pop();
            found
        }),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            path.push(LocPart::Key(key.clone()));
            let found = if key.contains('\0') {
                Some(path.clone())
            } else {
                find_nul(item, path)
            };
            path.pop();
            found
        }),
        _ => None,
    }
}

fn serde_issue(source: &str, path: Vec<LocPart>, err: &serde_json::Error) -> ValidationIssue {
    use serde_json::error::Category;
    let mut loc: Vec<LocPart> = vec![source.into()];
    loc.extend(path);
    let message = strip_position(&err.to_string());
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ValidationIssue::new(
            vec![source.into()],
            format!("JSON decode error: {err}"),
            "json_invalid",
        ),
        Category::Data => data_issue(loc, &message),
    }
}

/// Classifies a serde data error (the same messages come from JSON, query
/// strings and paths): a missing field, an unknown one, a wrong type, or a
/// bad value, located at `loc`.
fn data_issue(mut loc: Vec<LocPart>, message: &str) -> ValidationIssue {
    if let Some(field) = backticked(message, "missing field `") {
        loc.push(LocPart::Key(field));
        ValidationIssue::new(loc, "Field required", "missing")
    } else if let Some(field) = backticked(message, "unknown field `") {
        // serde_path_to_error's path may already end at the unknown key.
        if loc.last() != Some(&LocPart::Key(field.clone())) {
            loc.push(LocPart::Key(field));
        }
        ValidationIssue::new(loc, "Extra inputs are not permitted", "extra_forbidden")
    } else if message.starts_with("invalid type") {
        ValidationIssue::new(loc, message, "type_error")
    } else {
        ValidationIssue::new(loc, message, "value_error")
    }
}

fn path_to_loc(path: &serde_path_to_error::Path) -> Vec<LocPart> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(LocPart::Index(*index)),
            Segment::Map { key } => Some(LocPart::Key(key.clone())),
            Segment::Enum { variant } => Some(LocPart::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// serde_json appends " at line 1 column 9", which means nothing to the caller once `loc` is given.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(idx) => message[..idx].to_owned(),
        None => message.to_owned(),
    }
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next().map(str::to_owned)
}

/// Converts garde's report (one entry per failing rule) to FastAPI issues.
pub fn garde_issues(report: &garde::Report) -> Vec<ValidationIssue> {
    report
        .iter()
        .map(|(path, error)| {
            let mut loc: Vec<LocPart> = vec!["body".into()];
            let path = path.to_string();
            loc.extend(path.split('.').filter(|p| !p.is_empty()).map(
                |p| match p.parse::<usize>() {
                    Ok(index) => LocPart::Index(index),
                    Err(_) => LocPart::Key(p.to_owned()),
                },
            ));
            ValidationIssue::new(loc, error.message().to_owned(), "value_error")
        })
        .collect()
}

fn json_payload_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit },
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType {
            detail: "expected Content-Type: application/json".into(),
        },
        JsonPayloadError::Deserialize(err) => {
            ApiError::Validation(vec![serde_issue("body", Vec::new(), &err)])
        }
        other => ApiError::BadRequest {
            code: "bad_request",
            detail: other.to_string(),
        },
    }
}

fn form_error(err: UrlencodedError) -> ApiError {
    match err {
        UrlencodedError::Overflow { limit, .. } => ApiError::PayloadTooLarge { limit },
        UrlencodedError::ContentType => ApiError::UnsupportedMediaType {
            detail: "expected Content-Type: application/x-www-form-urlencoded".into(),
        },
        UrlencodedError::Parse(err) => ApiError::Validation(vec![ValidationIssue::new(
            vec!["body".into()],
            err.to_string(),
            "value_error",
        )]),
        other => ApiError::BadRequest {
            code: "bad_request",
            detail: other.to_string(),
        },
    }
}

fn query_error(err: QueryPayloadError) -> ApiError {
    let QueryPayloadError::Deserialize(inner) = &err else {
        return ApiError::Validation(vec![ValidationIssue::new(
            vec!["query".into()],
            err.to_string(),
            "value_error",
        )]);
    };
    ApiError::Validation(vec![data_issue(vec!["query".into()], &inner.to_string())])
}

fn path_error(err: PathError) -> ApiError {
    let PathError::Deserialize(inner) = &err else {
        return ApiError::Validation(vec![ValidationIssue::new(
            vec!["path".into()],
            err.to_string(),
            "value_error",
        )]);
    };
    ApiError::Validation(vec![data_issue(vec!["path".into()], &inner.to_string())])
}
