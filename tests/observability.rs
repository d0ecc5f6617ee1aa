//! Traces and metrics: every event and span field at TRACE, over every kind, every refusal and
//! every error, is captured and searched for the secrets and any fragment of them; the
//! metrics count validations by kind and outcome and store errors by class.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up fails loudly

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata};
use metrics::{Recorder, SharedString, Unit};
use tessera::auth::NewAuth;
use tessera::core::clock::ManualClock;
use tessera::core::id::{
    AccessType, ApplicationName, Description, DeviceId, EndpointId, Permission, TokenName,
};
use tessera::core::kind::application::{AccessTypes, InactivityPolicy};
use tessera::core::kind::endpoint::Method;
use tessera::core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::onboarding::NewOnboarding;
use tessera::sql::SqliteStore;
use tessera::{Duration, Outcome, Rejection, RequestContext, TokenService};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Everything every span and event said, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<String>>);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl<S: Subscriber> Layer<S> for Captured {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut out = self.0.lock().unwrap();
        let _ = write!(
            out,
            "\nspan {} {}:",
            attrs.metadata().target(),
            attrs.metadata().name()
        );
        attrs.record(&mut Text(&mut out));
    }

    fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut out = self.0.lock().unwrap();
        out.push_str("\nrecord:");
        values.record(&mut Text(&mut out));
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut out = self.0.lock().unwrap();
        let _ = write!(
            out,
            "\n{} {}:",
            event.metadata().level(),
            event.metadata().target()
        );
        event.record(&mut Text(&mut out));
    }
}

/// A recorder keeping every counter by its name and labels.
#[derive(Clone, Default)]
struct Counters(Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>);

struct Count(Arc<AtomicU64>);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

struct Ignored;

impl HistogramFn for Ignored {
    fn record(&self, _: f64) {}
}

fn key_text(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = self
            .0
            .lock()
            .unwrap()
            .entry(key_text(key))
            .or_default()
            .clone();
        Counter::from_arc(Arc::new(Count(cell)))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0.lock().unwrap().entry(key_text(key)).or_default();
        Histogram::from_arc(Arc::new(Ignored))
    }
}

impl Counters {
    fn get(&self, key: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn keys(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Every window of `n` characters of a secret past its kind prefix.
fn fragments(secret: &str, n: usize) -> Vec<String> {
    let body = secret
        .get(8..)
        .filter(|_| secret.starts_with("tsr_"))
        .unwrap_or(secret);
    let chars: Vec<char> = body.chars().collect();
    chars
        .windows(n.min(chars.len()))
        .map(|w| w.iter().collect())
        .collect()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn perms(names: &[&str]) -> BTreeSet<Permission> {
    names
        .iter()
        .map(|n| Permission::parse(*n).unwrap())
        .collect()
}

/// Drive every kind through acceptance, every refusal and errors, at TRACE, and search all
/// that was said for the secrets.
#[tokio::test(flavor = "current_thread")]
async fn traces_never_carry_a_secret_and_metrics_count_every_outcome() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let counters = Counters::default();
    metrics::set_global_recorder(counters.clone()).unwrap();

    let clock = Arc::new(ManualClock::new(common::T0));
    let svc = TokenService::builder(MemoryStore::new(), common::peppers())
        .clock(clock.clone())
        .inactivity(InactivityPolicy::new(Duration::days(30), Duration::days(90)).unwrap())
        .build();
    let admin = common::admin();
    let mut secrets: Vec<String> = Vec::new();
    let mut keep = |s: &tessera::Secret| {
        secrets.push(s.expose_secret().to_owned());
        s.expose_secret().to_owned()
    };

    // Deployment: accepted, malformed, unknown, expired, revoked (expire), rotated out.
    let dep = svc
        .deployment()
        .generate(
            NewDeployment::named("installer")
                .unwrap()
                .expires_at(common::T0 + Duration::days(1)),
            &admin,
        )
        .await
        .unwrap();
    let dep_token = keep(&dep.secret);
    let installer = RequestContext::new().installer();
    assert!(svc.validate(&dep_token, &installer).await.is_accepted());
    let mut typo = dep_token.clone();
    typo.replace_range(12..13, if &typo[12..13] == "a" { "b" } else { "a" });
    assert!(matches!(
        svc.validate(&typo, &installer).await,
        Outcome::Refused(Rejection::Malformed)
    ));
    let unknown = tessera::Secret::generate(tessera::Kind::Deployment).unwrap();
    let unknown = keep(&unknown);
    assert!(matches!(
        svc.validate(&unknown, &installer).await,
        Outcome::Refused(Rejection::NotFound)
    ));
    let rotated = svc
        .rotate(dep.token.id, Some(Duration::minutes(5)), &admin)
        .await
        .unwrap();
    let rotated_token = keep(&rotated.secret);
    clock.advance(Duration::minutes(10));
    svc.sweep(false).await.unwrap();
    assert!(matches!(
        svc.validate(&dep_token, &installer).await,
        Outcome::Refused(Rejection::RotatedOut | Rejection::Expired)
    ));
    svc.deployment()
        .expire(rotated.token.id, &admin)
        .await
        .unwrap();
    assert!(!svc.validate(&rotated_token, &installer).await.is_accepted());
    clock.set(common::T0);

    // Onboarding: accepted, exhausted, device mismatch, revoked.
    let onb = svc
        .onboarding()
        .create(
            NewOnboarding::new("kiosk", "lobby")
                .unwrap()
                .limit(UsageLimit::uses(1).unwrap())
                .binding(DeviceBinding::Device(DeviceId::parse("dev-1").unwrap())),
            &admin,
        )
        .await
        .unwrap();
    let onb_token = keep(&onb.secret);
    let (d1, d2) = (
        DeviceId::parse("dev-1").unwrap(),
        DeviceId::parse("dev-2").unwrap(),
    );
    assert!(matches!(
        svc.validate(&onb_token, &RequestContext::new().device(&d2))
            .await,
        Outcome::Refused(Rejection::DeviceMismatch)
    ));
    assert!(
        svc.validate(&onb_token, &RequestContext::new().device(&d1))
            .await
            .is_accepted()
    );
    // Used up: another device is refused as exhausted (the enrolled one would get its
    // enrollment back: one device, one use).
    assert!(matches!(
        svc.validate(&onb_token, &RequestContext::new().device(&d2))
            .await,
        Outcome::Refused(Rejection::Exhausted)
    ));
    let onb2 = svc
        .onboarding()
        .create(NewOnboarding::new("kiosk", "lobby").unwrap(), &admin)
        .await
        .unwrap();
    let onb2_token = keep(&onb2.secret);
    svc.onboarding()
        .revoke(onb2.token.id, &admin)
        .await
        .unwrap();
    assert!(matches!(
        svc.validate(&onb2_token, &RequestContext::new().device(&d1))
            .await,
        Outcome::Refused(Rejection::Revoked)
    ));

    // Endpoint: primary accepted, wrong method, wrong endpoint, secondary mapped, mapping off,
    // secondary disabled.
    let orders = EndpointId::parse("/orders").unwrap();
    let other = EndpointId::parse("/other").unwrap();
    let primaries = svc.endpoint().enable(&orders, false, &admin).await.unwrap();
    let get_primary = primaries
        .iter()
        .find(|(m, _)| *m == Method::Get)
        .map(|(_, i)| keep(&i.secret))
        .unwrap();
    for (_, i) in &primaries {
        keep(&i.secret);
    }
    let at = |e, m| RequestContext::new().endpoint(e, m).client(ip(9));
    assert!(
        svc.validate(&get_primary, &at(&orders, Method::Get))
            .await
            .is_accepted()
    );
    assert!(matches!(
        svc.validate(&get_primary, &at(&orders, Method::Post)).await,
        Outcome::Refused(Rejection::WrongMethod)
    ));
    assert!(matches!(
        svc.validate(&get_primary, &at(&other, Method::Get)).await,
        Outcome::Refused(Rejection::WrongEndpoint)
    ));
    let erp = svc
        .endpoint()
        .create_secondary(
            TokenName::parse("erp").unwrap(),
            Description::default(),
            &admin,
        )
        .await
        .unwrap();
    let erp_token = keep(&erp.secret);
    svc.endpoint()
        .map(erp.token.id, &orders, Method::Get, &admin)
        .await
        .unwrap();
    assert!(
        svc.validate(&erp_token, &at(&orders, Method::Get))
            .await
            .is_accepted()
    );
    svc.endpoint()
        .set_mapping_enabled(erp.token.id, &orders, Method::Get, false, &admin)
        .await
        .unwrap();
    assert!(matches!(
        svc.validate(&erp_token, &at(&orders, Method::Get)).await,
        Outcome::Refused(Rejection::MappingDisabled)
    ));
    svc.endpoint()
        .set_enabled(erp.token.id, false, &admin)
        .await
        .unwrap();
    assert!(
        !svc.validate(&erp_token, &at(&orders, Method::Get))
            .await
            .is_accepted()
    );

    // Auth: accepted, insufficient scope, permission withdrawn, expired.
    let spec = NewAuth::new("tech-1", "script", ["reset_password"], "1h").unwrap();
    let held = perms(&["reset_password", "unlock"]);
    let auth = svc.auth().generate(spec, &held, &admin).await.unwrap();
    let auth_token = keep(&auth.secret);
    let (reset, unlock) = (
        Permission::parse("reset_password").unwrap(),
        Permission::parse("unlock").unwrap(),
    );
    assert!(
        svc.validate(&auth_token, &RequestContext::new().action(&reset, &held))
            .await
            .is_accepted()
    );
    assert!(matches!(
        svc.validate(&auth_token, &RequestContext::new().action(&unlock, &held))
            .await,
        Outcome::Refused(Rejection::InsufficientScope)
    ));
    let none = perms(&[]);
    assert!(matches!(
        svc.validate(&auth_token, &RequestContext::new().action(&reset, &none))
            .await,
        Outcome::Refused(Rejection::PermissionWithdrawn)
    ));
    clock.advance(Duration::hours(2));
    assert!(matches!(
        svc.validate(&auth_token, &RequestContext::new().action(&reset, &held))
            .await,
        Outcome::Refused(Rejection::Expired)
    ));
    clock.set(common::T0);

    // Application: accepted, IP blocked, disabled, dormant, deleted; a token of another kind.
    let app = svc
        .application()
        .create(
            ApplicationName::parse("siem").unwrap(),
            Description::parse("collector").unwrap(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &admin,
        )
        .await
        .unwrap();
    let app_token = keep(&app.secret);
    let bearer = |last| RequestContext::new().application(ip(last));
    assert!(svc.validate(&app_token, &bearer(1)).await.is_accepted());
    assert!(matches!(
        svc.validate(&dep_token, &bearer(1)).await,
        Outcome::Refused(Rejection::Malformed)
    ));
    svc.application()
        .block(app.token.id, ip(2), &admin)
        .await
        .unwrap();
    assert!(matches!(
        svc.validate(&app_token, &bearer(2)).await,
        Outcome::Refused(Rejection::IpBlocked)
    ));
    svc.application()
        .deactivate(app.token.id, &admin)
        .await
        .unwrap();
    assert!(matches!(
        svc.validate(&app_token, &bearer(1)).await,
        Outcome::Refused(Rejection::Disabled)
    ));
    svc.application()
        .activate(app.token.id, &admin)
        .await
        .unwrap();
    clock.advance(Duration::days(31));
    svc.sweep(false).await.unwrap();
    let dormant = svc.validate(&app_token, &bearer(1)).await;
    assert!(
        matches!(dormant, Outcome::Refused(Rejection::Dormant)),
        "{dormant:?}"
    );
    clock.advance(Duration::days(60));
    svc.sweep(false).await.unwrap();
    assert!(matches!(
        svc.validate(&app_token, &bearer(1)).await,
        Outcome::Refused(Rejection::Deleted)
    ));
    clock.set(common::T0);

    // Errors: administrative mistakes, and a store that fails (a SQLite store, closed).
    assert!(
        svc.application()
            .activate(dep.token.id, &admin)
            .await
            .is_err()
    );
    let spec = NewAuth::new("tech-2", "other", ["reset_password"], "1h").unwrap();
    assert!(
        svc.auth()
            .generate(spec, &held, &common::user("tech-1"))
            .await
            .is_err()
    );
    let sqlite = SqliteStore::open_in_memory().await.unwrap();
    sqlite.migrate().await.unwrap();
    let failing = TokenService::new(sqlite.clone(), common::peppers());
    let doomed = failing
        .application()
        .create(
            ApplicationName::parse("doomed").unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &admin,
        )
        .await
        .unwrap();
    let doomed_token = keep(&doomed.secret);
    sqlite.close().await;
    assert!(matches!(
        failing.validate(&doomed_token, &bearer(1)).await,
        Outcome::Failed(e) if e.is_temporary()
    ));
    assert!(failing.application().list().await.is_err());

    // Not one secret, nor any eight characters of one, nor a stored hint, was said.
    let said = captured.0.lock().unwrap().clone();
    assert!(
        said.contains("tessera.validate"),
        "no validation span: {said}"
    );
    assert!(
        said.contains("token issued") && said.contains("token refused"),
        "{said}"
    );
    assert!(
        said.contains("WARN"),
        "no warning for the failing store: {said}"
    );
    for secret in &secrets {
        for fragment in fragments(secret, 8) {
            assert!(
                !said.contains(&fragment),
                "a fragment of a secret was said: {fragment}"
            );
        }
    }
    for hint in [
        &dep.token.hint,
        &app.token.hint,
        &auth.token.hint,
        &erp.token.hint,
    ] {
        assert!(!said.contains(hint.as_str()), "a hint was said: {hint}");
    }
    // Every refusal of a found token names it (its id) on the validation's span: the span
    // in which the id was recorded ends with that refusal as its outcome.
    let get_primary_id = primaries
        .iter()
        .find(|(m, _)| *m == Method::Get)
        .map(|(_, i)| i.token.id)
        .unwrap();
    let validations: Vec<&str> = said
        .split("\nspan ")
        .filter(|block| block.contains("tessera.validate"))
        .collect();
    let refused_naming = |id: tessera::core::id::TokenId, codes: &[&str]| {
        let named = format!("token_id={id}");
        validations.iter().any(|block| {
            block.contains(&named)
                && codes
                    .iter()
                    .any(|code| block.contains(&format!("outcome=\"{code}\"")))
        })
    };
    for (what, id, codes) in [
        (
            "deployment rotated out",
            dep.token.id,
            &["rotated_out", "expired"][..],
        ),
        (
            "onboarding device mismatch",
            onb.token.id,
            &["device_mismatch"],
        ),
        ("onboarding exhausted", onb.token.id, &["exhausted"]),
        ("onboarding revoked", onb2.token.id, &["revoked"]),
        ("endpoint wrong method", get_primary_id, &["wrong_method"]),
        (
            "endpoint wrong endpoint",
            get_primary_id,
            &["wrong_endpoint"],
        ),
        (
            "endpoint mapping disabled",
            erp.token.id,
            &["mapping_disabled"],
        ),
        (
            "auth insufficient scope",
            auth.token.id,
            &["insufficient_scope"],
        ),
        (
            "auth permission withdrawn",
            auth.token.id,
            &["permission_withdrawn"],
        ),
        ("auth expired", auth.token.id, &["expired"]),
        ("application ip blocked", app.token.id, &["ip_blocked"]),
        ("application disabled", app.token.id, &["disabled"]),
        ("application dormant", app.token.id, &["dormant"]),
        ("application deleted", app.token.id, &["deleted"]),
    ] {
        assert!(
            refused_naming(id, codes),
            "the refusal ({what}) does not name token {id}: {said}"
        );
    }
    // An unknown or malformed token names none.
    assert!(validations.iter().all(|block| {
        !(block.contains("outcome=\"not_found\"") || block.contains("outcome=\"malformed\""))
            || !block.contains("token_id=")
    }));

    let labels = counters.keys();
    for secret in &secrets {
        for fragment in fragments(secret, 8) {
            assert!(
                !labels.contains(&fragment),
                "a metric label holds a fragment"
            );
        }
    }

    // The metrics counted every outcome by kind.
    let count = |kind: &str, outcome: &str| {
        counters.get(&format!(
            "tessera_validations_total{{kind={kind},outcome={outcome}}}"
        ))
    };
    assert_eq!(count("deployment", "accepted"), 1, "{labels}");
    assert_eq!(count("deployment", "malformed"), 1);
    assert_eq!(count("deployment", "not_found"), 1);
    assert_eq!(count("onboarding", "device_mismatch"), 1);
    assert_eq!(count("onboarding", "exhausted"), 1);
    assert_eq!(count("endpoint", "wrong_method"), 1);
    assert_eq!(count("endpoint", "mapping_disabled"), 1);
    assert_eq!(count("auth", "permission_withdrawn"), 1);
    assert_eq!(count("application", "ip_blocked"), 1);
    assert_eq!(count("application", "deleted"), 1);
    assert_eq!(count("application", "error"), 1);
    assert_eq!(
        counters.get("tessera_redemptions_total{outcome=accepted}"),
        1,
        "{labels}"
    );
    assert!(
        counters.get("tessera_store_errors_total{class=unavailable}") >= 2,
        "{labels}"
    );
}
