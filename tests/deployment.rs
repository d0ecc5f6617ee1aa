//! Deployment tokens through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::{admin, service};
use tessera::core::lifecycle::State;
use tessera::deployment::NewDeployment;
use tessera::{Rejection, Secret};
use time::Duration;

const TEMPLATE: &str = "msiexec /i inSyncClient.msi TOKEN={token} /quiet";

#[tokio::test]
async fn generate_list_and_latest() {
    let (svc, clock) = service();
    let d = svc.deployment();
    let first = d
        .generate(NewDeployment::named("wave-1").unwrap(), &admin())
        .await
        .unwrap();
    clock.advance(Duration::minutes(1));
    let second = d
        .generate(NewDeployment::named("wave-2").unwrap(), &admin())
        .await
        .unwrap();
    assert!(first.secret.expose_secret().starts_with("tsr_dep_"));
    let list = d.list().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].name.as_deref(), Some("wave-1"));
    assert!(
        list.iter()
            .all(|t| !t.hint.contains(&first.secret.expose_secret()[8..20]))
    );
    assert_eq!(d.latest().await.unwrap().unwrap().id, second.token.id);
    // Older tokens stay valid until their own expiry.
    assert!(
        d.validate(first.secret.expose_secret())
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        d.validate(second.secret.expose_secret())
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn expiry_and_expire_at_once() {
    let (svc, clock) = service();
    let d = svc.deployment();
    let spec = NewDeployment::named("short")
        .unwrap()
        .expires_at(common::T0 + Duration::days(1));
    let t = d.generate(spec, &admin()).await.unwrap();
    assert!(d.validate(t.secret.expose_secret()).await.unwrap().is_ok());
    clock.advance(Duration::days(1));
    assert_eq!(
        d.validate(t.secret.expose_secret()).await.unwrap(),
        Err(Rejection::Expired)
    );

    let u = d
        .generate(NewDeployment::named("leaked").unwrap(), &admin())
        .await
        .unwrap();
    let s = d.expire(u.token.id, &admin()).await.unwrap();
    assert_eq!(s.state, State::Expired);
    assert_eq!(
        d.validate(u.secret.expose_secret()).await.unwrap(),
        Err(Rejection::Expired)
    );
    assert!(
        d.expire(u.token.id, &admin()).await.is_err(),
        "expiring twice is an error"
    );
    let past = NewDeployment::named("past").unwrap().expires_at(common::T0);
    assert!(d.generate(past, &admin()).await.is_err());
}

#[tokio::test]
async fn command_is_rendered_with_the_latest_token_and_keeps_it() {
    let (svc, clock) = service();
    let d = svc.deployment();
    let a = d
        .generate(NewDeployment::named("a").unwrap(), &admin())
        .await
        .unwrap();
    let cmd_a = d.render_command(TEMPLATE, &a.secret).await.unwrap();
    assert_eq!(
        cmd_a.expose_secret(),
        format!(
            "msiexec /i inSyncClient.msi TOKEN={} /quiet",
            a.secret.expose_secret()
        )
    );
    assert!(!format!("{cmd_a:?}").contains(a.secret.expose_secret()));
    clock.advance(Duration::seconds(1));
    let b = d
        .generate(NewDeployment::named("b").unwrap(), &admin())
        .await
        .unwrap();
    // The earlier command keeps its token; a new render needs the newest one.
    assert!(cmd_a.expose_secret().contains(a.secret.expose_secret()));
    assert!(d.render_command(TEMPLATE, &a.secret).await.is_err());
    assert!(d.render_command(TEMPLATE, &b.secret).await.is_ok());
    assert!(d.render_command("no placeholder", &b.secret).await.is_err());
    assert!(
        d.render_command(TEMPLATE, &Secret::from_presented("junk"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn auto_renewal_issues_a_90_day_successor_once() {
    let (svc, clock) = service();
    let d = svc.deployment();
    // Renewal is on by default.
    let spec = NewDeployment::named("renewing")
        .unwrap()
        .expires_at(common::T0 + Duration::days(30));
    assert!(spec.auto_renew);
    let old = d.generate(spec, &admin()).await.unwrap();
    let cmd_old = d.render_command(TEMPLATE, &old.secret).await.unwrap();

    clock.advance(Duration::days(29));
    assert!(svc.sweep(false).await.unwrap().renewed.is_empty());
    clock.advance(Duration::days(1));
    let dry = svc.sweep(true).await.unwrap();
    assert_eq!(dry.renewed.len(), 1);
    assert!(dry.renewed[0].successor.is_none());
    let report = svc.sweep(false).await.unwrap();
    assert_eq!(report.renewed.len(), 1);
    let successor = report.renewed[0].successor.as_ref().unwrap();
    assert_eq!(report.renewed[0].expired, old.token.id);
    assert_eq!(
        successor.expires_at,
        Some(clock_now(&clock) + Duration::days(90))
    );
    assert_eq!(d.latest().await.unwrap().unwrap().id, successor.id);
    // Sweeping again renews nothing more.
    assert!(svc.sweep(false).await.unwrap().renewed.is_empty());
    assert_eq!(d.list().await.unwrap().len(), 2);

    // The old command keeps the old, now expired token; the new one works.
    assert!(cmd_old.expose_secret().contains(old.secret.expose_secret()));
    assert_eq!(
        d.validate(old.secret.expose_secret()).await.unwrap(),
        Err(Rejection::Expired)
    );
    // The sweep handed out no secret; the current command carries the successor.
    let cmd_new = d.command(TEMPLATE).await.unwrap();
    let new_secret = d.latest_secret().await.unwrap();
    assert!(cmd_new.expose_secret().contains(new_secret.expose_secret()));
    assert!(!cmd_new.expose_secret().contains(old.secret.expose_secret()));
    assert!(
        d.validate(new_secret.expose_secret())
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        d.render_command(TEMPLATE, &new_secret)
            .await
            .unwrap()
            .expose_secret(),
        cmd_new.expose_secret()
    );
    let renewed_events = svc
        .audit(
            &tessera::store::AuditFilter::default().token(old.token.id),
            &admin(),
        )
        .await
        .unwrap();
    assert!(
        renewed_events
            .iter()
            .any(|e| matches!(e.action, tessera::core::audit::AuditAction::Renewed { .. }))
    );
}

fn clock_now(clock: &tessera::core::clock::ManualClock) -> time::OffsetDateTime {
    use tessera::core::clock::Clock;
    clock.now()
}

#[tokio::test]
async fn tokens_of_other_kinds_and_garbage_are_refused() {
    let (svc, _) = service();
    let d = svc.deployment();
    assert_eq!(d.validate("").await.unwrap(), Err(Rejection::Malformed));
    assert_eq!(
        d.validate(&"x".repeat(10_000)).await.unwrap(),
        Err(Rejection::Malformed)
    );
    let other = Secret::generate(tessera::Kind::Deployment).unwrap();
    assert_eq!(
        d.validate(other.expose_secret()).await.unwrap(),
        Err(Rejection::NotFound)
    );
    let app = Secret::generate(tessera::Kind::Application).unwrap();
    assert_eq!(
        d.validate(app.expose_secret()).await.unwrap(),
        Err(Rejection::Malformed)
    );
}

#[tokio::test]
async fn renewal_can_be_turned_off_per_token() {
    let (svc, clock) = service();
    let d = svc.deployment();
    let spec = NewDeployment::named("one-off")
        .unwrap()
        .expires_at(common::T0 + Duration::days(1))
        .auto_renew(false);
    let t = d.generate(spec, &admin()).await.unwrap();
    clock.advance(Duration::days(2));
    let report = svc.sweep(false).await.unwrap();
    assert!(report.renewed.is_empty());
    assert_eq!(report.expired, vec![t.token.id]);
    assert!(d.latest().await.unwrap().is_none());
    assert!(matches!(
        d.command(TEMPLATE).await,
        Err(tessera::Error::Unsupported(_))
    ));
}

#[tokio::test]
async fn current_command_is_shown_again_without_the_secret() {
    let (svc, clock) = service();
    let d = svc.deployment();
    assert!(d.command(TEMPLATE).await.is_err(), "no token yet");
    let a = d
        .generate(NewDeployment::named("a").unwrap(), &admin())
        .await
        .unwrap();
    let shown = d.command(TEMPLATE).await.unwrap();
    assert_eq!(
        shown.expose_secret(),
        format!(
            "msiexec /i inSyncClient.msi TOKEN={} /quiet",
            a.secret.expose_secret()
        )
    );
    assert!(!format!("{shown:?}").contains(a.secret.expose_secret()));
    assert!(d.command("no placeholder").await.is_err());
    clock.advance(Duration::seconds(1));
    let b = d
        .generate(NewDeployment::named("b").unwrap(), &admin())
        .await
        .unwrap();
    assert!(
        d.latest_secret()
            .await
            .unwrap()
            .ct_eq(b.secret.expose_secret())
    );
    // Expiring the newest at once makes the previous one current again.
    d.expire(b.token.id, &admin()).await.unwrap();
    assert!(
        d.latest_secret()
            .await
            .unwrap()
            .ct_eq(a.secret.expose_secret())
    );
    // The record holds the secret only sealed, and its Debug shows no secret.
    let record = svc.store().get(a.token.id).await.unwrap().unwrap();
    let sealed = record
        .sealed
        .as_ref()
        .expect("deployment secrets are sealed");
    let bytes = sealed.to_bytes();
    let text = a.secret.expose_secret().as_bytes();
    assert!(!bytes.windows(text.len()).any(|w| w == text));
    let dbg = format!("{record:?}");
    assert!(
        !dbg.contains(a.secret.expose_secret()) && !dbg.contains(&a.secret.expose_secret()[8..20]),
        "{dbg}"
    );
}

#[tokio::test]
async fn pepper_rotation_reseals_and_a_retired_pepper_is_a_clear_error() {
    use std::sync::Arc;
    use tessera::TokenService;
    use tessera::core::digest::{KeyId, Pepper, Peppers};
    use tessera::memory::MemoryStore;

    let store: Arc<dyn tessera::Store> = Arc::new(MemoryStore::new());
    let k1 = || Pepper::new(KeyId(1), [1; 32]);
    let k2 = || Pepper::new(KeyId(2), [2; 32]);
    let old = TokenService::builder_shared(store.clone(), Peppers::new(k1())).build();
    let t = old
        .deployment()
        .generate(NewDeployment::named("fleet").unwrap(), &admin())
        .await
        .unwrap();

    // A new current pepper with the old one kept: the command still shows, the token validates.
    let rotated =
        TokenService::builder_shared(store.clone(), Peppers::new(k2()).with_previous(k1())).build();
    assert!(
        rotated
            .deployment()
            .latest_secret()
            .await
            .unwrap()
            .ct_eq(t.secret.expose_secret())
    );
    // The old pepper retired before re-sealing: a typed error naming the pepper.
    let retired = TokenService::builder_shared(store.clone(), Peppers::new(k2())).build();
    let err = retired.deployment().command(TEMPLATE).await.unwrap_err();
    assert!(
        matches!(
            err,
            tessera::Error::Core(tessera::core::Error::SealKeyRetired { key: KeyId(1) })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("k1"), "{err}");
    assert_eq!(
        retired.reseal().await.unwrap(),
        tessera::ResealReport {
            resealed: vec![],
            unreadable: vec![t.token.id]
        }
    );
    // Re-seal while both are configured; then the old pepper can go for the command.
    let report = rotated.reseal().await.unwrap();
    assert_eq!(report.resealed, vec![t.token.id]);
    assert!(
        rotated.reseal().await.unwrap().resealed.is_empty(),
        "idempotent"
    );
    let record = store.get(t.token.id).await.unwrap().unwrap();
    assert_eq!(record.sealed.unwrap().key(), KeyId(2));
    // The re-seal is audited once (with the change, by the system); the idle re-runs are not.
    let resealed: Vec<_> = store
        .events(&tessera::store::AuditFilter::default().token(t.token.id))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == tessera::core::audit::AuditAction::Resealed)
        .collect();
    assert_eq!(resealed.len(), 1, "{resealed:?}");
    assert_eq!(resealed[0].actor, tessera::core::audit::Actor::System);
    assert!(
        retired
            .deployment()
            .latest_secret()
            .await
            .unwrap()
            .ct_eq(t.secret.expose_secret())
    );
    // A pepper under the right id but the wrong key: another typed error.
    let wrong =
        TokenService::builder_shared(store.clone(), Peppers::new(Pepper::new(KeyId(2), [9; 32])))
            .build();
    assert!(matches!(
        wrong.deployment().latest_secret().await.unwrap_err(),
        tessera::Error::Core(tessera::core::Error::SealBroken { key: KeyId(2) })
    ));
}
