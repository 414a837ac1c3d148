//! Field rules the sections share, for `garde`'s `custom(...)`: URLs of a
//! given scheme (plain or secret) and filter directives. Each message says
//! what a valid value looks like.

use secrecy::{ExposeSecret, SecretString};

/// A URL with one of `schemes`, e.g. `url_of(&["redis", "rediss"])`.
pub fn url_of(schemes: &'static [&'static str]) -> impl FnOnce(&str, &()) -> garde::Result {
    move |value, _| match url::Url::parse(value) {
        Ok(url) if schemes.contains(&url.scheme()) => Ok(()),
        _ => Err(garde::Error::new(format!(
            "must be a URL starting with {}",
            schemes
                .iter()
                .map(|scheme| format!("{scheme}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        ))),
    }
}

/// [`url_of`] for a URL that may hold a password.
pub fn secret_url_of(
    schemes: &'static [&'static str],
) -> impl FnOnce(&SecretString, &()) -> garde::Result {
    move |value, ctx| url_of(schemes)(value.expose_secret(), ctx)
}

/// A URL of `schemes`, or nothing (the feature it configures is off).
pub fn optional_url_of(
    schemes: &'static [&'static str],
) -> impl FnOnce(&str, &()) -> garde::Result {
    move |value, ctx| {
        if value.is_empty() {
            Ok(())
        } else {
            url_of(schemes)(value, ctx)
        }
    }
}
