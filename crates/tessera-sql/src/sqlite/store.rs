//! [`SqliteStore`]: the [`Store`] implementation on SQLite.

use core::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqlitePool};
use sqlx::{Connection, Executor, Row, SqliteConnection};
use tessera_core::audit::AuditEvent;
use tessera_core::digest::{Digest, Hint};
use tessera_core::id::{DeviceId, EndpointId, TokenId};
use tessera_core::kind::KindData;
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::record::TokenRecord;
use tessera_core::seal::Sealed;
use tessera_core::validate::{Rejection, Request, validate};
use tessera_store::{
    AuditFilter, Capabilities, Enrollment, Redemption, SharedRecord, StateChange, Store,
    StoreError, TokenFilter, UsageBatch, UsageEntry, UsageOutcome, UsageSubject,
};
use time::{Duration, OffsetDateTime};

use super::{MIGRATIONS, SqliteConfig};
use crate::codec::{self, DataColumns, RecordColumns, record_columns};
use crate::error::{Error, map_sqlx_error};
use crate::{migrate, sql};

/// A record by digest with its blocked addresses (space-separated): $1 key id, $2 digest.
const FIND_SHARED: &str = concat!(
    "SELECT ",
    record_columns!(),
    ", (SELECT group_concat(subject, ' ') FROM token_usage \
       WHERE token_id = tokens.id AND subject_kind = 'ip' AND blocked) AS blocked \
     FROM tokens WHERE digest_key = $1 AND digest = $2"
);

/// How long ledger batch ids are kept to refuse a batch written twice (a writer retries one
/// batch until it is written: seconds, or as long as the database is down).
const BATCH_IDS_KEPT: Duration = Duration::days(7);

type Q<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

/// How many times a redemption re-reads a token that changed under it before giving up with
/// `Conflict`.
const REDEEM_ATTEMPTS: usize = 3;

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
/// [`SqliteStore::migrate`] once to create or upgrade the schema. Every atomic operation is one
/// statement or one `BEGIN IMMEDIATE` transaction, so several processes can share one file.
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
    pool: SqlitePool,
    path: Option<PathBuf>,
    /// Held by every write of this process (clones share it): SQLite has one writer, and
    /// connections that meet its lock sleep in the busy handler (1 ms, 2 ms, 5 ms, ...) long
    /// after it is free. Queueing here hands the lock over as soon as it is released; the
    /// busy timeout still arbitrates between processes.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// In memory: a connection held, never used, for the store's life, so the database lives
    /// as long as the store whatever the pool does with its connections.
    memory: Option<Arc<std::sync::Mutex<SqliteConnection>>>,
}

/// Names each in-memory database of this process apart.
static MEMORY_DATABASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
    /// pool's connections (a cancelled query, a connection sqlx closed).
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
        let name = format!(
            "tessera-memory-{}-{}",
            std::process::id(),
            MEMORY_DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let options = config.connect_options(&name);
        let memory = match config.path {
            Some(_) => None,
            None => Some(Arc::new(std::sync::Mutex::new(
                SqliteConnection::connect_with(&options)
                    .await
                    .map_err(|e| Error::Connect(Box::new(e)))?,
            ))),
        };
        let pool = config
            .pool_options()
            .connect_with(options)
            .await
            .map_err(|e| Error::Connect(Box::new(e)))?;
        let store = Self {
            pool,
            path: config.path,
            writer: Arc::default(),
            memory,
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
        // One immediate transaction: one migrating process at a time, all or nothing.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        (&mut *tx)
            .execute(CREATE_MIGRATIONS_TABLE)
            .await
            .map_err(fail)?;
        let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(APPLIED_MIGRATIONS)
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?;
        for m in migrate::plan(&applied, MIGRATIONS, version)? {
            (&mut *tx).execute(m.sql).await.map_err(fail)?;
            sqlx::query(RECORD_MIGRATION)
                .bind(m.version)
                .bind(m.description)
                .bind(m.checksum())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    /// The schema version the database is at, `None` before the first migration.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the database cannot be read.
    pub async fn schema_version(&self) -> Result<Option<i64>, Error> {
        let fail = |e| Error::Connect(Box::new(e));
        let tables: i64 = sqlx::query_scalar(HAS_MIGRATIONS_TABLE)
            .fetch_one(&self.pool)
            .await
            .map_err(fail)?;
        if tables == 0 {
            return Ok(None);
        }
        sqlx::query_scalar(SCHEMA_VERSION)
            .fetch_one(&self.pool)
            .await
            .map_err(fail)
    }

    /// Close every connection, waiting for operations in flight.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Wait for this process's turn to write (see the `writer` field).
    async fn writing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        // Take the write lock up front: a deferred transaction that reads then writes can fail
        // with SQLITE_BUSY on the upgrade, which no busy timeout waits out.
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }

    /// Why a conditional update on `id` matched nothing: `NotFound` or `Conflict`.
    async fn missed(conn: &mut SqliteConnection, id: TokenId) -> StoreError {
        match sqlx::query_scalar::<_, String>(sql::TOKEN_KIND)
            .bind(codec::id(id))
            .fetch_optional(conn)
            .await
        {
            Ok(Some(_)) => StoreError::Conflict,
            Ok(None) => StoreError::NotFound { what: "token" },
            Err(e) => db(e),
        }
    }

    /// What a record that failed to insert collided with, checked against the database and
    /// against the records inserted before it in the same batch.
    async fn collision(
        &self,
        c: &RecordColumns,
        r: &TokenRecord,
        before: &[TokenRecord],
    ) -> &'static str {
        let found: Option<String> = sqlx::query_scalar(sql::COLLISION)
            .bind(c.id.as_str())
            .bind(c.digest_key)
            .bind(c.digest.as_slice())
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten();
        match found.as_deref() {
            Some("id") => "token id",
            Some("digest") => "token digest",
            _ => codec::batch_collision(r, before),
        }
    }

    async fn insert_in(
        &self,
        conn: &mut SqliteConnection,
        c: &RecordColumns,
    ) -> Result<(), sqlx::Error> {
        bind_record(sqlx::query(sql::INSERT_TOKEN), c)
            .execute(conn)
            .await
            .map(|_| ())
    }

    /// Insert a batch in one transaction, in multi-row chunks.
    ///
    /// A chunk that collides does not say which of its records did. SQLite undoes just that
    /// statement and keeps the transaction, so the chunk's records are then inserted one at a
    /// time: the first to collide gives the error, exactly as if every record had been inserted
    /// one by one.
    async fn insert_batch(
        &self,
        records: &[TokenRecord],
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let columns = records
            .iter()
            .map(RecordColumns::of)
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = self.begin().await?;
        for (k, chunk) in columns.chunks(INSERT_CHUNK).enumerate() {
            let Err(e) = insert_rows(&mut tx, chunk).await else {
                continue;
            };
            if !matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()) {
                let _ = tx.rollback().await;
                return Err(db(e));
            }
            for (j, c) in chunk.iter().enumerate() {
                if let Err(e) = self.insert_in(&mut tx, c).await {
                    let _ = tx.rollback().await;
                    let i = k * INSERT_CHUNK + j;
                    return Err(self.insert_error(e, c, records, i).await);
                }
            }
        }
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)
    }

    async fn insert_error(
        &self,
        e: sqlx::Error,
        c: &RecordColumns,
        records: &[TokenRecord],
        i: usize,
    ) -> StoreError {
        match map_sqlx_error(e, "token") {
            StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
                what: self.collision(c, &records[i], &records[..i]).await,
            },
            other => other,
        }
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("in_memory", &self.memory.is_some())
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

fn db(e: sqlx::Error) -> StoreError {
    map_sqlx_error(e, "token")
}

/// Append a change's `events` inside its transaction (after the change: an event that cannot be
/// stored undoes it).
async fn log(conn: &mut SqliteConnection, events: &[AuditEvent]) -> Result<(), StoreError> {
    for event in events {
        let (at, token, actor, body) = codec::event_columns(event)?;
        sqlx::query(sql::APPEND_EVENT)
            .bind(at)
            .bind(token)
            .bind(actor)
            .bind(body)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// A state or data change can only collide on the application name.
fn name_taken(e: sqlx::Error) -> StoreError {
    map_sqlx_error(e, "application token name")
}

/// Insert records with one multi-row statement (at most [`INSERT_CHUNK`] of them).
async fn insert_rows(conn: &mut SqliteConnection, cs: &[RecordColumns]) -> Result<(), sqlx::Error> {
    let statement = insert_rows_sql(cs.len());
    // Only the full-chunk statement is kept prepared: one per batch size would fill the
    // connection's statement cache with large statements used once.
    let q = sqlx::query(&statement).persistent(cs.len() == INSERT_CHUNK);
    cs.iter()
        .fold(q, bind_record)
        .execute(conn)
        .await
        .map(|_| ())
}

/// [`sql::INSERT_TOKEN`] for `n` records: `n` rows of anonymous placeholders, bound record after
/// record by `bind_record`.
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

fn bind_record<'q>(q: Q<'q>, c: &'q RecordColumns) -> Q<'q> {
    bind_data(
        q.bind(c.id.as_str())
            .bind(c.kind)
            .bind(c.digest_key)
            .bind(c.digest.as_slice())
            .bind(c.spelling)
            .bind(c.hint.as_str())
            .bind(c.state)
            .bind(c.created_at)
            .bind(c.created_by.as_str())
            .bind(c.generated_by.as_deref())
            .bind(c.expires_at)
            .bind(c.last_used_at)
            .bind(c.activated_at)
            .bind(c.grace_until)
            .bind(c.successor.as_deref())
            .bind(c.max_uses)
            .bind(c.uses),
        &c.data,
    )
    .bind(c.data.data.as_str())
    .bind(c.sealed.as_deref())
}

/// Bind app name, owner, endpoint, method, binding and bound device, in that order.
fn bind_data<'q>(q: Q<'q>, d: &'q DataColumns) -> Q<'q> {
    q.bind(d.app_name.as_deref())
        .bind(d.owner.as_deref())
        .bind(d.endpoint.as_deref())
        .bind(d.method)
        .bind(d.binding)
        .bind(d.bound_device.as_deref())
}

#[async_trait]
impl Store for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.shared_across_processes = self.path.is_some();
        c.durable = self.path.is_some();
        c
    }

    async fn insert(&self, record: &TokenRecord, events: &[AuditEvent]) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let c = RecordColumns::of(record)?;
        let mut tx = self.begin().await?;
        if let Err(e) = self.insert_in(&mut tx, &c).await {
            let _ = tx.rollback().await;
            return Err(self
                .insert_error(e, &c, core::slice::from_ref(record), 0)
                .await);
        }
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)
    }

    async fn insert_many(
        &self,
        records: &[TokenRecord],
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        self.insert_batch(records, events).await
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(sql::GET_TOKEN)
            .bind(codec::id(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(codec::record).transpose()
    }

    async fn find_by_digest(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        let (key, bytes) = codec::digest(digest);
        let row = sqlx::query(sql::FIND_BY_DIGEST)
            .bind(key)
            .bind(bytes)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(codec::record).transpose()
    }

    async fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>, StoreError> {
        let states = filter
            .states
            .as_deref()
            .map(codec::states_json)
            .transpose()?;
        let rows = sqlx::query(LIST_TOKENS)
            .bind(filter.kind.map(|k| k.as_str()))
            .bind(states)
            .bind(filter.owner.as_ref().map(|o| o.as_str()))
            .bind(filter.endpoint.as_ref().map(|e| e.as_str()))
            .bind(filter.expires_before.map(codec::ts_saturating))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(codec::record).collect()
    }

    async fn change_state(
        &self,
        id: TokenId,
        change: &StateChange,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.begin().await?;
        let row = bind_change(sqlx::query(sql::CHANGE_STATE), id, change)?
            .fetch_optional(&mut *tx)
            .await
            .map_err(name_taken)?;
        let Some(row) = row else {
            return Err(Self::missed(&mut tx, id).await);
        };
        let updated = codec::record(&row)?;
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn replace(
        &self,
        old: TokenId,
        change: &StateChange,
        new: &TokenRecord,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        let _writing = self.writing().await;
        let c = RecordColumns::of(new)?;
        let mut tx = self.begin().await?;
        let row = bind_change(sqlx::query(sql::CHANGE_STATE), old, change)?
            .fetch_optional(&mut *tx)
            .await
            .map_err(name_taken)?;
        let Some(row) = row else {
            let e = Self::missed(&mut tx, old).await;
            let _ = tx.rollback().await;
            return Err(e);
        };
        let updated = codec::record(&row)?;
        if let Err(e) = self.insert_in(&mut tx, &c).await {
            let _ = tx.rollback().await;
            return Err(self
                .insert_error(e, &c, core::slice::from_ref(new), 0)
                .await);
        }
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn update_data(
        &self,
        id: TokenId,
        data: &KindData,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        let _writing = self.writing().await;
        let d = DataColumns::of(data)?;
        let mut tx = self.begin().await?;
        let row = bind_data(
            sqlx::query(sql::UPDATE_DATA)
                .bind(codec::id(id))
                .bind(data.kind().as_str())
                .bind(d.data.as_str()),
            &d,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(name_taken)?;
        let Some(row) = row else {
            return Err(Self::missed(&mut tx, id).await);
        };
        let updated = codec::record(&row)?;
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn set_digest(
        &self,
        id: TokenId,
        digest: &Digest,
        hint: &Hint,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        let _writing = self.writing().await;
        let (key, bytes) = codec::digest(digest);
        let mut tx = self.begin().await?;
        let row = sqlx::query(sql::SET_DIGEST)
            .bind(codec::id(id))
            .bind(key)
            .bind(bytes)
            .bind(hint.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| map_sqlx_error(e, "token digest"))?;
        let Some(row) = row else {
            return Err(StoreError::NotFound { what: "token" });
        };
        let updated = codec::record(&row)?;
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn set_sealed(
        &self,
        id: TokenId,
        sealed: Option<&Sealed>,
        events: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.begin().await?;
        let row = sqlx::query(sql::SET_SEALED)
            .bind(codec::id(id))
            .bind(sealed.map(Sealed::to_bytes))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| map_sqlx_error(e, "token"))?;
        let Some(row) = row else {
            return Err(StoreError::NotFound { what: "token" });
        };
        let updated = codec::record(&row)?;
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn touch(
        &self,
        id: TokenId,
        now: OffsetDateTime,
        interval: Duration,
    ) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let done = sqlx::query(sql::TOUCH)
            .bind(codec::id(id))
            .bind(codec::ts(now)?)
            .bind(codec::ts_before(now, interval))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        match Self::missed(&mut conn, id).await {
            StoreError::Conflict => Ok(false),
            e => Err(e),
        }
    }

    async fn purge(&self, ids: &[TokenId], events: &[AuditEvent]) -> Result<u64, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.begin().await?;
        let mut removed = 0;
        for id in ids {
            let done = sqlx::query(sql::PURGE)
                .bind(codec::id(*id))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            removed += done.rows_affected();
        }
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }

    async fn redeem(
        &self,
        digest: &Digest,
        device: &DeviceId,
        now: OffsetDateTime,
    ) -> Result<Redemption, StoreError> {
        let _writing = self.writing().await;
        let (key, bytes) = codec::digest(digest);
        let at = codec::ts(now)?;
        for _ in 0..REDEEM_ATTEMPTS {
            let mut tx = self.begin().await?;
            let row = sqlx::query(sql::REDEEM)
                .bind(key)
                .bind(bytes.as_slice())
                .bind(at)
                .bind(device.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if let Some(row) = row {
                let record = codec::record(&row)?;
                match sqlx::query(sql::INSERT_ENROLLMENT)
                    .bind(codec::id(record.id))
                    .bind(device.as_str())
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| map_sqlx_error(e, "enrollment"))
                {
                    Ok(_) => {}
                    // Enrolled meanwhile (one device, one use): undo and answer as a repeat.
                    Err(StoreError::AlreadyExists { .. }) => {
                        let _ = tx.rollback().await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                tx.commit().await.map_err(db)?;
                return Ok(Redemption::Redeemed(record));
            }
            // Nothing changed: say why, from the record as it is.
            let current = sqlx::query(sql::FIND_BY_DIGEST)
                .bind(key)
                .bind(bytes.as_slice())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let enrolled = sqlx::query(sql::ENROLLMENT_OF)
                .bind(key)
                .bind(bytes.as_slice())
                .bind(device.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let _ = tx.rollback().await;
            let Some(current) = current else {
                return Ok(Redemption::Refused(Rejection::NotFound));
            };
            let record = codec::record(&current)?;
            if !matches!(record.data, KindData::Onboarding(_)) {
                // To a redemption, a token of another kind does not exist.
                return Ok(Redemption::Refused(Rejection::NotFound));
            }
            if let Some(enrolled) = enrolled {
                // One device, one use: the device's enrollment back, nothing consumed.
                return Ok(match Redemption::repeat_allowed(&record, now) {
                    Ok(()) => Redemption::Repeated {
                        record,
                        enrollment: codec::enrollment(&enrolled)?,
                    },
                    Err(why) => Redemption::Refused(why),
                });
            }
            if let Err(why) = validate(&record, &Request::Onboarding { device }, now) {
                return Ok(Redemption::Refused(why));
            }
            // It changed between the two statements and is usable now: try again.
        }
        Err(StoreError::Conflict)
    }

    async fn enrollments(&self, id: TokenId) -> Result<Vec<Enrollment>, StoreError> {
        let rows = sqlx::query(sql::ENROLLMENTS)
            .bind(codec::id(id))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(codec::enrollment).collect()
    }

    async fn record_usage(
        &self,
        id: TokenId,
        subject: &UsageSubject,
        now: OffsetDateTime,
    ) -> Result<UsageOutcome, StoreError> {
        let _writing = self.writing().await;
        let (kind, key, method) = codec::subject(subject);
        let row = sqlx::query(sql::RECORD_USAGE)
            .bind(codec::id(id))
            .bind(kind)
            .bind(key)
            .bind(method)
            .bind(codec::ts(now)?)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match row {
            Some(row) => Ok(UsageOutcome::Counted(codec::usage_entry(&row)?)),
            None => Ok(UsageOutcome::Blocked),
        }
    }

    async fn find_shared(&self, digest: &Digest) -> Result<Option<Arc<SharedRecord>>, StoreError> {
        let (key, bytes) = codec::digest(digest);
        let row = sqlx::query(FIND_SHARED)
            .bind(key)
            .bind(bytes)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref()
            .map(|r| codec::shared_record(r).map(Arc::new))
            .transpose()
    }

    async fn record_batch(&self, batch: &UsageBatch) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let now = OffsetDateTime::now_utc();
        let mut tx = self.begin().await?;
        let claimed = sqlx::query(sql::CLAIM_BATCH)
            .bind(codec::batch_id(batch.id))
            .bind(codec::ts_saturating(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(sql::PRUNE_BATCHES)
            .bind(codec::ts_saturating(now - BATCH_IDS_KEPT))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for d in &batch.usage {
            let (kind, key, method) = codec::subject(&d.subject);
            sqlx::query(sql::ADD_USAGE)
                .bind(codec::id(d.token))
                .bind(kind)
                .bind(key)
                .bind(method)
                .bind(codec::ts(d.first_seen)?)
                .bind(codec::ts(d.last_seen)?)
                .bind(codec::count(d.count)?)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for (id, at) in &batch.last_used {
            sqlx::query(sql::LAST_USED)
                .bind(codec::id(*id))
                .bind(codec::ts(*at)?)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for event in &batch.events {
            let (at, token, actor, body) = codec::event_columns(event)?;
            sqlx::query(sql::APPEND_EVENT)
                .bind(at)
                .bind(token)
                .bind(actor)
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn is_blocked(&self, id: TokenId, ip: IpAddr) -> Result<bool, StoreError> {
        let blocked: Option<bool> = sqlx::query_scalar(sql::IS_BLOCKED)
            .bind(codec::id(id))
            .bind(ip.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(blocked.unwrap_or(false))
    }

    async fn set_blocked(
        &self,
        id: TokenId,
        ip: IpAddr,
        blocked: bool,
        events: &[AuditEvent],
    ) -> Result<UsageEntry, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.begin().await?;
        let row = sqlx::query(sql::SET_BLOCKED)
            .bind(codec::id(id))
            .bind(ip.to_string())
            .bind(blocked)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let entry = codec::usage_entry(&row)?;
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)?;
        Ok(entry)
    }

    async fn usage(&self, id: TokenId) -> Result<Vec<UsageEntry>, StoreError> {
        let rows = sqlx::query(sql::USAGE)
            .bind(codec::id(id))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        codec::sorted_usage(
            rows.iter()
                .map(codec::usage_entry)
                .collect::<Result<_, _>>()?,
        )
    }

    async fn endpoint_usage(&self, endpoint: &EndpointId) -> Result<Vec<UsageEntry>, StoreError> {
        let rows = sqlx::query(sql::ENDPOINT_USAGE)
            .bind(endpoint.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        codec::sorted_usage(
            rows.iter()
                .map(codec::usage_entry)
                .collect::<Result<_, _>>()?,
        )
    }

    async fn put_mapping(
        &self,
        mapping: &Mapping,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.begin().await?;
        sqlx::query(sql::PUT_MAPPING)
            .bind(codec::id(mapping.secondary))
            .bind(mapping.endpoint.as_str())
            .bind(codec::method(mapping.method))
            .bind(mapping.enabled)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_sqlx_error(e, "mapping"))?;
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)
    }

    async fn mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
    ) -> Result<Option<Mapping>, StoreError> {
        let row = sqlx::query(sql::GET_MAPPING)
            .bind(codec::id(secondary))
            .bind(endpoint.as_str())
            .bind(codec::method(method))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(codec::mapping).transpose()
    }

    async fn set_mapping_enabled(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        enabled: bool,
        events: &[AuditEvent],
    ) -> Result<Mapping, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.begin().await?;
        let row = sqlx::query(sql::SET_MAPPING_ENABLED)
            .bind(codec::id(secondary))
            .bind(endpoint.as_str())
            .bind(codec::method(method))
            .bind(enabled)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Err(StoreError::NotFound { what: "mapping" });
        };
        let mapping = codec::mapping(&row)?;
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)?;
        Ok(mapping)
    }

    async fn remove_mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.begin().await?;
        let done = sqlx::query(sql::REMOVE_MAPPING)
            .bind(codec::id(secondary))
            .bind(endpoint.as_str())
            .bind(codec::method(method))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "mapping" });
        }
        log(&mut tx, events).await?;
        tx.commit().await.map_err(db)
    }

    async fn mappings(
        &self,
        secondary: Option<TokenId>,
        endpoint: Option<&EndpointId>,
    ) -> Result<Vec<Mapping>, StoreError> {
        let rows = sqlx::query(sql::MAPPINGS)
            .bind(secondary.map(codec::id))
            .bind(endpoint.map(EndpointId::as_str))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(codec::sorted_mappings(
            rows.iter().map(codec::mapping).collect::<Result<_, _>>()?,
        ))
    }

    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let (at, token, actor, body) = codec::event_columns(event)?;
        sqlx::query(sql::APPEND_EVENT)
            .bind(at)
            .bind(token)
            .bind(actor)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let actor = filter.actor.as_ref().map(codec::actor).transpose()?;
        let rows = sqlx::query(sql::EVENTS)
            .bind(filter.token.map(codec::id))
            .bind(actor)
            .bind(filter.since.map(codec::ts_saturating))
            .bind(filter.until.map(codec::ts_saturating))
            .bind(codec::limit(filter.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| codec::event(&row.try_get::<String, _>("body").map_err(db)?))
            .collect()
    }
}

/// Bind a state change after the id: from, to, at, grace until, successor.
fn bind_change<'q>(q: Q<'q>, id: TokenId, change: &StateChange) -> Result<Q<'q>, StoreError> {
    Ok(q.bind(codec::id(id))
        .bind(change.from.as_str())
        .bind(change.to.as_str())
        .bind(codec::ts(change.at)?)
        .bind(codec::ts_opt(change.grace_until)?)
        .bind(change.successor.map(codec::id)))
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
}
