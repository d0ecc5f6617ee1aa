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
