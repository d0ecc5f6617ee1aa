//! [`PostgresConfig`]: which server, which schema, how many connections.

use core::fmt;
use core::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::error::Error;

/// How to connect a PostgreSQL store.
///
/// `Debug` never prints the URL, which may hold a password.
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    url: String,
    schema: Option<String>,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long an operation waits for a free connection before failing with `Unavailable`.
    pub acquire_timeout: Duration,
    /// How long the change watch's connection may stay silent before a heartbeat query is
    /// sent on it, and how long that query may take to answer: a connection that silently
    /// died (a half-open TCP connection) is noticed within twice this.
    pub watch_heartbeat: Duration,
}

impl PostgresConfig {
    /// The default pool size.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

    /// The default wait for a connection: 10 seconds.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

    /// The default change watch heartbeat: 1 second (a silent connection is noticed within
    /// 2 seconds).
    pub const DEFAULT_WATCH_HEARTBEAT: Duration = Duration::from_secs(1);

    /// Connect to `url` (`postgres://user:password@host:port/database?sslmode=...`), using the
    /// server's default `search_path`.
    ///
    /// # Security
    ///
    /// The URL may hold a password: it is kept private and never printed.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            watch_heartbeat: Self::DEFAULT_WATCH_HEARTBEAT,
        }
    }

    /// Keep Tessera's tables in their own schema (created by `migrate`), so they can share a
    /// database with an application's tables, or so each test can have a fresh one.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] unless `name` is 1 to 63 lowercase ASCII letters, digits and
    /// underscores, starting with a letter or underscore, and not starting with `pg_`.
    pub fn schema(mut self, name: &str) -> Result<Self, Error> {
        check_schema(name)?;
        self.schema = Some(name.to_owned());
        Ok(self)
    }

    /// The schema Tessera's tables live in, if one was set.
    pub fn schema_name(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Open at most this many connections (at least one).
    #[must_use]
    pub const fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Wait this long for a free connection.
    #[must_use]
    pub const fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Check the change watch's connection after this long without a message (at least
    /// 10 ms): a silently dead connection is noticed within twice this.
    #[must_use]
    pub const fn watch_heartbeat(mut self, every: Duration) -> Self {
        self.watch_heartbeat = every;
        self
    }

    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions, Error> {
        // The parser's error may quote the URL: say what is wrong without it.
        let bad = || Error::Config {
            what: "postgres url",
            why: "it is not a postgres:// URL; write postgres://user:password@host:port/database",
        };
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(bad());
        }
        let options = PgConnectOptions::from_str(&self.url).map_err(|_| bad())?;
        Ok(match &self.schema {
            // Checked to be a plain identifier: no quoting or escaping needed.
            Some(schema) => options.options([("search_path", schema.as_str())]),
            None => options,
        })
    }

    pub(crate) fn pool_options(&self) -> PgPoolOptions {
        crate::pool::never_in_transaction(
            PgPoolOptions::new()
                .max_connections(self.max_connections.max(1))
                .acquire_timeout(self.acquire_timeout),
        )
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("watch_heartbeat", &self.watch_heartbeat)
            .finish_non_exhaustive()
    }
}

/// Check a schema name is a plain, lowercase identifier that needs no quoting.
pub(crate) fn check_schema(name: &str) -> Result<(), Error> {
    let bad = |why| {
        Err(Error::Config {
            what: "schema name",
            why,
        })
    };
    let Some(first) = name.bytes().next() else {
        return bad("it is empty; give 1 to 63 lowercase letters, digits and underscores");
    };
    if name.len() > 63 {
        return bad("it is longer than 63 characters; shorten it");
    }
    if !(first.is_ascii_lowercase() || first == b'_') {
        return bad("it must start with a lowercase letter or an underscore");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return bad("only lowercase letters, digits and underscores are allowed");
    }
    if name.starts_with("pg_") {
        return bad("names starting with pg_ are reserved by PostgreSQL; pick another");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_url() {
        let c = PostgresConfig::new("postgres://tessera:hunter2@db.internal:5432/tessera");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("db.internal"));
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["tessera", "_t", "tessera_test_0123", &"a".repeat(63)] {
            assert!(check_schema(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Tessera",
            "1abc",
            "a-b",
            "a\"b",
            "a;drop",
            "pg_temp",
            "ü",
            &"a".repeat(64),
        ] {
            assert!(check_schema(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "mysql://root:s3cret@x",
            "postgres://root:s3cret@[x/db",
            "s3cret",
        ] {
            let e = PostgresConfig::new(url).connect_options().unwrap_err();
            assert!(!e.to_string().contains("s3cret"), "{e}");
            assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
        }
        assert!(
            PostgresConfig::new("postgres://u:p@127.0.0.1:5432/db")
                .connect_options()
                .is_ok()
        );
    }
}
