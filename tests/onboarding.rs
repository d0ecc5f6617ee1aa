//! Onboarding tokens through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::sync::Arc;

use common::{admin, service};
use tessera::Rejection;
use tessera::core::id::DeviceId;
use tessera::core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera::core::lifecycle::State;
use tessera::onboarding::NewOnboarding;
use time::Duration;

fn dev(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}

#[tokio::test]
async fn single_use_by_default() {
    let (svc, _) = service();
    let o = svc.onboarding();
    let t = o
        .create(NewOnboarding::new("std", "sales").unwrap(), &admin())
        .await
        .unwrap();
    assert!(t.secret.expose_secret().starts_with("tsr_onb_"));
    assert_eq!(t.token.remaining, Some(1));
    let e = o
        .redeem(t.secret.expose_secret(), &dev("a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.policy.as_str(), e.group.as_str(), e.remaining),
        ("std", "sales", Some(0))
    );
    assert_eq!(
        o.redeem(t.secret.expose_secret(), &dev("b")).await.unwrap(),
        Err(Rejection::Exhausted)
    );
    let list = o.list().await.unwrap();
    assert_eq!(list[0].token.state, State::Exhausted);
    assert_eq!(list[0].devices.len(), 1);
    assert_eq!(list[0].devices[0].device, dev("a"));
    assert_eq!(svc.exhausted().await.unwrap().len(), 1);
}

#[tokio::test]
async fn n_uses_unlimited_and_expiry() {
    let (svc, clock) = service();
    let o = svc.onboarding();
    let three = NewOnboarding::new("p", "g")
        .unwrap()
        .limit(UsageLimit::uses(3).unwrap());
    let t = o.create(three, &admin()).await.unwrap();
    for (i, d) in ["a", "b", "c"].iter().enumerate() {
        let e = o
            .redeem(t.secret.expose_secret(), &dev(d))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.remaining, Some(2 - i as u64));
    }
    assert_eq!(
        o.redeem(t.secret.expose_secret(), &dev("d")).await.unwrap(),
        Err(Rejection::Exhausted)
    );

    let spec = NewOnboarding::new("p", "g")
        .unwrap()
        .limit(UsageLimit::Unlimited)
        .expires_at(common::T0 + Duration::hours(2));
    let u = o.create(spec, &admin()).await.unwrap();
    for i in 0..50 {
        let e = o
            .redeem(u.secret.expose_secret(), &dev(&format!("d{i}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.remaining, None);
    }
    assert_eq!(
        svc.expiring_within(Duration::hours(3)).await.unwrap().len(),
        1
    );
    clock.advance(Duration::hours(2));
    assert_eq!(
        o.redeem(u.secret.expose_secret(), &dev("late"))
            .await
            .unwrap(),
        Err(Rejection::Expired)
    );
    assert!(UsageLimit::uses(0).is_err());
}

#[tokio::test]
async fn device_binding() {
    let (svc, _) = service();
    let o = svc.onboarding();
    let bound = NewOnboarding::new("p", "g")
        .unwrap()
        .limit(UsageLimit::uses(5).unwrap())
        .binding(DeviceBinding::Device(dev("serial-1")));
    let t = o.create(bound, &admin()).await.unwrap();
    assert_eq!(
        o.redeem(t.secret.expose_secret(), &dev("thief"))
            .await
            .unwrap(),
        Err(Rejection::DeviceMismatch)
    );
    assert!(
        o.redeem(t.secret.expose_secret(), &dev("serial-1"))
            .await
            .unwrap()
            .is_ok()
    );

    let first = NewOnboarding::new("p", "g")
        .unwrap()
        .limit(UsageLimit::uses(5).unwrap())
        .binding(DeviceBinding::FirstDevice(None));
    let f = o.create(first, &admin()).await.unwrap();
    assert!(
        o.redeem(f.secret.expose_secret(), &dev("first"))
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        o.redeem(f.secret.expose_secret(), &dev("second"))
            .await
            .unwrap(),
        Err(Rejection::DeviceMismatch)
    );
    assert!(
        o.redeem(f.secret.expose_secret(), &dev("first"))
            .await
            .unwrap()
            .is_ok()
    );
    // A refused attempt consumed nothing, and neither did the enrolled device's repeat: one
    // device, one use.
    let listing = o.list().await.unwrap();
    let fl = listing.iter().find(|l| l.token.id == f.token.id).unwrap();
    assert_eq!(fl.token.remaining, Some(4));
    assert_eq!(
        fl.data.binding,
        DeviceBinding::FirstDevice(Some(dev("first")))
    );
}

#[tokio::test]
async fn short_codes_are_typeable() {
    let (svc, _) = service();
    let o = svc.onboarding();
    let t = o
        .create(NewOnboarding::new("p", "g").unwrap().short_code(), &admin())
        .await
        .unwrap();
    let code = t.secret.expose_secret().to_owned();
    assert_eq!(code.len(), 34, "{code}");
    // People type in lower case and without dashes.
    let typed = code.replace('-', "").to_lowercase();
    assert!(o.redeem(&typed, &dev("tablet")).await.unwrap().is_ok());
    // A typo is caught before the store is touched.
    let mut typo: Vec<char> = code.chars().collect();
    typo[0] = if typo[0] == '7' { '8' } else { '7' };
    let typo: String = typo.into_iter().collect();
    assert_eq!(
        o.redeem(&typo, &dev("x")).await.unwrap(),
        Err(Rejection::Malformed)
    );
}

#[tokio::test]
async fn bulk_one_per_group_and_revoke() {
    let (svc, _) = service();
    let o = svc.onboarding();
    let specs = ["sales", "support", "warehouse"]
        .iter()
        .map(|g| {
            NewOnboarding::new("std", *g)
                .unwrap()
                .limit(UsageLimit::uses(10).unwrap())
        })
        .collect();
    let issued = o.bulk(specs, &admin()).await.unwrap();
    assert_eq!(issued.len(), 3);
    let e = o
        .redeem(issued[1].secret.expose_secret(), &dev("d"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.group.as_str(), "support");
    o.revoke(issued[0].token.id, &admin()).await.unwrap();
    assert_eq!(
        o.redeem(issued[0].secret.expose_secret(), &dev("d"))
            .await
            .unwrap(),
        Err(Rejection::Revoked)
    );
    assert!(o.revoke(issued[0].token.id, &admin()).await.is_err());
    assert_eq!(o.list().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_never_exceed_the_limit() {
    let (svc, _) = service();
    let spec = NewOnboarding::new("p", "g")
        .unwrap()
        .limit(UsageLimit::uses(100).unwrap());
    let t = svc.onboarding().create(spec, &admin()).await.unwrap();
    let token: Arc<str> = t.secret.expose_secret().into();
    let mut tasks = Vec::new();
    for task in 0..64 {
        let svc = svc.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            let mut attempt = task;
            while attempt < 1000 {
                match svc
                    .onboarding()
                    .redeem(&token, &dev(&format!("dev-{attempt}")))
                    .await
                    .unwrap()
                {
                    Ok(_) => ok += 1,
                    Err(r) => assert_eq!(r, Rejection::Exhausted),
                }
                attempt += 64;
            }
            ok
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    assert_eq!(admitted, 100);
    let list = svc.onboarding().list().await.unwrap();
    let mut devices: Vec<_> = list[0].devices.iter().map(|e| e.device.clone()).collect();
    devices.sort();
    devices.dedup();
    assert_eq!(devices.len(), 100);
}

#[tokio::test]
async fn a_sealed_token_shows_its_secret_again_during_its_life_only() {
    let (svc, clock) = service();
    let o = svc.onboarding();
    // Off by default: shown once.
    let plain = o
        .create(NewOnboarding::new("kiosk", "lobby").unwrap(), &admin())
        .await
        .unwrap();
    let err = o.reveal(plain.token.id).await.unwrap_err();
    assert!(matches!(err, tessera::Error::NotSealed { .. }), "{err:?}");
    assert!(err.to_string().contains("--keep-sealed"), "{err}");

    let spec = NewOnboarding::new("kiosk", "lobby")
        .unwrap()
        .limit(UsageLimit::uses(2).unwrap())
        .expires_at(common::T0 + Duration::days(7))
        .keep_sealed(true);
    let sealed = o.create(spec, &admin()).await.unwrap();
    let again = o.reveal(sealed.token.id).await.unwrap();
    assert!(again.ct_eq(sealed.secret.expose_secret()));
    assert!(!format!("{again:?}").contains(sealed.secret.expose_secret()));
    // The record holds no plaintext, and its Debug prints none.
    let record = svc.store().get(sealed.token.id).await.unwrap().unwrap();
    let bytes = record.sealed.as_ref().unwrap().to_bytes();
    let text = sealed.secret.expose_secret().as_bytes();
    assert!(!bytes.windows(text.len()).any(|w| w == text));
    assert!(!format!("{record:?}").contains(&sealed.secret.expose_secret()[8..20]));
    // Bulk issuance keeps each one sealed when asked.
    let bulk = o
        .bulk(
            vec![
                NewOnboarding::new("p", "g1").unwrap().keep_sealed(true),
                NewOnboarding::new("p", "g2").unwrap(),
            ],
            &admin(),
        )
        .await
        .unwrap();
    assert!(
        o.reveal(bulk[0].token.id)
            .await
            .unwrap()
            .ct_eq(bulk[0].secret.expose_secret())
    );
    assert!(o.reveal(bulk[1].token.id).await.is_err());
    // Another kind's id is not an onboarding token.
    let dep = svc
        .deployment()
        .generate(
            tessera::deployment::NewDeployment::named("d").unwrap(),
            &admin(),
        )
        .await
        .unwrap();
    assert!(matches!(
        o.reveal(dep.token.id).await,
        Err(tessera::Error::NoSuchToken { .. })
    ));
    // A rotation keeps the successor sealed.
    let rotated = svc.rotate(sealed.token.id, None, &admin()).await.unwrap();
    assert!(
        o.reveal(rotated.token.id)
            .await
            .unwrap()
            .ct_eq(rotated.secret.expose_secret())
    );
    assert!(o.reveal(sealed.token.id).await.is_err(), "rotated out");
    // Used up: no longer shown.
    for d in ["d1", "d2"] {
        o.redeem(rotated.secret.expose_secret(), &DeviceId::parse(d).unwrap())
            .await
            .unwrap()
            .unwrap();
    }
    assert!(matches!(
        o.reveal(rotated.token.id).await,
        Err(tessera::Error::Unsupported(_))
    ));
    // Expired: no longer shown.
    let later = o
        .create(
            NewOnboarding::new("p", "g3")
                .unwrap()
                .expires_at(common::T0 + Duration::days(1))
                .keep_sealed(true),
            &admin(),
        )
        .await
        .unwrap();
    assert!(o.reveal(later.token.id).await.is_ok());
    clock.advance(Duration::days(2));
    assert!(matches!(
        o.reveal(later.token.id).await,
        Err(tessera::Error::Unsupported(_))
    ));
}

/// One device, one use: a device redeeming again gets the same enrollment back and consumes
/// nothing, also after the last use; the repeat is audited as such; a revoked token refuses it.
#[tokio::test]
async fn a_repeat_by_an_enrolled_device_returns_its_enrollment_and_consumes_nothing() {
    use tessera::core::audit::AuditAction;
    use tessera::store::AuditFilter;

    let (svc, clock) = service();
    let o = svc.onboarding();
    let t = o
        .create(
            NewOnboarding::new("std", "sales")
                .unwrap()
                .limit(UsageLimit::uses(2).unwrap()),
            &admin(),
        )
        .await
        .unwrap();
    let tok = t.secret.expose_secret();
    let first = o.redeem(tok, &dev("X1")).await.unwrap().unwrap();
    assert_eq!((first.repeated, first.remaining), (false, Some(1)));
    clock.advance(Duration::minutes(3));
    let again = o.redeem(tok, &dev("X1")).await.unwrap().unwrap();
    assert!(again.repeated);
    assert_eq!(again.remaining, Some(1), "nothing consumed");
    assert_eq!(again.enrolled_at, first.enrolled_at, "the same enrollment");
    assert_eq!((again.policy, again.group), (first.policy, first.group));
    o.redeem(tok, &dev("X2")).await.unwrap().unwrap();
    // Exhausted: enrolled devices still get their enrollment; a new device does not.
    let after = o.redeem(tok, &dev("X2")).await.unwrap().unwrap();
    assert_eq!((after.repeated, after.remaining), (true, Some(0)));
    assert_eq!(
        o.redeem(tok, &dev("X3")).await.unwrap(),
        Err(Rejection::Exhausted)
    );
    let list = o.list().await.unwrap();
    let devices: Vec<_> = list[0].devices.iter().map(|e| e.device.clone()).collect();
    assert_eq!(devices, [dev("X1"), dev("X2")]);
    let events = svc
        .audit(&AuditFilter::default().token(t.token.id), &admin())
        .await
        .unwrap();
    let repeats = events
        .iter()
        .filter(|e| e.action == AuditAction::EnrolledAgain)
        .count();
    assert_eq!(repeats, 2, "{events:?}");
    svc.revoke(t.token.id, &admin()).await.unwrap();
    assert_eq!(
        o.redeem(tok, &dev("X1")).await.unwrap(),
        Err(Rejection::Revoked)
    );
}

/// The memory store keeps every enrollment up to its bound: a repeat by an enrolled device is
/// always known as one (nothing consumed, as on SQL), and a new device past the bound is refused
/// with a typed error that consumes nothing.
#[tokio::test]
async fn memory_bound_on_enrollments_refuses_and_never_forgets_a_device() {
    use tessera::core::digest::{KeyId, Pepper, Peppers};
    use tessera::memory::{MemoryLimits, MemoryStore};
    use tessera::store::StoreError;

    let store = MemoryStore::with_limits(MemoryLimits::new().with_max_enrollments_per_token(2));
    let svc = tessera::TokenService::new(store, Peppers::new(Pepper::new(KeyId(1), [9; 32])));
    let o = svc.onboarding();
    let spec = NewOnboarding::new("p", "g")
        .unwrap()
        .limit(UsageLimit::uses(5).unwrap());
    let t = o.create(spec, &admin()).await.unwrap();
    let tok = t.secret.expose_secret();
    for d in ["a", "b"] {
        assert!(o.redeem(tok, &dev(d)).await.unwrap().is_ok());
    }
    let err = o.redeem(tok, &dev("c")).await.unwrap_err();
    assert!(
        matches!(
            err,
            tessera::Error::Store(StoreError::LimitReached {
                what: "enrollments",
                limit: 2
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("limit of 2"), "{err}");
    // Repeats by both enrolled devices consume nothing, however often.
    for _ in 0..3 {
        for d in ["a", "b"] {
            let e = o.redeem(tok, &dev(d)).await.unwrap().unwrap();
            assert!(e.repeated, "{d}");
            assert_eq!(e.remaining, Some(3), "{d}");
        }
    }
    let listed = o.list().await.unwrap();
    assert_eq!(listed[0].token.remaining, Some(3));
    assert_eq!(listed[0].devices.len(), 2);
}
