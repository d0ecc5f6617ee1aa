//! Tessera: issue, store, validate, rotate and revoke admin-console tokens.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use tessera_core as core;
pub use tessera_core::{Error, Kind, Secret};
