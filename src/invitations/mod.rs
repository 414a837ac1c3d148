//! Invitations: an admin invites an address with a role (never above their
//! own); the emailed link lets the invitee choose a password and join the
//! tenant, whatever `auth.registration` says. An invitation works once, until
//! `auth.invitation_ttl_secs` or its revocation; inviting an address again
//! replaces its pending invitation.

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
