//! Validation as a user meets it: **service defaults** (audit of uses and refusals on, through
//! the usage ledger), 10^4 tokens of each kind picked at random (not one token over and over),
//! one core, against a floor measured the same way in the same run: the keyed BLAKE3 of a
//! random token's bytes plus one probe of a 10^4-entry `HashMap`.
//!
//! Groups (run one with a filter, e.g. `cargo bench --bench random -- random_memory`):
//!
//! - `random_memory`: the floor; every kind valid, and unknown, with the defaults; the same
//!   with audit of uses and refusals off (defaults vs audit off); and, last, with a `tracing`
//!   subscriber (INFO, to a sink) and a Prometheus recorder installed (the cost of observing).
//! - `random_sql`: SQLite (file) and PostgreSQL with the validation cache (time to live 60 s:
//!   the steady state of a process that holds its 10^4 tokens), application and endpoint.
//! - `random_sqlite`: SQLite (file, WAL), **no cache**, every kind valid and unknown, one
//!   validation at a time; then the same while a busy loop holds the other core. Each half
//!   starts with its own floor: the keyed BLAKE3 plus one bare point lookup of a row by its
//!   digest on the same file (`floor/*/lookup_hit`, and `lookup_miss` for digests no row has).
//! - `random_pg_tasks`: PostgreSQL, no cache, 64 tasks on a two-worker runtime; first the floor,
//!   the store's own (coalesced) lookup of random stored digests and nothing else.
//! - `ledger_flush`: one flush of 10^5 accumulated application uses (10^4 tokens, 4 addresses)
//!   on each backend: one transaction.
//!
//! PostgreSQL cases need `TESSERA_TEST_POSTGRES_URL`. `TESSERA_BENCH_SQLITE_MMAP` (bytes) sets
//! the SQLite stores' `mmap_size` instead of the default. BENCHMARKS.md turns the figures into
//! ratios to the floor.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark set-up that fails has nothing to measure"
)]

use std::collections::{BTreeSet, HashMap};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use tessera::auth::NewAuth;
use tessera::core::digest::{Digest, KeyId, Pepper, Peppers};
use tessera::core::id::{
    AccessType, ApplicationName, Description, EndpointId, Permission, TokenId, TokenName, UserId,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::auth::{Expiry, Scope};
use tessera::core::kind::endpoint::Method;
use tessera::core::{Kind, Secret};
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::store::TokenFilter;
use tessera::{
    Builder, LedgerSettings, Principal, RequestContext, Store, TokenService, ValidationCache,
};
use tessera_sql::postgres::PostgresConfig;
use tessera_sql::sqlite::SqliteConfig;
use tessera_sql::{PostgresStore, SqliteStore};
use tokio::runtime::Runtime;

const KEY: [u8; 32] = [9; 32];
const N: usize = 10_000;
const SQL_TTL: time::Duration = time::Duration::seconds(60);

fn pepper() -> Pepper {
    Pepper::new(KeyId(1), KEY)
}

fn admin() -> Principal {
    Principal::admin("bench").unwrap()
}

/// A cheap random index (xorshift), the same cost in the floor as in every case.
struct Pick(u64);

impl Pick {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

/// The kinds validated.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Case {
    Deployment,
    Auth,
    Application,
    Endpoint,
    Unknown,
}

impl Case {
    /// Every kind validated with a valid token.
    const VALID: [Self; 4] = [
        Self::Deployment,
        Self::Auth,
        Self::Application,
        Self::Endpoint,
    ];

    const fn name(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::Auth => "auth",
            Self::Application => "application_iplog",
            Self::Endpoint => "endpoint_primary",
            Self::Unknown => "unknown",
        }
    }
}

/// 10^4 tokens of each kind issued into one store.
struct Tokens {
    deployment: Vec<String>,
    auth: Vec<String>,
    application: Vec<String>,
    /// (token, endpoint, method) of primaries.
    endpoint: Vec<(String, EndpointId, Method)>,
    unknown: Vec<String>,
    action: Permission,
    held: BTreeSet<Permission>,
    ips: [IpAddr; 4],
}

fn builder(store: Arc<dyn Store>) -> Builder {
    TokenService::builder_shared(store, Peppers::new(pepper()))
}

async fn issue(store: Arc<dyn Store>, kinds: &[Case]) -> Tokens {
    let svc = builder(store).build();
    let by = admin();
    let action = Permission::parse("reset_password").unwrap();
    let held: BTreeSet<Permission> = [action.clone()].into_iter().collect();
    let run = std::process::id();
    let mut t = Tokens {
        deployment: Vec::new(),
        auth: Vec::new(),
        application: Vec::new(),
        endpoint: Vec::new(),
        unknown: (0..N)
            .map(|_| {
                Secret::generate(Kind::Application)
                    .unwrap()
                    .expose_secret()
                    .to_owned()
            })
            .collect(),
        action: action.clone(),
        held: held.clone(),
        ips: [
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "198.51.100.3".parse().unwrap(),
            "2001:db8::4".parse().unwrap(),
        ],
    };
    for i in 0..N {
        if kinds.contains(&Case::Deployment) {
            let d = svc
                .deployment()
                .generate(NewDeployment::named(format!("d{i}")).unwrap(), &by)
                .await
                .unwrap();
            t.deployment.push(d.secret.expose_secret().to_owned());
        }
        if kinds.contains(&Case::Auth) {
            let spec = NewAuth {
                owner: UserId::parse(format!("u{i}")).unwrap(),
                name: TokenName::parse(format!("a{i}")).unwrap(),
                scope: Scope::new([action.clone()]).unwrap(),
                expiry: Expiry::Days(30),
            };
            let a = svc.auth().generate(spec, &held, &by).await.unwrap();
            t.auth.push(a.secret.expose_secret().to_owned());
        }
        if kinds.contains(&Case::Application) {
            let a = svc
                .application()
                .create(
                    ApplicationName::parse(format!("app-{run}-{i}")).unwrap(),
                    Description::default(),
                    AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                    &by,
                )
                .await
                .unwrap();
            t.application.push(a.secret.expose_secret().to_owned());
        }
        if kinds.contains(&Case::Endpoint) && i % 2 == 0 {
            let ep = EndpointId::parse(format!("/r{run}/e{i}")).unwrap();
            // Each endpoint gets a GET and a POST primary: both are presented with their
            // method, so 10^4 primaries are validated.
            for (method, issued) in svc.endpoint().enable(&ep, false, &by).await.unwrap() {
                t.endpoint
                    .push((issued.secret.expose_secret().to_owned(), ep.clone(), method));
            }
        }
    }
    t
}

/// One validation of a random token of `case`; panics unless the outcome is as expected.
async fn validate_once(svc: &TokenService, t: &Tokens, case: Case, pick: &mut Pick) {
    let ok = match case {
        Case::Deployment => {
            let tok = &t.deployment[pick.next(t.deployment.len())];
            svc.deployment().validate(tok).await.unwrap().is_ok()
        }
        Case::Auth => {
            let tok = &t.auth[pick.next(t.auth.len())];
            svc.auth()
                .check(tok, &t.action, &t.held)
                .await
                .unwrap()
                .is_ok()
        }
        Case::Application => {
            let i = pick.next(t.application.len());
            let ip = t.ips[i % 4];
            svc.application()
                .validate(&t.application[i], ip)
                .await
                .unwrap()
                .is_ok()
        }
        Case::Endpoint => {
            let (tok, ep, method) = &t.endpoint[pick.next(t.endpoint.len())];
            let request = RequestContext::new().endpoint(ep, *method);
            matches!(
                svc.validate(tok, &request).await,
                tessera::Outcome::Accepted(_)
            )
        }
        Case::Unknown => {
            let tok = &t.unknown[pick.next(t.unknown.len())];
            svc.application()
                .validate(tok, t.ips[0])
                .await
                .unwrap()
                .is_err()
        }
    };
    assert!(ok, "unexpected outcome for {case:?}");
}

/// What a sample's time is: `TESSERA_BENCH_CLOCK` unset or `wall` (the default), `cpu` (the
/// CPU time every thread of this process spent, the busy loop's excepted: validating and the
/// ledger's writer, which is what a validation costs when they share one core) or `thread`
/// (the CPU time of the validating thread alone). CPU time is what to compare on a machine
/// other work keeps busy, where wall time mostly measures the waits for a core. The kernel
/// updates these times at its scheduler tick, so give samples tens of milliseconds
/// (`--sample-size 10 --measurement-time 8`): criterion refuses a sample that read zero.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Clock {
    Wall,
    Cpu,
    Thread,
}

impl Clock {
    fn from_env() -> Self {
        match std::env::var("TESSERA_BENCH_CLOCK").as_deref() {
            Err(_) | Ok("wall") => Self::Wall,
            Ok("cpu") => Self::Cpu,
            Ok("thread") => Self::Thread,
            Ok(other) => panic!("TESSERA_BENCH_CLOCK is wall, cpu or thread, not {other}"),
        }
    }
}

/// The thread id of the busy loop, while one runs (its CPU time is not the validations').
static SPINNER_TID: AtomicU64 = AtomicU64::new(0);

/// The calling thread's id (Linux).
fn thread_id() -> u64 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self (Linux)");
    link.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

/// Nanoseconds on a CPU of thread `tid` of this process (its `schedstat`).
fn thread_cpu(tid: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The CPU time of every thread of this process but the busy loop, by thread.
fn process_cpu() -> HashMap<u64, u64> {
    let spinner = SPINNER_TID.load(Ordering::Relaxed);
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task (Linux)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|&tid| tid != spinner)
        .map(|tid| (tid, thread_cpu(tid)))
        .collect()
}

/// CPU time spent between two [`process_cpu`] readings (threads that ended meanwhile are lost:
/// the runtime's blocking threads live for seconds after their last task).
fn cpu_between(before: &HashMap<u64, u64>, after: &HashMap<u64, u64>) -> Duration {
    let ns = after
        .iter()
        .map(|(tid, &n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    Duration::from_nanos(ns)
}

/// How long `f` took on `clock` (see [`Clock`]).
fn timed(clock: Clock, f: impl FnOnce()) -> Duration {
    let me = (clock == Clock::Thread).then(thread_id);
    let cpu = (clock == Clock::Cpu).then(process_cpu);
    let own = me.map(thread_cpu);
    let start = Instant::now();
    f();
    let wall = start.elapsed();
    match (cpu, me.zip(own)) {
        (Some(cpu), _) => cpu_between(&cpu, &process_cpu()),
        (_, Some((me, own))) => Duration::from_nanos(thread_cpu(me).saturating_sub(own)),
        _ => wall,
    }
}

fn bench_case(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    svc: &TokenService,
    t: &Tokens,
    case: Case,
) {
    let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
    let clock = Clock::from_env();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            timed(clock, || {
                rt.block_on(async {
                    for i in 0..iters {
                        validate_once(svc, t, case, &mut pick).await;
                        // A validation answered from memory never waits: let the service's own
                        // tasks (the ledger's writer) run now and then, as they do between the
                        // requests of a server on this runtime.
                        if i % 1024 == 1023 {
                            tokio::task::yield_now().await;
                        }
                    }
                });
            })
        });
    });
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Whether the command line's filter (if any) can match a case of `group`: the set-up of a
/// group (issuing 10^4 tokens per kind) is skipped when none can. A filter naming cases of a
/// group (`random_sqlite/no_cache`) wants that group only, not every group whose name starts
/// the same (`random_sql`).
fn wanted(group: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters.iter().any(|f| {
            group.contains(f.as_str())
                || f.strip_prefix(group)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

fn random_memory(c: &mut Criterion) {
    if !wanted("random_memory") {
        return;
    }
    let rt = current_thread();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let all = Case::VALID;
    let t = rt.block_on(issue(store.clone(), &all));
    let mut g = c.benchmark_group("random_memory");
    g.throughput(Throughput::Elements(1));

    // The floor: keyed BLAKE3 of a random token's bytes, one probe of a 10^4-entry map.
    let p = pepper();
    let map: HashMap<Digest, TokenId> = t
        .deployment
        .iter()
        .enumerate()
        .map(|(i, tok)| {
            (
                p.digest_bytes(tok.as_bytes()),
                TokenId::from_u128(i as u128),
            )
        })
        .collect();
    let id = p.id();
    let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
    g.bench_function("floor/blake3_keyed+probe_1e4_random", |b| {
        b.iter(|| {
            let tok = &t.deployment[pick.next(N)];
            let bytes = *blake3::keyed_hash(&KEY, black_box(tok.as_bytes())).as_bytes();
            black_box(map.get(&Digest::from_parts(id, bytes)).copied())
        });
    });

    let defaults = builder(store.clone()).build();
    {
        let tok = &t.deployment[0];
        let ip = t.ips[0];
        let app = RequestContext::new().application(ip);
        eprintln!(
            "future sizes: validate {} deployment {} application {} auth {}",
            size_of_val(&defaults.validate(tok, &app)),
            size_of_val(&defaults.deployment().validate(tok)),
            size_of_val(&defaults.application().validate(tok, ip)),
            size_of_val(&defaults.auth().check(tok, &t.action, &t.held)),
        );
    }
    let quiet = builder(store.clone())
        .audit_uses(false)
        .audit_refusals(false)
        .build();
    for case in all.into_iter().chain([Case::Unknown]) {
        bench_case(
            &mut g,
            &rt,
            &format!("defaults/{}", case.name()),
            &defaults,
            &t,
            case,
        );
    }
    for case in all {
        bench_case(
            &mut g,
            &rt,
            &format!("audit_off/{}", case.name()),
            &quiet,
            &t,
            case,
        );
    }
    // Observed: a subscriber at INFO (to a sink) and a Prometheus recorder, installed now so
    // the cases above ran without them; a new service takes its metric handles from it.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no recorder yet");
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("no subscriber yet");
    let observed = builder(store).build();
    for case in all {
        bench_case(
            &mut g,
            &rt,
            &format!("observed/{}", case.name()),
            &observed,
            &t,
            case,
        );
    }
    g.finish();
}

/// A fresh SQLite file store in a folder of its own, removed when the returned guard is
/// dropped (the databases grow to hundreds of megabytes: left behind, a few runs fill a disk).
async fn sqlite(tag: &str) -> (Arc<dyn Store>, BenchDir) {
    let (store, _, dir) = sqlite_at(tag).await;
    (store, dir)
}

/// The folder of a bench database; removed with everything in it when dropped.
type BenchDir = tempfile::TempDir;

/// [`sqlite`], and the database file's path.
async fn sqlite_at(tag: &str) -> (Arc<dyn Store>, std::path::PathBuf, BenchDir) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tessera-bench-{tag}-"))
        .tempdir()
        .expect("a temporary folder for the bench database");
    let path = dir.path().join("t.db");
    let mut config = SqliteConfig::file(&path);
    // To compare page reads through the memory map with the page cache alone (`0`) in runs
    // of the same binary.
    if let Ok(bytes) = std::env::var("TESSERA_BENCH_SQLITE_MMAP") {
        config = config.mmap_size(bytes.parse().expect("TESSERA_BENCH_SQLITE_MMAP in bytes"));
    }
    let s = SqliteStore::open_with(config).await.unwrap();
    s.migrate().await.unwrap();
    (Arc::new(s), path, dir)
}

/// The SQLite floor: what any validation on this file costs at least, measured the same way as
/// the cases: the keyed BLAKE3 of a random token (as the memory floor) and one point lookup
/// of a random token's row by its digest through the unique digest index, every column read,
/// in a read transaction of its own (autocommit, as a validation must: a snapshot held across
/// validations would miss revocations and starve the WAL's checkpoints), on a connection with
/// the store's pragmas and a cached prepared statement. `hit` false: digests no row has.
fn sqlite_floor(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    path: &std::path::Path,
    t: &Tokens,
    hit: bool,
) {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    conn.execute_batch(&format!(
        "PRAGMA mmap_size = {}; PRAGMA cache_size = -{};",
        SqliteConfig::DEFAULT_MMAP_SIZE,
        SqliteConfig::DEFAULT_CACHE_SIZE / 1024
    ))
    .unwrap();
    let mut keys: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT digest_key, digest FROM tokens WHERE kind = 'deployment'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(keys.len() >= N, "the deployment tokens' rows");
    if !hit {
        for (_, d) in &mut keys {
            d.iter_mut().for_each(|b| *b = !*b);
        }
    }
    let sql = "SELECT id, kind, digest_key, digest, spelling, hint, state, created_at, \
               created_by, generated_by, expires_at, last_used_at, activated_at, grace_until, \
               successor, max_uses, uses, binding, bound_device, data, sealed \
               FROM tokens WHERE digest_key = ?1 AND digest = ?2";
    let clock = Clock::from_env();
    let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            timed(clock, || {
                for _ in 0..iters {
                    let tok = &t.deployment[pick.next(N)];
                    black_box(blake3::keyed_hash(&KEY, black_box(tok.as_bytes())));
                    let (key, digest) = &keys[pick.next(N)];
                    let mut stmt = conn.prepare_cached(sql).unwrap();
                    let mut rows = stmt.query(rusqlite::params![key, digest]).unwrap();
                    let mut columns = 0usize;
                    if let Some(row) = rows.next().unwrap() {
                        for i in 0..21 {
                            columns += usize::from(
                                black_box(row.get_ref(i).unwrap()).data_type()
                                    != rusqlite::types::Type::Null,
                            );
                        }
                    }
                    assert_eq!(
                        columns > 0,
                        hit,
                        "a stored digest is found, a flipped one not"
                    );
                }
            })
        });
    });
}

async fn postgres(tag: &str, connections: u32) -> Option<Arc<dyn Store>> {
    postgres_with(tag, connections, PostgresConfig::DEFAULT_LOOKUP_QUERIES).await
}

/// A PostgreSQL store in the schema of `tag` (created and migrated if new), running at most
/// `lookups` lookup queries at once.
async fn postgres_with(tag: &str, connections: u32, lookups: u32) -> Option<Arc<dyn Store>> {
    let url = std::env::var("TESSERA_TEST_POSTGRES_URL").ok()?;
    let schema = format!("tessera_rb_{tag}_{}", std::process::id());
    let cfg = PostgresConfig::new(url)
        .schema(&schema)
        .unwrap()
        .max_connections(connections)
        .lookup_queries(lookups);
    let s = PostgresStore::connect_with(cfg).await.unwrap();
    s.migrate().await.unwrap();
    Some(Arc::new(s))
}

fn random_sql(c: &mut Criterion) {
    if !wanted("random_sql") {
        return;
    }
    let rt = current_thread();
    let mut g = c.benchmark_group("random_sql");
    g.throughput(Throughput::Elements(1));
    let kinds = [Case::Application, Case::Endpoint];
    let (sqlite_store, _dir) = rt.block_on(sqlite("cached"));
    let mut stores = vec![("sqlite", sqlite_store)];
    if let Some(pg) = rt.block_on(postgres("cached", 4)) {
        stores.push(("postgres", pg));
    }
    for (name, store) in stores {
        let t = rt.block_on(issue(store.clone(), &kinds));
        let svc = builder(store)
            .validation_cache(ValidationCache::new(SQL_TTL))
            .build();
        // The steady state: every token validated once, so the cache holds them all (a cold
        // cache would measure 2·10^4 store reads in the warm-up and the first samples).
        rt.block_on(async {
            for i in 0..N {
                let request = RequestContext::new().application(t.ips[i % 4]);
                let _ = svc.validate(&t.application[i], &request).await;
                if let Some((tok, ep, method)) = t.endpoint.get(i) {
                    let request = RequestContext::new().endpoint(ep, *method);
                    let _ = svc.validate(tok, &request).await;
                }
            }
        });
        for case in kinds {
            bench_case(
                &mut g,
                &rt,
                &format!("{name}/cached/{}", case.name()),
                &svc,
                &t,
                case,
            );
        }
    }
    g.finish();
}

fn random_sqlite(c: &mut Criterion) {
    if !wanted("random_sqlite") {
        return;
    }
    let rt = current_thread();
    let mut g = c.benchmark_group("random_sqlite");
    g.throughput(Throughput::Elements(1));
    let (store, path, _dir) = rt.block_on(sqlite_at("straight"));
    let all = Case::VALID;
    let t = rt.block_on(issue(store.clone(), &all));
    let svc = builder(store).build();
    for busy in [false, true] {
        // A busy loop on the other core, as a neighbour process would hold it.
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = busy.then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                SPINNER_TID.store(thread_id(), Ordering::Relaxed);
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                }
            })
        });
        let tag = if busy { "busy_core" } else { "idle_core" };
        sqlite_floor(&mut g, &format!("floor/{tag}/lookup_hit"), &path, &t, true);
        sqlite_floor(
            &mut g,
            &format!("floor/{tag}/lookup_miss"),
            &path,
            &t,
            false,
        );
        for case in all.into_iter().chain([Case::Unknown]) {
            bench_case(
                &mut g,
                &rt,
                &format!("no_cache/{tag}/{}", case.name()),
                &svc,
                &t,
                case,
            );
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(h) = spinner {
            h.join().unwrap();
            SPINNER_TID.store(0, Ordering::Relaxed);
        }
    }
    g.finish();
}

fn random_pg_tasks(c: &mut Criterion) {
    if !wanted("random_pg_tasks") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // TESSERA_BENCH_LOOKUP_QUERIES overrides the default, to compare settings.
    let lookups = std::env::var("TESSERA_BENCH_LOOKUP_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PostgresConfig::DEFAULT_LOOKUP_QUERIES);
    let Some(store) = rt.block_on(postgres_with("tasks", 64, lookups)) else {
        eprintln!("skipping: TESSERA_TEST_POSTGRES_URL is unset");
        return;
    };
    let t = Arc::new(rt.block_on(issue(store.clone(), &[Case::Application])));
    let mut g = c.benchmark_group("random_pg_tasks");
    g.throughput(Throughput::Elements(1));
    // The floor: the store's own lookup (coalesced as the defaults do) of random stored
    // digests by 64 tasks, and nothing else: no parse, no digest, no rule, no ledger, no write.
    let digests: Arc<Vec<Digest>> = Arc::new(
        rt.block_on(store.list(&TokenFilter::default().kind(Kind::Application)))
            .unwrap()
            .into_iter()
            .map(|r| r.digest)
            .collect(),
    );
    assert!(digests.len() >= N, "the application tokens' digests");
    g.bench_function("postgres/floor/find_shared/64_tasks", |b| {
        b.iter_custom(|iters| {
            rt.block_on(tasks_64(iters, |k, left| {
                let (store, digests) = (store.clone(), digests.clone());
                async move {
                    let mut pick = Pick(0x9e37_79b9 + k);
                    while take_one(&left) {
                        let found = store.find_shared(&digests[pick.next(N)]).await.unwrap();
                        assert!(found.is_some(), "a stored digest is found");
                    }
                }
            }))
        });
    });
    // The defaults (lookups coalesced past `lookup_queries` in flight), then the baseline: the
    // same schema through a store that runs every lookup as a query of its own.
    let alone = rt.block_on(postgres_with("tasks", 64, 64)).unwrap();
    for (name, store) in [("coalesced", store), ("query_per_lookup", alone)] {
        let svc = builder(store).build();
        g.bench_function(
            format!("postgres/no_cache/application_iplog/64_tasks/{name}"),
            |b| {
                b.iter_custom(|iters| {
                    rt.block_on(tasks_64(iters, |k, left| {
                        let (svc, t) = (svc.clone(), t.clone());
                        async move {
                            let mut pick = Pick(0x9e37_79b9 + k);
                            while take_one(&left) {
                                validate_once(&svc, &t, Case::Application, &mut pick).await;
                            }
                        }
                    }))
                });
            },
        );
    }
    g.finish();
}

/// Wall time for 64 tasks (`task(k, left)`, `k` 0..64) sharing `iters` operations between them
/// (each takes one with [`take_one`] until none is left).
async fn tasks_64<F, Fut>(iters: u64, task: F) -> Duration
where
    F: Fn(u64, Arc<AtomicU64>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let left = Arc::new(AtomicU64::new(iters));
    let start = Instant::now();
    let tasks: Vec<_> = (0..64u64)
        .map(|k| tokio::spawn(task(k, left.clone())))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// Take one of the operations left, if any.
fn take_one(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

fn ledger_flush(c: &mut Criterion) {
    if !wanted("ledger_flush") {
        return;
    }
    let rt = current_thread();
    let mut g = c.benchmark_group("ledger_flush");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100_000));
    let (sqlite_store, _dir) = rt.block_on(sqlite("flush"));
    let mut stores = vec![
        ("memory", Arc::new(MemoryStore::new()) as Arc<dyn Store>),
        ("sqlite", sqlite_store),
    ];
    if let Some(pg) = rt.block_on(postgres("flush", 4)) {
        stores.push(("postgres", pg));
    }
    for (name, store) in stores {
        let t = rt.block_on(issue(store.clone(), &[Case::Application]));
        // Only `flush` writes: no interval, no size bound within a sample.
        let svc = builder(store)
            .validation_cache(ValidationCache::new(SQL_TTL))
            .ledger(
                LedgerSettings::new()
                    .interval(time::Duration::hours(1))
                    .max_pending(usize::MAX),
            )
            .build();
        let mut pick = Pick(7);
        g.bench_function(format!("{name}/1e5_uses_1e4_tokens"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        for _ in 0..100_000 {
                            validate_once(&svc, &t, Case::Application, &mut pick).await;
                        }
                        let start = Instant::now();
                        let f = svc.flush().await.unwrap();
                        spent += start.elapsed();
                        assert_eq!((f.batches, f.uses), (1, 100_000), "one transaction");
                    }
                    spent
                })
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = random_memory, random_sql, random_sqlite, random_pg_tasks, ledger_flush
}
criterion_main!(benches);
