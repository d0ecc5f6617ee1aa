//! The core hot path: parsing a presented token and digesting it under the pepper, against the
//! bare keyed BLAKE3 it is built on, and the cost of refusing malformed input before any store
//! is touched.
//!
//! Run with `cargo bench --bench core`. Each figure is per token; criterion also prints tokens
//! per second.
#![allow(
    clippy::expect_used,
    reason = "a benchmark set-up that fails has nothing to measure"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera::core::digest::{KeyId, Pepper};
use tessera::core::{Kind, Secret, format};

const KEY: [u8; 32] = [7; 32];

/// `text` with the character at `at` replaced by another base62 character.
fn substituted(text: &str, at: usize) -> String {
    let mut b = text.as_bytes().to_vec();
    b[at] = if b[at] == b'x' { b'y' } else { b'x' };
    String::from_utf8(b).expect("ascii")
}

fn core(c: &mut Criterion) {
    let pepper = Pepper::new(KeyId(1), KEY);
    let secret = Secret::generate(Kind::Auth).expect("the OS generator works");
    let token = secret.expose_secret();
    // A realistic typo: one character in the middle of the body, caught by the checksum.
    let malformed = substituted(token, token.len() / 2);
    // Garbage: a foreign prefix, or a quoted copy.
    let wrong_prefix = format!("ghp_{}", &token[8..]);
    let bad_charset = format!("\"{token}\"");
    assert!(format::parse(Kind::Auth, token).is_ok());
    assert!(format::parse(Kind::Auth, &malformed).is_err());
    assert!(format::parse(Kind::Auth, &wrong_prefix).is_err());
    assert!(format::parse(Kind::Auth, &bad_charset).is_err());

    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));
    g.bench_function("blake3_keyed_baseline", |b| {
        b.iter(|| blake3::keyed_hash(&KEY, black_box(token).as_bytes()));
    });
    g.bench_function("parse_digest_valid", |b| {
        b.iter(|| {
            let p = format::parse(Kind::Auth, black_box(token)).expect("valid");
            pepper.digest(&p)
        });
    });
    g.bench_function("reject_malformed", |b| {
        b.iter(|| format::parse(Kind::Auth, black_box(&malformed)).is_err());
    });
    g.bench_function("reject_garbage", |b| {
        b.iter(|| format::parse(Kind::Auth, black_box(&wrong_prefix)).is_err());
    });
    g.bench_function("reject_garbage_charset", |b| {
        b.iter(|| format::parse(Kind::Auth, black_box(&bad_charset)).is_err());
    });
    g.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
