//! Payload contents: redaction, the TooLarge limit, and properties of the URI and Android
//! payloads for any token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

mod common;

use proptest::prelude::*;
use serde_json::Value;
use tessera_core::Secret;
use tessera_qr::{
    AndroidProvisioning, EcLevel, Error, Options, Payload, PayloadKind, Uri, render_png,
    render_svg, render_terminal,
};

const EXTRAS: &str = "android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE";

fn percent_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            out.push(b);
        }
    }
    out
}

#[test]
fn debug_never_shows_the_token() {
    for secret in [common::onboarding_secret(), common::short_code_secret()] {
        let token = secret.expose_secret();
        for payload in common::payloads(&secret) {
            for shown in [format!("{payload:?}"), format!("{payload:#?}")] {
                assert!(!shown.contains(token), "{shown}");
                assert!(shown.contains("[REDACTED]"), "{shown}");
            }
        }
    }
    let payload = Payload::text(&Secret::from_presented("x"));
    assert_eq!(
        format!("{payload:?}"),
        "Payload { kind: Text, text: [REDACTED] }"
    );
}

#[test]
fn four_thousand_bytes_at_level_h_is_too_large() {
    let token = "tsr_onb_".to_owned() + &"Z".repeat(3992);
    let payload = Payload::text(&Secret::from_presented(token));
    let options = Options::default().with_ec_level(EcLevel::H);
    let expected = Error::TooLarge {
        bytes: 4000,
        level: EcLevel::H,
    };
    assert_eq!(render_png(&payload, &options), Err(expected.clone()));
    assert_eq!(render_svg(&payload, &options), Err(expected.clone()));
    assert_eq!(render_terminal(&payload, &options), Err(expected.clone()));
    let message = expected.to_string();
    assert!(!message.contains("ZZZZ"));
    assert!(
        message.contains("4000 bytes") && message.contains("level H"),
        "{message}"
    );
    // ...while a lower level still takes a payload that H refuses.
    let medium = Payload::text(&Secret::from_presented("a".repeat(1500)));
    assert!(render_svg(&medium, &options).is_err());
    assert!(render_svg(&medium, &options.with_ec_level(EcLevel::L)).is_ok());
}

#[test]
fn kinds_are_reported() {
    let secret = common::onboarding_secret();
    let kinds: Vec<PayloadKind> = common::payloads(&secret)
        .iter()
        .map(Payload::kind)
        .collect();
    assert_eq!(kinds, common::KINDS);
    assert_eq!(Payload::text(&secret).expose_text(), secret.expose_secret());
}

#[test]
fn custom_scheme_and_param() {
    let secret = common::onboarding_secret();
    let uri = Uri::parse("myapp://enroll")
        .unwrap()
        .with_param("code")
        .unwrap();
    let payload = Payload::uri(&secret, &uri);
    assert_eq!(
        payload.expose_text(),
        format!("myapp://enroll?code={}", secret.expose_secret())
    );
}

#[test]
fn android_extras_key_is_configurable() {
    let secret = common::onboarding_secret();
    let provisioning = common::provisioning()
        .with_extras_key("com.example.dpc.ENROLL")
        .unwrap();
    let doc: Value =
        serde_json::from_str(Payload::android(&secret, &provisioning).expose_text()).unwrap();
    assert_eq!(
        doc[EXTRAS],
        serde_json::json!({"com.example.dpc.ENROLL": secret.expose_secret()})
    );
    assert_eq!(doc["android.app.extra.PROVISIONING_SKIP_ENCRYPTION"], false);
    assert_eq!(
        doc["android.app.extra.PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED"],
        true
    );
}

#[test]
fn errors_say_what_to_do() {
    let errors = [
        Uri::parse("not a url").unwrap_err(),
        Uri::parse("https://x.io")
            .unwrap()
            .with_param("")
            .unwrap_err(),
        AndroidProvisioning::new("x", common::LOCATION, common::CHECKSUM).unwrap_err(),
        AndroidProvisioning::new(common::COMPONENT, "http://x.io", common::CHECKSUM).unwrap_err(),
        AndroidProvisioning::new(common::COMPONENT, common::LOCATION, "x").unwrap_err(),
        common::provisioning().with_extras_key("").unwrap_err(),
    ];
    for e in errors {
        let m = e.to_string();
        assert!(m.contains("; "), "{m}");
        assert!(m.starts_with(|c: char| c.is_ascii_lowercase()), "{m}");
        assert!(!m.ends_with('.'), "{m}");
    }
}

fn component_name() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9_]{0,8}(\\.[a-z][a-z0-9_]{0,8}){1,3}",
        "\\.?[A-Za-z_][A-Za-z0-9_$]{0,12}(\\.[A-Za-z_][A-Za-z0-9_$]{0,12}){0,2}",
    )
        .prop_map(|(package, class)| format!("{package}/{class}"))
}

proptest! {
    #[test]
    fn uri_carries_any_token(token in any::<String>(), query in proptest::option::of("[a-z]{1,5}=[a-z0-9]{0,5}")) {
        let base = match &query {
            Some(q) => format!("https://mdm.example.com/enroll?{q}"),
            None => "https://mdm.example.com/enroll".to_owned(),
        };
        let uri = Uri::parse(&base).unwrap();
        let payload = Payload::uri(&Secret::from_presented(token.clone()), &uri);
        let text = payload.expose_text();
        let sep = if query.is_some() { '&' } else { '?' };
        let value = text.strip_prefix(&format!("{base}{sep}token=")).unwrap();
        prop_assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        prop_assert_eq!(percent_decode(value), token.into_bytes());
    }

    #[test]
    fn android_json_is_valid_for_any_token(
        token in any::<String>(),
        component in component_name(),
        location in "https://[a-z]{1,10}\\.[a-z]{2,5}(/[A-Za-z0-9._~-]{0,10}){0,3}(\\?[a-z]{1,5}=[A-Za-z0-9]{0,8})?",
        // 43 characters spelling 32 bytes: the last one leaves no bits over.
        checksum in "[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]=?",
        extras_key in "[A-Za-z0-9._-]{1,40}",
        skip in proptest::option::of(any::<bool>()),
        leave in proptest::option::of(any::<bool>()),
    ) {
        let mut p = AndroidProvisioning::new(&component, &location, &checksum)
            .unwrap()
            .with_extras_key(&extras_key)
            .unwrap();
        if let Some(skip) = skip {
            p = p.with_skip_encryption(skip);
        }
        if let Some(leave) = leave {
            p = p.with_leave_all_system_apps_enabled(leave);
        }
        let payload = Payload::android(&Secret::from_presented(token.clone()), &p);
        let doc: Value = serde_json::from_str(payload.expose_text()).unwrap();
        let key = |k: &str| format!("android.app.extra.PROVISIONING_{k}");
        prop_assert_eq!(&doc[key("DEVICE_ADMIN_COMPONENT_NAME")], &Value::from(component));
        prop_assert_eq!(&doc[key("DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION")], &Value::from(location));
        prop_assert_eq!(&doc[key("DEVICE_ADMIN_SIGNATURE_CHECKSUM")], &Value::from(checksum.trim_end_matches('=')));
        prop_assert_eq!(doc.get(key("SKIP_ENCRYPTION")).and_then(Value::as_bool), skip);
        prop_assert_eq!(doc.get(key("LEAVE_ALL_SYSTEM_APPS_ENABLED")).and_then(Value::as_bool), leave);
        let mut extras = serde_json::Map::new();
        extras.insert(extras_key, Value::from(token));
        prop_assert_eq!(&doc[EXTRAS], &Value::Object(extras));
        prop_assert_eq!(doc.as_object().unwrap().len(), 4 + usize::from(skip.is_some()) + usize::from(leave.is_some()));
    }

    #[test]
    fn any_fields_are_refused_or_make_valid_json(
        component in prop_oneof![component_name(), any::<String>(), "[ -~]{0,40}"],
        location in prop_oneof![any::<String>(), "[hH][tT]{2}[pP][sS]?:[ -~]{0,40}"],
        checksum in prop_oneof![any::<String>(), "[ -~]{42,45}"],
        token in any::<String>(),
    ) {
        if let Ok(p) = AndroidProvisioning::new(&component, &location, &checksum) {
            let payload = Payload::android(&Secret::from_presented(token.clone()), &p);
            let doc: Value = serde_json::from_str(payload.expose_text()).unwrap();
            prop_assert_eq!(&doc[EXTRAS][AndroidProvisioning::DEFAULT_EXTRAS_KEY], &Value::from(token));
            // Always the URL-safe, unpadded spelling Android reads.
            let sum = p.signature_checksum();
            prop_assert_eq!(sum.len(), 43);
            prop_assert!(sum.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    #[test]
    fn any_base_is_refused_or_keeps_its_prefix(
        base in prop_oneof![any::<String>(), "[a-zA-Z0-9]{1,6}:(//)?[ -~]{0,30}"],
        token in "[a-z]{1,8}",
    ) {
        if let Ok(uri) = Uri::parse(&base) {
            let payload = Payload::uri(&Secret::from_presented(token.clone()), &uri);
            let before = base.split('#').next().unwrap();
            prop_assert!(payload.expose_text().starts_with(before));
            let expected = format!("token={token}");
            prop_assert!(payload.expose_text().contains(&expected));
        }
    }
}
