//! Behind a transaction pooler: a real PgBouncer in transaction mode, one
//! server connection shared by every client, and the service's transactions
//! interleaved on it. (`make test` also runs the database-backed suites
//! through PgBouncer; see `helpers::through_pooler`.)

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use secrecy::ExposeSecret;
use sqlx::Row;
use stock_tracker::config::Pooler;
use stock_tracker::db::{Database, begin_tenant_tx, connect_pool, observed};
use uuid::Uuid;

use crate::helpers::spawn_app_with;
use crate::processes::PgBouncer;

async fn create_tenant(db: &Database, name: &str) -> Uuid {
    let tenant_id = Uuid::now_v7();
    let mut tx = begin_tenant_tx(db, tenant_id).await.unwrap();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
        .bind(tenant_id)
        .bind(name)
        .execute(observed("test", &mut *tx))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tenant_id
}

/// What one tenant's transaction saw of its server connection.
#[derive(Debug)]
struct Seen {
    backend: i32,
    role: String,
    tenant_setting: String,
    visible: Vec<Uuid>,
}

/// A tenant transaction that reads who it is, waits while holding the
/// server connection (so the other client queues behind it), reads what it
/// sees, and commits.
async fn look(db: &Database, tenant: Uuid) -> Seen {
    let mut tx = begin_tenant_tx(db, tenant).await.unwrap();
    let (backend, role, tenant_setting): (i32, String, String) = sqlx::query_as(
        "SELECT pg_backend_pid(), current_user::text,
                coalesce(current_setting('app.tenant_id', true), '')",
    )
    .fetch_one(observed("test", &mut *tx))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let visible = sqlx::query_scalar("SELECT id FROM tenants")
        .fetch_all(observed("test", &mut *tx))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Seen {
        backend,
        role,
        tenant_setting,
        visible,
    }
}

#[tokio::test]
async fn two_tenants_interleaved_on_one_server_connection_see_only_their_own_rows_and_role() {
    let mut bouncer = None;
    let app = spawn_app_with(|s| {
        let direct = s.database.session_url().expose_secret().to_owned();
        // One server connection for the service's four client connections.
        let pgbouncer = PgBouncer::start(&direct, 1);
        s.database.url = pgbouncer.url(&direct).into();
        s.database.pooler = Pooler::Transaction;
        s.database.direct_url = Some(direct.into());
        s.database.max_connections = 4;
        // The second client queues behind the first one's transaction; on
        // a loaded machine that may take longer than the service would wait.
        s.database.acquire_timeout_ms = 30_000;
        bouncer = Some(pgbouncer);
    })
    .await;
    let bouncer = bouncer.unwrap();
    // Another pool of the same process straight to PostgreSQL, as a test
    // running alongside builds: it must not make this pool's statements
    // named (they would collide on the shared server connection).
    let mut direct = app.state.settings.database.clone();
    direct.url = direct.session_url().clone();
    direct.pooler = Pooler::None;
    direct.direct_url = None;
    let _direct_pool = connect_pool(&direct).unwrap();
    let checked = AssertUnwindSafe(interleave(&app.state.db))
        .catch_unwind()
        .await;
    if let Err(panic) = checked {
        // What PgBouncer saw (a server connection closed, a client refused)
        // explains most failures here; printed after the panic's backtrace.
        eprintln!("PgBouncer's log:\n{}", bouncer.log());
        std::panic::resume_unwind(panic);
    }
    drop(app);
    drop(bouncer);
}

async fn interleave(db: &Database) {
    let alpha = create_tenant(db, "alpha").await;
    let bravo = create_tenant(db, "bravo").await;

    for _ in 0..5 {
        // Both at once: two client connections, one server connection, so
        // PgBouncer runs one transaction, then hands the connection on.
        let (a, b) = tokio::join!(look(db, alpha), look(db, bravo));
        for (seen, tenant) in [(&a, alpha), (&b, bravo)] {
            assert_eq!(seen.visible, vec![tenant], "{seen:?}");
            assert_eq!(seen.role, "stock_tracker_app", "{seen:?}");
            assert_eq!(seen.tenant_setting, tenant.to_string(), "{seen:?}");
        }
        assert_eq!(
            a.backend, b.backend,
            "the two transactions ran on different server connections"
        );
        // Outside any transaction of the service, the next client finds
        // neither the role nor a tenant left behind.
        // (A simple query: one message, so the pooler runs it whole.)
        let row = sqlx::raw_sql(
            "SELECT current_user::text, coalesce(current_setting('app.tenant_id', true), '')",
        )
        .fetch_one(observed("test", db.pool()))
        .await
        .unwrap();
        let (role, tenant_setting): (String, String) = (row.get(0), row.get(1));
        assert_ne!(
            role, "stock_tracker_app",
            "the role outlived its transaction"
        );
        assert_eq!(tenant_setting, "", "the tenant outlived its transaction");
    }
    // The pool opened several client connections, each holding its own
    // (unnamed) statements' names: nothing collided on the shared server.
    assert!(db.pool().size() >= 2, "one client connection only");
}
