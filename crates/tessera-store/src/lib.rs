//! Tessera store.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
