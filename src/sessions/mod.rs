//! Sessions: registering a tenant with its owner, signing in (JSON and the
//! OAuth2 password form), refresh-token rotation with reuse detection, and
//! signing out. Built on [`crate::auth`] (tokens, passwords, revocation),
//! [`crate::users`] and [`crate::tenants`].

pub mod routes;
pub mod service;
