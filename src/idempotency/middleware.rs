//! The layer that applies `Idempotency-Key`: inside authentication and rate
//! limiting (it needs the caller's tenant, and a refused request must not
//! hold a key), outside the panic guard (a handler's panic is an answer like
//! any other 5xx: the key is released).
//!
//! A request without the header, to an operation that does not declare it,
//! or without credentials passes untouched: one header lookup.

use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, ResponseError, web};
use prometheus::IntCounterVec;
use sha2::{Digest, Sha256};

use super::store::{Claim, IdempotencyStore, StoredAnswer};
use super::{HEADER, IDEMPOTENT_REQUESTS, IdempotentRoutes, OUTCOMES, REPLAYED_HEADER, parse_key};
use crate::auth::extractor::Authentication;
use crate::auth::{Principal, PrincipalKind};
use crate::http::error::ApiError;
use crate::http::extractors::{BodyLimit, read_body};
use crate::infra::Infra;
use crate::telemetry::metrics::Metrics;

/// How often a request polls for the answer of another holding its key.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// What the layer needs, shared by every HTTP worker.
pub struct IdempotencyState {
    store: IdempotencyStore,
    routes: IdempotentRoutes,
    requests: IntCounterVec,
}

impl IdempotencyState {
    pub fn new(store: IdempotencyStore, routes: IdempotentRoutes, metrics: &Metrics) -> Self {
        let requests = metrics.counter_vec(&IDEMPOTENT_REQUESTS);
        for outcome in OUTCOMES {
            requests.with_label_values(&[outcome]);
        }
        Self {
            store,
            routes,
            requests,
        }
    }

    fn count(&self, outcome: &'static str) {
        debug_assert!(OUTCOMES.contains(&outcome));
        self.requests.with_label_values(&[outcome]).inc();
    }
}

pub async fn idempotency<B: MessageBody + 'static>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let Some(raw_key) = req.headers().get(HEADER).cloned() else {
        return pass(req, next).await;
    };
    let Some(state) = req.app_data::<web::Data<IdempotencyState>>().cloned() else {
        return pass(req, next).await;
    };
    let covered = req.method() == Method::POST
        && req
            .match_pattern()
            .is_some_and(|pattern| state.routes.covers(&pattern));
    let caller = match req.extensions().get::<Authentication>() {
        Some(Authentication::Authenticated(principal)) => Some(Caller::of(principal)),
        _ => None,
    };
    let (true, Some(caller)) = (covered, caller) else {
        return pass(req, next).await;
    };
    let key = match parse_key(raw_key.as_bytes()) {
        Ok(key) => key.to_owned(),
        Err(error) => return Ok(answer(req, error.error_response())),
    };
    let limit = req
        .app_data::<BodyLimit>()
        .map_or(1_048_576, |limit| limit.0);
    let body = match read_body(req.take_payload(), limit).await {
        Ok(body) => body,
        Err(error) => return Ok(answer(req, error.error_response())),
    };
    let fingerprint = fingerprint(&req, &caller, &body);
    req.set_payload(Payload::from(body));

    let infra = req.app_data::<web::Data<Infra>>().cloned();
    let Some(infra) = infra else {
        return pass(req, next).await;
    };
    let store = &state.store;
    let deadline = Instant::now() + Duration::from_millis(store.settings().wait_ms);
    let ticket = loop {
        let claim = store
            .claim(&infra.secrets, caller.tenant, &key, &fingerprint)
            .await;
        match claim {
            Ok(Claim::Won(ticket)) => break ticket,
            Ok(Claim::Done {
                fingerprint: stored,
                answer: stored_answer,
            }) if stored == fingerprint => {
                state.count("replayed");
                return Ok(answer(req, replay(&stored_answer)));
            }
            Ok(Claim::Running {
                fingerprint: stored,
            }) if stored == fingerprint => {
                if Instant::now() >= deadline {
                    state.count("in_use");
                    let mut response = in_use().error_response();
                    response.headers_mut().insert(
                        actix_web::http::header::RETRY_AFTER,
                        HeaderValue::from_static("1"),
                    );
                    return Ok(answer(req, response));
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
            Ok(Claim::Done { .. } | Claim::Running { .. }) => {
                state.count("key_reused");
                return Ok(answer(req, reused().error_response()));
            }
            Err(error) => {
                tracing::warn!(error = %error, "idempotency key not claimed");
                state.count("unavailable");
                return Ok(answer(req, unavailable().error_response()));
            }
        }
    };

    let response = next.call(req).await;
    let response = match response {
        Ok(response) if response.status().is_success() => response,
        other => {
            // Nothing was created: the key is free for a retry. A lost
            // release only makes the retry wait `lock_secs`.
            if let Err(error) = store.release(ticket).await {
                tracing::warn!(error = %error, "idempotency key not released");
            }
            state.count("executed");
            return other.map(ServiceResponse::map_into_left_body);
        }
    };
    let (req, response) = response.into_parts();
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect();
    let (head, body) = response.into_parts();
    let Ok(body) = actix_web::body::to_bytes(body).await else {
        let _ = store.release(ticket).await;
        return Err(actix_web::error::ErrorInternalServerError(
            "response body unreadable",
        ));
    };
    let stored = StoredAnswer::new(status.as_u16(), headers, &body);
    match store
        .complete(&infra.secrets, ticket, &fingerprint, &stored)
        .await
    {
        Ok(()) => state.count("executed"),
        Err(error) => {
            tracing::warn!(error = %error, "idempotent answer not stored");
            state.count("not_stored");
        }
    }
    Ok(ServiceResponse::new(req, head.set_body(body))
        .map_into_boxed_body()
        .map_into_right_body())
}

async fn pass<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn answer<B>(req: ServiceRequest, response: HttpResponse) -> ServiceResponse<EitherBody<B>> {
    req.into_response(response).map_into_right_body()
}

/// Who is calling: two users of a tenant, or a user and an API key, never
/// share an answer, so a key reused across them is refused.
struct Caller {
    tenant: uuid::Uuid,
    id: String,
}

impl Caller {
    fn of(principal: &Principal) -> Self {
        let id = match &principal.kind {
            PrincipalKind::User { .. } => format!("user:{}", principal.user_id),
            PrincipalKind::ApiKey { key_id } => format!("api-key:{key_id}"),
        };
        Self {
            tenant: principal.tenant.id(),
            id,
        }
    }
}

/// What makes two requests "the same": method, path and query, caller, body.
fn fingerprint(req: &ServiceRequest, caller: &Caller, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    for part in [
        req.method().as_str().as_bytes(),
        req.uri()
            .path_and_query()
            .map_or(req.path(), |p| p.as_str())
            .as_bytes(),
        caller.id.as_bytes(),
    ] {
        hash.update(part);
        hash.update([0]);
    }
    hash.update(body);
    hex::encode(hash.finalize())
}

fn replay(stored: &StoredAnswer) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(stored.status)
        .unwrap_or(actix_web::http::StatusCode::OK);
    let mut response = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.append_header((name, value));
        }
    }
    response.insert_header((REPLAYED_HEADER, "true"));
    response.body(stored.body())
}

fn reused() -> ApiError {
    ApiError::Unprocessable {
        code: "idempotency_key_reused",
        detail: format!(
            "This {HEADER} was used with another request (method, path, body or caller); \
             use a new key for a new request"
        ),
    }
}

fn in_use() -> ApiError {
    ApiError::Conflict {
        code: "idempotency_key_in_use",
        detail: format!(
            "A request with this {HEADER} is still running; retry after `Retry-After` for its answer"
        ),
    }
}

fn unavailable() -> ApiError {
    ApiError::ServiceUnavailable {
        code: "idempotency_unavailable",
        detail: format!(
            "Requests with an {HEADER} cannot be served right now; retry after `Retry-After`"
        ),
        retry_after_secs: Some(1),
    }
}
