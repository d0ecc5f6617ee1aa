//! How validation grows with the number of stored tokens: the same validations with 10^3, 10^5
//! and 10^6 tokens on each backend (SQLite and PostgreSQL filled by the bulk loader, 10,000
//! records per `insert_many`; the SQLite files are cached in `target/bench-data/`).
//!
//! Run with `cargo bench --bench scale`; BENCHMARKS.md reports the 10^6 / 10^3 ratios. Set
//! `TESSERA_BENCH_SCALE_MAX` (e.g. `100000`) to stop at a smaller size. One core; audit of uses
//! and refusals off; PostgreSQL only when `TESSERA_TEST_POSTGRES_URL` is set.

#![allow(
    clippy::expect_used,
    reason = "a benchmark set-up that fails has nothing to measure"
)]

mod common;

use std::collections::HashMap;
use std::hint::black_box;

use common::{Backend, Case, Fixture, KEY, Which, bench_case, current_thread, open, pepper};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera::core::digest::Digest;
use tessera::core::id::TokenId;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// What is timed at every size.
const CASES: [(Case, Which); 4] = [
    (Case::Deployment, Which::Valid),
    (Case::Deployment, Which::Unknown),
    (Case::Auth, Which::Valid),
    (Case::Application, Which::Valid),
];

/// What is timed through a validation cache at every size.
const CACHED_CASES: [(Case, Which); 2] =
    [(Case::Deployment, Which::Valid), (Case::Auth, Which::Valid)];

fn max_size() -> usize {
    std::env::var("TESSERA_BENCH_SCALE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

fn scale(c: &mut Criterion) {
    let rt = current_thread();
    for backend in [Backend::Memory, Backend::Sqlite, Backend::Postgres] {
        for n in SIZES.into_iter().filter(|n| *n <= max_size()) {
            let Some(store) = rt.block_on(open(backend, n, 4)) else {
                break;
            };
            let fx = rt.block_on(Fixture::new(store.clone()));
            let mut g = c.benchmark_group(format!("scale_{}", backend.name()));
            g.throughput(Throughput::Elements(1));
            if backend == Backend::Memory {
                // The floor at this size: keyed BLAKE3 and one probe of an n-entry map.
                let token = fx.token(Case::Deployment, Which::Valid).to_owned();
                let p = pepper();
                let mut map: HashMap<Digest, TokenId> = (0..n)
                    .map(|i| {
                        (
                            p.digest_bytes(&i.to_le_bytes()),
                            TokenId::from_u128(i as u128),
                        )
                    })
                    .collect();
                map.insert(p.digest_bytes(token.as_bytes()), TokenId::from_u128(0));
                g.bench_function(format!("floor/{n}"), |b| {
                    b.iter(|| {
                        let h = *blake3::keyed_hash(&KEY, black_box(token.as_bytes())).as_bytes();
                        map.get(&Digest::from_parts(p.id(), h)).copied()
                    });
                });
            }
            for (case, which) in CASES {
                let name = format!("{}_{}/{n}", case.name(), which.name());
                bench_case(&mut g, &rt, &fx, case, which, &name);
            }
            // Through a validation cache (time to live 1 s).
            let cached = rt.block_on(Fixture::new(store)).with_cache();
            for (case, which) in CACHED_CASES {
                let name = format!("cached_{}_{}/{n}", case.name(), which.name());
                bench_case(&mut g, &rt, &cached, case, which, &name);
            }
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = common::sql_criterion();
    targets = scale
}
criterion_main!(benches);
