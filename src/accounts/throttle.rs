//! At most `auth.account_emails_per_address_per_hour` account emails per
//! address, counted in Redis by a hash of the normalised address (shared by
//! every replica). Past it a request is answered as usual and sends
//! nothing, so the answer still reveals nothing. If Redis cannot answer,
//! emails go out (the per-IP rule `rate_limit.rules.account_emails` still
//! applies).

use sha2::{Digest, Sha256};

use crate::infra::Infra;
use crate::redis_conn::tag;

const WINDOW_SECS: i64 = 3600;

/// Counts one email to `email`; false when the address has had its share.
pub async fn allow(infra: &Infra, email: &str) -> bool {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    let key = format!(
        "{}account_emails:{}",
        infra.settings.redis.key_prefix,
        tag(hex::encode(&digest[..16]))
    );
    let counted = infra
        .redis_guard
        .run("accounts.email_throttle", async {
            let mut conn = infra.redis.connection();
            let (count,): (u32,) = redis::pipe()
                .incr(&key, 1)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(WINDOW_SECS)
                .arg("NX")
                .ignore()
                .query_async(&mut conn)
                .await?;
            Ok(count)
        })
        .await;
    match counted {
        Ok(count) => count <= infra.settings.auth.account_emails_per_address_per_hour,
        Err(err) => {
            tracing::warn!(error = %err, "account email throttle unavailable: sending anyway");
            true
        }
    }
}
