//! `tessera deployment ...`.

use crate::common::*;

#[test]
fn generate_shows_the_secret_once_and_renders_the_command() {
    let env = Env::init();
    let out = env
        .run(&[
            "--json",
            "deployment",
            "generate",
            "--name",
            "spring",
            "--expires",
            "30d",
            "--command",
            "msiexec /i client.msi TOKEN={token} /qn",
        ])
        .success();
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("shown once"), "{stderr}");
    let v = parse(&stdout(out));
    let (secret, id) = issued(&v);
    assert!(secret.starts_with("tsr_dep_"));
    assert_eq!(
        v["installer_command"],
        format!("msiexec /i client.msi TOKEN={secret} /qn")
    );
    assert_eq!(v["token"]["name"], "spring");
    assert!(v["token"]["expires_at"].is_string());
    // Listings never show the secret.
    let list = env.ok(&["deployment", "list"]);
    assert!(list.contains(&id) && !list.contains(&secret), "{list}");
    let list = env.json(&["deployment", "list"]);
    assert!(!list.to_string().contains(&secret));
    assert_eq!(list[0]["latest"], true);
}

#[test]
fn the_newest_token_is_latest_and_older_ones_stay_valid() {
    let env = Env::init();
    let (old, old_id) = issued(&env.json(&["deployment", "generate", "--name", "a"]));
    let (new, new_id) = issued(&env.json(&["deployment", "generate", "--name", "b"]));
    let list = env.json(&["deployment", "list"]);
    let latest: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["latest"] == true)
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(latest, [new_id.as_str()]);
    let v = env.json_in(&["deployment", "verify"], &old);
    assert_eq!(v["accepted"], true);
    assert_eq!(v["token"], old_id);
    // Only the newest renders the installer command.
    let cmd = env.ok_in(
        &[
            "deployment",
            "command",
            "--template",
            "setup.exe /t {token}",
        ],
        &new,
    );
    assert_eq!(cmd.trim(), format!("setup.exe /t {new}"));
    let err = env.fails_in(
        &["deployment", "command", "--template", "x {token}"],
        &old,
        BAD_INPUT,
    );
    assert!(err.contains("most recent"), "{err}");
    env.fails_in(
        &["deployment", "command", "--template", "no placeholder"],
        &new,
        BAD_INPUT,
    );
}

#[test]
fn expire_asks_first_then_the_token_is_refused() {
    let env = Env::init();
    let (secret, id) = issued(&env.json(&["deployment", "generate", "--name", "x"]));
    let err = env.fails(&["deployment", "expire", &id], BAD_INPUT);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(env.state(&id), "active");
    let v = env.json(&["--yes", "deployment", "expire", &id[..8]]);
    assert_eq!(v["state"], "expired");
    let v = env.json_fails_in(&["deployment", "verify"], &secret, REJECTED);
    assert_eq!(v["accepted"], false);
    assert_eq!(v["reason"], "expired");
    assert_eq!(v["oauth_error"], "invalid_token");
    // Expiring it again is an illegal step: bad input, with the reason.
    let err = env.fails(&["-y", "deployment", "expire", &id], BAD_INPUT);
    assert!(err.contains("expired"), "{err}");
}

#[test]
fn bad_input_is_refused_with_the_fix() {
    let env = Env::init();
    let err = env.fails(
        &["deployment", "generate", "--name", "x", "--expires", "soon"],
        BAD_INPUT,
    );
    assert!(err.contains("90m"), "{err}");
    env.fails(
        &[
            "deployment",
            "generate",
            "--name",
            "x",
            "--expires",
            "2001-01-01",
        ],
        BAD_INPUT,
    );
    env.fails(
        &[
            "deployment",
            "generate",
            "--name",
            "x",
            "--auto-renew",
            "--no-auto-renew",
        ],
        BAD_INPUT,
    );
    env.fails(&["deployment", "expire", "zz"], BAD_INPUT);
    env.fails(
        &["deployment", "expire", "0123456789abcdef0123456789abcdef"],
        NOT_FOUND,
    );
    env.fails_in(&["deployment", "verify"], "tsr_dep_nope", REJECTED);
    env.fails_in(&["deployment", "verify"], "", BAD_INPUT);
}

#[test]
fn the_current_command_is_shown_again_with_no_secret_in_hand() {
    let env = Env::init();
    // No token yet: a clear error.
    env.fails(
        &["deployment", "command", "--template", "setup /t={token}"],
        BAD_INPUT,
    );
    let (first, _) = issued(&env.json(&["deployment", "generate", "--name", "a"]));
    let v = env.json(&["deployment", "generate", "--name", "b", "--no-auto-renew"]);
    assert_eq!(v["auto_renew"], false);
    let (second, _) = issued(&v);
    let list = env.json(&["deployment", "list"]);
    assert_eq!(list[0]["auto_renew"], true, "renewal is on by default");
    assert_eq!(list[1]["auto_renew"], false);
    // No argument, nothing on standard input: the most recent token's command.
    let shown = env.ok(&["deployment", "command", "--template", "setup /t={token}"]);
    assert_eq!(shown.trim(), format!("setup /t={second}"));
    assert!(!shown.contains(&first));
    // A token on standard input is still checked to be the newest.
    env.fails_in(
        &["deployment", "command", "--template", "setup /t={token}"],
        &first,
        BAD_INPUT,
    );
}
