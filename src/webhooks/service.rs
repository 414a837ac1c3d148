//! Webhook subscriptions: URL checks, the signing secret, CRUD.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use uuid::Uuid;

use super::model::{CreateSubscription, Subscription, SubscriptionWithSecret, UpdateSubscription};
use super::repository;
use super::target;
use crate::audit::{self, Actor, Event, Origin, Target};
use crate::auth::{Admin, Auth};
use crate::db;
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::infra::Infra;
use crate::notifications::targets::{self, TargetKind};
use serde_json::json;

/// Random bytes in a signing secret (the Standard Webhooks minimum is 24).
const SECRET_BYTES: usize = 32;

/// A new signing secret: `whsec_` + base64 of random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

async fn checked_url(state: &Infra, url: &str) -> Result<String, ApiError> {
    target::check(url, &state.settings.webhooks, &state.lookup)
        .await
        .map(|_| url.to_owned())
        .map_err(|err| ApiError::invalid_value("url", url.into(), &err.to_string()))
}

pub async fn create(
    state: &Infra,
    auth: &Auth<Admin>,
    request: CreateSubscription,
) -> Result<SubscriptionWithSecret, ApiError> {
    let url = checked_url(state, &request.url).await?;
    let secret = new_secret();
    let encrypted = state.secrets.encrypt(secret.as_bytes());
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    targets::ensure_room(
        &mut tx,
        &state.settings.notifications.max_targets,
        auth.principal.tier,
        TargetKind::WebhookSubscription,
    )
    .await?;
    let subscription = repository::insert(
        &tenant,
        &mut tx,
        &url,
        &request.events,
        request.description.as_deref(),
        &encrypted,
    )
    .await?;
    tx.commit().await?;
    Ok(SubscriptionWithSecret {
        subscription,
        secret,
    })
}

pub async fn list(
    state: &Infra,
    auth: &Auth<Admin>,
    page: PageRequest,
) -> Result<Page<Subscription>, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let rows = repository::list(&tenant, &mut tx, page.after, page.limit).await?;
    Ok(Page::from_rows(rows, page.limit, |s| s.id))
}

fn not_found() -> ApiError {
    ApiError::not_found("Webhook subscription")
}

pub async fn get(state: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<Subscription, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    repository::find(&tenant, &mut tx, id)
        .await?
        .ok_or_else(not_found)
}

pub async fn update(
    state: &Infra,
    auth: &Auth<Admin>,
    id: Uuid,
    request: UpdateSubscription,
) -> Result<Subscription, ApiError> {
    let url = match &request.url {
        Some(url) => Some(checked_url(state, url).await?),
        None => None,
    };
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let updated = repository::update(
        &tenant,
        &mut tx,
        id,
        url.as_deref(),
        request.events.as_deref(),
        request.description.as_deref(),
        request.enabled,
    )
    .await?
    .ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn rotate_secret(
    state: &Infra,
    auth: &Auth<Admin>,
    origin: &Origin,
    id: Uuid,
) -> Result<SubscriptionWithSecret, ApiError> {
    let secret = new_secret();
    let encrypted = state.secrets.encrypt(secret.as_bytes());
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let subscription = repository::set_secret(&tenant, &mut tx, id, &encrypted)
        .await?
        .ok_or_else(not_found)?;
    audit::record(
        &tenant,
        &mut tx,
        Event::WebhookSecretRotated,
        Actor::from(auth),
        Some(Target {
            kind: "webhook_subscription",
            id,
        }),
        origin,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(SubscriptionWithSecret {
        subscription,
        secret,
    })
}

pub async fn delete(state: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<(), ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    if !repository::delete(&tenant, &mut tx, id).await? {
        return Err(not_found());
    }
    tx.commit().await?;
    Ok(())
}

/// The payload of the channel's test event to target `id`.
pub fn test_payload(id: Uuid) -> serde_json::Value {
    json!({"subscription_id": id, "message": "A test event from Stock Tracker"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_follow_the_standard_webhooks_convention() {
        let secret = new_secret();
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert!(key.len() >= 24);
        assert_ne!(new_secret(), secret);
    }
}
