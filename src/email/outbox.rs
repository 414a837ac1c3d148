//! The email outbox: [`queue`] writes an email in the caller's transaction
//! (its link encrypted: it carries a token); [`hand_over`] gives it to
//! whoever sends it once that transaction has committed; beat hands over
//! what is due again ([`hand_over_due`]): retries, and emails whose first
//! hand-over was lost.

use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Kind;
use crate::auth::TenantCtx;
use crate::broker::TaskQueue;
use crate::db::observed;
use crate::infra::Infra;
use crate::mailer::Mailer;

/// How many due emails one beat round hands over.
const ROUND: i32 = 500;

/// An email written to the outbox, to hand over after commit.
#[derive(Debug, Clone, Copy)]
pub struct Queued {
    pub tenant_id: Uuid,
    pub id: Uuid,
}

/// Writes an email to `recipient` in the caller's transaction. `context`
/// holds what the template shows besides the link (no secrets).
pub async fn queue(
    infra: &Infra,
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    kind: Kind,
    recipient: &str,
    context: Map<String, Value>,
    link: &str,
) -> Result<Queued, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO email_messages (id, tenant_id, kind, recipient, context, link_encrypted)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(tenant.id())
    .bind(kind.as_str())
    .bind(recipient)
    .bind(Value::Object(context))
    .bind(infra.secrets.encrypt(link.as_bytes()))
    .execute(observed("email.queue", conn))
    .await?;
    Ok(Queued {
        tenant_id: tenant.id(),
        id,
    })
}

/// Gives a committed email to its sender: in `log` mode this process writes
/// it to the log now; over SMTP a worker sends it (a task on the
/// notifications queue). A failed hand-over is left to beat.
pub async fn hand_over(infra: &Infra, queued: Queued) {
    let result = match &infra.mailer {
        Mailer::Log => super::delivery::attempt(
            infra,
            queued.tenant_id,
            queued.id,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .map(drop),
        Mailer::Smtp { .. } => send_task(&infra.queue, queued).await,
    };
    if let Err(err) = result {
        tracing::warn!(
            error = %format!("{err:#}"),
            email_id = %queued.id,
            "email not handed over; beat will"
        );
    }
}

async fn send_task(queue: &TaskQueue, queued: Queued) -> anyhow::Result<()> {
    let message = crate::broker::TaskMessage::new(
        super::tasks::DELIVER_EMAIL,
        vec![json!(queued.tenant_id), json!(queued.id)],
        Map::new(),
    );
    queue.send(queue.notifications_queue(), message).await
}

/// Beat: hands over every due email of every tenant. One handed over less
/// than a minute ago and not attempted since is left alone: its task may
/// still be on its way.
pub async fn hand_over_due(infra: &Infra) -> anyhow::Result<usize> {
    let mut tx = infra.db.begin().await?;
    let due: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, message_id FROM email_take_due_messages($1, interval '60 seconds')",
    )
    .bind(ROUND)
    .fetch_all(observed("email.take_due", &mut *tx))
    .await?;
    tx.commit().await?;
    let count = due.len();
    for (tenant_id, id) in due {
        hand_over(infra, Queued { tenant_id, id }).await;
    }
    Ok(count)
}
