//! Validation throughput on the memory backend, against a floor measured in the same run: the
//! keyed BLAKE3 of the token bytes plus one `HashMap` probe, the least any digest-keyed store
//! can do per validation.
//!
//! Run with `cargo bench --bench validate_memory`; criterion prints validations per second
//! (`elem/s`). Services run with `audit_uses` and `audit_refusals` off. One core
//! (current-thread runtime). Every case runs twice: straight to the store, and through a
//! validation cache (`cached/`, time to live 1 s). BENCHMARKS.md turns the figures into ratios
//! to the floor.
#![allow(
    clippy::expect_used,
    reason = "a benchmark set-up that fails has nothing to measure"
)]

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use common::{Case, Fixture, KEY, Which, bench_async, bench_cases, current_thread, pepper};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera::core::digest::Digest;
use tessera::core::id::TokenId;
use tessera::memory::MemoryStore;

/// A map of `n` digests (the token's among them) to ids, as the memory store indexes them.
pub fn floor_map(token: &str, n: usize) -> HashMap<Digest, TokenId> {
    let p = pepper();
    let mut map: HashMap<Digest, TokenId> = (0..n)
        .map(|i| {
            let d = p.digest_bytes(format!("floor {i}").as_bytes());
            (d, TokenId::from_u128(i as u128))
        })
        .collect();
    map.insert(
        p.digest_bytes(token.as_bytes()),
        TokenId::from_u128(u128::MAX),
    );
    map
}

fn validate_memory(c: &mut Criterion) {
    let rt = current_thread();
    let fx = rt.block_on(Fixture::new(Arc::new(MemoryStore::new())));

    let mut g = c.benchmark_group("memory");
    g.throughput(Throughput::Elements(1));

    // The floor: keyed BLAKE3 of the token bytes, then one probe of a 1,000-entry map.
    let token = fx.token(Case::Deployment, Which::Valid).to_owned();
    let map = floor_map(&token, 1_000);
    let key = KEY;
    let id = pepper().id();
    g.bench_function("floor/blake3_keyed+hashmap_probe", |b| {
        b.iter(|| {
            let bytes = *blake3::keyed_hash(&key, black_box(token.as_bytes())).as_bytes();
            map.get(&Digest::from_parts(id, bytes)).copied()
        });
    });
    // The same floor driven through the async loop the service benches use.
    bench_async(&mut g, &rt, "floor/async_loop", || async {
        let bytes = *blake3::keyed_hash(&key, black_box(token.as_bytes())).as_bytes();
        map.get(&Digest::from_parts(id, bytes)).copied()
    });

    bench_cases(&mut g, &rt, &fx, "");
    // The same, through a validation cache (a second store, so the first keeps no cache).
    let cached = rt
        .block_on(Fixture::new(Arc::new(MemoryStore::new())))
        .with_cache();
    bench_cases(&mut g, &rt, &cached, "cached/");
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::memory_criterion();
    targets = validate_memory
}
criterion_main!(benches);
