//! Concurrency: every decision the store makes atomically holds when many tasks race on a
//! multi-thread runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use libtest_mimic::Failed;
use tessera_core::id::{ApplicationName, DeviceId};
use tessera_core::kind::KindData;
use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use tessera_core::validate::Rejection;
use time::Duration;
use tokio::sync::Barrier;

use super::fixtures::{self, application, at, ip, onboarding_record, record};
use super::records::stored;
use super::{Case, Context, Outcome};
use crate::{Redemption, StateChange, Store, StoreError, UsageOutcome, UsageSubject};

pub(super) fn cases() -> Vec<Case> {
    cases![
        redeem_admits_exactly_the_limit,
        redeem_unlimited_admits_every_attempt,
        redeem_admits_exactly_the_limit_of_each_token,
        redeem_binds_exactly_one_first_device,
        redeem_with_repeated_devices_enrolls_each_device_once,
        redeem_with_fewer_devices_than_uses_enrolls_them_all,
        record_usage_counts_add_up,
        change_state_has_one_winner,
        replace_has_one_winner,
        touch_writes_once_per_interval,
        insert_application_name_has_one_winner,
        insert_names_in_any_case_have_one_winner,
    ]
}

/// Tasks racing in each case.
const TASKS: usize = 64;

/// Run `f(0..n)` as `n` tasks released together; their outputs in task order.
async fn race<T, F, Fut>(n: usize, f: F) -> Result<Vec<T>, Failed>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let task = f(i);
            tokio::spawn(async move {
                barrier.wait().await;
                task.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.ctx("a racing task")?);
    }
    Ok(out)
}

/// `attempts` redemptions of `r` by distinct devices from `TASKS` tasks at one instant; each
/// answer with its device.
async fn hammer(
    store: &Arc<dyn Store>,
    r: &TokenRecord,
    attempts: usize,
) -> Result<Vec<(DeviceId, Redemption)>, Failed> {
    let next = Arc::new(AtomicUsize::new(0));
    let per_task = race(TASKS, |_| {
        let (store, next, digest) = (Arc::clone(store), Arc::clone(&next), r.digest);
        async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= attempts {
                    return Ok::<_, Failed>(out);
                }
                let dev = DeviceId::parse(format!("device-{i:05}"))?;
                let got = store
                    .redeem(&digest, &dev, at(10), &crate::RedeemEvents::NONE)
                    .await
                    .ctx("redeem")?;
                out.push((dev, got));
            }
        }
    })
    .await?;
    let mut all = Vec::with_capacity(attempts);
    for answers in per_task {
        all.extend(answers?);
    }
    ensure_eq!(all.len(), attempts, "answers");
    Ok(all)
}

/// Check the winners of a hammering: `expected` redemptions, each returning a distinct use
/// count from 1 to `expected`, only the last exhausting a limited token; enrollments hold
/// exactly the winners.
async fn check_winners(
    store: &Arc<dyn Store>,
    r: &TokenRecord,
    answers: &[(DeviceId, Redemption)],
    expected: u64,
) -> Outcome {
    let mut winners = BTreeSet::new();
    let mut counts = BTreeSet::new();
    for (dev, answer) in answers {
        match answer {
            Redemption::Redeemed(after) => {
                winners.insert(dev.clone());
                counts.insert(after.uses);
                let last = r.limit.max() == Some(after.uses);
                let state = if last {
                    State::Exhausted
                } else {
                    State::Active
                };
                ensure_eq!(after.state, state, "state returned with use {}", after.uses);
            }
            Redemption::Refused(why) => {
                ensure_eq!(*why, Rejection::Exhausted, "refusal of {dev}");
            }
            Redemption::Repeated { .. } => {
                return Err(Failed::from(format!(
                    "{dev} redeemed once, answered as a repeat"
                )));
            }
        }
    }
    ensure_eq!(u64::try_from(winners.len())?, expected, "devices admitted");
    ensure_eq!(
        counts,
        (1..=expected).collect::<BTreeSet<_>>(),
        "use counts returned"
    );
    let after = stored(&**store, r.id).await?;
    ensure_eq!(after.uses, expected, "stored uses");
    let state = if r.limit.max().is_some() {
        State::Exhausted
    } else {
        State::Active
    };
    ensure_eq!(after.state, state, "stored state");
    let enrolled = store.enrollments(r.id).await.ctx("enrollments")?;
    ensure_eq!(u64::try_from(enrolled.len())?, expected, "enrollments");
    let devices: BTreeSet<_> = enrolled.into_iter().map(|e| e.device).collect();
    ensure_eq!(devices, winners, "enrolled devices");
    Ok(())
}

/// A token with 100 uses, raced by 64 tasks making 1,000 attempts, admits exactly 100 distinct
/// devices and refuses the rest as `Exhausted`.
async fn redeem_admits_exactly_the_limit(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::uses(100)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let answers = hammer(&store, &r, 1_000).await?;
    check_winners(&store, &r, &answers, 100).await
}

/// An unlimited token, raced by 64 tasks making 1,000 attempts, admits every one.
async fn redeem_unlimited_admits_every_attempt(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::Unlimited)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let answers = hammer(&store, &r, 1_000).await?;
    check_winners(&store, &r, &answers, 1_000).await
}

/// 64 tasks making 2,000 attempts spread over 100 tokens of one to three uses (every
/// last use contested): each token admits exactly its limit.
async fn redeem_admits_exactly_the_limit_of_each_token(store: Arc<dyn Store>) -> Outcome {
    const ATTEMPTS: usize = 2_000;
    let mut tokens = Vec::with_capacity(100);
    for i in 0..100 {
        tokens.push(onboarding_record(UsageLimit::uses(i % 3 + 1)?)?);
    }
    store.insert_many(&tokens, &[]).await.ctx("insert_many")?;
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let per_task = race(TASKS, |_| {
        let (store, next, tokens) = (Arc::clone(&store), Arc::clone(&next), Arc::clone(&tokens));
        async move {
            let mut admitted = vec![0u64; tokens.len()];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ATTEMPTS {
                    return Ok::<_, Failed>(admitted);
                }
                // Neighbouring attempts, which run at once, go to the same token.
                let k = (i / 8) % tokens.len();
                let dev = DeviceId::parse(format!("device-{i:05}"))?;
                match store
                    .redeem(&tokens[k].digest, &dev, at(10), &crate::RedeemEvents::NONE)
                    .await
                    .ctx("redeem")?
                {
                    Redemption::Redeemed(_) => admitted[k] += 1,
                    Redemption::Refused(Rejection::Exhausted) => {}
                    Redemption::Refused(why) => {
                        return Err(Failed::from(format!("refused as {why:?}, not Exhausted")));
                    }
                    Redemption::Repeated { .. } => {
                        return Err(Failed::from("a device redeeming once answered as a repeat"));
                    }
                }
            }
        }
    })
    .await?;
    let mut admitted = vec![0u64; tokens.len()];
    for task in per_task {
        for (total, n) in admitted.iter_mut().zip(task?) {
            *total += n;
        }
    }
    for (r, n) in tokens.iter().zip(admitted) {
        let limit = r.limit.max().ctx("a limited token")?;
        ensure_eq!(n, limit, "devices admitted by a token of {limit} uses");
        let after = stored(&*store, r.id).await?;
        ensure_eq!(
            (after.uses, after.state),
            (limit, State::Exhausted),
            "stored uses and state"
        );
        let enrolled = store.enrollments(r.id).await.ctx("enrollments")?;
        ensure_eq!(u64::try_from(enrolled.len())?, limit, "enrollments");
    }
    Ok(())
}

/// 64 devices racing for a first-device token with uses to spare: exactly one is admitted and
/// bound, the others are refused with `DeviceMismatch`.
async fn redeem_binds_exactly_one_first_device(store: Arc<dyn Store>) -> Outcome {
    let mut r = onboarding_record(UsageLimit::uses(10)?)?;
    r.data = fixtures::onboarding(DeviceBinding::FirstDevice(None))?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let answers = race(TASKS, |i| {
        let (store, digest) = (Arc::clone(&store), r.digest);
        async move {
            let dev = DeviceId::parse(format!("device-{i}"))?;
            let got = store
                .redeem(&digest, &dev, at(1), &crate::RedeemEvents::NONE)
                .await
                .ctx("redeem")?;
            Ok::<_, Failed>((dev, got))
        }
    })
    .await?;
    let mut winner = None;
    for answer in answers {
        match answer? {
            (dev, Redemption::Redeemed(_)) => {
                ensure!(
                    winner.is_none(),
                    "two devices were admitted: {winner:?} and {dev}"
                );
                winner = Some(dev);
            }
            (dev, Redemption::Refused(why)) => {
                ensure_eq!(why, Rejection::DeviceMismatch, "refusal of {dev}");
            }
            (dev, got @ Redemption::Repeated { .. }) => {
                return Err(Failed::from(format!("{dev} redeeming once: {got:?}")));
            }
        }
    }
    let winner = winner.ctx("the device admitted")?;
    let after = stored(&*store, r.id).await?;
    ensure_eq!(after.uses, 1, "uses");
    ensure_eq!(
        after.data,
        fixtures::onboarding(DeviceBinding::FirstDevice(Some(winner)))?,
        "binding"
    );
    Ok(())
}

/// 64 tasks counting 40 uses each over four addresses and an endpoint: every count adds up,
/// and each use is returned a distinct count.
async fn record_usage_counts_add_up(store: Arc<dyn Store>) -> Outcome {
    const CALLS: usize = 40;
    let r = record(application("busy")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let subjects = Arc::new(vec![
        UsageSubject::Ip(ip("192.0.2.1")?),
        UsageSubject::Ip(ip("192.0.2.2")?),
        UsageSubject::Ip(ip("2001:db8::3")?),
        UsageSubject::Ip(ip("2001:db8::4")?),
        UsageSubject::Endpoint(
            fixtures::endpoint("/busy")?,
            tessera_core::kind::endpoint::Method::Get,
        ),
    ]);
    let answers = race(TASKS, |t| {
        let (store, subjects, id) = (Arc::clone(&store), Arc::clone(&subjects), r.id);
        async move {
            let mut out = Vec::with_capacity(CALLS);
            for k in 0..CALLS {
                let s = &subjects[(t + k) % subjects.len()];
                let got = store.record_usage(id, s, at(5)).await.ctx("record_usage")?;
                out.push((s.clone(), got));
            }
            Ok::<_, Failed>(out)
        }
    })
    .await?;
    let mut returned: BTreeMap<UsageSubject, BTreeSet<u64>> = BTreeMap::new();
    for answer in answers {
        for (s, got) in answer? {
            match got {
                UsageOutcome::Counted(e) => {
                    ensure!(
                        returned.entry(s).or_default().insert(e.count),
                        "count {} returned twice",
                        e.count
                    );
                }
                UsageOutcome::Blocked => return Err(Failed::from("a use was refused as blocked")),
            }
        }
    }
    let mut expected: BTreeMap<UsageSubject, u64> = BTreeMap::new();
    for t in 0..TASKS {
        for k in 0..CALLS {
            *expected
                .entry(subjects[(t + k) % subjects.len()].clone())
                .or_default() += 1;
        }
    }
    for (s, n) in &expected {
        let got = returned.get(s).cloned().unwrap_or_default();
        ensure_eq!(
            got,
            (1..=*n).collect::<BTreeSet<_>>(),
            "counts returned for {s:?}"
        );
    }
    let stored_counts: BTreeMap<_, _> = store
        .usage(r.id)
        .await
        .ctx("usage")?
        .into_iter()
        .map(|e| (e.subject, e.count))
        .collect();
    ensure_eq!(stored_counts, expected, "stored counts");
    Ok(())
}

/// 64 compare-and-set changes from the same state: exactly one wins, the rest are `Conflict`.
async fn change_state_has_one_winner(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("contested")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let targets = [
        State::Disabled,
        State::Dormant,
        State::Revoked,
        State::Superseded,
    ];
    let answers = race(TASKS, |i| {
        let store = Arc::clone(&store);
        let change = StateChange::new(State::Active, targets[i % targets.len()], at(1));
        async move { store.change_state(r.id, &change, &[]).await }
    })
    .await?;
    let mut winner = None;
    for answer in answers {
        match answer {
            Ok(after) => {
                ensure!(winner.is_none(), "two changes won");
                winner = Some(after.state);
            }
            Err(StoreError::Conflict) => {}
            Err(e) => {
                return Err(Failed::from(format!(
                    "a losing change failed otherwise: {e}"
                )));
            }
        }
    }
    let state = winner.ctx("the winning change")?;
    ensure_eq!(stored(&*store, r.id).await?.state, state, "stored state");
    Ok(())
}

/// 64 rotations of one token, each with its own successor taking the same application name:
/// exactly one happens, the rest are `Conflict` and store nothing.
async fn replace_has_one_winner(store: Arc<dyn Store>) -> Outcome {
    let old = record(application("rotating")?)?;
    store.insert(&old, &[]).await.ctx("insert")?;
    let mut news = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        news.push(record(application("rotating")?)?);
    }
    let news = Arc::new(news);
    let answers = race(TASKS, |i| {
        let (store, news) = (Arc::clone(&store), Arc::clone(&news));
        async move {
            let new = &news[i];
            let change = StateChange {
                grace_until: Some(at(3_600)),
                successor: Some(new.id),
                ..StateChange::new(State::Active, State::Superseded, at(1))
            };
            store.replace(old.id, &change, new, &[]).await
        }
    })
    .await?;
    let mut winner = None;
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(_) => {
                ensure!(winner.is_none(), "two rotations won");
                winner = Some(i);
            }
            Err(StoreError::Conflict) => {}
            Err(e) => {
                return Err(Failed::from(format!(
                    "a losing rotation failed otherwise: {e}"
                )));
            }
        }
    }
    let winner = winner.ctx("the winning rotation")?;
    let after = stored(&*store, old.id).await?;
    ensure_eq!(after.successor, Some(news[winner].id), "successor");
    ensure_eq!(after.state, State::Superseded, "old state");
    for (i, new) in news.iter().enumerate() {
        let found = store.get(new.id).await.ctx("get")?;
        ensure_eq!(found.is_some(), i == winner, "successor {i} stored");
    }
    Ok(())
}

/// 64 touches within one interval: exactly one writes, and its instant is stored.
async fn touch_writes_once_per_interval(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("touched")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let answers = race(TASKS, |i| {
        let store = Arc::clone(&store);
        let now = at(100) + Duration::milliseconds(i64::try_from(i).unwrap_or(0));
        async move {
            store
                .touch(r.id, now, Duration::seconds(60))
                .await
                .map(|w| (w, now))
        }
    })
    .await?;
    let mut written = Vec::new();
    for answer in answers {
        let (wrote, now) = answer.ctx("touch")?;
        if wrote {
            written.push(now);
        }
    }
    ensure_eq!(written.len(), 1, "touches that wrote");
    ensure_eq!(
        stored(&*store, r.id).await?.last_used_at,
        written.first().copied(),
        "last use"
    );
    Ok(())
}

/// 64 inserts of application tokens named `only-one` in varied case, and 64 of one owner's
/// auth tokens named `Deploy` in varied case, racing: exactly one of each is stored.
async fn insert_names_in_any_case_have_one_winner(store: Arc<dyn Store>) -> Outcome {
    let spell = |base: &str, i: usize| -> String {
        base.chars()
            .enumerate()
            .map(|(j, c)| {
                if (i >> (j % 6)) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    };
    let mut rs = Vec::with_capacity(2 * TASKS);
    for i in 0..TASKS {
        rs.push(record(application(&spell("only-one", i))?)?);
        rs.push(record(fixtures::auth(
            "carol",
            &spell("deploy", i),
            &["p"],
        )?)?);
    }
    let rs = Arc::new(rs);
    let answers = race(2 * TASKS, |i| {
        let (store, rs) = (Arc::clone(&store), Arc::clone(&rs));
        async move { (rs[i].kind(), store.insert(&rs[i], &[]).await) }
    })
    .await?;
    let mut won = BTreeMap::new();
    for (kind, answer) in answers {
        match answer {
            Ok(()) => *won.entry(kind.as_str()).or_insert(0) += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => {
                return Err(Failed::from(format!(
                    "a losing insert failed otherwise: {e}"
                )));
            }
        }
    }
    ensure_eq!(
        won.get("application"),
        Some(&1),
        "application inserts that won"
    );
    ensure_eq!(won.get("auth"), Some(&1), "auth inserts that won");
    Ok(())
}

/// 64 inserts of application tokens with one name: exactly one is stored, the rest are
/// `AlreadyExists`.
async fn insert_application_name_has_one_winner(store: Arc<dyn Store>) -> Outcome {
    let mut rs = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        rs.push(record(application("only-one")?)?);
    }
    let rs = Arc::new(rs);
    let answers = race(TASKS, |i| {
        let (store, rs) = (Arc::clone(&store), Arc::clone(&rs));
        async move { store.insert(&rs[i], &[]).await }
    })
    .await?;
    let mut won = 0;
    for answer in answers {
        match answer {
            Ok(()) => won += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => {
                return Err(Failed::from(format!(
                    "a losing insert failed otherwise: {e}"
                )));
            }
        }
    }
    ensure_eq!(won, 1, "inserts that won");
    let name = ApplicationName::parse("only-one")?;
    let holders = store
        .list(&crate::TokenFilter::default())
        .await
        .ctx("list")?
        .into_iter()
        .filter(|t| matches!(&t.data, KindData::Application(a) if a.name == name))
        .count();
    ensure_eq!(holders, 1, "stored tokens with the name");
    Ok(())
}

/// 64 tasks make `attempts` redemptions of `r` by `devices` distinct devices, each device
/// coming back many times (attempt `i` is device `i % devices`). Checks one device, one use:
/// exactly min(limit, devices) distinct devices enrolled, each once and with exactly one
/// `Redeemed`, every other answer to an enrolled device `Repeated` with its enrollment, every
/// answer to a device left out `Refused(Exhausted)`; the stored uses match.
async fn hammer_with_repeats(
    store: &Arc<dyn Store>,
    r: &TokenRecord,
    devices: usize,
    attempts: usize,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let per_task = race(TASKS, |_| {
        let (store, next, digest) = (Arc::clone(store), Arc::clone(&next), r.digest);
        async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= attempts {
                    return Ok::<_, Failed>(out);
                }
                let dev = DeviceId::parse(format!("device-{:05}", i % devices))?;
                let got = store
                    .redeem(&digest, &dev, at(10), &crate::RedeemEvents::NONE)
                    .await
                    .ctx("redeem")?;
                out.push((dev, got));
            }
        }
    })
    .await?;
    let mut by_device: BTreeMap<DeviceId, Vec<Redemption>> = BTreeMap::new();
    for answers in per_task {
        for (dev, got) in answers? {
            by_device.entry(dev).or_default().push(got);
        }
    }
    let expected = r.limit.max().map_or(devices, |n| {
        devices.min(usize::try_from(n).unwrap_or(usize::MAX))
    });
    let enrolled = store.enrollments(r.id).await.ctx("enrollments")?;
    let enrolled_devices: BTreeSet<_> = enrolled.iter().map(|e| e.device.clone()).collect();
    ensure_eq!(enrolled.len(), expected, "enrollments");
    ensure_eq!(
        enrolled_devices.len(),
        expected,
        "distinct devices enrolled"
    );
    let mut winners = BTreeSet::new();
    for (dev, answers) in &by_device {
        let redeemed = answers
            .iter()
            .filter(|a| matches!(a, Redemption::Redeemed(_)))
            .count();
        if enrolled_devices.contains(dev) {
            ensure_eq!(redeemed, 1, "uses consumed by enrolled {dev}");
            winners.insert(dev.clone());
            let first = enrolled
                .iter()
                .find(|e| &e.device == dev)
                .ctx("its enrollment")?;
            for a in answers {
                match a {
                    Redemption::Redeemed(_) => {}
                    Redemption::Repeated { enrollment, .. } => {
                        ensure_eq!(enrollment, first, "enrollment returned to {dev}");
                    }
                    Redemption::Refused(why) => {
                        return Err(Failed::from(format!(
                            "enrolled {dev} refused on a repeat: {why:?}"
                        )));
                    }
                }
            }
        } else {
            ensure!(
                answers
                    .iter()
                    .all(|a| *a == Redemption::Refused(Rejection::Exhausted)),
                "{dev}, not enrolled, was answered {answers:?}"
            );
        }
    }
    ensure_eq!(winners, enrolled_devices, "devices answered Redeemed");
    let after = stored(&**store, r.id).await?;
    ensure_eq!(after.uses, u64::try_from(expected)?, "stored uses");
    let state = if r.limit.max() == Some(u64::try_from(expected)?) {
        State::Exhausted
    } else {
        State::Active
    };
    ensure_eq!(after.state, state, "stored state");
    Ok(())
}

/// A token with 50 uses, raced by 64 tasks making 1,000 attempts by 80 devices that each come
/// back about 12 times: exactly 50 distinct devices enroll, never 51, and no device is
/// enrolled twice or consumes two uses.
async fn redeem_with_repeated_devices_enrolls_each_device_once(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::uses(50)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    hammer_with_repeats(&store, &r, 80, 1_000).await
}

/// A token with 100 uses and 30 devices each redeeming about 33 times: all 30 enroll, once
/// each, and 70 uses are left (never fewer devices while uses remain).
async fn redeem_with_fewer_devices_than_uses_enrolls_them_all(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::uses(100)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    hammer_with_repeats(&store, &r, 30, 1_000).await
}
