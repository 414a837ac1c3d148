//! `[secrets]`: the Fernet key ring that encrypts credentials at rest.

use garde::Validate;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, invalid, list_or_comma_separated};

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// The first key encrypts; every key decrypts (rotation).
    #[serde(deserialize_with = "list_or_comma_separated")]
    #[garde(length(min = 1), inner(custom(fernet_key)))]
    pub fernet_keys: Vec<SecretString>,
}

fn fernet_key(key: &SecretString, _: &()) -> garde::Result {
    match fernet::Fernet::new(key.expose_secret()) {
        Some(_) => Ok(()),
        None => Err(garde::Error::new(
            "is not a Fernet key (URL-safe base64 of 32 bytes; generate one with `python3 -c \"import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())\"`)",
        )),
    }
}

/// Development keys published with the deployment files (docker-compose.yml
/// and .env.example, k8s/overlays/dev/secrets.env): public like the built-in
/// one, so production refuses them too. A test keeps this list complete.
const PUBLISHED_DEVELOPMENT_KEYS: [&str; 2] = [
    "kIrvoLD1Jww3j7GRWGmyav1iOlTvavwjG-enBUatMmg=",
    "T4NYjGHZCr_YKaWupAqyQP7Mt7Am54cHvoxU2Gc2k9g=",
];

impl SecretsSettings {
    /// The key ring holds the development key shipped in the default file.
    pub(super) fn uses_built_in_key(&self) -> bool {
        let shipped: Vec<String> = super::shipped_default("secrets.fernet_keys");
        self.fernet_keys
            .iter()
            .any(|key| shipped.iter().any(|d| d == key.expose_secret()))
    }

    /// Production needs its own keys.
    pub(super) fn check(&self, production: bool) -> Result<(), ConfigError> {
        let published = self
            .fernet_keys
            .iter()
            .any(|key| PUBLISHED_DEVELOPMENT_KEYS.contains(&key.expose_secret()));
        if production && (self.uses_built_in_key() || published) {
            return invalid(
                "secrets.fernet_keys",
                "contains a public development key (built in, or of the compose stack or the dev overlay); production needs its own keys",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Fernet key written in a deployment file is one production refuses.
    #[test]
    fn production_refuses_every_key_published_with_the_deployment_files() {
        let files = [
            include_str!("../../docker-compose.yml"),
            include_str!("../../.env.example"),
            include_str!("../../k8s/overlays/dev/secrets.env"),
        ];
        let mut published = 0;
        for file in files {
            // A key ends its word: `FERNET_KEYS=<key>`, `${FERNET_KEYS:-<key>}`.
            for word in file.split(|c: char| c.is_whitespace() || "\"'{}:,[]".contains(c)) {
                let Some(candidate) = word.get(word.len().saturating_sub(44)..) else {
                    continue;
                };
                if candidate.len() == 44 && fernet::Fernet::new(candidate).is_some() {
                    published += 1;
                    let settings = SecretsSettings {
                        fernet_keys: vec![SecretString::from(candidate)],
                    };
                    let err = settings.check(true).unwrap_err().to_string();
                    assert!(err.contains("public development key"), "{candidate}: {err}");
                }
            }
        }
        assert!(
            published >= 3,
            "found {published} keys in the deployment files"
        );
    }
}
