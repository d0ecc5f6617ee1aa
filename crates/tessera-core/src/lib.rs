//! # tessera-core
//!
//! The pure logic of Tessera: no I/O, no async. Secrets and how they are spelled, digests under a
//! server-side pepper, the lifecycle state machine every kind shares, each kind's records and
//! rules, validation, the clock and audit event types.
//!
//! ```
//! use tessera_core::{digest::{KeyId, Pepper}, format, Kind, Secret};
//!
//! // Issue: generate a secret, keep only its digest and hint.
//! let pepper = Pepper::generate(KeyId(1))?;
//! let secret = Secret::generate(Kind::Onboarding)?;
//! let presented = format::parse(Kind::Onboarding, secret.expose_secret())?;
//! let stored = pepper.digest(&presented);
//!
//! // Validate: a mistyped token is refused before any store is touched...
//! let mut typo = secret.expose_secret().to_owned();
//! typo.replace_range(10..11, if &typo[10..11] == "x" { "y" } else { "x" });
//! assert!(format::parse(Kind::Onboarding, &typo).is_err());
//! // ...and a good one digests to what was stored.
//! let again = format::parse(Kind::Onboarding, secret.expose_secret())?;
//! assert!(pepper.digest(&again).ct_eq(&stored));
//! # Ok::<(), tessera_core::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod clock;
pub mod digest;
mod error;
pub mod format;
pub mod id;
pub mod kind;
pub mod lifecycle;
pub mod net;
pub mod record;
pub mod seal;
mod secret;
pub mod validate;

pub use error::{Error, FormatError, InvalidInput, Result, TransitionError};
pub use format::Kind;
pub use secret::Secret;
