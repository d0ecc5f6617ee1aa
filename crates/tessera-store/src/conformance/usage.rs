//! Usage: per-IP logs with blocking (application tokens) and traffic per endpoint and method
//! (endpoint tokens).

use std::sync::Arc;

use tessera_core::id::TokenId;
use tessera_core::kind::endpoint::Method;

use super::fixtures::{application, at, endpoint, ip, primary, record, secondary};
use super::records::insert_all;
use super::{Case, Context, Outcome};
use crate::{Store, StoreError, UsageEntry, UsageOutcome, UsageSubject};

pub(super) fn cases() -> Vec<Case> {
    cases![
        record_usage_counts_ip_with_first_and_last_seen,
        record_usage_counts_endpoint_subject,
        record_usage_keeps_subjects_and_tokens_apart,
        record_usage_refuses_blocked_ip,
        record_usage_unknown_token_is_not_found,
        set_blocked_creates_entry_without_uses,
        set_blocked_keeps_counts,
        set_blocked_false_unblocks,
        set_blocked_unknown_token_is_not_found,
        is_blocked_follows_set_blocked,
        usage_is_ordered_by_subject,
        usage_of_unused_token_is_empty,
        endpoint_usage_spans_every_token_of_the_endpoint,
    ]
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

/// Each accepted use counts one, keeps the first instant and moves the last; the entry is
/// returned as it is now.
async fn record_usage_counts_ip_with_first_and_last_seen(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let subject = UsageSubject::Ip(ip("203.0.113.9")?);
    for (n, secs) in [(1, 10), (2, 20), (3, 35)] {
        let got = store
            .record_usage(r.id, &subject, at(secs))
            .await
            .ctx("record_usage")?;
        ensure_eq!(
            got,
            UsageOutcome::Counted(entry(r.id, subject.clone(), n, 10, secs)),
            "use {n}"
        );
    }
    ensure_eq!(
        store.usage(r.id).await.ctx("usage")?,
        vec![entry(r.id, subject, 3, 10, 35)],
        "usage"
    );
    Ok(())
}

/// Endpoint and method subjects count like addresses.
async fn record_usage_counts_endpoint_subject(store: Arc<dyn Store>) -> Outcome {
    let r = record(secondary("ci", true)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let subject = UsageSubject::Endpoint(endpoint("/api/hooks/build")?, Method::Post);
    store
        .record_usage(r.id, &subject, at(1))
        .await
        .ctx("record_usage")?;
    let got = store
        .record_usage(r.id, &subject, at(2))
        .await
        .ctx("record_usage")?;
    ensure_eq!(
        got,
        UsageOutcome::Counted(entry(r.id, subject.clone(), 2, 1, 2)),
        "second use"
    );
    ensure_eq!(
        store.usage(r.id).await.ctx("usage")?,
        vec![entry(r.id, subject, 2, 1, 2)],
        "usage"
    );
    Ok(())
}

/// IPv4 and IPv6 addresses, endpoints, methods and tokens are counted separately.
async fn record_usage_keeps_subjects_and_tokens_apart(store: Arc<dyn Store>) -> Outcome {
    let a = record(application("a")?)?;
    let b = record(application("b")?)?;
    insert_all(&*store, &[a.clone(), b.clone()]).await?;
    let subjects = [
        UsageSubject::Ip(ip("192.0.2.1")?),
        UsageSubject::Ip(ip("192.0.2.10")?),
        UsageSubject::Ip(ip("2001:db8::1")?),
        UsageSubject::Ip(ip("2001:db8::10")?),
        UsageSubject::Endpoint(endpoint("/x")?, Method::Get),
        UsageSubject::Endpoint(endpoint("/x")?, Method::Delete),
        UsageSubject::Endpoint(endpoint("/X")?, Method::Get),
        UsageSubject::Endpoint(endpoint("/x/")?, Method::Get),
    ];
    for (i, s) in subjects.iter().enumerate() {
        for k in 0..=i {
            store
                .record_usage(a.id, s, at(i64::try_from(k)?))
                .await
                .ctx("record_usage")?;
        }
    }
    store
        .record_usage(b.id, &subjects[0], at(99))
        .await
        .ctx("record_usage")?;
    let mut got = store.usage(a.id).await.ctx("usage")?;
    got.sort_by(|x, y| x.subject.cmp(&y.subject));
    let mut expected = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        let i = i64::try_from(i)?;
        expected.push(entry(a.id, s.clone(), u64::try_from(i + 1)?, 0, i));
    }
    expected.sort_by(|x, y| x.subject.cmp(&y.subject));
    ensure_eq!(got, expected, "usage of a");
    ensure_eq!(
        store.usage(b.id).await.ctx("usage")?,
        vec![entry(b.id, subjects[0].clone(), 1, 99, 99)],
        "usage of b"
    );
    Ok(())
}

/// A blocked address is answered `Blocked` and its entry does not change.
async fn record_usage_refuses_blocked_ip(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let addr = ip("198.51.100.4")?;
    let subject = UsageSubject::Ip(addr);
    store
        .record_usage(r.id, &subject, at(1))
        .await
        .ctx("record_usage")?;
    store
        .record_usage(r.id, &subject, at(2))
        .await
        .ctx("record_usage")?;
    store
        .set_blocked(r.id, addr, true, &[])
        .await
        .ctx("set_blocked")?;
    ensure_eq!(
        store
            .record_usage(r.id, &subject, at(3))
            .await
            .ctx("record_usage")?,
        UsageOutcome::Blocked,
        "use from a blocked address"
    );
    let blocked = UsageEntry {
        blocked: true,
        ..entry(r.id, subject, 2, 1, 2)
    };
    ensure_eq!(
        store.usage(r.id).await.ctx("usage")?,
        vec![blocked],
        "usage"
    );
    Ok(())
}

/// Counting a use of a token that does not exist is `NotFound`, and nothing is stored.
async fn record_usage_unknown_token_is_not_found(store: Arc<dyn Store>) -> Outcome {
    let id = TokenId::generate()?;
    ensure_matches!(
        store
            .record_usage(id, &UsageSubject::Ip(ip("192.0.2.1")?), at(1))
            .await,
        Err(StoreError::NotFound { .. }),
        "record_usage of an unknown token"
    );
    ensure!(
        store.usage(id).await.ctx("usage")?.is_empty(),
        "usage stored for an unknown token"
    );
    Ok(())
}

/// Blocking (or unblocking) an address never seen creates its entry with no uses.
async fn set_blocked_creates_entry_without_uses(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let (a, b) = (ip("192.0.2.50")?, ip("2001:db8::50")?);
    let blank = |addr, blocked| UsageEntry {
        token: r.id,
        subject: UsageSubject::Ip(addr),
        first_seen: None,
        last_seen: None,
        count: 0,
        blocked,
    };
    ensure_eq!(
        store
            .set_blocked(r.id, a, true, &[])
            .await
            .ctx("set_blocked")?,
        blank(a, true),
        "block"
    );
    ensure_eq!(
        store
            .set_blocked(r.id, b, false, &[])
            .await
            .ctx("set_blocked")?,
        blank(b, false),
        "unblock"
    );
    let mut got = store.usage(r.id).await.ctx("usage")?;
    got.sort_by(|x, y| x.subject.cmp(&y.subject));
    ensure_eq!(got, vec![blank(a, true), blank(b, false)], "usage");
    Ok(())
}

/// Blocking an address keeps its count and instants.
async fn set_blocked_keeps_counts(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let addr = ip("192.0.2.60")?;
    for secs in [5, 6, 7] {
        store
            .record_usage(r.id, &UsageSubject::Ip(addr), at(secs))
            .await
            .ctx("record_usage")?;
    }
    let got = store
        .set_blocked(r.id, addr, true, &[])
        .await
        .ctx("set_blocked")?;
    ensure_eq!(
        got,
        UsageEntry {
            blocked: true,
            ..entry(r.id, UsageSubject::Ip(addr), 3, 5, 7)
        },
        "entry"
    );
    Ok(())
}

/// Unblocking lets uses count again, from where the count was.
async fn set_blocked_false_unblocks(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let addr = ip("192.0.2.70")?;
    let subject = UsageSubject::Ip(addr);
    store
        .record_usage(r.id, &subject, at(1))
        .await
        .ctx("record_usage")?;
    store
        .set_blocked(r.id, addr, true, &[])
        .await
        .ctx("block")?;
    ensure_eq!(
        store
            .record_usage(r.id, &subject, at(2))
            .await
            .ctx("record_usage")?,
        UsageOutcome::Blocked,
        "blocked"
    );
    let got = store
        .set_blocked(r.id, addr, false, &[])
        .await
        .ctx("unblock")?;
    ensure_eq!(
        got,
        entry(r.id, subject.clone(), 1, 1, 1),
        "entry after unblocking"
    );
    ensure_eq!(
        store
            .record_usage(r.id, &subject, at(3))
            .await
            .ctx("record_usage")?,
        UsageOutcome::Counted(entry(r.id, subject, 2, 1, 3)),
        "use after unblocking"
    );
    Ok(())
}

/// Blocking an address for a token that does not exist is `NotFound`.
async fn set_blocked_unknown_token_is_not_found(store: Arc<dyn Store>) -> Outcome {
    let id = TokenId::generate()?;
    ensure_matches!(
        store.set_blocked(id, ip("192.0.2.1")?, true, &[]).await,
        Err(StoreError::NotFound { .. }),
        "set_blocked of an unknown token"
    );
    ensure!(
        !store
            .is_blocked(id, ip("192.0.2.1")?)
            .await
            .ctx("is_blocked")?,
        "blocked anyway"
    );
    Ok(())
}

/// `is_blocked` is false for an unknown address, true once blocked for that token only, and
/// false again once unblocked.
async fn is_blocked_follows_set_blocked(store: Arc<dyn Store>) -> Outcome {
    let a = record(application("a")?)?;
    let b = record(application("b")?)?;
    insert_all(&*store, &[a.clone(), b.clone()]).await?;
    let addr = ip("2001:db8::beef")?;
    ensure!(
        !store.is_blocked(a.id, addr).await.ctx("is_blocked")?,
        "unknown address blocked"
    );
    store
        .record_usage(a.id, &UsageSubject::Ip(addr), at(1))
        .await
        .ctx("record_usage")?;
    ensure!(
        !store.is_blocked(a.id, addr).await.ctx("is_blocked")?,
        "used address blocked"
    );
    store
        .set_blocked(a.id, addr, true, &[])
        .await
        .ctx("block")?;
    ensure!(
        store.is_blocked(a.id, addr).await.ctx("is_blocked")?,
        "blocked address not blocked"
    );
    ensure!(
        !store.is_blocked(b.id, addr).await.ctx("is_blocked")?,
        "blocked for another token"
    );
    ensure!(
        !store
            .is_blocked(a.id, ip("2001:db8::bee")?)
            .await
            .ctx("is_blocked")?,
        "neighbour blocked"
    );
    store
        .set_blocked(a.id, addr, false, &[])
        .await
        .ctx("unblock")?;
    ensure!(
        !store.is_blocked(a.id, addr).await.ctx("is_blocked")?,
        "unblocked address blocked"
    );
    Ok(())
}

/// A token's entries are listed in subject order: addresses (IPv4 before IPv6, numerically),
/// then endpoints by id and method.
async fn usage_is_ordered_by_subject(store: Arc<dyn Store>) -> Outcome {
    let r = record(primary("/p", Method::Get)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let subjects = [
        UsageSubject::Endpoint(endpoint("/b")?, Method::Get),
        UsageSubject::Ip(ip("2001:db8::2")?),
        UsageSubject::Ip(ip("10.0.0.10")?),
        UsageSubject::Endpoint(endpoint("/a")?, Method::Delete),
        UsageSubject::Ip(ip("10.0.0.9")?),
        UsageSubject::Endpoint(endpoint("/a")?, Method::Get),
        UsageSubject::Ip(ip("::1")?),
        UsageSubject::Ip(ip("9.255.255.255")?),
    ];
    for s in &subjects {
        store
            .record_usage(r.id, s, at(1))
            .await
            .ctx("record_usage")?;
    }
    let mut expected = subjects.to_vec();
    expected.sort();
    let got: Vec<_> = store
        .usage(r.id)
        .await
        .ctx("usage")?
        .into_iter()
        .map(|e| e.subject)
        .collect();
    ensure_eq!(got, expected, "subject order");
    Ok(())
}

/// A token never used has no entries.
async fn usage_of_unused_token_is_empty(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    ensure!(
        store.usage(r.id).await.ctx("usage")?.is_empty(),
        "entries appeared"
    );
    Ok(())
}

/// Traffic of one endpoint lists the entries of every token for that endpoint, any method,
/// and nothing of other endpoints or addresses.
async fn endpoint_usage_spans_every_token_of_the_endpoint(store: Arc<dyn Store>) -> Outcome {
    let p = record(primary("/hook", Method::Post)?)?;
    let s1 = record(secondary("one", true)?)?;
    let s2 = record(secondary("two", true)?)?;
    let app = record(application("app")?)?;
    insert_all(&*store, &[p.clone(), s1.clone(), s2.clone(), app.clone()]).await?;
    let hook = |m| -> Result<UsageSubject, libtest_mimic::Failed> {
        Ok(UsageSubject::Endpoint(endpoint("/hook")?, m))
    };
    let other = UsageSubject::Endpoint(endpoint("/hook2")?, Method::Post);
    let uses = [
        (p.id, hook(Method::Post)?, 1),
        (s1.id, hook(Method::Post)?, 2),
        (s1.id, hook(Method::Get)?, 3),
        (s2.id, hook(Method::Delete)?, 4),
        (s2.id, other.clone(), 5),
        (s1.id, UsageSubject::Ip(ip("192.0.2.1")?), 6),
        (app.id, UsageSubject::Ip(ip("192.0.2.1")?), 7),
    ];
    for (id, s, secs) in &uses {
        store
            .record_usage(*id, s, at(*secs))
            .await
            .ctx("record_usage")?;
    }
    store
        .record_usage(s1.id, &hook(Method::Post)?, at(8))
        .await
        .ctx("record_usage")?;
    let key = |e: &UsageEntry| (e.token, e.subject.clone());
    let mut got = store
        .endpoint_usage(&endpoint("/hook")?)
        .await
        .ctx("endpoint_usage")?;
    got.sort_by_key(key);
    let mut expected = vec![
        entry(p.id, hook(Method::Post)?, 1, 1, 1),
        entry(s1.id, hook(Method::Post)?, 2, 2, 8),
        entry(s1.id, hook(Method::Get)?, 1, 3, 3),
        entry(s2.id, hook(Method::Delete)?, 1, 4, 4),
    ];
    expected.sort_by_key(key);
    ensure_eq!(got, expected, "traffic of /hook");
    ensure!(
        store
            .endpoint_usage(&endpoint("/nothing")?)
            .await
            .ctx("endpoint_usage")?
            .is_empty(),
        "traffic of an unused endpoint"
    );
    Ok(())
}
