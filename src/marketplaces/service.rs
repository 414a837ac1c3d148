//! Connecting marketplaces, and rotating the keys that protect their credentials.

use uuid::Uuid;

use super::model::{Connection, CreateConnection, Credentials, MarketplaceKind};
use super::repository;
use crate::auth::{Admin, Auth, Viewer};
use crate::db;
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::infra::Infra;

pub async fn create(
    state: &Infra,
    auth: &Auth<Admin>,
    input: CreateConnection,
) -> Result<Connection, ApiError> {
    // The simulator is for trying the product; a production deployment syncs
    // real marketplaces only (a demo connection there would feed invented
    // stock to the tenant's systems).
    if input.kind == MarketplaceKind::Demo && state.settings.is_production() {
        return Err(ApiError::invalid_value(
            "kind",
            "demo".into(),
            "The demo marketplace is for trying the product and is not available in production; connect a real marketplace",
        ));
    }
    // The demo marketplace takes no credentials: nothing is stored for it.
    let plaintext = match input.credentials()? {
        Credentials::Demo(_) => None,
        Credentials::Wildberries(credentials) => {
            Some(serde_json::to_vec(&credentials).map_err(ApiError::internal)?)
        }
    };
    let (kind, name) = (input.kind, &input.name);
    let encrypted = plaintext.map(|plaintext| state.secrets.encrypt(&plaintext));
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let connection =
        repository::insert(&tenant, &mut tx, kind, name.trim(), encrypted.as_deref()).await?;
    tx.commit().await?;
    tracing::info!(marketplace_id = %connection.id, kind = kind.as_str(), "marketplace connected");
    Ok(connection)
}

pub async fn list(
    state: &Infra,
    auth: &Auth<Viewer>,
    page: PageRequest,
) -> Result<Page<Connection>, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let rows = repository::list(&tenant, &mut tx, page.after, page.limit).await?;
    Ok(Page::from_rows(rows, page.limit, |c| c.id))
}

pub async fn get(state: &Infra, auth: &Auth<Viewer>, id: Uuid) -> Result<Connection, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    repository::find(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Marketplace connection"))
}

pub async fn delete(state: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<(), ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    if !repository::delete(&tenant, &mut tx, id).await? {
        return Err(ApiError::not_found("Marketplace connection"));
    }
    tx.commit().await?;
    // Its synced products went with it.
    state.cache.invalidate_tenant(tenant.id()).await;
    Ok(())
}
