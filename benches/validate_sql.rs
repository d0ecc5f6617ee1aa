//! Validation throughput on the SQL backends: SQLite (a WAL file) and PostgreSQL (localhost),
//! each holding 1,000 filler tokens, every kind with a valid, an unknown and a malformed token.
//!
//! Run with `cargo bench --bench validate_sql`; criterion prints validations per second
//! (`elem/s`). One core: a current-thread runtime drives one validation at a time. Services run
//! with `audit_uses` and `audit_refusals` off. Every case runs twice: straight to the store, and
//! through a validation cache (`cached/`, time to live 1 s). PostgreSQL runs only when
//! `TESSERA_TEST_POSTGRES_URL` is set (`eval "$(.ci/postgres-up)"`).

#![allow(
    clippy::expect_used,
    reason = "a benchmark set-up that fails has nothing to measure"
)]

mod common;

use common::{Backend, Fixture, bench_cases, current_thread, open};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

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

criterion_group! {
    name = benches;
    config = common::sql_criterion();
    targets = validate_sql
}
criterion_main!(benches);
