//! The usage ledger's batch write ([`Store::record_batch`]) and the shared validation lookup
//! ([`Store::find_shared`]) with the block list that travels with the record.

use std::sync::Arc;

use tessera_core::audit::{AuditAction, RowKey};
use tessera_core::id::TokenId;
use tessera_core::kind::endpoint::Method;
use tessera_core::validate::Rejection;

use super::fixtures::{application, at, endpoint, event, ip, record, secondary};
use super::{Case, Context, Outcome};
use crate::{AuditFilter, BatchId, Store, UsageBatch, UsageDelta, UsageEntry, UsageSubject};

pub(super) fn cases() -> Vec<Case> {
    cases![
        record_batch_adds_counts_and_widens_times,
        record_batch_moves_last_use_only_later,
        record_batch_written_twice_counts_once,
        record_batch_replaces_a_row_by_its_key,
        record_batch_skips_unknown_tokens_and_keeps_events,
        record_batch_counts_blocked_entries_and_keeps_the_block,
        record_batch_of_ten_thousand_deltas_counts_each,
        find_shared_carries_the_block_list,
        find_shared_of_unknown_digest_is_none,
    ]
}

fn batch(id: u128) -> UsageBatch {
    UsageBatch::new(BatchId(id))
}

fn delta(token: TokenId, subject: UsageSubject, count: u64, first: i64, last: i64) -> UsageDelta {
    UsageDelta {
        token,
        subject,
        first_seen: at(first),
        last_seen: at(last),
        count,
    }
}

fn entry(token: TokenId, subject: UsageSubject, count: u64, first: i64, last: i64) -> UsageEntry {
    UsageEntry {
        token,
        subject,
        first_seen: Some(at(first)),
        last_seen: Some(at(last)),
        count,
        blocked: false,
    }
}

/// A batch adds its counts to existing and new entries, widens first and last seen, sets the
/// last use and appends its events, and says it wrote.
async fn record_batch_adds_counts_and_widens_times(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    let s = record(secondary("ci", true)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    store.insert(&s, &[]).await.ctx("insert")?;
    let a = UsageSubject::Ip(ip("203.0.113.9")?);
    let b = UsageSubject::Ip(ip("198.51.100.1")?);
    let e = UsageSubject::Endpoint(endpoint("/api/hooks/build")?, Method::Post);
    store
        .record_usage(r.id, &a, at(10))
        .await
        .ctx("record_usage")?;
    let mut first = batch(1);
    first.usage = vec![
        delta(r.id, a.clone(), 5, 5, 20),
        delta(r.id, b.clone(), 2, 7, 8),
        delta(s.id, e.clone(), 3, 1, 2),
    ];
    first.last_used = vec![(r.id, at(20)), (s.id, at(2))];
    let summary = event(
        at(5),
        AuditAction::UsedMany {
            count: 7,
            last: at(20),
            addresses: 2,
            row: None,
        },
    )
    .about(&r);
    first.events = vec![summary.clone()];
    ensure!(
        store.record_batch(&first).await.ctx("record_batch")?,
        "a new batch must say it wrote"
    );
    ensure_eq!(
        store.usage(r.id).await.ctx("usage")?,
        vec![entry(r.id, b, 2, 7, 8), entry(r.id, a, 6, 5, 20),],
        "the address entries (198.51.100.1 orders before 203.0.113.9)"
    );
    ensure_eq!(
        store.usage(s.id).await.ctx("usage")?,
        vec![entry(s.id, e, 3, 1, 2)],
        "the endpoint entry"
    );
    ensure_eq!(
        store
            .get(r.id)
            .await
            .ctx("get")?
            .ctx("record")?
            .last_used_at,
        Some(at(20)),
        "last use"
    );
    ensure_eq!(
        store
            .events(&AuditFilter::default().token(r.id))
            .await
            .ctx("events")?,
        vec![summary],
        "events"
    );
    Ok(())
}

/// A batch never moves a last use earlier than the one stored.
async fn record_batch_moves_last_use_only_later(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let mut later = batch(1);
    later.last_used = vec![(r.id, at(50))];
    store.record_batch(&later).await.ctx("record_batch")?;
    let mut earlier = batch(2);
    earlier.last_used = vec![(r.id, at(40))];
    store.record_batch(&earlier).await.ctx("record_batch")?;
    ensure_eq!(
        store
            .get(r.id)
            .await
            .ctx("get")?
            .ctx("record")?
            .last_used_at,
        Some(at(50)),
        "last use after an earlier one arrived late"
    );
    Ok(())
}

/// The same batch written again (a retry after a lost answer) changes nothing and says so.
async fn record_batch_written_twice_counts_once(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let a = UsageSubject::Ip(ip("203.0.113.9")?);
    let mut b = batch(0xfeed);
    b.usage = vec![delta(r.id, a.clone(), 4, 1, 3)];
    b.events = vec![event(at(1), AuditAction::Used).about(&r)];
    ensure!(
        store.record_batch(&b).await.ctx("first write")?,
        "first write must write"
    );
    ensure!(
        !store.record_batch(&b).await.ctx("second write")?,
        "the same batch again must not write"
    );
    ensure_eq!(
        store.usage(r.id).await.ctx("usage")?,
        vec![entry(r.id, a.clone(), 4, 1, 3)],
        "counted once"
    );
    ensure_eq!(
        store
            .events(&AuditFilter::default().token(r.id))
            .await
            .ctx("events")?
            .len(),
        1,
        "events appended once"
    );
    // Another id writes again.
    b.id = BatchId(0xbeef);
    ensure!(
        store.record_batch(&b).await.ctx("third write")?,
        "a new id writes"
    );
    ensure_eq!(
        store.usage(r.id).await.ctx("usage")?,
        vec![entry(r.id, a, 8, 1, 3)],
        "counted twice under two ids"
    );
    Ok(())
}

/// An aggregated row whose key is stored replaces the stored row (one row per key, the
/// latest version), in batches of later ids; rows of other keys, and events without a key,
/// are appended; a retried batch replaces nothing.
async fn record_batch_replaces_a_row_by_its_key(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let used = |count: u64, last: i64, key: u128| {
        event(
            at(10),
            AuditAction::UsedMany {
                count,
                last: at(last),
                addresses: 1,
                row: Some(RowKey::from_u128(key)),
            },
        )
        .about(&r)
    };
    let refused = |count: u64, key: u128| {
        event(
            at(11),
            AuditAction::RefusedMany {
                reason: Rejection::IpBlocked,
                count,
                last: at(12),
                addresses: 1,
                row: Some(RowKey::from_u128(key)),
            },
        )
        .about(&r)
    };
    let events = || async {
        store
            .events(&AuditFilter::default().token(r.id))
            .await
            .ctx("events")
    };
    let mut first = batch(1);
    first.events = vec![used(3, 12, 7), refused(1, 8)];
    ensure!(store.record_batch(&first).await.ctx("first")?, "writes");
    ensure_eq!(
        events().await?,
        vec![used(3, 12, 7), refused(1, 8)],
        "two rows"
    );
    let mut second = batch(2);
    second.events = vec![used(5, 20, 7), event(at(30), AuditAction::Used).about(&r)];
    ensure!(store.record_batch(&second).await.ctx("second")?, "writes");
    ensure_eq!(
        events().await?,
        vec![
            used(5, 20, 7),
            refused(1, 8),
            event(at(30), AuditAction::Used).about(&r)
        ],
        "row 7 replaced by its later version, in its place; the plain event appended"
    );
    let mut third = batch(3);
    third.events = vec![used(9, 25, 7), refused(4, 8), used(1, 10, 9)];
    ensure!(store.record_batch(&third).await.ctx("third")?, "writes");
    // The retry of an older batch changes nothing.
    ensure!(
        !store.record_batch(&second).await.ctx("retry")?,
        "a batch written before is not written again"
    );
    let all = events().await?;
    ensure_eq!(all.len(), 4, "rows 7, 8 and 9 and the plain event: {all:?}");
    let count = |key: u128| {
        all.iter()
            .filter(|e| e.action.row() == Some(RowKey::from_u128(key)))
            .map(|e| match e.action {
                AuditAction::UsedMany { count, .. } | AuditAction::RefusedMany { count, .. } => {
                    count
                }
                _ => 0,
            })
            .collect::<Vec<_>>()
    };
    ensure_eq!(count(7), vec![9], "row 7: its latest version only");
    ensure_eq!(count(8), vec![4], "row 8: its latest version only");
    ensure_eq!(count(9), vec![1], "row 9: new");
    Ok(())
}

/// Counts and last uses of a token that is gone are skipped; the batch's events stay, and the
/// other tokens' counts are written.
async fn record_batch_skips_unknown_tokens_and_keeps_events(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    let gone = record(application("gone")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    store.insert(&gone, &[]).await.ctx("insert")?;
    store.purge(&[gone.id], &[]).await.ctx("purge")?;
    let a = UsageSubject::Ip(ip("203.0.113.9")?);
    let mut b = batch(7);
    b.usage = vec![
        delta(gone.id, a.clone(), 2, 1, 2),
        delta(r.id, a.clone(), 1, 3, 3),
    ];
    b.last_used = vec![(gone.id, at(2)), (r.id, at(3))];
    b.events = vec![event(at(1), AuditAction::Used).about(&gone)];
    ensure!(store.record_batch(&b).await.ctx("record_batch")?, "written");
    ensure_eq!(
        store.usage(gone.id).await.ctx("usage")?,
        vec![],
        "gone token"
    );
    ensure!(
        store.get(gone.id).await.ctx("get")?.is_none(),
        "the purged token must not come back"
    );
    ensure_eq!(
        store.usage(r.id).await.ctx("usage")?,
        vec![entry(r.id, a, 1, 3, 3)],
        "the other token"
    );
    ensure_eq!(
        store
            .events(&AuditFilter::default().token(gone.id))
            .await
            .ctx("events")?
            .len(),
        1,
        "the purged token's event"
    );
    Ok(())
}

/// Uses accepted before a block count after it, and the block stays.
async fn record_batch_counts_blocked_entries_and_keeps_the_block(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let addr = ip("203.0.113.9")?;
    store
        .set_blocked(r.id, addr, true, &[])
        .await
        .ctx("block")?;
    let mut b = batch(9);
    b.usage = vec![delta(r.id, UsageSubject::Ip(addr), 2, 1, 2)];
    store.record_batch(&b).await.ctx("record_batch")?;
    let mut want = entry(r.id, UsageSubject::Ip(addr), 2, 1, 2);
    want.blocked = true;
    ensure_eq!(store.usage(r.id).await.ctx("usage")?, vec![want], "entry");
    ensure!(
        store.is_blocked(r.id, addr).await.ctx("is_blocked")?,
        "still blocked"
    );
    Ok(())
}

/// One batch of 10^4 deltas over 10^3 tokens is written whole.
async fn record_batch_of_ten_thousand_deltas_counts_each(store: Arc<dyn Store>) -> Outcome {
    let mut tokens = Vec::new();
    for i in 0..1000 {
        tokens.push(record(application(&format!("app-{i}"))?)?);
    }
    store.insert_many(&tokens, &[]).await.ctx("insert_many")?;
    let mut b = batch(11);
    for (i, t) in tokens.iter().enumerate() {
        for k in 0..10u8 {
            let subject = UsageSubject::Ip(std::net::IpAddr::from([10, 0, k, 1]));
            let n = u64::try_from(i % 7).unwrap_or(0) + 1;
            b.usage.push(delta(t.id, subject, n, 1, 2));
        }
        b.last_used.push((t.id, at(2)));
    }
    ensure!(store.record_batch(&b).await.ctx("record_batch")?, "written");
    for (i, t) in tokens.iter().enumerate().step_by(97) {
        let usage = store.usage(t.id).await.ctx("usage")?;
        let n = u64::try_from(i % 7).unwrap_or(0) + 1;
        ensure_eq!(usage.len(), 10, "entries of token {i}");
        ensure!(
            usage.iter().all(|u| u.count == n),
            "token {i}: every entry counts {n}: {usage:?}"
        );
        ensure_eq!(
            store
                .get(t.id)
                .await
                .ctx("get")?
                .ctx("record")?
                .last_used_at,
            Some(at(2)),
            "last use of token {i}"
        );
    }
    Ok(())
}

/// The shared lookup returns the record with the addresses blocked for it, as they are at the
/// lookup; a block or an unblock shows in the next lookup.
async fn find_shared_carries_the_block_list(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let (a, b) = (ip("203.0.113.9")?, ip("2001:db8::1")?);
    let shared = store
        .find_shared(&r.digest)
        .await
        .ctx("find_shared")?
        .ctx("record")?;
    ensure_eq!(*shared.record(), r, "record");
    ensure!(shared.blocked().is_empty(), "nothing blocked yet");
    store.set_blocked(r.id, a, true, &[]).await.ctx("block")?;
    store.set_blocked(r.id, b, true, &[]).await.ctx("block")?;
    // A counted, unblocked address is not in the list.
    store
        .record_usage(r.id, &UsageSubject::Ip(ip("198.51.100.1")?), at(1))
        .await
        .ctx("record_usage")?;
    let shared = store
        .find_shared(&r.digest)
        .await
        .ctx("find_shared")?
        .ctx("record")?;
    ensure!(
        shared.is_blocked(a) && shared.is_blocked(b),
        "both blocked: {shared:?}"
    );
    ensure!(
        shared.is_blocked(ip("::ffff:203.0.113.9")?),
        "a block holds for every spelling"
    );
    ensure_eq!(shared.blocked().len(), 2, "only the blocked addresses");
    store
        .set_blocked(r.id, a, false, &[])
        .await
        .ctx("unblock")?;
    let shared = store
        .find_shared(&r.digest)
        .await
        .ctx("find_shared")?
        .ctx("record")?;
    ensure!(
        !shared.is_blocked(a) && shared.is_blocked(b),
        "a unblocked: {shared:?}"
    );
    Ok(())
}

/// A digest no token has finds nothing.
async fn find_shared_of_unknown_digest_is_none(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    ensure!(
        store
            .find_shared(&r.digest)
            .await
            .ctx("find_shared")?
            .is_none(),
        "nothing stored"
    );
    Ok(())
}
