//! How an email leaves the process (`[email] mode`): written to the log, or
//! sent over SMTP with `lettre` (async, rustls; STARTTLS or implicit TLS;
//! pooled connections). What is sent, and when it is retried, is the
//! `email` domain's business.

use std::time::Duration;

use anyhow::Context;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailMode, EmailSettings, SmtpTls};

/// One email, rendered.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why an email was not sent. `permanent` failures (the server refused the
/// recipient or the message: SMTP 5xx, an address that cannot be parsed)
/// are not retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSent {
    pub permanent: bool,
    pub reason: String,
}

pub enum Mailer {
    Log,
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl Mailer {
    /// Builds the transport (connections open on the first send). `timeout`
    /// bounds each SMTP command.
    pub fn new(settings: &EmailSettings, timeout: Duration) -> anyhow::Result<Self> {
        if settings.mode == EmailMode::Log {
            return Ok(Mailer::Log);
        }
        let host = settings.smtp_host.trim();
        let tls = match settings.smtp_tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(TlsParameters::new(host.to_owned())?),
            SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(host.to_owned())?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(settings.smtp_port)
            .tls(tls)
            .timeout(Some(timeout));
        if !settings.smtp_username.is_empty() {
            let password = settings
                .smtp_password()
                .context("reading email.smtp_password_file")?;
            builder =
                builder.credentials(Credentials::new(settings.smtp_username.clone(), password));
        }
        let from = settings.from.parse().context("email.from")?;
        Ok(Mailer::Smtp {
            transport: builder.build(),
            from,
        })
    }

    /// Sends (or logs) one email.
    pub async fn send(&self, email: &Email) -> Result<(), NotSent> {
        let (transport, from) = match self {
            Mailer::Log => {
                tracing::info!(
                    to = %email.to,
                    subject = %email.subject,
                    text = %email.text,
                    "email written to the log, not sent (email.mode = log)"
                );
                return Ok(());
            }
            Mailer::Smtp { transport, from } => (transport, from),
        };
        let to: Mailbox = email.to.parse().map_err(|_| NotSent {
            permanent: true,
            reason: "the recipient is not a valid address".into(),
        })?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(email.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|err| NotSent {
                permanent: true,
                reason: format!("the message could not be built: {err}"),
            })?;
        transport
            .send(message)
            .await
            .map(drop)
            .map_err(|err| NotSent {
                permanent: err.is_permanent(),
                reason: describe(&err),
            })
    }
}

/// What went wrong, without the server's full dialogue: its reply code and
/// first line, a timeout, or the connection's failure.
fn describe(err: &lettre::transport::smtp::Error) -> String {
    if let Some(code) = err.status() {
        let text = err.to_string();
        let first = text.lines().next().unwrap_or_default();
        return format!("the SMTP server answered {code}: {first}");
    }
    if err.is_timeout() {
        return "the SMTP server did not answer in time".into();
    }
    if err.is_tls() {
        return "the TLS handshake with the SMTP server failed".into();
    }
    format!("the SMTP server could not be reached: {err}")
}
