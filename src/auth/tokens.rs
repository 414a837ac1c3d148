//! Credentials the service issues.
//!
//! - **Access tokens**: JWTs (HS256 by default, RS256 by configuration),
//!   short-lived, verified without any I/O. Claims: `sub` (user), `tid`
//!   (tenant), `role`, `tier`, `sid` (the refresh-token family, so logout can
//!   end the session), `jti` (a UUID v7, whose embedded millisecond timestamp
//!   is compared with a user's "invalid before" mark), `iat`, `exp`, `iss`,
//!   `aud`. Only the configured algorithm is accepted (never `none`).
//! - **Refresh tokens**: 256 random bits, opaque, single-use; stored as SHA-256.
//! - **API keys**: `stk_<prefix>_<secret>`: the prefix identifies the key in
//!   listings, the secret carries 256 random bits; stored as SHA-256.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::roles::{Role, Tier};
use crate::config::{AuthSettings, JwtAlgorithm};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub tid: Uuid,
    pub role: Role,
    pub tier: Tier,
    pub sid: Uuid,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// When the session's password sign-in happened (Unix seconds; 0 when
    /// unknown: a session opened before the claim existed counts as long ago).
    #[serde(default)]
    pub auth_time: i64,
}

impl AccessClaims {
    /// When the token was minted, in Unix milliseconds (from the UUID v7 `jti`).
    pub fn issued_at_ms(&self) -> i64 {
        self.jti
            .get_timestamp()
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                secs as i64 * 1000 + i64::from(nanos / 1_000_000)
            })
            .unwrap_or(self.iat * 1000)
    }
}

/// Why a presented access token was refused. The client sees one generic
/// message; the reason goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("algorithm not accepted")]
    WrongAlgorithm,
    #[error("expired")]
    Expired,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing or malformed claim")]
    BadClaims,
}

pub struct IssuedAccessToken {
    pub token: String,
    pub claims: AccessClaims,
    pub expires_in: u64,
}

/// Signs and verifies access tokens with the configured key.
pub struct TokenKeys {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl TokenKeys {
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let (algorithm, encoding, decoding) = match settings.jwt_algorithm {
            JwtAlgorithm::HS256 => {
                let secret = settings.jwt_secret.expose_secret().as_bytes();
                (
                    Algorithm::HS256,
                    EncodingKey::from_secret(secret),
                    DecodingKey::from_secret(secret),
                )
            }
            JwtAlgorithm::RS256 => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(settings.jwt_private_key_pem.expose_secret().as_bytes())?,
                DecodingKey::from_rsa_pem(settings.jwt_public_key_pem.as_bytes())?,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.set_issuer(&[&settings.jwt_issuer]);
        validation.set_audience(&[&settings.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = settings.leeway_secs;
        validation.validate_exp = true;
        Ok(Self {
            algorithm,
            encoding,
            decoding,
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            ttl_secs: settings.access_token_ttl_secs,
        })
    }

    pub fn issue(
        &self,
        user_id: Uuid,
        tenant_id: Uuid,
        role: Role,
        tier: Tier,
        session_id: Uuid,
        authenticated_at: i64,
    ) -> anyhow::Result<IssuedAccessToken> {
        let now = unix_now();
        let claims = AccessClaims {
            sub: user_id,
            tid: tenant_id,
            role,
            tier,
            sid: session_id,
            jti: Uuid::now_v7(),
            iat: now,
            exp: now + self.ttl_secs as i64,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            auth_time: authenticated_at,
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)?;
        Ok(IssuedAccessToken {
            token,
            claims,
            expires_in: self.ttl_secs,
        })
    }

    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenRejection> {
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidSignature => TokenRejection::BadSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::UnsupportedAlgorithm => TokenRejection::WrongAlgorithm,
                ErrorKind::ExpiredSignature => TokenRejection::Expired,
                ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
                ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
                ErrorKind::MissingRequiredClaim(_)
                | ErrorKind::InvalidClaimFormat(_)
                | ErrorKind::Json(_) => TokenRejection::BadClaims,
                _ => TokenRejection::Malformed,
            })
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of a high-entropy secret: what the database stores and looks up.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A new refresh token and its hash.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let token = format!("rt_{}", random_token(32));
    let hash = hash_secret(&token);
    (token, hash)
}

/// A new token for an emailed link (password reset, email verification) and its hash.
pub fn new_emailed_token() -> (String, Vec<u8>) {
    let token = format!("et_{}", random_token(32));
    let hash = hash_secret(&token);
    (token, hash)
}

pub const API_KEY_PREFIX: &str = "stk_";

pub struct NewApiKey {
    /// The whole key, shown to its creator once.
    pub key: String,
    /// The public part that identifies the key (`stk_` and 8 characters).
    pub prefix: String,
    pub hash: Vec<u8>,
}

pub fn new_api_key() -> NewApiKey {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 8];
    rand::rng().fill_bytes(&mut raw);
    let id: String = raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let prefix = format!("{API_KEY_PREFIX}{id}");
    let key = format!("{prefix}_{}", random_token(32));
    let hash = hash_secret(&key);
    NewApiKey { key, prefix, hash }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn keys() -> TokenKeys {
        let settings = Settings::load(None).unwrap();
        TokenKeys::from_settings(&settings.auth).unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_claims() {
        let keys = keys();
        let (user, tenant, session) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let issued = keys
            .issue(user, tenant, Role::Admin, Tier::Premium, session, 0)
            .unwrap();
        let claims = keys.verify(&issued.token).unwrap();
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.sub, user);
        assert_eq!(claims.tid, tenant);
        assert!((claims.issued_at_ms() / 1000 - claims.iat).abs() <= 1);
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let keys = keys();
        let issued = keys
            .issue(
                Uuid::now_v7(),
                Uuid::now_v7(),
                Role::Viewer,
                Tier::Free,
                Uuid::now_v7(),
                0,
            )
            .unwrap();
        let mut parts: Vec<&str> = issued.token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&AccessClaims {
                role: Role::Owner,
                ..issued.claims.clone()
            })
            .unwrap(),
        );
        parts[1] = &forged_payload;
        assert_eq!(
            keys.verify(&parts.join(".")),
            Err(TokenRejection::BadSignature)
        );
        assert_eq!(keys.verify("not-a-jwt"), Err(TokenRejection::Malformed));
    }

    #[test]
    fn api_keys_have_a_visible_prefix_and_hash_consistently() {
        let key = new_api_key();
        assert!(key.key.starts_with(&key.prefix));
        assert_eq!(key.prefix.len(), API_KEY_PREFIX.len() + 8);
        assert_eq!(hash_secret(&key.key), key.hash);
        assert_ne!(new_api_key().key, key.key);
    }
}
