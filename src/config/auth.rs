//! `[auth]` and `[auth.argon2]`: token signing and lifetimes, the API-key
//! cache, and password hashing.

use garde::Validate;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, invalid};

/// Shortest JWT secret accepted in production: 256 bits, the HS256 key size.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// OWASP's minimum argon2id configuration (Password Storage Cheat Sheet).
pub const ARGON2_MIN_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_MIN_ITERATIONS: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[garde(skip)]
    pub jwt_algorithm: JwtAlgorithm,
    #[garde(skip)]
    pub jwt_secret: SecretString,
    #[garde(skip)]
    pub jwt_private_key_pem: SecretString,
    #[garde(skip)]
    pub jwt_public_key_pem: String,
    #[garde(length(min = 1))]
    pub jwt_issuer: String,
    #[garde(length(min = 1))]
    pub jwt_audience: String,
    /// Access tokens are meant to be short-lived.
    #[garde(range(min = 60, max = 86_400))]
    pub access_token_ttl_secs: u64,
    #[garde(skip)]
    pub refresh_token_ttl_secs: u64,
    #[garde(range(max = 300))]
    pub leeway_secs: u64,
    #[garde(range(min = 1, max = 3600))]
    pub api_key_cache_ttl_secs: u64,
    /// How often each API process applies the invalidations recorded in
    /// PostgreSQL to Redis: the bound on a revocation reaching every
    /// replica when the Redis write that followed it was lost.
    #[garde(range(min = 100, max = 60_000))]
    pub invalidation_replay_ms: u64,
    #[garde(dive)]
    pub argon2: Argon2Settings,
    #[garde(dive)]
    pub login_backoff: LoginBackoffSettings,
    /// Admin-level credentials need a password sign-in this recent.
    #[garde(range(min = 60, max = 86_400))]
    pub reauthentication_secs: u64,
    #[garde(dive)]
    pub first_admin: FirstAdminSettings,
    /// Who may create a tenant with `POST /auth/register`.
    #[garde(skip)]
    pub registration: Registration,
    /// Whether a user must have verified their address to sign in; unset:
    /// yes in production, no in development ([`Self::requires_verified_email`]).
    #[garde(skip)]
    pub require_verified_email: Option<bool>,
    /// How long an emailed password-reset link works.
    #[garde(range(min = 60, max = 86_400))]
    pub password_reset_ttl_secs: u64,
    /// How long an emailed verification link works.
    #[garde(range(min = 60, max = 2_592_000))]
    pub email_verification_ttl_secs: u64,
    /// How long an emailed invitation works.
    #[garde(range(min = 3600, max = 2_592_000))]
    pub invitation_ttl_secs: u64,
    /// Account emails (reset, verification) one address may be sent per
    /// hour; requests past it are answered as usual and send nothing.
    #[garde(range(min = 1, max = 100))]
    pub account_emails_per_address_per_hour: u32,
}

/// `[auth.first_admin]`: the platform administrator `migrate` creates.
#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct FirstAdminSettings {
    /// Empty: none.
    #[garde(length(max = 320))]
    pub email: String,
    /// A file holding its password; unset: `migrate` prints a one-time setup link.
    #[garde(skip)]
    pub password_file: Option<std::path::PathBuf>,
    /// The tenant created for it (tier `internal`).
    #[garde(length(min = 1, max = 200))]
    pub tenant_name: String,
}

/// `auth.registration`: who may create a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Anyone (`POST /auth/register`).
    Open,
    /// Only people an admin invited, into the inviting tenant.
    InviteOnly,
    /// Nobody: accounts come from the first administrator and invitations.
    Closed,
}

/// `[auth.login_backoff]`: see `auth::login_backoff`.
#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct LoginBackoffSettings {
    #[garde(range(min = 1, max = 100))]
    pub free_attempts: u32,
    #[garde(range(min = 1, max = 60_000))]
    pub base_ms: u64,
    #[garde(range(min = 1, max = 86_400))]
    pub max_secs: u64,
    #[garde(range(min = 60, max = 604_800))]
    pub reset_after_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Argon2Settings {
    #[garde(range(min = ARGON2_MIN_MEMORY_KIB))]
    pub memory_kib: u32,
    #[garde(range(min = ARGON2_MIN_ITERATIONS))]
    pub iterations: u32,
    #[garde(range(min = 1, max = 16))]
    pub parallelism: u32,
    /// Hashes computed at once (each holds `memory_kib`); 0: one per core.
    #[garde(skip)]
    pub max_concurrent: usize,
    /// A sign-in waits this long for a turn, then gets 503.
    #[garde(skip)]
    pub queue_timeout_ms: u64,
}

/// The development JWT secret shipped in the default file, which production refuses.
pub(super) fn default_jwt_secret() -> String {
    super::shipped_default("auth.jwt_secret")
}

impl AuthSettings {
    /// Whether sign-in needs a verified address (`require_verified_email`,
    /// by default only in production).
    pub fn requires_verified_email(&self, production: bool) -> bool {
        self.require_verified_email.unwrap_or(production)
    }

    /// Signs with the development secret shipped in the default file.
    pub(super) fn uses_built_in_secret(&self) -> bool {
        self.jwt_algorithm == JwtAlgorithm::HS256
            && self.jwt_secret.expose_secret() == default_jwt_secret()
    }

    /// The rules that depend on the algorithm, on another key or on the environment.
    pub(super) fn check(&self, production: bool) -> Result<(), ConfigError> {
        match self.jwt_algorithm {
            JwtAlgorithm::HS256 => {
                let secret = self.jwt_secret.expose_secret();
                if secret.is_empty() {
                    return invalid("auth.jwt_secret", "must not be empty");
                }
                if production && secret == default_jwt_secret() {
                    return invalid(
                        "auth.jwt_secret",
                        "is the built-in development default; set STOCK_TRACKER__AUTH__JWT_SECRET to a random value of at least 32 bytes",
                    );
                }
                if production && secret.len() < MIN_JWT_SECRET_BYTES {
                    return invalid(
                        "auth.jwt_secret",
                        format!(
                            "is {} bytes long; production requires at least {MIN_JWT_SECRET_BYTES}",
                            secret.len()
                        ),
                    );
                }
            }
            JwtAlgorithm::RS256 => {
                let private = self.jwt_private_key_pem.expose_secret().as_bytes();
                if jsonwebtoken::EncodingKey::from_rsa_pem(private).is_err() {
                    return invalid(
                        "auth.jwt_private_key_pem",
                        "must be a PEM-encoded RSA private key when auth.jwt_algorithm is RS256",
                    );
                }
                let public = self.jwt_public_key_pem.as_bytes();
                if jsonwebtoken::DecodingKey::from_rsa_pem(public).is_err() {
                    return invalid(
                        "auth.jwt_public_key_pem",
                        "must be a PEM-encoded RSA public key when auth.jwt_algorithm is RS256",
                    );
                }
            }
        }
        if self.refresh_token_ttl_secs <= self.access_token_ttl_secs {
            return invalid(
                "auth.refresh_token_ttl_secs",
                "must be longer than auth.access_token_ttl_secs",
            );
        }
        Ok(())
    }
}
