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

/// Dormancy and deletion hold at the moment of use, with no sweep run: under a moved clock
/// `app verify` refuses an idle token, `show` and `app list` say so, a refused use revives
/// nothing, `app activate` makes a dormant token usable again and restarts its idle clock.
#[test]
fn idle_tokens_are_refused_at_use_without_a_sweep() {
    let env = Env::init();
    let (secret, id) = create(&env, "idle-at-use");
    let start = time::OffsetDateTime::now_utc();
    let at = |days: i64| {
        (start + time::Duration::days(days))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let run = |when: &str, args: &[&str]| {
        let mut c = env.cmd();
        c.args(args)
            .env("TESSERA_NOW", when)
            .write_stdin(secret.clone());
        c.assert()
    };
    let verify = |when: &str| run(when, &["--json", "app", "verify", "--ip", "10.0.0.1"]);
    let refused = |when: &str| {
        let out = verify(when).code(REJECTED).get_output().stdout.clone();
        let v = parse(&String::from_utf8(out).unwrap());
        v["reason"].as_str().unwrap().to_owned()
    };
    let shown = |when: &str| {
        parse(&stdout(run(when, &["--json", "show", &id]).success()))["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    verify(&at(1)).success();
    // 30 days after the last use: dormant, without a sweep, however often it is tried.
    assert_eq!(refused(&at(31)), "dormant");
    assert_eq!(refused(&at(31)), "dormant");
    assert_eq!(shown(&at(31)), "dormant");
    let listed = parse(&stdout(run(&at(31), &["--json", "app", "list"]).success()));
    assert_eq!(listed[0]["state"], "dormant", "{listed}");
    // The refusals wrote no use: the IP log still counts the one use on day 1.
    let ips = parse(&stdout(
        run(&at(31), &["--json", "app", "ips", &id]).success(),
    ));
    assert_eq!(ips[0]["count"], 1, "{ips}");
    // Reactivated on day 40: usable, and idle from then on.
    let back = parse(&stdout(
        run(&at(40), &["--json", "app", "activate", &id]).success(),
    ));
    assert_eq!(back["state"], "active");
    verify(&at(40)).success();
    assert_eq!(shown(&at(69)), "active");
    assert_eq!(refused(&at(70)), "dormant");
    // 90 days after the last use: deleted for good, and gone from the list.
    assert_eq!(refused(&at(130)), "deleted");
    assert_eq!(shown(&at(130)), "deleted");
    run(&at(130), &["app", "activate", &id]).failure();
    let listed = parse(&stdout(run(&at(130), &["--json", "app", "list"]).success()));
    assert!(listed.as_array().unwrap().is_empty(), "{listed}");
    // The sweep still records it.
    let swept = parse(&stdout(run(&at(130), &["--json", "sweep"]).success()));
    assert_eq!(swept["deleted"][0], id.as_str(), "{swept}");

    // The thresholds are settings: TESSERA_DORMANT_AFTER / TESSERA_DELETE_AFTER hold for every
    // command, and bad values are a usage error.
    let (short, _) = create(&env, "short-lived");
    let mut c = env.cmd();
    c.args(["app", "verify", "--ip", "10.0.0.2"])
        .env("TESSERA_NOW", at(2))
        .env("TESSERA_DORMANT_AFTER", "1d")
        .write_stdin(short.clone());
    let err = String::from_utf8(c.assert().code(REJECTED).get_output().stderr.clone()).unwrap();
    assert!(err.contains("dormant"), "{err}");
    env.ok_in(&["app", "verify", "--ip", "10.0.0.2"], &short);
    let mut c = env.cmd();
    c.args(["app", "list"]).env("TESSERA_DELETE_AFTER", "1d");
    let err = String::from_utf8(c.assert().code(BAD_INPUT).get_output().stderr.clone()).unwrap();
    assert!(err.contains("TESSERA_DORMANT_AFTER"), "{err}");
}
