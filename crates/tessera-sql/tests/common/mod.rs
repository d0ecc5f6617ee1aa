//! Helpers the SQL backend tests share.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable naming the PostgreSQL server the tests use.
pub const POSTGRES_URL_VAR: &str = "TESSERA_TEST_POSTGRES_URL";

/// Whether this is a CI run (`CI=true`), where PostgreSQL tests must never be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// What the PostgreSQL tests should do in this environment.
pub enum Postgres {
    /// Run against this server.
    Run(String),
    /// Skip, having printed why.
    Skip,
    /// Fail: CI without a server.
    Fail(String),
}

/// The server to test against: `TESSERA_TEST_POSTGRES_URL`; when it is unset, a printed skip
/// for a developer and a failure under `CI=true`.
pub fn postgres() -> Postgres {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Postgres::Run(url),
        _ if in_ci() => Postgres::Fail(format!(
            "CI=true but {POSTGRES_URL_VAR} is unset: PostgreSQL tests never skip in CI; \
             start a server with `eval \"$(.ci/postgres-up)\"`"
        )),
        _ => {
            println!(
                "SKIPPED: PostgreSQL tests, because {POSTGRES_URL_VAR} is unset. To run them: \
                 eval \"$(.ci/postgres-up)\"; cargo test -p tessera-sql --all-features; \
                 .ci/postgres-down"
            );
            Postgres::Skip
        }
    }
}

/// The PostgreSQL URL for a `#[test]`: `None` (skip, printed) for a developer without one;
/// a panic under `CI=true`.
pub fn postgres_url_or_skip() -> Option<String> {
    match postgres() {
        Postgres::Run(url) => Some(url),
        Postgres::Skip => None,
        Postgres::Fail(why) => panic!("{why}"),
    }
}

/// A schema name no other test run uses: `tessera_t_<pid>_<nanos>_<n>`.
pub fn fresh_schema() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "tessera_t_{}_{}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// PostgreSQL stores in throwaway schemas of the test server.
#[cfg(feature = "postgres")]
pub mod pg {
    use tessera_sql::postgres::{PostgresConfig, PostgresStore};

    /// A migrated store in a fresh schema of the test server, with a pool of `connections`, and
    /// the server URL and schema name; `None` (skip, printed) without a server outside CI.
    pub async fn fresh(connections: u32) -> Option<(PostgresStore, String, String)> {
        let url = super::postgres_url_or_skip()?;
        let schema = super::fresh_schema();
        Some((connect(&url, &schema, connections).await, url, schema))
    }

    /// A migrated store in `schema` of the server at `url`, with a pool of `connections`.
    pub async fn connect(url: &str, schema: &str, connections: u32) -> PostgresStore {
        let config = PostgresConfig::new(url)
            .schema(schema)
            .expect("a schema")
            .max_connections(connections)
            .acquire_timeout(time::Duration::seconds(10));
        let store = PostgresStore::connect_with(config).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// Close `store` and drop its schema.
    pub async fn drop_schema(store: PostgresStore, url: &str, schema: &str) {
        store.close().await;
        let pool = sqlx::PgPool::connect(url).await.expect("connect directly");
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::raw_sql(&drop)
            .execute(&pool)
            .await
            .expect("drop the schema");
        pool.close().await;
    }
}

pub mod fixtures {
    //! Records of every kind, issued from generated secrets.

    use tessera_core::audit::Actor;
    use tessera_core::digest::{KeyId, Pepper};
    use tessera_core::format::{Entropy, Spelling, parse};
    use tessera_core::id::{
        AccessType, ApplicationName, Description, DeviceGroup, EndpointId, Permission, PolicyId,
        TokenId, TokenName, UserId,
    };
    use tessera_core::kind::application::AccessTypes;
    use tessera_core::kind::auth::Scope;
    use tessera_core::kind::endpoint::{EndpointData, Method};
    use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};
    use tessera_core::kind::{ApplicationData, AuthData, DeploymentData, KindData, OnboardingData};
    use tessera_core::lifecycle::State;
    use tessera_core::record::TokenRecord;
    use tessera_core::{Kind, Secret};
    use time::{Duration, OffsetDateTime};

    /// A fixed instant: 2026-09-21T...Z.
    pub fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("a valid instant")
    }

    /// A fixed test pepper.
    pub fn pepper() -> Pepper {
        Pepper::new(KeyId(1), [7; 32])
    }

    /// A second test pepper, for rotations.
    pub fn pepper2() -> Pepper {
        Pepper::new(KeyId(2), [9; 32])
    }

    /// A record for `data` with a freshly generated secret in `spelling`, digested under
    /// `pepper` (and, for deployment and onboarding tokens, sealed under it, as the service
    /// keeps them); the secret is returned beside it (only to search for it afterwards).
    pub fn issue(pepper: &Pepper, data: KindData, spelling: Spelling) -> (Secret, TokenRecord) {
        let kind = data.kind();
        let secret = Secret::generate_with(kind, spelling, Entropy::DEFAULT).expect("a secret");
        let (digest, hint) = {
            let presented = parse(kind, secret.expose_secret()).expect("a generated secret parses");
            (pepper.digest(&presented), presented.hint())
        };
        let limit = match kind {
            Kind::Onboarding => UsageLimit::uses(5).expect("five uses"),
            _ => UsageLimit::Unlimited,
        };
        let id = TokenId::generate().expect("an id");
        let sealed = matches!(kind, Kind::Deployment | Kind::Onboarding)
            .then(|| pepper.seal(id, &secret).expect("seal"));
        let record = TokenRecord {
            id,
            digest,
            spelling,
            hint,
            sealed,
            state: State::Active,
            created_at: now(),
            created_by: Actor::User(UserId::parse("admin").expect("a user")),
            generated_by: None,
            expires_at: Some(now() + Duration::days(30)),
            last_used_at: None,
            activated_at: now(),
            grace_until: None,
            successor: None,
            limit,
            uses: 0,
            data,
        };
        (secret, record)
    }

    pub fn deployment(name: &str) -> KindData {
        KindData::Deployment(DeploymentData {
            name: TokenName::parse(name).expect("a token name"),
            auto_renew: true,
        })
    }

    pub fn onboarding(policy: &str, group: &str, binding: DeviceBinding) -> KindData {
        KindData::Onboarding(OnboardingData {
            policy: PolicyId::parse(policy).expect("a policy"),
            group: DeviceGroup::parse(group).expect("a group"),
            binding,
        })
    }

    pub fn primary(endpoint: &str, method: Method) -> KindData {
        KindData::Endpoint(EndpointData::Primary {
            endpoint: EndpointId::parse(endpoint).expect("an endpoint"),
            method,
        })
    }

    pub fn secondary(name: &str, description: &str) -> KindData {
        KindData::Endpoint(EndpointData::Secondary {
            name: TokenName::parse(name).expect("a token name"),
            description: Description::parse(description).expect("a description"),
            enabled: true,
        })
    }

    pub fn auth(owner: &str, name: &str, perms: &[&str]) -> KindData {
        KindData::Auth(AuthData {
            owner: UserId::parse(owner).expect("a user"),
            name: TokenName::parse(name).expect("a token name"),
            scope: Scope::new(
                perms
                    .iter()
                    .map(|p| Permission::parse(*p).expect("a permission")),
            )
            .expect("a scope"),
        })
    }

    pub fn application(name: &str, description: &str, access: &[&str]) -> KindData {
        KindData::Application(ApplicationData {
            name: ApplicationName::parse(name).expect("an application name"),
            description: Description::parse(description).expect("a description"),
            access: AccessTypes::new(
                access
                    .iter()
                    .map(|a| AccessType::parse(*a).expect("an access type")),
            )
            .expect("access types"),
        })
    }

    /// One record of every kind, role and spelling, each with its secret.
    pub fn every_kind(pepper: &Pepper) -> Vec<(Secret, TokenRecord)> {
        vec![
            issue(pepper, deployment("installer"), Spelling::Prefixed),
            issue(
                pepper,
                onboarding("p", "g", DeviceBinding::FirstDevice(None)),
                Spelling::Prefixed,
            ),
            issue(
                pepper,
                onboarding("p", "g", DeviceBinding::Any),
                Spelling::ShortCode,
            ),
            issue(
                pepper,
                primary("/api/orders", Method::Get),
                Spelling::Prefixed,
            ),
            issue(pepper, secondary("erp", "the erp"), Spelling::Plain64),
            issue(
                pepper,
                auth("alice", "reports", &["read_reports"]),
                Spelling::Prefixed,
            ),
            issue(
                pepper,
                application("siem-feed", "feeds", &["third-party-feeds"]),
                Spelling::Prefixed,
            ),
        ]
    }
}
