//! Migrations: a fresh database migrates to the latest schema; an older one upgrades in place
//! keeping its data; a newer one is refused with `SchemaTooNew`; migrating again, reopening and
//! migrating from several stores at once change nothing; an edited migration is refused.
//!
//! PostgreSQL cases run under `TESSERA_TEST_POSTGRES_URL` (each in a fresh schema), are skipped
//! with a message without it, and fail under `CI=true` without it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::path::Path;

use common::fixtures;
use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::format::Spelling;
use tessera_core::id::UserId;
use tessera_sql::{Error, SqliteStore};
use tessera_store::{AuditFilter, Store};

/// A raw connection to a database file, bypassing the store, to inspect or tamper with it.
fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open the database file directly")
}

fn sqlite_index_exists(conn: &rusqlite::Connection, name: &str) -> bool {
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .expect("read the schema");
    n == 1
}

/// The columns of `tokens` under schema 1, to copy a row written by this build into a database
/// that has only schema 1 (this build writes columns added later).
const SCHEMA_1_TOKEN_COLUMNS: &str = "id, kind, digest_key, digest, spelling, hint, state, \
     created_at, created_by, generated_by, expires_at, last_used_at, activated_at, grace_until, \
     successor, max_uses, uses, app_name, owner, endpoint, method, binding, bound_device, data";

/// `record` as schema 1 keeps it: it has no sealed secret.
fn as_under_schema_1(
    record: &tessera_core::record::TokenRecord,
) -> tessera_core::record::TokenRecord {
    tessera_core::record::TokenRecord {
        sealed: None,
        ..record.clone()
    }
}

fn event_by(user: &str) -> AuditEvent {
    AuditEvent::new(
        fixtures::now(),
        Actor::User(UserId::parse(user).expect("a user")),
        AuditAction::Issued,
    )
}

#[tokio::test]
async fn sqlite_fresh_database_migrates_to_latest() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("t.db"))
        .await
        .expect("open");
    assert_eq!(store.schema_version().await.expect("version"), None);
    store.migrate().await.expect("migrate");
    assert_eq!(
        store.schema_version().await.expect("version"),
        Some(SqliteStore::SCHEMA_VERSION)
    );
    const { assert!(SqliteStore::SCHEMA_VERSION >= 2) };
}

#[tokio::test]
async fn sqlite_upgrades_in_place_from_0001_keeping_data() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let pepper = fixtures::pepper();
    let (_, record) = fixtures::issue(&pepper, fixtures::deployment("kept"), Spelling::Prefixed);
    // The row as this build writes it, copied into the schema 1 database without later columns.
    let source = dir.path().join("source.db");
    {
        let new = SqliteStore::open(&source).await.expect("open");
        new.migrate().await.expect("migrate");
        new.insert(&record, &[]).await.expect("insert");
        new.close().await;
    }
    {
        let old = SqliteStore::open(&path).await.expect("open");
        old.migrate_to(1).await.expect("migrate to 0001 only");
        assert_eq!(old.schema_version().await.expect("version"), Some(1));
        old.append(&event_by("alice"))
            .await
            .expect("append under schema 1");
        old.close().await;
    }
    let pool = raw(&path);
    pool.execute(
        "ATTACH DATABASE ?1 AS source",
        [source.display().to_string()],
    )
    .expect("attach");
    pool.execute_batch(&format!(
        "INSERT INTO main.tokens ({SCHEMA_1_TOKEN_COLUMNS}) \
         SELECT {SCHEMA_1_TOKEN_COLUMNS} FROM source.tokens; DETACH DATABASE source"
    ))
    .expect("insert under schema 1");
    let record = as_under_schema_1(&record);
    assert!(
        !sqlite_index_exists(&pool, "audit_events_actor"),
        "0002 not applied yet"
    );

    let store = SqliteStore::open(&path).await.expect("reopen");
    store.migrate().await.expect("upgrade in place");
    assert_eq!(
        store.schema_version().await.expect("version"),
        Some(SqliteStore::SCHEMA_VERSION)
    );
    assert!(
        sqlite_index_exists(&pool, "audit_events_actor"),
        "0002 applied"
    );
    assert_eq!(store.get(record.id).await.expect("get"), Some(record));
    let mut filter = AuditFilter::default();
    filter.actor = Some(Actor::User(UserId::parse("alice").expect("a user")));
    assert_eq!(store.events(&filter).await.expect("events").len(), 1);
    drop(pool);
}

/// 0005 gives rows written before it the keys of their unique names (application names
/// lowercased, auth names per owner), except duplicates made before the rule, which keep their
/// old value; afterwards the names are unique ignoring case.
#[tokio::test]
async fn sqlite_0005_keys_unique_names_and_leaves_old_duplicates_alone() {
    use tessera_core::lifecycle::State;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let pepper = fixtures::pepper();
    let issue = |data, state| {
        let (_, mut r) = fixtures::issue(&pepper, data, Spelling::Prefixed);
        r.state = state;
        r
    };
    let app = |n: &str| fixtures::application(n, "", &["security-director"]);
    let rows = [
        issue(app("Feed"), State::Active),
        issue(app("FEED"), State::Revoked),
        issue(app("Solo"), State::Active),
        issue(fixtures::auth("alice", "x", &["p"]), State::Active),
        issue(fixtures::auth("alice", "X", &["p"]), State::Revoked),
        issue(fixtures::auth("bob", "Y", &["p"]), State::Active),
    ];
    let store = SqliteStore::open(&path).await.expect("open");
    store.migrate_to(4).await.expect("migrate to 0004");
    for r in &rows {
        store.insert(r, &[]).await.expect("insert under 0004");
    }
    // The rows as 0004 wrote them: names as given, no auth keys, and two duplicates in force.
    let pool = raw(&path);
    pool.execute_batch(&format!(
        "UPDATE tokens SET app_name = json_extract(data, '$.name') WHERE kind = 'application'; \
         UPDATE tokens SET app_name = NULL WHERE kind = 'auth'; \
         UPDATE tokens SET state = 'active' WHERE id IN ('{}', '{}')",
        rows[1].id, rows[4].id
    ))
    .expect("write as 0004 did");
    store.migrate().await.expect("apply 0005");
    let key = |i: usize| {
        let id = rows[i].id.to_string();
        let found: Option<String> = pool
            .query_row("SELECT app_name FROM tokens WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .expect("read the key");
        std::future::ready(found)
    };
    assert_eq!(
        key(0).await.as_deref(),
        Some("Feed"),
        "a duplicate is left alone"
    );
    assert_eq!(
        key(1).await.as_deref(),
        Some("FEED"),
        "a duplicate is left alone"
    );
    assert_eq!(key(2).await.as_deref(), Some("solo"));
    assert_eq!(key(3).await, None, "a duplicate auth name is left alone");
    assert_eq!(key(4).await, None, "a duplicate auth name is left alone");
    assert_eq!(key(5).await.as_deref(), Some("auth:3:bob:y"));
    for data in [app("SOLO"), fixtures::auth("bob", "y", &["p"])] {
        let (_, r) = fixtures::issue(&pepper, data, Spelling::Prefixed);
        assert!(
            matches!(
                store.insert(&r, &[]).await,
                Err(tessera_store::StoreError::AlreadyExists { .. })
            ),
            "{:?} taken in another case",
            r.data
        );
    }
    drop(pool);
}

#[tokio::test]
async fn sqlite_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).await.expect("open");
    store.migrate().await.expect("migrate");
    let newer = SqliteStore::SCHEMA_VERSION + 1;
    raw(&path)
        .execute(
            "INSERT INTO _tessera_migrations (version, description, checksum, installed_at) \
             VALUES (?1, 'from the future', x'00', 0)",
            [newer],
        )
        .expect("pretend a newer build migrated");

    match store.migrate().await {
        Err(Error::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (newer, SqliteStore::SCHEMA_VERSION));
        }
        other => panic!("migrate on a newer schema: {other:?}"),
    }
    store.close().await;
    let reopened = SqliteStore::open(&path).await;
    assert!(
        matches!(reopened, Err(Error::SchemaTooNew { found, .. }) if found == newer),
        "open on a newer schema: {reopened:?}"
    );
    let e = Error::SchemaTooNew {
        found: newer,
        supported: SqliteStore::SCHEMA_VERSION,
    };
    assert!(e.to_string().contains("upgrade tessera"), "{e}");
}

#[tokio::test]
async fn sqlite_migrate_and_reopen_are_idempotent() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let pepper = fixtures::pepper();
    let (_, record) = fixtures::issue(
        &pepper,
        fixtures::auth("bob", "t", &["p"]),
        Spelling::Prefixed,
    );
    let store = SqliteStore::open(&path).await.expect("open");
    store.migrate().await.expect("migrate");
    store.insert(&record, &[]).await.expect("insert");
    store.migrate().await.expect("migrate again");
    store.close().await;
    let store = SqliteStore::open(&path).await.expect("reopen");
    store.migrate().await.expect("migrate after reopening");
    assert_eq!(store.get(record.id).await.expect("get"), Some(record));
    let applied: i64 = raw(&path)
        .query_row("SELECT COUNT(*) FROM _tessera_migrations", [], |r| r.get(0))
        .expect("count applied migrations");
    assert_eq!(applied, SqliteStore::SCHEMA_VERSION);
}

#[tokio::test]
async fn sqlite_concurrent_migrations_all_succeed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(SqliteStore::open(&path).await.expect("open"));
    }
    let tasks: Vec<_> = stores
        .into_iter()
        .map(|s| tokio::spawn(async move { s.migrate().await.map(|()| s) }))
        .collect();
    for t in tasks {
        let s = t
            .await
            .expect("join")
            .expect("every concurrent migrate succeeds");
        assert_eq!(
            s.schema_version().await.expect("version"),
            Some(SqliteStore::SCHEMA_VERSION)
        );
    }
}

#[tokio::test]
async fn sqlite_edited_migration_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).await.expect("open");
    store.migrate().await.expect("migrate");
    raw(&path)
        .execute(
            "UPDATE _tessera_migrations SET checksum = x'00' WHERE version = 1",
            [],
        )
        .expect("pretend 0001 was edited");
    assert!(matches!(
        store.migrate().await,
        Err(Error::MigrationChanged { version: 1 })
    ));
}

#[tokio::test]
async fn sqlite_tracking_table_is_tesseras_own() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    // An application's own sqlx migrations live in the same file.
    let pool = raw(&path);
    pool.execute_batch(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT); \
         INSERT INTO _sqlx_migrations VALUES (20250101000000, 'the application''s own');",
    )
    .expect("an application's migrations");
    let store = SqliteStore::open(&path).await.expect("open");
    store
        .migrate()
        .await
        .expect("migrate beside the application's table");
    let theirs: i64 = pool
        .query_row("SELECT COUNT(*) FROM _sqlx_migrations", [], |r| r.get(0))
        .expect("their table is untouched");
    assert_eq!(theirs, 1);
}

#[cfg(feature = "postgres")]
mod postgres {
    use sqlx::PgPool;
    use tessera_sql::Error;
    use tessera_sql::postgres::{PostgresConfig, PostgresStore};
    use tessera_store::Store;

    use super::{common, fixtures};
    use tessera_core::format::Spelling;

    struct Schema {
        url: String,
        name: String,
    }

    impl Schema {
        fn fresh() -> Option<Self> {
            Some(Self {
                url: common::postgres_url_or_skip()?,
                name: common::fresh_schema(),
            })
        }

        async fn store(&self) -> Result<PostgresStore, Error> {
            let config = PostgresConfig::new(self.url.as_str())
                .schema(&self.name)?
                .max_connections(4);
            PostgresStore::connect_with(config).await
        }

        async fn raw(&self) -> PgPool {
            PgPool::connect(&self.url).await.expect("connect directly")
        }

        async fn drop(self) {
            let pool = self.raw().await;
            let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
            sqlx::raw_sql(&drop)
                .execute(&pool)
                .await
                .expect("drop the test schema");
            pool.close().await;
        }
    }

    #[tokio::test]
    async fn postgres_upgrades_in_place_from_0001_keeping_data() {
        let Some(schema) = Schema::fresh() else {
            return;
        };
        let pepper = fixtures::pepper();
        let (_, record) =
            fixtures::issue(&pepper, fixtures::deployment("kept"), Spelling::Prefixed);
        // The row as this build writes it, copied into the schema 1 tables without later
        // columns.
        let source = Schema::fresh().expect("a server");
        let new = source.store().await.expect("connect");
        new.migrate().await.expect("migrate");
        new.insert(&record, &[]).await.expect("insert");
        new.close().await;
        let old = schema.store().await.expect("connect");
        assert_eq!(old.schema_version().await.expect("version"), None);
        old.migrate_to(1).await.expect("migrate to 0001 only");
        old.close().await;
        let copy = source.raw().await;
        sqlx::raw_sql(&format!(
            "INSERT INTO \"{}\".tokens ({cols}) SELECT {cols} FROM \"{}\".tokens",
            schema.name,
            source.name,
            cols = super::SCHEMA_1_TOKEN_COLUMNS
        ))
        .execute(&copy)
        .await
        .expect("insert under schema 1");
        copy.close().await;
        source.drop().await;
        let record = super::as_under_schema_1(&record);
        let store = schema.store().await.expect("reconnect");
        assert_eq!(store.schema_version().await.expect("version"), Some(1));
        store.migrate().await.expect("upgrade in place");
        assert_eq!(
            store.schema_version().await.expect("version"),
            Some(PostgresStore::SCHEMA_VERSION)
        );
        assert_eq!(store.get(record.id).await.expect("get"), Some(record));
        let pool = schema.raw().await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'audit_events_actor'")
            .bind(&schema.name)
            .fetch_one(&pool)
            .await
            .expect("read the catalog");
        assert_eq!(n, 1, "0002's index exists");
        pool.close().await;
        store.close().await;
        schema.drop().await;
    }

    #[tokio::test]
    async fn postgres_newer_schema_is_refused() {
        let Some(schema) = Schema::fresh() else {
            return;
        };
        let store = schema.store().await.expect("connect");
        store.migrate().await.expect("migrate");
        let newer = PostgresStore::SCHEMA_VERSION + 1;
        let pool = schema.raw().await;
        let insert = format!(
            "INSERT INTO \"{}\"._tessera_migrations (version, description, checksum, installed_at) \
             VALUES ($1, 'from the future', '\\x00', 0)",
            schema.name
        );
        sqlx::query(&insert)
            .bind(newer)
            .execute(&pool)
            .await
            .expect("pretend a newer build migrated");
        pool.close().await;
        assert!(
            matches!(store.migrate().await, Err(Error::SchemaTooNew { found, .. }) if found == newer)
        );
        store.close().await;
        assert!(
            matches!(schema.store().await, Err(Error::SchemaTooNew { found, .. }) if found == newer)
        );
        schema.drop().await;
    }

    #[tokio::test]
    async fn postgres_concurrent_and_repeated_migrations_succeed() {
        let Some(schema) = Schema::fresh() else {
            return;
        };
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = schema.store().await.expect("connect");
            tasks.push(tokio::spawn(async move {
                store.migrate().await.map(|()| store)
            }));
        }
        for t in tasks {
            let s = t
                .await
                .expect("join")
                .expect("every concurrent migrate succeeds");
            s.migrate().await.expect("migrate again");
            assert_eq!(
                s.schema_version().await.expect("version"),
                Some(PostgresStore::SCHEMA_VERSION)
            );
            s.close().await;
        }
        schema.drop().await;
    }
}

/// A database where an older build enrolled one device twice upgrades to one enrollment per
/// device (the first kept), and the new unique index then refuses a second enrollment.
#[tokio::test]
async fn sqlite_upgrade_keeps_each_devices_first_enrollment() {
    use tessera_core::kind::onboarding::DeviceBinding;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let pepper = fixtures::pepper();
    let (_, record) = fixtures::issue(
        &pepper,
        fixtures::onboarding("p", "g", DeviceBinding::Any),
        Spelling::Prefixed,
    );
    {
        let old = SqliteStore::open(&path).await.expect("open");
        old.migrate_to(3).await.expect("migrate to 0003");
        old.insert(&record, &[]).await.expect("insert");
        old.close().await;
    }
    let pool = raw(&path);
    for (device, at) in [("X1", 10), ("X2", 20), ("X1", 30), ("X1", 30)] {
        pool.execute(
            "INSERT INTO enrollments (token_id, device, at) VALUES (?1, ?2, ?3)",
            rusqlite::params![record.id.to_string(), device, at],
        )
        .expect("an enrollment as an older build wrote it");
    }
    let store = SqliteStore::open(&path).await.expect("reopen");
    store.migrate().await.expect("upgrade");
    let devices: Vec<_> = store
        .enrollments(record.id)
        .await
        .expect("enrollments")
        .into_iter()
        .map(|e| (e.device.to_string(), e.at.unix_timestamp_nanos()))
        .collect();
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert_eq!(devices[0].0, "X1");
    assert_eq!(devices[1].0, "X2");
    let again = pool.execute(
        "INSERT INTO enrollments (token_id, device, at) VALUES (?1, ?2, ?3)",
        rusqlite::params![record.id.to_string(), "X2", 40],
    );
    assert!(
        again.is_err(),
        "the unique index refuses a second enrollment"
    );
}

/// 0008 counts the blocked addresses of tokens blocked before it, so the lookup (which probes
/// the blocked entries only when the count says there are some) still sees them; afterwards
/// blocking, unblocking and purging keep the count exact.
#[tokio::test]
async fn sqlite_0008_counts_addresses_blocked_before_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let pepper = fixtures::pepper();
    let (_, record) = fixtures::issue(
        &pepper,
        fixtures::application("blocked-before", "", &["feeds"]),
        Spelling::Prefixed,
    );
    let (_, other) = fixtures::issue(
        &pepper,
        fixtures::application("never-blocked", "", &["feeds"]),
        Spelling::Prefixed,
    );
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("an address");
    {
        let old = SqliteStore::open(&path).await.expect("open");
        old.migrate_to(7).await.expect("migrate to 0007");
        old.insert(&record, &[]).await.expect("insert");
        old.insert(&other, &[]).await.expect("insert");
        for (addr, blocked) in [
            ("192.0.2.1", true),
            ("192.0.2.2", true),
            ("192.0.2.2", false),
        ] {
            old.set_blocked(record.id, ip(addr), blocked, &[])
                .await
                .expect("block under schema 7");
        }
        old.set_blocked(other.id, ip("192.0.2.3"), false, &[])
            .await
            .expect("an unblocked entry under schema 7");
        old.close().await;
    }
    let store = SqliteStore::open(&path).await.expect("reopen");
    store.migrate().await.expect("upgrade");
    let pool = raw(&path);
    let count = |id: tessera_core::id::TokenId| -> i64 {
        pool.query_row(
            "SELECT blocked_ips FROM tokens WHERE id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )
        .expect("read the count")
    };
    assert_eq!((count(record.id), count(other.id)), (1, 0));
    let shared = store
        .find_shared(&record.digest)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(shared.blocked(), [ip("192.0.2.1")].as_slice());
    assert!(
        store
            .find_shared(&other.digest)
            .await
            .expect("lookup")
            .expect("found")
            .blocked()
            .is_empty()
    );

    // Blocking and unblocking (new entries and existing ones) keep the count exact.
    store
        .set_blocked(record.id, ip("192.0.2.2"), true, &[])
        .await
        .expect("block again");
    store
        .set_blocked(record.id, ip("2001:db8::9"), true, &[])
        .await
        .expect("block a new address");
    store
        .set_blocked(other.id, ip("192.0.2.3"), true, &[])
        .await
        .expect("block the other token's entry");
    assert_eq!((count(record.id), count(other.id)), (3, 1));
    store
        .set_blocked(record.id, ip("192.0.2.1"), false, &[])
        .await
        .expect("unblock");
    store
        .set_blocked(record.id, ip("192.0.2.1"), false, &[])
        .await
        .expect("unblock twice");
    assert_eq!(count(record.id), 2);
    let mut blocked = store
        .find_shared(&record.digest)
        .await
        .expect("lookup")
        .expect("found")
        .blocked()
        .to_vec();
    blocked.sort();
    assert_eq!(blocked, [ip("192.0.2.2"), ip("2001:db8::9")]);

    // Purging a token with blocked entries removes them with it; the other keeps its count.
    assert_eq!(store.purge(&[record.id], &[]).await.expect("purge"), 1);
    assert_eq!(count(other.id), 1);
    let left: i64 = pool
        .query_row("SELECT COUNT(*) FROM token_usage", [], |r| r.get(0))
        .expect("count entries");
    assert_eq!(left, 1);
}
