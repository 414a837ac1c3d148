//! Deleting a tenant: its owner, freshly signed in, deletes it; it is
//! disabled at once — every session ends, its API keys stop working, its
//! pending invitations are revoked, no one signs in — and beat's retention purges it with everything of it after
//! `retention.tenant_deletion_grace_days`. Until then its owner restores it
//! with their email and password (there is no session to restore with).

use garde::Validate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::Tenant;
use super::repository;
use crate::audit::{self, Actor, Event, Origin, Target};
use crate::auth::repository as sessions;
use crate::auth::{Auth, AuthState, Owner, Role, TenantCtx};
use crate::db::{self, observed};
use crate::http::error::ApiError;
use crate::infra::Infra;

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduledDeletion {
    pub tenant_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub deleted_at: OffsetDateTime,
    /// When the tenant and everything of it is purged; restorable until then.
    #[serde(with = "time::serde::rfc3339")]
    pub purge_after: OffsetDateTime,
}

/// `POST /api/v1/tenants/me/restore`: the owner's credentials.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    #[garde(length(min = 1, max = 320))]
    #[schema(min_length = 1, max_length = 320)]
    pub email: String,
    #[garde(length(min = 1, max = 1024))]
    #[schema(min_length = 1, max_length = 1024, format = Password)]
    pub password: String,
}

fn target(tenant: &TenantCtx) -> Target {
    Target {
        kind: "tenant",
        id: tenant.id(),
    }
}

/// Disables the caller's tenant and schedules its purge.
pub async fn delete(
    infra: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Owner>,
    origin: &Origin,
) -> Result<ScheduledDeletion, ApiError> {
    auth.user_session()?;
    auth.recently_signed_in(infra.settings.auth.reauthentication_secs)?;
    let tenant = auth.tenant();
    let now = OffsetDateTime::now_utc();
    let grace = Duration::days(i64::from(
        infra.settings.retention.tenant_deletion_grace_days,
    ));
    let purge_after = now + grace;
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    sqlx::query(
        "UPDATE tenants SET deleted_at = $2, purge_after = $3, updated_at = now() WHERE id = $1",
    )
    .bind(tenant.id())
    .bind(now)
    .bind(purge_after)
    .execute(observed("tenants.delete", &mut *tx))
    .await?;
    let users: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE tenant_id = $1")
        .bind(tenant.id())
        .fetch_all(observed("tenants.delete_users", &mut *tx))
        .await?;
    let mut marks = Vec::with_capacity(users.len());
    for user in &users {
        marks.push((
            *user,
            sessions::end_user_sessions(&tenant, &mut tx, *user).await?,
        ));
    }
    // Pending invitations would let someone join a tenant on its way out.
    sqlx::query(
        "UPDATE invitations SET revoked_at = now()
         WHERE tenant_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(tenant.id())
    .execute(observed("tenants.delete_invitations", &mut *tx))
    .await?;
    let keys = live_key_hashes(&tenant, &mut tx).await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::TenantDeletionScheduled,
        Actor::from(auth),
        Some(target(&tenant)),
        origin,
        json!({"purge_after": purge_after.unix_timestamp()}),
    )
    .await?;
    tx.commit().await?;
    for (user, mark_ms) in marks {
        auth_state
            .revocations
            .invalidate_user_tokens(tenant.id(), user, mark_ms)
            .await;
    }
    auth_state.revocations.forget_api_keys(&keys).await;
    tracing::warn!(tenant_id = %tenant.id(), %purge_after, "tenant deleted; purged after its grace period");
    Ok(ScheduledDeletion {
        tenant_id: tenant.id(),
        deleted_at: now,
        purge_after,
    })
}

/// Restores a deleted tenant not yet purged, for its owner.
pub async fn restore(
    infra: &Infra,
    auth_state: &AuthState,
    origin: &Origin,
    input: RestoreRequest,
) -> Result<Tenant, ApiError> {
    let email = input.email.trim();
    auth_state.login_backoff.check(email).await?;
    let account = sessions::find_login(&infra.db, email).await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let verified = auth_state.passwords.verify(input.password, stored).await?;
    let Some(account) = account.filter(|a| verified && a.is_active) else {
        auth_state.login_backoff.failed(email).await;
        return Err(ApiError::Unauthorized {
            code: "invalid_credentials",
            detail: "Incorrect email or password".into(),
            challenge: "Bearer",
        });
    };
    auth_state.login_backoff.succeeded(email).await;
    if account.role.parse::<Role>().map_err(ApiError::internal)? != Role::Owner {
        return Err(ApiError::Forbidden {
            code: "owner_required",
            detail: "Only an owner can restore the tenant".into(),
        });
    }
    if account.tenant_deleted_at.is_none() {
        return Err(ApiError::Conflict {
            code: "tenant_not_deleted",
            detail: "The tenant is not deleted".into(),
        });
    }
    let tenant = TenantCtx::new(account.tenant_id);
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let restored = sqlx::query(
        "UPDATE tenants SET deleted_at = NULL, purge_after = NULL, updated_at = now()
         WHERE id = $1 AND deleted_at IS NOT NULL AND purge_after > now()",
    )
    .bind(tenant.id())
    .execute(observed("tenants.restore", &mut *tx))
    .await?;
    if restored.rows_affected() == 0 {
        return Err(ApiError::Conflict {
            code: "tenant_not_deleted",
            detail: "The tenant is not deleted, or is being purged".into(),
        });
    }
    audit::record(
        &tenant,
        &mut tx,
        Event::TenantRestored,
        Actor::user(account.user_id),
        Some(target(&tenant)),
        origin,
        json!({}),
    )
    .await?;
    let result = repository::find(&tenant, &mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("Tenant"))?;
    let keys = live_key_hashes(&tenant, &mut tx).await?;
    tx.commit().await?;
    // A key used while the tenant was deleted is cached as unknown: drop
    // that answer so the key works again at once (else within
    // `auth.api_key_cache_ttl_secs`).
    auth_state.revocations.forget_api_keys(&keys).await;
    tracing::info!(tenant_id = %tenant.id(), "tenant restored");
    Ok(result)
}

/// The hashes of the tenant's API keys not revoked (their cached answers
/// change with the tenant's deletion and restoration).
async fn live_key_hashes(
    tenant: &TenantCtx,
    conn: &mut sqlx::PgConnection,
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT key_hash FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL")
        .bind(tenant.id())
        .fetch_all(observed("tenants.live_keys", conn))
        .await
}
