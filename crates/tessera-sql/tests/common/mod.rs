//! Helpers the SQL backend tests share.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable naming the PostgreSQL server the tests use.
pub const POSTGRES_URL_VAR: &str = "TESSERA_TEST_POSTGRES_URL";

/// Whether this is a CI run (`CI=true`), where PostgreSQL tests must never be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// What the PostgreSQL tests should do in this environment.
pub enum Postgres {
    /// Run against this server.
    Run(String),
    /// Skip, having printed why.
    Skip,
    /// Fail: CI without a server.
    Fail(String),
}

/// The server to test against: `TESSERA_TEST_POSTGRES_URL`; when it is unset, a printed skip
/// for a developer and a failure under `CI=true`.
pub fn postgres() -> Postgres {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Postgres::Run(url),
        _ if in_ci() => Postgres::Fail(format!(
            "CI=true but {POSTGRES_URL_VAR} is unset: PostgreSQL tests never skip in CI; \
             start a server with `eval \"$(.ci/postgres-up)\"`"
        )),
        _ => {
            println!(
                "SKIPPED: PostgreSQL tests, because {POSTGRES_URL_VAR} is unset. To run them: \
                 eval \"$(.ci/postgres-up)\"; cargo test -p tessera-sql --all-features; \
                 .ci/postgres-down"
            );
            Postgres::Skip
        }
    }
}

/// The PostgreSQL URL for a `#[test]`: `None` (skip, printed) for a developer without one;
/// a panic under `CI=true`.
pub fn postgres_url_or_skip() -> Option<String> {
    match postgres() {
        Postgres::Run(url) => Some(url),
        Postgres::Skip => None,
        Postgres::Fail(why) => panic!("{why}"),
    }
}

/// A schema name no other test run uses: `tessera_t_<pid>_<nanos>_<n>`.
pub fn fresh_schema() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "tessera_t_{}_{}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
