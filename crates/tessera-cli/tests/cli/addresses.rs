//! One address, every spelling: `app block`, `app unblock`, `app verify --ip`, `app ips` and
//! `endpoint check --ip` read every spelling of an address as that one address.

use serde_json::Value;

use crate::common::*;

const V4: &[&str] = &[
    "10.0.0.9",
    "::ffff:10.0.0.9",
    "::FFFF:a00:9",
    "0:0:0:0:0:ffff:0a00:0009",
    "0000:0000:0000:0000:0000:ffff:10.0.0.9",
    "::10.0.0.9",
    "[::ffff:10.0.0.9]",
];

const V6: &[&str] = &[
    "2001:db8::5",
    "2001:DB8:0:0:0:0:0:5",
    "2001:0db8:0000:0000:0000:0000:0000:0005",
    "[2001:db8::5]",
];

const LINK_LOCAL: &[&str] = &["fe80::1", "fe80::1%eth0", "fe80:0:0:0:0:0:0:1%2"];

fn app(env: &Env, name: &str) -> (String, String) {
    issued(&env.json(&[
        "app",
        "create",
        "--name",
        name,
        "--access",
        "third-party-feeds",
    ]))
}

fn refused(env: &Env, secret: &str, ip: &str) {
    let v = env.json_fails_in(&["app", "verify", "--ip", ip], secret, REJECTED);
    assert_eq!(v["reason"], "ip_blocked", "{ip}: {v}");
}

#[test]
fn a_block_holds_for_every_spelling() {
    let env = Env::init();
    for (n, group) in [V4, V6, LINK_LOCAL].into_iter().enumerate() {
        for (i, blocked_as) in group.iter().enumerate() {
            let (secret, id) = app(&env, &format!("feed-{n}-{i}"));
            env.ok(&["app", "block", &id, blocked_as]);
            for from in group {
                refused(&env, &secret, from);
            }
            // Another address is not affected; unblocking by another spelling lifts the block.
            env.ok_in(&["app", "verify", "--ip", "192.0.2.1"], &secret);
            let other = group[(i + 1) % group.len()];
            env.ok(&["app", "unblock", &id, other]);
            env.ok_in(&["app", "verify", "--ip", blocked_as], &secret);
        }
    }
}

#[test]
fn the_ip_log_shows_one_row_per_address() {
    let env = Env::init();
    let (secret, id) = app(&env, "feed");
    for from in V4 {
        env.ok_in(&["app", "verify", "--ip", from], &secret);
    }
    let ips = env.json(&["app", "ips", &id]);
    let rows = ips.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{ips}");
    assert_eq!(rows[0]["ip"], "10.0.0.9");
    assert_eq!(rows[0]["count"], V4.len());
    let audit = env.json(&["audit", "--token", &id]);
    let addresses: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"]["type"] == "used")
        .map(|e| &e["ip"])
        .collect();
    assert_eq!(addresses.len(), V4.len());
    assert!(addresses.iter().all(|a| *a == "10.0.0.9"), "{audit}");
}

#[test]
fn endpoint_checks_log_the_canonical_address() {
    let env = Env::init();
    let v = env.json(&["endpoint", "enable", "/orders"]);
    let get = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["method"] == "GET")
        .map(|p| issued(p).0)
        .unwrap_or_else(|| panic!("{v}"));
    env.ok_in(
        &[
            "endpoint",
            "check",
            "/orders",
            "get",
            "--ip",
            "::ffff:198.51.100.7",
        ],
        &get,
    );
    let audit = env.json(&["audit", "--actor", "client"]);
    assert_eq!(audit[0]["ip"], "198.51.100.7", "{audit}");
}

#[test]
fn what_is_not_an_address_is_refused_with_the_reason() {
    let env = Env::init();
    let (secret, id) = app(&env, "feed");
    for bad in [
        "10.0.0.9%eth0",
        "10.0.0.0/8",
        "10.0.0.9:80",
        "host.example",
        "fe80::1%",
    ] {
        let err = env.fails(&["app", "block", &id, bad], BAD_INPUT);
        assert!(err.contains("is not an IP address"), "{bad}: {err}");
        env.fails_in(&["app", "verify", "--ip", bad], &secret, BAD_INPUT);
    }
}
