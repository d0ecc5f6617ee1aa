//! Exactness across OS processes, and crash safety, on SQLite and PostgreSQL.
//!
//! The test binary is its own helper: a parent test re-runs this executable with
//! `TESSERA_WORKER` set, and the `worker` test then acts as one storming process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::postgres_url;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use tessera::core::audit::AuditAction;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description, DeviceId};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::onboarding::UsageLimit;
use tessera::onboarding::NewOnboarding;
use tessera::sql::postgres::PostgresConfig;
use tessera::sql::{PostgresStore, SqliteStore};
use tessera::store::{AuditFilter, Store, TokenFilter, UsageSubject};
use tessera::{Principal, Rejection, TokenService};

const TASKS: usize = 128;
const PROCESSES: usize = 2;

fn peppers() -> Peppers {
    Peppers::new(Pepper::new(KeyId(1), [42; 32]))
}

/// Where the storming processes meet: a SQLite file or a PostgreSQL schema.
#[derive(Clone, Debug)]
enum Db {
    Sqlite(String),
    Postgres { url: String, schema: String },
}

impl Db {
    fn encode(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite|{p}"),
            Self::Postgres { url, schema } => format!("postgres|{url}|{schema}"),
        }
    }

    fn decode(s: &str) -> Self {
        let parts: Vec<&str> = s.split('|').collect();
        match parts[0] {
            "sqlite" => Self::Sqlite(parts[1].to_owned()),
            _ => Self::Postgres {
                url: parts[1].to_owned(),
                schema: parts[2].to_owned(),
            },
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(p) => {
                let s = SqliteStore::open(p).await.unwrap();
                s.migrate().await.unwrap();
                Arc::new(s)
            }
            Self::Postgres { url, schema } => {
                let cfg = PostgresConfig::new(url.clone()).schema(schema).unwrap();
                let s = PostgresStore::connect_with(cfg).await.unwrap();
                s.migrate().await.unwrap();
                Arc::new(s)
            }
        }
    }
}

fn fresh_schema(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("tessera_mp_{tag}_{}_{nanos}", std::process::id())
}

fn spawn_worker(db: &Db, mode: &str, token: &str, id: usize, attempts: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["worker", "--exact", "--nocapture", "--test-threads", "1"])
        .env("TESSERA_WORKER", mode)
        .env("TESSERA_WORKER_DB", db.encode())
        .env("TESSERA_WORKER_TOKEN", token)
        .env("TESSERA_WORKER_ID", id.to_string())
        .env("TESSERA_WORKER_ATTEMPTS", attempts.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Counts a worker reports: `RESULT admitted=A refused=R other=O repeated=P`, and the devices
/// it saw refused (`REFUSED d-1 d-7 ...`).
#[derive(Debug, Default)]
struct Tally {
    admitted: u64,
    refused: u64,
    other: u64,
    repeated: u64,
    refused_devices: HashSet<String>,
}

fn read_result(child: &mut Child) -> Tally {
    let out = child.stdout.take().unwrap();
    let mut tally = None;
    let mut refused_devices = HashSet::new();
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("REFUSED") {
            refused_devices.extend(rest.split_whitespace().map(str::to_owned));
        }
        if let Some(rest) = line.strip_prefix("RESULT ") {
            let mut t = Tally::default();
            for kv in rest.split(' ') {
                let (k, v) = kv.split_once('=').unwrap();
                let v: u64 = v.parse().unwrap();
                match k {
                    "admitted" => t.admitted = v,
                    "refused" => t.refused = v,
                    "repeated" => t.repeated = v,
                    _ => t.other = v,
                }
            }
            tally = Some(t);
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "worker failed: {status}");
    let mut tally: Tally = tally.expect("worker printed no RESULT line");
    tally.refused_devices = refused_devices;
    tally
}

/// One storming process: `TASKS` tasks share `attempts` attempts against one token.
#[test]
fn worker() {
    let Ok(mode) = std::env::var("TESSERA_WORKER") else {
        return; // run as a normal test: nothing to do
    };
    let db = Db::decode(&std::env::var("TESSERA_WORKER_DB").unwrap());
    let token: Arc<str> = std::env::var("TESSERA_WORKER_TOKEN").unwrap().into();
    let id: usize = std::env::var("TESSERA_WORKER_ID").unwrap().parse().unwrap();
    let attempts: usize = std::env::var("TESSERA_WORKER_ATTEMPTS")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = db.open().await;
        let svc = TokenService::builder_shared(store, peppers()).build();
        println!("STARTED");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let svc = svc.clone();
            let token = token.clone();
            let mode = mode.clone();
            handles.push(tokio::spawn(async move {
                let mut t = Tally::default();
                let mut n = task;
                while n < attempts {
                    let outcome = if mode == "issue" {
                        let spec = NewOnboarding::new("policy", "group").unwrap();
                        let admin = Principal::admin("root").unwrap();
                        svc.onboarding().create(spec, &admin).await.map(|_| Ok(()))
                    } else if mode == "redeem" {
                        let device = DeviceId::parse(format!("p{id}-{n}")).unwrap();
                        svc.onboarding()
                            .redeem(&token, &device)
                            .await
                            .map(|r| r.map(|_| ()))
                    } else if let Some(devices) = mode.strip_prefix("repeat-") {
                        // Devices shared by every process, each coming back many times.
                        let devices: usize = devices.parse().unwrap();
                        let name = format!("d-{}", n % devices);
                        let device = DeviceId::parse(name.clone()).unwrap();
                        match svc.onboarding().redeem(&token, &device).await {
                            Ok(Ok(e)) if e.repeated => {
                                t.repeated += 1;
                                n += TASKS;
                                continue;
                            }
                            Ok(Err(Rejection::Exhausted)) => {
                                t.refused_devices.insert(name);
                                Ok(Err(Rejection::Exhausted))
                            }
                            other => other.map(|r| r.map(|_| ())),
                        }
                    } else {
                        let ip: IpAddr = format!("10.0.{id}.{}", n % 7).parse().unwrap();
                        svc.application()
                            .validate(&token, ip)
                            .await
                            .map(|r| r.map(|_| ()))
                    };
                    match outcome {
                        Ok(Ok(())) => t.admitted += 1,
                        Ok(Err(Rejection::Exhausted)) => t.refused += 1,
                        Ok(Err(r)) => panic!("unexpected rejection {r:?}"),
                        Err(e) => {
                            eprintln!("worker error: {e}");
                            t.other += 1;
                        }
                    }
                    n += TASKS;
                }
                t
            }));
        }
        let mut total = Tally::default();
        for h in handles {
            let t = h.await.unwrap();
            total.admitted += t.admitted;
            total.refused += t.refused;
            total.other += t.other;
            total.repeated += t.repeated;
            total.refused_devices.extend(t.refused_devices);
        }
        // What the usage ledger holds is written before the process reports (a graceful end).
        svc.flush().await.unwrap();
        let mut refused: Vec<_> = total.refused_devices.into_iter().collect();
        refused.sort();
        println!("REFUSED {}", refused.join(" "));
        println!(
            "RESULT admitted={} refused={} other={} repeated={}",
            total.admitted, total.refused, total.other, total.repeated
        );
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
    });
}

async fn redeem_storm(db: Db) {
    let store = db.open().await;
    let svc = TokenService::builder_shared(store.clone(), peppers()).build();
    let spec = NewOnboarding::new("policy", "group")
        .unwrap()
        .limit(UsageLimit::uses(100).unwrap());
    let issued = svc
        .onboarding()
        .create(spec, &Principal::admin("root").unwrap())
        .await
        .unwrap();
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|i| spawn_worker(&db, "redeem", issued.secret.expose_secret(), i, 500))
        .collect();
    let tallies: Vec<Tally> = children.iter_mut().map(read_result).collect();
    let admitted: u64 = tallies.iter().map(|t| t.admitted).sum();
    let other: u64 = tallies.iter().map(|t| t.other).sum();
    assert_eq!(admitted, 100, "{tallies:?}");
    assert_eq!(other, 0, "{tallies:?}");
    let devices = store.enrollments(issued.token.id).await.unwrap();
    let distinct: HashSet<_> = devices.iter().map(|e| e.device.clone()).collect();
    assert_eq!((devices.len(), distinct.len()), (100, 100));
    let record = store.get(issued.token.id).await.unwrap().unwrap();
    assert_eq!(record.uses, 100);
}

/// One device, one use across processes: `PROCESSES` processes of `TASKS` tasks make 500
/// attempts each with a 100-use token, by `devices` device ids shared by every process (each
/// comes back many times, from both processes). Exactly min(100, devices) distinct devices
/// enroll, each once and consuming one use; every repeat by an enrolled device is answered
/// with its enrollment (also after the last use); only devices never enrolled are refused.
async fn redeem_repeat_storm(db: Db, devices: usize) {
    let store = db.open().await;
    let svc = TokenService::builder_shared(store.clone(), peppers()).build();
    let spec = NewOnboarding::new("policy", "group")
        .unwrap()
        .limit(UsageLimit::uses(100).unwrap());
    let issued = svc
        .onboarding()
        .create(spec, &Principal::admin("root").unwrap())
        .await
        .unwrap();
    let mode = format!("repeat-{devices}");
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|i| spawn_worker(&db, &mode, issued.secret.expose_secret(), i, 500))
        .collect();
    let tallies: Vec<Tally> = children.iter_mut().map(read_result).collect();
    let expected = devices.min(100);
    let admitted: u64 = tallies.iter().map(|t| t.admitted).sum();
    let repeated: u64 = tallies.iter().map(|t| t.repeated).sum();
    let refused: u64 = tallies.iter().map(|t| t.refused).sum();
    let other: u64 = tallies.iter().map(|t| t.other).sum();
    assert_eq!(admitted, expected as u64, "{tallies:?}");
    assert_eq!(other, 0, "{tallies:?}");
    assert_eq!(admitted + repeated + refused, 1_000, "{tallies:?}");
    let enrolled = store.enrollments(issued.token.id).await.unwrap();
    let distinct: HashSet<String> = enrolled.iter().map(|e| e.device.to_string()).collect();
    assert_eq!((enrolled.len(), distinct.len()), (expected, expected));
    for t in &tallies {
        assert!(
            t.refused_devices.is_disjoint(&distinct),
            "an enrolled device was refused: {:?}",
            t.refused_devices
                .intersection(&distinct)
                .collect::<Vec<_>>()
        );
    }
    if devices <= 100 {
        assert_eq!(
            refused, 0,
            "devices left out while uses remained: {tallies:?}"
        );
    }
    let record = store.get(issued.token.id).await.unwrap().unwrap();
    assert_eq!(record.uses, expected as u64);
}

async fn ip_log_storm(db: Db) {
    let store = db.open().await;
    let svc = TokenService::builder_shared(store.clone(), peppers()).build();
    let issued = svc
        .application()
        .create(
            ApplicationName::parse("storm").unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &Principal::admin("root").unwrap(),
        )
        .await
        .unwrap();
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|i| spawn_worker(&db, "validate", issued.secret.expose_secret(), i, 1000))
        .collect();
    let tallies: Vec<Tally> = children.iter_mut().map(read_result).collect();
    let accepted: u64 = tallies.iter().map(|t| t.admitted).sum();
    assert_eq!(accepted, (PROCESSES * 1000) as u64, "{tallies:?}");
    let counted: u64 = store
        .usage(issued.token.id)
        .await
        .unwrap()
        .iter()
        .filter(|u| matches!(u.subject, UsageSubject::Ip(_)))
        .map(|u| u.count)
        .sum();
    assert_eq!(counted, accepted);
}

/// SIGKILL one storming process and one issuing process: afterwards consumed uses equal
/// recorded redemptions, every token that survived has its issue event (a record and its event
/// commit together), the database opens cleanly and the survivor finished its work.
async fn crash_storm(db: Db) {
    let store = db.open().await;
    let svc = TokenService::builder_shared(store.clone(), peppers()).build();
    let spec = NewOnboarding::new("policy", "group")
        .unwrap()
        .limit(UsageLimit::uses(1_000_000).unwrap());
    let issued = svc
        .onboarding()
        .create(spec, &Principal::admin("root").unwrap())
        .await
        .unwrap();
    let mut victim = KillOnDrop(spawn_worker(
        &db,
        "redeem",
        issued.secret.expose_secret(),
        0,
        1_000_000,
    ));
    let mut survivor = KillOnDrop(spawn_worker(
        &db,
        "redeem",
        issued.secret.expose_secret(),
        1,
        2_000,
    ));
    let mut issuer = KillOnDrop(spawn_worker(
        &db,
        "issue",
        issued.secret.expose_secret(),
        2,
        1_000_000,
    ));
    // Wait until the victims are storming (their redemptions and tokens show in the database),
    // then kill them mid-flight. Their stdout stays open, unread, until they die.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let uses = store.get(issued.token.id).await.unwrap().unwrap().uses;
        let tokens = store.list(&TokenFilter::default()).await.unwrap().len();
        if uses >= 200 && tokens >= 50 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the storm never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    victim.0.kill().unwrap(); // SIGKILL on Unix
    issuer.0.kill().unwrap();
    victim.0.wait().unwrap();
    issuer.0.wait().unwrap();
    let t = read_result(&mut survivor.0);
    assert_eq!((t.admitted, t.refused, t.other), (2_000, 0, 0));
    drop(victim);
    drop(issuer);

    drop(svc);
    drop(store);
    let reopened = db.open().await;
    let record = reopened.get(issued.token.id).await.unwrap().unwrap();
    let devices = reopened.enrollments(issued.token.id).await.unwrap();
    assert_eq!(
        record.uses,
        devices.len() as u64,
        "uses consumed equal redemptions recorded"
    );
    assert!(
        record.uses > 2_000,
        "the victim redeemed before it died: {}",
        record.uses
    );
    let tokens = reopened.list(&TokenFilter::default()).await.unwrap();
    assert!(tokens.len() > 50, "the issuer issued before it died");
    for t in &tokens {
        let events = reopened
            .events(&AuditFilter::default().token(t.id))
            .await
            .unwrap();
        assert!(
            events.iter().any(|e| e.action == AuditAction::Issued),
            "token {} survived without its issue event",
            t.id
        );
    }
    let svc = TokenService::builder_shared(reopened, peppers()).build();
    let after = svc
        .onboarding()
        .redeem(
            issued.secret.expose_secret(),
            &DeviceId::parse("after").unwrap(),
        )
        .await
        .unwrap();
    assert!(after.is_ok());
}

/// Kills a worker left running when a test fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sqlite_db(dir: &tempfile::TempDir) -> Db {
    Db::Sqlite(dir.path().join("tessera.db").to_str().unwrap().to_owned())
}

fn postgres_db(tag: &str) -> Option<Db> {
    postgres_url().map(|url| Db::Postgres {
        url,
        schema: fresh_schema(tag),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_redemption_is_exact_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    redeem_storm(sqlite_db(&dir)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_repeated_devices_enroll_once_across_processes() {
    for devices in [150, 40] {
        let dir = tempfile::tempdir().unwrap();
        redeem_repeat_storm(sqlite_db(&dir), devices).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_repeated_devices_enroll_once_across_processes() {
    for (tag, devices) in [("repeat150", 150), ("repeat40", 40)] {
        if let Some(db) = postgres_db(tag) {
            redeem_repeat_storm(db, devices).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_ip_log_is_exact_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    ip_log_storm(sqlite_db(&dir)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_survives_a_killed_process() {
    let dir = tempfile::tempdir().unwrap();
    crash_storm(sqlite_db(&dir)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_redemption_is_exact_across_processes() {
    if let Some(db) = postgres_db("redeem") {
        redeem_storm(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_ip_log_is_exact_across_processes() {
    if let Some(db) = postgres_db("iplog") {
        ip_log_storm(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_survives_a_killed_process() {
    if let Some(db) = postgres_db("crash") {
        crash_storm(db).await;
    }
}
