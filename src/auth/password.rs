//! Password hashing (argon2id, parameters from configuration) and the
//! password policy.
//!
//! Hashing is deliberately slow (tens of milliseconds), so it runs on the
//! blocking thread pool, never on an HTTP worker's event loop, and at most
//! `auth.argon2.max_concurrent` at once (one per core by default): each hash
//! holds `memory_kib` of memory, so a burst of sign-ins queues briefly (then
//! gets 503) instead of multiplying the process's memory. Sign-in with an
//! unknown email verifies against a dummy hash made with the same parameters,
//! so both cases take the same time and the response time does not reveal
//! which emails have accounts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::Argon2Settings;
use crate::http::error::{ApiError, ValidationIssue};
use serde_json::Map;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted: bounds the hashing work an attacker can request.
pub const MAX_PASSWORD_LEN: usize = 128;

#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Arc<Argon2<'static>>,
    dummy_hash: Arc<str>,
    turns: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl PasswordHasher {
    pub fn new(settings: &Argon2Settings) -> anyhow::Result<Self> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|err| anyhow::anyhow!("invalid argon2 parameters: {err}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon2
            .hash_password(b"timing-equalizer-not-a-real-password")
            .map_err(|err| anyhow::anyhow!("hashing the dummy password: {err}"))
            .context("preparing the password hasher")?
            .to_string();
        let turns = match settings.max_concurrent {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(Self {
            argon2: Arc::new(argon2),
            dummy_hash: dummy_hash.into(),
            turns: Arc::new(Semaphore::new(turns)),
            queue_timeout: Duration::from_millis(settings.queue_timeout_ms),
        })
    }

    /// Runs one hash or verification on the blocking pool once a turn is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let turn = tokio::time::timeout(self.queue_timeout, self.turns.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::ServiceUnavailable {
                code: "overloaded",
                detail: "Too many sign-ins are being checked right now; try again shortly".into(),
                retry_after_secs: Some(1),
            })?
            .map_err(ApiError::internal)?;
        let argon2 = self.argon2.clone();
        let result = actix_web::web::block(move || {
            let _turn = turn;
            work(&argon2)
        })
        .await
        .map_err(ApiError::internal)?;
        Ok(result)
    }

    /// Hashes a password on the blocking pool; returns a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move |argon2| {
            argon2
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))
        })
        .await?
        .map_err(ApiError::internal)
    }

    /// Verifies a password against a stored hash, or against the dummy hash
    /// when there is no account, so both take the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, ApiError> {
        let real = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self
            .run(move |argon2| {
                argon2
                    .verify_password(password.as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(real && matches)
    }
}

/// Checks the password policy; the error names the rule that failed.
pub fn check_policy(password: &str, email: &str, field: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LEN {
        return Err(ApiError::Validation(vec![
            ValidationIssue::new(
                vec!["body".into(), field.into()],
                format!("String should have at least {MIN_PASSWORD_LEN} characters"),
                "string_too_short",
            )
            .with_ctx(Some(Map::from_iter([(
                "min_length".into(),
                MIN_PASSWORD_LEN.into(),
            )]))),
        ]));
    }
    if length > MAX_PASSWORD_LEN {
        return Err(ApiError::Validation(vec![
            ValidationIssue::new(
                vec!["body".into(), field.into()],
                format!("String should have at most {MAX_PASSWORD_LEN} characters"),
                "string_too_long",
            )
            .with_ctx(Some(Map::from_iter([(
                "max_length".into(),
                MAX_PASSWORD_LEN.into(),
            )]))),
        ]));
    }
    let lowered = password.to_lowercase();
    if lowered == email.trim().to_lowercase() {
        return Err(ApiError::invalid_value(
            field,
            serde_json::Value::Null,
            "Password must not be the email address",
        ));
    }
    if COMMON_PASSWORDS.contains(&lowered.as_str()) {
        return Err(ApiError::invalid_value(
            field,
            serde_json::Value::Null,
            "Password is too common; choose one that is not on lists of leaked passwords",
        ));
    }
    Ok(())
}

/// OpenAPI schema of a new password: the length rule, and the common
/// passwords excluded (`not: {enum: [...]}`), so clients and fuzzers know
/// the whole policy but for "not the email".
pub fn new_password_schema() -> utoipa::openapi::Object {
    let mut not = utoipa::openapi::extensions::Extensions::default();
    not.insert(
        "not".into(),
        serde_json::json!({ "enum": COMMON_PASSWORDS }),
    );
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Password,
        )))
        .min_length(Some(MIN_PASSWORD_LEN))
        .max_length(Some(MAX_PASSWORD_LEN))
        .description(Some(
            "At least 10 characters, not the email address, not a common password",
        ))
        .extensions(Some(not))
        .build()
}

/// Frequent entries of public leaked-password lists that pass the length
/// rule; compared case-insensitively.
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789a",
    "0987654321",
    "1111111111",
    "0000000000",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "qwertyuiop",
    "qwerty1234",
    "qwerty12345",
    "qwerty123456",
    "asdfghjkl1",
    "zxcvbnm123",
    "password12",
    "password123",
    "password1234",
    "password!23",
    "passw0rd123",
    "p@ssw0rd123",
    "p@ssword123",
    "iloveyou123",
    "princess123",
    "sunshine123",
    "football123",
    "baseball123",
    "superman123",
    "letmein1234",
    "welcome123",
    "welcome1234",
    "administrator",
    "admin12345",
    "admin123456",
    "changeme123",
    "trustno1234",
    "monkey12345",
    "dragon12345",
    "master12345",
    "abcdefghij",
    "abc1234567",
    "abcd123456",
    "aa12345678",
    "1234qwerty",
    "q1w2e3r4t5",
    "qazwsxedcrfv",
    "1q2w3e4r5t6y",
    "passwordpassword",
    "iloveyou1234",
    "starwars123",
    "whatever123",
    "computer123",
    "michael1234",
    "jennifer123",
    "charlie123",
    "liverpool123",
    "chocolate1",
    "chocolate123",
    "butterfly1",
    "basketball",
    "basketball1",
    "football1",
    "blink182blink182",
    "1234554321",
    "9876543210",
    "5555555555",
    "7777777777",
    "qwertyqwerty",
    "asdfasdfasdf",
    "correcthorsebatterystaple",
    "stocktracker",
    "stocktracker1",
    "stocktracker123",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_reads_as_pydantic_would_report_it() {
        let issue = |pw: &str| match check_policy(pw, "ann@example.com", "password") {
            Err(ApiError::Validation(issues)) => {
                let issue = issues[0].clone();
                let error = issue.ctx.as_ref().and_then(|ctx| ctx.get("error")).cloned();
                (
                    issue.kind,
                    error.and_then(|e| e.as_str().map(str::to_owned)),
                )
            }
            Err(other) => panic!("unexpected {other:?}"),
            Ok(()) => ("ok".into(), None),
        };
        assert_eq!(issue("short").0, "string_too_short");
        assert_eq!(
            issue(&"x".repeat(MAX_PASSWORD_LEN + 1)).0,
            "string_too_long"
        );
        let (kind, error) = issue("ANN@example.com");
        assert_eq!(kind, "value_error");
        assert!(error.unwrap().contains("email address"));
        let (kind, error) = issue("Password123");
        assert_eq!(kind, "value_error");
        assert!(error.unwrap().contains("too common"));
        assert_eq!(issue("correct-horse-battery").0, "ok");
    }

    #[tokio::test]
    async fn hashes_beyond_the_concurrency_cap_wait_then_get_503() {
        let settings = Argon2Settings {
            memory_kib: 65_536,
            iterations: 3,
            parallelism: 1,
            max_concurrent: 1,
            queue_timeout_ms: 5,
        };
        let hasher = PasswordHasher::new(&settings).unwrap();
        let first = hasher.hash("correct-horse-battery".into());
        let second = async {
            // Starts once the first holds the only turn.
            tokio::task::yield_now().await;
            hasher.hash("correct-horse-battery".into()).await
        };
        let (first, second) = tokio::join!(first, second);
        assert!(first.is_ok());
        match second {
            Err(ApiError::ServiceUnavailable { code, .. }) => assert_eq!(code, "overloaded"),
            other => panic!("expected 503, got {other:?}"),
        }
        // With the turn free again, the next one runs.
        assert!(
            hasher
                .verify("correct-horse-battery".into(), first.ok())
                .await
                .unwrap()
        );
    }
}
