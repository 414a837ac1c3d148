//! Accounts: what a user does with the emails the service sends them.
//!
//! - Password reset: `POST /auth/password-reset` answers 202 whatever the
//!   address (the work runs after the answer, so neither status nor timing
//!   says whether an account exists); the emailed token works once, for
//!   `auth.password_reset_ttl_secs`, and setting a new password ends every
//!   session of the user.
//! - Email verification: registration and users created by an admin get a
//!   link; `auth.require_verified_email` decides whether unverified users
//!   may sign in; `POST /auth/verify-email/resend` sends a new link.
//!
//! - The first platform administrator, from configuration, by `migrate`
//!   ([`first_admin`]).
//!
//! Tokens are stored hashed ([`repository`]); each address gets at most
//! `auth.account_emails_per_address_per_hour` emails ([`throttle`]).

pub mod first_admin;
pub mod repository;
pub mod routes;
pub mod service;
pub mod throttle;
