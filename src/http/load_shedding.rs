//! The load-shedding layer: asks the process's [`LoadMonitor`] whether to
//! serve each request, and answers 503 `overloaded` with `Retry-After` when
//! not. Operational routes and CORS preflights always pass.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

use super::error::ApiError;
use crate::resilience::load::LoadMonitor;

/// The middleware. Outside authentication: a request refused here costs no
/// token verification and no Redis call.
pub async fn shed_load(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let exempt = req.method() == Method::OPTIONS
        || req
            .match_pattern()
            .is_some_and(|route| super::is_operational_route(&route));
    let monitor = req.app_data::<web::Data<LoadMonitor>>().cloned();
    let (Some(monitor), false) = (monitor, exempt) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let (_in_flight, admitted) = monitor.into_inner().admit(req.method());
    if let Err(retry_after_secs) = admitted {
        let error = ApiError::ServiceUnavailable {
            code: "overloaded",
            detail: format!("The service is overloaded; retry in {retry_after_secs} s"),
            retry_after_secs: Some(retry_after_secs),
        };
        return Ok(req
            .into_response(error.error_response())
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
