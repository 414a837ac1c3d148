//! Where a request came from, for its audit events: the client's address (as
//! the rate limiter resolves it, behind trusted proxies) and the request id.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};

use crate::http::error::ApiError;
use crate::http::request_context::RequestId;
use crate::rate_limit::RateLimiter;

#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<IpAddr>,
    pub request_id: Option<String>,
}

impl Origin {
    /// Work no request started (beat, the CLI).
    pub fn system() -> Self {
        Self::default()
    }
}

impl FromRequest for Origin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ip = req
            .app_data::<web::Data<RateLimiter>>()
            .and_then(|limiter| {
                limiter.client_ip(req.peer_addr().map(|addr| addr.ip()), req.headers())
            });
        let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
        ready(Ok(Origin { ip, request_id }))
    }
}
