//! [`SqliteStore`]: the [`Store`] implementation on SQLite, through rusqlite.
//!
//! Every statement steps on the calling thread: reads on one of a few reader connections, each
//! statement its own short read transaction (no snapshot is held between calls, so checkpoints
//! are never starved); changes through the store's one writer connection, each one `BEGIN
//! IMMEDIATE` transaction run from begin to commit without an await point. A caller dropped
//! while it waits for the writer has done nothing; once it holds the writer it cannot be
//! interrupted, so no change is ever half-written and no transaction or lock outlives its call.

use core::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, Params, Row, Statement, TransactionBehavior};
use tessera_core::audit::AuditEvent;
use tessera_core::digest::{Digest, Hint};
use tessera_core::id::{DeviceId, EndpointId, TokenId};
use tessera_core::kind::KindData;
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::record::TokenRecord;
use tessera_core::seal::Sealed;
use tessera_core::validate::{Rejection, Request, validate};
use tessera_store::{
    AuditFilter, Capabilities, Enrollment, RedeemEvents, Redemption, SharedRecord, StateChange,
    Store, StoreError, TokenFilter, UsageBatch, UsageEntry, UsageOutcome, UsageSubject,
};
use time::{Duration, OffsetDateTime};

use super::{MIGRATIONS, SqliteConfig};
use crate::codec::{self, DataColumns, RecordColumns, record_columns};
use crate::error::{Error, map_sqlite_error};
use crate::{migrate, sql};

/// A statement of [`sql`] as SQLite binds it: `$N` becomes `?N` (SQLite numbers `$N` names by
/// first appearance, not by `N`), converted once per statement.
macro_rules! lite {
    ($sql:expr) => {{
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| numbered($sql));
        SQL.as_str()
    }};
}

/// A record by digest with its blocked addresses (space-separated): $1 key id, $2 digest. The
/// blocked entries are probed only when the token has some (`blocked_ips`, kept exact by
/// triggers: migration 8).
const FIND_SHARED: &str = concat!(
    "SELECT ",
    record_columns!(),
    ", CASE WHEN blocked_ips > 0 THEN (SELECT group_concat(subject, ' ') FROM token_usage \
       WHERE token_id = tokens.id AND subject_kind = 'ip' AND blocked = 1) END AS blocked \
     FROM tokens WHERE digest_key = $1 AND digest = $2"
);

/// How long ledger batch ids are kept to refuse a batch written twice (a writer retries one
/// batch until it is written: seconds, or as long as the database is down).
const BATCH_IDS_KEPT: Duration = Duration::days(7);

/// Records narrowed by $1 kind, $2 states (a JSON array), $3 owner, $4 endpoint, $5 expiring at
/// or before; each optional.
const LIST_TOKENS: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM tokens WHERE ($1 IS NULL OR kind = $1) \
       AND ($2 IS NULL OR state IN (SELECT value FROM json_each($2))) \
       AND ($3 IS NULL OR owner = $3) AND ($4 IS NULL OR endpoint = $4) \
       AND ($5 IS NULL OR expires_at <= $5) \
     ORDER BY created_at, seq"
);

/// Records per multi-row insert: as many as fit under SQLite's limit of 32,766 bound values per
/// statement (the bundled build's `SQLITE_MAX_VARIABLE_NUMBER`).
const INSERT_CHUNK: usize = 32_766 / sql::INSERT_COLUMNS;

/// Prepared statements kept per connection: every statement the store runs, with room.
const STATEMENT_CACHE: usize = 64;

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _tessera_migrations (\
     version INTEGER PRIMARY KEY, description TEXT NOT NULL, checksum BLOB NOT NULL, \
     installed_at INTEGER NOT NULL) STRICT";
const APPLIED_MIGRATIONS: &str =
    "SELECT version, checksum FROM _tessera_migrations ORDER BY version";
const RECORD_MIGRATION: &str = "INSERT INTO _tessera_migrations \
     (version, description, checksum, installed_at) \
     VALUES ($1, $2, $3, CAST(strftime('%s', 'now') AS INTEGER))";
const HAS_MIGRATIONS_TABLE: &str =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_tessera_migrations'";
const SCHEMA_VERSION: &str = "SELECT MAX(version) FROM _tessera_migrations";

/// A Tessera store in a SQLite database.
///
/// Open it with [`SqliteStore::open`] (a file) or [`SqliteStore::open_in_memory`], then call
/// [`SqliteStore::migrate`] once to create or upgrade the schema. Every change is one `BEGIN
/// IMMEDIATE` transaction, so several processes can share one file; see [`SqliteConfig`] for
/// how connections are used.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use tessera_sql::SqliteStore;
///
/// let store = SqliteStore::open_in_memory().await?;
/// store.migrate().await?;
/// assert_eq!(store.schema_version().await?, Some(SqliteStore::SCHEMA_VERSION));
/// # Ok::<(), tessera_sql::Error>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: SqliteConfig,
    /// The one connection every change of this store goes through (clones share it), `None`
    /// once closed. Queueing here hands SQLite's write lock over as soon as it is released
    /// within the process; the busy timeout arbitrates between processes. In memory it is the
    /// database itself, and serves reads too.
    writer: tokio::sync::Mutex<Option<Connection>>,
    /// Idle reader connections of a file database.
    readers: Mutex<Vec<Connection>>,
    /// Set by [`SqliteStore::close`]: no reader is opened or kept any more.
    closed: std::sync::atomic::AtomicBool,
}

impl SqliteStore {
    /// The newest schema version this build creates and reads.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

    /// Open (creating when missing) the database file at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the file cannot be opened; [`Error::SchemaTooNew`] when a newer
    /// build migrated it.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, Error> {
        Self::open_with(SqliteConfig::file(path)).await
    }

    /// Open a private in-memory database, gone when the store (and every clone of it) is
    /// dropped. It stays one database for the store's whole life, whatever happens to the
    /// operations run on it (a cancelled query included).
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when SQLite cannot start.
    pub async fn open_in_memory() -> Result<Self, Error> {
        Self::open_with(SqliteConfig::in_memory()).await
    }

    /// Open with explicit settings.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub async fn open_with(config: SqliteConfig) -> Result<Self, Error> {
        let writer = connect(&config, true).map_err(|e| Error::Connect(Box::new(e)))?;
        let store = Self {
            inner: Arc::new(Inner {
                config,
                writer: tokio::sync::Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        migrate::check_not_too_new(store.schema_version().await?, MIGRATIONS)?;
        Ok(store)
    }

    /// Create the schema, or upgrade it in place to [`SqliteStore::SCHEMA_VERSION`]. Safe to
    /// call on every start, from several processes at once.
    ///
    /// # Errors
    ///
    /// [`Error::SchemaTooNew`] when a newer build migrated the database;
    /// [`Error::MigrationChanged`] or [`Error::MigrationUnknown`] when its history does not
    /// match this build's; [`Error::Migrate`] when a statement fails (nothing is applied then).
    pub async fn migrate(&self) -> Result<(), Error> {
        self.migrate_to(Self::SCHEMA_VERSION).await
    }

    /// Apply the migrations up to `version` only. For testing upgrades; use
    /// [`SqliteStore::migrate`].
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::migrate`].
    #[doc(hidden)]
    pub async fn migrate_to(&self, version: i64) -> Result<(), Error> {
        let fail = |e| Error::Migrate(db(e));
        let mut guard = self.inner.writer.lock().await;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::Migrate(closed_error()))?;
        // One immediate transaction: one migrating process at a time, all or nothing.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(CREATE_MIGRATIONS_TABLE).map_err(fail)?;
        let applied = {
            let mut stmt = tx.prepare(APPLIED_MIGRATIONS).map_err(fail)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .map_err(fail)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(fail)?
        };
        for m in migrate::plan(&applied, MIGRATIONS, version)? {
            tx.execute_batch(m.sql).map_err(fail)?;
            tx.execute(
                &numbered(RECORD_MIGRATION),
                rusqlite::params![m.version, m.description, m.checksum()],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        drop(guard);
        // Readers prepared statements against the old schema: start them afresh.
        self.inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }

    /// The schema version the database is at, `None` before the first migration.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the database cannot be read.
    pub async fn schema_version(&self) -> Result<Option<i64>, Error> {
        self.read(|conn| {
            let tables: i64 = conn
                .query_row(HAS_MIGRATIONS_TABLE, [], |r| r.get(0))
                .map_err(db)?;
            if tables == 0 {
                return Ok(None);
            }
            conn.query_row(SCHEMA_VERSION, [], |r| r.get(0)).map_err(db)
        })
        .await
        .map_err(|e| Error::Connect(Box::new(e)))
    }

    /// Close every connection, waiting for the change in flight. Every later call fails with
    /// `Unavailable`.
    pub async fn close(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let conn = self.inner.writer.lock().await.take();
        drop(conn);
        self.inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Run `f` on a reader (in memory: on the one connection), on the calling thread.
    async fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.inner.config.path.is_none() {
            let guard = self.inner.writer.lock().await;
            return f(guard.as_ref().ok_or_else(closed_error)?);
        }
        let conn = self.reader()?;
        let out = f(&conn);
        self.give_back(conn);
        out
    }

    /// An idle reader, or a new one.
    fn reader(&self) -> Result<Connection, StoreError> {
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(closed_error());
        }
        let idle = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => connect(&self.inner.config, false).map_err(db),
        }
    }

    /// Keep a reader for the next read, unless enough are kept (or it is somehow inside a
    /// transaction: then it is closed, which rolls that back).
    fn give_back(&self, conn: Connection) {
        if !conn.is_autocommit() || self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut idle = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let keep = usize::try_from(self.inner.config.max_connections.max(1)).unwrap_or(1);
        if idle.len() < keep {
            idle.push(conn);
        }
    }

    /// Run `f` in one `BEGIN IMMEDIATE` transaction on the writer, committed when it returns
    /// `Ok`, rolled back when it returns `Err`. Nothing between the begin and the end awaits:
    /// once started, the change runs to its end even if the caller is dropped.
    async fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.inner.writer.lock().await;
        let conn = guard.as_mut().ok_or_else(closed_error)?;
        let out = immediate(conn, f);
        if !conn.is_autocommit() {
            // A rollback that failed: never leave the writer inside a transaction.
            let _ = conn.execute_batch("ROLLBACK");
        }
        out
    }
}

impl SqliteStore {
    /// [`write`](Self::write) on a thread of the runtime's blocking pool: for a large
    /// transaction (a usage ledger batch of thousands of rows) that must not hold up the
    /// runtime thread it was asked on. The transaction runs to its end (commit or rollback)
    /// even when the caller is dropped meanwhile, and the writer lock is released after it.
    async fn write_off_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        let work = tokio::task::spawn_blocking(move || {
            let mut guard = inner.writer.blocking_lock();
            let conn = guard.as_mut().ok_or_else(closed_error)?;
            let out = immediate(conn, f);
            if !conn.is_autocommit() {
                // A rollback that failed: never leave the writer inside a transaction.
                let _ = conn.execute_batch("ROLLBACK");
            }
            out
        });
        work.await.unwrap_or_else(|e| {
            Err(StoreError::Unavailable(format!(
                "the SQLite write did not finish ({e}); it is rolled back if it did not commit"
            )))
        })
    }
}

/// `f` in a `BEGIN IMMEDIATE` transaction on `conn`.
fn immediate<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let out = f(&tx)?;
    tx.commit().map_err(db)?;
    Ok(out)
}

/// Open a connection with the store's settings: the writer of a file sets WAL and its limits.
fn connect(config: &SqliteConfig, writer: bool) -> rusqlite::Result<Connection> {
    let conn = match &config.path {
        Some(path) => {
            let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            if writer && config.create_if_missing {
                flags |= OpenFlags::SQLITE_OPEN_CREATE;
            }
            Connection::open_with_flags(path, flags)?
        }
        None => Connection::open_in_memory()?,
    };
    conn.busy_timeout(crate::std_duration(config.busy_timeout))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    if let Some(pages) = config.max_page_count {
        // Answers the limit in force (never below the current size).
        let _: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
            r.get(0)
        })?;
    }
    if config.path.is_some() {
        if writer {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("the database cannot use WAL (journal mode {mode})")),
                ));
            }
            conn.execute_batch(&format!(
                "PRAGMA wal_autocheckpoint = {}; PRAGMA journal_size_limit = {};",
                SqliteConfig::DEFAULT_WAL_AUTOCHECKPOINT,
                SqliteConfig::DEFAULT_JOURNAL_SIZE_LIMIT
            ))?;
        }
        // A negative cache size is in KiB.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA mmap_size = {}; PRAGMA cache_size = -{};",
            config.synchronous.pragma(),
            config.mmap_size,
            (config.cache_size / 1024).max(1)
        ))?;
    }
    Ok(conn)
}

/// `sql` with every `$N` parameter spelled `?N`, which SQLite binds by `N`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn closed_error() -> StoreError {
    StoreError::Unavailable(String::from("the SQLite store was closed; open it again"))
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.config.path)
            .field("in_memory", &self.inner.config.path.is_none())
            .field(
                "idle_readers",
                &self
                    .inner
                    .readers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len(),
            )
            .finish_non_exhaustive()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    map_sqlite_error(e, "token")
}

/// The first row of `stmt` run with `params`, read by `f`; the statement is then stepped to its
/// end, so a write's errors surface here.
fn first<T>(
    stmt: &mut Statement<'_>,
    params: impl Params,
    what: &'static str,
    f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let err = |e| map_sqlite_error(e, what);
    let mut rows = stmt.query(params).map_err(err)?;
    let out = match rows.next().map_err(err)? {
        Some(row) => Some(f(row)?),
        None => None,
    };
    while rows.next().map_err(err)?.is_some() {}
    Ok(out)
}

/// Every row of `stmt` run with `params`, each read by `f`.
fn every<T>(
    stmt: &mut Statement<'_>,
    params: impl Params,
    f: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut rows = stmt.query(params).map_err(db)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db)? {
        out.push(f(row)?);
    }
    Ok(out)
}

fn prepare<'c>(
    conn: &'c Connection,
    sql: &str,
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    conn.prepare_cached(sql).map_err(db)
}

/// The values of [`sql::INSERT_TOKEN`], in order.
fn record_params(c: &RecordColumns) -> [&dyn ToSql; sql::INSERT_COLUMNS] {
    [
        &c.id,
        &c.kind,
        &c.digest_key,
        &c.digest,
        &c.spelling,
        &c.hint,
        &c.state,
        &c.created_at,
        &c.created_by,
        &c.generated_by,
        &c.expires_at,
        &c.last_used_at,
        &c.activated_at,
        &c.grace_until,
        &c.successor,
        &c.max_uses,
        &c.uses,
        &c.data.app_name,
        &c.data.owner,
        &c.data.endpoint,
        &c.data.method,
        &c.data.binding,
        &c.data.bound_device,
        &c.data.data,
        &c.sealed,
    ]
}

fn insert_one(conn: &Connection, c: &RecordColumns) -> rusqlite::Result<()> {
    conn.prepare_cached(lite!(sql::INSERT_TOKEN))?
        .execute(&record_params(c)[..])
        .map(|_| ())
}

/// Insert records with one multi-row statement (at most [`INSERT_CHUNK`] of them).
fn insert_rows(conn: &Connection, cs: &[RecordColumns]) -> rusqlite::Result<()> {
    let statement = insert_rows_sql(cs.len());
    // Only the full-chunk statement is kept prepared: one per batch size would fill the
    // connection's statement cache with large statements used once.
    let mut stmt = if cs.len() == INSERT_CHUNK {
        conn.prepare_cached(&statement)?
    } else {
        // Not cached: dropped (finalized) after this batch.
        let mut s = conn.prepare(&statement)?;
        bind_rows(&mut s, cs)?;
        return s.raw_execute().map(|_| ());
    };
    bind_rows(&mut stmt, cs)?;
    stmt.raw_execute().map(|_| ())
}

fn bind_rows(stmt: &mut Statement<'_>, cs: &[RecordColumns]) -> rusqlite::Result<()> {
    let mut i = 1;
    for c in cs {
        for v in record_params(c) {
            stmt.raw_bind_parameter(i, v)?;
            i += 1;
        }
    }
    Ok(())
}

/// [`sql::INSERT_TOKEN`] for `n` records: `n` rows of anonymous placeholders, bound record after
/// record.
fn insert_rows_sql(n: usize) -> String {
    let mut row = String::from("(?");
    row.push_str(&", ?".repeat(sql::INSERT_COLUMNS - 1));
    row.push(')');
    let mut s = String::from(concat!(
        "INSERT INTO tokens (",
        sql::insert_columns!(),
        ") VALUES "
    ));
    s.reserve(n * (row.len() + 2));
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&row);
    }
    s
}

/// Why a conditional update on `id` matched nothing: `NotFound` or `Conflict`.
fn missed(conn: &Connection, id: TokenId) -> StoreError {
    let found = prepare(conn, lite!(sql::TOKEN_KIND))
        .and_then(|mut s| first(&mut s, [codec::id(id)], "token", |_| Ok(())));
    match found {
        Ok(Some(())) => StoreError::Conflict,
        Ok(None) => StoreError::NotFound { what: "token" },
        Err(e) => e,
    }
}

/// What a record that failed to insert collided with, checked against the database (as it was
/// before the failed statement) and against the records inserted before it in the same batch.
fn collision(
    conn: &Connection,
    c: &RecordColumns,
    r: &TokenRecord,
    before: &[TokenRecord],
) -> &'static str {
    let found = prepare(conn, lite!(sql::COLLISION)).and_then(|mut s| {
        first(
            &mut s,
            rusqlite::params![c.id, c.digest_key, c.digest],
            "token",
            |row| row.get::<_, String>(0).map_err(db),
        )
    });
    match found.ok().flatten().as_deref() {
        Some("id") => "token id",
        Some("digest") => "token digest",
        _ => codec::batch_collision(r, before),
    }
}

fn insert_error(
    conn: &Connection,
    e: rusqlite::Error,
    c: &RecordColumns,
    records: &[TokenRecord],
    i: usize,
) -> StoreError {
    match map_sqlite_error(e, "token") {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: collision(conn, c, &records[i], &records[..i]),
        },
        other => other,
    }
}

/// Insert a batch in the current transaction, in multi-row chunks.
///
/// A chunk that collides does not say which of its records did. SQLite undoes just that
/// statement and keeps the transaction, so the chunk's records are then inserted one at a
/// time: the first to collide gives the error, exactly as if every record had been inserted
/// one by one.
fn insert_batch(
    conn: &Connection,
    records: &[TokenRecord],
    columns: &[RecordColumns],
) -> Result<(), StoreError> {
    for (k, chunk) in columns.chunks(INSERT_CHUNK).enumerate() {
        let Err(e) = insert_rows(conn, chunk) else {
            continue;
        };
        let e = map_sqlite_error(e, "token");
        if !matches!(e, StoreError::AlreadyExists { .. }) {
            return Err(e);
        }
        for (j, c) in chunk.iter().enumerate() {
            if let Err(e) = insert_one(conn, c) {
                return Err(insert_error(conn, e, c, records, k * INSERT_CHUNK + j));
            }
        }
    }
    Ok(())
}

/// Apply a state change: the record after it, or why it missed.
fn change_state_in(
    conn: &Connection,
    id: TokenId,
    change: &StateChange,
) -> Result<TokenRecord, StoreError> {
    let mut stmt = prepare(conn, lite!(sql::CHANGE_STATE))?;
    let row = first(
        &mut stmt,
        rusqlite::params![
            codec::id(id),
            change.from.as_str(),
            change.to.as_str(),
            codec::ts(change.at)?,
            codec::ts_opt(change.grace_until)?,
            change.successor.map(codec::id),
        ],
        "application token name",
        |row| codec::record(row),
    )?;
    match row {
        Some(r) => Ok(r),
        None => Err(missed(conn, id)),
    }
}

/// The record updated by a statement returning [`record_columns!`], or `NotFound`.
fn returned_record(
    conn: &Connection,
    statement: &str,
    params: impl Params,
    what: &'static str,
) -> Result<Option<TokenRecord>, StoreError> {
    let mut stmt = prepare(conn, statement)?;
    first(&mut stmt, params, what, |row| codec::record(row))
}

/// Append a change's `events` inside its transaction (after the change: an event that cannot be
/// stored undoes it).
fn log(conn: &Connection, events: &[AuditEvent]) -> Result<(), StoreError> {
    events.iter().try_for_each(|e| append_in(conn, e))
}

fn append_in(conn: &Connection, event: &AuditEvent) -> Result<(), StoreError> {
    let (at, token, actor, body) = codec::event_columns(event)?;
    match event.action.row() {
        None => prepare(conn, lite!(sql::APPEND_EVENT))?
            .execute(rusqlite::params![at, token, actor, body])
            .map_err(db)?,
        Some(key) => prepare(conn, lite!(sql::UPSERT_ROW))?
            .execute(rusqlite::params![at, token, actor, body, key.to_string()])
            .map_err(db)?,
    };
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.shared_across_processes = self.inner.config.path.is_some();
        c.durable = self.inner.config.path.is_some();
        c
    }

    async fn insert(&self, record: &TokenRecord, events: &[AuditEvent]) -> Result<(), StoreError> {
        let c = RecordColumns::of(record)?;
        self.write(|conn| {
            insert_one(conn, &c)
                .map_err(|e| insert_error(conn, e, &c, core::slice::from_ref(record), 0))?;
            log(conn, events)
        })
        .await
    }

    async fn insert_many(
        &self,
        records: &[TokenRecord],
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let columns = records
            .iter()
            .map(RecordColumns::of)
            .collect::<Result<Vec<_>, _>>()?;
        self.write(|conn| {
            insert_batch(conn, records, &columns)?;
            log(conn, events)
        })
        .await
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = prepare(conn, lite!(sql::GET_TOKEN))?;
            first(&mut stmt, [codec::id(id)], "token", |row| {
                codec::record(row)
            })
        })
        .await
    }

    async fn find_by_digest(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        let (key, bytes) = codec::digest(digest);
        self.read(|conn| {
            let mut stmt = prepare(conn, lite!(sql::FIND_BY_DIGEST))?;
            first(&mut stmt, rusqlite::params![key, bytes], "token", |row| {
                codec::record(row)
            })
        })
        .await
    }

    async fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>, StoreError> {
        let states = filter
            .states
            .as_deref()
            .map(codec::states_json)
            .transpose()?;
        self.read(|conn| {
            let mut stmt = prepare(conn, lite!(LIST_TOKENS))?;
            every(
                &mut stmt,
                rusqlite::params![
                    filter.kind.map(|k| k.as_str()),
                    states,
                    filter.owner.as_ref().map(|o| o.as_str()),
                    filter.endpoint.as_ref().map(|e| e.as_str()),
                    filter.expires_before.map(codec::ts_saturating),
                ],
                |row| codec::record(row),
            )
        })
        .await
    }

    async fn change_state(
        &self,
        id: TokenId,
        change: &StateChange,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        self.write(|conn| {
            let updated = change_state_in(conn, id, change)?;
            log(conn, events)?;
            Ok(updated)
        })
        .await
    }

    async fn replace(
        &self,
        old: TokenId,
        change: &StateChange,
        new: &TokenRecord,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        let c = RecordColumns::of(new)?;
        self.write(|conn| {
            let updated = change_state_in(conn, old, change)?;
            insert_one(conn, &c)
                .map_err(|e| insert_error(conn, e, &c, core::slice::from_ref(new), 0))?;
            log(conn, events)?;
            Ok(updated)
        })
        .await
    }

    async fn update_data(
        &self,
        id: TokenId,
        data: &KindData,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        let d = DataColumns::of(data)?;
        self.write(|conn| {
            let row = returned_record(
                conn,
                lite!(sql::UPDATE_DATA),
                rusqlite::params![
                    codec::id(id),
                    data.kind().as_str(),
                    d.data,
                    d.app_name,
                    d.owner,
                    d.endpoint,
                    d.method,
                    d.binding,
                    d.bound_device,
                ],
                "application token name",
            )?;
            let updated = row.ok_or_else(|| missed(conn, id))?;
            log(conn, events)?;
            Ok(updated)
        })
        .await
    }

    async fn set_digest(
        &self,
        id: TokenId,
        digest: &Digest,
        hint: &Hint,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        let (key, bytes) = codec::digest(digest);
        self.write(|conn| {
            let updated = returned_record(
                conn,
                lite!(sql::SET_DIGEST),
                rusqlite::params![codec::id(id), key, bytes, hint.as_str()],
                "token digest",
            )?
            .ok_or(StoreError::NotFound { what: "token" })?;
            log(conn, events)?;
            Ok(updated)
        })
        .await
    }

    async fn set_sealed(
        &self,
        id: TokenId,
        sealed: Option<&Sealed>,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        let bytes = sealed.map(Sealed::to_bytes);
        self.write(|conn| {
            let updated = returned_record(
                conn,
                lite!(sql::SET_SEALED),
                rusqlite::params![codec::id(id), bytes],
                "token",
            )?
            .ok_or(StoreError::NotFound { what: "token" })?;
            log(conn, events)?;
            Ok(updated)
        })
        .await
    }

    async fn touch(
        &self,
        id: TokenId,
        now: OffsetDateTime,
        interval: Duration,
    ) -> Result<bool, StoreError> {
        let at = codec::ts(now)?;
        let before = codec::ts_before(now, interval);
        self.write(|conn| {
            let done = prepare(conn, lite!(sql::TOUCH))?
                .execute(rusqlite::params![codec::id(id), at, before])
                .map_err(db)?;
            if done > 0 {
                return Ok(true);
            }
            match missed(conn, id) {
                StoreError::Conflict => Ok(false),
                e => Err(e),
            }
        })
        .await
    }

    async fn purge(&self, ids: &[TokenId], events: &[AuditEvent]) -> Result<u64, StoreError> {
        self.write(|conn| {
            let mut stmt = prepare(conn, lite!(sql::PURGE))?;
            let mut removed = 0u64;
            for id in ids {
                let n = stmt.execute([codec::id(*id)]).map_err(db)?;
                removed += u64::try_from(n).unwrap_or(u64::MAX);
            }
            log(conn, events)?;
            Ok(removed)
        })
        .await
    }

    async fn redeem(
        &self,
        digest: &Digest,
        device: &DeviceId,
        now: OffsetDateTime,
        events: &RedeemEvents,
    ) -> Result<Redemption, StoreError> {
        let (key, bytes) = codec::digest(digest);
        let at = codec::ts(now)?;
        for template in events.templates() {
            codec::event_columns(template)?;
        }
        // One immediate transaction: nothing changes between the conditional update, the read
        // that explains a refusal and the outcome's audit event.
        self.write(|conn| {
            let row = returned_record(
                conn,
                lite!(sql::REDEEM),
                rusqlite::params![key, bytes, at, device.as_str()],
                "token",
            )?;
            if let Some(record) = row {
                // The update checked in this same transaction that the device is not
                // enrolled: a collision here means the rules and the index disagree.
                prepare(conn, lite!(sql::INSERT_ENROLLMENT))?
                    .execute(rusqlite::params![codec::id(record.id), device.as_str(), at])
                    .map_err(|e| match map_sqlite_error(e, "enrollment") {
                        StoreError::AlreadyExists { .. } => StoreError::Conflict,
                        other => other,
                    })?;
                let outcome = Redemption::Redeemed(record);
                log(conn, events.event(&outcome, None).as_slice())?;
                return Ok(outcome);
            }
            // Nothing changed: say why, from the record as it is.
            let current = returned_record(
                conn,
                lite!(sql::FIND_BY_DIGEST),
                rusqlite::params![key, bytes],
                "token",
            )?;
            let Some(record) = current else {
                return Ok(Redemption::Refused(Rejection::NotFound));
            };
            if !matches!(record.data, KindData::Onboarding(_)) {
                // To a redemption, a token of another kind does not exist.
                return Ok(Redemption::Refused(Rejection::NotFound));
            }
            let mut stmt = prepare(conn, lite!(sql::ENROLLMENT_OF))?;
            let enrolled = first(
                &mut stmt,
                rusqlite::params![key, bytes, device.as_str()],
                "enrollment",
                |row| codec::enrollment(row),
            )?;
            let outcome = if let Some(enrollment) = enrolled {
                // One device, one use: the device's enrollment back, nothing consumed.
                match Redemption::repeat_allowed(&record, now) {
                    Ok(()) => Redemption::Repeated {
                        record: record.clone(),
                        enrollment,
                    },
                    Err(why) => Redemption::Refused(why),
                }
            } else {
                match validate(&record, &Request::Onboarding { device }, now) {
                    Err(why) => Redemption::Refused(why),
                    // The statement and the rules disagree about a record that did not change.
                    Ok(_) => return Err(StoreError::Conflict),
                }
            };
            log(conn, events.event(&outcome, Some(&record)).as_slice())?;
            Ok(outcome)
        })
        .await
    }

    async fn enrollments(&self, id: TokenId) -> Result<Vec<Enrollment>, StoreError> {
        self.read(|conn| {
            let mut stmt = prepare(conn, lite!(sql::ENROLLMENTS))?;
            every(&mut stmt, [codec::id(id)], |row| codec::enrollment(row))
        })
        .await
    }

    async fn enrollments_of(
        &self,
        ids: &[TokenId],
    ) -> Result<Vec<(TokenId, Enrollment)>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| codec::id(*id)).collect();
        let keys = serde_json::to_string(&keys).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let found = self
            .read(|conn| {
                let mut stmt = prepare(conn, lite!(sql::ENROLLMENTS_OF_LITE))?;
                every(&mut stmt, [keys], |row| codec::token_enrollment(row))
            })
            .await?;
        Ok(codec::in_order_of(ids, found))
    }

    async fn record_usage(
        &self,
        id: TokenId,
        subject: &UsageSubject,
        now: OffsetDateTime,
    ) -> Result<UsageOutcome, StoreError> {
        let (kind, key, method) = codec::subject(subject);
        let at = codec::ts(now)?;
        self.write(|conn| {
            let mut stmt = prepare(conn, lite!(sql::RECORD_USAGE))?;
            let entry = first(
                &mut stmt,
                rusqlite::params![codec::id(id), kind, key, method, at],
                "token",
                |row| codec::usage_entry(row),
            )?;
            Ok(entry.map_or(UsageOutcome::Blocked, UsageOutcome::Counted))
        })
        .await
    }

    async fn find_shared(&self, digest: &Digest) -> Result<Option<Arc<SharedRecord>>, StoreError> {
        let (key, bytes) = codec::digest(digest);
        self.read(|conn| {
            let mut stmt = prepare(conn, lite!(FIND_SHARED))?;
            first(&mut stmt, rusqlite::params![key, bytes], "token", |row| {
                codec::lite_shared_record(row).map(Arc::new)
            })
        })
        .await
    }

    async fn record_batch(&self, batch: &UsageBatch) -> Result<bool, StoreError> {
        let id = codec::batch_id(batch.id);
        // Thousands of rows: written off the runtime thread (validations go on meanwhile).
        let mut batch = batch.clone();
        self.write_off_thread(move |conn| {
            // In the order of the `id` index (the 32 hex digits sort as the number): each
            // statement's descent shares most of its pages with the one before. The order of
            // these upserts changes nothing else (audit events keep theirs).
            batch.usage.sort_unstable_by_key(|d| d.token);
            batch.last_used.sort_unstable_by_key(|(token, _)| *token);
            // Read inside the transaction: the clock of the writer that holds the lock.
            let now = OffsetDateTime::now_utc();
            let claimed = prepare(conn, lite!(sql::CLAIM_BATCH))?
                .execute(rusqlite::params![id, codec::ts_saturating(now)])
                .map_err(db)?;
            if claimed == 0 {
                return Ok(false);
            }
            prepare(conn, lite!(sql::PRUNE_BATCHES))?
                .execute([codec::ts_saturating(now - BATCH_IDS_KEPT)])
                .map_err(db)?;
            let mut add = prepare(conn, lite!(sql::ADD_USAGE))?;
            for d in &batch.usage {
                let (kind, key, method) = codec::subject(&d.subject);
                add.execute(rusqlite::params![
                    codec::id(d.token),
                    kind,
                    key,
                    method,
                    codec::ts(d.first_seen)?,
                    codec::ts(d.last_seen)?,
                    codec::count(d.count)?,
                ])
                .map_err(db)?;
            }
            drop(add);
            let mut last = prepare(conn, lite!(sql::LAST_USED))?;
            for (token, at) in &batch.last_used {
                last.execute(rusqlite::params![codec::id(*token), codec::ts(*at)?])
                    .map_err(db)?;
            }
            drop(last);
            log(conn, &batch.events)?;
            Ok(true)
        })
        .await
    }

    async fn is_blocked(&self, id: TokenId, ip: IpAddr) -> Result<bool, StoreError> {
        self.read(|conn| {
            let mut stmt = prepare(conn, lite!(sql::IS_BLOCKED))?;
            let blocked = first(&mut stmt, [codec::id(id), ip.to_string()], "token", |row| {
                row.get::<_, bool>(0).map_err(db)
            })?;
            Ok(blocked.unwrap_or(false))
        })
        .await
    }

    async fn set_blocked(
        &self,
        id: TokenId,
        ip: IpAddr,
        blocked: bool,
        events: &[AuditEvent],
    ) -> Result<UsageEntry, StoreError> {
        self.write(|conn| {
            let mut stmt = prepare(conn, lite!(sql::SET_BLOCKED))?;
            let entry = first(
                &mut stmt,
                rusqlite::params![codec::id(id), ip.to_string(), blocked],
                "token",
                |row| codec::usage_entry(row),
            )?
            .ok_or(StoreError::NotFound { what: "token" })?;
            drop(stmt);
            log(conn, events)?;
            Ok(entry)
        })
        .await
    }

    async fn usage(&self, id: TokenId) -> Result<Vec<UsageEntry>, StoreError> {
        let entries = self
            .read(|conn| {
                let mut stmt = prepare(conn, lite!(sql::USAGE))?;
                every(&mut stmt, [codec::id(id)], |row| codec::usage_entry(row))
            })
            .await?;
        codec::sorted_usage(entries)
    }

    async fn endpoint_usage(&self, endpoint: &EndpointId) -> Result<Vec<UsageEntry>, StoreError> {
        let entries = self
            .read(|conn| {
                let mut stmt = prepare(conn, lite!(sql::ENDPOINT_USAGE))?;
                every(&mut stmt, [endpoint.as_str()], |row| {
                    codec::usage_entry(row)
                })
            })
            .await?;
        codec::sorted_usage(entries)
    }

    async fn put_mapping(
        &self,
        mapping: &Mapping,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        self.write(|conn| {
            prepare(conn, lite!(sql::PUT_MAPPING))?
                .execute(rusqlite::params![
                    codec::id(mapping.secondary),
                    mapping.endpoint.as_str(),
                    codec::method(mapping.method),
                    mapping.enabled,
                ])
                .map_err(|e| map_sqlite_error(e, "mapping"))?;
            log(conn, events)
        })
        .await
    }

    async fn mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
    ) -> Result<Option<Mapping>, StoreError> {
        self.read(|conn| {
            let mut stmt = prepare(conn, lite!(sql::GET_MAPPING))?;
            first(
                &mut stmt,
                rusqlite::params![
                    codec::id(secondary),
                    endpoint.as_str(),
                    codec::method(method)
                ],
                "mapping",
                |row| codec::mapping(row),
            )
        })
        .await
    }

    async fn set_mapping_enabled(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        enabled: bool,
        events: &[AuditEvent],
    ) -> Result<Mapping, StoreError> {
        self.write(|conn| {
            let mut stmt = prepare(conn, lite!(sql::SET_MAPPING_ENABLED))?;
            let mapping = first(
                &mut stmt,
                rusqlite::params![
                    codec::id(secondary),
                    endpoint.as_str(),
                    codec::method(method),
                    enabled
                ],
                "mapping",
                |row| codec::mapping(row),
            )?
            .ok_or(StoreError::NotFound { what: "mapping" })?;
            drop(stmt);
            log(conn, events)?;
            Ok(mapping)
        })
        .await
    }

    async fn remove_mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        self.write(|conn| {
            let n = prepare(conn, lite!(sql::REMOVE_MAPPING))?
                .execute(rusqlite::params![
                    codec::id(secondary),
                    endpoint.as_str(),
                    codec::method(method),
                ])
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound { what: "mapping" });
            }
            log(conn, events)
        })
        .await
    }

    async fn mappings(
        &self,
        secondary: Option<TokenId>,
        endpoint: Option<&EndpointId>,
    ) -> Result<Vec<Mapping>, StoreError> {
        let found = self
            .read(|conn| {
                let mut stmt = prepare(conn, lite!(sql::MAPPINGS))?;
                every(
                    &mut stmt,
                    rusqlite::params![secondary.map(codec::id), endpoint.map(EndpointId::as_str)],
                    |row| codec::mapping(row),
                )
            })
            .await?;
        Ok(codec::sorted_mappings(found))
    }

    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.write(|conn| append_in(conn, event)).await
    }

    async fn events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let actor = filter.actor.as_ref().map(codec::actor).transpose()?;
        self.read(|conn| {
            let mut stmt = prepare(conn, lite!(sql::EVENTS))?;
            every(
                &mut stmt,
                rusqlite::params![
                    filter.token.map(codec::id),
                    actor,
                    filter.since.map(codec::ts_saturating),
                    filter.until.map(codec::ts_saturating),
                    codec::limit(filter.limit),
                ],
                |row| codec::event(&row.get::<_, String>(0).map_err(db)?),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_inserts_bind_one_value_per_placeholder() {
        for n in [1, 2, INSERT_CHUNK] {
            let statement = insert_rows_sql(n);
            assert_eq!(statement.matches('?').count(), n * sql::INSERT_COLUMNS);
            assert_eq!(statement.matches('(').count(), n + 1);
        }
    }

    #[test]
    fn dollar_parameters_become_numbered() {
        assert_eq!(
            numbered("SET a = $3 WHERE id = $1 AND b = $12 AND c = '$'"),
            "SET a = ?3 WHERE id = ?1 AND b = ?12 AND c = '$'"
        );
    }
}
