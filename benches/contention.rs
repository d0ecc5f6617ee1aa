//! Contention: exact N-use onboarding redemption and application validation with 1, 8 and 64
//! concurrent tasks on each backend, on a runtime with one worker per core (2 on the reference
//! machine).
//!
//! Run with `cargo bench --bench contention`; criterion prints operations per second. Each
//! redemption sample issues a token with exactly as many uses as the sample has iterations, and
//! the tasks redeem until it is exhausted: the bench asserts that exactly that many succeeded
//! (never one more). Application validation: every task presents the same token from the same
//! address (one hot usage row, the worst case). Deployment validation (a read, and a coalesced
//! last-use write) straight to the store and through a validation cache (`cached_`, time to
//! live 1 s). Audit of uses and refusals is off. PostgreSQL
//! only when `TESSERA_TEST_POSTGRES_URL` is set (pool of 16 connections).

#![allow(
    clippy::expect_used,
    reason = "a benchmark set-up that fails has nothing to measure"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Case, Fixture, Which, multi_thread, open};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera::Rejection;
use tessera::core::id::DeviceId;

const TASKS: [u64; 3] = [1, 8, 64];

/// Redeem a token good for exactly `iters` uses with `tasks` concurrent tasks; the elapsed time.
async fn redeem_exactly(fx: &Arc<Fixture>, tasks: u64, iters: u64) -> Duration {
    let secret = fx.onboarding_with_uses(iters).await;
    let token: Arc<str> = secret.expose_secret().into();
    let redeemed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (fx, token, redeemed) = (fx.clone(), token.clone(), redeemed.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let device = DeviceId::parse(format!("dev-{t}-{n}")).expect("device");
                    n += 1;
                    match fx.svc.onboarding().redeem(&token, &device).await {
                        Ok(Ok(_)) => {
                            redeemed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(Rejection::Exhausted)) => return,
                        other => panic!("unexpected answer {other:?}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
    let elapsed = start.elapsed();
    assert_eq!(
        redeemed.load(Ordering::Relaxed),
        iters,
        "exactly N redemptions"
    );
    elapsed
}

/// `iters` validations of the valid token of `case` split over `tasks` tasks; the elapsed time.
async fn validate_split(fx: &Arc<Fixture>, case: Case, tasks: u64, iters: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let fx = fx.clone();
            let share = iters / tasks + u64::from(t < iters % tasks);
            tokio::spawn(async move {
                for _ in 0..share {
                    assert_eq!(fx.outcome(case, Which::Valid).await, Ok(()));
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
    start.elapsed()
}

fn contention(c: &mut Criterion) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = multi_thread(workers);
    for backend in [Backend::Memory, Backend::Sqlite, Backend::Postgres] {
        let Some(store) = rt.block_on(open(backend, 1_000, 16)) else {
            continue;
        };
        let fx = Arc::new(rt.block_on(Fixture::new(store.clone())));
        let cached = Arc::new(rt.block_on(Fixture::new(store)).with_cache());
        let mut g = c.benchmark_group(format!("contention_{}", backend.name()));
        g.throughput(Throughput::Elements(1));
        for tasks in TASKS {
            g.bench_function(format!("redeem_n_uses/{tasks}"), |b| {
                b.iter_custom(|iters| rt.block_on(redeem_exactly(&fx, tasks, iters)));
            });
            g.bench_function(format!("application/{tasks}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(validate_split(&fx, Case::Application, tasks, iters))
                });
            });
            g.bench_function(format!("deployment/{tasks}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(validate_split(&fx, Case::Deployment, tasks, iters))
                });
            });
            g.bench_function(format!("cached_deployment/{tasks}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(validate_split(&cached, Case::Deployment, tasks, iters))
                });
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::sql_criterion();
    targets = contention
}
criterion_main!(benches);
