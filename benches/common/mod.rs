//! Shared set-up for the per-backend benches: one fixture with a valid, a well-formed unknown
//! and a malformed token of every kind, the backends, a bulk filler and the timing loops.
//!
//! Every service here runs with `audit_uses` and `audit_refusals` **off**: the benches measure
//! validation, not the audit trail (with them on, each accepted use costs one more store write).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "each bench uses part of this module; a set-up that fails has nothing to measure"
)]

use std::collections::BTreeSet;
use std::future::Future;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use tessera::application::ApplicationAccess;
use tessera::auth::NewAuth;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::format::{Entropy, Spelling};
use tessera::core::id::{
    AccessType, ApplicationName, Description, DeviceId, EndpointId, Permission, TokenId, TokenName,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::Method;
use tessera::core::kind::onboarding::UsageLimit;
use tessera::core::{Kind, Secret};
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::onboarding::NewOnboarding;
use tessera::{Builder, Principal, Rejection, Store, TokenService, ValidationCache};
use tessera_sql::postgres::PostgresConfig;
use tessera_sql::{PostgresStore, SqliteStore};
use tokio::runtime::Runtime;

/// The pepper every bench digests under.
pub const KEY: [u8; 32] = [7; 32];

pub fn pepper() -> Pepper {
    Pepper::new(KeyId(1), KEY)
}

/// A service builder over `store` with audit of uses and refusals off (see the module docs).
fn builder(store: Arc<dyn Store>) -> Builder {
    TokenService::builder_shared(store, Peppers::new(pepper()))
        .audit_uses(false)
        .audit_refusals(false)
}

/// A service over `store` (see [`builder`]).
pub fn service(store: Arc<dyn Store>) -> TokenService {
    builder(store).build()
}

/// How long the cached benches keep a found record: one reload per token per second, the
/// steady state of a service configured with a one-second revocation bound across instances.
pub const CACHE_TTL: time::Duration = time::Duration::seconds(1);

/// As [`service`], with a validation cache of [`CACHE_TTL`].
pub fn cached_service(store: Arc<dyn Store>) -> TokenService {
    builder(store)
        .validation_cache(ValidationCache::new(CACHE_TTL))
        .build()
}

/// A single-threaded runtime: "one core" figures.
pub fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A runtime with one worker per core (2 on the reference machine).
pub fn multi_thread(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a runtime")
}

// ---- backends ----

/// Which store a bench runs on.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

impl Backend {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The PostgreSQL URL, or `None` after printing why the PostgreSQL benches are skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipping PostgreSQL benches: TESSERA_TEST_POSTGRES_URL is unset \
                 (eval \"$(.ci/postgres-up)\" starts a throwaway server)"
            );
            None
        }
    }
}

/// Where cached bench databases live: `target/bench-data/`.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
            PathBuf::from,
        )
        .join("bench-data");
    std::fs::create_dir_all(&dir).expect("create target/bench-data");
    dir
}

/// A store of `backend` that holds (at least) `filler` filler tokens, plus a note of how long
/// the fill took. SQLite files and PostgreSQL schemas are kept per size, so reruns reuse them.
/// Returns `None` for PostgreSQL without a server.
pub async fn open(backend: Backend, filler: usize, pg_connections: u32) -> Option<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match backend {
        Backend::Memory => Arc::new(MemoryStore::new()),
        Backend::Sqlite => {
            let path = data_dir().join(format!(
                "sqlite-v{}-{filler}.db",
                SqliteStore::SCHEMA_VERSION
            ));
            let s = SqliteStore::open(&path)
                .await
                .expect("open the bench SQLite file");
            s.migrate().await.expect("migrate");
            Arc::new(s)
        }
        Backend::Postgres => {
            let url = postgres_url()?;
            let config = PostgresConfig::new(url)
                .schema(&format!("tessera_bench_{filler}"))
                .expect("a valid schema name")
                .max_connections(pg_connections);
            let s = PostgresStore::connect_with(config)
                .await
                .expect("connect to PostgreSQL");
            s.migrate().await.expect("migrate");
            Arc::new(s)
        }
    };
    fill(&*store, filler).await;
    Some(store)
}

/// Canonical bytes of filler token `i`: random-looking, deterministic (so a cached database
/// can be recognised), never a real token's.
fn filler_digest_input(i: usize) -> [u8; 32] {
    *blake3::hash(format!("tessera bench filler {i}").as_bytes()).as_bytes()
}

fn filler_id(i: usize) -> TokenId {
    let h = blake3::hash(format!("tessera bench filler id {i}").as_bytes());
    let mut b = [0; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    TokenId::from_u128(u128::from_le_bytes(b))
}

/// Bulk-load `n` filler deployment tokens (precomputed digests, `insert_many` in chunks of
/// 10,000), unless the last one is already there.
pub async fn fill(store: &dyn Store, n: usize) {
    if n == 0 {
        return;
    }
    let pepper = pepper();
    let last = pepper.digest_bytes(&filler_digest_input(n - 1));
    if store.find_by_digest(&last).await.expect("lookup").is_some() {
        return;
    }
    // A template record: a real deployment token, issued into a memory store and read back.
    let scratch = Arc::new(MemoryStore::new());
    let issued = service(scratch.clone())
        .deployment()
        .generate(NewDeployment::named("filler").expect("name"), &admin())
        .await
        .expect("issue");
    let template = scratch
        .get(issued.token.id)
        .await
        .expect("get")
        .expect("stored");
    let started = Instant::now();
    let mut chunk = Vec::with_capacity(10_000);
    for i in 0..n {
        let mut r = template.clone();
        r.id = filler_id(i);
        r.digest = pepper.digest_bytes(&filler_digest_input(i));
        chunk.push(r);
        if chunk.len() == 10_000 || i == n - 1 {
            store.insert_many(&chunk, &[]).await.expect("bulk insert");
            chunk.clear();
        }
    }
    eprintln!(
        "filled {n} tokens into {store:?} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

pub fn admin() -> Principal {
    Principal::admin("bench-admin").expect("a valid user id")
}

// ---- the fixture ----

/// One validation entry point.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Case {
    /// `deployment().validate`
    Deployment,
    /// `onboarding().redeem` of an unlimited token
    Onboarding,
    /// `endpoint().check` with the endpoint's GET primary
    EndpointPrimary,
    /// `endpoint().check` with a secondary mapped to the GET primary
    EndpointSecondary,
    /// `auth().check` of an action in scope
    Auth,
    /// `application().validate_bearer` from one address (counted in the IP log)
    Application,
}

impl Case {
    pub const ALL: [Self; 6] = [
        Self::Deployment,
        Self::Onboarding,
        Self::EndpointPrimary,
        Self::EndpointSecondary,
        Self::Auth,
        Self::Application,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::Onboarding => "onboarding_redeem",
            Self::EndpointPrimary => "endpoint_primary",
            Self::EndpointSecondary => "endpoint_secondary",
            Self::Auth => "auth_scope",
            Self::Application => "application_bearer",
        }
    }
}

/// Which token is presented.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Which {
    /// A stored, usable token: accepted.
    Valid,
    /// A well-formed token nobody issued: `NotFound` after one store lookup.
    Unknown,
    /// A typo (one character changed, caught by the checksum) or, for the plain 64-character
    /// spelling, a truncated token: `Malformed` before any store is touched.
    Malformed,
}

impl Which {
    pub const ALL: [Self; 3] = [Self::Valid, Self::Unknown, Self::Malformed];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Unknown => "unknown",
            Self::Malformed => "malformed",
        }
    }
}

/// Valid, unknown and malformed spellings of one case's token.
#[derive(Debug)]
pub struct Tokens {
    valid: String,
    unknown: String,
    malformed: String,
}

impl Tokens {
    fn new(valid: &str, kind: Kind, spelling: Spelling) -> Self {
        let unknown = Secret::generate_with(kind, spelling, Entropy::DEFAULT)
            .expect("the OS generator works")
            .expose_secret()
            .to_owned();
        let malformed = match spelling {
            Spelling::Plain64 => valid[..valid.len() - 1].to_owned(),
            _ => {
                let mut b = valid.as_bytes().to_vec();
                let at = b.len() / 2;
                b[at] = if b[at] == b'x' { b'y' } else { b'x' };
                String::from_utf8(b).expect("ascii")
            }
        };
        Self {
            valid: valid.to_owned(),
            unknown,
            malformed,
        }
    }

    pub fn get(&self, which: Which) -> &str {
        match which {
            Which::Valid => &self.valid,
            Which::Unknown => &self.unknown,
            Which::Malformed => &self.malformed,
        }
    }
}

/// A service with one token of every case, and what each request carries.
#[derive(Debug)]
pub struct Fixture {
    pub svc: TokenService,
    pub store: Arc<dyn Store>,
    deployment: Tokens,
    onboarding: Tokens,
    primary: Tokens,
    secondary: Tokens,
    auth: Tokens,
    /// `Bearer <token>` headers.
    application: Tokens,
    endpoint: EndpointId,
    action: Permission,
    held: BTreeSet<Permission>,
    device: DeviceId,
    pub ip: IpAddr,
}

/// A name no earlier run used (cached databases keep earlier runs' tokens).
fn unique(prefix: &str) -> String {
    let id = TokenId::generate()
        .expect("the OS generator works")
        .as_u128();
    format!("{prefix}-{:08x}", id & 0xffff_ffff)
}

impl Fixture {
    /// Issue one token of every case into `store` and check each answers as its name says.
    pub async fn new(store: Arc<dyn Store>) -> Self {
        let svc = service(store.clone());
        let admin = admin();
        let deployment = svc
            .deployment()
            .generate(NewDeployment::named("bench").expect("name"), &admin)
            .await
            .expect("issue");
        let onboarding = svc
            .onboarding()
            .create(
                NewOnboarding::new("bench-policy", "bench-group")
                    .expect("spec")
                    .limit(UsageLimit::Unlimited),
                &admin,
            )
            .await
            .expect("issue");
        let endpoint = EndpointId::parse(format!("/bench/{}", unique("ep"))).expect("endpoint");
        let primaries = svc
            .endpoint()
            .enable(&endpoint, false, &admin)
            .await
            .expect("enable");
        let (_, get) = primaries
            .iter()
            .find(|(m, _)| *m == Method::Get)
            .expect("a GET primary");
        let secondary = svc
            .endpoint()
            .create_secondary(
                TokenName::parse("erp").expect("name"),
                Description::parse("bench integration").expect("description"),
                &admin,
            )
            .await
            .expect("issue");
        svc.endpoint()
            .map(secondary.token.id, &endpoint, Method::Get, &admin)
            .await
            .expect("map");
        let action = Permission::parse("reset_password").expect("permission");
        let held: BTreeSet<Permission> = ["reset_password", "unlock_account"]
            .into_iter()
            .map(|p| Permission::parse(p).expect("permission"))
            .collect();
        let auth = svc
            .auth()
            .generate(
                NewAuth::new(
                    "bench-admin",
                    "bench",
                    ["reset_password", "unlock_account"],
                    "30d",
                )
                .expect("spec"),
                &held,
                &admin,
            )
            .await
            .expect("issue");
        let application = svc
            .application()
            .create(
                ApplicationName::parse(unique("bench")).expect("name"),
                Description::parse("bench feed").expect("description"),
                AccessTypes::new([AccessType::parse("third-party-feeds").expect("access")])
                    .expect("access types"),
                &admin,
            )
            .await
            .expect("issue");
        let bearer = |t: Tokens| Tokens {
            valid: format!("Bearer {}", t.valid),
            unknown: format!("Bearer {}", t.unknown),
            malformed: format!("Bearer {}", t.malformed),
        };
        let prefixed =
            |secret: &Secret, kind| Tokens::new(secret.expose_secret(), kind, Spelling::Prefixed);
        let fx = Self {
            deployment: prefixed(&deployment.secret, Kind::Deployment),
            onboarding: prefixed(&onboarding.secret, Kind::Onboarding),
            primary: prefixed(&get.secret, Kind::Endpoint),
            secondary: Tokens::new(
                secondary.secret.expose_secret(),
                Kind::Endpoint,
                Spelling::Plain64,
            ),
            auth: prefixed(&auth.secret, Kind::Auth),
            application: bearer(prefixed(&application.secret, Kind::Application)),
            endpoint,
            action,
            held,
            device: DeviceId::parse("bench-device").expect("device"),
            ip: "192.0.2.10".parse().expect("ip"),
            svc,
            store,
        };
        for case in Case::ALL {
            assert_eq!(fx.outcome(case, Which::Valid).await, Ok(()), "{case:?}");
            assert_eq!(
                fx.outcome(case, Which::Unknown).await,
                Err(Rejection::NotFound),
                "{case:?}"
            );
            assert_eq!(
                fx.outcome(case, Which::Malformed).await,
                Err(Rejection::Malformed),
                "{case:?}"
            );
        }
        fx
    }

    /// The same tokens, validated through a service with a validation cache
    /// ([`cached_service`]).
    #[must_use]
    pub fn with_cache(mut self) -> Self {
        self.svc = cached_service(self.store.clone());
        self
    }

    /// The presented text of a case.
    pub fn token(&self, case: Case, which: Which) -> &str {
        match case {
            Case::Deployment => self.deployment.get(which),
            Case::Onboarding => self.onboarding.get(which),
            Case::EndpointPrimary => self.primary.get(which),
            Case::EndpointSecondary => self.secondary.get(which),
            Case::Auth => self.auth.get(which),
            Case::Application => self.application.get(which),
        }
    }

    /// Run one validation; the answer, with the accepted value dropped.
    pub async fn outcome(&self, case: Case, which: Which) -> Result<(), Rejection> {
        self.present(case, self.token(case, which), self.ip).await
    }

    /// Validate `token` as `case` from `ip`.
    pub async fn present(&self, case: Case, token: &str, ip: IpAddr) -> Result<(), Rejection> {
        let r = match case {
            Case::Deployment => self.svc.deployment().validate(token).await.map(drop_ok),
            Case::Onboarding => self
                .svc
                .onboarding()
                .redeem(token, &self.device)
                .await
                .map(drop_ok),
            Case::EndpointPrimary | Case::EndpointSecondary => self
                .svc
                .endpoint()
                .check(&self.endpoint, Method::Get, token, Some(ip))
                .await
                .map(drop_ok),
            Case::Auth => self
                .svc
                .auth()
                .check(token, &self.action, &self.held)
                .await
                .map(drop_ok),
            Case::Application => self
                .svc
                .application()
                .validate_bearer(token, ip)
                .await
                .map(|r| r.map(|_: ApplicationAccess| ())),
        };
        r.expect("the store answers")
    }

    /// Issue an onboarding token good for exactly `n` redemptions; its secret.
    pub async fn onboarding_with_uses(&self, n: u64) -> Secret {
        self.svc
            .onboarding()
            .create(
                NewOnboarding::new("bench-policy", "bench-group")
                    .expect("spec")
                    .limit(UsageLimit::uses(n).expect("a limit")),
                &admin(),
            )
            .await
            .expect("issue")
            .secret
    }
}

fn drop_ok<T>(r: Result<T, Rejection>) -> Result<(), Rejection> {
    r.map(|_| ())
}

// ---- timing ----

/// Criterion settings for benches whose every iteration is a store round trip.
pub fn sql_criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// Criterion settings for in-memory benches.
pub fn memory_criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// Time `f` run back to back on `rt` (one `block_on` per sample, not per iteration, so the
/// runtime's entry cost is not counted).
pub fn bench_async<'a, F, Fut>(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, name: &str, f: F)
where
    F: Fn() -> Fut + 'a,
    Fut: Future + 'a,
{
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(f().await);
                }
                start.elapsed()
            })
        });
    });
}

/// Validate every case with a valid, an unknown and a malformed token, one core. Each case calls
/// its entry point directly (no dispatch inside the timed future).
pub fn bench_cases(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, fx: &Fixture, prefix: &str) {
    for case in Case::ALL {
        for which in Which::ALL {
            let name = format!("{prefix}{}/{}", case.name(), which.name());
            bench_case(g, rt, fx, case, which, &name);
        }
    }
}

/// One case, timed as `name`.
pub fn bench_case(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    fx: &Fixture,
    case: Case,
    which: Which,
    name: &str,
) {
    let token = fx.token(case, which);
    let svc = &fx.svc;
    match case {
        Case::Deployment => bench_async(g, rt, name, || async {
            svc.deployment().validate(token).await
        }),
        Case::Onboarding => bench_async(g, rt, name, || async {
            svc.onboarding().redeem(token, &fx.device).await
        }),
        Case::EndpointPrimary | Case::EndpointSecondary => bench_async(g, rt, name, || async {
            svc.endpoint()
                .check(&fx.endpoint, Method::Get, token, Some(fx.ip))
                .await
        }),
        Case::Auth => bench_async(g, rt, name, || async {
            svc.auth().check(token, &fx.action, &fx.held).await
        }),
        Case::Application => bench_async(g, rt, name, || async {
            svc.application().validate_bearer(token, fx.ip).await
        }),
    }
}
