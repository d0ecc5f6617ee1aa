//! [`Lookups`]: validations' lookups by digest ([`Store::find_shared`]) that arrive while the
//! store's lookup queries are busy, answered together by one query.
//!
//! # Why
//!
//! A validation without the validation cache reads one record. Under many concurrent
//! validations a query per lookup spends the server's time on round trips, parsing rows one
//! statement at a time and waking a backend per lookup, not on reading the records. So at most
//! [`PostgresConfig::lookup_queries`](super::PostgresConfig::lookup_queries) lookup queries
//! run at once; a lookup asked while they are all in flight waits in a queue, and the next
//! query to start answers every lookup queued by then with one
//! `SELECT ... WHERE (digest_key, digest) IN (UNNEST($1, $2))` (each record with its block
//! list, as one lookup returns it).
//!
//! # What holds
//!
//! - **Fresh answers.** A lookup is answered only by a query that started after it was asked
//!   (the queue is taken when a query starts), so a change committed before a validation began
//!   (a revocation, a block) is always seen, exactly as with a query per lookup.
//! - **No wait to gather.** A lookup that finds a query slot free runs its own query at once,
//!   the same statement as without coalescing: a lookup alone costs what it did.
//! - **Cancellation.** Nothing runs in the background: the query of a batch is run by the
//!   future of the lookup that leads it. If that future is dropped, its query is dropped with
//!   it (sqlx returns or closes the connection; a lookup is one statement outside any
//!   transaction), its right to run a query passes to the next lookup queued (or is given
//!   back), and every lookup it was answering asks again, to be answered by a later query. A
//!   lookup dropped while queued is skipped. No runtime needs to outlive a caller: a leader
//!   on a runtime that shuts down is dropped like any future.
//! - **Fail closed.** When a batch's query fails, every lookup of the batch gets the error
//!   (its kind and message), never an answer of "not found".
//!
//! # Connections kept between queries
//!
//! sqlx's pool checks a connection with a round trip to the server (a `Sync`, answered by
//! `ReadyForQuery`) when it hands one out and again when it takes one back, so a lookup query
//! through the pool cost three round trips, and the two checks were an eighth of the client's
//! CPU under 64 tasks. A lookup query's connection is therefore kept here after a query that
//! succeeded (at most one per query slot) and taken by the next lookup query without a check,
//! as long as it was kept less than [`KEEP`] ago; older ones go back through the pool (and its
//! check). A query that fails or is dropped gives its connection back to the pool, which
//! checks it or closes it, as before. [`Lookups::close`] hands every kept connection back, so
//! closing the pool waits for none of them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tessera_core::digest::Digest;
use tessera_store::{SharedRecord, StoreError};
use tokio::sync::oneshot;

use crate::codec::{self, record_columns};
use crate::error::map_sqlx_error;

/// A record by digest with its blocked addresses (space-separated): $1 key id, $2 digest.
const FIND_SHARED: &str = concat!(
    "SELECT ",
    record_columns!(),
    ", (SELECT string_agg(subject, ' ') FROM token_usage \
       WHERE token_id = tokens.id AND subject_kind = 'ip' AND blocked) AS blocked \
     FROM tokens WHERE digest_key = $1 AND digest = $2"
);

/// As [`FIND_SHARED`], for many digests at once: $1 key ids, $2 digests (pairwise).
const FIND_SHARED_MANY: &str = concat!(
    "SELECT ",
    record_columns!(),
    ", (SELECT string_agg(subject, ' ') FROM token_usage \
       WHERE token_id = tokens.id AND subject_kind = 'ip' AND blocked) AS blocked \
     FROM tokens WHERE (digest_key, digest) IN \
       (SELECT k, d FROM UNNEST($1::bigint[], $2::bytea[]) AS l(k, d))"
);

/// The most lookups one query answers; more wait for the next query.
const MAX_BATCH: usize = 1_024;

/// How long a connection kept after a lookup query is taken by the next one without the
/// pool's check: under load the next query comes within milliseconds; a connection idle for
/// longer goes back through the pool, which checks it before handing it out again.
const KEEP: Duration = Duration::from_secs(1);

/// What a lookup returns.
type Found = Result<Option<Arc<SharedRecord>>, StoreError>;

/// The lookups of one store: the queue, and how many lookup queries are in flight.
pub(super) struct Lookups {
    pool: PgPool,
    /// The most lookup queries in flight at once (at least one).
    queries: usize,
    state: Mutex<State>,
}

struct State {
    /// Lookup queries in flight: the [`Lead`]s held or being handed over.
    leading: usize,
    /// Lookups waiting for the next query to start, oldest first.
    queue: VecDeque<Waiter>,
    /// Connections of finished lookup queries, with when each was kept, newest last.
    kept: Vec<(PoolConnection<Postgres>, Instant)>,
}

/// A queued lookup.
struct Waiter {
    digest: Digest,
    answer: oneshot::Sender<Message>,
}

/// What a queued lookup is sent.
enum Message {
    /// Its answer, from a query that started after it was queued.
    Found(Found),
    /// The right to run the next query: it leads, answering the queue.
    Lead(Lead),
}

/// The right to run one lookup query. Dropped (the query done, or its future dropped), it
/// passes to the oldest lookup still queued, or is given back.
struct Lead {
    lookups: Option<Arc<Lookups>>,
}

impl Drop for Lead {
    fn drop(&mut self) {
        if let Some(lookups) = self.lookups.take() {
            lookups.release();
        }
    }
}

impl Lookups {
    /// Lookups on `pool`, at most `queries` queries in flight at once.
    pub(super) fn new(pool: PgPool, queries: usize) -> Arc<Self> {
        Arc::new(Self {
            pool,
            queries: queries.max(1),
            state: Mutex::new(State {
                leading: 0,
                queue: VecDeque::new(),
                kept: Vec::new(),
            }),
        })
    }

    /// The state; a panic elsewhere while it was held cannot leave it half-changed (every
    /// change under the lock is one field update or one queue operation), so poisoning is
    /// ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record of `digest` with its block list, from a query that started after this call.
    pub(super) async fn find(self: &Arc<Self>, digest: &Digest) -> Found {
        loop {
            let waiting = {
                let mut state = self.lock();
                if state.leading < self.queries {
                    state.leading += 1;
                    None
                } else {
                    let (answer, wait) = oneshot::channel();
                    state.queue.push_back(Waiter {
                        digest: *digest,
                        answer,
                    });
                    Some(wait)
                }
            };
            let lead = match waiting {
                None => Lead {
                    lookups: Some(Arc::clone(self)),
                },
                Some(wait) => match wait.await {
                    Ok(Message::Found(found)) => return found,
                    Ok(Message::Lead(lead)) => lead,
                    // The query that was to answer it was dropped with its caller's future:
                    // ask again (a later query answers).
                    Err(_) => continue,
                },
            };
            return self.lead(lead, digest).await;
        }
    }

    /// Run one query for `own` and every lookup queued now, holding `lead`.
    async fn lead(&self, lead: Lead, own: &Digest) -> Found {
        let batch: Vec<Waiter> = {
            let mut state = self.lock();
            // Those dropped while queued need no answer.
            state.queue.retain(|w| !w.answer.is_closed());
            let n = state.queue.len().min(MAX_BATCH);
            state.queue.drain(..n).collect()
        };
        if batch.is_empty() {
            let found = self.find_one(own).await;
            drop(lead);
            return found;
        }
        let mut keys = Vec::with_capacity(batch.len() + 1);
        let mut digests = Vec::with_capacity(batch.len() + 1);
        for d in core::iter::once(own).chain(batch.iter().map(|w| &w.digest)) {
            let (key, bytes) = codec::digest(d);
            keys.push(key);
            digests.push(bytes);
        }
        let found = self.find_many(keys, digests).await;
        // The next query may start while this one's answers are handed out.
        drop(lead);
        match found {
            Ok(records) => {
                for w in batch {
                    // A lookup dropped since needs no answer.
                    let _ = w
                        .answer
                        .send(Message::Found(Ok(records.get(&w.digest).cloned())));
                }
                Ok(records.get(own).cloned())
            }
            Err(e) => {
                for w in batch {
                    let _ = w.answer.send(Message::Found(Err(copy(&e))));
                }
                Err(e)
            }
        }
    }

    /// Give back a [`Lead`], or pass it to the oldest lookup still queued.
    fn release(self: Arc<Self>) {
        loop {
            let next = {
                let mut state = self.lock();
                match state.queue.pop_front() {
                    Some(next) => next,
                    None => {
                        state.leading -= 1;
                        return;
                    }
                }
            };
            let lead = Lead {
                lookups: Some(Arc::clone(&self)),
            };
            // Outside the lock: a `Lead` handed back (its lookup was dropped) must not be
            // dropped while the lock is held, since dropping one takes the lock.
            match next.answer.send(Message::Lead(lead)) {
                Ok(()) => return,
                Err(returned) => {
                    // Its lookup was dropped: defuse the returned lead, try the next one.
                    if let Message::Lead(mut lead) = returned {
                        lead.lookups = None;
                    }
                }
            }
        }
    }

    /// Hand every kept connection back to the pool (before the pool is closed, which waits
    /// for every connection handed out).
    pub(super) fn close(&self) {
        let kept = core::mem::take(&mut self.lock().kept);
        drop(kept);
    }

    /// The newest kept connection if it was kept less than [`KEEP`] ago (older ones go back
    /// to the pool).
    fn kept(&self) -> Option<PoolConnection<Postgres>> {
        let (fresh, stale) = {
            let mut state = self.lock();
            let fresh = state
                .kept
                .pop()
                .filter(|(_, at)| at.elapsed() < KEEP)
                .map(|(c, _)| c);
            // Older than the newest: older still. Handed back outside the lock.
            let stale = if fresh.is_none() {
                core::mem::take(&mut state.kept)
            } else {
                Vec::new()
            };
            (fresh, stale)
        };
        drop(stale);
        fresh
    }

    /// Keep the connection of a query that succeeded, for the next one (at most one per
    /// query slot; more go back to the pool).
    fn keep(&self, c: PoolConnection<Postgres>) {
        let extra = {
            let mut state = self.lock();
            if state.kept.len() < self.queries {
                state.kept.push((c, Instant::now()));
                None
            } else {
                Some(c)
            }
        };
        drop(extra);
    }

    /// The connection to run a lookup query on: the kept one if there is one (`true`: not
    /// checked), else one the pool checks.
    async fn connection(
        &self,
        kept: &mut Option<PoolConnection<Postgres>>,
    ) -> Result<(PoolConnection<Postgres>, bool), StoreError> {
        match kept.take() {
            Some(c) => Ok((c, true)),
            None => Ok((self.pool.acquire().await.map_err(db)?, false)),
        }
    }

    /// What a query on `c` answered: the answer (the connection kept), or `None` to run it once
    /// more, when it failed on a kept connection (not checked: a query that starts later on one
    /// the pool checks still answers freshly).
    fn answered<T>(
        &self,
        c: PoolConnection<Postgres>,
        was_kept: bool,
        answer: Result<T, sqlx::Error>,
    ) -> Option<Result<T, StoreError>> {
        match answer {
            Ok(answer) => {
                self.keep(c);
                Some(Ok(answer))
            }
            Err(_) if was_kept => None,
            Err(e) => Some(Err(db(e))),
        }
    }

    /// One lookup, alone.
    async fn find_one(&self, digest: &Digest) -> Found {
        let (key, bytes) = codec::digest(digest);
        let mut kept = self.kept();
        let row = loop {
            let (mut c, was_kept) = self.connection(&mut kept).await?;
            let answer = sqlx::query(FIND_SHARED)
                .bind(key)
                .bind(&bytes[..])
                .fetch_optional(&mut *c)
                .await;
            if let Some(answer) = self.answered(c, was_kept, answer) {
                break answer?;
            }
        };
        row.as_ref()
            .map(|r| codec::shared_record(r).map(Arc::new))
            .transpose()
    }

    /// Many lookups in one query, by digest.
    async fn find_many(
        &self,
        keys: Vec<i64>,
        digests: Vec<Vec<u8>>,
    ) -> Result<HashMap<Digest, Arc<SharedRecord>>, StoreError> {
        let mut kept = self.kept();
        let rows = loop {
            let (mut c, was_kept) = self.connection(&mut kept).await?;
            let answer = sqlx::query(FIND_SHARED_MANY)
                .bind(&keys[..])
                .bind(&digests[..])
                .fetch_all(&mut *c)
                .await;
            if let Some(answer) = self.answered(c, was_kept, answer) {
                break answer?;
            }
        };
        rows.iter()
            .map(|r| {
                let shared = codec::shared_record(r)?;
                Ok((shared.record().digest, Arc::new(shared)))
            })
            .collect()
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        let kept = core::mem::take(
            &mut self
                .state
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .kept,
        );
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to hand them back to the pool on (sqlx spawns that): close them here;
            // the pool counts them out and opens others when needed.
            for (c, _) in kept {
                drop(c.detach());
            }
        }
    }
}

fn db(e: sqlx::Error) -> StoreError {
    map_sqlx_error(e, "token")
}

/// The same failure, for another lookup of a failed batch: the same kind (so a temporary
/// failure stays temporary) and message.
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound { what } => StoreError::NotFound { what },
        StoreError::AlreadyExists { what } => StoreError::AlreadyExists { what },
        StoreError::Conflict => StoreError::Conflict,
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        other => StoreError::Backend(other.to_string().into()),
    }
}
