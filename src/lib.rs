//! # Tessera
//!
//! Issue, store, validate, rotate and revoke the tokens admin consoles hand out, over one
//! [`TokenService`] and any [`Store`]:
//!
//! | kind | handle | what it is for |
//! |---|---|---|
//! | deployment | [`TokenService::deployment`] | installer commands carry it; auto-renewal |
//! | onboarding | [`TokenService::onboarding`] | device enrollment, usage-limited, QR codes |
//! | endpoint | [`TokenService::endpoint`] | primary per endpoint and method, mapped secondaries |
//! | auth | [`TokenService::auth`] | a user's scoped REST token |
//! | application | [`TokenService::application`] | bearer token with per-IP log and blocking |
//!
//! Secrets are shown once ([`Issued::secret`]) and stored only as keyed digests under a
//! server-side pepper. A refused token is not an error but a value: validation methods return
//! `Result<Result<Accepted, Rejection>, Error>`, where the outer error is a failing store and
//! [`Rejection::oauth`] gives the one RFC 6750 answer to send outside.
//!
//! ```
//! # #[cfg(feature = "memory")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use tessera::{memory::MemoryStore, onboarding::NewOnboarding, Principal, TokenService};
//! use tessera::core::{digest::{KeyId, Pepper, Peppers}, id::DeviceId, kind::onboarding::UsageLimit};
//!
//! let service = TokenService::new(MemoryStore::new(), Peppers::new(Pepper::generate(KeyId(1))?));
//! let admin = Principal::admin("alice")?;
//!
//! // Two devices may enroll with this token.
//! let spec = NewOnboarding::new("kiosk-policy", "lobby")?.limit(UsageLimit::uses(2)?);
//! let issued = service.onboarding().create(spec, &admin).await?;
//! let token = issued.secret.expose_secret();
//!
//! for device in ["dev-1", "dev-2"] {
//!     let enrolled = service.onboarding().redeem(token, &DeviceId::parse(device)?).await?;
//!     assert_eq!(enrolled.unwrap().group.as_str(), "lobby");
//! }
//! let third = service.onboarding().redeem(token, &DeviceId::parse("dev-3")?).await?;
//! assert_eq!(third.unwrap_err(), tessera::Rejection::Exhausted);
//! # Ok::<(), tessera::Error>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod application;
pub mod auth;
mod cache;
pub mod deployment;
pub mod endpoint;
mod error;
mod ledger;
mod observe;
pub mod onboarding;
mod principal;
mod ready;
mod request;
mod service;
mod tokens;

pub use tessera_core as core;
pub use tessera_core::digest::{KeyId, Pepper, Peppers};
pub use tessera_core::validate::{Accepted, OAuthError, Rejection};
pub use tessera_core::{Kind, Secret};
pub use tessera_store as store;
pub use tessera_store::Store;
/// The `time` crate, whose [`Duration`] and [`OffsetDateTime`] the whole API takes.
pub use time;
pub use time::{Duration, OffsetDateTime};

pub use cache::ValidationCache;
pub use error::{Error, Result};
pub use ledger::{Flushed, LedgerSettings};
pub use principal::Principal;
pub use ready::{Readiness, WatchState};
pub use request::{Access, Outcome, RequestContext};
pub use service::{Builder, Issued, Settings, TokenService};
pub use tokens::{Renewal, ResealReport, SweepReport};

/// The in-memory store: the embedded default for tests and examples.
#[cfg(feature = "memory")]
pub mod memory {
    pub use tessera_memory::*;
}

/// The SQL backends: SQLite (embedded, file or in-memory) and PostgreSQL (several instances on
/// one shared database), each behind its cargo feature.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod sql {
    pub use tessera_sql::*;
}

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "memory"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
