//! The first platform administrator, from configuration
//! (`[auth.first_admin]`), created by `stock-tracker migrate`: an owner of a
//! tenant of its own on the `internal` tier, flagged as platform
//! administrator, with a verified address. Its password comes from
//! `password_file`, or it is chosen through a one-time setup link that
//! `migrate` prints (a password-reset link valid for
//! `auth.invitation_ttl_secs`). Idempotent: once the address has an account,
//! `migrate` only makes sure it is a platform administrator.

use anyhow::Context;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::repository::Purpose;
use super::service::RESET_PASSWORD_PATH;
use crate::auth::Role;
use crate::auth::password::{self, PasswordHasher};
use crate::auth::tokens::new_emailed_token;
use crate::config::Settings;
use crate::db::{self, observed};

/// What `migrate` did about the first administrator.
#[derive(Debug)]
pub enum FirstAdmin {
    /// None configured.
    NotConfigured,
    /// The address already had an account (now a platform administrator).
    Existing { user_id: Uuid },
    /// Created with the password from its file.
    Created { user_id: Uuid },
    /// Created without a password: it is chosen through this link.
    CreatedWithSetupLink { user_id: Uuid, link: String },
}

pub async fn ensure(settings: &Settings) -> anyhow::Result<FirstAdmin> {
    let config = &settings.auth.first_admin;
    let email = config.email.trim().to_lowercase();
    if email.is_empty() {
        return Ok(FirstAdmin::NotConfigured);
    }
    let pool = db::owner_pool(&settings.database).await?;
    let mut tx = pool.begin().await?;
    let existing: Option<(Uuid, Uuid)> =
        sqlx::query_as("SELECT id, tenant_id FROM users WHERE lower(email) = $1 FOR UPDATE")
            .bind(&email)
            .fetch_optional(observed("first_admin.find", &mut *tx))
            .await?;
    if let Some((user_id, tenant_id)) = existing {
        sqlx::query("UPDATE users SET is_platform_admin = true WHERE id = $1")
            .bind(user_id)
            .execute(observed("first_admin.flag", &mut *tx))
            .await?;
        sqlx::query("UPDATE tenants SET tier = 'internal' WHERE id = $1")
            .bind(tenant_id)
            .execute(observed("first_admin.tier", &mut *tx))
            .await?;
        tx.commit().await?;
        pool.close().await;
        return Ok(FirstAdmin::Existing { user_id });
    }
    let password = match &config.password_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| {
                    format!(
                        "reading auth.first_admin.password_file `{}`",
                        path.display()
                    )
                })?
                .trim_end()
                .to_owned(),
        ),
        None => None,
    };
    let hasher = PasswordHasher::new(&settings.auth.argon2)?;
    let hash = match &password {
        Some(password) => {
            password::check_policy(password, &email, "password").map_err(|err| {
                anyhow::anyhow!("auth.first_admin.password_file: the password is refused: {err:?}")
            })?;
            hasher.hash(password.clone()).await
        }
        // Nobody knows this one: the setup link sets the real password.
        None => hasher.hash(new_emailed_token().0).await,
    }
    .map_err(|err| anyhow::anyhow!("hashing the first administrator's password: {err}"))?;
    let (tenant_id, user_id) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query("INSERT INTO tenants (id, name, tier) VALUES ($1, $2, 'internal')")
        .bind(tenant_id)
        .bind(config.tenant_name.trim())
        .execute(observed("first_admin.tenant", &mut *tx))
        .await?;
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, full_name, password_hash, role,
                            is_platform_admin, email_verified_at)
         VALUES ($1, $2, $3, '', $4, $5, true, now())",
    )
    .bind(user_id)
    .bind(tenant_id)
    .bind(&email)
    .bind(&hash)
    .bind(Role::Owner.as_str())
    .execute(observed("first_admin.user", &mut *tx))
    .await?;
    let outcome = if password.is_some() {
        FirstAdmin::Created { user_id }
    } else {
        let (token, token_hash) = new_emailed_token();
        let ttl = settings.auth.invitation_ttl_secs;
        sqlx::query(
            "INSERT INTO account_tokens (id, tenant_id, user_id, purpose, email, token_hash, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::now_v7())
        .bind(tenant_id)
        .bind(user_id)
        .bind(Purpose::PasswordReset.as_str())
        .bind(&email)
        .bind(&token_hash)
        .bind(OffsetDateTime::now_utc() + Duration::seconds(ttl as i64))
        .execute(observed("first_admin.setup_token", &mut *tx))
        .await?;
        FirstAdmin::CreatedWithSetupLink {
            user_id,
            link: settings.server.public_link(RESET_PASSWORD_PATH, &token),
        }
    };
    tx.commit().await?;
    pool.close().await;
    Ok(outcome)
}
