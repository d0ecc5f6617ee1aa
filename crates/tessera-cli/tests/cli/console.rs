//! The seeds' console actions from the CLI: endpoint traffic filters, endpoints never set up,
//! hide-unassigned per endpoint, expiring and exhausted listings, the audit trail's own
//! events, and consistent answers (one time syntax, JSON errors, empty list entries).

use serde_json::Value;

use crate::common::*;

const T0: &str = "2026-11-23T09:00:00Z";
const T2: &str = "2026-11-23T11:00:00Z";

/// Run at a moved clock.
fn at(env: &Env, now: &str, args: &[&str], stdin: &str) -> Value {
    let mut all = vec!["--json", "--now", now];
    all.extend_from_slice(args);
    parse(&env.ok_in(&all, stdin))
}

fn secondary(env: &Env, name: &str, endpoint: &str) -> (String, String) {
    let (secret, id) = issued(&env.json(&["endpoint", "secondary", "create", "--name", name]));
    env.ok(&["endpoint", "secondary", "map", &id, endpoint, "get"]);
    (secret, id)
}

#[test]
fn endpoint_traffic_filters_by_token_name_and_window() {
    let env = Env::init();
    env.ok(&["endpoint", "enable", "/orders"]);
    let (erp, erp_id) = secondary(&env, "erp", "/orders");
    let (crm, _) = secondary(&env, "crm", "/orders");
    let check = ["endpoint", "check", "/orders", "get"];
    at(&env, T0, &check, &erp);
    at(&env, T0, &check, &crm);
    for _ in 0..3 {
        at(&env, T2, &check, &erp);
    }
    let all = env.json(&["endpoint", "traffic", "/orders"]);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let by_token = env.json(&["endpoint", "traffic", "/orders", "--token", &erp_id[..8]]);
    assert_eq!(by_token[0]["count"], 4, "{by_token}");
    assert_eq!(by_token.as_array().unwrap().len(), 1);
    let by_name = env.json(&["endpoint", "traffic", "/orders", "--name", "crm"]);
    assert_eq!(by_name.as_array().unwrap().len(), 1);
    assert_eq!(by_name[0]["name"], "crm");
    // A window: an RFC 3339 instant, or a duration back from the (moved) clock.
    let late = env.json(&[
        "endpoint",
        "traffic",
        "/orders",
        "--since",
        "2026-11-23T10:00:00Z",
    ]);
    assert_eq!(late.as_array().unwrap().len(), 1);
    assert_eq!(late[0]["count"], 3);
    let recent = at(
        &env,
        T2,
        &["endpoint", "traffic", "/orders", "--since", "-1h"],
        "",
    );
    assert_eq!(recent, late);
    let early = at(
        &env,
        T2,
        &["endpoint", "traffic", "/orders", "--until", "1h"],
        "",
    );
    assert_eq!(early.as_array().unwrap().len(), 2);
    let table = env.ok(&["endpoint", "traffic", "/orders", "--name", "nobody"]);
    assert!(
        table.contains("no accepted requests on /orders match"),
        "{table}"
    );
}

#[test]
fn an_endpoint_never_set_up_is_not_found() {
    let env = Env::init();
    for args in [
        vec!["endpoint", "traffic", "/nowhere"],
        vec!["-y", "endpoint", "disable", "/nowhere"],
        vec!["endpoint", "primary", "list", "/nowhere"],
    ] {
        let err = env.fails(&args, NOT_FOUND);
        assert!(err.contains("never set up"), "{args:?}: {err}");
    }
    env.ok(&["endpoint", "enable", "/orders"]);
    env.ok(&["-y", "endpoint", "disable", "/orders"]);
    let off = env.ok(&["endpoint", "primary", "list", "/orders"]);
    assert!(off.contains("token authentication is off"), "{off}");
    env.ok(&["endpoint", "traffic", "/orders"]);
}

#[test]
fn hide_unassigned_is_relative_to_the_endpoint_in_view() {
    let env = Env::init();
    env.ok(&["endpoint", "enable", "/orders"]);
    env.ok(&["endpoint", "enable", "/items"]);
    secondary(&env, "erp", "/orders");
    secondary(&env, "shop", "/items");
    env.ok(&["endpoint", "secondary", "create", "--name", "idle"]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["endpoint", "secondary", "list"];
        all.extend_from_slice(args);
        env.json(&all)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&["--endpoint", "/orders", "--hide-unassigned"]),
        ["erp"]
    );
    assert_eq!(
        names(&["--endpoint", "/items", "--hide-unassigned"]),
        ["shop"]
    );
    assert_eq!(names(&["--hide-unassigned"]), ["erp", "shop"]);
    assert_eq!(names(&["--endpoint", "/orders"]), ["erp", "shop", "idle"]);
}

#[test]
fn list_expiring_and_exhausted() {
    let env = Env::init();
    let make = |name: &str, expires: &str| {
        issued(&at(
            &env,
            T0,
            &[
                "deployment",
                "generate",
                "--name",
                name,
                "--expires",
                expires,
            ],
            "",
        ))
        .1
    };
    let (soon, later) = (make("soon", "3d"), make("later", "30d"));
    at(&env, T0, &["deployment", "generate", "--name", "never"], "");
    let (code, one) = issued(&at(
        &env,
        T0,
        &["onboarding", "create", "--policy", "p", "--group", "g"],
        "",
    ));
    at(
        &env,
        T0,
        &["onboarding", "redeem", "--device", "dev-1", &code],
        "",
    );
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(at(&env, T0, &["list", "--expiring", "7d"], "")),
        vec![soon.as_str()]
    );
    let both = ids(at(&env, T0, &["list", "--expiring", "31d"], ""));
    assert!(both.contains(&soon) && both.contains(&later) && both.len() == 2);
    assert_eq!(
        ids(at(&env, T0, &["list", "--state", "exhausted"], "")),
        [one]
    );
    let table = env.ok(&["--now", T0, "list", "--expiring", "7d"]);
    assert!(
        table.contains("soon") && !table.contains("later"),
        "{table}"
    );
    // Past its expiry it is no longer "expiring" but expired.
    let moved = ids(at(
        &env,
        "2026-12-31T00:00:00Z",
        &["list", "--expiring", "7d"],
        "",
    ));
    assert!(moved.is_empty(), "{moved:?}");
    env.fails(&["list", "--state", "sleepy"], BAD_INPUT);
    env.fails(&["list", "--expiring", "soon"], BAD_INPUT);
}

#[test]
fn one_time_syntax_and_negative_durations() {
    let env = Env::init();
    let v = at(
        &env,
        T0,
        &[
            "deployment",
            "generate",
            "--name",
            "a",
            "--expires",
            "2027-01-31T10:00:00Z",
        ],
        "",
    );
    assert_eq!(v["token"]["expires_at"], "2027-01-31T10:00:00Z", "{v}");
    let v = at(
        &env,
        T0,
        &[
            "auth",
            "generate",
            "--name",
            "x",
            "--scope",
            "a",
            "--expires",
            "2027-01-31T10:00:00Z",
        ],
        "",
    );
    assert_eq!(v["token"]["expires_at"], "2027-01-31T10:00:00Z", "{v}");
    // A negative duration is read as a value, and refused as lying in the past.
    for args in [
        vec!["deployment", "generate", "--name", "b", "--expires", "-5m"],
        vec![
            "auth",
            "generate",
            "--name",
            "y",
            "--scope",
            "a",
            "--expires",
            "-5m",
        ],
    ] {
        let err = env.fails(&args, BAD_INPUT);
        assert!(err.contains("lies in the past"), "{args:?}: {err}");
    }
    // The audit filters read the same syntax.
    for since in ["-1h", "1h", "2026-11-23", "2026-11-23T08:00:00Z"] {
        let got = at(&env, T0, &["audit", "--since", since], "");
        assert!(!got.as_array().unwrap().is_empty(), "{since}");
    }
    assert!(
        at(&env, T0, &["audit", "--since", "+1h"], "")
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn parser_errors_are_json_with_json() {
    let env = Env::init();
    for args in [
        vec!["--json", "list", "--kind", "nope"],
        vec!["--json", "frobnicate"],
        vec!["--json", "app", "block"],
        vec!["--json", "app", "block", "x", "not-an-ip"],
    ] {
        let out = env.run(&args).code(BAD_INPUT).get_output().clone();
        let err = parse(String::from_utf8(out.stderr).unwrap().trim());
        assert_eq!(err["error"]["class"], "bad_input", "{args:?}");
        assert_eq!(err["error"]["exit_code"], BAD_INPUT);
        assert!(err["error"]["message"].as_str().unwrap().len() > 10);
    }
    // Help still prints as help.
    let help = env.ok(&["--json", "list", "--help"]);
    assert!(help.contains("--expiring"), "{help}");
}

#[test]
fn empty_list_entries_are_refused() {
    let env = Env::init();
    for args in [
        vec![
            "auth",
            "generate",
            "--name",
            "x",
            "--scope",
            "a,,b",
            "--expires",
            "1d",
        ],
        vec![
            "auth",
            "generate",
            "--name",
            "x",
            "--scope",
            "a,",
            "--expires",
            "1d",
        ],
        vec![
            "app",
            "create",
            "--name",
            "n",
            "--access",
            "security-director,,third-party-feeds",
        ],
    ] {
        let err = env.fails(&args, BAD_INPUT);
        assert!(err.contains("empty entry"), "{args:?}: {err}");
    }
    assert!(env.json(&["list"]).as_array().unwrap().is_empty());
}

#[test]
fn endpoint_settings_are_audit_events() {
    let env = Env::init();
    env.ok(&["endpoint", "enable", "/orders"]);
    env.ok(&["endpoint", "allow-delete", "/orders"]);
    env.ok(&["-y", "endpoint", "allow-delete", "/orders", "--off"]);
    env.ok(&["-y", "endpoint", "disable", "/orders"]);
    let events = env.json(&["audit"]);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"]["token"].is_null())
        .map(|e| e["action"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "endpoint_enabled",
            "delete_allowed",
            "delete_allowed",
            "endpoint_disabled"
        ]
    );
    let table = env.ok(&["audit"]);
    assert!(table.contains("token authentication on"), "{table}");
    assert!(table.contains("delete forbidden"), "{table}");
}

#[test]
fn refusal_messages_say_it_once_and_fit_the_case() {
    let env = Env::init();
    let v = env.json(&["endpoint", "enable", "/orders"]);
    let get = issued(&v[0]).0;
    env.ok(&["endpoint", "enable", "/items"]);
    // A primary on another endpoint: no talk of secondaries.
    let err = env.fails_in(&["endpoint", "check", "/items", "get"], &get, REJECTED);
    assert!(
        err.contains("wrong_endpoint") && !err.contains("secondary"),
        "{err}"
    );
    // Mapping twice: already mapped, not "pick another".
    let (_, id) = secondary(&env, "erp", "/orders");
    let err = env.fails(
        &["endpoint", "secondary", "map", &id, "/orders", "get"],
        BAD_INPUT,
    );
    assert!(
        err.contains("already mapped") && !err.contains("pick another"),
        "{err}"
    );
    // A withdrawn permission is said once.
    let (token, _) = issued(&env.json(&[
        "auth",
        "generate",
        "--name",
        "t",
        "--scope",
        "a",
        "--expires",
        "1d",
    ]));
    let err = env.fails_in(
        &["auth", "check", "--action", "a", "--held", "b"],
        &token,
        REJECTED,
    );
    assert_eq!(err.matches("no longer holds").count(), 1, "{err}");
}
