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

use super::pydantic;
use super::strict_json::StrictValue;
use super::validation::NO_NUL_PATTERN;
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
        .app_data(
            web::QueryConfig::default().error_handler(|err, req| query_error(err, req).into()),
        )
        .app_data(web::PathConfig::default().error_handler(|err, req| path_error(err, req).into()));
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
        let input = query_values(query);
        ApiError::Validation(vec![pydantic::serde_issue(
            loc,
            &err.inner().to_string(),
            Some(&input),
        )])
    })?;
    pydantic::validate(&value).map_err(|report| {
        let input = query_values(query);
        let issues = garde_issues(&report, Some(&input))
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

/// A query string's parameters as a JSON object of their text values (the
/// `input` of a query parameter's 422).
fn query_values(query: &str) -> serde_json::Value {
    form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| {
            (
                key.into_owned(),
                serde_json::Value::String(value.into_owned()),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
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
            pydantic::validate(&value).map_err(|report| {
                // The failing values, for `input`: parsed again on this error path only.
                let input = serde_json::from_slice::<serde_json::Value>(&body).ok();
                ApiError::Validation(garde_issues(&report, input.as_ref()))
            })?;
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
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| ApiError::Validation(vec![json_invalid(&err)]))?;
    let mut path = vec![LocPart::from("body")];
    if let Some(loc) = find_nul(&value, &mut path) {
        // The pattern every text field documents (`NO_NUL_PATTERN`).
        let input = pydantic::value_at(&value, &loc).cloned();
        return Err(ApiError::Validation(vec![
            ValidationIssue::new(
                loc,
                format!("String should match pattern '{NO_NUL_PATTERN}'"),
                "string_pattern_mismatch",
            )
            .with_ctx(Some(serde_json::Map::from_iter([(
                "pattern".to_owned(),
                NO_NUL_PATTERN.into(),
            )])))
            .with_input(input.as_ref()),
        ]));
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
    // Kept for the error's `input`; request bodies are small.
    let root = value.clone();
    serde_path_to_error::deserialize(StrictValue(value)).map_err(|err| {
        let mut issue = serde_issue("body", path_to_loc(err.path()), err.inner(), Some(&root));
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
    pydantic::validate(value).map_err(|report| {
        let prefix: Vec<LocPart> = loc.iter().map(|k| LocPart::from(*k)).collect();
        ApiError::Validation(
            garde_issues(&report, None)
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

fn serde_issue(
    source: &str,
    path: Vec<LocPart>,
    err: &serde_json::Error,
    root: Option<&serde_json::Value>,
) -> ValidationIssue {
    use serde_json::error::Category;
    let mut loc: Vec<LocPart> = vec![source.into()];
    loc.extend(path);
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => json_invalid(err),
        Category::Data => pydantic::serde_issue(loc, &strip_position(&err.to_string()), root),
    }
}

/// A body that is not JSON, as Pydantic reports it.
fn json_invalid(err: &serde_json::Error) -> ValidationIssue {
    ValidationIssue::new(vec!["body".into()], "JSON decode error", "json_invalid").with_ctx(Some(
        serde_json::Map::from_iter([("error".to_owned(), err.to_string().into())]),
    ))
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

/// Converts garde's report (one entry per failing rule, validated through
/// [`pydantic::validate`]) to FastAPI issues; `root` is the input they
/// locate, for each issue's `input`.
pub fn garde_issues(
    report: &garde::Report,
    root: Option<&serde_json::Value>,
) -> Vec<ValidationIssue> {
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
            pydantic::garde_issue(loc, error.message(), root)
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
            ApiError::Validation(vec![serde_issue("body", Vec::new(), &err, None)])
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
        UrlencodedError::Parse(err) => ApiError::Validation(vec![pydantic::serde_issue(
            vec!["body".into()],
            &err.to_string(),
            None,
        )]),
        other => ApiError::BadRequest {
            code: "bad_request",
            detail: other.to_string(),
        },
    }
}

fn query_error(err: QueryPayloadError, req: &HttpRequest) -> ApiError {
    let input = query_values(req.query_string());
    let message = match &err {
        QueryPayloadError::Deserialize(inner) => inner.to_string(),
        other => other.to_string(),
    };
    ApiError::Validation(vec![pydantic::serde_issue(
        vec!["query".into()],
        &message,
        Some(&input),
    )])
}

/// A path segment that is not of its parameter's type. With one parameter
/// the location and input name it; with several, serde does not say which.
fn path_error(err: PathError, req: &HttpRequest) -> ApiError {
    let message = match &err {
        PathError::Deserialize(inner) => inner.to_string(),
        other => other.to_string(),
    };
    let params: Vec<(&str, &str)> = req.match_info().iter().collect();
    let (loc, input) = match params.as_slice() {
        [(name, value)] => (
            vec!["path".into(), LocPart::from(*name)],
            Some(serde_json::json!({ *name: value })),
        ),
        _ => (vec!["path".into()], None),
    };
    ApiError::Validation(vec![pydantic::serde_issue(loc, &message, input.as_ref())])
}
