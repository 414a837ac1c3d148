//! `[email]`: how account emails (password reset, email verification) leave
//! the service — written to the log (development) or sent over SMTP.

use std::path::PathBuf;

use garde::Validate;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailMode {
    /// Each email is written to the log (recipient, subject, text), not sent.
    Log,
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP: a relay on the same host or network only.
    None,
    /// Plain connection upgraded with STARTTLS (refused if the server does not offer it).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    #[garde(skip)]
    pub mode: EmailMode,
    #[garde(length(max = 253))]
    pub smtp_host: String,
    #[garde(range(min = 1))]
    pub smtp_port: u16,
    #[garde(skip)]
    pub smtp_tls: SmtpTls,
    /// Empty: the server is not asked to authenticate.
    #[garde(length(max = 320))]
    pub smtp_username: String,
    /// A file holding the SMTP password (a mounted secret); or set
    /// `smtp_password` (`STOCK_TRACKER__EMAIL__SMTP_PASSWORD`).
    #[garde(skip)]
    pub smtp_password_file: Option<PathBuf>,
    #[garde(skip)]
    pub smtp_password: SecretString,
    /// The sender, e.g. `Stock Tracker <no-reply@example.com>`.
    #[garde(length(min = 3, max = 320))]
    pub from: String,
    /// Shown in subjects and bodies.
    #[garde(length(min = 1, max = 100))]
    pub product_name: String,
}

impl EmailSettings {
    pub(super) fn check(&self, production: bool) -> Result<(), ConfigError> {
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return invalid(
                "email.from",
                "must be an address, optionally with a name: `Name <address@example.com>`",
            );
        }
        if self.mode != EmailMode::Smtp {
            return Ok(());
        }
        if self.smtp_host.trim().is_empty() {
            return invalid("email.smtp_host", "must be set when email.mode is smtp");
        }
        let has_password = !self.smtp_password.expose_secret().is_empty();
        if has_password && self.smtp_password_file.is_some() {
            return invalid(
                "email.smtp_password_file",
                "and email.smtp_password are both set; keep one",
            );
        }
        if self.smtp_username.is_empty() && (has_password || self.smtp_password_file.is_some()) {
            return invalid(
                "email.smtp_username",
                "must be set when a password is (email.smtp_password or email.smtp_password_file)",
            );
        }
        if let Some(path) = &self.smtp_password_file
            && !path.is_file()
        {
            return invalid(
                "email.smtp_password_file",
                format!("`{}` is not a readable file", path.display()),
            );
        }
        if production && self.smtp_tls == SmtpTls::None && !self.smtp_username.is_empty() {
            return invalid(
                "email.smtp_tls",
                "is none while credentials are set: production sends them only over TLS (starttls or tls)",
            );
        }
        Ok(())
    }

    /// The SMTP password, from its file or the setting (read when the
    /// process builds its mailer).
    pub fn smtp_password(&self) -> std::io::Result<String> {
        match &self.smtp_password_file {
            Some(path) => Ok(std::fs::read_to_string(path)?.trim_end().to_owned()),
            None => Ok(self.smtp_password.expose_secret().to_owned()),
        }
    }
}
