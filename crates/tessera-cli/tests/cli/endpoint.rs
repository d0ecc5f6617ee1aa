//! `tessera endpoint ...`.

use serde_json::Value;

use crate::common::*;

fn enable(env: &Env, endpoint: &str, delete: bool) -> Vec<(String, String)> {
    let mut args = vec!["endpoint", "enable", endpoint];
    if delete {
        args.push("--allow-delete");
    }
    let v = env.json(&args);
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p["method"].as_str().unwrap().to_owned(), issued(p).0))
        .collect()
}

#[test]
fn enabling_generates_get_and_post_primaries_and_delete_when_allowed() {
    let env = Env::init();
    let prim = enable(&env, "/orders", false);
    let methods: Vec<&str> = prim.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(methods, ["GET", "POST"]);
    env.fails(&["endpoint", "enable", "/orders"], BAD_INPUT);
    let with_delete = enable(&env, "/items", true);
    assert_eq!(with_delete.len(), 3);
    let list = env.json(&["endpoint", "primary", "list", "/items"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    // A primary works for its own method only.
    let (_, get) = &prim[0];
    let v = env.json_in(&["endpoint", "check", "/orders", "get"], get);
    assert_eq!(v["carrier"]["primary"], true);
    let v = env.json_fails_in(&["endpoint", "check", "/orders", "post"], get, REJECTED);
    assert_eq!(v["reason"], "wrong_method");
    env.fails_in(&["endpoint", "check", "/items", "get"], get, REJECTED);
    // DELETE can be allowed later, and forbidden again.
    let v = env.json(&["endpoint", "allow-delete", "/orders"]);
    let (del, _) = issued(&v);
    env.ok_in(&["endpoint", "check", "/orders", "DELETE"], &del);
    env.ok(&["-y", "endpoint", "allow-delete", "/orders", "--off"]);
    env.fails_in(&["endpoint", "check", "/orders", "delete"], &del, REJECTED);
}

#[test]
fn regenerating_a_primary_retires_the_old_one() {
    let env = Env::init();
    let prim = enable(&env, "/e", false);
    let old = &prim[0].1;
    env.fails(
        &["endpoint", "primary", "regenerate", "/e", "get"],
        BAD_INPUT,
    );
    let (new, _) = issued(&env.json(&["-y", "endpoint", "primary", "regenerate", "/e", "get"]));
    env.fails_in(&["endpoint", "check", "/e", "get"], old, REJECTED);
    env.ok_in(&["endpoint", "check", "/e", "get"], &new);
    env.fails(
        &["-y", "endpoint", "primary", "regenerate", "/nope", "get"],
        BAD_INPUT,
    );
}

#[test]
fn secondaries_are_mapped_toggled_regenerated_and_unmapped() {
    let env = Env::init();
    enable(&env, "/orders", false);
    let v = env.json(&[
        "endpoint",
        "secondary",
        "create",
        "--name",
        "crm",
        "--description",
        "CRM sync",
    ]);
    let (secret, id) = issued(&v);
    assert_eq!(secret.len(), 64);
    assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
    // Not mapped yet: refused.
    let r = env.json_fails_in(&["endpoint", "check", "/orders", "get"], &secret, REJECTED);
    assert_eq!(r["reason"], "wrong_endpoint");
    let m = env.json(&["endpoint", "secondary", "map", &id, "/orders", "get"]);
    assert_eq!(m["enabled"], true);
    let ok = env.json_in(
        &["endpoint", "check", "/orders", "get", "--ip", "10.0.0.7"],
        &secret,
    );
    assert_eq!(ok["carrier"]["secondary"], "crm");
    // The mapping off stops this integration alone.
    env.ok(&[
        "endpoint",
        "secondary",
        "map-disable",
        &id,
        "/orders",
        "get",
    ]);
    let r = env.json_fails_in(&["endpoint", "check", "/orders", "get"], &secret, REJECTED);
    assert_eq!(r["reason"], "mapping_disabled");
    env.ok(&["endpoint", "secondary", "map-enable", &id, "/orders", "get"]);
    env.ok_in(&["endpoint", "check", "/orders", "get"], &secret);
    // The toggle off stops every mapping of it.
    env.ok(&["endpoint", "secondary", "disable", &id]);
    env.fails_in(&["endpoint", "check", "/orders", "get"], &secret, REJECTED);
    env.ok(&["endpoint", "secondary", "enable", &id]);
    // Listing: mappings shown, secret never.
    let list = env.json(&["endpoint", "secondary", "list", "--hide-unassigned"]);
    assert_eq!(list[0]["mappings"][0]["endpoint"], "/orders");
    assert!(!list.to_string().contains(&secret));
    // Traffic is attributed to the secondary.
    let traffic = env.json(&["endpoint", "traffic", "/orders"]);
    assert_eq!(traffic[0]["name"], "crm");
    assert_eq!(traffic[0]["count"], 2);
    // Regenerate keeps the id and mappings; the old value stops at once.
    env.fails(&["endpoint", "secondary", "regenerate", &id], BAD_INPUT);
    let (fresh, same) = issued(&env.json(&["-y", "endpoint", "secondary", "regenerate", &id]));
    assert_eq!(same, id);
    env.fails_in(&["endpoint", "check", "/orders", "get"], &secret, REJECTED);
    env.ok_in(&["endpoint", "check", "/orders", "get"], &fresh);
    // Deactivated: hidden from the default listing, refused; activated again.
    env.ok(&["endpoint", "secondary", "deactivate", &id]);
    assert_eq!(
        env.json(&["endpoint", "secondary", "list"]),
        Value::Array(vec![])
    );
    assert_eq!(
        env.json(&["endpoint", "secondary", "list", "--all"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.fails_in(&["endpoint", "check", "/orders", "get"], &fresh, REJECTED);
    env.ok(&["endpoint", "secondary", "activate", &id]);
    // Unmap asks first.
    env.fails(
        &["endpoint", "secondary", "unmap", &id, "/orders", "get"],
        BAD_INPUT,
    );
    env.ok(&[
        "-y",
        "endpoint",
        "secondary",
        "unmap",
        &id,
        "/orders",
        "get",
    ]);
    env.fails_in(&["endpoint", "check", "/orders", "get"], &fresh, REJECTED);
    env.fails(
        &[
            "-y",
            "endpoint",
            "secondary",
            "unmap",
            &id,
            "/orders",
            "get",
        ],
        NOT_FOUND,
    );
}

#[test]
fn mapping_needs_a_primary_and_a_secondary() {
    let env = Env::init();
    let (_, id) = issued(&env.json(&["endpoint", "secondary", "create", "--name", "app"]));
    let err = env.fails(
        &["endpoint", "secondary", "map", &id, "/none", "get"],
        BAD_INPUT,
    );
    assert!(err.contains("enable"), "{err}");
    enable(&env, "/x", false);
    let primary = env.json(&["endpoint", "primary", "list", "/x"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.fails(
        &["endpoint", "secondary", "map", &primary, "/x", "get"],
        NOT_FOUND,
    );
    env.fails(
        &["endpoint", "secondary", "map", &id, "/x", "patch"],
        BAD_INPUT,
    );
}

#[test]
fn disabling_an_endpoint_revokes_its_primaries() {
    let env = Env::init();
    let prim = enable(&env, "/gone", false);
    env.fails(&["endpoint", "disable", "/gone"], BAD_INPUT);
    env.ok(&["-y", "endpoint", "disable", "/gone"]);
    env.fails_in(&["endpoint", "check", "/gone", "get"], &prim[0].1, REJECTED);
    assert_eq!(
        env.json(&["endpoint", "primary", "list", "/gone"]),
        Value::Array(vec![])
    );
}
