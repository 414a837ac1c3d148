//! Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256, authenticated) with a
//! key ring. The first configured key encrypts; every key decrypts, so keys
//! rotate without downtime: add a new key first, re-encrypt
//! (`stock-tracker rotate-keys`), then drop the old key.

use anyhow::Context;
use fernet::{Fernet, MultiFernet};
use secrecy::{ExposeSecret, SecretString};

pub struct SecretBox {
    ring: MultiFernet,
    primary: Fernet,
}

impl SecretBox {
    pub fn new(keys: &[SecretString]) -> anyhow::Result<Self> {
        let fernets = keys
            .iter()
            .map(|key| Fernet::new(key.expose_secret()))
            .collect::<Option<Vec<_>>>()
            .context("`secrets.fernet_keys` holds an invalid key")?;
        let primary = fernets
            .first()
            .cloned()
            .context("`secrets.fernet_keys` is empty")?;
        Ok(Self {
            ring: MultiFernet::new(fernets),
            primary,
        })
    }

    /// Encrypts with the primary key.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        self.primary.encrypt(plaintext)
    }

    /// Decrypts with whichever configured key made the token.
    pub fn decrypt(&self, token: &str) -> anyhow::Result<Vec<u8>> {
        self.ring
            .decrypt(token)
            .map_err(|_| anyhow::anyhow!("no configured Fernet key decrypts this value"))
    }

    /// Whether the token was made with the primary key (no rotation needed).
    pub fn is_current(&self, token: &str) -> bool {
        self.primary.decrypt(token).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretString {
        SecretString::from(Fernet::generate_key())
    }

    #[test]
    fn the_first_key_encrypts_and_every_key_decrypts() {
        let (old, new) = (key(), key());
        let token = SecretBox::new(std::slice::from_ref(&old))
            .unwrap()
            .encrypt(b"secret");
        let rotated = SecretBox::new(&[new.clone(), old]).unwrap();
        assert_eq!(rotated.decrypt(&token).unwrap(), b"secret");
        assert!(!rotated.is_current(&token));
        let reencrypted = rotated.encrypt(b"secret");
        assert!(rotated.is_current(&reencrypted));
        assert!(SecretBox::new(&[new]).unwrap().decrypt(&token).is_err());
    }
}
