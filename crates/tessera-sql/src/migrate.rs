//! Versioned migrations, shared by both backends.
//!
//! Each backend ships its migrations as `migrations/<backend>/NNNN_<description>.sql`, embedded
//! at build time. Applied migrations are tracked in Tessera's own table, `_tessera_migrations`
//! (version, description, checksum, when), so Tessera can share a database with an
//! application's own migrations. A released migration is never edited: the checksum of every
//! applied migration is checked against the embedded one on each run.

use crate::error::Error;

/// One embedded migration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    /// Its version, the `NNNN` of its file name.
    pub(crate) version: i64,
    /// Its description, the rest of its file name.
    pub(crate) description: &'static str,
    /// Its SQL: one or more statements.
    pub(crate) sql: &'static str,
}

impl Migration {
    /// The checksum recorded when it is applied: BLAKE3 of the SQL with line endings
    /// normalised, so a checkout with CRLF line endings still matches.
    pub(crate) fn checksum(&self) -> Vec<u8> {
        let mut h = blake3::Hasher::new();
        for (i, line) in self.sql.split('\n').enumerate() {
            if i > 0 {
                h.update(b"\n");
            }
            h.update(line.strip_suffix('\r').unwrap_or(line).as_bytes());
        }
        h.finalize().as_bytes().to_vec()
    }
}

/// Embed a backend's migrations, in version order.
macro_rules! embed {
    ($backend:literal: $($version:literal $description:literal $file:literal),+ $(,)?) => {
        &[$($crate::migrate::Migration {
            version: $version,
            description: $description,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/migrations/", $backend, "/", $file
            )),
        }),+]
    };
}
pub(crate) use embed;

/// The newest version in `known`.
pub(crate) fn latest(known: &[Migration]) -> i64 {
    known.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Refuse a database migrated past what this build knows.
///
/// # Errors
///
/// [`Error::SchemaTooNew`].
pub(crate) fn check_not_too_new(found: Option<i64>, known: &[Migration]) -> Result<(), Error> {
    let supported = latest(known);
    match found {
        Some(found) if found > supported => Err(Error::SchemaTooNew { found, supported }),
        _ => Ok(()),
    }
}

/// The migrations to apply, in order, to bring a database with `applied` (version, checksum)
/// up to `target`.
///
/// # Errors
///
/// [`Error::SchemaTooNew`] when the database is past this build; [`Error::MigrationUnknown`]
/// when it has a version this build lacks; [`Error::MigrationChanged`] when an applied
/// migration's checksum differs from the embedded one.
pub(crate) fn plan<'a>(
    applied: &[(i64, Vec<u8>)],
    known: &'a [Migration],
    target: i64,
) -> Result<Vec<&'a Migration>, Error> {
    check_not_too_new(applied.iter().map(|(v, _)| *v).max(), known)?;
    for (version, checksum) in applied {
        let Some(m) = known.iter().find(|m| m.version == *version) else {
            return Err(Error::MigrationUnknown { version: *version });
        };
        if &m.checksum() != checksum {
            return Err(Error::MigrationChanged { version: *version });
        }
    }
    let mut pending: Vec<&Migration> = known
        .iter()
        .filter(|m| m.version <= target && !applied.iter().any(|(v, _)| *v == m.version))
        .collect();
    pending.sort_by_key(|m| m.version);
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[Migration] = &[
        Migration {
            version: 1,
            description: "one",
            sql: "CREATE TABLE a (x INTEGER);\n",
        },
        Migration {
            version: 2,
            description: "two",
            sql: "CREATE INDEX a_x ON a (x);\n",
        },
    ];

    #[test]
    fn plans_pending_in_order_up_to_target() {
        let none = plan(&[], KNOWN, 2).unwrap();
        assert_eq!(none.iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2]);
        let first = plan(&[], KNOWN, 1).unwrap();
        assert_eq!(first.len(), 1);
        let rest = plan(&[(1, KNOWN[0].checksum())], KNOWN, 2).unwrap();
        assert_eq!(rest.iter().map(|m| m.version).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn refuses_newer_changed_and_unknown() {
        assert!(matches!(
            plan(&[(3, vec![])], KNOWN, 2),
            Err(Error::SchemaTooNew {
                found: 3,
                supported: 2
            })
        ));
        assert!(matches!(
            plan(&[(1, vec![0; 32])], KNOWN, 2),
            Err(Error::MigrationChanged { version: 1 })
        ));
        assert!(matches!(
            plan(&[(0, vec![])], KNOWN, 2),
            Err(Error::MigrationUnknown { version: 0 })
        ));
    }

    #[test]
    fn checksum_ignores_line_endings() {
        let crlf = Migration {
            sql: "CREATE TABLE a (x INTEGER);\r\n",
            ..KNOWN[0]
        };
        assert_eq!(crlf.checksum(), KNOWN[0].checksum());
        assert_ne!(KNOWN[0].checksum(), KNOWN[1].checksum());
    }
}
