//! What every pool of this crate does with connections handed back: a connection still in a
//! transaction is closed (rolling the transaction back), never handed out again.
//!
//! An operation dropped at the wrong moment can leave one so: sqlx's SQLite driver acknowledges
//! a `BEGIN` through a channel, and a future dropped after the acknowledgement was sent but
//! before it was read leaves the transaction open with no `Transaction` to end it. Handed out
//! again, that connection would run every later statement inside it — writes never committed,
//! reads from an old snapshot — until sqlx closed it and everything was rolled back.

use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database};

/// `options`, closing on release (and refusing on acquire) any connection in a transaction.
pub(crate) fn never_in_transaction<DB: Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
    options
        .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
        .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
}
