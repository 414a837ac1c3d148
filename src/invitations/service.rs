//! Inviting, listing, revoking, accepting.

use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::model::{AcceptInvitation, Accepted, CreateInvitation, Invitation, InvitationStatus};
use super::repository::{self, NewInvitation};
use crate::audit::{self, Actor, Event, Origin, Target};
use crate::auth::tokens::{hash_secret, new_emailed_token};
use crate::auth::{Admin, Auth, AuthState, Role, TenantCtx, password};
use crate::email::{self, Kind};
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::infra::Infra;
use crate::tenants::repository as tenants;
use crate::users::repository as users;
use crate::users::service::map_email_taken;
use crate::{accounts, db};

/// The path of the emailed link under `server.public_base_url`.
pub const ACCEPT_INVITATION_PATH: &str = "accept-invitation";

fn target(id: Uuid) -> Target {
    Target {
        kind: "invitation",
        id,
    }
}

/// Invites `input.email` with `input.role`, and mails the link.
pub async fn create(
    infra: &Infra,
    auth: &Auth<Admin>,
    origin: &Origin,
    input: CreateInvitation,
) -> Result<Invitation, ApiError> {
    if input.role >= Role::Admin {
        auth.recently_signed_in(infra.settings.auth.reauthentication_secs)?;
    } else {
        auth.managing_credentials()?;
    }
    if input.role > auth.principal.role {
        return Err(ApiError::Forbidden {
            code: "role_above_own",
            detail: format!(
                "You cannot invite with a role above your own ({})",
                auth.principal.role.as_str()
            ),
        });
    }
    let email_address = input.email.trim().to_lowercase();
    if crate::auth::repository::find_login(&infra.db, &email_address)
        .await?
        .is_some()
    {
        return Err(crate::users::service::email_taken());
    }
    let ttl = infra.settings.auth.invitation_ttl_secs;
    let (token, hash) = new_emailed_token();
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let inviter = users::find(&tenant, &mut tx, auth.principal.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    let company = tenants::find(&tenant, &mut tx)
        .await?
        .ok_or_else(|| ApiError::not_found("Tenant"))?;
    let invitation = repository::insert(
        &tenant,
        &mut tx,
        &NewInvitation {
            email: &email_address,
            role: input.role,
            invited_by: auth.principal.user_id,
            token_hash: &hash,
            expires_at: OffsetDateTime::now_utc() + Duration::seconds(ttl as i64),
        },
    )
    .await?;
    let link = infra
        .settings
        .server
        .public_link(ACCEPT_INVITATION_PATH, &token);
    let inviter_name = if inviter.full_name.is_empty() {
        inviter.email.clone()
    } else {
        inviter.full_name.clone()
    };
    let context = json!({
        "inviter": inviter_name,
        "tenant_name": company.name,
        "role": input.role.as_str(),
        "expires_in_days": ttl.div_ceil(86_400),
    });
    let queued = email::queue(
        infra,
        &tenant,
        &mut tx,
        Kind::Invitation,
        &email_address,
        context.as_object().cloned().unwrap_or_default(),
        &link,
    )
    .await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::InvitationCreated,
        Actor::from(auth),
        Some(target(invitation.id)),
        origin,
        json!({"email": email_address, "role": input.role.as_str()}),
    )
    .await?;
    tx.commit().await?;
    email::hand_over(infra, queued).await;
    Ok(invitation)
}

pub async fn list(
    infra: &Infra,
    auth: &Auth<Admin>,
    page: PageRequest,
) -> Result<Page<Invitation>, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let rows = repository::list(&tenant, &mut tx, page.after, page.limit).await?;
    Ok(Page::from_rows(rows, page.limit, |i| i.id))
}

/// Revokes a pending invitation: its link stops working. Revoking one
/// already revoked or expired changes nothing; an accepted one is 409.
pub async fn revoke(
    infra: &Infra,
    auth: &Auth<Admin>,
    origin: &Origin,
    id: Uuid,
) -> Result<(), ApiError> {
    auth.managing_credentials()?;
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let invitation = repository::find_for_update(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Invitation"))?;
    match invitation.status {
        InvitationStatus::Accepted => {
            return Err(ApiError::Conflict {
                code: "invitation_accepted",
                detail: "The invitation was accepted: manage the user instead".into(),
            });
        }
        InvitationStatus::Pending => {
            repository::revoke(&tenant, &mut tx, id).await?;
            audit::record(
                &tenant,
                &mut tx,
                Event::InvitationRevoked,
                Actor::from(auth),
                Some(target(id)),
                origin,
                json!({"email": invitation.email}),
            )
            .await?;
        }
        InvitationStatus::Revoked | InvitationStatus::Expired => {}
    }
    tx.commit().await?;
    Ok(())
}

fn refused(code: &'static str, detail: &str) -> ApiError {
    ApiError::BadRequest {
        code,
        detail: detail.to_owned(),
    }
}

/// Creates the invited user with the emailed token (their address is
/// verified by it).
pub async fn accept(
    infra: &Infra,
    auth_state: &AuthState,
    origin: &Origin,
    input: AcceptInvitation,
) -> Result<Accepted, ApiError> {
    let row = repository::find_by_token(&infra.db, &hash_secret(&input.token))
        .await?
        .ok_or_else(|| refused("token_invalid", "This invitation link is not valid"))?;
    let unusable = |status| match status {
        InvitationStatus::Pending => None,
        InvitationStatus::Accepted => Some(refused(
            "token_used",
            "This invitation was already accepted: sign in instead",
        )),
        InvitationStatus::Revoked => Some(refused(
            "invitation_revoked",
            "This invitation was revoked: ask your administrator for a new one",
        )),
        InvitationStatus::Expired => Some(refused(
            "token_expired",
            "This invitation has expired: ask your administrator for a new one",
        )),
    };
    if let Some(err) = unusable(row.status()) {
        return Err(err);
    }
    password::check_policy(&input.password, &row.email, "password")?;
    let hash = auth_state.passwords.hash(input.password).await?;
    let role: Role = row.role.parse().map_err(ApiError::internal)?;
    let tenant = TenantCtx::new(row.tenant_id);
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    // Two acceptances racing: the second sees the first's outcome.
    let locked = repository::find_for_update(&tenant, &mut tx, row.id)
        .await?
        .ok_or_else(|| refused("token_invalid", "This invitation link is not valid"))?;
    if let Some(err) = unusable(locked.status) {
        return Err(err);
    }
    let user = users::insert(
        &tenant,
        &mut tx,
        &row.email,
        input.full_name.trim(),
        &hash,
        role,
    )
    .await
    .map_err(map_email_taken)?;
    accounts::repository::mark_verified(&tenant, &mut tx, user.id).await?;
    repository::mark_accepted(&tenant, &mut tx, row.id, user.id).await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::InvitationAccepted,
        Actor::user(user.id),
        Some(target(row.id)),
        origin,
        json!({"email": row.email, "role": role.as_str()}),
    )
    .await?;
    let user = users::find(&tenant, &mut tx, user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "invitation accepted");
    Ok(Accepted { user })
}
