//! Validation rules shared by request types (garde custom rules), for what
//! the built-in rules do not say: text that is not blank once trimmed, and
//! no NUL characters (PostgreSQL text cannot store them).

/// The OpenAPI `pattern` of every text field: no NUL character.
pub const NO_NUL_PATTERN: &str = r"^[^\u0000]*$";

/// The OpenAPI `pattern` of non-blank text fields: no NUL, and at least one
/// character that is not whitespace. Whitespace is spelled out as Unicode's
/// White_Space set — what Rust's `trim` removes — because regex engines
/// disagree on `\s`. Request types declare `pattern = r"\S"` and the
/// document generator widens it to this.
pub const NOT_BLANK_PATTERN: &str = concat!(
    r"^[^\u0000]*",
    r"[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    r"[^\u0000]*$"
);

pub fn not_blank(value: &str, _: &()) -> garde::Result {
    if value.trim().is_empty() {
        Err(garde::Error::new("must not be blank"))
    } else {
        Ok(())
    }
}

pub fn no_nul(value: &str, _: &()) -> garde::Result {
    if value.contains('\0') {
        Err(garde::Error::new("must not contain NUL characters"))
    } else {
        Ok(())
    }
}

/// OpenAPI schema of an optional IANA time zone: the closed list the
/// service accepts, or null (no change).
pub fn timezone_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    let names = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| serde_json::Value::from(tz.name()))
        .chain([serde_json::Value::Null]);
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(names))
        .description(Some("IANA time zone name"))
        .examples(["Europe/Moscow"])
        .build()
}

pub fn valid_timezone(value: &str, _: &()) -> garde::Result {
    value.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        garde::Error::new("not an IANA time zone name such as `Europe/Moscow` or `UTC`")
    })
}
