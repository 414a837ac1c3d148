//! `stock-tracker rotate-keys`: every stored secret re-encrypted under the
//! first key of `secrets.fernet_keys`, so the old keys can be dropped.
//!
//! [`ENCRYPTED_COLUMNS`] is the one list of columns that hold Fernet tokens;
//! a test finds every column holding one and fails if it is not listed here.
//! Rows go in batches, each locked and rewritten in its own transaction, and
//! rows already under the first key are left alone: the command can be
//! interrupted at any point and run again.

use anyhow::Context;
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::db::{self, observed};

/// A column of Fernet tokens: what it holds, its table and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptedColumn {
    pub holds: &'static str,
    pub table: &'static str,
    pub column: &'static str,
}

pub const ENCRYPTED_COLUMNS: [EncryptedColumn; 4] = [
    EncryptedColumn {
        holds: "marketplace credentials",
        table: "marketplace_connections",
        column: "credentials_encrypted",
    },
    EncryptedColumn {
        holds: "webhook signing secrets",
        table: "webhook_subscriptions",
        column: "secret_encrypted",
    },
    EncryptedColumn {
        holds: "Telegram bot tokens",
        table: "telegram_chats",
        column: "bot_token_encrypted",
    },
    EncryptedColumn {
        holds: "links of unsent account emails",
        table: "email_messages",
        column: "link_encrypted",
    },
];

/// Rows locked and rewritten per transaction.
const BATCH: i64 = 100;

/// What one column's rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub column: EncryptedColumn,
    /// Re-encrypted under the first key.
    pub rotated: usize,
    /// Already under it.
    pub current: usize,
}

/// Re-encrypts every column of [`ENCRYPTED_COLUMNS`], as the tables' owner
/// (outside row-level security), straight to PostgreSQL.
pub async fn rotate_keys(settings: &Settings) -> anyhow::Result<Vec<Rotated>> {
    let secrets = SecretBox::new(&settings.secrets.fernet_keys)?;
    let pool = db::owner_pool(&settings.database).await?;
    let mut report = Vec::with_capacity(ENCRYPTED_COLUMNS.len());
    for column in ENCRYPTED_COLUMNS {
        report.push(rotate_column(&pool, &secrets, column).await?);
    }
    pool.close().await;
    Ok(report)
}

async fn rotate_column(
    pool: &PgPool,
    secrets: &SecretBox,
    column: EncryptedColumn,
) -> anyhow::Result<Rotated> {
    let EncryptedColumn {
        table,
        column: name,
        holds,
    } = column;
    // Names from the constant list above, never from input.
    let select = format!(
        "SELECT id, {name} FROM {table} WHERE {name} IS NOT NULL AND ($1::uuid IS NULL OR id > $1)
         ORDER BY id LIMIT {BATCH} FOR UPDATE"
    );
    let update = format!("UPDATE {table} SET {name} = $2 WHERE id = $1");
    let mut report = Rotated {
        column,
        rotated: 0,
        current: 0,
    };
    let mut after: Option<Uuid> = None;
    loop {
        let mut tx = pool.begin().await?;
        let rows: Vec<(Uuid, String)> = sqlx::query_as(AssertSqlSafe(select.clone()))
            .bind(after)
            .fetch_all(observed("key_rotation.lock", &mut *tx))
            .await?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        after = Some(*last);
        for (id, token) in rows {
            if secrets.is_current(&token) {
                report.current += 1;
                continue;
            }
            let plaintext = secrets.decrypt(&token).with_context(|| {
                format!(
                    "{holds} {id} cannot be decrypted with any configured key; keep the old key \
                     in `secrets.fernet_keys` until rotation completes"
                )
            })?;
            sqlx::query(AssertSqlSafe(update.clone()))
                .bind(id)
                .bind(secrets.encrypt(&plaintext))
                .execute(observed("key_rotation.update", &mut *tx))
                .await?;
            report.rotated += 1;
        }
        tx.commit().await?;
    }
    Ok(report)
}
