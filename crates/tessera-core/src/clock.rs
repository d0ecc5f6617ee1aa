//! [`Clock`]: the only way Tessera reads the time.

use core::fmt;
use std::cell::Cell;
use std::sync::Mutex;
use std::time::SystemTime;

use time::{Duration, OffsetDateTime};

/// A source of the current time. The service reads it once per operation and passes `now` down;
/// no rule reads the time any other way.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The current time in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

std::thread_local! {
    /// The last whole second this thread turned into a date and time, and that date and time.
    static SECOND: Cell<(u64, OffsetDateTime)> =
        const { Cell::new((u64::MAX, OffsetDateTime::UNIX_EPOCH)) };
}

impl Clock for SystemClock {
    /// The same instant as [`OffsetDateTime::now_utc`], cheaper: the calendar date and time of
    /// day are worked out once per second per thread, and only the nanoseconds replaced within
    /// it (validation reads the clock on every call).
    #[expect(clippy::disallowed_methods, reason = "the one system clock")]
    fn now(&self) -> OffsetDateTime {
        let Ok(since) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) else {
            return OffsetDateTime::now_utc();
        };
        let secs = since.as_secs();
        let Ok(whole) = i64::try_from(secs) else {
            return OffsetDateTime::now_utc();
        };
        SECOND.with(|cell| {
            let (cached, at) = cell.get();
            let at = if cached == secs {
                at
            } else {
                let Ok(at) = OffsetDateTime::from_unix_timestamp(whole) else {
                    return OffsetDateTime::now_utc();
                };
                cell.set((secs, at));
                at
            };
            at.replace_nanosecond(since.subsec_nanos()).unwrap_or(at)
        })
    }
}

/// A clock that only moves when told: for tests of expiry, dormancy and grace windows without
/// sleeping.
///
/// ```
/// use tessera_core::clock::{Clock, ManualClock};
/// use time::{Duration, macros::datetime};
///
/// let clock = ManualClock::new(datetime!(2026-01-01 0:00 UTC));
/// clock.advance(Duration::days(30));
/// assert_eq!(clock.now(), datetime!(2026-01-31 0:00 UTC));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub const fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Move the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }

    /// Set the clock.
    pub fn set(&self, to: OffsetDateTime) {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Across second boundaries (where the cached date and time is recomputed) the system clock
    /// reads what `now_utc` reads around it.
    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "the reference it is checked against"
    )]
    fn system_clock_agrees_with_now_utc_across_seconds() {
        let start = OffsetDateTime::now_utc();
        let mut seconds_crossed = 0;
        let mut last = start;
        while seconds_crossed < 2 {
            let before = OffsetDateTime::now_utc();
            let read = SystemClock.now();
            let after = OffsetDateTime::now_utc();
            assert!(
                before <= read && read <= after,
                "{before} <= {read} <= {after}"
            );
            assert_eq!(read.offset(), time::UtcOffset::UTC);
            if read.unix_timestamp() != last.unix_timestamp() {
                seconds_crossed += 1;
            }
            last = read;
            std::thread::sleep(std::time::Duration::from_millis(3));
            assert!(after - start < Duration::seconds(10), "the clock must move");
        }
    }
}
