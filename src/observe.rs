//! Traces and metrics of the service: a `tracing` span per validation and per administrative
//! operation, and `metrics` counters and histograms, through the facades only (the application
//! installs the subscriber and the recorder it wants; none is forced on it).
//!
//! Nothing here ever sees a secret: a validation is described by its kind, the token's id
//! (once found), and the outcome's code.
//!
//! # Metrics
//!
//! | name | type | labels |
//! |---|---|---|
//! | `tessera_validations_total` | counter | `kind`, `outcome` (`accepted`, a rejection code, `error`) |
//! | `tessera_validation_duration_seconds` | histogram | `kind`; one validation in 16 per thread is timed |
//! | `tessera_redemptions_total` | counter | `outcome` |
//! | `tessera_store_errors_total` | counter | `class` (`unavailable`, `conflict`, `corrupt`, ...) |
//!
//! Handles are taken from the recorder at their first use, so install the recorder before the
//! first validation. The duration is sampled because reading a clock twice costs more than a
//! whole validation answered by the cache.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

use metrics::{Counter, Histogram};
use tessera_core::Kind;
use tessera_core::validate::Rejection;
use tessera_store::StoreError;
use tracing::field::{self, display};

use crate::request::Outcome;

/// Validation outcomes counted apart: accepted, error, and each rejection.
const OUTCOMES: usize = 20;

/// Time one validation in this many, per thread.
const SAMPLE_EVERY: u32 = 16;

thread_local! {
    static TICK: Cell<u32> = const { Cell::new(0) };
}

/// The service's metric handles, taken from the recorder at first use.
#[derive(Default)]
pub(crate) struct Observer {
    validations: [[OnceLock<Counter>; OUTCOMES]; 5],
    latency: [OnceLock<Histogram>; 5],
}

impl core::fmt::Debug for Observer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

const fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Deployment => 0,
        Kind::Onboarding => 1,
        Kind::Endpoint => 2,
        Kind::Auth => 3,
        Kind::Application => 4,
    }
}

const fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Accepted(_) => 0,
        Outcome::Failed(_) => 1,
        Outcome::Refused(r) => {
            2 + match r {
                Rejection::Malformed => 0,
                Rejection::NotFound => 1,
                Rejection::Expired => 2,
                Rejection::Revoked => 3,
                Rejection::RotatedOut => 4,
                Rejection::Disabled => 5,
                Rejection::Dormant => 6,
                Rejection::Exhausted => 7,
                Rejection::Deleted => 8,
                Rejection::IpBlocked => 9,
                Rejection::InsufficientScope => 10,
                Rejection::PermissionWithdrawn => 11,
                Rejection::WrongEndpoint => 12,
                Rejection::WrongMethod => 13,
                Rejection::MappingDisabled => 14,
                Rejection::DeviceMismatch => 15,
                Rejection::ToggledOff => 16,
                #[allow(unreachable_patterns, reason = "Rejection may grow")]
                _ => 17,
            }
        }
    }
}

impl Observer {
    /// When this validation started, if it is one of those timed.
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        let due = TICK.with(|t| {
            let n = t.get().wrapping_add(1);
            t.set(n);
            n % SAMPLE_EVERY == 0
        });
        due.then(Instant::now)
    }

    /// The span of a validation of `kind` (at DEBUG: kind, token id once known, outcome
    /// code), or `None` when no subscriber wants it. The caller runs the validation inside
    /// it and then calls [`traced`](Self::traced).
    #[inline]
    pub(crate) fn span(&self, kind: Kind) -> Option<tracing::Span> {
        let span = tracing::debug_span!(
            "tessera.validate",
            kind = kind.as_str(),
            token_id = field::Empty,
            outcome = field::Empty,
        );
        (!span.is_disabled()).then_some(span)
    }

    /// Record a finished validation's outcome in its span, with an event saying how long
    /// it took.
    pub(crate) fn traced(&self, span: &tracing::Span, outcome: &Outcome, begun: Instant) {
        span.record("outcome", outcome.code());
        if let Outcome::Accepted(access) = outcome {
            span.record("token_id", display(access.token()));
        }
        let micros = begun.elapsed().as_micros();
        span.in_scope(|| match outcome {
            Outcome::Refused(r) => {
                tracing::debug!(reason = r.code(), elapsed_us = micros, "token refused");
            }
            _ => tracing::debug!(outcome = outcome.code(), elapsed_us = micros, "validated"),
        });
    }

    /// Count a finished validation (and time it, if it was started timed).
    #[inline]
    pub(crate) fn validated(&self, kind: Kind, outcome: &Outcome, started: Option<Instant>) {
        let k = kind_index(kind);
        self.validations[k][outcome_index(outcome)]
            .get_or_init(|| {
                metrics::counter!(
                    "tessera_validations_total",
                    "kind" => kind.as_str(),
                    "outcome" => outcome.code(),
                )
            })
            .increment(1);
        if let Some(started) = started {
            self.latency[k]
                .get_or_init(|| {
                    metrics::histogram!(
                        "tessera_validation_duration_seconds",
                        "kind" => kind.as_str(),
                    )
                })
                .record(started.elapsed().as_secs_f64());
        }
        if kind == Kind::Onboarding {
            metrics::counter!("tessera_redemptions_total", "outcome" => outcome.code())
                .increment(1);
        }
        if let Outcome::Failed(e) = outcome {
            tracing::warn!(
                kind = kind.as_str(),
                error = %e,
                "validation undecided: the store failed; the request is refused"
            );
        }
    }
}

/// The class of a store error, as the `class` label of `tessera_store_errors_total`.
pub(crate) const fn store_error_class(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound { .. } => "not_found",
        StoreError::AlreadyExists { .. } => "already_exists",
        StoreError::Conflict => "conflict",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Backend(_) => "backend",
        #[allow(unreachable_patterns, reason = "StoreError may grow")]
        _ => "other",
    }
}

/// Count a store error reaching the caller.
pub(crate) fn store_error(e: &StoreError) {
    metrics::counter!("tessera_store_errors_total", "class" => store_error_class(e)).increment(1);
}
