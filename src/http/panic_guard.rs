//! Turns a panic in a handler into a JSON 500.
//!
//! actix does not catch panics: the connection just drops and the client sees
//! a reset, metrics see nothing. This layer sits innermost, right around the
//! handlers, so the 500 it produces flows back through metrics, error
//! reporting and the request context like any other response. The release
//! profile keeps `panic = "unwind"` for this to work.
//!
//! The original request cannot be kept for the response: actix's router needs
//! sole ownership of it, and the panic drops it. The 500 is attached to a
//! detached copy with the same method and URI, so outer layers see the right
//! status and method; the route label of a panicked request is the unmatched
//! one, and the log line and error report carry the real path.

use std::panic::AssertUnwindSafe;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::test::TestRequest;
use actix_web::{Error, ResponseError};
use futures_util::FutureExt;

use crate::http::error::ApiError;

/// A handler's panic, as the cause of the 500. The SDK's panic hook has
/// already reported it to Sentry (with the stack of the panic itself), so
/// the error reporting of `ApiError` leaves this cause alone.
#[derive(Debug, thiserror::Error)]
#[error("handler panicked on {method} {uri}: {message}")]
pub struct HandlerPanic {
    method: String,
    uri: String,
    message: String,
}

pub async fn panic_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let method = req.method().clone();
    let uri = req.uri().to_string();
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(result) => result.map(ServiceResponse::map_into_boxed_body),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            let error = ApiError::internal(HandlerPanic {
                method: method.to_string(),
                uri: uri.clone(),
                message,
            });
            let detached = TestRequest::default()
                .method(method)
                .uri(&uri)
                .to_http_request();
            Ok(ServiceResponse::new(detached, error.error_response()))
        }
    }
}
