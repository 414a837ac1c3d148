//! SQL for invitations. Every function takes the tenant first and filters on
//! it (row-level security enforces the same), except [`find_by_token`],
//! which runs before the tenant is known.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{Invitation, InvitationStatus};
use crate::auth::{Role, TenantCtx};
use crate::db::{Database, observed};

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: Uuid,
    email: String,
    role: String,
    invited_by: Option<Uuid>,
    accepted_user_id: Option<Uuid>,
    expires_at: OffsetDateTime,
    accepted_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, email, role, invited_by, accepted_user_id, expires_at, accepted_at, revoked_at, created_at";

fn status(
    accepted_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
) -> InvitationStatus {
    if accepted_at.is_some() {
        InvitationStatus::Accepted
    } else if revoked_at.is_some() {
        InvitationStatus::Revoked
    } else if expires_at <= OffsetDateTime::now_utc() {
        InvitationStatus::Expired
    } else {
        InvitationStatus::Pending
    }
}

impl Row {
    fn into_invitation(self) -> anyhow::Result<Invitation> {
        Ok(Invitation {
            status: status(self.accepted_at, self.revoked_at, self.expires_at),
            id: self.id,
            email: self.email,
            role: self.role.parse()?,
            invited_by: self.invited_by,
            accepted_user_id: self.accepted_user_id,
            expires_at: self.expires_at,
            created_at: self.created_at,
        })
    }
}

pub struct NewInvitation<'a> {
    pub email: &'a str,
    pub role: Role,
    pub invited_by: Uuid,
    pub token_hash: &'a [u8],
    pub expires_at: OffsetDateTime,
}

/// Inserts an invitation, revoking the address's pending one in the tenant.
pub async fn insert(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    new: &NewInvitation<'_>,
) -> anyhow::Result<Invitation> {
    sqlx::query(
        "UPDATE invitations SET revoked_at = now()
         WHERE tenant_id = $1 AND lower(email) = lower($2)
           AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(tenant.id())
    .bind(new.email)
    .execute(observed("invitations.replace", &mut *conn))
    .await?;
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO invitations (id, tenant_id, email, role, invited_by, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(new.email)
    .bind(new.role.as_str())
    .bind(new.invited_by)
    .bind(new.token_hash)
    .bind(new.expires_at)
    .fetch_one(observed("invitations.insert", conn))
    .await?;
    row.into_invitation()
}

pub async fn list(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: u32,
) -> anyhow::Result<Vec<Invitation>> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    )))
    .bind(tenant.id())
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(observed("invitations.list", conn))
    .await?;
    rows.into_iter().map(Row::into_invitation).collect()
}

/// The invitation, locked.
pub async fn find_for_update(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> anyhow::Result<Option<Invitation>> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("invitations.lock", conn))
    .await?;
    row.map(Row::into_invitation).transpose()
}

pub async fn revoke(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE invitations SET revoked_at = now()
         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL AND accepted_at IS NULL",
    )
    .bind(tenant.id())
    .bind(id)
    .execute(observed("invitations.revoke", conn))
    .await?;
    Ok(())
}

pub async fn mark_accepted(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE invitations SET accepted_at = now(), accepted_user_id = $3
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(id)
    .bind(user_id)
    .execute(observed("invitations.accept", conn))
    .await?;
    Ok(())
}

/// A presented token's invitation, in whichever tenant it belongs to.
#[derive(Debug, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub role: String,
    pub expires_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenRow {
    pub fn status(&self) -> InvitationStatus {
        status(self.accepted_at, self.revoked_at, self.expires_at)
    }
}

pub async fn find_by_token(db: &Database, hash: &[u8]) -> Result<Option<TokenRow>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row = sqlx::query_as("SELECT * FROM invitation_find($1)")
        .bind(hash)
        .fetch_optional(observed("invitations.find_by_token", &mut *tx))
        .await?;
    tx.commit().await?;
    Ok(row)
}
