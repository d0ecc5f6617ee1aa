//! The same binary on PostgreSQL (`--database-url`), in a fresh schema per test. Needs
//! `TESSERA_TEST_POSTGRES_URL` (`.ci/postgres-up` starts a server); skipped without it, except
//! under `CI=true`, where a missing server is a failure.

use crate::common::*;

/// The server URL, or `None` to skip.
fn server() -> Option<String> {
    match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but TESSERA_TEST_POSTGRES_URL is unset: start a server with .ci/postgres-up"
            )
        }
        _ => {
            eprintln!("skipped: set TESSERA_TEST_POSTGRES_URL to run the PostgreSQL CLI tests");
            None
        }
    }
}

/// Run against PostgreSQL, schema `schema`.
fn pg(
    env: &Env,
    url: &str,
    schema: &str,
    args: &[&str],
    stdin: &str,
) -> assert_cmd::assert::Assert {
    env.cmd()
        .env("TESSERA_DATABASE_URL", url)
        .env("TESSERA_DATABASE_SCHEMA", schema)
        .args(args)
        .write_stdin(stdin.to_owned())
        .assert()
}

#[test]
fn every_kind_works_on_postgres() {
    let Some(url) = server() else { return };
    let env = Env::new();
    let schema = format!("cli_{}", tessera::core::id::TokenId::generate().unwrap());
    // Not initialised yet: told to run init.
    let err = pg(&env, &url, &schema, &["list"], "").code(STORAGE);
    let err = String::from_utf8(err.get_output().stderr.clone()).unwrap();
    assert!(err.contains("tessera init"), "{err}");
    let init = parse(&stdout(
        pg(&env, &url, &schema, &["--json", "init"], "").success(),
    ));
    assert_eq!(init["database"]["backend"], "postgres");
    assert_eq!(init["database"]["schema"], schema.as_str());
    assert!(!init.to_string().contains(&url), "the URL is never printed");
    assert!(!env.db.exists(), "no SQLite file is created");

    let dep = parse(&stdout(
        pg(
            &env,
            &url,
            &schema,
            &["--json", "deployment", "generate", "--name", "pg"],
            "",
        )
        .success(),
    ));
    let (dep_secret, dep_id) = issued(&dep);
    pg(&env, &url, &schema, &["deployment", "verify"], &dep_secret).success();

    let onb = parse(&stdout(
        pg(
            &env,
            &url,
            &schema,
            &[
                "--json",
                "onboarding",
                "create",
                "--policy",
                "p",
                "--group",
                "g",
            ],
            "",
        )
        .success(),
    ));
    let (onb_secret, _) = issued(&onb);
    pg(
        &env,
        &url,
        &schema,
        &["onboarding", "redeem", "--device", "d1"],
        &onb_secret,
    )
    .success();
    pg(
        &env,
        &url,
        &schema,
        &["onboarding", "redeem", "--device", "d2"],
        &onb_secret,
    )
    .code(REJECTED);

    pg(&env, &url, &schema, &["-y", "revoke", &dep_id], "").success();
    pg(&env, &url, &schema, &["verify"], &dep_secret).code(REJECTED);
    let list = parse(&stdout(
        pg(&env, &url, &schema, &["--json", "list"], "").success(),
    ));
    assert_eq!(list.as_array().unwrap().len(), 2);
    let audit = parse(&stdout(
        pg(
            &env,
            &url,
            &schema,
            &["--json", "audit", "--token", &dep_id],
            "",
        )
        .success(),
    ));
    assert!(audit.as_array().unwrap().len() >= 3);
    pg(&env, &url, &schema, &["sweep", "--dry-run"], "").success();
    // A schema name that is not a plain identifier is bad input.
    pg(&env, &url, "Bad-Name", &["list"], "").code(BAD_INPUT);
}
