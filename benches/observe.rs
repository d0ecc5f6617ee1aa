//! The cost of observing (issue 17): validation through the memory store with the service
//! defaults, **without** any `tracing` subscriber or `metrics` recorder (`plain`) and **with**
//! them set up as `tessera-service` sets them up (`observed`: a `tracing` subscriber at INFO,
//! writing to a sink, and the Prometheus recorder installed), 10^4 tokens of each kind picked
//! at random, one core.
//!
//! Fair by construction: both services read the same store, are warmed the same way (every
//! token of every kind validated by each before anything is measured), and are measured in
//! alternation, case by case, in several rounds whose order is swapped (plain first in even
//! rounds, observed first in odd ones). The recorder is process-wide and can be installed once:
//! `plain` is built and takes its metric handles (at their first use) before it is installed,
//! so they stay no-ops; `observed` takes them after. The subscriber is set as the thread's
//! default while `observed` is measured only (a scoped default costs a thread-local lookup more
//! than the global default a service installs: if anything, this overstates the cost).
//!
//! ```sh
//! cargo bench --bench observe -- observe_memory --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Before the criterion benchmarks, a **paired** measurement: per case, 400 pairs of blocks of
//! 256 validations, one block on each service (the same tokens, the order swapped every pair),
//! each block timed alone; it prints the median of the pairs' observed ÷ plain and its
//! quartiles. This is the figure to read on a shared machine: load that comes and goes hits
//! both halves of a pair alike. At the end the bench prints, per case, the median time per
//! validation of each service in each criterion round and observed ÷ plain (per round, and the
//! median of the rounds).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark set-up that fails has nothing to measure"
)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera::auth::NewAuth;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{
    AccessType, ApplicationName, Description, EndpointId, Permission, TokenName, UserId,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::auth::{Expiry, Scope};
use tessera::core::kind::endpoint::Method;
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::{Principal, RequestContext, Store, TokenService};

const N: usize = 10_000;
/// Rounds of (plain, observed) pairs per case, the order swapped every round.
const ROUNDS: usize = 4;

/// The kinds validated (as in `benches/random.rs`, `random_memory`).
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
enum Case {
    Deployment,
    Auth,
    Application,
    Endpoint,
}

impl Case {
    const ALL: [Self; 4] = [
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
        }
    }
}

/// 10^4 tokens of each kind.
struct Tokens {
    deployment: Vec<String>,
    auth: Vec<String>,
    application: Vec<String>,
    endpoint: Vec<(String, EndpointId, Method)>,
    action: Permission,
    held: BTreeSet<Permission>,
    ips: [IpAddr; 4],
}

/// A cheap random index (xorshift).
struct Pick(u64);

impl Pick {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

fn service(store: Arc<dyn Store>) -> TokenService {
    TokenService::builder_shared(store, Peppers::new(Pepper::new(KeyId(1), [9; 32]))).build()
}

async fn issue(svc: &TokenService) -> Tokens {
    let by = Principal::admin("bench").unwrap();
    let action = Permission::parse("reset_password").unwrap();
    let held: BTreeSet<Permission> = [action.clone()].into_iter().collect();
    let mut t = Tokens {
        deployment: Vec::new(),
        auth: Vec::new(),
        application: Vec::new(),
        endpoint: Vec::new(),
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
        let d = svc
            .deployment()
            .generate(NewDeployment::named(format!("d{i}")).unwrap(), &by)
            .await
            .unwrap();
        t.deployment.push(d.secret.expose_secret().to_owned());
        let spec = NewAuth {
            owner: UserId::parse(format!("u{i}")).unwrap(),
            name: TokenName::parse(format!("a{i}")).unwrap(),
            scope: Scope::new([action.clone()]).unwrap(),
            expiry: Expiry::Days(30),
        };
        let a = svc.auth().generate(spec, &held, &by).await.unwrap();
        t.auth.push(a.secret.expose_secret().to_owned());
        let a = svc
            .application()
            .create(
                ApplicationName::parse(format!("app-{i}")).unwrap(),
                Description::default(),
                AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                &by,
            )
            .await
            .unwrap();
        t.application.push(a.secret.expose_secret().to_owned());
        if i % 2 == 0 {
            let ep = EndpointId::parse(format!("/e{i}")).unwrap();
            for (method, issued) in svc.endpoint().enable(&ep, false, &by).await.unwrap() {
                t.endpoint
                    .push((issued.secret.expose_secret().to_owned(), ep.clone(), method));
            }
        }
    }
    t
}

/// Validate token `i` of `case` through the one entry point; panics unless it is accepted.
async fn validate(svc: &TokenService, t: &Tokens, case: Case, i: usize) {
    let outcome = match case {
        Case::Deployment => {
            svc.validate(&t.deployment[i], &RequestContext::new().installer())
                .await
        }
        Case::Auth => {
            let request = RequestContext::new().action(&t.action, &t.held);
            svc.validate(&t.auth[i], &request).await
        }
        Case::Application => {
            let request = RequestContext::new().application(t.ips[i % 4]);
            svc.validate(&t.application[i], &request).await
        }
        Case::Endpoint => {
            let (tok, ep, method) = &t.endpoint[i];
            svc.validate(tok, &RequestContext::new().endpoint(ep, *method))
                .await
        }
    };
    assert!(outcome.is_accepted(), "{case:?}: {outcome:?}");
}

fn len(t: &Tokens, case: Case) -> usize {
    match case {
        Case::Deployment => t.deployment.len(),
        Case::Auth => t.auth.len(),
        Case::Application => t.application.len(),
        Case::Endpoint => t.endpoint.len(),
    }
}

/// Every token of every kind validated once by `svc`.
async fn warm(svc: &TokenService, t: &Tokens) {
    for case in Case::ALL {
        for i in 0..len(t, case) {
            validate(svc, t, case, i).await;
        }
    }
}

/// Pairs of blocks in the paired measurement, and validations per block.
const PAIRS: usize = 400;
const BLOCK: usize = 256;

/// Whether to run the paired measurement: not when criterion only lists or tests.
fn paired_wanted() -> bool {
    !std::env::args().any(|a| a == "--list" || a == "--test")
}

/// The `q`/4 quartile of `v`.
fn quartile(mut v: Vec<f64>, q: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) * q / 4]
}

/// The median of the per-sample times (ns per validation) recorded for one benchmark.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn observe_memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // Plain: built, warmed, and so holding every metric handle it uses, before any recorder.
    let plain = service(store.clone());
    let t = rt.block_on(issue(&plain));
    rt.block_on(warm(&plain, &t));

    // Observed: the recorder installed as tessera-service installs it; the subscriber as it
    // sets it (INFO), writing to a sink, made the thread's default while observed runs.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no recorder yet");
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    );
    let observed = service(store);
    {
        let _default = tracing::dispatcher::set_default(&dispatch);
        rt.block_on(warm(&observed, &t));
    }
    // Only observed's validations reach the recorder.
    let counted = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("tessera_validations_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let warmed = Case::ALL.iter().map(|&c| len(&t, c)).sum::<usize>() as f64;
    assert!(
        (counted(&scrape.render()) - warmed).abs() < 0.5,
        "the recorder counts the observed service's validations alone"
    );

    // Paired: blocks of validations alternating between the two services (the order swapped
    // every pair), each block timed on its own; observed ÷ plain per pair, the median of the
    // pairs per case. Load that comes and goes on a shared machine hits both halves of a pair
    // alike, which separate criterion runs of seconds each cannot promise.
    if paired_wanted() {
        eprintln!(
            "\nobserve_memory paired: {PAIRS} pairs of {BLOCK} validations per case; median ns \
             per validation (plain, observed) and the median of the pairs' observed ÷ plain"
        );
        for case in Case::ALL {
            let mut pick = Pick(0x2545_f491_4f6c_dd1d);
            let block = |svc: &TokenService, observe: bool, pick: &mut Pick| {
                let _default = observe.then(|| tracing::dispatcher::set_default(&dispatch));
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..BLOCK {
                        validate(svc, &t, case, pick.next(len(&t, case))).await;
                    }
                    tokio::task::yield_now().await;
                    start.elapsed().as_nanos() as f64 / BLOCK as f64
                })
            };
            let (mut plains, mut observeds, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for pair in 0..PAIRS {
                // Both halves validate the same tokens: the pick is replayed.
                let mut again = Pick(pick.0);
                let (p, o) = if pair % 2 == 0 {
                    let p = block(&plain, false, &mut pick);
                    (p, block(&observed, true, &mut again))
                } else {
                    let o = block(&observed, true, &mut pick);
                    (block(&plain, false, &mut again), o)
                };
                plains.push(p);
                observeds.push(o);
                ratios.push(o / p);
            }
            eprintln!(
                "{:<18} plain {:.0} ns, observed {:.0} ns, observed ÷ plain {:.3} (quartiles {:.3}-{:.3})",
                case.name(),
                median(plains),
                median(observeds),
                median(ratios.clone()),
                quartile(ratios.clone(), 1),
                quartile(ratios, 3),
            );
        }
    }

    let mut g = c.benchmark_group("observe_memory");
    g.throughput(Throughput::Elements(1));
    let samples: RefCell<BTreeMap<(Case, usize, bool), Vec<f64>>> = RefCell::default();
    for case in Case::ALL {
        for round in 0..ROUNDS {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for observe in order {
                let svc = if observe { &observed } else { &plain };
                let which = if observe { "observed" } else { "plain" };
                let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
                g.bench_function(format!("{}/r{round}/{which}", case.name()), |b| {
                    b.iter_custom(|iters| {
                        let _default = observe.then(|| tracing::dispatcher::set_default(&dispatch));
                        let spent = rt.block_on(async {
                            let start = Instant::now();
                            for i in 0..iters {
                                validate(svc, &t, case, pick.next(len(&t, case))).await;
                                // Let the ledger's writer run now and then, as between a
                                // server's requests.
                                if i % 1024 == 1023 {
                                    tokio::task::yield_now().await;
                                }
                            }
                            start.elapsed()
                        });
                        if iters > 0 {
                            samples
                                .borrow_mut()
                                .entry((case, round, observe))
                                .or_default()
                                .push(spent.as_nanos() as f64 / iters as f64);
                        }
                        spent.max(Duration::from_nanos(1))
                    });
                });
            }
        }
    }
    g.finish();

    let samples = samples.into_inner();
    if samples.is_empty() {
        return;
    }
    eprintln!(
        "\nobserve_memory: median ns per validation (all samples of a benchmark), observed ÷ plain"
    );
    for case in Case::ALL {
        let mut ratios = Vec::new();
        let mut line = format!("{:<18}", case.name());
        for round in 0..ROUNDS {
            let (Some(p), Some(o)) = (
                samples.get(&(case, round, false)),
                samples.get(&(case, round, true)),
            ) else {
                continue;
            };
            let (p, o) = (median(p.clone()), median(o.clone()));
            ratios.push(o / p);
            line.push_str(&format!(" r{round}: {p:.0}/{o:.0} = {:.3}", o / p));
        }
        if !ratios.is_empty() {
            line.push_str(&format!("  median ratio {:.3}", median(ratios)));
            eprintln!("{line}");
        }
    }
    assert!(
        counted(&scrape.render()) > warmed,
        "observed was measured with the recorder"
    );
}

criterion_group!(benches, observe_memory);
criterion_main!(benches);
