//! `tessera scan`: real tokens are found, look-alikes and noise are not.

use serde_json::Value;

use crate::common::*;

/// `tessera scan`'s exit code when it found a token.
const FOUND: i32 = 5;

/// Run `scan` with `--json` and `stdin`, expecting tokens to be found (exit 5).
fn found_json_in(env: &Env, args: &[&str], stdin: &str) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    parse(&stdout(env.run_in(&all, stdin).code(FOUND)))
}

fn found_json(env: &Env, args: &[&str]) -> Value {
    found_json_in(env, args, "")
}

/// The token with one body character changed: right prefix, wrong checksum.
fn look_alike(token: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    b[12] = if b[12] == b'Q' { b'R' } else { b'Q' };
    String::from_utf8(b).unwrap()
}

fn leaky_log(env: &Env) -> (std::path::PathBuf, String, String, String, String) {
    let (app, app_id) = issued(&env.json(&[
        "app",
        "create",
        "--name",
        "leaky",
        "--access",
        "third-party-feeds",
    ]));
    let (dep, dep_id) = issued(&env.json(&["deployment", "generate", "--name", "installer"]));
    let foreign = tessera::Secret::generate(tessera::Kind::Onboarding).unwrap();
    let text = format!(
        "2026-01-31 12:00:01 INFO starting\n\
         2026-01-31 12:00:02 DEBUG Authorization: Bearer {app}\n\
         random noise tsr_ tsr_app_ tsr_zzz_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ\n\
         look-alike {}\n\
         msiexec /i client.msi TOKEN={dep} /qn and again \"{dep}\"\n\
         some other database: {}\n\
         base62 soup 8fKq2mZpL0aXv9RtYb3NcW1eJh5GuD7sQi4Ko6Fl\n",
        look_alike(&app),
        foreign.expose_secret(),
    );
    let path = env.dir.path().join("app.log");
    std::fs::write(&path, text).unwrap();
    (path, app, app_id, dep, dep_id)
}

#[test]
fn finds_real_tokens_with_line_kind_hint_and_state_only() {
    let env = Env::init();
    let (path, app, app_id, _, dep_id) = leaky_log(&env);
    let v = found_json(&env, &["scan", path.to_str().unwrap()]);
    let found = v["findings"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = found
        .iter()
        .map(|f| {
            (
                f["line"].as_u64().unwrap(),
                f["kind"].as_str().unwrap(),
                f["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (2, "application", "active"),
            (5, "deployment", "active"),
            (5, "deployment", "active"),
            (6, "onboarding", "unknown"),
        ],
        "{v}"
    );
    assert_eq!(found[0]["id"], app_id.as_str());
    assert_eq!(found[1]["id"], dep_id.as_str());
    assert!(found[3]["id"].is_null());
    assert!(found[0]["hint"].as_str().unwrap().starts_with("tsr_app_"));
    assert_eq!(found[0]["column"], 49);
    // The report never repeats a secret.
    assert!(!v.to_string().contains(&app));
    // The human table has the same rows.
    let table = stdout(env.run(&["scan", path.to_str().unwrap()]).code(FOUND));
    assert_eq!(table.lines().count(), 5, "{table}");
    assert!(table.starts_with("FILE"));
}

#[test]
fn reads_standard_input_and_works_offline() {
    let env = Env::init();
    let (path, ..) = leaky_log(&env);
    let text = std::fs::read_to_string(&path).unwrap();
    let v = found_json_in(&env, &["scan"], &text);
    assert_eq!(v["findings"].as_array().unwrap().len(), 4);
    assert_eq!(v["findings"][0]["file"], "<stdin>");
    // Offline needs no database at all.
    let bare = Env::new();
    let v = found_json_in(&bare, &["scan", "--offline"], &text);
    assert_eq!(v["findings"].as_array().unwrap().len(), 4);
    assert!(v["findings"][0]["state"].is_null());
    assert!(
        bare.ok_in(&["scan", "--offline"], "nothing here")
            .contains("no Tessera tokens found")
    );
    env.fails(&["scan", "/no/such/file"], BAD_INPUT);
}

#[test]
fn scans_directories_recursively() {
    let env = Env::init();
    let (path, ..) = leaky_log(&env);
    let repo = env.dir.path().join("repo");
    std::fs::create_dir_all(repo.join("src").join("deep")).unwrap();
    std::fs::copy(&path, repo.join("src").join("deep").join("config.yml")).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::copy(&path, repo.join(".git").join("packed")).unwrap();
    let v = found_json(&env, &["scan", repo.to_str().unwrap()]);
    let found = v["findings"].as_array().unwrap();
    assert_eq!(found.len(), 4);
    assert!(
        found
            .iter()
            .all(|f| f["file"].as_str().unwrap().ends_with("config.yml"))
    );
}

#[test]
fn revoke_asks_then_revokes_what_was_found() {
    let env = Env::init();
    let (path, app, app_id, dep, dep_id) = leaky_log(&env);
    let p = path.to_str().unwrap();
    env.fails(&["scan", "--revoke", p], BAD_INPUT);
    assert_eq!(env.state(&app_id), "active");
    let v = found_json(&env, &["scan", "--revoke", "--yes", p]);
    let revoked: Vec<&str> = v["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(revoked.len(), 2);
    assert!(revoked.contains(&app_id.as_str()) && revoked.contains(&dep_id.as_str()));
    env.fails(&["verify", &app], REJECTED);
    env.fails(&["verify", &dep], REJECTED);
    let after = found_json(&env, &["scan", p]);
    assert_eq!(after["findings"][0]["state"], "revoked");
    // Nothing left to revoke.
    let again = found_json(&env, &["scan", "--revoke", "--yes", p]);
    assert_eq!(again["revoked"], Value::Array(vec![]));
}

#[test]
fn exit_code_gates_ci_5_when_a_token_is_found_0_when_clean() {
    let env = Env::new();
    let t = tessera::Secret::generate(tessera::Kind::Application).unwrap();
    let t = t.expose_secret();
    let leaky = [
        format!("{{\"msg\":\"dump\\n{t}\"}}"),
        format!("?next=https%3A%2F%2Fa%3Ftoken%3D{t}"),
        format!("Bearer%20{t}"),
        format!("id42{t}"),
    ];
    for line in &leaky {
        let v = found_json_in(&env, &["scan", "--offline"], line);
        assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{line}");
        let err = env.fails_in(&["scan", "--offline"], line, FOUND);
        assert!(err.contains("found 1 Tessera token"), "{err}");
    }
    let clean = format!(
        "nothing here {} ghp_1234567890abcdefghijklmnopqrstuvwxyzAB",
        look_alike(t)
    );
    assert!(
        env.ok_in(&["scan", "--offline"], &clean)
            .contains("no Tessera tokens found")
    );
}
