//! Validation throughput on the SQL backends: SQLite (a WAL file) and PostgreSQL (localhost),
//! each holding 1,000 filler tokens, every kind with a valid, an unknown and a malformed token.
//!
//! Run with `cargo bench --bench validate_sql`; criterion prints validations per second
//! (`elem/s`). One core: a current-thread runtime drives one validation at a time. Services run
//! with `audit_uses` and `audit_refusals` off. Every case runs twice: straight to the store, and
//! through a validation cache (`cached/`, time to live 1 s). PostgreSQL runs only when
//! `TESSERA_TEST_POSTGRES_URL` is set (`eval "$(.ci/postgres-up)"`).
//!
//! `random/`: **service defaults** (audit of uses and refusals on, no cache), 10^4 tokens of
//! each kind issued through the service, one picked at random per validation, on a SQLite file
//! and, as the baseline measured in the same run, on the memory store; each case once with the
//! other core idle and once (`busy/`) with a thread spinning on it.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark set-up that fails has nothing to measure"
)]

mod common;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::{Backend, Fixture, admin, bench_cases, current_thread, open, pepper};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera::auth::NewAuth;
use tessera::core::digest::Peppers;
use tessera::core::format::{Entropy, Spelling};
use tessera::core::id::{
    AccessType, ApplicationName, Description, EndpointId, Permission, TokenName,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::Method;
use tessera::core::{Kind, Secret};
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::{Store, TokenService};
use tessera_sql::SqliteStore;

fn validate_sql(c: &mut Criterion) {
    let rt = current_thread();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(store) = rt.block_on(open(backend, 1_000, 4)) else {
            continue;
        };
        let fx = rt.block_on(Fixture::new(store.clone()));
        let mut g = c.benchmark_group(backend.name());
        g.throughput(Throughput::Elements(1));
        bench_cases(&mut g, &rt, &fx, "");
        let cached = rt.block_on(Fixture::new(store)).with_cache();
        bench_cases(&mut g, &rt, &cached, "cached/");
        g.finish();
    }
}

/// Tokens issued per kind for the `random/` cases.
const RANDOM_TOKENS: usize = 10_000;

/// 10^4 tokens of each kind, issued through a service with defaults.
struct Random {
    svc: TokenService,
    deployment: Vec<String>,
    auth: Vec<String>,
    application: Vec<String>,
    endpoint: Vec<String>,
    unknown: Vec<String>,
    path: EndpointId,
    action: Permission,
    held: BTreeSet<Permission>,
    ip: IpAddr,
}

impl Random {
    async fn new(store: Arc<dyn Store>) -> Self {
        let svc = TokenService::builder_shared(store, Peppers::new(pepper())).build();
        let admin = admin();
        let held: BTreeSet<Permission> = ["reset_password"]
            .into_iter()
            .map(|p| Permission::parse(p).unwrap())
            .collect();
        let path = EndpointId::parse("/bench/random").unwrap();
        svc.endpoint().enable(&path, false, &admin).await.unwrap();
        let mut r = Self {
            svc,
            deployment: vec![],
            auth: vec![],
            application: vec![],
            endpoint: vec![],
            unknown: vec![],
            path,
            action: Permission::parse("reset_password").unwrap(),
            held,
            ip: "192.0.2.10".parse().unwrap(),
        };
        for i in 0..RANDOM_TOKENS {
            let d = r
                .svc
                .deployment()
                .generate(NewDeployment::named(format!("d{i}")).unwrap(), &admin)
                .await
                .unwrap();
            r.deployment.push(d.secret.expose_secret().to_owned());
            let a = r
                .svc
                .auth()
                .generate(
                    NewAuth::new(&format!("user{i}"), "bench", ["reset_password"], "30d").unwrap(),
                    &r.held,
                    &admin,
                )
                .await
                .unwrap();
            r.auth.push(a.secret.expose_secret().to_owned());
            let app = r
                .svc
                .application()
                .create(
                    ApplicationName::parse(format!("app{i}")).unwrap(),
                    Description::default(),
                    AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                    &admin,
                )
                .await
                .unwrap();
            r.application
                .push(format!("Bearer {}", app.secret.expose_secret()));
            let s = r
                .svc
                .endpoint()
                .create_secondary(
                    TokenName::parse(format!("erp{i}")).unwrap(),
                    Description::default(),
                    &admin,
                )
                .await
                .unwrap();
            r.svc
                .endpoint()
                .map(s.token.id, &r.path, Method::Get, &admin)
                .await
                .unwrap();
            r.endpoint.push(s.secret.expose_secret().to_owned());
            let fake =
                Secret::generate_with(Kind::Deployment, Spelling::Prefixed, Entropy::DEFAULT)
                    .unwrap();
            r.unknown.push(fake.expose_secret().to_owned());
        }
        r
    }
}

fn pick(state: &Cell<u64>, n: usize) -> usize {
    let mut x = state.get();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.set(x);
    usize::try_from(x % n as u64).unwrap()
}

fn random(c: &mut Criterion) {
    let rt = current_thread();
    // Removed when the bench ends: unlike the stores kept per size, this one is not reused.
    let dir = tempfile::Builder::new()
        .prefix("random-")
        .tempdir_in(common::data_dir())
        .expect("a folder for the random bench database");
    let sqlite = rt.block_on(async {
        let s = SqliteStore::open(dir.path().join("random.db"))
            .await
            .unwrap();
        s.migrate().await.unwrap();
        Arc::new(s) as Arc<dyn Store>
    });
    let backends = [
        (
            "memory",
            rt.block_on(Random::new(Arc::new(MemoryStore::new()))),
        ),
        ("sqlite", rt.block_on(Random::new(sqlite))),
    ];
    for busy in [false, true] {
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = busy.then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        });
        let mut g = c.benchmark_group(if busy { "random/busy" } else { "random" });
        g.throughput(Throughput::Elements(1));
        for (name, r) in &backends {
            let seed = Cell::new(0x9E37_79B9_7F4A_7C15);
            let mut case = |what: &str, f: &dyn Fn(usize) -> bool| {
                g.bench_function(format!("{name}/{what}"), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(f(pick(&seed, RANDOM_TOKENS)));
                        }
                        start.elapsed()
                    });
                });
            };
            case("deployment valid", &|i| {
                rt.block_on(r.svc.deployment().validate(&r.deployment[i]))
                    .unwrap()
                    .is_ok()
            });
            case("auth valid", &|i| {
                rt.block_on(r.svc.auth().check(&r.auth[i], &r.action, &r.held))
                    .unwrap()
                    .is_ok()
            });
            case("application valid", &|i| {
                rt.block_on(r.svc.application().validate_bearer(&r.application[i], r.ip))
                    .unwrap()
                    .is_ok()
            });
            case("endpoint valid", &|i| {
                rt.block_on(r.svc.endpoint().check(
                    &r.path,
                    Method::Get,
                    &r.endpoint[i],
                    Some(r.ip),
                ))
                .unwrap()
                .is_ok()
            });
            case("unknown", &|i| {
                rt.block_on(r.svc.deployment().validate(&r.unknown[i]))
                    .unwrap()
                    .is_err()
            });
        }
        g.finish();
        stop.store(true, Ordering::Relaxed);
        if let Some(s) = spinner {
            s.join().unwrap();
        }
    }
    drop(backends);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = common::sql_criterion();
    targets = validate_sql, random
}
criterion_main!(benches);
