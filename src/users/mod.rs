//! Users of a tenant: the signed-in user's profile, and user management by
//! admins (list, create, change role, deactivate).

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
