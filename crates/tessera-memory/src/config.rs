//! [`MemoryLimits`]: how much a [`MemoryStore`](crate::MemoryStore) keeps per token.

/// Bounds on what a [`MemoryStore`](crate::MemoryStore) keeps per token, so that a token used
/// from very many addresses or redeemed by very many devices cannot exhaust memory.
///
/// # Notes
///
/// - **Usage entries.** When a token already has `max_usage_entries_per_token` entries and a new
///   address or endpoint uses it, the entry seen least recently that is *not blocked* is
///   dropped first (its counts are lost). Blocked entries are never dropped, so a block list
///   always holds; a token whose entries are all blocked keeps growing by its blocked entries.
/// - **Enrollments.** Every device a token enrolled is kept (so a repeat by an enrolled device is
///   always recognised and consumes nothing, as on SQL), up to `max_enrollments_per_token`: a
///   redemption by a new device beyond it fails with `StoreError::LimitReached` and changes
///   nothing (no use consumed); enrolled devices still get their enrollment back.
///
/// - **Audit events.** Beyond `max_audit_events` in all, the oldest events are dropped (the
///   memory store is for tests, examples and single processes; a durable trail is a SQL
///   backend's).
///
/// # Default
///
/// 4,096 usage entries and 100,000 enrollments per token, 1,000,000 audit events. A limit of 0
/// is taken as 1.
///
/// # Examples
///
/// ```
/// use tessera_memory::{MemoryLimits, MemoryStore};
///
/// let limits = MemoryLimits::new()
///     .with_max_usage_entries_per_token(256)
///     .with_max_enrollments_per_token(10_000);
/// let store = MemoryStore::with_limits(limits);
/// assert_eq!(store.limits().max_usage_entries_per_token, 256);
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct MemoryLimits {
    /// Usage entries (addresses, endpoints) kept per token.
    pub max_usage_entries_per_token: usize,
    /// Enrollments (redeeming devices) kept per token; a new device beyond it is refused.
    pub max_enrollments_per_token: usize,
    /// Audit events kept in all (the oldest go first).
    pub max_audit_events: usize,
}

impl MemoryLimits {
    /// The default usage entries kept per token.
    pub const DEFAULT_USAGE_ENTRIES: usize = 4_096;
    /// The default enrollments kept per token.
    pub const DEFAULT_ENROLLMENTS: usize = 100_000;
    /// The default audit events kept.
    pub const DEFAULT_AUDIT_EVENTS: usize = 1_000_000;

    /// The defaults.
    pub const fn new() -> Self {
        Self {
            max_usage_entries_per_token: Self::DEFAULT_USAGE_ENTRIES,
            max_enrollments_per_token: Self::DEFAULT_ENROLLMENTS,
            max_audit_events: Self::DEFAULT_AUDIT_EVENTS,
        }
    }

    /// Keep at most `n` usage entries per token (at least 1).
    #[must_use]
    pub const fn with_max_usage_entries_per_token(mut self, n: usize) -> Self {
        self.max_usage_entries_per_token = n;
        self
    }

    /// Keep at most `n` enrollments per token (at least 1); a new device beyond it is refused
    /// with `StoreError::LimitReached`.
    #[must_use]
    pub const fn with_max_enrollments_per_token(mut self, n: usize) -> Self {
        self.max_enrollments_per_token = n;
        self
    }

    /// Keep at most `n` audit events in all (at least 1); the oldest go first.
    #[must_use]
    pub const fn with_max_audit_events(mut self, n: usize) -> Self {
        self.max_audit_events = n;
        self
    }

    /// The audit cap actually applied.
    pub(crate) fn audit_cap(self) -> usize {
        self.max_audit_events.max(1)
    }

    /// The usage cap actually applied.
    pub(crate) fn usage_cap(self) -> usize {
        self.max_usage_entries_per_token.max(1)
    }

    /// The enrollment cap actually applied.
    pub(crate) fn enrollment_cap(self) -> usize {
        self.max_enrollments_per_token.max(1)
    }
}

impl Default for MemoryLimits {
    fn default() -> Self {
        Self::new()
    }
}
