//! End-to-end tests: the real `tessera` binary against a temporary SQLite file, one module per
//! command group, failures and `--json` output included.

// Helpers outside `#[test]` functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod addresses;
mod app;
mod audit_access;
mod auth;
mod console;
mod deployment;
mod edges;
mod endpoint;
mod general;
mod help;
mod init;
mod onboarding;
mod postgres;
mod scan;
