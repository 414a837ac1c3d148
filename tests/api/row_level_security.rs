//! Row-level security holds for the service's own connections, not only in theory.

use sqlx::{AssertSqlSafe, Executor};
use stock_tracker::config::Pooler;
use stock_tracker::db::{Database, begin_tenant_tx, observed};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_with};

async fn create_tenant_with_user(pool: &Database, name: &str) -> Uuid {
    let tenant_id = Uuid::now_v7();
    let mut tx = begin_tenant_tx(pool, tenant_id).await.unwrap();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
        .bind(tenant_id)
        .bind(name)
        .execute(observed("test", &mut *tx))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (tenant_id, email, password_hash, role) VALUES ($1, $2, 'x', 'owner')",
    )
    .bind(tenant_id)
    .bind(format!("owner@{name}.example"))
    .execute(observed("test", &mut *tx))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    tenant_id
}

const WHO_AM_I: &str = "SELECT current_user::text, r.rolsuper, r.rolbypassrls,
            EXISTS (SELECT 1 FROM pg_tables WHERE tableowner = current_user)
     FROM pg_roles r WHERE r.rolname = current_user";

fn assert_cannot_bypass_rls((user, is_super, bypasses, owns_tables): (String, bool, bool, bool)) {
    assert_eq!(user, "stock_tracker_app");
    assert!(!is_super, "the service's role is a superuser");
    assert!(!bypasses, "the service's role has BYPASSRLS");
    assert!(
        !owns_tables,
        "the service's role owns tables (owners bypass RLS)"
    );
}

#[tokio::test]
async fn the_service_transactions_run_as_a_role_that_cannot_bypass_rls() {
    let app = spawn_app().await;
    let db = &app.state.db;
    let mut tx = db.begin().await.unwrap();
    let who = sqlx::query_as(WHO_AM_I)
        .fetch_one(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_cannot_bypass_rls(who);
    tx.commit().await.unwrap();
    let mut tx = begin_tenant_tx(db, Uuid::now_v7()).await.unwrap();
    let who = sqlx::query_as(WHO_AM_I)
        .fetch_one(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_cannot_bypass_rls(who);
    // Without a pooler each connection also runs as the role outside them.
    if app.state.settings.database.pooler == Pooler::None {
        let who = sqlx::query_as(WHO_AM_I)
            .fetch_one(observed("test", db.pool()))
            .await
            .unwrap();
        assert_cannot_bypass_rls(who);
    }
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_rows() {
    let app = spawn_app().await;
    let pool = &app.state.db;
    let tenant_a = create_tenant_with_user(pool, "alpha").await;
    let tenant_b = create_tenant_with_user(pool, "bravo").await;

    let mut tx = begin_tenant_tx(pool, tenant_a).await.unwrap();
    let tenants: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tenants")
        .fetch_all(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_eq!(tenants, vec![tenant_a]);
    let emails: Vec<String> = sqlx::query_scalar("SELECT email FROM users")
        .fetch_all(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_eq!(emails, vec!["owner@alpha.example"]);
    // Even asking for B's row by id finds nothing.
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
        .bind(tenant_b)
        .fetch_optional(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_eq!(found, None);
    // Updates and deletes cannot reach B's rows either.
    let updated = sqlx::query("UPDATE users SET full_name = 'pwned' WHERE tenant_id = $1")
        .bind(tenant_b)
        .execute(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 0);
    let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1")
        .bind(tenant_b)
        .execute(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 0);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn a_tenant_cannot_write_rows_for_another_tenant() {
    let app = spawn_app().await;
    let pool = &app.state.db;
    let tenant_a = create_tenant_with_user(pool, "alpha").await;
    let tenant_b = create_tenant_with_user(pool, "bravo").await;
    let mut tx = begin_tenant_tx(pool, tenant_a).await.unwrap();
    let err = sqlx::query(
        "INSERT INTO users (tenant_id, email, password_hash, role) VALUES ($1, 'intruder@x.example', 'x', 'owner')",
    )
    .bind(tenant_b)
    .execute(observed("test", &mut *tx))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
}

#[tokio::test]
async fn with_no_tenant_set_nothing_is_visible() {
    let app = spawn_app().await;
    let pool = &app.state.db;
    create_tenant_with_user(pool, "alpha").await;
    let mut tx = pool.begin().await.unwrap();
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(observed("test", &mut *tx))
        .await
        .unwrap();
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_eq!((tenants, users), (0, 0));
}

#[tokio::test]
async fn the_tenant_setting_does_not_outlive_its_transaction() {
    // One connection, so the next query surely reuses the same session.
    let app = spawn_app_with(|s| {
        s.database.max_connections = 1;
        s.database.min_connections = 0;
    })
    .await;
    let pool = &app.state.db;
    let tenant = create_tenant_with_user(pool, "alpha").await;
    let mut tx = begin_tenant_tx(pool, tenant).await.unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_eq!(visible, 1);
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(observed("test", &mut *tx))
        .await
        .unwrap();
    assert_eq!(
        after, 0,
        "app.tenant_id leaked to the next user of the connection"
    );
}

async fn create_product(pool: &Database, tenant_id: Uuid, sku: &str) -> Uuid {
    let id = Uuid::now_v7();
    let mut tx = begin_tenant_tx(pool, tenant_id).await.unwrap();
    sqlx::query(
        "INSERT INTO products (id, tenant_id, sku, name, price, stock) VALUES ($1, $2, $3, 'Widget', 1, 1)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(sku)
    .execute(observed("test", &mut *tx))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn definer_functions_search_temporary_objects_last() {
    let app = spawn_app().await;
    let mut owner = app.database.owner_connection().await;
    let wrong: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
           AND NOT coalesce('search_path=pg_catalog, public, pg_temp' = ANY (p.proconfig), false)",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(
        wrong,
        vec![],
        "SECURITY DEFINER functions without `SET search_path = pg_catalog, public, pg_temp`"
    );
    let definers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prosecdef",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(definers >= 20, "only {definers} definer functions found");
}

/// The attack: a session running SQL as the app role shadows `products`
/// with a temporary view over a temporary function. Inside a SECURITY
/// DEFINER function both would run as the schema's owner, to whom row-level
/// security does not apply.
#[tokio::test]
async fn a_temporary_view_cannot_show_another_tenants_rows_through_a_definer_function() {
    let app = spawn_app().await;
    let pool = &app.state.db;
    let tenant_a = create_tenant_with_user(pool, "alpha").await;
    let tenant_b = create_tenant_with_user(pool, "bravo").await;
    let own = create_product(pool, tenant_a, "A-1").await;
    create_product(pool, tenant_b, "B-1").await;

    let mut owner = app.database.owner_connection().await;
    owner.execute("SET ROLE stock_tracker_app").await.unwrap();
    // `migrate` revoked TEMPORARY from PUBLIC: the app role cannot even try.
    let refused = owner
        .execute("CREATE TEMP VIEW products AS SELECT 1")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );

    // Where the migrating role could not revoke it (it does not own the
    // database), the definer functions still do not look there first.
    owner.execute("RESET ROLE").await.unwrap();
    owner
        .execute(AssertSqlSafe(format!(
            r#"GRANT TEMPORARY ON DATABASE "{}" TO PUBLIC"#,
            app.database.name
        )))
        .await
        .unwrap();
    owner.execute("SET ROLE stock_tracker_app").await.unwrap();
    owner
        .execute(
            "CREATE FUNCTION pg_temp.every_product() RETURNS SETOF public.products
             LANGUAGE sql AS 'SELECT * FROM public.products'",
        )
        .await
        .unwrap();
    owner
        .execute(
            "CREATE TEMP VIEW products AS
             SELECT id, app_current_tenant_id() AS tenant_id, name, sku FROM pg_temp.every_product()",
        )
        .await
        .unwrap();
    owner.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant_a.to_string())
        .execute(&mut owner)
        .await
        .unwrap();
    let found: Vec<Uuid> = sqlx::query_scalar("SELECT product_search('%')")
        .fetch_all(&mut owner)
        .await
        .unwrap();
    owner.execute("ROLLBACK").await.unwrap();
    assert_eq!(found, vec![own], "the search read another tenant's rows");
}
