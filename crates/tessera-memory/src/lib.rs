#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod store;

pub use config::MemoryLimits;
pub use store::MemoryStore;
