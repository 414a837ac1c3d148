//! HTTP plumbing shared by every domain: the request context (id, span, access
//! log), the tenant context (Sentry scope and log fields), the panic guard, the 404/405 fallback, CORS, and the extractors that
//! turn bad input into the product's 4xx shapes. The order these layers run in
//! is fixed once, in [`crate::startup`].

pub mod cors;
pub mod extractors;
pub mod fallback;
pub mod pagination;
pub mod panic_guard;
pub mod request_context;
pub mod strict_json;
pub mod tenant_context;
pub mod validation;
