//! The service's configuration, from the environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TESSERA_DATABASE_URL` | `sqlite:PATH` (a file, created and migrated) or `postgres://...` | required |
//! | `TESSERA_DATABASE_SCHEMA` | PostgreSQL schema for Tessera's tables | the server's `search_path` |
//! | `TESSERA_DATABASE_CA` | PEM file of the CA that signed PostgreSQL's certificate: TLS, `verify-full` | none (`sslmode` in the URL decides) |
//! | `TESSERA_PEPPER` | the pepper, 64 hex characters, **key id 1** (the CLI's); after `tessera pepper rotate`, the keys as the key file holds them, `ID:HEX` per line or comma, current first | - |
//! | `TESSERA_PEPPER_FILE` | a file holding it (the CLI's `tessera.key`), if `TESSERA_PEPPER` is unset | - |
//! | `TESSERA_CACHE_TTL_SECONDS` | validation cache time to live: the longest a token revoked by another instance may still pass here when the watch is down or on SQLite | 2 |
//! | `TESSERA_LEDGER_INTERVAL_MS` | how often the usage ledger writes counts, last uses and audit rows (the most a crash can lose) | 1000 |
//! | `TESSERA_LISTEN` | address and port | `127.0.0.1:8080` |
//! | `RUST_LOG` | tracing filter (`info`, `tessera=debug`, ...) | `info,sqlx=warn` |

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use tessera::sql::postgres::PostgresConfig;
use tessera::{Duration, KeyId, Pepper, Peppers};

/// The key id of the pepper: the CLI's, so both read the same database.
pub(crate) const KEY_ID: KeyId = KeyId(1);

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Error {
    /// A variable is missing or wrong.
    #[error("{var}: {why}")]
    Config {
        /// The variable.
        var: &'static str,
        /// What is wrong and what to do.
        why: String,
    },
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] tessera::sql::Error),
    /// Something else failed while starting or serving.
    #[error("{0}")]
    Start(String),
}

/// Which database.
pub(crate) enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres(PostgresConfig),
}

impl Database {
    pub(crate) const fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Everything the service reads at start.
pub(crate) struct Config {
    pub(crate) database: Database,
    pub(crate) peppers: Peppers,
    pub(crate) cache_ttl: Duration,
    pub(crate) ledger_interval: Duration,
    pub(crate) listen: SocketAddr,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database", &self.database.name())
            .field("cache_ttl", &self.cache_ttl)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

fn var(name: &'static str) -> Result<Option<String>, Error> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config {
            var: name,
            why: "is not valid text".to_owned(),
        }),
    }
}

impl Config {
    /// Read the environment.
    pub(crate) fn from_env() -> Result<Self, Error> {
        const URL: &str = "TESSERA_DATABASE_URL";
        let url = var(URL)?.ok_or(Error::Config {
            var: URL,
            why: "is unset; set sqlite:PATH or postgres://user@host/db".to_owned(),
        })?;
        let database = if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(Error::Config {
                    var: URL,
                    why: "names no file; write sqlite:/var/lib/tessera/tokens.db".to_owned(),
                });
            }
            Database::Sqlite(PathBuf::from(path))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut pg = PostgresConfig::new(url);
            if let Some(schema) = var("TESSERA_DATABASE_SCHEMA")? {
                pg = pg.schema(&schema)?;
            }
            if let Some(ca) = var("TESSERA_DATABASE_CA")? {
                pg = pg.ssl_root_cert(ca);
            }
            Database::Postgres(pg)
        } else {
            return Err(Error::Config {
                var: URL,
                why: "is neither sqlite:PATH nor a postgres:// URL".to_owned(),
            });
        };

        let hex = match (var("TESSERA_PEPPER")?, var("TESSERA_PEPPER_FILE")?) {
            (Some(hex), _) => hex,
            (None, Some(file)) => std::fs::read_to_string(&file).map_err(|e| Error::Config {
                var: "TESSERA_PEPPER_FILE",
                why: format!("cannot read {file}: {e}"),
            })?,
            (None, None) => {
                return Err(Error::Config {
                    var: "TESSERA_PEPPER",
                    why: "neither it nor TESSERA_PEPPER_FILE is set; give the pepper \
                          (64 hex characters, key id 1, as `tessera init` makes)"
                        .to_owned(),
                });
            }
        };
        let peppers = peppers(&hex).map_err(|why| Error::Config {
            var: "TESSERA_PEPPER",
            why,
        })?;

        const TTL: &str = "TESSERA_CACHE_TTL_SECONDS";
        let cache_ttl = match var(TTL)? {
            None => Duration::seconds(2),
            Some(s) => Duration::seconds(
                s.trim()
                    .parse::<u16>()
                    .map_err(|_| Error::Config {
                        var: TTL,
                        why: "is not a whole number of seconds from 0 to 65535".to_owned(),
                    })?
                    .into(),
            ),
        };
        const LEDGER: &str = "TESSERA_LEDGER_INTERVAL_MS";
        let ledger_interval = match var(LEDGER)? {
            None => Duration::seconds(1),
            Some(s) => match s.trim().parse::<u32>() {
                Ok(ms) if ms > 0 => Duration::milliseconds(ms.into()),
                _ => {
                    return Err(Error::Config {
                        var: LEDGER,
                        why: "is not a whole number of milliseconds from 1 to 4294967295"
                            .to_owned(),
                    });
                }
            },
        };
        const LISTEN: &str = "TESSERA_LISTEN";
        let listen = match var(LISTEN)? {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(s) => s.trim().parse().map_err(|_| Error::Config {
                var: LISTEN,
                why: "is not an address and port such as 0.0.0.0:8080".to_owned(),
            })?,
        };
        Ok(Self {
            database,
            peppers,
            cache_ttl,
            ledger_interval,
            listen,
        })
    }
}

/// The peppers a key file or `TESSERA_PEPPER` holds, current first, as the CLI writes them:
/// one per line or comma, `ID:HEX`, or a bare `HEX` for key id 1.
fn peppers(text: &str) -> Result<Peppers, String> {
    let mut keys: Vec<Pepper> = Vec::new();
    for entry in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let (id, hex) =
            match entry.split_once(':') {
                Some((id, hex)) => (
                    KeyId(id.trim().parse().map_err(|_| {
                        String::from("a key id must be a whole number, as in 2:HEX")
                    })?),
                    hex.trim(),
                ),
                None => (KEY_ID, entry),
            };
        let pepper = Pepper::from_hex(id, hex).map_err(|e| e.to_string())?;
        if keys.iter().any(|k| k.id() == pepper.id()) {
            return Err(format!("key id {} is given twice", id.0));
        }
        keys.push(pepper);
    }
    let mut it = keys.into_iter();
    let mut peppers = Peppers::new(it.next().ok_or("no key; expected 64 hex characters")?);
    for p in it {
        peppers = peppers.with_previous(p);
    }
    Ok(peppers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peppers_read_the_cli_key_file_before_and_after_rotation() {
        let one = "11".repeat(32);
        let two = "22".repeat(32);
        let p = peppers(&format!("{one}\n")).unwrap();
        assert_eq!(p.current().id(), KeyId(1));
        let p = peppers(&format!("2:{two}\n1:{one}\n")).unwrap();
        assert_eq!(p.current().id(), KeyId(2));
        assert_eq!(p.all().count(), 2);
        let p = peppers(&format!("2:{two},1:{one}")).unwrap();
        assert_eq!(
            p.all().map(Pepper::id).collect::<Vec<_>>(),
            [KeyId(2), KeyId(1)]
        );
        for bad in [
            String::new(),
            format!("x:{one}"),
            format!("1:{one},1:{two}"),
            "abc".into(),
        ] {
            let err = peppers(&bad).unwrap_err();
            assert!(!err.contains(&one) && !err.contains(&two), "{err}");
        }
    }
}
