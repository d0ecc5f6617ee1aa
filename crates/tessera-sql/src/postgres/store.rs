//! [`PostgresStore`]: the [`Store`] implementation on PostgreSQL.

use core::fmt;
use std::net::IpAddr;

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgPool, Postgres};
use sqlx::query::Query;
use sqlx::{Executor, PgConnection, Row};
use tessera_core::audit::AuditEvent;
use tessera_core::digest::{Digest, Hint};
use tessera_core::id::{DeviceId, EndpointId, TokenId};
use tessera_core::kind::KindData;
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::record::TokenRecord;
use tessera_core::seal::Sealed;
use tessera_core::validate::{Rejection, Request, validate};
use tessera_store::{
    AuditFilter, Capabilities, ChangeSink, Enrollment, RedeemEvents, Redemption, SharedRecord,
    StateChange, Store, StoreError, TokenFilter, UsageBatch, UsageEntry, UsageOutcome,
    UsageSubject,
};
use time::{Duration, OffsetDateTime};

use super::lookup::Lookups;
use super::{MIGRATIONS, PostgresConfig};
use crate::codec::{self, DataColumns, RecordColumns, record_columns};
use crate::error::{Error, map_sqlx_error};
use crate::{migrate, sql};

/// Add ledger deltas to usage entries of tokens that exist, from arrays: $1 token ids,
/// $2 subject kinds, $3 subjects, $4 methods, $5 first seen, $6 last seen, $7 counts (one row
/// per entry: the caller merges duplicates). Blocked entries count too; times only widen.
const ADD_USAGE_MANY: &str = "INSERT INTO token_usage AS u (token_id, subject_kind, subject, \
     method, first_seen, last_seen, hits, blocked) \
     SELECT d.t, d.k, d.s, d.m, d.f, d.l, d.c, FALSE \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
                 $7::bigint[]) AS d(t, k, s, m, f, l, c) \
     WHERE EXISTS (SELECT 1 FROM tokens WHERE id = d.t) \
     ON CONFLICT (token_id, subject_kind, subject, method) DO UPDATE SET \
     hits = u.hits + excluded.hits, \
     first_seen = CASE WHEN u.first_seen IS NULL OR excluded.first_seen < u.first_seen \
         THEN excluded.first_seen ELSE u.first_seen END, \
     last_seen = CASE WHEN u.last_seen IS NULL OR excluded.last_seen > u.last_seen \
         THEN excluded.last_seen ELSE u.last_seen END";

/// Move last uses later, never earlier, from arrays: $1 token ids (distinct), $2 times.
const LAST_USED_MANY: &str = "UPDATE tokens AS t SET last_used_at = d.a \
     FROM UNNEST($1::text[], $2::bigint[]) AS d(i, a) \
     WHERE t.id = d.i AND (t.last_used_at IS NULL OR t.last_used_at < d.a)";

/// Append events from arrays, in order: $1 at, $2 token, $3 actor, $4 body, $5 row key. An
/// aggregated row of the ledger (a key) replaces the stored row with its key (its body only:
/// its time, token and actor never change, so the update can stay on its page); an event
/// without a key (NULL) never conflicts and is appended.
const APPEND_EVENTS_MANY: &str = "INSERT INTO audit_events (at, token_id, actor, body, row_key) \
     SELECT d.a, d.t, d.c, d.b, d.k \
     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) \
         WITH ORDINALITY AS d(a, t, c, b, k, n) ORDER BY d.n \
     ON CONFLICT (row_key) WHERE row_key IS NOT NULL DO UPDATE SET body = EXCLUDED.body";

/// How long ledger batch ids are kept to refuse a batch written twice (a writer retries one
/// batch until it is written: seconds, or as long as the database is down).
const BATCH_IDS_KEPT: Duration = Duration::days(7);

type Q<'q> = Query<'q, Postgres, PgArguments>;

/// How many times a redemption re-reads a token that changed under it before giving up with
/// `Conflict`.
const REDEEM_ATTEMPTS: usize = 3;

/// Records narrowed by $1 kind, $2 states (an array), $3 owner, $4 endpoint, $5 expiring at or
/// before; each optional.
const LIST_TOKENS: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM tokens WHERE ($1::text IS NULL OR kind = $1) \
       AND ($2::text[] IS NULL OR state = ANY($2)) \
       AND ($3::text IS NULL OR owner = $3) AND ($4::text IS NULL OR endpoint = $4) \
       AND ($5::bigint IS NULL OR expires_at <= $5) \
     ORDER BY created_at, seq"
);

/// Redeem and enroll in one statement (one round trip, the row locked only while it runs): the
/// enrollment is inserted exactly when the conditional update consumed a use. $1 key id, $2
/// digest, $3 now, $4 device.
const REDEEM_AND_ENROLL: &str = concat!(
    "WITH redeemed AS (",
    sql::redeem_update!(),
    "), enrolled AS (INSERT INTO enrollments (token_id, device, at) \
     SELECT id, $4, $3 FROM redeemed) SELECT * FROM redeemed"
);

/// [`REDEEM_AND_ENROLL`] with the use's audit event, in the same statement: the event is
/// inserted exactly when a use was consumed. $5 the event's time, $6 its actor, $7 its body as
/// a template, completed here as [`AuditEvent::about`] completes it for an onboarding token
/// (the token's id, kind, hint and generated-by; no owner, no name).
const REDEEM_ENROLL_AND_LOG: &str = concat!(
    "WITH redeemed AS (",
    sql::redeem_update!(),
    "), enrolled AS (INSERT INTO enrollments (token_id, device, at) \
     SELECT id, $4, $3 FROM redeemed), \
     audited AS (INSERT INTO audit_events (at, token_id, actor, body) \
     SELECT $5, id, $6, ($7::jsonb || jsonb_build_object('generated_by', generated_by, \
         'subject', ($7::jsonb -> 'subject') - 'owner' - 'name' \
             || jsonb_build_object('token', id, 'kind', kind, 'hint', hint)))::text \
     FROM redeemed) SELECT * FROM redeemed"
);

/// Records per multi-row insert: enough that round trips stop mattering, few enough to keep each
/// statement's arrays to a few megabytes and the search for a colliding record short.
const INSERT_CHUNK: usize = 4_096;

/// Insert many records in one statement: one array per column, in [`RecordColumns`] order
/// (see `bind_records`), unnested in order, so `seq` follows the batch as with one insert per
/// record. No bind-parameter limit applies: there are 25 parameters, whatever the count.
const INSERT_TOKENS: &str = concat!(
    "INSERT INTO tokens (",
    sql::insert_columns!(),
    ") SELECT ",
    sql::insert_columns!(),
    " FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bytea[], $5::text[], $6::text[], \
     $7::text[], $8::bigint[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], \
     $13::bigint[], $14::bigint[], $15::text[], $16::bigint[], $17::bigint[], $18::text[], \
     $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::text[], \
     $25::bytea[]) \
     WITH ORDINALITY AS r (",
    sql::insert_columns!(),
    ", n) ORDER BY n"
);

/// Append a change's events in one statement, in the order given: $1 times, $2 token ids,
/// $3 actors, $4 bodies.
const APPEND_EVENTS: &str = "INSERT INTO audit_events (at, token_id, actor, body) \
     SELECT at, token_id, actor, body \
     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[]) \
     WITH ORDINALITY AS e (at, token_id, actor, body, n) ORDER BY n";

/// Serialise migrations of one schema across every instance: $1 the lock key.
const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_xact_lock($1)";
const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _tessera_migrations (\
     version BIGINT PRIMARY KEY, description TEXT NOT NULL, checksum BYTEA NOT NULL, \
     installed_at BIGINT NOT NULL)";
const APPLIED_MIGRATIONS: &str =
    "SELECT version, checksum FROM _tessera_migrations ORDER BY version";
const RECORD_MIGRATION: &str = "INSERT INTO _tessera_migrations \
     (version, description, checksum, installed_at) \
     VALUES ($1, $2, $3, CAST(EXTRACT(EPOCH FROM now()) AS BIGINT))";
const HAS_MIGRATIONS_TABLE: &str = "SELECT to_regclass('_tessera_migrations') IS NOT NULL";
const SCHEMA_VERSION: &str = "SELECT MAX(version) FROM _tessera_migrations";

/// A Tessera store in a PostgreSQL database, shared by any number of service instances.
///
/// Connect with [`PostgresStore::connect`] or [`PostgresStore::connect_with`] (to pick a
/// schema or the pool size), then call [`PostgresStore::migrate`] once to create or upgrade the
/// schema; several instances may migrate at once (an advisory lock serialises them). Every
/// atomic operation is one conditional statement or one transaction.
///
/// `Debug` never prints the connection URL.
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), tessera_sql::Error> {
/// use tessera_sql::postgres::{PostgresConfig, PostgresStore};
///
/// let config = PostgresConfig::new("postgres://tessera@127.0.0.1/tessera").schema("tessera")?;
/// let store = PostgresStore::connect_with(config).await?;
/// store.migrate().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Option<String>,
    /// The change watch's heartbeat (see [`PostgresConfig::watch_heartbeat`]).
    heartbeat: std::time::Duration,
    /// Lookups by digest, coalesced while the lookup queries are busy (see
    /// [`PostgresConfig::lookup_queries`]).
    lookups: Arc<Lookups>,
}

impl PostgresStore {
    /// The newest schema version this build creates and reads.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

    /// Connect to `url` with the default settings.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a malformed URL; [`Error::Connect`] when the server cannot be
    /// reached or refuses the login; [`Error::SchemaTooNew`] when a newer build migrated it.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(PostgresConfig::new(url)).await
    }

    /// Connect with explicit settings.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`].
    pub async fn connect_with(config: PostgresConfig) -> Result<Self, Error> {
        let pool = config
            .pool_options()
            .connect_with(config.connect_options()?)
            .await
            .map_err(|e| Error::Connect(Box::new(e)))?;
        let store = Self {
            lookups: Lookups::new(pool.clone(), config.lookup_queries as usize),
            pool,
            schema: config.schema_name().map(str::to_owned),
            heartbeat: crate::std_duration(config.watch_heartbeat)
                .max(std::time::Duration::from_millis(10)),
        };
        migrate::check_not_too_new(store.schema_version().await?, MIGRATIONS)?;
        Ok(store)
    }

    /// The schema Tessera's tables live in, if one was configured.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Create the schema (and the configured PostgreSQL schema, if missing), or upgrade it in
    /// place to [`PostgresStore::SCHEMA_VERSION`]. Safe to call on every start, from several
    /// instances at once.
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
    /// [`PostgresStore::migrate`].
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::migrate`].
    #[doc(hidden)]
    pub async fn migrate_to(&self, version: i64) -> Result<(), Error> {
        let fail = |e| Error::Migrate(db(e));
        // One transaction holding a transaction-scoped advisory lock: one migrating instance
        // per schema at a time, all or nothing, and the lock cannot outlive the transaction.
        let mut tx = self.pool.begin().await.map_err(fail)?;
        sqlx::query(LOCK_MIGRATIONS)
            .bind(lock_key(self.schema.as_deref()))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        if let Some(schema) = &self.schema {
            // Checked by `PostgresConfig::schema` to be a plain lowercase identifier.
            let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            (&mut *tx).execute(create.as_str()).await.map_err(fail)?;
        }
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
        let exists: bool = sqlx::query_scalar(HAS_MIGRATIONS_TABLE)
            .fetch_one(&self.pool)
            .await
            .map_err(fail)?;
        if !exists {
            return Ok(None);
        }
        sqlx::query_scalar(SCHEMA_VERSION)
            .fetch_one(&self.pool)
            .await
            .map_err(fail)
    }

    /// Close every connection, waiting for operations in flight.
    pub async fn close(&self) {
        self.lookups.close();
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(db)
    }

    /// Why a conditional update on `id` matched nothing: `NotFound` or `Conflict`.
    async fn missed(conn: &mut PgConnection, id: TokenId) -> StoreError {
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
        conn: &mut PgConnection,
        c: &RecordColumns,
    ) -> Result<(), sqlx::Error> {
        bind_record(sqlx::query(sql::INSERT_TOKEN), c)
            .execute(conn)
            .await
            .map(|_| ())
    }

    /// Insert a batch in one transaction, in multi-row chunks.
    ///
    /// A chunk that collides does not say which of its records did, and its error ends the
    /// transaction. So the batch is tried again, from that chunk on one record at a time: the
    /// first record to collide gives the error, exactly as if every record had been inserted
    /// one by one. Only a concurrent writer can make an earlier chunk collide on that second
    /// try; the one-at-a-time start then moves back to it, so the retries end.
    async fn insert_batch(
        &self,
        records: &[TokenRecord],
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let columns = records
            .iter()
            .map(RecordColumns::of)
            .collect::<Result<Vec<_>, _>>()?;
        let mut singly_from = columns.len();
        loop {
            match self.try_batch(&columns, singly_from, events).await {
                Ok(()) => return Ok(()),
                Err(BatchFailure::Store(e)) => return Err(e),
                Err(BatchFailure::Record { at, error }) => {
                    return Err(self.insert_error(error, &columns[at], records, at).await);
                }
                Err(BatchFailure::Chunk { start, error }) => match db(error) {
                    StoreError::AlreadyExists { .. } => singly_from = start,
                    other => return Err(other),
                },
            }
        }
    }

    /// One transaction inserting `columns`: those before `singly_from` in chunks of
    /// [`INSERT_CHUNK`] (`singly_from` is a chunk boundary), the rest one at a time. Rolled back
    /// on the first failure.
    async fn try_batch(
        &self,
        columns: &[RecordColumns],
        singly_from: usize,
        events: &[AuditEvent],
    ) -> Result<(), BatchFailure> {
        let mut tx = self.begin().await.map_err(BatchFailure::Store)?;
        let (chunked, singly) = columns.split_at(singly_from);
        let mut failure = None;
        for (k, chunk) in chunked.chunks(INSERT_CHUNK).enumerate() {
            if let Err(error) = bind_records(sqlx::query(INSERT_TOKENS), chunk)
                .execute(&mut *tx)
                .await
            {
                let start = k * INSERT_CHUNK;
                failure = Some(BatchFailure::Chunk { start, error });
                break;
            }
        }
        if failure.is_none() {
            for (i, c) in singly.iter().enumerate() {
                if let Err(error) = self.insert_in(&mut tx, c).await {
                    let at = singly_from + i;
                    failure = Some(BatchFailure::Record { at, error });
                    break;
                }
            }
        }
        match failure {
            None => {
                log(&mut tx, events).await.map_err(BatchFailure::Store)?;
                tx.commit().await.map_err(|e| BatchFailure::Store(db(e)))
            }
            Some(failure) => {
                let _ = tx.rollback().await;
                Err(failure)
            }
        }
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

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// Why one try at inserting a batch failed.
enum BatchFailure {
    /// Not a statement of the batch: beginning or committing the transaction.
    Store(StoreError),
    /// The multi-row insert of the chunk starting at record `start`.
    Chunk { start: usize, error: sqlx::Error },
    /// The insert of record `at` alone.
    Record { at: usize, error: sqlx::Error },
}

/// The advisory lock key of a schema's migrations.
fn lock_key(schema: Option<&str>) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(b"tessera-sql migrations\0");
    h.update(schema.unwrap_or("").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&h.finalize().as_bytes()[..8]);
    i64::from_le_bytes(key)
}

fn db(e: sqlx::Error) -> StoreError {
    map_sqlx_error(e, "token")
}

/// Append a change's `events` inside its transaction, in one statement (after the change: an
/// event that cannot be stored undoes it).
async fn log(conn: &mut PgConnection, events: &[AuditEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let (mut ats, mut tokens, mut actors, mut bodies) = (
        Vec::with_capacity(events.len()),
        Vec::with_capacity(events.len()),
        Vec::with_capacity(events.len()),
        Vec::with_capacity(events.len()),
    );
    for event in events {
        let (at, token, actor, body) = codec::event_columns(event)?;
        ats.push(at);
        tokens.push(token);
        actors.push(actor);
        bodies.push(body);
    }
    sqlx::query(APPEND_EVENTS)
        .bind(ats)
        .bind(tokens)
        .bind(actors)
        .bind(bodies)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// A state or data change can only collide on the application name.
fn name_taken(e: sqlx::Error) -> StoreError {
    map_sqlx_error(e, "application token name")
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

/// Bind the records' columns for [`INSERT_TOKENS`]: one array per column, in the order (and
/// with the values) `bind_record` binds one record's.
fn bind_records<'q>(q: Q<'q>, cs: &'q [RecordColumns]) -> Q<'q> {
    fn column<'a, T>(cs: &'a [RecordColumns], f: impl Fn(&'a RecordColumns) -> T) -> Vec<T> {
        cs.iter().map(f).collect()
    }
    q.bind(column(cs, |c| c.id.as_str()))
        .bind(column(cs, |c| c.kind))
        .bind(column(cs, |c| c.digest_key))
        .bind(column(cs, |c| c.digest.as_slice()))
        .bind(column(cs, |c| c.spelling))
        .bind(column(cs, |c| c.hint.as_str()))
        .bind(column(cs, |c| c.state))
        .bind(column(cs, |c| c.created_at))
        .bind(column(cs, |c| c.created_by.as_str()))
        .bind(column(cs, |c| c.generated_by.as_deref()))
        .bind(column(cs, |c| c.expires_at))
        .bind(column(cs, |c| c.last_used_at))
        .bind(column(cs, |c| c.activated_at))
        .bind(column(cs, |c| c.grace_until))
        .bind(column(cs, |c| c.successor.as_deref()))
        .bind(column(cs, |c| c.max_uses))
        .bind(column(cs, |c| c.uses))
        .bind(column(cs, |c| c.data.app_name.as_deref()))
        .bind(column(cs, |c| c.data.owner.as_deref()))
        .bind(column(cs, |c| c.data.endpoint.as_deref()))
        .bind(column(cs, |c| c.data.method))
        .bind(column(cs, |c| c.data.binding))
        .bind(column(cs, |c| c.data.bound_device.as_deref()))
        .bind(column(cs, |c| c.data.data.as_str()))
        .bind(column(cs, |c| c.sealed.as_deref()))
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
impl Store for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.shared_across_processes = true;
        c.durable = true;
        c
    }

    async fn insert(&self, record: &TokenRecord, events: &[AuditEvent]) -> Result<(), StoreError> {
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
        let states: Option<Vec<&str>> = filter
            .states
            .as_ref()
            .map(|s| s.iter().map(|s| s.as_str()).collect());
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
        events: &RedeemEvents,
    ) -> Result<Redemption, StoreError> {
        let (key, bytes) = codec::digest(digest);
        let at = codec::ts(now)?;
        for template in events.templates() {
            codec::event_columns(template)?;
        }
        let logged = events
            .redeemed
            .as_ref()
            .map(codec::event_columns)
            .transpose()?;
        for _ in 0..REDEEM_ATTEMPTS {
            // One statement, with the use's event: atomic on its own, whatever happens to this
            // process.
            let query = match &logged {
                None => sqlx::query(REDEEM_AND_ENROLL),
                Some(_) => sqlx::query(REDEEM_ENROLL_AND_LOG),
            }
            .bind(key)
            .bind(bytes.as_slice())
            .bind(at)
            .bind(device.as_str());
            let query = match &logged {
                None => query,
                Some((at, _, actor, body)) => query.bind(*at).bind(actor).bind(body),
            };
            let row = match query
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_sqlx_error(e, "enrollment"))
            {
                Ok(row) => row,
                // The same device enrolled by a concurrent redemption that committed while
                // this statement waited (its snapshot could not see it): the statement is
                // undone whole; the next attempt sees the enrollment and answers a repeat.
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            };
            if let Some(row) = row {
                return Ok(Redemption::Redeemed(codec::record(&row)?));
            }
            // Nothing changed: say why, from the record as it is.
            let current = sqlx::query(sql::FIND_BY_DIGEST)
                .bind(key)
                .bind(bytes.as_slice())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            let Some(current) = current else {
                return Ok(Redemption::Refused(Rejection::NotFound));
            };
            let record = codec::record(&current)?;
            if !matches!(record.data, KindData::Onboarding(_)) {
                // To a redemption, a token of another kind does not exist.
                return Ok(Redemption::Refused(Rejection::NotFound));
            }
            let enrolled = sqlx::query(sql::ENROLLMENT_OF)
                .bind(key)
                .bind(bytes.as_slice())
                .bind(device.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            let outcome = if let Some(enrolled) = enrolled {
                // One device, one use: the device's enrollment back, nothing consumed.
                match Redemption::repeat_allowed(&record, now) {
                    Ok(()) => Redemption::Repeated {
                        record: record.clone(),
                        enrollment: codec::enrollment(&enrolled)?,
                    },
                    Err(why) => Redemption::Refused(why),
                }
            } else if let Err(why) = validate(&record, &Request::Onboarding { device }, now) {
                Redemption::Refused(why)
            } else {
                // It changed between the two statements and is usable now: try again.
                continue;
            };
            // Nothing was consumed: the repeat's or the refusal's event records a decision that
            // changed nothing, so it needs no transaction with it.
            if let Some(event) = events.event(&outcome, Some(&record)) {
                self.append(&event).await?;
            }
            return Ok(outcome);
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

    async fn enrollments_of(
        &self,
        ids: &[TokenId],
    ) -> Result<Vec<(TokenId, Enrollment)>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| codec::id(*id)).collect();
        let rows = sqlx::query(sql::ENROLLMENTS_OF)
            .bind(keys)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let found = rows
            .iter()
            .map(codec::token_enrollment)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(codec::in_order_of(ids, found))
    }

    async fn record_usage(
        &self,
        id: TokenId,
        subject: &UsageSubject,
        now: OffsetDateTime,
    ) -> Result<UsageOutcome, StoreError> {
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

    /// Coalesced under load: see [`PostgresConfig::lookup_queries`].
    async fn find_shared(&self, digest: &Digest) -> Result<Option<Arc<SharedRecord>>, StoreError> {
        self.lookups.find(digest).await
    }

    async fn record_batch(&self, batch: &UsageBatch) -> Result<bool, StoreError> {
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
        // Three statements whatever the batch's size: arrays bound once, unnested by the
        // server (a round trip per row would cost more than the rows).
        let mut usage: std::collections::HashMap<(TokenId, &UsageSubject), (i64, i64, i64)> =
            std::collections::HashMap::with_capacity(batch.usage.len());
        for d in &batch.usage {
            let (first, last, count) = (
                codec::ts(d.first_seen)?,
                codec::ts(d.last_seen)?,
                codec::count(d.count)?,
            );
            let e = usage
                .entry((d.token, &d.subject))
                .or_insert((first, last, 0));
            e.0 = e.0.min(first);
            e.1 = e.1.max(last);
            e.2 = e.2.saturating_add(count);
        }
        if !usage.is_empty() {
            let n = usage.len();
            let (mut ids, mut kinds, mut keys, mut methods) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut firsts, mut lasts, mut counts) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for ((token, subject), (first, last, count)) in usage {
                let (kind, key, method) = codec::subject(subject);
                ids.push(codec::id(token));
                kinds.push(kind);
                keys.push(key);
                methods.push(method);
                firsts.push(first);
                lasts.push(last);
                counts.push(count);
            }
            sqlx::query(ADD_USAGE_MANY)
                .bind(ids)
                .bind(kinds)
                .bind(keys)
                .bind(methods)
                .bind(firsts)
                .bind(lasts)
                .bind(counts)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let mut last_used: std::collections::HashMap<TokenId, i64> =
            std::collections::HashMap::with_capacity(batch.last_used.len());
        for (id, at) in &batch.last_used {
            let at = codec::ts(*at)?;
            let e = last_used.entry(*id).or_insert(at);
            *e = (*e).max(at);
        }
        if !last_used.is_empty() {
            let (ids, ats): (Vec<String>, Vec<i64>) = last_used
                .into_iter()
                .map(|(id, at)| (codec::id(id), at))
                .unzip();
            sqlx::query(LAST_USED_MANY)
                .bind(ids)
                .bind(ats)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        if !batch.events.is_empty() {
            let n = batch.events.len();
            let (mut ats, mut tokens, mut actors, mut bodies, mut keys) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for event in &batch.events {
                let (at, token, actor, body) = codec::event_columns(event)?;
                ats.push(at);
                tokens.push(token);
                actors.push(actor);
                bodies.push(body);
                keys.push(event.action.row().map(|k| k.to_string()));
            }
            sqlx::query(APPEND_EVENTS_MANY)
                .bind(ats)
                .bind(tokens)
                .bind(actors)
                .bind(bodies)
                .bind(keys)
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

    /// Listens on the `tessera_token_changes` channel, which migration 3's trigger notifies on
    /// every committed change a validation depends on, on a connection of its own (not one of
    /// the store's pool) held by a task on the current Tokio runtime. Returns once the server
    /// confirmed the LISTEN.
    ///
    /// The connection is checked by a heartbeat query after [`PostgresConfig::watch_heartbeat`]
    /// without a message (default 1 s), which must answer within as long. When the connection
    /// fails or the heartbeat goes unanswered, the task reports [`Change::Lost`](tessera_store::Change::Lost) at once,
    /// connects and LISTENs again (retrying every 25 to 250 ms), and reports
    /// [`Change::Resumed`](tessera_store::Change::Resumed) once the server confirmed the new LISTEN. Each step is logged
    /// through `tracing` (lost: `warn`, resumed with the time it was down: `info`).
    ///
    /// The task ends, closing its connection, when the watcher answers `false` to a report or,
    /// asked at each heartbeat, is no longer [wanted](tessera_store::Watcher::wanted).
    async fn watch(&self, sink: ChangeSink) -> Result<bool, StoreError> {
        let schema: String = match &self.schema {
            Some(s) => s.clone(),
            None => sqlx::query_scalar("SELECT current_schema()")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?,
        };
        let watch = super::watch::Watch {
            options: (*self.pool.connect_options()).clone(),
            schema,
            heartbeat: self.heartbeat,
        };
        let listener = watch.listen().await.map_err(db)?;
        tracing::info!(schema = %watch.schema, "tessera: PostgreSQL change watch listening");
        tokio::spawn(watch.run(listener, sink));
        Ok(true)
    }

    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
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
