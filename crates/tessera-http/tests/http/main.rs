//! `tessera-http` driven with real HTTP requests: every outcome of every guard, exact statuses
//! and challenges, and no token in any answer or log line.
#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod application;
mod auth;
mod common;
mod endpoint;
mod loopback;
