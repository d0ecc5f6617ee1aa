//! `tessera init`, the pepper, and schema migrations.

use crate::common::*;

#[test]
fn init_creates_the_database_and_a_private_key_file() {
    let env = Env::new();
    let v = env.json(&["init"]);
    assert_eq!(v["database"]["backend"], "sqlite");
    assert_eq!(v["pepper"]["created"], true);
    assert!(v["schema_version"].as_i64().unwrap() >= 1);
    assert!(env.db.exists());
    let key = env.db.parent().unwrap().join("tessera.key");
    let hex = std::fs::read_to_string(&key).unwrap();
    assert_eq!(hex.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Again: the database is kept, the key file is never overwritten.
    let again = env.json(&["init"]);
    assert_eq!(again["pepper"]["created"], false);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), hex);
}

#[test]
fn init_refuses_to_replace_a_broken_key_file() {
    let env = Env::new();
    std::fs::create_dir_all(env.db.parent().unwrap()).unwrap();
    let key = env.db.parent().unwrap().join("tessera.key");
    std::fs::write(&key, "not a key").unwrap();
    let err = env.fails(&["init"], BAD_INPUT);
    assert!(err.contains("never overwrites"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "not a key");
}

#[test]
fn commands_before_init_say_to_run_init() {
    let env = Env::new();
    let err = env.fails(&["deployment", "list"], STORAGE);
    assert!(err.contains("tessera init"), "{err}");
    // --json errors are JSON on standard error.
    let err = env.fails(&["--json", "list"], STORAGE);
    let v = parse(err.trim());
    assert_eq!(v["error"]["exit_code"], STORAGE);
    assert_eq!(v["error"]["class"], "storage");
}

#[test]
fn the_pepper_can_come_from_the_environment() {
    let env = Env::new();
    let pepper = "ab".repeat(32);
    let v = parse(&stdout(
        env.cmd()
            .args(["--json", "init"])
            .env("TESSERA_PEPPER", &pepper)
            .assert()
            .success(),
    ));
    assert_eq!(v["pepper"]["source"], "env");
    assert!(!env.db.parent().unwrap().join("tessera.key").exists());
    let created = parse(&stdout(
        env.cmd()
            .args(["--json", "deployment", "generate", "--name", "d"])
            .env("TESSERA_PEPPER", &pepper)
            .assert()
            .success(),
    ));
    let (secret, _) = issued(&created);
    env.cmd()
        .args(["verify", &secret])
        .env("TESSERA_PEPPER", &pepper)
        .assert()
        .success();
    // Another pepper does not find it; no pepper at all is a setup error.
    env.cmd()
        .args(["verify", &secret])
        .env("TESSERA_PEPPER", "cd".repeat(32))
        .assert()
        .code(REJECTED);
    let err = env.fails(&["verify", &secret], STORAGE);
    assert!(err.contains("TESSERA_PEPPER"), "{err}");
    // A malformed pepper is bad input.
    env.cmd()
        .args(["list"])
        .env("TESSERA_PEPPER", "xyz")
        .assert()
        .code(BAD_INPUT);
}

#[test]
fn a_key_file_can_be_named() {
    let env = Env::new();
    let key = env.dir.path().join("elsewhere.key");
    env.ok(&["init", "--key", key.to_str().unwrap()]);
    assert!(key.exists());
    env.ok(&["list", "--key", key.to_str().unwrap()]);
    env.fails(&["list"], STORAGE);
}

fn sqlite(env: &Env, sql: &str) {
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.execute_batch(sql).unwrap();
    conn.close().map_err(|(_, e)| e).unwrap();
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let env = Env::init();
    sqlite(
        &env,
        "INSERT INTO _tessera_migrations (version, description, checksum, installed_at) \
         VALUES (9999, 'from the future', x'00', 0)",
    );
    let err = env.fails(&["list"], STORAGE);
    assert!(err.contains("newer than this build"), "{err}");
    assert!(err.contains("upgrade tessera"), "{err}");
}

#[test]
fn pending_migrations_are_applied_by_any_command() {
    let env = Env::new();
    let pepper = "ef".repeat(32);
    std::fs::create_dir_all(env.db.parent().unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = tessera_sql::SqliteStore::open(&env.db).await.unwrap();
        store.migrate_to(1).await.unwrap();
        store.close().await;
    });
    let out = env
        .cmd()
        .args(["list"])
        .env("TESSERA_PEPPER", &pepper)
        .assert()
        .success();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("upgraded the database schema from version 1"),
        "{err}"
    );
}

/// `TESSERA_DATABASE_URL=sqlite:PATH`, as `tessera-service` reads it: the same database for the
/// service and the CLI in one shell, the key file beside it; anything else is refused clearly.
#[test]
fn a_sqlite_database_url_names_the_file_the_service_reads() {
    let env = Env::new();
    let db = env.dir.path().join("service").join("tokens.db");
    let url = format!("sqlite:{}", db.display());
    let with_url = |args: &[&str]| {
        let mut c = env.cmd();
        c.env_remove("TESSERA_DB")
            .env("TESSERA_DATABASE_URL", &url)
            .args(args);
        c.assert()
    };
    let v = parse(&stdout(with_url(&["--json", "init"]).success()));
    assert_eq!(v["database"]["backend"], "sqlite");
    assert!(db.exists(), "the database is where the URL says");
    assert!(db.parent().unwrap().join("tessera.key").exists());
    let created = parse(&stdout(
        with_url(&[
            "--json",
            "app",
            "create",
            "--name",
            "feeds",
            "--access",
            "third-party-feeds",
        ])
        .success(),
    ));
    let (_, id) = issued(&created);
    let listed = stdout(with_url(&["list"]).success());
    assert!(listed.contains(&id), "{listed}");
    // The default database (--db, here TESSERA_DB) never saw it.
    assert!(!env.db.exists());

    for (bad, says) in [
        ("sqlite:", "names no file"),
        ("mysql://u@h/db", "neither postgres://"),
    ] {
        let err = env.fails(&["--database-url", bad, "list"], BAD_INPUT);
        assert!(err.contains(says), "{bad}: {err}");
    }
    let err = env.fails(
        &["--database-url", &url, "--database-schema", "s", "list"],
        BAD_INPUT,
    );
    assert!(err.contains("no schemas"), "{err}");
}
