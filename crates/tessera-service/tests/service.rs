//! The service as deployed: the real binary, started on SQLite and on PostgreSQL, driven over
//! HTTP on a real port, scraped on `/metrics`, and stopped with SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up fails loudly

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../tests/common/cluster.rs"]
mod cluster;

use tessera::core::id::{AccessType, ApplicationName, Description};
use tessera::core::kind::application::AccessTypes;
use tessera::sql::postgres::PostgresConfig;
use tessera::{KeyId, Pepper, Peppers, Principal, Store, TokenService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PEPPER_HEX: &str = "0707070707070707070707070707070707070707070707070707070707070707";

fn peppers() -> Peppers {
    Peppers::new(Pepper::from_hex(KeyId(1), PEPPER_HEX).unwrap())
}

/// The service process, killed if a test fails before stopping it.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(database_url: &str, schema: Option<&str>) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera-service"));
    cmd.env("TESSERA_DATABASE_URL", database_url)
        .env("TESSERA_PEPPER", PEPPER_HEX)
        .env("TESSERA_LISTEN", "127.0.0.1:0")
        .env("TESSERA_CACHE_TTL_SECONDS", "2")
        // The usage ledger writes only on shutdown here: the IP log read after SIGTERM proves
        // the graceful shutdown wrote it.
        .env("TESSERA_LEDGER_INTERVAL_MS", "3600000")
        .env("RUST_LOG", "info")
        .env_remove("TESSERA_PEPPER_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match schema {
        Some(s) => cmd.env("TESSERA_DATABASE_SCHEMA", s),
        None => cmd.env_remove("TESSERA_DATABASE_SCHEMA"),
    };
    let mut child = cmd.spawn().expect("start tessera-service");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the service exited before listening")
            .unwrap();
        // Its log, to a pipe here, is plain text: no terminal colour codes in a log file.
        assert!(
            !line.contains('\u{1b}'),
            "a colour code in the log: {line:?}"
        );
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.parse().unwrap();
        }
    };
    Running { child, addr }
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"));
    (status, answer)
}

/// Issue an application token in the service's database (as an operator's tool would, with
/// the same pepper), run the service on it, drive it, scrape it, stop it.
async fn drive(store: impl Store, database_url: &str, schema: Option<&str>, watch: &str) {
    let issuer = TokenService::new(store, peppers());
    let issued = issuer
        .application()
        .create(
            ApplicationName::parse("siem").unwrap(),
            Description::parse("collector").unwrap(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &Principal::admin("ops").unwrap(),
        )
        .await
        .unwrap();
    let token = issued.secret.expose_secret().to_owned();

    let mut running = start(database_url, schema);
    let addr = running.addr;
    assert_eq!(get(addr, "/healthz", None).await.0, 200);
    let (status, body) = get(addr, "/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ready: store ok"), "{body}");
    assert!(body.contains(watch), "{body}");

    for _ in 0..3 {
        let (status, body) = get(addr, "/feed", Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("feed for siem at 127.0.0.1"), "{body}");
    }
    let (status, body) = get(addr, "/feed", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(addr, "/feed", Some("tsr_app_unknown")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_token"), "{body}");
    assert_eq!(get(addr, "/open", None).await.0, 200);

    // Counted in the service's usage ledger, not written yet (interval of an hour).
    let ips = issuer.application().ips(issued.token.id).await.unwrap();
    assert!(ips.is_empty(), "{ips:?}");

    let (status, metrics) = get(addr, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"tessera_validations_total{kind="application",outcome="accepted"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tessera_validations_total{kind="application",outcome="malformed"} 1"#),
        "{metrics}"
    );
    assert!(!metrics.contains(&token[8..20]), "a secret in the metrics");
    // The first use read the store, the next two were answered by the cache.
    for series in [
        "tessera_cache_hits_total 2",
        "tessera_cache_misses_total 1",
        "tessera_cache_caching 1",
    ] {
        assert!(metrics.contains(series), "{series}: {metrics}");
    }

    // SIGTERM: drained and exited cleanly.
    let pid = running.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The graceful shutdown wrote the usage ledger: the uses are in the shared database.
    let ips = issuer.application().ips(issued.token.id).await.unwrap();
    assert_eq!(ips.len(), 1);
    assert_eq!(ips[0].count, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.db");
    let store = tessera::sql::SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    drive(
        store,
        &format!("sqlite:{}", path.display()),
        None,
        "time to live bounds",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_on_postgres() {
    let url = match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1") => {
            panic!(
                "CI=true but TESSERA_TEST_POSTGRES_URL is unset: PostgreSQL tests never skip in \
                 CI; start a server with `eval \"$(.ci/postgres-up)\"`"
            )
        }
        _ => {
            println!("SKIPPED: the PostgreSQL service test: TESSERA_TEST_POSTGRES_URL is unset");
            return;
        }
    };
    let schema = format!("tessera_service_{}", std::process::id());
    let store = tessera::sql::PostgresStore::connect_with(
        PostgresConfig::new(&url).schema(&schema).unwrap(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    // (The schema stays on the throwaway test server.)
    drive(
        store,
        &url,
        Some(&schema),
        "cache watches the store's changes",
    )
    .await;
}

/// On PostgreSQL `/readyz` answers 503 saying why while the change watch is down (its
/// connection terminated, new connections refused), 200 once it listens again; `/metrics`
/// counts the loss, the resumption and the time the cache served nothing.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_on_postgres_says_when_the_watch_is_down() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    cluster.sql("CREATE DATABASE tessera_svc");
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/tessera_svc",
        cluster.port()
    );
    let store = tessera::sql::PostgresStore::connect_with(PostgresConfig::new(&url))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    let running = start(&url, None);
    let addr = running.addr;
    let (status, body) = get(addr, "/readyz", None).await;
    assert_eq!(status, 200, "{body}");

    // Refuse new connections to the service's database, then end the watch's connection (its
    // last statement is its LISTEN or its heartbeat); the pool's connections stay.
    cluster.sql("ALTER DATABASE tessera_svc WITH ALLOW_CONNECTIONS false");
    let killed = cluster.sql(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = 'tessera_svc' AND (query ILIKE 'LISTEN%' OR query = 'SELECT 1')",
    );
    assert_eq!(killed, "1", "the watch's connection was terminated");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = get(addr, "/readyz", None).await;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(body.contains("change watch is lost"), "{body}");
    let (_, metrics) = get(addr, "/metrics", None).await;
    assert!(metrics.contains("tessera_watch_lost_total 1"), "{metrics}");
    assert!(metrics.contains("tessera_cache_caching 0"), "{metrics}");

    cluster.sql("ALTER DATABASE tessera_svc WITH ALLOW_CONNECTIONS true");
    loop {
        let (status, body) = get(addr, "/readyz", None).await;
        if status == 200 {
            assert!(body.contains("watches the store's changes"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "not ready again: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, metrics) = get(addr, "/metrics", None).await;
    assert!(
        metrics.contains("tessera_watch_resumed_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tessera_cache_caching 1"), "{metrics}");
    let uncached: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tessera_cache_uncached_milliseconds_total "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no uncached time: {metrics}"));
    assert!(uncached > 0.0, "{metrics}");
}
