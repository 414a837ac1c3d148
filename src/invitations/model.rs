//! Invitations as the API shows and accepts them.

use garde::Validate;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Role;
use crate::http::validation::no_nul;
use crate::users::model::User;

/// `POST /api/v1/invitations`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    #[garde(email, length(max = 320))]
    #[schema(example = "bob@acme.example", format = Email, max_length = 320)]
    pub email: String,
    /// The role the invitee gets; at most the inviter's own.
    #[garde(skip)]
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub status: InvitationStatus,
    /// The admin who invited (null once that user is deleted).
    pub invited_by: Option<Uuid>,
    /// The user the invitation created, once accepted.
    pub accepted_user_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `POST /api/v1/invitations/accept`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The `token` of the emailed link.
    #[garde(length(min = 1, max = 256), custom(no_nul))]
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
    /// At least 10 characters, not the email, not a common password.
    #[garde(skip)]
    #[schema(schema_with = crate::auth::password::new_password_schema)]
    pub password: String,
    #[garde(length(max = 200), custom(no_nul))]
    #[schema(max_length = 200)]
    #[serde(default)]
    pub full_name: String,
}

/// The user an accepted invitation created.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub user: User,
}
