//! Onboarding redemption and enrollments: what a redemption consumes and records, and every
//! reason it is refused.

use std::sync::Arc;

use libtest_mimic::Failed;
use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::id::DeviceId;
use tessera_core::kind::endpoint::Method;
use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera_core::kind::{KindData, OnboardingData};
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use tessera_core::validate::{Rejection, Request, validate};
use time::OffsetDateTime;

use super::fixtures::{self, at, device, onboarding_record, record};
use super::records::{insert_all, stored};
use super::{Case, Context, Outcome};
use crate::{AuditFilter, Enrollment, RedeemEvents, Redemption, StateChange, Store};

pub(super) fn cases() -> Vec<Case> {
    cases![
        redeem_consumes_one_use,
        redeem_exhausts_on_last_use,
        redeem_single_use_exhausts_at_once,
        redeem_unlimited_never_exhausts,
        redeem_in_grace_consumes_and_exhausts,
        redeem_binds_first_device,
        redeem_unknown_digest_is_not_found,
        redeem_other_kind_is_not_found,
        redeem_refuses_expired,
        redeem_refuses_revoked,
        redeem_refuses_disabled,
        redeem_refuses_dormant,
        redeem_refuses_deleted,
        redeem_refuses_rotated_out,
        redeem_refuses_exhausted,
        redeem_refuses_other_device_for_device_binding,
        redeem_refuses_other_device_after_first_device,
        redeem_classifies_like_validate,
        redeem_repeat_by_enrolled_device_consumes_nothing,
        redeem_repeat_by_bound_first_device_consumes_nothing,
        redeem_repeat_refused_when_token_is_out_of_force,
        enrollments_are_oldest_first,
        enrollments_of_unredeemed_token_are_empty,
        enrollments_of_many_tokens_in_one_read,
        redeem_stores_the_outcome_event_with_it,
        redeem_with_an_unstorable_event_is_undone,
    ]
}

/// Redeem and expect success; returns the record the store returned.
async fn redeemed(
    store: &dyn Store,
    r: &TokenRecord,
    dev: &DeviceId,
    now: OffsetDateTime,
) -> Result<TokenRecord, Failed> {
    match store
        .redeem(&r.digest, dev, now, &RedeemEvents::NONE)
        .await
        .ctx("redeem")?
    {
        Redemption::Redeemed(after) => Ok(after),
        Redemption::Refused(why) => Err(Failed::from(format!(
            "redeem by {dev} at {now} was refused ({why:?}); the record was {r:?}"
        ))),
        Redemption::Repeated { .. } => Err(Failed::from(format!(
            "redeem by {dev} at {now} was answered as a repeat; the record was {r:?}"
        ))),
    }
}

/// Redeem by a device enrolled at `first` and expect its enrollment back with nothing changed.
async fn repeated(
    store: &dyn Store,
    r: &TokenRecord,
    dev: &DeviceId,
    first: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<TokenRecord, Failed> {
    let before = stored(store, r.id).await?;
    let enrolled = store.enrollments(r.id).await.ctx("enrollments")?;
    let got = store
        .redeem(&r.digest, dev, now, &RedeemEvents::NONE)
        .await
        .ctx("redeem")?;
    let Redemption::Repeated { record, enrollment } = got else {
        return Err(Failed::from(format!(
            "a repeat by enrolled {dev} at {now} was answered {got:?}"
        )));
    };
    ensure_eq!(record, before, "record returned to a repeat");
    ensure_eq!(enrollment.device, *dev, "device of the enrollment returned");
    ensure_eq!(enrollment.at, first, "time of the enrollment returned");
    ensure_eq!(stored(store, r.id).await?, before, "record after a repeat");
    ensure_eq!(
        store.enrollments(r.id).await.ctx("enrollments")?,
        enrolled,
        "enrollments after a repeat"
    );
    Ok(record)
}

/// One device, one use: a repeat by an enrolled device consumes nothing and returns its
/// enrollment, also once the token is exhausted; a new device then is refused.
async fn redeem_repeat_by_enrolled_device_consumes_nothing(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::uses(3)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let (a, b, c, d) = (device("a")?, device("b")?, device("c")?, device("d")?);
    ensure_eq!(redeemed(&*store, &r, &a, at(1)).await?.uses, 1, "first use");
    let again = repeated(&*store, &r, &a, at(1), at(2)).await?;
    ensure_eq!(
        (again.uses, again.state),
        (1, State::Active),
        "after a repeat"
    );
    repeated(&*store, &r, &a, at(1), at(3)).await?;
    ensure_eq!(
        redeemed(&*store, &r, &b, at(4)).await?.uses,
        2,
        "second device"
    );
    let last = redeemed(&*store, &r, &c, at(5)).await?;
    ensure_eq!(
        (last.uses, last.state),
        (3, State::Exhausted),
        "third device"
    );
    for (dev, first) in [(&a, at(1)), (&b, at(4)), (&c, at(5))] {
        let got = repeated(&*store, &r, dev, first, at(6)).await?;
        ensure_eq!(got.state, State::Exhausted, "repeat after exhaustion");
    }
    refused_again(&*store, &r, &d, at(7), Rejection::Exhausted).await?;
    let devices: Vec<_> = store
        .enrollments(r.id)
        .await
        .ctx("enrollments")?
        .into_iter()
        .map(|e| e.device)
        .collect();
    ensure_eq!(devices, vec![a, b, c], "each device enrolled once");
    Ok(())
}

/// A first-device token: the bound device repeating consumes nothing.
async fn redeem_repeat_by_bound_first_device_consumes_nothing(store: Arc<dyn Store>) -> Outcome {
    let mut r = onboarding_record(UsageLimit::uses(5)?)?;
    r.data = fixtures::onboarding(DeviceBinding::FirstDevice(None))?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let a = device("first")?;
    redeemed(&*store, &r, &a, at(1)).await?;
    let got = repeated(&*store, &r, &a, at(1), at(2)).await?;
    ensure_eq!(got.uses, 1, "uses after a repeat");
    Ok(())
}

/// A repeat is refused like any redemption once the token is revoked, deactivated or expired.
async fn redeem_repeat_refused_when_token_is_out_of_force(store: Arc<dyn Store>) -> Outcome {
    let a = device("a")?;
    for (to, why) in [
        (State::Revoked, Rejection::Revoked),
        (State::Disabled, Rejection::Disabled),
    ] {
        let r = onboarding_record(UsageLimit::uses(3)?)?;
        store.insert(&r, &[]).await.ctx("insert")?;
        redeemed(&*store, &r, &a, at(1)).await?;
        store
            .change_state(r.id, &StateChange::new(State::Active, to, at(2)), &[])
            .await
            .ctx("change_state")?;
        refused_again(&*store, &r, &a, at(3), why).await?;
    }
    let mut r = onboarding_record(UsageLimit::uses(1)?)?;
    r.expires_at = Some(at(10));
    store.insert(&r, &[]).await.ctx("insert")?;
    redeemed(&*store, &r, &a, at(1)).await?;
    repeated(&*store, &r, &a, at(1), at(9)).await?;
    refused_again(&*store, &r, &a, at(10), Rejection::Expired).await
}

/// Insert `r`, redeem it at `now` and expect `Refused(why)` with nothing changed.
async fn refused(
    store: &dyn Store,
    r: &TokenRecord,
    dev: &DeviceId,
    now: OffsetDateTime,
    why: Rejection,
) -> Outcome {
    store.insert(r, &[]).await.ctx("insert")?;
    refused_again(store, r, dev, now, why).await
}

/// Redeem the stored `r` at `now` and expect `Refused(why)` with nothing changed.
async fn refused_again(
    store: &dyn Store,
    r: &TokenRecord,
    dev: &DeviceId,
    now: OffsetDateTime,
    why: Rejection,
) -> Outcome {
    let before = stored(store, r.id).await?;
    let enrolled = store.enrollments(r.id).await.ctx("enrollments")?;
    let got = store
        .redeem(&r.digest, dev, now, &RedeemEvents::NONE)
        .await
        .ctx("redeem")?;
    ensure_eq!(
        got,
        Redemption::Refused(why),
        "redeem by {dev} at {now} of {r:?}"
    );
    ensure_eq!(
        stored(store, r.id).await?,
        before,
        "record after a refused redemption"
    );
    ensure_eq!(
        store.enrollments(r.id).await.ctx("enrollments")?,
        enrolled,
        "enrollments after a refused redemption"
    );
    Ok(())
}

fn with_state(mut r: TokenRecord, state: State) -> TokenRecord {
    r.state = state;
    r
}

/// A redemption consumes one use, sets the last use, records the device and returns the record
/// as stored.
async fn redeem_consumes_one_use(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::uses(3)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let dev = device("SN-1")?;
    let after = redeemed(&*store, &r, &dev, at(10)).await?;
    let expected = TokenRecord {
        uses: 1,
        last_used_at: Some(at(10)),
        ..r.clone()
    };
    ensure_eq!(after, expected, "returned record");
    ensure_eq!(stored(&*store, r.id).await?, expected, "stored record");
    ensure_eq!(
        store.enrollments(r.id).await.ctx("enrollments")?,
        vec![Enrollment {
            device: dev,
            at: at(10)
        }],
        "enrollments"
    );
    Ok(())
}

/// The last use marks the token `Exhausted`; a further redemption is refused as `Exhausted`.
async fn redeem_exhausts_on_last_use(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::uses(2)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let first = redeemed(&*store, &r, &device("a")?, at(1)).await?;
    ensure_eq!(
        (first.state, first.uses),
        (State::Active, 1),
        "after the first use"
    );
    let last = redeemed(&*store, &r, &device("b")?, at(2)).await?;
    ensure_eq!(
        (last.state, last.uses),
        (State::Exhausted, 2),
        "after the last use"
    );
    ensure_eq!(last.last_used_at, Some(at(2)), "last use");
    ensure_eq!(stored(&*store, r.id).await?, last, "stored record");
    refused_again(&*store, &r, &device("c")?, at(3), Rejection::Exhausted).await
}

/// A single-use token is exhausted by its one redemption.
async fn redeem_single_use_exhausts_at_once(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::SINGLE)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let after = redeemed(&*store, &r, &device("only")?, at(1)).await?;
    ensure_eq!(
        (after.state, after.uses),
        (State::Exhausted, 1),
        "after the one use"
    );
    refused_again(&*store, &r, &device("other")?, at(2), Rejection::Exhausted).await?;
    // The device that used it gets its enrollment back, consuming nothing.
    repeated(&*store, &r, &device("only")?, at(1), at(3)).await?;
    Ok(())
}

/// An unlimited token stays active however often it is redeemed, counting every use.
async fn redeem_unlimited_never_exhausts(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::Unlimited)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    for i in 0..40 {
        let after = redeemed(&*store, &r, &device(&format!("dev-{i}"))?, at(i)).await?;
        ensure_eq!(after.state, State::Active, "state after use {i}");
        ensure_eq!(after.uses, u64::try_from(i + 1)?, "uses after use {i}");
    }
    ensure_eq!(
        store.enrollments(r.id).await.ctx("enrollments")?.len(),
        40,
        "enrollments"
    );
    Ok(())
}

/// A superseded token in its grace window can be redeemed; its last use makes it `Exhausted`.
async fn redeem_in_grace_consumes_and_exhausts(store: Arc<dyn Store>) -> Outcome {
    let mut r = with_state(onboarding_record(UsageLimit::uses(2)?)?, State::Superseded);
    r.grace_until = Some(at(100));
    store.insert(&r, &[]).await.ctx("insert")?;
    let first = redeemed(&*store, &r, &device("a")?, at(10)).await?;
    ensure_eq!(
        (first.state, first.uses),
        (State::Superseded, 1),
        "after a use in grace"
    );
    let last = redeemed(&*store, &r, &device("b")?, at(99)).await?;
    ensure_eq!(
        (last.state, last.uses),
        (State::Exhausted, 2),
        "after the last use in grace"
    );
    ensure_eq!(last.grace_until, Some(at(100)), "grace end kept");
    Ok(())
}

/// A first-device binding binds the first redeemer, who may redeem again; others are refused
/// with `DeviceMismatch`.
async fn redeem_binds_first_device(store: Arc<dyn Store>) -> Outcome {
    let mut r = onboarding_record(UsageLimit::uses(3)?)?;
    r.data = fixtures::onboarding(DeviceBinding::FirstDevice(None))?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let a = device("first")?;
    let after = redeemed(&*store, &r, &a, at(1)).await?;
    let bound = fixtures::onboarding(DeviceBinding::FirstDevice(Some(a.clone())))?;
    ensure_eq!(after.data, bound, "binding after the first redemption");
    ensure_eq!(stored(&*store, r.id).await?.data, bound, "stored binding");
    refused_again(
        &*store,
        &r,
        &device("second")?,
        at(2),
        Rejection::DeviceMismatch,
    )
    .await?;
    let again = repeated(&*store, &r, &a, at(1), at(3)).await?;
    ensure_eq!(again.uses, 1, "uses after the bound device redeemed again");
    Ok(())
}

/// A digest no token has is refused as `NotFound`.
async fn redeem_unknown_digest_is_not_found(store: Arc<dyn Store>) -> Outcome {
    store
        .insert(&onboarding_record(UsageLimit::SINGLE)?, &[])
        .await
        .ctx("insert")?;
    let (d, _) = fixtures::digest(tessera_core::Kind::Onboarding)?;
    ensure_eq!(
        store
            .redeem(&d, &device("a")?, at(1), &RedeemEvents::NONE)
            .await
            .ctx("redeem")?,
        Redemption::Refused(Rejection::NotFound),
        "redeem of an unknown digest"
    );
    Ok(())
}

/// A token of any other kind, in any state, is to a redemption a token that does not exist.
async fn redeem_other_kind_is_not_found(store: Arc<dyn Store>) -> Outcome {
    let datas = [
        fixtures::deployment("d")?,
        fixtures::primary("/e", Method::Get)?,
        fixtures::secondary("s", true)?,
        fixtures::auth("u", "a", &["p"])?,
        fixtures::application("app")?,
    ];
    for data in datas {
        for state in [State::Active, State::Revoked, State::Expired] {
            let mut r = record(data.clone())?;
            r.state = state;
            r.limit = UsageLimit::uses(5)?;
            match &mut r.data {
                KindData::Application(a) => {
                    a.name = tessera_core::id::ApplicationName::parse(format!("app-{state}"))?;
                }
                KindData::Auth(a) => a.name = fixtures::name(&format!("a-{state}"))?,
                _ => {}
            }
            refused(&*store, &r, &device("a")?, at(1), Rejection::NotFound).await?;
        }
    }
    Ok(())
}

/// A token past its expiry (stored as active, at the very instant, or stored as expired) is
/// refused as `Expired`.
async fn redeem_refuses_expired(store: Arc<dyn Store>) -> Outcome {
    let dev = device("a")?;
    let mut past = onboarding_record(UsageLimit::uses(5)?)?;
    past.expires_at = Some(at(-1));
    refused(&*store, &past, &dev, at(0), Rejection::Expired).await?;
    let mut edge = onboarding_record(UsageLimit::uses(5)?)?;
    edge.expires_at = Some(at(0));
    refused(&*store, &edge, &dev, at(0), Rejection::Expired).await?;
    let stored_expired = with_state(onboarding_record(UsageLimit::uses(5)?)?, State::Expired);
    refused(&*store, &stored_expired, &dev, at(0), Rejection::Expired).await?;
    let mut in_grace = with_state(onboarding_record(UsageLimit::uses(5)?)?, State::Superseded);
    in_grace.grace_until = Some(at(100));
    in_grace.expires_at = Some(at(50));
    refused(&*store, &in_grace, &dev, at(60), Rejection::Expired).await
}

/// A revoked token is refused as `Revoked`.
async fn redeem_refuses_revoked(store: Arc<dyn Store>) -> Outcome {
    let r = with_state(onboarding_record(UsageLimit::uses(5)?)?, State::Revoked);
    refused(&*store, &r, &device("a")?, at(1), Rejection::Revoked).await
}

/// A disabled token is refused as `Disabled`.
async fn redeem_refuses_disabled(store: Arc<dyn Store>) -> Outcome {
    let r = with_state(onboarding_record(UsageLimit::uses(5)?)?, State::Disabled);
    refused(&*store, &r, &device("a")?, at(1), Rejection::Disabled).await
}

/// A dormant token is refused as `Dormant`.
async fn redeem_refuses_dormant(store: Arc<dyn Store>) -> Outcome {
    let r = with_state(onboarding_record(UsageLimit::uses(5)?)?, State::Dormant);
    refused(&*store, &r, &device("a")?, at(1), Rejection::Dormant).await
}

/// A deleted tombstone is refused as `Deleted`.
async fn redeem_refuses_deleted(store: Arc<dyn Store>) -> Outcome {
    let r = with_state(onboarding_record(UsageLimit::uses(5)?)?, State::Deleted);
    refused(&*store, &r, &device("a")?, at(1), Rejection::Deleted).await
}

/// A token superseded past its grace window (or at its very end, or with none), or stored as
/// rotated out, is refused as `RotatedOut`.
async fn redeem_refuses_rotated_out(store: Arc<dyn Store>) -> Outcome {
    let dev = device("a")?;
    for grace in [Some(at(-1)), Some(at(0)), None] {
        let mut r = with_state(onboarding_record(UsageLimit::uses(5)?)?, State::Superseded);
        r.grace_until = grace;
        refused(&*store, &r, &dev, at(0), Rejection::RotatedOut).await?;
    }
    let r = with_state(onboarding_record(UsageLimit::uses(5)?)?, State::RotatedOut);
    refused(&*store, &r, &dev, at(0), Rejection::RotatedOut).await
}

/// A token with no uses left (stored as exhausted, or active with every use consumed) is
/// refused as `Exhausted`.
async fn redeem_refuses_exhausted(store: Arc<dyn Store>) -> Outcome {
    let dev = device("a")?;
    let mut r = with_state(onboarding_record(UsageLimit::uses(3)?)?, State::Exhausted);
    r.uses = 3;
    refused(&*store, &r, &dev, at(1), Rejection::Exhausted).await?;
    let mut r = onboarding_record(UsageLimit::uses(3)?)?;
    r.uses = 3;
    refused(&*store, &r, &dev, at(1), Rejection::Exhausted).await
}

/// A token bound to one device refuses every other with `DeviceMismatch` and admits that one.
async fn redeem_refuses_other_device_for_device_binding(store: Arc<dyn Store>) -> Outcome {
    let owner = device("SN-OWNER")?;
    let mut r = onboarding_record(UsageLimit::uses(2)?)?;
    r.data = fixtures::onboarding(DeviceBinding::Device(owner.clone()))?;
    refused(
        &*store,
        &r,
        &device("SN-THIEF")?,
        at(1),
        Rejection::DeviceMismatch,
    )
    .await?;
    refused_again(
        &*store,
        &r,
        &device("sn-owner")?,
        at(1),
        Rejection::DeviceMismatch,
    )
    .await?;
    let after = redeemed(&*store, &r, &owner, at(2)).await?;
    ensure_eq!(
        after.data,
        r.data,
        "a device binding does not change on redemption"
    );
    Ok(())
}

/// A token already bound to its first device refuses every other with `DeviceMismatch`.
async fn redeem_refuses_other_device_after_first_device(store: Arc<dyn Store>) -> Outcome {
    let mut r = onboarding_record(UsageLimit::uses(5)?)?;
    r.uses = 1;
    r.data = fixtures::onboarding(DeviceBinding::FirstDevice(Some(device("bound")?)))?;
    refused(
        &*store,
        &r,
        &device("other")?,
        at(1),
        Rejection::DeviceMismatch,
    )
    .await
}

/// Across states, expiries, grace windows, limits, bindings and devices, a redemption is
/// refused exactly when `validate` refuses the stored record, for the same reason.
async fn redeem_classifies_like_validate(store: Arc<dyn Store>) -> Outcome {
    let now = at(0);
    let a = device("A")?;
    let b = device("B")?;
    let bindings = [
        DeviceBinding::Any,
        DeviceBinding::Device(a.clone()),
        DeviceBinding::FirstDevice(None),
        DeviceBinding::FirstDevice(Some(a.clone())),
    ];
    let mut records = Vec::new();
    for state in State::ALL {
        for expires in [None, Some(at(-1)), Some(at(1))] {
            for grace in [None, Some(at(-1)), Some(at(1))] {
                for (limit, uses) in [
                    (UsageLimit::uses(2)?, 0),
                    (UsageLimit::uses(2)?, 2),
                    (UsageLimit::Unlimited, 7),
                ] {
                    for binding in &bindings {
                        let mut r = onboarding_record(limit)?;
                        r.state = state;
                        r.expires_at = expires;
                        r.grace_until = grace;
                        r.uses = uses;
                        r.data = KindData::Onboarding(OnboardingData {
                            binding: binding.clone(),
                            ..match fixtures::onboarding(DeviceBinding::Any)? {
                                KindData::Onboarding(o) => o,
                                _ => return Err(Failed::from("fixture is not onboarding")),
                            }
                        });
                        records.push(r);
                    }
                }
            }
        }
    }
    store.insert_many(&records, &[]).await.ctx("insert_many")?;
    for r in &records {
        for dev in [&b, &a] {
            let before = stored(&*store, r.id).await?;
            let expected = validate(&before, &Request::Onboarding { device: dev }, now);
            let got = store
                .redeem(&r.digest, dev, now, &RedeemEvents::NONE)
                .await
                .ctx("redeem")?;
            match (expected, got) {
                (Err(why), Redemption::Refused(got)) => {
                    ensure_eq!(got, why, "refusal of {dev} for {before:?}");
                }
                (Ok(_), Redemption::Redeemed(after)) => {
                    ensure_eq!(
                        after.uses,
                        before.uses + 1,
                        "uses after redeeming {before:?}"
                    );
                }
                (expected, got) => {
                    return Err(Failed::from(format!(
                        "redeem by {dev} of {before:?}: validate says {expected:?}, store says {got:?}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Enrollments list every redeeming device with its instant, oldest first.
async fn enrollments_are_oldest_first(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::uses(10)?)?;
    let other = onboarding_record(UsageLimit::uses(10)?)?;
    insert_all(&*store, &[r.clone(), other.clone()]).await?;
    let mut expected = Vec::new();
    for (i, name) in ["zeta", "alpha", "mu", "beta"].into_iter().enumerate() {
        let dev = device(name)?;
        let when = at(i64::try_from(i)? * 10);
        redeemed(&*store, &r, &dev, when).await?;
        redeemed(&*store, &other, &device(&format!("elsewhere-{i}"))?, when).await?;
        expected.push(Enrollment {
            device: dev,
            at: when,
        });
    }
    ensure_eq!(
        store.enrollments(r.id).await.ctx("enrollments")?,
        expected,
        "enrollments"
    );
    Ok(())
}

/// `enrollments_of` answers what `enrollments` answers for each token, in the order asked,
/// each token's oldest first; tokens without enrollments or unknown have no pair.
async fn enrollments_of_many_tokens_in_one_read(store: Arc<dyn Store>) -> Outcome {
    let (a, b, none) = (
        onboarding_record(UsageLimit::uses(10)?)?,
        onboarding_record(UsageLimit::uses(10)?)?,
        onboarding_record(UsageLimit::uses(10)?)?,
    );
    insert_all(&*store, &[a.clone(), b.clone(), none.clone()]).await?;
    for (i, name) in ["zeta", "alpha", "mu"].into_iter().enumerate() {
        let when = at(i64::try_from(i)? * 10);
        redeemed(&*store, &a, &device(&format!("a-{name}"))?, when).await?;
        redeemed(
            &*store,
            &b,
            &device(&format!("b-{name}"))?,
            at(100) - (when - at(0)),
        )
        .await?;
    }
    let unknown = onboarding_record(UsageLimit::uses(1)?)?.id;
    let ids = [b.id, none.id, unknown, a.id];
    let mut expected = Vec::new();
    for id in ids {
        let each = store.enrollments(id).await.ctx("enrollments")?;
        expected.extend(each.into_iter().map(|e| (id, e)));
    }
    ensure_eq!(expected.len(), 6, "enrollments redeemed");
    ensure_eq!(
        store.enrollments_of(&ids).await.ctx("enrollments_of")?,
        expected,
        "enrollments of b, none, unknown, a"
    );
    ensure!(
        store
            .enrollments_of(&[])
            .await
            .ctx("enrollments_of none")?
            .is_empty(),
        "enrollments of no token"
    );
    Ok(())
}

/// A token never redeemed has no enrollments.
async fn enrollments_of_unredeemed_token_are_empty(store: Arc<dyn Store>) -> Outcome {
    let r = onboarding_record(UsageLimit::uses(10)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    ensure!(
        store.enrollments(r.id).await.ctx("enrollments")?.is_empty(),
        "enrollments appeared"
    );
    Ok(())
}

/// The templates a service passes: a client at an address, for a device.
fn templates(dev: &DeviceId, now: OffsetDateTime) -> Result<RedeemEvents, Failed> {
    let ip = fixtures::ip("198.51.100.7")?;
    let template = |action| {
        AuditEvent::new(now, Actor::Client, action)
            .ip(Some(ip))
            .device(dev)
    };
    Ok(RedeemEvents::NONE
        .redeemed(template(AuditAction::Used))
        .repeated(template(AuditAction::EnrolledAgain))
        // The action of the refusal's template is replaced by the store's reason.
        .refused(template(AuditAction::Purged)))
}

async fn all_events(store: &dyn Store) -> Result<Vec<AuditEvent>, Failed> {
    store.events(&AuditFilter::default()).await.ctx("events")
}

/// Each outcome stores its own event, completed with the token it was decided on, with the
/// outcome: a use its `redeemed` event, a repeat its `repeated` event, a refusal its `refused`
/// event with the reason; an unknown digest or a token of another kind stores none, and
/// [`RedeemEvents::NONE`] stores none at all.
async fn redeem_stores_the_outcome_event_with_it(store: Arc<dyn Store>) -> Outcome {
    let mut r = onboarding_record(UsageLimit::uses(2)?)?;
    r.generated_by = Some(fixtures::user("admin")?);
    store.insert(&r, &[]).await.ctx("insert")?;
    let mut expected = Vec::new();
    let (a, b, c) = (device("a")?, device("b")?, device("c")?);

    let ev = templates(&a, at(1))?;
    let Redemption::Redeemed(after) = store
        .redeem(&r.digest, &a, at(1), &ev)
        .await
        .ctx("redeem")?
    else {
        return Err("the first redemption was not a use".into());
    };
    expected.push(ev.redeemed.clone().ctx("template")?.about(&after));
    ensure_eq!(all_events(&*store).await?, expected, "events after a use");

    let ev = templates(&a, at(2))?;
    let got = store
        .redeem(&r.digest, &a, at(2), &ev)
        .await
        .ctx("redeem")?;
    ensure_matches!(got, Redemption::Repeated { .. }, "a repeat");
    expected.push(ev.repeated.clone().ctx("template")?.about(&after));
    ensure_eq!(
        all_events(&*store).await?,
        expected,
        "events after a repeat"
    );

    // Without templates, a use stores no event.
    redeemed(&*store, &r, &b, at(3)).await?;
    ensure_eq!(
        all_events(&*store).await?,
        expected,
        "events after a use without templates"
    );

    // Exhausted: refused, nothing consumed, the refusal recorded with its reason.
    let before = stored(&*store, r.id).await?;
    let ev = templates(&c, at(4))?;
    let got = store
        .redeem(&r.digest, &c, at(4), &ev)
        .await
        .ctx("redeem")?;
    ensure_eq!(
        got,
        Redemption::Refused(Rejection::Exhausted),
        "redeem when exhausted"
    );
    ensure_eq!(
        stored(&*store, r.id).await?,
        before,
        "record after a refusal"
    );
    let mut refusal = ev.refused.clone().ctx("template")?.about(&before);
    refusal.action = AuditAction::Refused {
        reason: Rejection::Exhausted,
    };
    expected.push(refusal);
    ensure_eq!(
        all_events(&*store).await?,
        expected,
        "events after a refusal"
    );

    // No onboarding token: nothing to record.
    let (unknown, _) = fixtures::digest(tessera_core::Kind::Onboarding)?;
    let got = store.redeem(&unknown, &c, at(5), &ev).await.ctx("redeem")?;
    ensure_eq!(
        got,
        Redemption::Refused(Rejection::NotFound),
        "unknown digest"
    );
    let other = record(fixtures::deployment("d")?)?;
    store.insert(&other, &[]).await.ctx("insert")?;
    let got = store
        .redeem(&other.digest, &c, at(5), &ev)
        .await
        .ctx("redeem")?;
    ensure_eq!(
        got,
        Redemption::Refused(Rejection::NotFound),
        "another kind"
    );
    ensure_eq!(
        all_events(&*store).await?,
        expected,
        "events after not-found refusals"
    );
    Ok(())
}

/// A redemption whose event cannot be stored (a time past 2262) changes nothing: no use
/// consumed, no device enrolled, no event; a template for another outcome is checked too.
async fn redeem_with_an_unstorable_event_is_undone(store: Arc<dyn Store>) -> Outcome {
    let too_late = time::macros::datetime!(2300-01-01 0:00 UTC);
    let r = onboarding_record(UsageLimit::uses(5)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let dev = device("a")?;
    let before = stored(&*store, r.id).await?;
    for which in ["redeemed", "repeated", "refused"] {
        let mut ev = templates(&dev, at(1))?;
        let slot = match which {
            "redeemed" => &mut ev.redeemed,
            "repeated" => &mut ev.repeated,
            _ => &mut ev.refused,
        };
        if let Some(e) = slot.as_mut() {
            e.at = too_late;
        }
        ensure!(
            store.redeem(&r.digest, &dev, at(1), &ev).await.is_err(),
            "a redemption with an unstorable {which} event succeeded"
        );
        ensure_eq!(stored(&*store, r.id).await?, before, "record ({which})");
        ensure!(
            store.enrollments(r.id).await.ctx("enrollments")?.is_empty(),
            "a device enrolled ({which})"
        );
        ensure!(
            all_events(&*store).await?.is_empty(),
            "an event stored ({which})"
        );
    }
    // The token is untouched: the next redemption is its first use.
    ensure_eq!(
        redeemed(&*store, &r, &dev, at(2)).await?.uses,
        1,
        "first use after"
    );
    Ok(())
}
