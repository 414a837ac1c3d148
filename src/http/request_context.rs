//! The outermost layer: gives every request an id, a tracing span, and one
//! access-log line.
//!
//! The id is the caller's `X-Request-ID` when it is sane (1–128 characters of
//! `[A-Za-z0-9._-]`: safe to log and to echo in a header), a fresh UUID v7
//! otherwise. It is echoed on every response, carried by every log line of the
//! request (span field), and put in every error body: [`ApiError`] reads it
//! from a task-local set here, because actix builds error responses without
//! access to the request.
//!
//! [`ApiError`]: crate::http::error::ApiError

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, ResponseError};
use tracing::Instrument;
use tracing::field::Empty;

use crate::http::error::ApiError;
use crate::telemetry::traces;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller-supplied request id echoed back.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Route label for requests that matched no route (bounded metric and log cardinality).
pub const UNMATCHED_ROUTE: &str = "UNKNOWN";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The request's trace id, when it is traced (for error reports).
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

/// The request id, also available to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Whether a caller-supplied id may be echoed and logged as is.
pub fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());

    // tenant_id and user_id are recorded by authentication once the caller is known.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        route = Empty,
        tenant_id = Empty,
        user_id = Empty,
        trace_id = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
        http.response.status_code = Empty,
    );
    let method = req.method().clone();
    // The OpenTelemetry fields are recorded only when traced: log lines stay lean.
    if traces::enabled() {
        span.record("otel.kind", "server");
        traces::continue_trace(&span, &traces::HeaderExtractor(req.headers()));
        if let Some(trace_id) = traces::trace_id(&span) {
            span.record("trace_id", trace_id.as_str());
            req.extensions_mut().insert(TraceId(trace_id));
        }
    }
    req.extensions_mut().insert(RequestId(request_id.clone()));

    // Errors are rendered inside the task-local scope so their bodies carry the id.
    // (The request itself cannot be cloned and kept here: actix's router needs
    // sole ownership of it to record the matched route.)
    let handled = async move {
        match next.call(req).await {
            Ok(response) => Ok(normalize_foreign_error(response.map_into_boxed_body())),
            Err(err) => Err(render_error(&err)),
        }
    };
    let result = REQUEST_ID
        .scope(request_id.clone(), handled)
        .instrument(span.clone())
        .await;
    let header_value = HeaderValue::from_str(&request_id).ok();
    match result {
        Ok(mut response) => {
            if let Some(value) = header_value {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            let route = response
                .request()
                .match_pattern()
                .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
            log_completion(&span, &method, &route, response.status().as_u16(), started);
            Ok(response)
        }
        // An inner layer failed with an error instead of a response; actix renders
        // the response prepared here.
        Err(mut response) => {
            if let Some(value) = header_value {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            log_completion(
                &span,
                &method,
                UNMATCHED_ROUTE,
                response.status().as_u16(),
                started,
            );
            Err(InternalError::from_response("request failed in middleware", response).into())
        }
    }
}

fn log_completion(
    span: &tracing::Span,
    method: &Method,
    route: &str,
    status: u16,
    started: Instant,
) {
    span.record("route", route);
    if traces::enabled() {
        traces::rename(span, format!("{method} {route}"));
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(target: "access", status, latency_ms, route, "request completed");
    });
}

fn render_error(err: &Error) -> HttpResponse {
    match err.as_error::<ApiError>() {
        Some(api_error) => api_error.error_response(),
        None => foreign_error_response(err),
    }
}

/// A response built from an error type we do not own (actix-cors' refusal,
/// an extractor without a configured handler) is re-rendered in the product's shape.
fn normalize_foreign_error(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let replacement = match response.response().error() {
        Some(err) if err.as_error::<ApiError>().is_none() => foreign_error_response(err),
        _ => return response,
    };
    let (request, _) = response.into_parts();
    ServiceResponse::new(request, replacement)
}

/// Re-renders an error raised by a layer we do not own in the product's shape.
fn foreign_error_response(err: &Error) -> HttpResponse {
    let status = err.as_response_error().status_code();
    let api_error = if status.is_server_error() {
        ApiError::internal(anyhow::anyhow!("{err}"))
    } else {
        ApiError::BadRequest {
            code: "bad_request",
            detail: err.to_string(),
        }
    };
    let mut response = api_error.error_response();
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_refused() {
        assert!(is_sane_request_id("abc-123_DEF.4"));
        assert!(is_sane_request_id(&"a".repeat(MAX_REQUEST_ID_LEN)));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id(&"a".repeat(MAX_REQUEST_ID_LEN + 1)));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id("new\nline"));
        assert!(!is_sane_request_id("<script>"));
    }
}
