//! Creating, listing and revoking API keys.

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{ApiKey, CreateApiKey, CreatedApiKey};
use super::repository;
use crate::audit::{self, Actor, Event, Origin, Target};
use crate::auth::AuthState;
use crate::auth::tokens::new_api_key;
use crate::auth::{Admin, Auth, Role};
use crate::db;
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::infra::Infra;

pub async fn create(
    infra: &Infra,
    auth: &Auth<Admin>,
    origin: &Origin,
    input: CreateApiKey,
) -> Result<CreatedApiKey, ApiError> {
    let role = Role::from(input.role);
    if role >= Role::Admin {
        auth.recently_signed_in(infra.settings.auth.reauthentication_secs)?;
    } else {
        auth.managing_credentials()?;
    }
    if input
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(ApiError::invalid_value(
            "expires_at",
            input
                .expires_at
                .and_then(|at| {
                    at.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .into(),
            "must be in the future",
        ));
    }
    if role > auth.principal.role {
        return Err(ApiError::Forbidden {
            code: "insufficient_role",
            detail: "An API key cannot have a higher role than its creator".into(),
        });
    }
    let tenant = auth.tenant();
    let key = new_api_key();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let (id, created_at) = repository::insert(
        &tenant,
        &mut tx,
        &repository::NewKey {
            user_id: auth.principal.user_id,
            name: input.name.trim(),
            role,
            prefix: &key.prefix,
            hash: &key.hash,
            expires_at: input.expires_at,
        },
    )
    .await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::ApiKeyCreated,
        Actor::from(auth),
        Some(Target {
            kind: "api_key",
            id,
        }),
        origin,
        json!({"name": input.name.trim(), "role": role.as_str(), "prefix": key.prefix}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(api_key_id = %id, prefix = %key.prefix, "API key created");
    Ok(CreatedApiKey {
        id,
        name: input.name.trim().to_owned(),
        role,
        prefix: key.prefix,
        key: key.key,
        created_at,
        expires_at: input.expires_at,
    })
}

pub async fn list(
    infra: &Infra,
    auth: &Auth<Admin>,
    page: PageRequest,
) -> Result<Page<ApiKey>, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let keys = repository::list(&tenant, &mut tx, page.after, page.limit).await?;
    Ok(Page::from_rows(keys, page.limit, |k| k.id))
}

pub async fn revoke(
    infra: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Admin>,
    origin: &Origin,
    id: Uuid,
) -> Result<(), ApiError> {
    auth.managing_credentials()?;
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let hash = repository::revoke(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    audit::record(
        &tenant,
        &mut tx,
        Event::ApiKeyRevoked,
        Actor::from(auth),
        Some(Target {
            kind: "api_key",
            id,
        }),
        origin,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    auth_state.revocations.forget_api_keys(&[hash]).await;
    tracing::info!(api_key_id = %id, "API key revoked");
    Ok(())
}
