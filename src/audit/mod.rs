//! The audit log: security-relevant events of a tenant — sign-ins and their
//! failures, password and email changes, API keys and invitations created or
//! revoked, role changes, deletions, exports, webhook secret rotations —
//! each with its actor, client address, request id and time.
//!
//! An event is written in the transaction of what it records ([`record`]),
//! so neither exists without the other. Admins read them with
//! `GET /api/v1/audit-events` ([`routes`]), newest first, with keyset
//! pagination and filters; retention deletes them after
//! `retention.audit_events_days`.

pub mod model;
pub mod origin;
pub mod repository;
pub mod routes;

pub use model::{Actor, Event, Target};
pub use origin::Origin;
pub use repository::record;
