//! Register, sign in, rotate, sign out.

use garde::Validate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, Actor, Event, Origin, Target};
use crate::auth::AuthState;
use crate::auth::extractor::{Auth, PrincipalKind, TenantCtx, Viewer};
use crate::auth::password;
use crate::auth::repository;
use crate::auth::roles::{Role, Tier};
use crate::auth::tokens::new_refresh_token;
use crate::config::Registration;
use crate::http::error::ApiError;
use crate::http::validation::not_blank;
use crate::infra::Infra;
use crate::tenants::model::Tenant;
use crate::tenants::repository as tenants;
use crate::users::model::User;
use crate::users::repository as users;
use crate::users::service::map_email_taken;
use crate::{accounts, db, email};

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[garde(email, length(max = 320))]
    #[schema(example = "owner@acme.example", format = Email, max_length = 320)]
    pub email: String,
    /// At least 10 characters, not the email, not a common password.
    #[garde(skip)]
    #[schema(schema_with = password::new_password_schema)]
    pub password: String,
    /// The company (tenant) to create.
    #[garde(length(min = 1, max = 200), custom(not_blank))]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub tenant_name: String,
    #[garde(length(max = 200))]
    #[schema(max_length = 200)]
    #[serde(default)]
    pub full_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    pub user: User,
    pub tenant: Tenant,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[garde(length(min = 1, max = 320))]
    #[schema(min_length = 1, max_length = 320)]
    pub email: String,
    #[garde(length(min = 1, max = 1024))]
    #[schema(min_length = 1, max_length = 1024, format = Password)]
    pub password: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[garde(length(min = 1, max = 512))]
    #[schema(min_length = 1, max_length = 512)]
    pub refresh_token: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Single-use: each refresh returns a new one. Reusing a spent one ends the session.
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
}

fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_credentials",
        detail: "Incorrect email or password".into(),
        challenge: "Bearer",
    }
}

fn invalid_refresh_token() -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_refresh_token",
        detail: "The refresh token is invalid, expired or already used; sign in again".into(),
        challenge: r#"Bearer error="invalid_token""#,
    }
}

/// Creates a tenant (tier `free`) and its owner in one transaction.
pub async fn register(
    infra: &Infra,
    auth_state: &AuthState,
    input: RegisterRequest,
) -> Result<RegisterResponse, ApiError> {
    match infra.settings.auth.registration {
        Registration::Open => {}
        Registration::InviteOnly => {
            return Err(ApiError::Forbidden {
                code: "registration_closed",
                detail: "Registration is by invitation only: ask an administrator of your company to invite you".into(),
            });
        }
        Registration::Closed => {
            return Err(ApiError::Forbidden {
                code: "registration_closed",
                detail: "Registration is closed".into(),
            });
        }
    }
    let email = input.email.trim().to_lowercase();
    password::check_policy(&input.password, &email, "password")?;
    let hash = auth_state.passwords.hash(input.password).await?;
    // The tenant does not exist yet: its id is chosen here, and the
    // transaction is scoped to it, so row-level security admits exactly the
    // rows being created.
    let tenant = TenantCtx::new(Uuid::now_v7());
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let created = tenants::insert(&tenant, &mut tx, input.tenant_name.trim()).await?;
    let user = users::insert(
        &tenant,
        &mut tx,
        &email,
        input.full_name.trim(),
        &hash,
        Role::Owner,
    )
    .await
    .map_err(map_email_taken)?;
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
    auth_state.events.count("register", "success");
    tracing::info!(tenant_id = %tenant.id(), user_id = %user.id, "tenant registered");
    Ok(RegisterResponse {
        user,
        tenant: created,
    })
}

/// Verifies an email and password and opens a session.
pub async fn login(
    infra: &Infra,
    auth_state: &AuthState,
    origin: &Origin,
    email: &str,
    password: &str,
) -> Result<TokenResponse, ApiError> {
    auth_state.login_backoff.check(email).await?;
    let account = repository::find_login(&infra.db, email.trim()).await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    // Runs the same argon2 work whether or not the account exists.
    let verified = auth_state
        .passwords
        .verify(password.to_owned(), stored)
        .await?;
    let account = match account {
        Some(account) if verified && account.is_active => account,
        _ => {
            auth_state.login_backoff.failed(email).await;
            auth_state.events.count("login", "failure");
            if let Some(account) = account {
                record_failed_login(infra, origin, &account);
            }
            return Err(invalid_credentials());
        }
    };
    auth_state.login_backoff.succeeded(email).await;
    if let Some(purge_after) = account
        .tenant_purge_after
        .filter(|_| account.tenant_deleted_at.is_some())
    {
        return Err(ApiError::Forbidden {
            code: "tenant_deleted",
            detail: format!(
                "This tenant was deleted and is purged after {}; until then an owner can restore it with POST /api/v1/tenants/me/restore",
                purge_after.date()
            ),
        });
    }
    if account.email_verified_at.is_none()
        && infra
            .settings
            .auth
            .requires_verified_email(infra.settings.is_production())
    {
        auth_state.events.count("login", "unverified");
        return Err(ApiError::Forbidden {
            code: "email_not_verified",
            detail: "Verify your email address first: follow the link we sent, or ask for a new one with POST /api/v1/auth/verify-email/resend".into(),
        });
    }
    let tenant = TenantCtx::new(account.tenant_id);
    let role: Role = account.role.parse().map_err(ApiError::internal)?;
    let tier: Tier = account.tier.parse().map_err(ApiError::internal)?;
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let session = Session {
        user_id: account.user_id,
        role,
        tier,
        id: Uuid::now_v7(),
        authenticated_at: Some(OffsetDateTime::now_utc()),
    };
    let response = open_session(auth_state, &tenant, &mut tx, &session).await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::LoginSucceeded,
        Actor::user(account.user_id),
        Some(Target::user(account.user_id)),
        origin,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    auth_state.events.count("login", "success");
    Ok(response)
}

/// Records a failed sign-in of an existing account in its tenant's audit
/// log, after the answer: the write must not make failures for existing
/// accounts slower than for unknown addresses.
fn record_failed_login(infra: &Infra, origin: &Origin, account: &repository::LoginRow) {
    let (db, origin) = (infra.db.clone(), origin.clone());
    let (tenant, user_id) = (TenantCtx::new(account.tenant_id), account.user_id);
    actix_web::rt::spawn(async move {
        let recorded = async {
            let mut tx = db::begin_tenant_tx(&db, tenant.id()).await?;
            audit::record(
                &tenant,
                &mut tx,
                Event::LoginFailed,
                Actor::anonymous(),
                Some(Target::user(user_id)),
                &origin,
                json!({"reason": "invalid_credentials"}),
            )
            .await?;
            tx.commit().await?;
            anyhow::Ok(())
        };
        if let Err(err) = recorded.await {
            tracing::warn!(error = %format!("{err:#}"), "failed sign-in not recorded in the audit log");
        }
    });
}

/// A session's tokens are minted for: its user, as the account now is.
struct Session {
    user_id: Uuid,
    role: Role,
    tier: Tier,
    /// The refresh-token family (`sid`).
    id: Uuid,
    /// When the session signed in with a password (unknown for old sessions).
    authenticated_at: Option<OffsetDateTime>,
}

/// Issues a refresh token in the session's family and an access token bound
/// to it, both carrying when the session signed in with a password.
async fn open_session(
    auth_state: &AuthState,
    tenant: &TenantCtx,
    conn: &mut sqlx::PgConnection,
    session: &Session,
) -> Result<TokenResponse, ApiError> {
    let Session {
        user_id,
        role,
        tier,
        id: family_id,
        authenticated_at,
    } = *session;
    let (refresh_token, hash) = new_refresh_token();
    let expires_at =
        OffsetDateTime::now_utc() + Duration::seconds(auth_state.refresh_token_ttl_secs as i64);
    repository::insert_refresh_token(
        tenant,
        conn,
        user_id,
        family_id,
        &hash,
        expires_at,
        authenticated_at,
    )
    .await?;
    let auth_time = authenticated_at.map_or(0, OffsetDateTime::unix_timestamp);
    let access = auth_state
        .tokens
        .issue(user_id, tenant.id(), role, tier, family_id, auth_time)
        .map_err(ApiError::internal)?;
    Ok(TokenResponse {
        access_token: access.token,
        refresh_token,
        token_type: "bearer".into(),
        expires_in: access.expires_in,
    })
}

/// Rotates a refresh token. A spent token presented again revokes its whole
/// family: either it was stolen, or its legitimate holder already rotated it
/// and the presenter is someone else.
pub async fn refresh(
    infra: &Infra,
    auth_state: &AuthState,
    refresh_token: &str,
) -> Result<TokenResponse, ApiError> {
    let hash = crate::auth::tokens::hash_secret(refresh_token);
    let Some(row) = repository::find_refresh_token(&infra.db, &hash).await? else {
        auth_state.events.count("refresh", "failure");
        return Err(invalid_refresh_token());
    };
    let tenant = TenantCtx::new(row.tenant_id);
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    if !repository::spend_refresh_token(&tenant, &mut tx, row.id).await? {
        let reused = row.revoked_at.is_none() && row.expires_at > OffsetDateTime::now_utc();
        if reused {
            end_session(auth_state, &tenant, tx, row.user_id, row.family_id).await?;
            auth_state.events.count("refresh", "reuse_detected");
            tracing::warn!(
                user_id = %row.user_id,
                family_id = %row.family_id,
                "spent refresh token presented again; session revoked"
            );
        } else {
            auth_state.events.count("refresh", "failure");
        }
        return Err(invalid_refresh_token());
    }
    let (role, active, tier) = repository::session_user(&tenant, &mut tx, row.user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(invalid_refresh_token)?;
    if !active {
        end_session(auth_state, &tenant, tx, row.user_id, row.family_id).await?;
        return Err(invalid_refresh_token());
    }
    let session = Session {
        user_id: row.user_id,
        role,
        tier,
        id: row.family_id,
        authenticated_at: row.authenticated_at,
    };
    let response = open_session(auth_state, &tenant, &mut tx, &session).await?;
    tx.commit().await?;
    auth_state.events.count("refresh", "success");
    Ok(response)
}

/// Ends a session in `tx` and commits: its refresh-token family, and every
/// access token it minted (refused from the next request on, by every
/// replica: Redis is written now, and the committed row reaches it anyway
/// through the invalidation replay if this write is lost).
async fn end_session(
    auth_state: &AuthState,
    tenant: &TenantCtx,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    user_id: Uuid,
    session_id: Uuid,
) -> Result<(), ApiError> {
    let expires_at = auth_state.revocations.session_revocation_expiry();
    repository::revoke_session(tenant, &mut tx, user_id, session_id, expires_at).await?;
    tx.commit().await?;
    auth_state
        .revocations
        .revoke_session(tenant.id(), session_id, expires_at)
        .await;
    Ok(())
}

/// Ends the caller's session: its refresh-token family and every access
/// token of the session, the one presented and any other it minted. With
/// Redis down the revocation is written to PostgreSQL only; checks fall back
/// to it until Redis is refilled.
pub async fn logout(
    infra: &Infra,
    auth_state: &AuthState,
    auth: &Auth<Viewer>,
) -> Result<(), ApiError> {
    let PrincipalKind::User { session_id, .. } = auth.principal.kind else {
        return auth.user_session().map(|_| ());
    };
    let tenant = auth.tenant();
    let tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    end_session(auth_state, &tenant, tx, auth.principal.user_id, session_id).await?;
    auth_state.events.count("logout", "success");
    Ok(())
}
