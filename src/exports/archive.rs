//! What an export holds: every table of the tenant's data, one JSON object
//! per row, without the columns that hold secrets or their hashes.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::observed;

/// An exported table and the columns left out of it.
pub struct ExportedTable {
    pub table: &'static str,
    pub without: &'static [&'static str],
}

/// The tenant's tables an export leaves out entirely: credentials and their
/// traces, internal queues, and the exports themselves. A test checks that
/// every table with a `tenant_id` is in one list or the other.
pub const NOT_EXPORTED: &[&str] = &[
    "refresh_tokens",
    "revoked_sessions",
    "account_tokens",
    "auth_invalidations",
    "email_messages",
    "outbox_events",
    "tenant_exports",
];

/// Every table an export holds.
pub const EXPORTED_TABLES: &[ExportedTable] = &[
    ExportedTable {
        table: "tenants",
        without: &[],
    },
    ExportedTable {
        table: "users",
        without: &["password_hash", "tokens_invalid_before"],
    },
    ExportedTable {
        table: "api_keys",
        without: &["key_hash"],
    },
    ExportedTable {
        table: "marketplace_connections",
        without: &["credentials_encrypted"],
    },
    ExportedTable {
        table: "products",
        without: &[],
    },
    ExportedTable {
        table: "product_stock_history",
        without: &[],
    },
    ExportedTable {
        table: "sync_jobs",
        without: &[],
    },
    ExportedTable {
        table: "webhook_subscriptions",
        without: &["secret_encrypted"],
    },
    ExportedTable {
        table: "webhook_deliveries",
        without: &[],
    },
    ExportedTable {
        table: "telegram_chats",
        without: &["bot_token_encrypted"],
    },
    ExportedTable {
        table: "telegram_deliveries",
        without: &[],
    },
    ExportedTable {
        table: "invitations",
        without: &["token_hash"],
    },
    ExportedTable {
        table: "audit_events",
        without: &[],
    },
];

/// Rows read per statement: each is short, whatever the table's size.
const BATCH: i64 = 5_000;

/// Builds the archive of `tenant_id` in the caller's (tenant-scoped)
/// transaction: `{table}.jsonl` for each of [`EXPORTED_TABLES`] and
/// `manifest.json` (the tenant, the time, each table's row count).
pub async fn build(conn: &mut PgConnection, tenant_id: Uuid) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mut counts = serde_json::Map::new();
    for exported in EXPORTED_TABLES {
        let (lines, rows) = table_lines(conn, tenant_id, exported).await?;
        append(&mut tar, &format!("{}.jsonl", exported.table), &lines)?;
        counts.insert(exported.table.into(), rows.into());
    }
    let manifest = json!({
        "tenant_id": tenant_id,
        "created_at": OffsetDateTime::now_utc().unix_timestamp(),
        "format": "one JSON object per line and row; secrets and their hashes left out",
        "rows": counts,
    });
    append(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec_pretty(&manifest)?,
    )?;
    let gz = tar.into_inner()?;
    Ok(gz.finish()?)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(OffsetDateTime::now_utc().unix_timestamp() as u64);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)?;
    Ok(())
}

/// One table's rows as JSON lines, read in id order a batch at a time.
async fn table_lines(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    exported: &ExportedTable,
) -> anyhow::Result<(Vec<u8>, u64)> {
    let scope = if exported.table == "tenants" {
        "id"
    } else {
        "tenant_id"
    };
    // The names come from the constant list above, never from input.
    let sql = format!(
        "SELECT id, (to_jsonb(t) - $3::text[])::text FROM {table} t
         WHERE {scope} = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT {BATCH}",
        table = exported.table,
    );
    let without: Vec<&str> = exported.without.to_vec();
    let (mut lines, mut rows, mut after) = (Vec::new(), 0u64, None::<Uuid>);
    loop {
        let batch: Vec<(Uuid, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(tenant_id)
            .bind(after)
            .bind(&without)
            .fetch_all(observed("exports.read", &mut *conn))
            .await?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = Some(*last);
        let full = batch.len() as i64 == BATCH;
        for (_, line) in batch {
            lines.extend_from_slice(line.as_bytes());
            lines.push(b'\n');
            rows += 1;
        }
        if !full {
            break;
        }
    }
    Ok((lines, rows))
}
