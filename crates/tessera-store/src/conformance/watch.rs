//! Change watching: a backend that watches reports exactly the changes a validation depends on.
//! A backend that does not watch (`watch` answers `false`) passes these cases as they stand.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration as StdDuration, Instant};

use tessera_core::lifecycle::State;
use time::Duration;

use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};

use super::fixtures::{application, at, deployment, device, digest, ip, onboarding, record};
use super::{Case, Context, Outcome};
use crate::{
    BatchId, Change, ChangeSink, StateChange, Store, UsageBatch, UsageDelta, UsageSubject,
};

pub(super) fn cases() -> Vec<Case> {
    cases![
        watch_reports_what_validation_reads_and_nothing_else,
        watch_stops_once_the_sink_declines,
        watch_reports_blocks_and_not_batches,
    ]
}

/// Reports received so far.
type Seen = Arc<Mutex<Vec<Change>>>;

fn recorder(answer: bool) -> (Seen, ChangeSink) {
    let seen: Seen = Arc::default();
    let into = seen.clone();
    let sink: ChangeSink = Arc::new(move |c| {
        into.lock().unwrap_or_else(PoisonError::into_inner).push(c);
        answer
    });
    (seen, sink)
}

fn snapshot(seen: &Seen) -> Vec<Change> {
    seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Wait up to 10 s until `seen` holds `n` reports; what it holds then.
async fn settle(seen: &Seen, n: usize) -> Vec<Change> {
    let start = Instant::now();
    while snapshot(seen).len() < n && start.elapsed() < StdDuration::from_secs(10) {
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    // Anything reported that should not have been has had time to arrive too.
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    snapshot(seen)
}

/// State changes, new secrets, kind-data updates, the last use of a limited token and removals
/// are reported, in order; inserts, last-use times and unchanged redemptions are not.
async fn watch_reports_what_validation_reads_and_nothing_else(store: Arc<dyn Store>) -> Outcome {
    let (seen, sink) = recorder(true);
    if !store.watch(sink).await.ctx("watch")? {
        return Ok(());
    }
    let a = record(deployment("a")?)?;
    let b = record(deployment("b")?)?;
    let mut limited = record(onboarding(DeviceBinding::Any)?)?;
    limited.limit = UsageLimit::uses(2).ctx("limit")?;
    for r in [&a, &b, &limited] {
        store.insert(r, &[]).await.ctx("insert")?;
    }
    store
        .touch(a.id, at(10), Duration::seconds(60))
        .await
        .ctx("touch")?;
    let device = device("dev-1")?;
    store
        .redeem(&limited.digest, &device, at(11), &crate::RedeemEvents::NONE)
        .await
        .ctx("redeem, one use left")?;
    store
        .change_state(
            a.id,
            &StateChange::new(State::Active, State::Revoked, at(12)),
            &[],
        )
        .await
        .ctx("change_state")?;
    store
        .update_data(b.id, &deployment("b-renamed")?, &[])
        .await
        .ctx("update_data")?;
    let (new_digest, new_hint) = digest(b.kind())?;
    store
        .set_digest(b.id, &new_digest, &new_hint, &[])
        .await
        .ctx("set_digest")?;
    store
        .redeem(
            &limited.digest,
            &super::fixtures::device("dev-2")?,
            at(13),
            &crate::RedeemEvents::NONE,
        )
        .await
        .ctx("redeem, the last use")?;
    store.purge(&[a.id], &[]).await.ctx("purge")?;
    let want = vec![
        Change::Token(a.id),
        Change::Token(b.id),
        Change::Token(b.id),
        Change::Token(limited.id),
        Change::Token(a.id),
    ];
    let got = settle(&seen, want.len()).await;
    ensure_eq!(
        got,
        want,
        "reports (the touch and the first redemption change nothing read)"
    );
    Ok(())
}

/// Once the sink answers `false` it is told nothing more.
async fn watch_stops_once_the_sink_declines(store: Arc<dyn Store>) -> Outcome {
    let (seen, sink) = recorder(false);
    if !store.watch(sink).await.ctx("watch")? {
        return Ok(());
    }
    let a = record(deployment("a")?)?;
    let b = record(deployment("b")?)?;
    for r in [&a, &b] {
        store.insert(r, &[]).await.ctx("insert")?;
    }
    for r in [&a, &b] {
        store
            .change_state(
                r.id,
                &StateChange::new(State::Active, State::Revoked, at(5)),
                &[],
            )
            .await
            .ctx("change_state")?;
    }
    let got = settle(&seen, 2).await;
    ensure_eq!(got, vec![Change::Token(a.id)], "one report, then none");
    Ok(())
}

/// A block and an unblock (the block list travels with the record) are reported; a ledger
/// batch (counts, last use, audit) is not.
async fn watch_reports_blocks_and_not_batches(store: Arc<dyn Store>) -> Outcome {
    let (seen, sink) = recorder(true);
    if !store.watch(sink).await.ctx("watch")? {
        return Ok(());
    }
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let addr = ip("203.0.113.9")?;
    let mut batch = UsageBatch::new(BatchId(1));
    batch.usage = vec![UsageDelta {
        token: r.id,
        subject: UsageSubject::Ip(addr),
        first_seen: at(1),
        last_seen: at(2),
        count: 2,
    }];
    batch.last_used = vec![(r.id, at(2))];
    store.record_batch(&batch).await.ctx("record_batch")?;
    store
        .set_blocked(r.id, addr, true, &[])
        .await
        .ctx("block")?;
    store
        .set_blocked(r.id, addr, false, &[])
        .await
        .ctx("unblock")?;
    let got = settle(&seen, 2).await;
    ensure_eq!(
        got,
        vec![Change::Token(r.id), Change::Token(r.id)],
        "reports (the batch changes nothing a validation reads)"
    );
    Ok(())
}
