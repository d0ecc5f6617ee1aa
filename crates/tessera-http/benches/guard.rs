//! What the application guard adds to a request, in process: the same router as
//! `tessera-service` (`/feed` behind [`ApplicationLayer`] with the validation cache on, `/open`
//! unguarded, both answering one formatted line naming the client's address), called through
//! tower without sockets, so that the guard's own work is measured apart from the kernel's.
//!
//! 299 application tokens, one picked at random per request (as `benches/wrk_pick.lua` does);
//! a `tracing` subscriber at INFO and a Prometheus recorder installed, as the service does;
//! blocks of 512 requests on `/feed` and `/open` alternate, in 1 and then 2 tasks on a runtime of
//! as many workers (sharing the service, as the service's two workers do). Printed per thread
//! count: the median CPU ns per request of each route (the thread's own CPU clock) and the median of the blocks' paired
//! difference and ratio.
//!
//! ```sh
//! CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 \
//!   cargo bench -p tessera-http --bench guard
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs,
    reason = "a benchmark binary"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::handler::Handler;
use axum::routing::get;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use tessera::application::ApplicationAccess;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description};
use tessera::core::kind::application::AccessTypes;
use tessera::memory::MemoryStore;
use tessera::{Principal, TokenService, ValidationCache};
use tessera_http::{ApplicationLayer, ClientIp};
use time::Duration;
use tower::{Service, ServiceExt};

const TOKENS: usize = 299;
const BLOCK: usize = 512;
const PAIRS: usize = 200;

/// `tessera-service`'s guarded handler.
async fn feed(request: Request) -> Result<String, StatusCode> {
    let extensions = request.extensions();
    match (
        extensions.get::<ApplicationAccess>(),
        extensions.get::<ClientIp>(),
    ) {
        (Some(access), Some(ClientIp(ip))) => Ok(format!("feed for {} at {ip}\n", access.name())),
        _ => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `tessera-service`'s unguarded handler.
async fn open(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
    format!(
        "open to anyone at {}\n",
        tessera::core::net::canonical(peer.ip())
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % TOKENS as u64).unwrap()
    }
}

/// The CPU time this thread has run, in ns: unlike the wall clock, not inflated when other
/// processes take the core.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec).unwrap() * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap()
}

/// CPU ns per request of one block of `BLOCK` requests on `path` (the block never waits, so it
/// runs on one thread).
async fn block(router: &Router, path: &str, headers: &[HeaderValue], rng: &mut Rng) -> f64 {
    let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000);
    let begun = thread_cpu_ns();
    for _ in 0..BLOCK {
        let mut request = Request::builder()
            .uri(path)
            .header(http::header::AUTHORIZATION, headers[rng.next()].clone())
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut svc = router.clone();
        let response = ServiceExt::<Request>::ready(&mut svc)
            .await
            .unwrap()
            .call(request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(!body.is_empty());
    }
    (thread_cpu_ns() - begun) as f64 / BLOCK as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // What tessera-service installs: a subscriber at INFO (to a sink here) and a Prometheus
    // recorder, before the service takes its metric handles.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .init();
    let _metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let setup = runtime();
    let peppers = Peppers::new(Pepper::generate(KeyId(1)).unwrap());
    let service = TokenService::builder(MemoryStore::new(), peppers)
        .validation_cache(ValidationCache::new(Duration::seconds(2)))
        .build();
    let admin = Principal::admin("bench").unwrap();
    let headers: Arc<Vec<HeaderValue>> = Arc::new(setup.block_on(async {
        let mut headers = Vec::with_capacity(TOKENS);
        for i in 0..TOKENS {
            let issued = service
                .application()
                .create(
                    ApplicationName::parse(format!("app-{i}")).unwrap(),
                    Description::parse("bench").unwrap(),
                    AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                    &admin,
                )
                .await
                .unwrap();
            headers.push(
                HeaderValue::from_str(&format!("Bearer {}", issued.secret.expose_secret()))
                    .unwrap(),
            );
        }
        headers
    }));
    let state = Arc::new(service.clone());
    let router: Router = Router::new()
        .route("/feed", get(feed.layer(ApplicationLayer::new(service))))
        .route("/open", get(open))
        .with_state(state);

    // `GUARD_THREADS=2` runs the 2-thread case alone (for a profile).
    let counts: Vec<usize> = match std::env::var("GUARD_THREADS") {
        Ok(n) => vec![n.parse().expect("GUARD_THREADS: a number of threads")],
        Err(_) => vec![1, 2],
    };
    for threads in counts {
        // A runtime of `threads` workers, as the service's: the usage ledger's writer runs on
        // it (each task yields between blocks so that it can).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let router = router.clone();
                let headers = Arc::clone(&headers);
                rt.spawn(async move {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                    // Warm: every token validated (and cached).
                    block(&router, "/feed", &headers, &mut rng).await;
                    block(&router, "/open", &headers, &mut rng).await;
                    let mut out = Vec::with_capacity(PAIRS);
                    for pair in 0..PAIRS {
                        let (f, o) = if (pair + t) % 2 == 0 {
                            let f = block(&router, "/feed", &headers, &mut rng).await;
                            (f, block(&router, "/open", &headers, &mut rng).await)
                        } else {
                            let o = block(&router, "/open", &headers, &mut rng).await;
                            (block(&router, "/feed", &headers, &mut rng).await, o)
                        };
                        out.push((f, o));
                        tokio::task::yield_now().await;
                    }
                    out
                })
            })
            .collect();
        let handles: Vec<Vec<(f64, f64)>> = rt.block_on(async {
            let mut all = Vec::new();
            for h in handles {
                all.push(h.await.unwrap());
            }
            all
        });
        let pairs: Vec<(f64, f64)> = handles.into_iter().flatten().collect();
        let mut feed: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let mut open: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        let mut diff: Vec<f64> = pairs.iter().map(|p| p.0 - p.1).collect();
        let mut ratio: Vec<f64> = pairs.iter().map(|p| p.1 / p.0).collect();
        println!(
            "guard/{threads} thread(s): /feed {:.0} ns, /open {:.0} ns per request (medians); \
             paired: /feed - /open {:.0} ns, /open / /feed {:.3}",
            median(&mut feed),
            median(&mut open),
            median(&mut diff),
            median(&mut ratio),
        );
    }
}
