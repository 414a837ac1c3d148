//! Tenant settings, ownership transfer and tier changes.

use uuid::Uuid;

use super::model::{SetTier, Tenant, TransferOwnership, UpdateTenant};
use super::repository;
use crate::audit::{self, Actor, Event, Origin, Target};
use crate::auth::AuthState;
use crate::auth::repository as sessions;
use crate::auth::{Auth, Owner, Role, Viewer};
use crate::db;
use crate::db::observed;
use crate::http::error::ApiError;
use crate::infra::Infra;
use crate::users::repository as users;

pub async fn get(state: &Infra, auth: &Auth<Viewer>) -> Result<Tenant, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    repository::find(&tenant, &mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("Tenant"))
}

pub async fn update(
    state: &Infra,
    auth: &Auth<Owner>,
    input: UpdateTenant,
) -> Result<Tenant, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let current = repository::find(&tenant, &mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("Tenant"))?;
    let name = input
        .name
        .map(|n| n.trim().to_owned())
        .unwrap_or(current.name);
    let mut settings = current.settings;
    if let Some(patch) = input.settings {
        if let Some(threshold) = patch.low_stock_threshold {
            settings.low_stock_threshold = threshold;
        }
        if let Some(timezone) = patch.timezone {
            settings.timezone = timezone;
        }
    }
    let updated = repository::update(&tenant, &mut tx, &name, &settings).await?;
    tx.commit().await?;
    // Cached product lists depend on the low-stock threshold.
    state.cache.invalidate_tenant(tenant.id()).await;
    Ok(updated)
}

/// Makes another active user the owner; the caller becomes an admin. Both
/// users' access tokens are invalidated so their new roles apply at once
/// (their sessions stay: a refresh yields tokens with the new roles).
pub async fn transfer_ownership(
    state: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Owner>,
    origin: &Origin,
    input: TransferOwnership,
) -> Result<Tenant, ApiError> {
    let (caller, _, _) = auth.user_session()?;
    auth.recently_signed_in(state.settings.auth.reauthentication_secs)?;
    if input.user_id == caller {
        return Err(ApiError::Conflict {
            code: "already_owner",
            detail: "You already own this tenant; name another user".into(),
        });
    }
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let target = users::find_for_update(&tenant, &mut tx, input.user_id)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(|| ApiError::not_found("User"))?;
    users::set_role(&tenant, &mut tx, target.id, Role::Owner).await?;
    users::set_role(&tenant, &mut tx, caller, Role::Admin).await?;
    let (mark_ms, at) = db::invalidation_mark();
    for user in [caller, target.id] {
        sessions::set_tokens_invalid_before(&tenant, &mut tx, user, at).await?;
    }
    let result = repository::find(&tenant, &mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("Tenant"))?;
    audit::record(
        &tenant,
        &mut tx,
        Event::OwnershipTransferred,
        Actor::from(auth),
        Some(Target::user(target.id)),
        origin,
        serde_json::json!({"previous_owner": caller}),
    )
    .await?;
    tx.commit().await?;
    for user in [caller, target.id] {
        auth_state
            .revocations
            .invalidate_user_tokens(tenant.id(), user, mark_ms)
            .await;
    }
    tracing::info!(new_owner = %target.id, "tenant ownership transferred");
    Ok(result)
}

/// Changes a tenant's tier. Only a platform operator — an active user of an
/// `internal` tenant with the platform-admin flag, checked in the database at
/// each call — may; everyone else gets 403.
pub async fn set_tier(
    state: &Infra,
    auth: &Auth<Viewer>,
    tenant_id: Uuid,
    input: SetTier,
) -> Result<Tenant, ApiError> {
    let forbidden = || ApiError::Forbidden {
        code: "platform_admin_required",
        detail: "Only a platform administrator can change a tenant's tier".into(),
    };
    let (caller, _, _) = auth.user_session().map_err(|_| forbidden())?;
    let own = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, own.id()).await?;
    if !users::is_platform_admin(&own, &mut tx, caller).await? {
        return Err(forbidden());
    }
    let updated = repository::set_tier_as_platform(&mut tx, tenant_id, input.tier)
        .await?
        .ok_or_else(|| ApiError::not_found("Tenant"))?;
    tx.commit().await?;
    tracing::info!(target_tenant_id = %tenant_id, tier = %input.tier, "tenant tier changed");
    Ok(updated)
}

/// Operator bootstrap (`stock-tracker grant-platform-admin EMAIL`): flags a
/// user as platform administrator and puts their tenant on the `internal`
/// tier. Runs as the database owner, from the command line only.
pub async fn grant_platform_admin(
    settings: &crate::config::DatabaseSettings,
    email: &str,
) -> anyhow::Result<Uuid> {
    let pool = db::owner_pool(settings).await?;
    let mut tx = pool.begin().await?;
    let tenant_id: Option<Uuid> = sqlx::query_scalar(
        "UPDATE users SET is_platform_admin = true, updated_at = now()
         WHERE lower(email) = lower($1) AND is_active RETURNING tenant_id",
    )
    .bind(email.trim())
    .fetch_optional(observed("tenants.grant_platform_admin", &mut *tx))
    .await?;
    let Some(tenant_id) = tenant_id else {
        anyhow::bail!("no active user with email `{}`", email.trim());
    };
    sqlx::query("UPDATE tenants SET tier = 'internal', updated_at = now() WHERE id = $1")
        .bind(tenant_id)
        .execute(observed("tenants.set_internal_tier", &mut *tx))
        .await?;
    tx.commit().await?;
    pool.close().await;
    Ok(tenant_id)
}
