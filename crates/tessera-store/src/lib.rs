//! # tessera-store
//!
//! The async storage trait of Tessera ([`Store`]) and, behind the `conformance` feature, the
//! suite every backend runs unchanged ([`conformance::run`]).
//!
//! A backend stores [`TokenRecord`](tessera_core::record::TokenRecord)s (digests, never
//! secrets), usage counters, onboarding enrollments, endpoint mappings and audit events. Every
//! operation that decides something under concurrency (redeem, compare-and-set state changes,
//! usage upserts, coalesced last-use) is one atomic operation in the backend.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod model;
pub mod names;
mod slot;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::{Result, StoreError};
pub use model::{
    AuditFilter, BatchId, Capabilities, Change, ChangeSink, Enrollment, RedeemEvents, Redemption,
    SharedRecord, StateChange, TokenFilter, UsageBatch, UsageDelta, UsageEntry, UsageOutcome,
    UsageSubject, Watcher,
};
pub use slot::{SlotCount, SlotKey, UseSlot};
pub use store::Store;
