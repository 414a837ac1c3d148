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

/// The shape of an IANA time zone name (`Europe/Moscow`, `Etc/GMT+5`,
/// `UTC`), for the OpenAPI document; which names exist is the server's check.
pub const TIMEZONE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$";

/// OpenAPI schema of an optional IANA time zone: a string (or null: no
/// change). Not an enum of the ~600 names the server accepts: several of
/// them (`GMT0`, `GMT+0`, `GMT-0`, ...) become one identifier in generated
/// clients, which then refuse the document.
pub fn timezone_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(TIMEZONE_PATTERN))
        .max_length(Some(64))
        .description(Some(
            "IANA time zone name from the tz database, such as `Europe/Moscow` or `UTC`; \
             names the database does not have are refused (422)",
        ))
        .examples(["Europe/Moscow"])
        .build()
}

pub fn valid_timezone(value: &str, _: &()) -> garde::Result {
    value.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        garde::Error::new("not an IANA time zone name such as `Europe/Moscow` or `UTC`")
    })
}
