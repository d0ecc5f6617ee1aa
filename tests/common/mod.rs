//! Shared set-up for the integration tests: a service over the memory store on a manual clock.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;

use tessera::core::clock::ManualClock;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::memory::MemoryStore;
use tessera::{LedgerSettings, Principal, TokenService};
use time::OffsetDateTime;
use time::macros::datetime;

pub const T0: OffsetDateTime = datetime!(2026-11-23 09:00 UTC);

pub fn peppers() -> Peppers {
    Peppers::new(Pepper::new(KeyId(1), [7; 32]))
}

pub fn service() -> (TokenService, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let svc = TokenService::builder(MemoryStore::new(), peppers())
        .clock(clock.clone())
        .build();
    (svc, clock)
}

/// As [`service`], auditing every use as a row of its own (with its address, device or
/// permission) instead of the usage ledger's aggregated rows.
pub fn service_each_use() -> (TokenService, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let svc = TokenService::builder(MemoryStore::new(), peppers())
        .clock(clock.clone())
        .ledger(LedgerSettings::new().audit_each_use(true))
        .build();
    (svc, clock)
}

pub fn admin() -> Principal {
    Principal::admin("root").unwrap()
}

pub fn user(name: &str) -> Principal {
    Principal::user(name).unwrap()
}

/// The PostgreSQL server the tests use (`TESSERA_TEST_POSTGRES_URL`, as `.ci/postgres-up`
/// prints it): `None` (the caller skips, saying so) when unset, a panic under `CI=true`, where
/// PostgreSQL tests must never skip.
pub fn postgres_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!(
            "CI=true but TESSERA_TEST_POSTGRES_URL is unset: start a server with \
             `eval \"$(.ci/postgres-up)\"`"
        ),
        _ => {
            println!("SKIPPED PostgreSQL: set TESSERA_TEST_POSTGRES_URL (see .ci/postgres-up)");
            None
        }
    }
}
