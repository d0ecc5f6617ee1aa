//! `tessera app ...`: application bearer tokens.

use crate::common::*;

fn create(env: &Env, name: &str) -> (String, String) {
    issued(&env.json(&[
        "app",
        "create",
        "--name",
        name,
        "--description",
        "SIEM feed",
        "--access",
        "security-director,third-party-feeds",
    ]))
}

#[test]
fn create_list_verify_and_the_ip_log() {
    let env = Env::init();
    let (secret, id) = create(&env, "feed-1");
    assert!(secret.starts_with("tsr_app_"));
    let list = env.json(&["app", "list"]);
    assert_eq!(list[0]["name"], "feed-1");
    assert_eq!(list[0]["access"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&secret));
    // A whole Authorization header works too.
    let v = env.json_in(
        &["app", "verify", "--ip", "192.0.2.1"],
        &format!("Bearer {secret}"),
    );
    assert_eq!(v["name"], "feed-1");
    env.ok_in(&["app", "verify", "--ip", "192.0.2.2"], &secret);
    env.ok_in(&["app", "verify", "--ip", "192.0.2.1"], &secret);
    let ips = env.json(&["app", "ips", &id]);
    let first = ips
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["ip"] == "192.0.2.1")
        .unwrap();
    assert_eq!(first["count"], 2);
    assert_eq!(first["blocked"], false);
    assert!(first["first_seen"].is_string() && first["last_seen"].is_string());
    env.fails_in(
        &["app", "verify", "--ip", "192.0.2.1"],
        "Basic abc",
        BAD_INPUT,
    );
    env.fails_in(&["app", "verify", "--ip", "nope"], &secret, BAD_INPUT);
}

#[test]
fn blocking_an_ip_refuses_it_alone() {
    let env = Env::init();
    let (secret, id) = create(&env, "feed-2");
    env.ok(&["app", "block", &id, "203.0.113.9"]);
    let v = env.json_fails_in(&["app", "verify", "--ip", "203.0.113.9"], &secret, REJECTED);
    assert_eq!(v["reason"], "ip_blocked");
    env.ok_in(&["app", "verify", "--ip", "203.0.113.10"], &secret);
    let blocked = env.json(&["app", "ips", &id]);
    assert!(
        blocked
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["blocked"] == true)
    );
    env.ok(&["app", "unblock", &id, "203.0.113.9"]);
    env.ok_in(&["app", "verify", "--ip", "203.0.113.9"], &secret);
}

#[test]
fn deactivate_and_activate() {
    let env = Env::init();
    let (secret, id) = create(&env, "feed-3");
    assert_eq!(env.json(&["app", "deactivate", &id])["state"], "disabled");
    let v = env.json_fails_in(&["app", "verify", "--ip", "10.0.0.1"], &secret, REJECTED);
    assert_eq!(v["reason"], "disabled");
    assert_eq!(env.json(&["app", "activate", &id])["state"], "active");
    env.ok_in(&["app", "verify", "--ip", "10.0.0.1"], &secret);
    env.fails(&["app", "activate", &id], BAD_INPUT);
}

#[test]
fn names_are_checked_and_unique() {
    let env = Env::init();
    create(&env, "dup");
    let err = env.fails(
        &[
            "app",
            "create",
            "--name",
            "dup",
            "--access",
            "security-director",
        ],
        BAD_INPUT,
    );
    assert!(err.contains("already exists"), "{err}");
    env.fails(
        &[
            "app",
            "create",
            "--name",
            "has space",
            "--access",
            "security-director",
        ],
        BAD_INPUT,
    );
    env.fails(
        &[
            "app",
            "create",
            "--name",
            &"a".repeat(33),
            "--access",
            "security-director",
        ],
        BAD_INPUT,
    );
    env.fails(
        &[
            "app",
            "create",
            "--name",
            "ok",
            "--access",
            "x",
            "--description",
            &"d".repeat(1025),
        ],
        BAD_INPUT,
    );
    let (_, dep) = issued(&env.json(&["deployment", "generate", "--name", "d"]));
    env.fails(&["app", "ips", &dep], NOT_FOUND);
}

#[test]
fn unused_tokens_go_dormant_then_are_deleted() {
    let env = Env::init();
    let (secret, id) = create(&env, "idle");
    let at = |days: i64| {
        let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let sweep = |when: &str, dry: bool| {
        let mut c = env.cmd();
        c.args(["--json", "sweep"]).env("TESSERA_NOW", when);
        if dry {
            c.arg("--dry-run");
        }
        parse(&stdout(c.assert().success()))
    };
    let plan = sweep(&at(31), true);
    assert_eq!(plan["dormant"][0], id.as_str());
    assert_eq!(env.state(&id), "active");
    let done = sweep(&at(31), false);
    assert_eq!(done["dormant"][0], id.as_str());
    assert_eq!(env.state(&id), "dormant");
    let v = env.json_fails_in(&["app", "verify", "--ip", "10.0.0.1"], &secret, REJECTED);
    assert_eq!(v["reason"], "dormant");
    // Thresholds are configurable; past deletion the token is gone for good.
    let custom = {
        let mut c = env.cmd();
        c.args([
            "--json",
            "sweep",
            "--dormant-after",
            "1d",
            "--delete-after",
            "20d",
        ])
        .env("TESSERA_NOW", at(31));
        parse(&stdout(c.assert().success()))
    };
    assert_eq!(custom["deleted"][0], id.as_str());
    assert_eq!(env.state(&id), "deleted");
    env.fails(
        &["sweep", "--dormant-after", "5d", "--delete-after", "5d"],
        BAD_INPUT,
    );
}
