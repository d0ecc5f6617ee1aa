//! The PostgreSQL change watch: LISTEN on a connection of its own, a heartbeat on it, and an
//! explicit new LISTEN after every loss, each gap reported as [`Change::Lost`] then
//! [`Change::Resumed`].
//!
//! sqlx's [`PgListener`] reconnects by itself inside `recv` without saying so; here it is told
//! not to (`eager_reconnect(false)`), and a listener is never asked for anything again once it
//! reported a loss: it is dropped, and a new one on a new connection LISTENs explicitly. So
//! every gap in the subscription is seen by the watcher.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tessera_core::id::TokenId;
use tessera_store::{Change, ChangeSink};

/// The channel migration 3's trigger notifies: payload `"<schema> <token id>"`.
const CHANGES_CHANNEL: &str = "tessera_token_changes";

/// The first wait between two reconnection attempts; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(25);

/// The longest wait between two reconnection attempts: once the server answers again, the
/// watch resumes within this (plus one connection and one LISTEN).
const RETRY_MAX: Duration = Duration::from_millis(250);

/// The token id of a change notification about tokens in `schema`, or `None` for another
/// schema's (or a malformed) payload.
fn changed_token(payload: &str, schema: &str) -> Option<TokenId> {
    let (in_schema, id) = payload.split_once(' ')?;
    if in_schema != schema {
        return None;
    }
    id.parse().ok()
}

/// A watch's settings: where to connect, which schema's changes, how often to check the
/// connection.
pub(super) struct Watch {
    pub(super) options: PgConnectOptions,
    pub(super) schema: String,
    /// With no message for this long, a heartbeat query is sent; it must answer within this
    /// long too. A silent connection is therefore noticed within twice this.
    pub(super) heartbeat: Duration,
}

impl Watch {
    /// Connect and LISTEN; the subscription is in force once this returns.
    pub(super) async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        // A pool of its own for each connection: the listener holds its one connection for as
        // long as it runs, and must not take one of the store's (a pool of one would deadlock).
        let own = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(self.connect_timeout())
            .test_before_acquire(false)
            .connect_lazy_with(self.options.clone());
        let mut listener = PgListener::connect_with(&own).await?;
        // Never reconnect silently inside `recv`: a loss must be seen here.
        listener.eager_reconnect(false);
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(listener)
    }

    /// How long one connection attempt (connect and LISTEN) may take.
    fn connect_timeout(&self) -> Duration {
        self.heartbeat.saturating_mul(5).max(Duration::from_secs(1))
    }

    /// Report changes to `sink` from `listener` (already listening), and through every loss,
    /// until the sink no longer wants them.
    pub(super) async fn run(self, mut listener: PgListener, sink: ChangeSink) {
        loop {
            let Some(why) = self.receive(&mut listener, &sink).await else {
                return;
            };
            // The listener is never used again: dropping it closes its connection (it cannot
            // reconnect behind our back).
            drop(listener);
            let lost_at = Instant::now();
            tracing::warn!(
                schema = %self.schema,
                reason = %why,
                "tessera: PostgreSQL change watch lost; changes may go unreported until it \
                 listens again"
            );
            if !sink.changed(Change::Lost) {
                return;
            }
            let Some(again) = self.reconnect(&sink).await else {
                return;
            };
            listener = again;
            let down = lost_at.elapsed();
            tracing::info!(
                schema = %self.schema,
                down_ms = u64::try_from(down.as_millis()).unwrap_or(u64::MAX),
                "tessera: PostgreSQL change watch resumed (listening again)"
            );
            if !sink.changed(Change::Resumed) {
                return;
            }
        }
    }

    /// Pass notifications on until the connection is lost (`Some(why)`) or the sink is no
    /// longer interested (`None`).
    async fn receive(&self, listener: &mut PgListener, sink: &ChangeSink) -> Option<String> {
        loop {
            tokio::select! {
                // `try_recv` is cancel safe: a message is consumed only once whole.
                got = listener.try_recv() => match got {
                    Ok(Some(n)) => {
                        if let Some(id) = changed_token(n.payload(), &self.schema) {
                            if !sink.changed(Change::Token(id)) {
                                return None;
                            }
                        }
                    }
                    Ok(None) => return Some("the server closed the connection".to_owned()),
                    Err(e) => return Some(e.to_string()),
                },
                () = tokio::time::sleep(self.heartbeat) => {
                    if !sink.wanted() {
                        return None;
                    }
                    let ping = sqlx::query("SELECT 1").execute(&mut *listener);
                    match tokio::time::timeout(self.heartbeat, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Some(format!("heartbeat failed: {e}")),
                        Err(_) => {
                            return Some(format!(
                                "no answer to a heartbeat within {} ms",
                                self.heartbeat.as_millis()
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Connect and LISTEN again, retrying every [`RETRY_MIN`] to [`RETRY_MAX`], until it works
    /// (`Some`) or the sink is no longer wanted (`None`).
    async fn reconnect(&self, sink: &ChangeSink) -> Option<PgListener> {
        let mut wait = RETRY_MIN;
        let mut attempts = 0u32;
        loop {
            if !sink.wanted() {
                return None;
            }
            attempts = attempts.saturating_add(1);
            match tokio::time::timeout(self.connect_timeout(), self.listen()).await {
                Ok(Ok(listener)) => return Some(listener),
                Ok(Err(e)) => {
                    tracing::debug!(schema = %self.schema, attempts, error = %e,
                        "tessera: PostgreSQL change watch cannot listen yet");
                }
                Err(_) => {
                    tracing::debug!(schema = %self.schema, attempts,
                        "tessera: PostgreSQL change watch connection attempt timed out");
                }
            }
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2).min(RETRY_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_of_other_schemas_or_malformed_are_ignored() {
        let id = TokenId::from_u128(7);
        assert_eq!(changed_token(&format!("s {id}"), "s"), Some(id));
        assert_eq!(changed_token(&format!("t {id}"), "s"), None);
        assert_eq!(changed_token("s nonsense", "s"), None);
        assert_eq!(changed_token("nospace", "s"), None);
    }
}
