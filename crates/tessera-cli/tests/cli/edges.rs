//! CLI edges: one use count, deleted tokens hidden, one rule for repeating a final action, a
//! secret that cannot be shown undone, the Android checksum and extras key, a wrong pepper
//! named, `-v` and `RUST_LOG`, negative durations.

use std::process::Stdio;

use serde_json::Value;

use crate::common::{BAD_INPUT, Env, REJECTED, STORAGE, issued, parse, stdout};

#[test]
fn show_list_and_ips_give_one_use_count_for_an_application_token() {
    let env = Env::init();
    let (secret, id) = issued(&env.json(&[
        "app",
        "create",
        "--name",
        "feeds-1",
        "--access",
        "security-director",
    ]));
    for ip in ["10.0.0.1", "10.0.0.1", "::ffff:10.0.0.2"] {
        env.ok(&["app", "verify", "--ip", ip, &secret]);
    }
    let ips = env.json(&["app", "ips", &id]);
    let from_log: u64 = ips
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(from_log, 3);
    assert_eq!(env.json(&["show", &id])["uses"], 3);
    let listed = env.json(&["list", "--kind", "application"]);
    assert_eq!(listed[0]["uses"], 3, "{listed}");
    let shown = env.ok(&["show", &id]);
    assert!(shown.contains("uses          3 (per address"), "{shown}");
}

#[test]
fn deleted_tokens_are_hidden_from_list_and_auth_list_unless_asked_for() {
    let env = Env::init();
    let (_, id) = issued(&env.json(&[
        "auth",
        "generate",
        "--name",
        "x",
        "--scope",
        "a",
        "--expires",
        "7d",
    ]));
    env.ok(&["--yes", "auth", "delete", &id]);
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(!ids(env.json(&["list"])).contains(&id));
    assert!(!ids(env.json(&["auth", "list"])).contains(&id));
    assert!(ids(env.json(&["list", "--all"])).contains(&id));
    assert!(ids(env.json(&["list", "--state", "deleted"])).contains(&id));
    assert!(ids(env.json(&["auth", "list", "--all"])).contains(&id));
}

#[test]
fn repeating_a_final_action_exits_2_for_every_kind() {
    let env = Env::init();
    let (_, auth) = issued(&env.json(&[
        "auth",
        "generate",
        "--name",
        "x",
        "--scope",
        "a",
        "--expires",
        "7d",
    ]));
    let (_, other) = issued(&env.json(&[
        "auth",
        "generate",
        "--name",
        "y",
        "--scope",
        "a",
        "--expires",
        "7d",
    ]));
    env.ok(&["--yes", "auth", "delete", &auth]);
    let err = env.fails(&["--yes", "auth", "delete", &auth, &other], BAD_INPUT);
    assert!(err.contains("already deleted"), "{err}");
    assert_eq!(env.state(&other), "active", "nothing was deleted");
    env.fails(&["--yes", "revoke", &auth], BAD_INPUT);

    let (_, app) = issued(&env.json(&[
        "app",
        "create",
        "--name",
        "a-1",
        "--access",
        "security-director",
    ]));
    let (_, onb) = issued(&env.json(&["onboarding", "create", "--policy", "p", "--group", "g"]));
    let (_, dep) = issued(&env.json(&["deployment", "generate", "--name", "d"]));
    for (first, again) in [
        (vec!["--yes", "revoke", &app], vec!["--yes", "revoke", &app]),
        (
            vec!["--yes", "onboarding", "revoke", &onb],
            vec!["--yes", "onboarding", "revoke", &onb],
        ),
        (
            vec!["--yes", "deployment", "expire", &dep],
            vec!["--yes", "deployment", "expire", &dep],
        ),
        (
            vec!["--yes", "revoke", &other],
            vec!["--yes", "auth", "delete", &other],
        ),
    ] {
        env.ok(&first);
        env.fails(&again, BAD_INPUT);
    }
}

/// Run `tessera` with standard output a pipe whose reader is already gone.
fn run_into_a_broken_pipe(env: &Env, args: &[&str]) -> (Option<i32>, String) {
    // The write end of a pipe whose only reader, `true`, has exited.
    let mut reader = std::process::Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .env_remove("TESSERA_PEPPER")
        .env_remove("TESSERA_KEY_FILE")
        .env("HOME", env.dir.path())
        .env("TESSERA_DB", &env.db)
        .env("USER", "operator")
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn a_secret_that_cannot_be_shown_leaves_no_live_token() {
    let env = Env::init();
    for (args, kind) in [
        (
            &[
                "app",
                "create",
                "--name",
                "lost-1",
                "--access",
                "security-director",
            ][..],
            "application",
        ),
        (
            &["deployment", "generate", "--name", "lost"][..],
            "deployment",
        ),
        (
            &["onboarding", "create", "--policy", "p", "--group", "g"][..],
            "onboarding",
        ),
        (
            &[
                "auth",
                "generate",
                "--name",
                "lost",
                "--scope",
                "a",
                "--expires",
                "1d",
            ][..],
            "auth",
        ),
        (
            &["endpoint", "secondary", "create", "--name", "lost"][..],
            "endpoint",
        ),
    ] {
        let (code, err) = run_into_a_broken_pipe(&env, args);
        assert_eq!(code, Some(STORAGE), "{err}");
        assert!(
            err.contains("was revoked, since its secret was never shown"),
            "{err}"
        );
        let all = env.json(&["list", "--kind", kind]);
        let all = all.as_array().unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0]["state"], "revoked", "{kind}: {all:?}");
    }
}

#[test]
fn a_closed_or_discarded_standard_output_leaves_no_live_token() {
    let env = Env::init();
    for (redirect, name) in [(">&-", "closed-1"), (">/dev/null", "null-1")] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec \"$0\" app create --name {name} --access security-director {redirect}"
            ))
            .arg(env!("CARGO_BIN_EXE_tessera"))
            .env_remove("TESSERA_PEPPER")
            .env_remove("TESSERA_KEY_FILE")
            .env("HOME", env.dir.path())
            .env("TESSERA_DB", &env.db)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(STORAGE), "{err}");
        assert!(err.contains("closed or /dev/null"), "{err}");
        assert!(err.contains("was revoked"), "{err}");
    }
    let listed = env.json(&["app", "list"]);
    for t in listed.as_array().unwrap() {
        assert_eq!(t["state"], "revoked", "{listed}");
    }
}

/// SHA-256 of `x1` in standard base64, and the same in the URL-safe spelling Android reads.
const STANDARD: &str = "7DFoL95WGReVL/eKeore/9D+vDct0mhxkWxGxjA4G0U=";
const URL_SAFE: &str = "7DFoL95WGReVL_eKeore_9D-vDct0mhxkWxGxjA4G0U";

#[test]
fn android_checksums_are_url_safe_and_the_extras_key_is_an_option() {
    let env = Env::init();
    let png = env.dir.path().join("dpc.png");
    let v = env.json(&[
        "onboarding",
        "create",
        "--policy",
        "p",
        "--group",
        "g",
        "--qr",
        "png",
        "--out",
        png.to_str().unwrap(),
        "--android-component",
        "com.example.dpc/.AdminReceiver",
        "--android-download",
        "https://example.com/dpc.apk",
        "--android-checksum",
        STANDARD,
        "--android-extras-key",
        "com.example.dpc.EXTRA_TOKEN",
    ]);
    let (secret, _) = issued(&v);
    let img = image::open(&png).unwrap().to_luma8();
    let texts: Vec<String> = rqrr::PreparedImage::prepare(img)
        .detect_grids()
        .iter()
        .map(|g| g.decode().unwrap().1)
        .collect();
    let doc = parse(&texts[0]);
    assert_eq!(
        doc["android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM"],
        URL_SAFE
    );
    assert_eq!(
        doc["android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE"]["com.example.dpc.EXTRA_TOKEN"],
        secret.as_str()
    );
    // Both alphabets at once, or bits over in the last character: refused.
    for bad in [
        "7DFoL95WGReVL_eKeore/9D+vDct0mhxkWxGxjA4G0U",
        "7DFoL95WGReVL/eKeore/9D+vDct0mhxkWxGxjA4G0V",
    ] {
        let err = env.fails(
            &[
                "onboarding",
                "create",
                "--policy",
                "p",
                "--group",
                "g",
                "--qr",
                "terminal",
                "--android-component",
                "com.example.dpc/.AdminReceiver",
                "--android-download",
                "https://example.com/dpc.apk",
                "--android-checksum",
                bad,
            ],
            BAD_INPUT,
        );
        assert!(err.contains("signature checksum"), "{err}");
    }
    let err = env.fails(
        &[
            "onboarding",
            "create",
            "--policy",
            "p",
            "--group",
            "g",
            "--android-component",
            "com.example.dpc/.AdminReceiver",
            "--android-download",
            "https://example.com/dpc.apk",
            "--android-checksum",
            URL_SAFE,
            "--android-extras-key",
            "k",
        ],
        BAD_INPUT,
    );
    assert!(err.contains("--android-extras-key"), "{err}");
}

#[test]
fn an_unknown_token_under_another_pepper_says_the_pepper_may_be_wrong() {
    let env = Env::init();
    let (secret, _) = issued(&env.json(&["deployment", "generate", "--name", "d"]));
    // Same key id, other bytes: the sealed secret does not open.
    let err = env
        .cmd()
        .env("TESSERA_PEPPER", "ab".repeat(32))
        .args(["deployment", "verify", &secret])
        .assert()
        .code(REJECTED)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(err).unwrap();
    assert!(err.contains("the pepper may be wrong"), "{err}");
    // A token this database never held, under the right pepper: the usual advice.
    let (other, _) = {
        let env2 = Env::init();
        issued(&env2.json(&["deployment", "generate", "--name", "e"]))
    };
    let err = env.fails(&["deployment", "verify", &other], REJECTED);
    assert!(!err.contains("pepper"), "{err}");
    assert!(err.contains("check --db"), "{err}");
}

#[test]
fn verbose_and_rust_log_trace_the_library_on_standard_error_without_secrets() {
    let env = Env::init();
    let (secret, _) = issued(&env.json(&[
        "app",
        "create",
        "--name",
        "v-1",
        "--access",
        "security-director",
    ]));
    let out = env
        .run(&["-vvv", "app", "verify", "--ip", "10.0.0.1", &secret])
        .success();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("TRACE") || err.contains("DEBUG"), "{err}");
    assert!(err.contains("application"), "{err}");
    assert!(!err.contains(&secret), "a secret was logged");
    assert!(
        !err.contains(&secret[8..20]),
        "a fragment of a secret was logged"
    );
    assert!(stdout(out).contains("accepted"));
    let quiet = env
        .run(&["app", "verify", "--ip", "10.0.0.1", &secret])
        .success();
    assert!(quiet.get_output().stderr.is_empty());
    let logged = env
        .cmd()
        .env("RUST_LOG", "tessera=debug")
        .args(["app", "verify", "--ip", "10.0.0.1", &secret])
        .assert()
        .success();
    let err = String::from_utf8(logged.get_output().stderr.clone()).unwrap();
    assert!(err.contains("DEBUG") || err.contains("INFO"), "{err}");
    assert!(!err.contains(&secret));
}

#[test]
fn negative_durations_are_read_as_values_and_refused_clearly() {
    let env = Env::init();
    let (_, id) = issued(&env.json(&["deployment", "generate", "--name", "d"]));
    let err = env.fails(&["--yes", "rotate", &id, "--grace", "-5m"], BAD_INPUT);
    assert!(err.contains("--grace `-5m` is negative"), "{err}");
    let err = env.fails(
        &["deployment", "generate", "--name", "e", "--expires", "-5m"],
        BAD_INPUT,
    );
    assert!(err.contains("past"), "{err}");
    let err = env.fails(&["list", "--expiring", "-5m"], BAD_INPUT);
    assert!(err.contains("negative"), "{err}");
}

#[test]
fn toggled_off_and_deactivated_secondaries_have_a_word_and_a_refusal_each() {
    let env = Env::init();
    env.json(&["endpoint", "enable", "/orders"]);
    let (secret, id) = issued(&env.json(&["endpoint", "secondary", "create", "--name", "crm"]));
    env.ok(&["endpoint", "secondary", "map", &id, "/orders", "get"]);

    let said = env.ok(&["endpoint", "secondary", "disable", &id]);
    assert!(said.starts_with("toggled off secondary"), "{said}");
    let r = env.json_fails_in(&["endpoint", "check", "/orders", "get"], &secret, REJECTED);
    assert_eq!(r["reason"], "toggled_off");
    let off = env.fails_in(&["endpoint", "check", "/orders", "get"], &secret, REJECTED);
    assert!(off.contains("enabled toggle is off"), "{off}");
    let table = env.ok(&["endpoint", "secondary", "list"]);
    assert!(
        table.contains("TOGGLE") && table.contains(" off "),
        "{table}"
    );
    assert!(table.contains("active"), "{table}");
    env.ok(&["endpoint", "secondary", "enable", &id]);

    env.ok(&["endpoint", "secondary", "deactivate", &id]);
    let r = env.json_fails_in(&["endpoint", "check", "/orders", "get"], &secret, REJECTED);
    assert_eq!(r["reason"], "disabled");
    let deactivated = env.fails_in(&["endpoint", "check", "/orders", "get"], &secret, REJECTED);
    assert!(
        deactivated.contains("token is deactivated"),
        "{deactivated}"
    );
    assert_ne!(off, deactivated);
    let table = env.ok(&["endpoint", "secondary", "list", "--all"]);
    assert!(
        table.contains("deactivated") && table.contains(" on "),
        "{table}"
    );
    assert!(env.ok(&["show", &id]).contains("deactivated"));
    let listed = env.json(&["list", "--state", "deactivated"]);
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
}

#[test]
fn access_types_are_the_offered_set_each_once() {
    let env = Env::init();
    let err = env.fails(
        &["app", "create", "--name", "a-1", "--access", "foo"],
        BAD_INPUT,
    );
    assert!(
        err.contains(
            "access type `foo` is not offered; pick from: security-director, third-party-feeds"
        ),
        "{err}"
    );
    let err = env.fails(
        &[
            "app",
            "create",
            "--name",
            "a-1",
            "--access",
            "security-director,security-director",
        ],
        BAD_INPUT,
    );
    assert!(err.contains("given twice"), "{err}");
    assert_eq!(env.json(&["app", "list"]), Value::Array(vec![]));
    env.ok(&[
        "app",
        "create",
        "--name",
        "a-1",
        "--access",
        "security-director,third-party-feeds",
    ]);
    // Another configured set.
    let custom = env
        .cmd()
        .env("TESSERA_ACCESS_TYPES", "billing,audit")
        .args([
            "--json", "app", "create", "--name", "b-1", "--access", "billing",
        ])
        .assert()
        .success();
    assert_eq!(parse(&stdout(custom))["token"]["name"], "b-1");
    let err = env
        .cmd()
        .env("TESSERA_ACCESS_TYPES", "billing,,audit")
        .args(["app", "list"])
        .assert()
        .code(BAD_INPUT)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8(err)
            .unwrap()
            .contains("TESSERA_ACCESS_TYPES")
    );
}

#[test]
fn names_are_unique_as_the_help_says() {
    let env = Env::init();
    env.ok(&[
        "app",
        "create",
        "--name",
        "ok-1",
        "--access",
        "security-director",
    ]);
    let err = env.fails(
        &[
            "app",
            "create",
            "--name",
            "OK-1",
            "--access",
            "security-director",
        ],
        BAD_INPUT,
    );
    assert!(
        err.contains("application token name already exists"),
        "{err}"
    );
    env.ok(&[
        "auth",
        "generate",
        "--name",
        "x",
        "--scope",
        "a",
        "--expires",
        "7d",
    ]);
    let err = env.fails(
        &[
            "auth",
            "generate",
            "--name",
            "X",
            "--scope",
            "a",
            "--expires",
            "7d",
        ],
        BAD_INPUT,
    );
    assert!(
        err.contains("auth token name of this owner already exists"),
        "{err}"
    );
    env.ok(&[
        "--as",
        "bob",
        "auth",
        "generate",
        "--name",
        "x",
        "--scope",
        "a",
        "--expires",
        "7d",
    ]);
    let help = env.ok(&["app", "create", "--help"]);
    assert!(help.contains("Unique name, ignoring case"), "{help}");
    let help = env.ok(&["auth", "generate", "--help"]);
    assert!(help.contains("unique among the owner's tokens"), "{help}");
}

#[test]
fn the_pepper_rotates_keeps_old_tokens_working_and_retires_when_nothing_needs_it() {
    let env = Env::init();
    let key_file = env.db.parent().unwrap().join("tessera.key");
    let template = "install.exe TOKEN={token}";
    let (_, dep) = issued(&env.json(&["deployment", "generate", "--name", "d"]));
    let (app_secret, app) = issued(&env.json(&[
        "app",
        "create",
        "--name",
        "a-1",
        "--access",
        "security-director",
    ]));
    let before = env.ok(&["deployment", "command", "--template", template]);

    let rotated = env.json(&["pepper", "rotate"]);
    assert_eq!(rotated["current"], 2);
    assert_eq!(rotated["resealed"].as_array().unwrap().len(), 1);
    let text = std::fs::read_to_string(&key_file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("2:") && lines[1].starts_with("1:"),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let status = env.json(&["pepper", "status"]);
    assert_eq!(status[0]["key_id"], 1);
    assert_eq!(status[0]["role"], "previous");
    assert_eq!(status[0]["digests"], 2);
    assert_eq!(status[1]["role"], "current");
    assert_eq!(status[1]["sealed"], 1, "re-sealed under the new key");

    // Old tokens still validate; the sealed installer command still opens; new tokens use key 2.
    env.ok(&["app", "verify", "--ip", "10.0.0.1", &app_secret]);
    assert_eq!(
        env.ok(&["deployment", "command", "--template", template]),
        before
    );
    let (new_secret, _) = issued(&env.json(&[
        "app",
        "create",
        "--name",
        "a-2",
        "--access",
        "security-director",
    ]));
    env.ok(&["app", "verify", "--ip", "10.0.0.1", &new_secret]);

    // Key 1 cannot go while tokens in force need it, nor can the current key.
    let err = env.fails(&["pepper", "retire", "1"], BAD_INPUT);
    assert!(
        err.contains("2 token(s) in force depend on key id 1"),
        "{err}"
    );
    env.fails(&["pepper", "retire", "2"], BAD_INPUT);
    env.ok(&["--yes", "revoke", &app]);
    env.ok(&["--yes", "rotate", &dep]);
    env.ok(&["pepper", "retire", "1"]);
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with("2:"));
    // Everything in force still works without key 1.
    env.ok(&["app", "verify", "--ip", "10.0.0.1", &new_secret]);
    env.ok(&["deployment", "command", "--template", template]);

    // The same keys from TESSERA_PEPPER, as ID:HEX entries, current first.
    let from_env = env
        .cmd()
        .env("TESSERA_PEPPER", text.trim().replace('\n', ","))
        .args(["app", "verify", "--ip", "10.0.0.1", &new_secret])
        .assert();
    from_env.success();
    // With TESSERA_PEPPER the keys live in the variable: rotation is done there.
    let err = env
        .cmd()
        .env("TESSERA_PEPPER", "ab".repeat(32))
        .args(["pepper", "rotate"])
        .assert()
        .code(BAD_INPUT)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8(err)
            .unwrap()
            .contains("NEWID:NEWHEX,OLDID:OLDHEX")
    );
}
