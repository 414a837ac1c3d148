//! Retention and the partitioned stock history: each kind purged past its
//! age in bounded batches, driven by a clock of the test's own; history
//! months created ahead and dropped whole; a history page reading only the
//! months it needs; and the migrations applied to a database of the previous
//! release, its data kept.

use std::time::Duration;

use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use stock_tracker::db::{begin_tenant_tx, observed};
use stock_tracker::products::repository::STOCK_HISTORY_NEXT_PAGE;
use stock_tracker::worker::retention;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{TestDatabase, base_settings, settings_for, spawn_app_with};

const DAY: Duration = Duration::from_secs(86_400);

/// A UUID v7 of `at`, as the service makes them.
fn v7_at(at: OffsetDateTime) -> Uuid {
    let nanos = at.unix_timestamp_nanos();
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    ))
}

/// The 15th of the month `back` months before `at`'s, at noon UTC.
fn mid_month(at: OffsetDateTime, back: i32) -> OffsetDateTime {
    let months = at.year() * 12 + i32::from(u8::from(at.month())) - 1 - back;
    let month = time::Month::try_from((months % 12 + 1) as u8).unwrap();
    time::Date::from_calendar_date(months / 12, month, 15)
        .unwrap()
        .with_hms(12, 0, 0)
        .unwrap()
        .assume_utc()
}

async fn count(db: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_kind_is_purged_past_its_age_in_bounded_batches() {
    let app = spawn_app_with(|s| {
        s.retention.batch_size = 2;
        s.retention.max_batches_per_run = 2;
    })
    .await;
    let owner = app.register("retention@example.com").await;
    let product = app.create_product(&owner, "R-1", "Kept", "1.00", 5).await;
    let product_id: Uuid = product["id"].as_str().unwrap().parse().unwrap();
    let mut db = app.database.owner_connection().await;
    let tenant = owner.tenant_id;
    // Five published outbox events and one not yet published; two finished
    // deliveries of each channel and one pending; a finished and a running
    // sync job; a revocation of a token expiring in 10 minutes.
    db.execute(sqlx::AssertSqlSafe(format!(
        "INSERT INTO outbox_events (id, tenant_id, event_type, payload, published_at)
         SELECT gen_random_uuid(), '{tenant}', 'stock.low', '{{}}', CASE WHEN i <= 5 THEN now() END
         FROM generate_series(1, 6) AS i;
         INSERT INTO webhook_subscriptions (id, tenant_id, url, events, secret_encrypted)
         VALUES ('{tenant}', '{tenant}', 'https://example.com/hook', ARRAY['stock.low'], 'x');
         INSERT INTO webhook_deliveries (id, tenant_id, subscription_id, event_id, event_type, payload, status)
         SELECT gen_random_uuid(), '{tenant}', '{tenant}', gen_random_uuid(), 'stock.low', '{{}}', s
         FROM unnest(ARRAY['succeeded', 'failed', 'pending']) AS s;
         INSERT INTO telegram_chats (id, tenant_id, chat_id, bot_token_encrypted, events)
         VALUES ('{tenant}', '{tenant}', '42', 'x', ARRAY['stock.low']);
         INSERT INTO telegram_deliveries (id, tenant_id, chat_id, event_id, event_type, payload, status)
         SELECT gen_random_uuid(), '{tenant}', '{tenant}', gen_random_uuid(), 'stock.low', '{{}}', s
         FROM unnest(ARRAY['succeeded', 'failed', 'pending']) AS s;
         INSERT INTO marketplace_connections (id, tenant_id, kind, name) VALUES ('{tenant}', '{tenant}', 'demo', 'd');
         INSERT INTO sync_jobs (id, tenant_id, connection_id, status, finished_at)
         VALUES (gen_random_uuid(), '{tenant}', '{tenant}', 'succeeded', now()),
                (gen_random_uuid(), '{tenant}', '{tenant}', 'running', NULL);
         INSERT INTO revoked_sessions (session_id, tenant_id, user_id, expires_at)
         VALUES (gen_random_uuid(), '{tenant}', '{}', now() + interval '10 minutes');",
        owner.user_id
    )))
    .await
    .unwrap();
    let settings = &app.state.settings;
    let purged = retention::register(&stock_tracker::telemetry::metrics::Metrics::new());
    let now = OffsetDateTime::now_utc();
    let run = |at: OffsetDateTime| {
        let purged = purged.clone();
        let db = app.state.db.clone();
        async move {
            retention::run(&db, settings, &purged, at, None)
                .await
                .unwrap()
        }
    };

    // A day later: only the revoked session, whose tokens have expired.
    let report = run(now + DAY).await;
    assert_eq!(report.total(), 1, "{report:?}");
    assert_eq!(report.of("revoked_sessions"), 1);

    // 31 days later: past the outbox's 7 days and the deliveries' 30. Two
    // batches of two per kind and run: four of the five events, then the last.
    let report = run(now + 31 * DAY).await;
    assert_eq!(report.of("outbox_events"), 4, "{report:?}");
    assert_eq!(report.of("webhook_deliveries"), 2);
    assert_eq!(report.of("telegram_deliveries"), 2);
    assert_eq!(report.of("sync_jobs"), 0);
    assert_eq!(report.of("stock_history"), 0);
    assert_eq!(run(now + 31 * DAY).await.of("outbox_events"), 1);
    assert_eq!(
        count(&mut db, "outbox_events").await,
        1,
        "unpublished stays"
    );
    assert_eq!(
        count(&mut db, "webhook_deliveries").await,
        1,
        "pending stays"
    );
    assert_eq!(
        count(&mut db, "telegram_deliveries").await,
        1,
        "pending stays"
    );

    // 400 days later: the finished job, the long-expired refresh token, and
    // this month's history — its partition dropped whole, the months of
    // that time created ahead.
    let report = run(now + 400 * DAY).await;
    assert_eq!(report.of("sync_jobs"), 1, "{report:?}");
    assert_eq!(report.of("refresh_tokens"), 1);
    assert_eq!(report.of("stock_history"), 1);
    assert!(report.partitions_created >= 4, "{report:?}");
    assert_eq!(
        count(&mut db, "sync_jobs").await,
        1,
        "the running job stays"
    );
    let this_month = format!(
        "product_stock_history_y{}m{:02}",
        now.year(),
        u8::from(now.month())
    );
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&this_month)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(exists, None, "{this_month} is dropped");
    // The product itself is not history: it stays.
    assert_eq!(count(&mut db, "products").await, 1);
    assert!(
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM products WHERE id = $1)")
            .bind(product_id)
            .fetch_one(&mut db)
            .await
            .unwrap()
    );

    // The counter, by kind, across the runs.
    let outbox = purged.with_label_values(&["outbox_events"]).get();
    assert_eq!(outbox, 5);
    assert_eq!(purged.with_label_values(&["stock_history"]).get(), 1);
}

#[tokio::test]
async fn a_history_page_reads_only_the_months_it_needs() {
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("months@example.com").await;
    let product = app.create_product(&owner, "M-1", "Months", "1.00", 0).await;
    let product_id: Uuid = product["id"].as_str().unwrap().parse().unwrap();
    let mut db = app.database.owner_connection().await;
    let now = OffsetDateTime::now_utc();
    // One change in the middle of each of the last four months (and the
    // creation's record, now).
    let months: Vec<OffsetDateTime> = (1..=4).map(|back| mid_month(now, back)).collect();
    sqlx::query("SELECT stock_history_add_partitions($1, $2)")
        .bind(months[3])
        .bind(now)
        .execute(&mut db)
        .await
        .unwrap();
    for (n, at) in months.iter().enumerate() {
        sqlx::query(
            "INSERT INTO product_stock_history (id, tenant_id, product_id, stock, source, recorded_at)
             VALUES ($1, $2, $3, $4, 'manual', $5)",
        )
        .bind(v7_at(*at))
        .bind(owner.tenant_id)
        .bind(product_id)
        .bind(n as i32 + 1)
        .bind(at)
        .execute(&mut db)
        .await
        .unwrap();
    }
    let in_default: i64 = count(&mut db, "product_stock_history_default").await;
    assert_eq!(in_default, 0, "every change is in its month's partition");

    // Through the API, one change a page: every month, newest first.
    let items = app
        .collect_pages(
            &owner,
            &format!("/api/v1/products/{product_id}/stock-history?limit=1"),
        )
        .await;
    let stocks: Vec<i64> = items.iter().map(|i| i["stock"].as_i64().unwrap()).collect();
    assert_eq!(stocks, [0, 1, 2, 3, 4]);

    // The page after a cursor two months back: the plan holds that month's
    // and older partitions (and the default one), none newer.
    let cursor = v7_at(months[1]);
    let mut tx = begin_tenant_tx(&app.state.db, owner.tenant_id)
        .await
        .unwrap();
    let (plan,): (Value,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) {STOCK_HISTORY_NEXT_PAGE}"
    )))
    .bind(owner.tenant_id)
    .bind(product_id)
    .bind(51i64)
    .bind(cursor)
    .fetch_one(observed("test", &mut *tx))
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let text = plan.to_string();
    let partition = |at: OffsetDateTime| {
        format!(
            "product_stock_history_y{}m{:02}",
            at.year(),
            u8::from(at.month())
        )
    };
    for older in [months[1], months[2], months[3]] {
        assert!(
            text.contains(&partition(older)),
            "{} in {text}",
            partition(older)
        );
    }
    for newer in [now, months[0], now + 31 * DAY] {
        assert!(
            !text.contains(&partition(newer)),
            "{} pruned from {text}",
            partition(newer)
        );
    }
}

#[tokio::test]
async fn migrations_apply_to_a_database_of_the_previous_release_and_keep_its_data() {
    let database = TestDatabase::empty(&base_settings()).await;
    let settings = settings_for(&database);
    // The previous release's migrations (0001–0008), from a copy of them.
    let previous = tempfile::tempdir().unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let version: u32 = name[..4].parse().unwrap();
        if version <= 8 {
            std::fs::copy(&path, previous.path().join(&name)).unwrap();
        }
    }
    let mut db = database.owner_connection().await;
    sqlx::migrate::Migrator::new(previous.path())
        .await
        .unwrap()
        .run(&mut db)
        .await
        .unwrap();

    // Its data: a tenant with a product whose history spans two months
    // (one of them long past: v7 ids of their time), an event, a token.
    let (tenant, product) = (Uuid::now_v7(), Uuid::now_v7());
    let now = OffsetDateTime::now_utc();
    let old = now - 200 * DAY;
    db.execute(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tenants (id, name) VALUES ('{tenant}', 'Upgraded');
         INSERT INTO products (id, tenant_id, sku, name, price, stock)
         VALUES ('{product}', '{tenant}', 'U-1', 'Old widget', 9.99, 3);
         INSERT INTO product_stock_history (id, tenant_id, product_id, stock, source, recorded_at)
         VALUES ('{}', '{tenant}', '{product}', 1, 'manual', now() - interval '200 days'),
                ('{}', '{tenant}', '{product}', 3, 'sync', now());
         INSERT INTO outbox_events (id, tenant_id, event_type, payload)
         VALUES (gen_random_uuid(), '{tenant}', 'stock.low', '{{\"sku\": \"U-1\"}}');",
        v7_at(old),
        v7_at(now),
    )))
    .await
    .unwrap();

    stock_tracker::db::migrate(&settings.database)
        .await
        .unwrap();

    let history: Vec<(i32, String)> = sqlx::query_as(
        "SELECT stock, tableoid::regclass::text FROM product_stock_history ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let month = |at: OffsetDateTime| {
        format!(
            "product_stock_history_y{}m{:02}",
            at.year(),
            u8::from(at.month())
        )
    };
    assert_eq!(history, [(1, month(old)), (3, month(now))]);
    let product_row: (String, i32) = sqlx::query_as("SELECT name, stock FROM products")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(product_row, ("Old widget".to_owned(), 3));
    assert_eq!(count(&mut db, "outbox_events").await, 1);
    // The search finds it through the new indexes.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let found: Vec<Uuid> = sqlx::query_scalar("SELECT product_search('%WIDGET%')")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(found, [product]);
}
