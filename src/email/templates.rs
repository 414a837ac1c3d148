//! Each kind of email's subject, text and HTML, rendered with minijinja from
//! the files beside this one (HTML auto-escaped by the `.html` name).

use std::sync::LazyLock;

use minijinja::Environment;
use serde::Serialize;
use serde_json::Value;

use crate::mailer::Email;

/// The kinds of account email (`email_messages.kind`, the metrics' `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    PasswordReset,
    EmailVerification,
    Invitation,
}

impl Kind {
    pub const ALL: [Kind; 3] = [
        Kind::PasswordReset,
        Kind::EmailVerification,
        Kind::Invitation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PasswordReset => "password_reset",
            Kind::EmailVerification => "email_verification",
            Kind::Invitation => "invitation",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A variable a template names but the context lacks is an error, not "".
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let files = [
        (
            "password_reset.subject",
            include_str!("templates/password_reset.subject"),
        ),
        (
            "password_reset.txt",
            include_str!("templates/password_reset.txt"),
        ),
        (
            "password_reset.html",
            include_str!("templates/password_reset.html"),
        ),
        (
            "email_verification.subject",
            include_str!("templates/email_verification.subject"),
        ),
        (
            "email_verification.txt",
            include_str!("templates/email_verification.txt"),
        ),
        (
            "email_verification.html",
            include_str!("templates/email_verification.html"),
        ),
        (
            "invitation.subject",
            include_str!("templates/invitation.subject"),
        ),
        ("invitation.txt", include_str!("templates/invitation.txt")),
        ("invitation.html", include_str!("templates/invitation.html")),
    ];
    for (name, source) in files {
        env.add_template(name, source)
            .expect("the email templates parse (checked by a test)");
    }
    env
});

/// Renders `kind` to `to`: `context` is the message's stored context, to
/// which the link and the product name are added.
pub fn render(
    kind: Kind,
    to: &str,
    context: &Value,
    link: &str,
    product_name: &str,
) -> Result<Email, minijinja::Error> {
    let mut values = context.as_object().cloned().unwrap_or_default();
    values.insert("link".into(), link.into());
    values.insert("product_name".into(), product_name.into());
    values.insert("email".into(), to.into());
    let context = minijinja::Value::from(minijinja::value::Serde(values));
    let part = |suffix: &str| {
        TEMPLATES
            .get_template(&format!("{}.{suffix}", kind.as_str()))?
            .render(&context)
    };
    Ok(Email {
        to: to.to_owned(),
        subject: part("subject")?.trim().to_owned(),
        text: part("txt")?,
        html: part("html")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(kind: Kind) -> Email {
        let context = json!({
            "full_name": "Ann <script>",
            "expires_in_minutes": 30,
            "expires_in_hours": 24,
            "expires_in_days": 7,
            "inviter": "Ann <script>",
            "tenant_name": "Acme & Co",
            "role": "member",
        });
        render(
            kind,
            "ann@example.com",
            &context,
            "https://st.example.com/reset?token=abc&x=1",
            "Stock Tracker",
        )
        .unwrap()
    }

    #[test]
    fn every_kind_renders_its_subject_link_and_product_name() {
        for kind in Kind::ALL {
            let email = sample(kind);
            assert!(email.subject.contains("Stock Tracker"), "{kind:?}");
            assert!(!email.subject.contains('\n'), "{kind:?}");
            assert!(
                email
                    .text
                    .contains("https://st.example.com/reset?token=abc&x=1")
            );
            assert!(email.text.contains("ann@example.com"));
            // Escaped in HTML, `&` (and minijinja escapes `/` as well).
            assert!(email.html.contains("st.example.com"), "{}", email.html);
            assert!(email.html.contains("token=abc&amp;x=1"), "{}", email.html);
        }
    }

    #[test]
    fn html_escapes_what_users_typed_and_text_keeps_it() {
        for kind in Kind::ALL {
            let email = sample(kind);
            assert!(email.html.contains("Ann &lt;script&gt;"), "{}", email.html);
            assert!(!email.html.contains("Ann <script>"), "{}", email.html);
            assert!(email.text.contains("Ann <script>"));
        }
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("newsletter"), None);
    }
}
