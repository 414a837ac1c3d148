//! Tenant context: once authentication and the rate limiter have settled who
//! is calling, this layer tags the request's Sentry scope (request id,
//! tenant, user, role, tier, and the trace id when traced) and its log span (tenant and user), so every
//! error report and log line of the request names them. The database's
//! `app.tenant_id` is set per transaction from the same verified principal
//! (`db::begin_tenant_tx` with the handler's `TenantCtx`), never from input.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};

use super::extractor::Authentication;
use crate::http::request_context;

pub async fn tenant_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let principal = match req.extensions().get::<Authentication>() {
        Some(Authentication::Authenticated(principal)) => Some(principal.clone()),
        _ => None,
    };
    if let Some(principal) = &principal {
        let span = tracing::Span::current();
        span.record("tenant_id", tracing::field::display(principal.tenant.id()));
        span.record("user_id", tracing::field::display(principal.user_id));
    }
    let route = req.match_pattern();
    let trace_id = req
        .extensions()
        .get::<request_context::TraceId>()
        .map(|id| id.0.clone());
    sentry::configure_scope(|scope| {
        if let Some(trace_id) = trace_id {
            scope.set_tag("trace_id", trace_id);
        }
        if let Some(id) = request_context::current_request_id() {
            scope.set_tag("request_id", id);
        }
        if let Some(route) = &route {
            scope.set_tag("route", route);
        }
        if let Some(principal) = &principal {
            scope.set_tag("tenant_id", principal.tenant.id());
            scope.set_tag("role", principal.role.as_str());
            scope.set_tag("tier", principal.tier.as_str());
            scope.set_user(Some(sentry::User {
                id: Some(principal.user_id.to_string()),
                ..Default::default()
            }));
        }
    });
    next.call(req).await
}
