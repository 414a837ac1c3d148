//! `Idempotency-Key` on the POSTs that create something, as Stripe and Svix
//! offer it: a client that retries a POST (a timeout, a retry policy) with the
//! same key gets the first answer again instead of a second product,
//! subscription or sync.
//!
//! - The same key with the same request (method, path, body, caller) replays
//!   the stored status, headers and body, with `Idempotent-Replayed: true`.
//! - The same key with another request: 422 `idempotency_key_reused`.
//! - While the first request runs, another with its key waits up to
//!   `idempotency.wait_ms` for its answer, then gets 409
//!   `idempotency_key_in_use` (with `Retry-After`): the request runs once.
//! - Only 2xx answers are kept (`idempotency.ttl_secs`, 24 h, per tenant).
//!   Any other answer means nothing was created — every write is one
//!   transaction — so the key is released and a corrected retry may reuse it.
//!
//! Which operations take the header is declared where they are: their
//! `#[utoipa::path]` lists [`IdempotencyKey`] among its parameters, and
//! [`IdempotentRoutes`] reads the document for it, so the documented and the
//! served behaviour cannot differ. Anonymous requests never reach the store
//! (the handler answers 401).
//!
//! Keys live in Redis, one per tenant and key, in the tenant's hash slot:
//! claimed with one `SET NX GET` (the claim and the current record in one
//! round trip), finished or released by a compare-and-set script that only
//! the claimant's token passes. Stored answers are Fernet-encrypted under
//! `secrets.fernet_keys` (an API key's or a webhook's secret is in the body).
//!
//! Degradation: with Redis unavailable, a request *carrying* a key answers
//! 503 `idempotency_unavailable` with `Retry-After` rather than run without
//! the guarantee the client asked for; requests without a key are
//! unaffected. If Redis fails between the write and storing its answer, the
//! key frees itself after `idempotency.lock_secs` and a retry after that
//! runs again (counted as `not_stored`).

mod middleware;
mod store;

use std::collections::HashSet;

use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::error::{ApiError, ValidationIssue};
use crate::telemetry::metrics::MetricDef;

pub use middleware::{IdempotencyState, idempotency};
pub use store::IdempotencyStore;

/// The request header (case-insensitive on the wire).
pub const HEADER: &str = "Idempotency-Key";
/// The response header marking a replayed answer.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// What a key may hold, printable ASCII (the document's `pattern`, which the
/// attribute below must spell as a literal).
const KEY_PATTERN: &str = "^[ -~]+$";

pub const IDEMPOTENT_REQUESTS: MetricDef = MetricDef::counter(
    "stock_tracker_idempotent_requests_total",
    "Requests carrying an Idempotency-Key by outcome: executed, replayed, key_reused (422), \
     in_use (409), unavailable (503, Redis down), not_stored (answered, but Redis lost the answer)",
    &["outcome"],
);

pub const METRICS: &[MetricDef] = &[IDEMPOTENT_REQUESTS];

/// Every value of [`IDEMPOTENT_REQUESTS`]'s `outcome` label, registered at start.
pub const OUTCOMES: [&str; 6] = [
    "executed",
    "replayed",
    "key_reused",
    "in_use",
    "unavailable",
    "not_stored",
];

/// The header parameter, as the creating operations declare it in their
/// `#[utoipa::path(params(...))]`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// Makes a retry of this request safe: the same key with the same request
    /// replays the first 2xx answer (marked `Idempotent-Replayed: true`) for
    /// 24 hours, per tenant; with another request it is refused (422
    /// `idempotency_key_reused`); while the first is still running, 409
    /// `idempotency_key_in_use`. 1-255 printable ASCII characters, e.g. a UUID.
    #[param(
        rename = "Idempotency-Key",
        required = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[ -~]+$"
    )]
    #[serde(rename = "Idempotency-Key")]
    pub idempotency_key: String,
}

/// The path pattern of every POST operation that declares
/// [`IdempotencyKey`] in the OpenAPI document.
#[derive(Debug, Default)]
pub struct IdempotentRoutes(HashSet<String>);

impl IdempotentRoutes {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .filter(|(_, item)| item.post.as_ref().is_some_and(declares_key))
            .map(|(path, _)| path.clone())
            .collect();
        Self(routes)
    }

    /// Whether a POST to the route `pattern` takes the header.
    pub fn covers(&self, pattern: &str) -> bool {
        self.0.contains(pattern)
    }
}

/// Whether an operation lists the `Idempotency-Key` header parameter.
pub fn declares_key(operation: &utoipa::openapi::path::Operation) -> bool {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::path::ParameterIn;
    operation.parameters.iter().flatten().any(|parameter| {
        matches!(parameter, RefOr::T(parameter)
            if parameter.parameter_in == ParameterIn::Header
                && parameter.name.eq_ignore_ascii_case(HEADER))
    })
}

/// The key if it is 1-255 printable ASCII characters; otherwise the 422 a
/// client gets, in Pydantic's vocabulary (with the key as its `input` and
/// the bound as its `ctx`).
fn parse_key(value: &[u8]) -> Result<&str, ApiError> {
    let issue = |msg: String, kind: &str, bound: (&str, serde_json::Value)| {
        let input = serde_json::Value::from(String::from_utf8_lossy(value));
        ApiError::Validation(vec![
            ValidationIssue::new(vec!["header".into(), HEADER.into()], msg, kind)
                .with_input(Some(&input))
                .with_ctx(Some(serde_json::Map::from_iter([(
                    bound.0.to_owned(),
                    bound.1,
                )]))),
        ])
    };
    if value.is_empty() {
        return Err(issue(
            "String should have at least 1 character".into(),
            "string_too_short",
            ("min_length", 1.into()),
        ));
    }
    if value.len() > MAX_KEY_LEN {
        return Err(issue(
            format!("String should have at most {MAX_KEY_LEN} characters"),
            "string_too_long",
            ("max_length", MAX_KEY_LEN.into()),
        ));
    }
    if !value.iter().all(|byte| (0x20..=0x7e).contains(byte)) {
        return Err(issue(
            format!("String should match pattern '{KEY_PATTERN}' (printable ASCII)"),
            "string_pattern_mismatch",
            ("pattern", KEY_PATTERN.into()),
        ));
    }
    Ok(std::str::from_utf8(value).expect("printable ASCII is UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        assert_eq!(parse_key(b"a").unwrap(), "a");
        assert_eq!(parse_key(b"order 42 ~ retry").unwrap(), "order 42 ~ retry");
        assert!(parse_key(&[b'k'; 255]).is_ok());
        for (bad, kind) in [
            (&b""[..], "string_too_short"),
            (&[b'k'; 256][..], "string_too_long"),
            (&b"tab\there"[..], "string_pattern_mismatch"),
            ("caf\u{e9}".as_bytes(), "string_pattern_mismatch"),
            (&b"del\x7f"[..], "string_pattern_mismatch"),
        ] {
            match parse_key(bad) {
                Err(ApiError::Validation(issues)) => {
                    assert_eq!(issues[0].kind, kind, "{bad:?}");
                    assert!(issues[0].ctx.is_some(), "{bad:?}: no ctx");
                    assert!(issues[0].input.is_some(), "{bad:?}: no input");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
