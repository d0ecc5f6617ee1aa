//! Hostile input: text with quotes, semicolons, `--`, `/* */`, placeholders, LIKE wildcards,
//! very long and non-ASCII strings round-trips byte for byte through every statement and breaks
//! nothing; values SQL cannot hold are refused with typed errors and store nothing.
//!
//! Runs on a SQLite file, SQLite in memory and, under `TESSERA_TEST_POSTGRES_URL`, PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::net::IpAddr;

use common::fixtures;
use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::format::Spelling;
use tessera_core::id::{DeviceId, EndpointId, TokenName, UserId};
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera_core::record::TokenRecord;
use tessera_sql::{Error, SqliteStore};
use tessera_store::{
    AuditFilter, Redemption, Store, StoreError, TokenFilter, UsageOutcome, UsageSubject,
};
use time::{Duration, OffsetDateTime};

/// Text that breaks naive SQL building: every entry must come back unchanged.
fn hostile() -> Vec<String> {
    vec![
        String::from("Robert'); DROP TABLE tokens;--"),
        String::from("\"quoted\" and 'single' and `back`"),
        String::from("/* not a comment */ -- nor this"),
        String::from("' OR '1'='1"),
        String::from("100% _wild_ \\escaped\\"),
        String::from("$1 ?1 ?2 :name @name $name"),
        String::from("名前 🚀 مرحبا e\u{301} Ω ß"),
        String::from("semi;colons;everywhere;"),
        "'; --".repeat(25),
    ]
}

fn refused_out_of_range(result: Result<(), StoreError>) -> bool {
    match result {
        Err(StoreError::Backend(e)) => {
            matches!(e.downcast_ref::<Error>(), Some(Error::OutOfRange { .. }))
        }
        _ => false,
    }
}

async fn hostile_text_round_trips(store: &dyn Store) {
    let pepper = fixtures::pepper();
    let mut records: Vec<TokenRecord> = Vec::new();
    let mut long = hostile();
    long.push("ü'\";".repeat(32)); // 128 characters: the longest token name
    for text in &long {
        let (_, dep) = fixtures::issue(&pepper, fixtures::deployment(text), Spelling::Prefixed);
        let (_, auth) = fixtures::issue(
            &pepper,
            fixtures::auth(text, text, &[text.as_str()]),
            Spelling::Prefixed,
        );
        let (_, sec) = fixtures::issue(
            &pepper,
            fixtures::secondary(text, &format!("{text}\n\t{text}")),
            Spelling::Plain64,
        );
        let (_, onb) = fixtures::issue(
            &pepper,
            fixtures::onboarding(
                text,
                text,
                DeviceBinding::Device(DeviceId::parse(text.as_str()).expect("a device")),
            ),
            Spelling::Prefixed,
        );
        let access: String = text.chars().take(64).collect(); // an access type's maximum
        let (_, app) = fixtures::issue(
            &pepper,
            fixtures::application(
                &format!("app-{}", records.len()),
                &format!("{text}{text}"),
                &[access.as_str()],
            ),
            Spelling::Prefixed,
        );
        for r in [dep, auth, sec, onb, app] {
            store.insert(&r, &[]).await.expect("insert hostile text");
            assert_eq!(
                store.get(r.id).await.expect("get").as_ref(),
                Some(&r),
                "round trip"
            );
            assert_eq!(
                store
                    .find_by_digest(&r.digest)
                    .await
                    .expect("find")
                    .as_ref(),
                Some(&r)
            );
            records.push(r);
        }
    }
    // Endpoint ids up to their 512-character maximum, used as filters and usage subjects.
    let mut endpoints: Vec<String> = hostile().into_iter().map(|t| format!("/api/{t}")).collect();
    endpoints.push(format!("{}/x", "/\u{1F680}'--".repeat(102))); // 512 characters
    for e in &endpoints {
        let (_, primary) = fixtures::issue(
            &pepper,
            fixtures::primary(e, Method::Delete),
            Spelling::Prefixed,
        );
        store
            .insert(&primary, &[])
            .await
            .expect("insert a hostile endpoint");
        let endpoint = EndpointId::parse(e.as_str()).expect("an endpoint");
        let listed = store
            .list(&TokenFilter::default().endpoint(endpoint.clone()))
            .await
            .expect("list");
        assert_eq!(listed, vec![primary.clone()], "endpoint filter is exact");

        let secondary = records
            .iter()
            .find(|r| r.data.display_name().is_some() && r.kind() == tessera_core::Kind::Endpoint)
            .expect("a secondary");
        let m = Mapping {
            secondary: secondary.id,
            endpoint: endpoint.clone(),
            method: Method::Post,
            enabled: true,
        };
        store
            .put_mapping(&m, &[])
            .await
            .expect("map to a hostile endpoint");
        assert_eq!(
            store
                .mapping(m.secondary, &endpoint, Method::Post)
                .await
                .expect("mapping"),
            Some(m.clone())
        );
        let subject = UsageSubject::Endpoint(endpoint.clone(), Method::Post);
        let counted = store
            .record_usage(secondary.id, &subject, fixtures::now())
            .await
            .expect("usage");
        assert!(
            matches!(counted, UsageOutcome::Counted(ref u) if u.subject == subject && u.count == 1)
        );
        let usage = store
            .endpoint_usage(&endpoint)
            .await
            .expect("endpoint usage");
        assert_eq!(usage.len(), 1, "only this endpoint's usage");
    }

    // Owner filters match exactly: wildcards and quotes are text, not patterns.
    for text in &long {
        let owner = UserId::parse(text.as_str()).expect("a user");
        let listed = store
            .list(&TokenFilter::default().owner(owner))
            .await
            .expect("list by owner");
        assert_eq!(listed.len(), 1, "exactly one auth token of owner {text:?}");
    }
    for pattern in ["%", "_", "'%'", "*"] {
        let owner = UserId::parse(pattern).expect("a user");
        assert!(
            store
                .list(&TokenFilter::default().owner(owner))
                .await
                .expect("list")
                .is_empty()
        );
    }

    // Devices and actors.
    for (i, text) in long.iter().enumerate() {
        let device = DeviceId::parse(text.as_str()).expect("a device");
        let (_, onb) = fixtures::issue(
            &pepper,
            fixtures::onboarding("p", "g", DeviceBinding::FirstDevice(None)),
            Spelling::ShortCode,
        );
        store.insert(&onb, &[]).await.expect("insert");
        let at = fixtures::now() + Duration::seconds(i64::try_from(i).expect("small"));
        match store
            .redeem(&onb.digest, &device, at, &tessera_store::RedeemEvents::NONE)
            .await
            .expect("redeem")
        {
            Redemption::Redeemed(r) => {
                assert_eq!(
                    r.data,
                    fixtures::onboarding(
                        "p",
                        "g",
                        DeviceBinding::FirstDevice(Some(device.clone()))
                    )
                );
            }
            other => panic!("a first redemption answered {other:?}"),
        }
        let enrolled = store.enrollments(onb.id).await.expect("enrollments");
        assert_eq!(enrolled[0].device, device);
        let actor = Actor::User(UserId::parse(text.as_str()).expect("a user"));
        let event = AuditEvent::new(at, actor.clone(), AuditAction::Issued)
            .token(onb.id, onb.kind(), &onb.hint)
            .device(&device);
        store.append(&event).await.expect("append");
        let mut filter = AuditFilter::default();
        filter.actor = Some(actor);
        assert_eq!(store.events(&filter).await.expect("events"), vec![event]);
    }

    // Nothing was dropped or rewritten along the way.
    let all = store
        .list(&TokenFilter::default())
        .await
        .expect("list everything");
    for r in &records {
        assert!(all.contains(r), "record {} still stored unchanged", r.id);
    }
}

async fn out_of_range_values_are_refused(store: &dyn Store) {
    let pepper = fixtures::pepper();
    let (_, base) = fixtures::issue(&pepper, fixtures::deployment("range"), Spelling::Prefixed);

    let mut many_uses = base.clone();
    many_uses.uses = u64::MAX;
    assert!(
        refused_out_of_range(store.insert(&many_uses, &[]).await),
        "uses past i64"
    );

    let mut huge_limit = base.clone();
    huge_limit.limit = UsageLimit::uses(u64::MAX).expect("a limit");
    assert!(
        refused_out_of_range(store.insert(&huge_limit, &[]).await),
        "limit past i64"
    );

    let far = OffsetDateTime::from_unix_timestamp(253_402_300_000).expect("year 9999");
    let mut far_expiry = base.clone();
    far_expiry.expires_at = Some(far);
    assert!(
        refused_out_of_range(store.insert(&far_expiry, &[]).await),
        "expiry past 2262"
    );

    let mut ancient = base.clone();
    ancient.created_at = OffsetDateTime::from_unix_timestamp(-10_000_000_000).expect("year 1653");
    assert!(
        refused_out_of_range(store.insert(&ancient, &[]).await),
        "creation before 1677"
    );

    assert!(
        store
            .list(&TokenFilter::default())
            .await
            .expect("list")
            .is_empty(),
        "nothing stored"
    );
    let e = Error::OutOfRange {
        what: "timestamp",
        fix: "times must fall between the years 1677 and 2262",
    };
    assert!(e.to_string().contains("out of the range"), "{e}");

    // Filters saturate instead of failing.
    let listed = store
        .list(&TokenFilter::default().expires_before(far))
        .await
        .expect("a far filter bound saturates");
    assert!(listed.is_empty());
    store.insert(&base, &[]).await.expect("an in-range record");
    assert!(
        !store
            .touch(base.id, far, Duration::MAX)
            .await
            .is_ok_and(|w| w),
        "far touch refused"
    );
    let ip: IpAddr = "::ffff:10.0.0.1".parse().expect("an address");
    store
        .set_blocked(base.id, ip, true, &[])
        .await
        .expect("block a mapped address");
    assert!(store.is_blocked(base.id, ip).await.expect("blocked"));
    assert!(
        !store
            .is_blocked(base.id, "10.0.0.1".parse().expect("an address"))
            .await
            .expect("not blocked")
    );
}

#[test]
fn core_types_refuse_what_they_must() {
    // The store never sees these: the newtypes refuse them with typed errors first.
    assert!(TokenName::parse("x".repeat(129)).is_err());
    assert!(TokenName::parse("nul\0byte").is_err());
    assert!(UserId::parse("line\nbreak").is_err());
    assert!(EndpointId::parse("e".repeat(513)).is_err());
}

#[tokio::test]
async fn sqlite_file_survives_hostile_text() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("t.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    hostile_text_round_trips(&store).await;
}

#[tokio::test]
async fn sqlite_memory_survives_hostile_text() {
    let store = SqliteStore::open_in_memory().await.expect("open");
    store.migrate().await.expect("migrate");
    hostile_text_round_trips(&store).await;
}

#[tokio::test]
async fn sqlite_refuses_out_of_range_values() {
    let store = SqliteStore::open_in_memory().await.expect("open");
    store.migrate().await.expect("migrate");
    out_of_range_values_are_refused(&store).await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use tessera_sql::Error;
    use tessera_sql::postgres::{PostgresConfig, PostgresStore};

    use super::common::pg::drop_schema;

    async fn fresh() -> Option<(PostgresStore, String, String)> {
        super::common::pg::fresh(4).await
    }

    #[test]
    fn hostile_schema_names_are_refused() {
        for name in [
            "public\"; DROP SCHEMA public; --",
            "a b",
            "Tessera",
            "x'y",
            "",
            "pg_catalog",
        ] {
            let refused = PostgresConfig::new("postgres://u@127.0.0.1/db").schema(name);
            assert!(
                matches!(
                    refused,
                    Err(Error::Config {
                        what: "schema name",
                        ..
                    })
                ),
                "{name:?}"
            );
        }
    }

    #[tokio::test]
    async fn postgres_survives_hostile_text() {
        let Some((store, url, schema)) = fresh().await else {
            return;
        };
        super::hostile_text_round_trips(&store).await;
        drop_schema(store, &url, &schema).await;
    }

    #[tokio::test]
    async fn postgres_refuses_out_of_range_values() {
        let Some((store, url, schema)) = fresh().await else {
            return;
        };
        super::out_of_range_values_are_refused(&store).await;
        drop_schema(store, &url, &schema).await;
    }
}
