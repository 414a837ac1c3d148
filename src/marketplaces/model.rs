//! Marketplace connections as the API shows and accepts them.

use std::fmt;

use garde::Validate;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::validation::not_blank;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MarketplaceKind {
    /// The built-in deterministic simulator.
    Demo,
    Wildberries,
}

/// Every kind's name (metric labels are pre-created from it).
pub const KINDS: [&str; 2] = ["demo", "wildberries"];

impl MarketplaceKind {
    /// The kind named `name`, as stored in the database.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "demo" => Some(MarketplaceKind::Demo),
            "wildberries" => Some(MarketplaceKind::Wildberries),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MarketplaceKind::Demo => "demo",
            MarketplaceKind::Wildberries => "wildberries",
        }
    }
}

/// The demo marketplace needs no credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoCredentials {}

/// Wildberries seller API credentials.
#[derive(Clone, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WildberriesCredentials {
    /// The seller API token. Write-only: never returned.
    #[garde(custom(secret_text))]
    #[schema(value_type = String, min_length = 1, max_length = 4096, pattern = r"\S", write_only)]
    #[serde(serialize_with = "expose")]
    pub api_token: SecretString,
}

impl fmt::Debug for WildberriesCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WildberriesCredentials { api_token: [redacted] }")
    }
}

fn secret_text(value: &SecretString, _: &()) -> garde::Result {
    let token = value.expose_secret();
    if token.trim().is_empty() || token.len() > 4096 {
        return Err(garde::Error::new("must be 1 to 4096 characters, not blank"));
    }
    Ok(())
}

/// Serializes a secret for encryption only (the one place it is written out).
fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// `POST /api/v1/marketplaces`: `{"kind", "name", "credentials": {...}}`,
/// where the credentials' shape depends on `kind`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    #[garde(skip)]
    pub kind: MarketplaceKind,
    #[garde(length(min = 1, max = 200), custom(not_blank))]
    pub name: String,
    /// Parsed by [`CreateConnection::credentials`] once `kind` is known.
    /// May be omitted for `demo`; `null` is not an object and is refused.
    #[garde(skip)]
    #[serde(default, deserialize_with = "present_value")]
    pub credentials: Option<serde_json::Value>,
}

/// A field that may be absent; when present (even as `null`) it is kept as is.
fn present_value<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(de).map(Some)
}

/// Credentials, typed by kind.
pub enum Credentials {
    Demo(DemoCredentials),
    Wildberries(WildberriesCredentials),
}

impl CreateConnection {
    /// The credentials for this `kind`, each problem located under `credentials`.
    pub fn credentials(&self) -> Result<Credentials, crate::http::error::ApiError> {
        use crate::http::extractors::{deserialize_at, validate_at};
        const LOC: &[&str] = &["body", "credentials"];
        let value = self
            .credentials
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        Ok(match self.kind {
            MarketplaceKind::Demo => {
                let credentials: DemoCredentials = deserialize_at(value, LOC)?;
                validate_at(&credentials, LOC)?;
                Credentials::Demo(credentials)
            }
            MarketplaceKind::Wildberries => {
                let credentials: WildberriesCredentials = deserialize_at(value, LOC)?;
                validate_at(&credentials, LOC)?;
                Credentials::Wildberries(credentials)
            }
        })
    }
}

/// Documented as one object per kind, so clients (and fuzzers) see exactly
/// which credentials each kind takes. Each kind's object is a named
/// component (`CreateDemoConnection`, `CreateWildberriesConnection`) with its
/// credentials by reference: client generators then make one type per kind
/// instead of colliding anonymous ones.
impl utoipa::PartialSchema for CreateConnection {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::OneOfBuilder;
        CONNECTION_KINDS
            .iter()
            .fold(OneOfBuilder::new(), |one_of, (component, ..)| {
                one_of.item(utoipa::openapi::Ref::from_schema_name(*component))
            })
            .into()
    }
}

/// Each kind's creation object: its component name, `kind`, its credentials'
/// component, and whether credentials are required.
const CONNECTION_KINDS: [(&str, &str, &str, bool); 2] = [
    ("CreateDemoConnection", "demo", "DemoCredentials", false),
    (
        "CreateWildberriesConnection",
        "wildberries",
        "WildberriesCredentials",
        true,
    ),
];

impl ToSchema for CreateConnection {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        for (component, kind, credentials, required) in CONNECTION_KINDS {
            let mut object = ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "kind",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([kind])),
                )
                .property(
                    "name",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(200))
                        .pattern(Some(r"\S")),
                )
                .property(
                    "credentials",
                    utoipa::openapi::Ref::from_schema_name(credentials),
                )
                .required("kind")
                .required("name")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            if required {
                object = object.required("credentials");
            }
            schemas.push((component.to_owned(), object.into()));
        }
        schemas.push((
            "DemoCredentials".to_owned(),
            <DemoCredentials as utoipa::PartialSchema>::schema(),
        ));
        schemas.push((
            "WildberriesCredentials".to_owned(),
            <WildberriesCredentials as utoipa::PartialSchema>::schema(),
        ));
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Connection {
    pub id: Uuid,
    pub kind: MarketplaceKind,
    pub name: String,
    /// Whether credentials are stored for this connection (encrypted, never
    /// returned). False for the demo marketplace, which takes none.
    pub has_credentials: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_synced_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}
