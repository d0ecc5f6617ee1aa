//! [`PostgresConfig`]: which server, which schema, how many connections, and TLS.

use core::fmt;
use core::str::FromStr;
use std::path::PathBuf;

use time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use crate::error::Error;

/// Whether and how a connection uses TLS, with libpq's `sslmode` semantics.
///
/// Without a mode set anywhere (here, `sslmode` in the URL or the `PGSSLMODE` variable) the
/// mode is [`VerifyFull`](Self::VerifyFull) when a root certificate is given
/// ([`PostgresConfig::ssl_root_cert`], `sslrootcert` in the URL or `PGSSLROOTCERT`), and
/// [`Prefer`](Self::Prefer) otherwise. As in libpq, [`Require`](Self::Require) with a root
/// certificate verifies the server's certificate against it ([`VerifyCa`](Self::VerifyCa)).
///
/// Only `VerifyFull` protects against a server impersonated on the network; `VerifyCa` trusts
/// any server holding a certificate of the CA; the others encrypt without knowing whom to.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Connect whether or not the server offers TLS (using it when offered), verify nothing.
    Allow,
    /// Use TLS when the server offers it, verify nothing (the default without a root
    /// certificate).
    Prefer,
    /// Use TLS or fail; verify nothing unless a root certificate is given.
    Require,
    /// Use TLS and verify that the server's certificate chains to the root certificate.
    ///
    /// With sqlx 0.8 on current rustls the host name is checked too (as `VerifyFull`): a
    /// certificate that does not name the host is refused, which libpq would accept.
    VerifyCa,
    /// As `VerifyCa`, and that the certificate names the host connected to (the default with a
    /// root certificate).
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => {
                return Err(Error::Config {
                    what: "sslmode",
                    why: "use disable, allow, prefer, require, verify-ca or verify-full",
                });
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The root certificate(s) a TLS connection trusts.
#[derive(Clone)]
enum RootCert {
    File(PathBuf),
    Pem(Vec<u8>),
}

/// How to connect a PostgreSQL store.
///
/// `Debug` never prints the URL, which may hold a password.
///
/// # TLS
///
/// Connections use rustls. Give the CA that signed the server's certificate with
/// [`ssl_root_cert`](Self::ssl_root_cert) (or `sslrootcert=` in the URL) and the connection
/// is verified in full by default: chain and host name (see [`SslMode`]).
///
/// ```
/// use tessera_sql::postgres::{PostgresConfig, SslMode};
///
/// let config = PostgresConfig::new("postgres://tessera@db.internal/tessera")
///     .ssl_root_cert("/etc/tessera/db-ca.pem");
/// assert_eq!(config.effective_ssl_mode(), SslMode::VerifyFull);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    url: String,
    schema: Option<String>,
    ssl_mode: Option<SslMode>,
    root_cert: Option<RootCert>,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long an operation waits for a free connection before failing with `Unavailable`.
    pub acquire_timeout: Duration,
    /// How long the change watch's connection may stay silent before a heartbeat query is
    /// sent on it, and how long that query may take to answer: a connection that silently
    /// died (a half-open TCP connection) is noticed within twice this.
    pub watch_heartbeat: Duration,
    /// The most lookup queries by digest (a validation's read of its record) in flight at
    /// once. A lookup asked while that many are running waits for the next one to start,
    /// which answers every lookup waiting by then in one query: under many concurrent
    /// validations the server reads records in batches instead of a statement each. A lookup
    /// that finds a query free runs at once, alone; every lookup is answered by a query that
    /// started after it was asked, so a change committed before a validation began is always
    /// seen. `0` counts as one.
    pub lookup_queries: u32,
}

impl PostgresConfig {
    /// The default pool size.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

    /// The default wait for a connection: 10 seconds.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::seconds(10);

    /// The default change watch heartbeat: 1 second (a silent connection is noticed within
    /// 2 seconds).
    pub const DEFAULT_WATCH_HEARTBEAT: Duration = Duration::seconds(1);

    /// The default for [`lookup_queries`](Self::lookup_queries): 4 (with each lookup query one
    /// round trip on a kept connection, 4 gave 1.15–1.7× the validations/s of 2 under 64
    /// tasks, at the same CPU per validation; BENCHMARKS.md).
    pub const DEFAULT_LOOKUP_QUERIES: u32 = 4;

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
            ssl_mode: None,
            root_cert: None,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            watch_heartbeat: Self::DEFAULT_WATCH_HEARTBEAT,
            lookup_queries: Self::DEFAULT_LOOKUP_QUERIES,
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

    /// Run at most `n` lookup queries at once, coalescing the lookups asked meanwhile (see
    /// [`lookup_queries`](Self::lookup_queries)).
    #[must_use]
    pub const fn lookup_queries(mut self, n: u32) -> Self {
        self.lookup_queries = n;
        self
    }

    /// Use TLS as `mode` says, over whatever the URL or `PGSSLMODE` say.
    #[must_use]
    pub const fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }

    /// Trust the CA certificate(s) in this PEM file for the server's certificate (read when
    /// connecting). Unless a mode is set, the connection is then [`SslMode::VerifyFull`].
    #[must_use]
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_cert = Some(RootCert::File(path.into()));
        self
    }

    /// As [`ssl_root_cert`](Self::ssl_root_cert), from PEM text in memory.
    #[must_use]
    pub fn ssl_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert = Some(RootCert::Pem(pem.into()));
        self
    }

    /// The TLS mode connections use, resolved as libpq does (see [`SslMode`]); a malformed
    /// `sslmode` in the URL or `PGSSLMODE` counts as unset here and fails on connecting.
    pub fn effective_ssl_mode(&self) -> SslMode {
        let env = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let has_root = self.root_cert.is_some()
            || url_param(&self.url, &["sslrootcert", "ssl-root-cert", "ssl-ca"]).is_some()
            || env("PGSSLROOTCERT").is_some();
        let given = self.ssl_mode.or_else(|| {
            url_param(&self.url, &["sslmode", "ssl-mode"])
                .or_else(|| env("PGSSLMODE"))
                .and_then(|m| m.parse().ok())
        });
        match given {
            None if has_root => SslMode::VerifyFull,
            None => SslMode::Prefer,
            Some(SslMode::Require) if has_root => SslMode::VerifyCa,
            Some(mode) => mode,
        }
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
        if let Some(mode) = url_param(&self.url, &["sslmode", "ssl-mode"]) {
            mode.parse::<SslMode>()?;
        }
        let mut options = PgConnectOptions::from_str(&self.url).map_err(|_| bad())?;
        options = match &self.root_cert {
            Some(RootCert::File(path)) => options.ssl_root_cert(path),
            Some(RootCert::Pem(pem)) => options.ssl_root_cert_from_pem(pem.clone()),
            None => options,
        };
        options = options.ssl_mode(match self.effective_ssl_mode() {
            SslMode::Disable => PgSslMode::Disable,
            // libpq's allow tries without TLS, then with it: either way it connects and
            // verifies nothing, as prefer does (sqlx's own `allow` never uses TLS).
            SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        });
        // A session left inside a transaction (a caller dropped while sqlx was beginning one,
        // before it could queue the rollback) is ended by the server instead of holding its
        // row locks until the pool happens to hand that connection out again.
        options = options.options([(
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        )]);
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
                .acquire_timeout(crate::std_duration(self.acquire_timeout)),
        )
    }
}

/// How long the server lets a session sit idle inside a transaction before ending it (and
/// rolling the transaction back). Every transaction of the store sends its statements back to
/// back, so only a transaction abandoned by a dropped caller ever waits this long.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "2s";

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("schema", &self.schema)
            .field("ssl_mode", &self.effective_ssl_mode())
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("watch_heartbeat", &self.watch_heartbeat)
            .field("lookup_queries", &self.lookup_queries)
            .finish_non_exhaustive()
    }
}

/// The value of the first of `keys` in the URL's query string, percent-decoded.
fn url_param(url: &str, keys: &[&str]) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        keys.contains(&k).then(|| percent_decode(v))
    })
}

/// Undo `%XX` escapes (and `+` as a space) in a URL query value.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)),
            _ => None,
        };
        if let Some((hi, lo)) = escaped {
            // Two hex digits: at most 255.
            out.extend(u8::try_from(hi * 16 + lo).ok());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn ssl_mode_resolves_as_libpq() {
        let url = "postgres://u@127.0.0.1:5432/db";
        let mode = |c: PostgresConfig| c.effective_ssl_mode();
        // (PGSSLMODE/PGSSLROOTCERT are unset in the test environment.)
        assert_eq!(mode(PostgresConfig::new(url)), SslMode::Prefer);
        assert_eq!(
            mode(PostgresConfig::new(url).ssl_root_cert("/ca.pem")),
            SslMode::VerifyFull
        );
        assert_eq!(
            mode(PostgresConfig::new(format!("{url}?sslrootcert=%2Fca.pem"))),
            SslMode::VerifyFull
        );
        assert_eq!(
            mode(PostgresConfig::new(format!("{url}?sslmode=require"))),
            SslMode::Require
        );
        assert_eq!(
            mode(PostgresConfig::new(format!("{url}?sslmode=require")).ssl_root_cert_pem("x")),
            SslMode::VerifyCa
        );
        assert_eq!(
            mode(
                PostgresConfig::new(format!("{url}?sslmode=verify-full"))
                    .ssl_mode(SslMode::Disable)
                    .ssl_root_cert("/ca.pem")
            ),
            SslMode::Disable
        );
        for m in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            assert_eq!(m.parse::<SslMode>().unwrap().as_str(), m);
        }
        assert_eq!(percent_decode("%2Fa%20b+c%zz%4"), "/a b c%zz%4");
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
