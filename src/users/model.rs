//! Users as the API shows and accepts them.

use garde::Validate;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Role;
use crate::http::validation::not_blank;

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

/// `PATCH /api/v1/users/me`: the signed-in user's profile.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    #[garde(inner(length(min = 1, max = 200), custom(not_blank)))]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub full_name: Option<String>,
}

/// `POST /api/v1/users/me/password`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    #[garde(length(min = 1, max = 1024))]
    #[schema(min_length = 1, max_length = 1024, format = Password)]
    pub current_password: String,
    /// At least 10 characters, not the email, not a common password.
    #[garde(skip)]
    #[schema(schema_with = crate::auth::password::new_password_schema)]
    pub new_password: String,
}

/// `POST /api/v1/users`: create a user in the caller's tenant.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[garde(email, length(max = 320))]
    #[schema(format = Email, max_length = 320)]
    pub email: String,
    #[garde(length(max = 200))]
    #[schema(max_length = 200)]
    #[serde(default)]
    pub full_name: String,
    /// Initial password; the user should change it after signing in.
    #[garde(skip)]
    #[schema(schema_with = crate::auth::password::new_password_schema)]
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
    #[garde(inner(length(min = 1, max = 200), custom(not_blank)))]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub full_name: Option<String>,
}
