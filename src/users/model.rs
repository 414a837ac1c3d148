//! Users as the API shows and accepts them.

use garde::Validate;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Role;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub is_active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `PATCH /api/v1/users/me`: change the name, or the password (with the current one).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    #[garde(inner(length(min = 1, max = 200)))]
    pub full_name: Option<String>,
    #[garde(inner(length(max = 128)))]
    pub current_password: Option<String>,
    /// At least 10 characters, not the email, not a common password.
    #[garde(skip)]
    pub new_password: Option<String>,
}

/// `POST /api/v1/users`: create a user in the caller's tenant.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[garde(email, length(max = 320))]
    pub email: String,
    #[garde(length(max = 200))]
    #[serde(default)]
    pub full_name: String,
    /// Initial password; the user should change it after signing in.
    #[garde(skip)]
    pub password: String,
    #[garde(skip)]
    pub role: Role,
}

/// `PATCH /api/v1/users/{id}`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[garde(skip)]
    pub role: Option<Role>,
    #[garde(inner(length(min = 1, max = 200)))]
    pub full_name: Option<String>,
}
