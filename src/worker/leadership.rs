//! Beat's leadership: a lease in PostgreSQL (`beat_leadership`, reached
//! only through definer functions) with a fencing token that grows at every
//! takeover. It goes through the ordinary pool — no session state, so it
//! works behind a transaction pooler — and it cannot outlive a silent
//! partition: a leader that stops renewing (frozen, cut off, dead) loses the
//! lead when its lease runs out, however its TCP connection fares.
//!
//! Every scheduled run is claimed with the token ([`claim_run`]), in the
//! same statement that checks the token still leads and records when the
//! task ran, so a replaced leader writes nothing, and a new leader continues
//! the schedule instead of re-running what the old one finished. Runs that
//! write in many statements (retention) fence each one ([`Fence`]).

use std::time::Duration;

use sqlx::PgConnection;

use crate::db::{Database, observed};

/// The SQLSTATE the fencing functions raise for a token that no longer leads.
const FENCED: &str = "STB01";

/// Takes the lead if nobody holds it: the new fencing token, or `None`
/// while another beat leads.
pub async fn acquire(db: &Database, holder: &str, lease: Duration) -> anyhow::Result<Option<i64>> {
    let mut tx = db.begin().await?;
    let token: Option<i64> =
        sqlx::query_scalar("SELECT beat_acquire($1, make_interval(secs => $2))")
            .bind(holder)
            .bind(lease.as_secs_f64())
            .fetch_one(observed("beat.acquire", &mut *tx))
            .await?;
    tx.commit().await?;
    Ok(token)
}

/// Extends the lease; false once another beat leads or the lease lapsed.
pub async fn renew(
    db: &Database,
    holder: &str,
    token: i64,
    lease: Duration,
) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    let renewed: bool = sqlx::query_scalar("SELECT beat_renew($1, $2, make_interval(secs => $3))")
        .bind(holder)
        .bind(token)
        .bind(lease.as_secs_f64())
        .fetch_one(observed("beat.renew", &mut *tx))
        .await?;
    tx.commit().await?;
    Ok(renewed)
}

/// Gives the lead up, so a standby takes it at its next try (at shutdown).
pub async fn release(db: &Database, holder: &str, token: i64) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT beat_release($1, $2)")
        .bind(holder)
        .bind(token)
        .execute(observed("beat.release", &mut *tx))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// What claiming a scheduled run found.
#[derive(Debug, PartialEq)]
pub enum Claimed {
    /// This leader runs it now (recorded as run).
    Run,
    /// It ran recently (maybe under the previous leader): due in this long.
    NotDue(Duration),
    /// The token no longer leads: stand down, write nothing.
    Fenced,
}

/// Claims a run of `task`, due every `interval`, for the leader of `token`.
pub async fn claim_run(
    db: &Database,
    token: i64,
    task: &str,
    interval: Duration,
) -> anyhow::Result<Claimed> {
    let mut tx = db.begin().await?;
    let claimed =
        sqlx::query_scalar::<_, f64>("SELECT beat_claim_run($1, $2, make_interval(secs => $3))")
            .bind(token)
            .bind(task)
            .bind(interval.as_secs_f64())
            .fetch_one(observed("beat.claim_run", &mut *tx))
            .await;
    match claimed {
        Ok(wait) => {
            tx.commit().await?;
            Ok(if wait <= 0.0 {
                Claimed::Run
            } else {
                Claimed::NotDue(Duration::from_secs_f64(wait))
            })
        }
        Err(err) if is_fenced(&err) => Ok(Claimed::Fenced),
        Err(err) => Err(err.into()),
    }
}

/// A fenced write refused: this beat was replaced.
#[derive(Debug, thiserror::Error)]
#[error("this beat no longer leads (fencing token {0})")]
pub struct NoLongerLeading(pub i64);

/// The fence of a write made for the leader of a token: checked in the
/// write's own transaction, which holds off a takeover until it ends.
#[derive(Debug, Clone, Copy)]
pub struct Fence(pub i64);

impl Fence {
    /// Errors (and so rolls the caller's transaction back) unless the token
    /// still leads.
    pub async fn check(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        match sqlx::query("SELECT beat_fence($1)")
            .bind(self.0)
            .execute(observed("beat.fence", conn))
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_fenced(&err) => Err(NoLongerLeading(self.0).into()),
            Err(err) => Err(err.into()),
        }
    }
}

fn is_fenced(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.code().as_deref() == Some(FENCED))
}
