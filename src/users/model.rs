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
    /// When the user followed the emailed verification link; `null`: not yet.
    #[serde(with = "time::serde::rfc3339::option")]
    pub email_verified_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `PATCH /api/v1/users/me`: change the name, the password (which needs the
/// current one, and ends every session) or the email address (which needs
/// the current password, and a new verification).
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    #[garde(inner(length(min = 1, max = 200), custom(not_blank)))]
    pub full_name: Option<String>,
    /// A new address: needs `current_password`, and is verified again.
    #[garde(inner(email, length(max = 320)))]
    pub email: Option<String>,
    /// May be omitted, but not null: it only ever accompanies `new_password` or `email`.
    #[garde(inner(length(min = 1, max = 1024)))]
    #[serde(default, deserialize_with = "present_string")]
    pub current_password: Option<String>,
    #[garde(skip)]
    pub new_password: Option<String>,
    /// With `new_password`: also revoke every API key this user created.
    #[garde(skip)]
    #[serde(default)]
    pub revoke_api_keys: bool,
}

/// A field that may be absent but, when present, must be a string.
fn present_string<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    String::deserialize(de).map(Some)
}

/// The schema of [`UpdateMe`] is written by hand for the one rule derives
/// cannot say: `new_password` requires `current_password` (`dependentRequired`).
impl utoipa::PartialSchema for UpdateMe {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::Schema::Object(update_me_schema()).into()
    }
}

impl ToSchema for UpdateMe {}

fn update_me_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    use utoipa::openapi::{ObjectBuilder, extensions::Extensions};
    let optional_text = |min: usize, max: usize, description: &str| {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .min_length(Some(min))
            .max_length(Some(max))
            .description(Some(description))
    };
    let mut dependent = Extensions::default();
    dependent.insert(
        "dependentRequired".into(),
        serde_json::json!({
            "new_password": ["current_password"],
            "email": ["current_password"],
            "revoke_api_keys": ["new_password"]
        }),
    );
    let mut new_password = crate::auth::password::new_password_schema();
    new_password.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "full_name",
            optional_text(1, 200, "Display name").pattern(Some(r"\S")),
        )
        .property(
            "email",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Email,
                )))
                .max_length(Some(320))
                .description(Some(
                    "A new email address (with current_password); a verification link is mailed to it",
                )),
        )
        .property(
            "current_password",
            optional_text(1, 1024, "Required with new_password or email")
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Password,
                ))),
        )
        .property("new_password", new_password)
        .property(
            "revoke_api_keys",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .default(Some(serde_json::json!(false)))
                .description(Some(
                    "With new_password: also revoke every API key this user created",
                )),
        )
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .extensions(Some(dependent))
        .build()
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
