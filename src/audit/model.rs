//! Audit events as recorded and as the API shows them.

use garde::Validate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::extractor::MinimumRole;
use crate::auth::{Auth, PrincipalKind};
use crate::http::pagination::MAX_LIMIT;

/// What happened. The names are stable: clients filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Event {
    #[serde(rename = "auth.login_succeeded")]
    LoginSucceeded,
    #[serde(rename = "auth.login_failed")]
    LoginFailed,
    #[serde(rename = "auth.password_changed")]
    PasswordChanged,
    #[serde(rename = "auth.password_reset")]
    PasswordReset,
    #[serde(rename = "auth.email_changed")]
    EmailChanged,
    #[serde(rename = "auth.email_verified")]
    EmailVerified,
    #[serde(rename = "api_key.created")]
    ApiKeyCreated,
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked,
    #[serde(rename = "invitation.created")]
    InvitationCreated,
    #[serde(rename = "invitation.revoked")]
    InvitationRevoked,
    #[serde(rename = "invitation.accepted")]
    InvitationAccepted,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.role_changed")]
    UserRoleChanged,
    #[serde(rename = "user.deactivated")]
    UserDeactivated,
    #[serde(rename = "user.deleted")]
    UserDeleted,
    #[serde(rename = "tenant.ownership_transferred")]
    OwnershipTransferred,
    #[serde(rename = "tenant.deletion_scheduled")]
    TenantDeletionScheduled,
    #[serde(rename = "tenant.restored")]
    TenantRestored,
    #[serde(rename = "tenant.export_requested")]
    ExportRequested,
    #[serde(rename = "webhook.secret_rotated")]
    WebhookSecretRotated,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::LoginSucceeded => "auth.login_succeeded",
            Event::LoginFailed => "auth.login_failed",
            Event::PasswordChanged => "auth.password_changed",
            Event::PasswordReset => "auth.password_reset",
            Event::EmailChanged => "auth.email_changed",
            Event::EmailVerified => "auth.email_verified",
            Event::ApiKeyCreated => "api_key.created",
            Event::ApiKeyRevoked => "api_key.revoked",
            Event::InvitationCreated => "invitation.created",
            Event::InvitationRevoked => "invitation.revoked",
            Event::InvitationAccepted => "invitation.accepted",
            Event::UserCreated => "user.created",
            Event::UserRoleChanged => "user.role_changed",
            Event::UserDeactivated => "user.deactivated",
            Event::UserDeleted => "user.deleted",
            Event::OwnershipTransferred => "tenant.ownership_transferred",
            Event::TenantDeletionScheduled => "tenant.deletion_scheduled",
            Event::TenantRestored => "tenant.restored",
            Event::ExportRequested => "tenant.export_requested",
            Event::WebhookSecretRotated => "webhook.secret_rotated",
        }
    }
}

/// Who acted: a user (with a token), an API key (on behalf of the user who
/// created it), or nobody signed in (a failed sign-in, an emailed link).
#[derive(Debug, Clone, Copy, Default)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
}

impl Actor {
    pub fn user(user_id: Uuid) -> Self {
        Self {
            user_id: Some(user_id),
            api_key_id: None,
        }
    }

    pub fn anonymous() -> Self {
        Self::default()
    }
}

impl<R: MinimumRole> From<&Auth<R>> for Actor {
    fn from(auth: &Auth<R>) -> Self {
        let api_key_id = match auth.principal.kind {
            PrincipalKind::ApiKey { key_id } => Some(key_id),
            PrincipalKind::User { .. } => None,
        };
        Self {
            user_id: Some(auth.principal.user_id),
            api_key_id,
        }
    }
}

/// What the event is about.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub kind: &'static str,
    pub id: Uuid,
}

impl Target {
    pub fn user(id: Uuid) -> Self {
        Self { kind: "user", id }
    }
}

/// One event, as `GET /api/v1/audit-events` lists it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: Uuid,
    /// e.g. `auth.login_failed`, `api_key.created` (see the `event` filter).
    pub event: String,
    /// The user who acted (for an API key, the user who created it); null
    /// when nobody was signed in.
    pub actor_user_id: Option<Uuid>,
    /// The API key that acted, if one did.
    pub actor_api_key_id: Option<Uuid>,
    /// `user`, `api_key`, `invitation`, `tenant`, `webhook_subscription`, `export`.
    pub target_type: Option<String>,
    pub target_id: Option<Uuid>,
    /// The client's address.
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// Event-specific facts (a role's old and new value, an API key's name...).
    #[schema(value_type = Object)]
    pub details: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /api/v1/audit-events`: newest first.
#[derive(Debug, Deserialize, IntoParams, Validate)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    #[garde(inner(range(min = 1, max = MAX_LIMIT)))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (same filters).
    #[param(pattern = "^[A-Za-z0-9_-]{22}$")]
    #[garde(skip)]
    pub cursor: Option<String>,
    /// Only this event.
    #[garde(skip)]
    #[param(inline)]
    pub event: Option<Event>,
    /// Only events by this user (or their API keys).
    #[garde(skip)]
    pub actor_user_id: Option<Uuid>,
    /// Only events about this user, key, invitation...
    #[garde(skip)]
    pub target_id: Option<Uuid>,
    /// Only events at or after this instant (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    #[garde(skip)]
    pub since: Option<OffsetDateTime>,
    /// Only events before this instant (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    #[garde(skip)]
    pub until: Option<OffsetDateTime>,
}
