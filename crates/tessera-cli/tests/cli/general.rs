//! Commands every kind shares: list, show, rotate, revoke, sweep, audit, verify.

use crate::common::*;

fn rfc3339_in(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn rotate_with_grace_keeps_both_until_the_window_ends() {
    let env = Env::init();
    let (old, old_id) = issued(&env.json(&[
        "app",
        "create",
        "--name",
        "svc",
        "--access",
        "third-party-feeds",
    ]));
    env.fails(&["rotate", &old_id], BAD_INPUT);
    let v = env.json(&["-y", "rotate", &old_id[..10], "--grace", "1h"]);
    let (new, new_id) = issued(&v);
    assert_eq!(v["replaces"], old_id.as_str());
    assert_ne!(old, new);
    assert_eq!(env.state(&old_id), "superseded");
    env.ok(&["verify", &old]);
    env.ok(&["verify", &new]);
    // After the grace window the old one is refused.
    let late = env
        .cmd()
        .args(["--json", "verify", &old])
        .env("TESSERA_NOW", rfc3339_in(1))
        .assert()
        .code(REJECTED);
    assert_eq!(parse(&stdout(late))["reason"], "rotated_out");
    let show = env.json(&["show", &old_id]);
    assert_eq!(show["successor"], new_id.as_str());
    // Without grace the old token stops at once.
    let (_, newer) = issued(&env.json(&["-y", "rotate", &new_id]));
    env.fails(&["verify", &new], REJECTED);
    env.ok(&["show", &newer]);
    env.fails(&["-y", "rotate", &old_id, "--grace", "forever"], BAD_INPUT);
}

#[test]
fn revoke_takes_several_ids_and_asks_first() {
    let env = Env::init();
    let (a, a_id) = issued(&env.json(&["deployment", "generate", "--name", "a"]));
    let (b, b_id) = issued(&env.json(&["onboarding", "create", "--policy", "p", "--group", "g"]));
    env.fails(&["revoke", &a_id, &b_id], BAD_INPUT);
    env.ok(&["verify", &a]);
    let v = env.json(&["--yes", "revoke", &a_id[..6], &b_id]);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "revoked")
    );
    let r = env.json_fails_in(&["verify"], &a, REJECTED);
    assert_eq!(r["reason"], "revoked");
    env.fails(&["verify", &b], REJECTED);
    env.fails(&["-y", "revoke", &a_id], BAD_INPUT);
    env.fails(
        &["-y", "revoke", "ffffffffffffffffffffffffffffffff"],
        NOT_FOUND,
    );
}

#[test]
fn sweep_renews_auto_renewing_deployment_tokens_and_dry_run_changes_nothing() {
    let env = Env::init();
    let (_, id) = issued(&env.json(&["deployment", "generate", "--name", "r", "--expires", "1d"]));
    let (_, plain) = issued(&env.json(&[
        "deployment",
        "generate",
        "--name",
        "p",
        "--expires",
        "1d",
        "--no-auto-renew",
    ]));
    let later = rfc3339_in(2);
    let run = |dry: bool| {
        let mut c = env.cmd();
        c.args(["--json", "sweep"]).env("TESSERA_NOW", &later);
        if dry {
            c.arg("--dry-run");
        }
        parse(&stdout(c.assert().success()))
    };
    let plan = run(true);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["renewed"][0]["expired"], id.as_str());
    assert!(plan["renewed"][0]["successor"].is_null());
    assert_eq!(plan["expired"][0], plain.as_str());
    assert_eq!(
        env.json(&["deployment", "list"]).as_array().unwrap().len(),
        2
    );
    let done = run(false);
    let successor = &done["renewed"][0]["successor"];
    assert!(successor.get("secret").is_none(), "{successor}");
    let new_id = successor["id"].as_str().unwrap().to_owned();
    let list = env.json(&["deployment", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    // The current command carries the successor, shown with no secret in hand.
    let mut c = env.cmd();
    c.args([
        "--json",
        "deployment",
        "command",
        "--template",
        "setup.exe /token={token}",
    ])
    .env("TESSERA_NOW", &later);
    let shown = parse(&stdout(c.assert().success()));
    let cmd = shown["installer_command"].as_str().unwrap();
    let secret = cmd.strip_prefix("setup.exe /token=").unwrap();
    assert!(secret.starts_with("tsr_dep_"));
    let mut c = env.cmd();
    c.args(["--json", "verify", secret])
        .env("TESSERA_NOW", &later);
    let verified = parse(&stdout(c.assert().success()));
    assert_eq!(verified["token"]["id"], new_id.as_str());
    // The sweep's output never carried it.
    assert!(!done.to_string().contains(secret));
    // Nothing left to do.
    let again = run(false);
    assert_eq!(again["renewed"].as_array().unwrap().len(), 0);
    assert!(env.ok(&["sweep"]).contains("nothing to do"));
}

#[test]
fn audit_filters_by_token_actor_and_time() {
    let env = Env::init();
    let (secret, id) =
        issued(&env.json(&["--as", "alice", "deployment", "generate", "--name", "a"]));
    env.ok(&["--as", "bob", "deployment", "generate", "--name", "b"]);
    env.ok(&["deployment", "verify", &secret]);
    let by_token = env.json(&["audit", "--token", &id]);
    let actions: Vec<&str> = by_token
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["issued", "used"]);
    let by_bob = env.json(&["audit", "--actor", "bob"]);
    assert_eq!(by_bob.as_array().unwrap().len(), 1);
    assert_eq!(
        env.json(&["audit", "--actor", "client"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        env.json(&["audit", "--since", "1h"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        env.json(&["audit", "--until", "1h"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        env.json(&["audit", "--since", "2099-01-01"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        env.json(&["audit", "--limit", "2"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The audit trail never holds a secret.
    assert!(!env.ok(&["--json", "audit"]).contains(&secret));
    let table = env.ok(&["audit", "--actor", "user:alice"]);
    assert!(
        table.contains("issued") && table.contains("user:alice"),
        "{table}"
    );
    env.fails(&["audit", "--since", "yesterday"], BAD_INPUT);
}

#[test]
fn verify_tells_malformed_unknown_and_in_force_apart() {
    let env = Env::init();
    let (secret, id) = issued(&env.json(&["endpoint", "secondary", "create", "--name", "s"]));
    let v = env.json_in(&["verify"], &secret);
    assert_eq!(v["accepted"], true);
    assert_eq!(v["token"]["id"], id.as_str());
    let v = env.json_fails_in(&["verify", "not-a-token"], "", REJECTED);
    assert_eq!(v["reason"], "malformed");
    let unknown = tessera::Secret::generate(tessera::Kind::Auth).unwrap();
    let v = env.json_fails_in(&["verify", unknown.expose_secret()], "", REJECTED);
    assert_eq!(v["reason"], "not_found");
    let mut typo = secret.into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    env.fails(&["verify", &String::from_utf8(typo).unwrap()], REJECTED);
}

#[test]
fn list_and_show_every_kind() {
    let env = Env::init();
    env.ok(&["deployment", "generate", "--name", "d"]);
    env.ok(&["onboarding", "create", "--policy", "p", "--group", "g"]);
    let (_, app) = issued(&env.json(&[
        "app",
        "create",
        "--name",
        "a",
        "--access",
        "security-director",
    ]));
    env.ok(&[
        "--as",
        "zed",
        "auth",
        "generate",
        "--name",
        "z",
        "--scope",
        "s",
        "--expires",
        "1d",
    ]);
    // zed's auth token is listed for zed and admins only.
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 3);
    assert_eq!(env.json(&["--admin", "list"]).as_array().unwrap().len(), 4);
    assert_eq!(
        env.json(&["list", "--kind", "app"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.ok(&["-y", "revoke", &app]);
    assert_eq!(env.json(&["list", "--active"]).as_array().unwrap().len(), 2);
    let table = env.ok(&["list"]);
    assert!(table.starts_with("ID") && table.contains("KIND"), "{table}");
    let show = env.json(&["show", &app]);
    assert_eq!(show["state"], "revoked");
    assert_eq!(show["created_by"]["user"], "operator");
    env.fails(&["show", "abc"], BAD_INPUT);
}

#[test]
fn a_token_pasted_where_an_id_belongs_is_not_echoed() {
    let env = Env::init();
    let (secret, _) = issued(&env.json(&["deployment", "generate", "--name", "d"]));
    for args in [
        vec!["show", &secret],
        vec!["-y", "revoke", &secret],
        vec!["--json", "show", &secret],
    ] {
        let err = env.fails(&args, BAD_INPUT);
        assert!(!err.contains(&secret[8..20]), "{err}");
        assert!(err.contains("not the token itself"), "{err}");
    }
}
