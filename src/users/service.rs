//! User management rules.
//!
//! - An admin cannot create an owner, promote anyone to owner, or change or
//!   deactivate an owner; owners can.
//! - The last active owner can be neither demoted nor deactivated.
//! - Deactivation stops the user at once: access tokens (invalid-before mark),
//!   refresh tokens (sessions revoked) and the user's API keys (revoked, cache
//!   dropped).
//! - A role change or password change invalidates the user's access tokens,
//!   so the new role applies from the next refresh, and a demotion revokes
//!   the user's API keys that outrank the new role.

use serde_json::json;
use uuid::Uuid;

use super::model::{CreateUser, UpdateMe, UpdateUser, User};
use super::repository;
use crate::api_keys::repository as api_keys;
use crate::audit::{self, Actor, Event, Origin, Target};
use crate::auth::AuthState;
use crate::auth::repository as sessions;
use crate::auth::{Admin, Auth, Role, TenantCtx, Viewer, password};
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::infra::Infra;
use crate::{accounts, db, email};

pub async fn me(infra: &Infra, auth: &Auth<Viewer>) -> Result<User, ApiError> {
    let (user_id, _, _) = auth.user_session()?;
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let user = repository::find(&tenant, &mut tx, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    Ok(user)
}

/// Changes the signed-in user's name, password or email address. A new
/// password or address needs the current password. A new password ends
/// every session, this one included; a new address must be verified again
/// (a link is mailed to it).
pub async fn update_me(
    infra: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Viewer>,
    origin: &Origin,
    input: UpdateMe,
) -> Result<User, ApiError> {
    let (user_id, _, _) = auth.user_session()?;
    let tenant = auth.tenant();
    if input.revoke_api_keys && input.new_password.is_none() {
        return Err(ApiError::invalid_value(
            "revoke_api_keys",
            true.into(),
            "Revoking API keys accompanies a password change (new_password)",
        ));
    }
    // A new password or address needs the current password: a stolen access
    // token alone cannot take over the account.
    let new_email = input.email.as_deref().map(|e| e.trim().to_lowercase());
    let mut current_email = None;
    if input.new_password.is_some() || new_email.is_some() {
        let Some(current_password) = input.current_password else {
            let field = if input.new_password.is_some() {
                "a new password"
            } else {
                "a new email"
            };
            return Err(ApiError::missing_field(
                "current_password",
                format!("Field required: the current password is required to set {field}"),
            ));
        };
        let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
        let (email, stored) = repository::email_and_password_hash(&tenant, &mut tx, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("User"))?;
        drop(tx);
        auth_state.login_backoff.check(&email).await?;
        if !auth_state
            .passwords
            .verify(current_password, Some(stored))
            .await?
        {
            auth_state.login_backoff.failed(&email).await;
            return Err(ApiError::Forbidden {
                code: "invalid_current_password",
                detail: "The current password is incorrect".into(),
            });
        }
        auth_state.login_backoff.succeeded(&email).await;
        current_email = Some(email);
    }
    let new_hash = match input.new_password {
        None => None,
        Some(new_password) => {
            let email = new_email
                .as_deref()
                .or(current_email.as_deref())
                .unwrap_or_default();
            password::check_policy(&new_password, email, "new_password")?;
            Some(auth_state.passwords.hash(new_password).await?)
        }
    };
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    if let Some(full_name) = &input.full_name {
        repository::set_full_name(&tenant, &mut tx, user_id, full_name.trim()).await?;
    }
    let mark = match &new_hash {
        Some(hash) => {
            repository::set_password_hash(&tenant, &mut tx, user_id, hash).await?;
            audit::record(
                &tenant,
                &mut tx,
                Event::PasswordChanged,
                Actor::from(auth),
                Some(Target::user(user_id)),
                origin,
                json!({"api_keys_revoked": input.revoke_api_keys}),
            )
            .await?;
            Some(sessions::end_user_sessions(&tenant, &mut tx, user_id).await?)
        }
        None => None,
    };
    let verification = match (&new_email, &current_email) {
        (Some(new), Some(old)) if new != old => {
            repository::set_email(&tenant, &mut tx, user_id, new)
                .await
                .map_err(map_email_taken)?;
            audit::record(
                &tenant,
                &mut tx,
                Event::EmailChanged,
                Actor::from(auth),
                Some(Target::user(user_id)),
                origin,
                json!({"from": old, "to": new}),
            )
            .await?;
            let full_name = repository::find(&tenant, &mut tx, user_id)
                .await?
                .map(|u| u.full_name)
                .unwrap_or_default();
            Some(
                accounts::service::queue_verification(
                    infra, &tenant, &mut tx, user_id, new, &full_name,
                )
                .await?,
            )
        }
        _ => None,
    };
    let revoked_keys = if input.revoke_api_keys {
        api_keys::revoke_for_user(&tenant, &mut tx, user_id).await?
    } else {
        Vec::new()
    };
    let user = repository::find(&tenant, &mut tx, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    tx.commit().await?;
    if let Some(verification) = verification {
        email::hand_over(infra, verification).await;
    }
    if let Some(mark_ms) = mark {
        auth_state
            .revocations
            .invalidate_user_tokens(tenant.id(), user_id, mark_ms)
            .await;
        auth_state.revocations.forget_api_keys(&revoked_keys).await;
        tracing::info!(
            api_keys_revoked = revoked_keys.len(),
            "password changed; every session ended"
        );
    }
    Ok(user)
}

pub async fn list(
    infra: &Infra,
    auth: &Auth<Admin>,
    page: PageRequest,
) -> Result<Page<User>, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let users = repository::list(&tenant, &mut tx, page.after, page.limit).await?;
    Ok(Page::from_rows(users, page.limit, |u| u.id))
}

pub async fn get(infra: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<User, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    repository::find(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))
}

fn owner_required(action: &str) -> ApiError {
    ApiError::Forbidden {
        code: "owner_required",
        detail: format!("Only an owner can {action}"),
    }
}

fn last_owner() -> ApiError {
    ApiError::Conflict {
        code: "last_owner",
        detail: "The tenant's last active owner cannot be demoted or deactivated; transfer ownership first"
            .into(),
    }
}

pub async fn create(
    infra: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Admin>,
    origin: &Origin,
    input: CreateUser,
) -> Result<User, ApiError> {
    if input.role >= Role::Admin {
        auth.recently_signed_in(infra.settings.auth.reauthentication_secs)?;
    } else {
        auth.managing_credentials()?;
    }
    if input.role == Role::Owner && auth.principal.role < Role::Owner {
        return Err(owner_required("create an owner"));
    }
    let email = input.email.trim().to_lowercase();
    password::check_policy(&input.password, &email, "password")?;
    let hash = auth_state.passwords.hash(input.password).await?;
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let user = repository::insert(
        &tenant,
        &mut tx,
        &email,
        input.full_name.trim(),
        &hash,
        input.role,
    )
    .await
    .map_err(map_email_taken)?;
    audit::record(
        &tenant,
        &mut tx,
        Event::UserCreated,
        Actor::from(auth),
        Some(Target::user(user.id)),
        origin,
        json!({"email": user.email, "role": user.role.as_str()}),
    )
    .await?;
    let verification = accounts::service::queue_verification(
        infra,
        &tenant,
        &mut tx,
        user.id,
        &user.email,
        &user.full_name,
    )
    .await?;
    tx.commit().await?;
    email::hand_over(infra, verification).await;
    Ok(user)
}

pub fn email_taken() -> ApiError {
    ApiError::Conflict {
        code: "email_taken",
        detail: "An account with this email already exists".into(),
    }
}

pub fn map_email_taken(err: sqlx::Error) -> ApiError {
    if db::is_unique_violation(&err, repository::EMAIL_UNIQUE_INDEX) {
        email_taken()
    } else {
        err.into()
    }
}

pub async fn update(
    infra: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Admin>,
    origin: &Origin,
    id: Uuid,
    input: UpdateUser,
) -> Result<User, ApiError> {
    match input.role {
        Some(role) if role >= Role::Admin => {
            auth.recently_signed_in(infra.settings.auth.reauthentication_secs)?
        }
        Some(_) => auth.managing_credentials()?,
        None => {}
    }
    let tenant = auth.tenant();
    let actor = auth.principal.role;
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let target = repository::find_for_update(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    if target.role == Role::Owner && actor < Role::Owner {
        return Err(owner_required("change an owner"));
    }
    let mut mark = None;
    let mut forgotten_keys = Vec::new();
    if let Some(role) = input.role.filter(|r| *r != target.role) {
        if role == Role::Owner && actor < Role::Owner {
            return Err(owner_required("promote a user to owner"));
        }
        if target.role == Role::Owner {
            let owners = repository::lock_active_owners(&tenant, &mut tx).await?;
            if owners.iter().all(|o| *o == target.id) {
                return Err(last_owner());
            }
        }
        repository::set_role(&tenant, &mut tx, id, role).await?;
        audit::record(
            &tenant,
            &mut tx,
            Event::UserRoleChanged,
            Actor::from(auth),
            Some(Target::user(id)),
            origin,
            json!({"from": target.role.as_str(), "to": role.as_str()}),
        )
        .await?;
        forgotten_keys = api_keys::revoke_above_role(&tenant, &mut tx, id, role).await?;
        let (mark_ms, at) = db::invalidation_mark();
        sessions::set_tokens_invalid_before(&tenant, &mut tx, id, at).await?;
        mark = Some(mark_ms);
    }
    if let Some(full_name) = &input.full_name {
        repository::set_full_name(&tenant, &mut tx, id, full_name.trim()).await?;
    }
    let user = repository::find(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    tx.commit().await?;
    if let Some(mark_ms) = mark {
        auth_state
            .revocations
            .invalidate_user_tokens(tenant.id(), id, mark_ms)
            .await;
    }
    auth_state
        .revocations
        .forget_api_keys(&forgotten_keys)
        .await;
    Ok(user)
}

pub async fn deactivate(
    infra: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Admin>,
    origin: &Origin,
    id: Uuid,
) -> Result<User, ApiError> {
    auth.managing_credentials()?;
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let target = repository::find_for_update(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    if target.role == Role::Owner {
        if auth.principal.role < Role::Owner {
            return Err(owner_required("deactivate an owner"));
        }
        let owners = repository::lock_active_owners(&tenant, &mut tx).await?;
        if target.is_active && owners.iter().all(|o| *o == target.id) {
            return Err(last_owner());
        }
    }
    repository::deactivate(&tenant, &mut tx, id).await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::UserDeactivated,
        Actor::from(auth),
        Some(Target::user(id)),
        origin,
        json!({}),
    )
    .await?;
    let mark_ms = sessions::end_user_sessions(&tenant, &mut tx, id).await?;
    let keys = api_keys::revoke_for_user(&tenant, &mut tx, id).await?;
    let user = repository::find(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    tx.commit().await?;
    auth_state
        .revocations
        .invalidate_user_tokens(tenant.id(), id, mark_ms)
        .await;
    auth_state.revocations.forget_api_keys(&keys).await;
    tracing::info!(target_user_id = %id, "user deactivated");
    Ok(user)
}

/// Deletes the signed-in user (after a recent password sign-in). The last
/// active owner transfers ownership first.
pub async fn delete_me(
    infra: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Viewer>,
    origin: &Origin,
) -> Result<(), ApiError> {
    let (user_id, _, _) = auth.user_session()?;
    auth.recently_signed_in(infra.settings.auth.reauthentication_secs)?;
    delete_user(
        infra,
        auth_state,
        auth.tenant(),
        auth.principal.role,
        Actor::from(auth),
        origin,
        user_id,
    )
    .await
}

/// An admin deletes a user of the tenant (an owner only by an owner).
pub async fn delete(
    infra: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Admin>,
    origin: &Origin,
    id: Uuid,
) -> Result<(), ApiError> {
    auth.managing_credentials()?;
    delete_user(
        infra,
        auth_state,
        auth.tenant(),
        auth.principal.role,
        Actor::from(auth),
        origin,
        id,
    )
    .await
}

/// Deletes `id`: ends their sessions and keys everywhere, then removes the
/// row (what hangs off it cascades). The audit log keeps their events.
async fn delete_user(
    infra: &Infra,
    auth_state: &AuthState,
    tenant: TenantCtx,
    actor_role: Role,
    actor: Actor,
    origin: &Origin,
    id: Uuid,
) -> Result<(), ApiError> {
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let target = repository::find_for_update(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    if target.role == Role::Owner {
        if actor_role < Role::Owner {
            return Err(owner_required("delete an owner"));
        }
        let owners = repository::lock_active_owners(&tenant, &mut tx).await?;
        if owners.iter().all(|o| *o == target.id) {
            return Err(ApiError::Conflict {
                code: "last_owner",
                detail: "The tenant's last active owner cannot be deleted; transfer ownership first (or delete the tenant)".into(),
            });
        }
    }
    // Recorded before the row goes, so replicas drop the user's tokens and keys.
    let mark_ms = sessions::end_user_sessions(&tenant, &mut tx, id).await?;
    let keys = api_keys::revoke_for_user(&tenant, &mut tx, id).await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::UserDeleted,
        actor,
        Some(Target::user(id)),
        origin,
        json!({"email": target.email, "role": target.role.as_str()}),
    )
    .await?;
    repository::delete(&tenant, &mut tx, id).await?;
    tx.commit().await?;
    auth_state
        .revocations
        .invalidate_user_tokens(tenant.id(), id, mark_ms)
        .await;
    auth_state.revocations.forget_api_keys(&keys).await;
    tracing::info!(target_user_id = %id, "user deleted");
    Ok(())
}
