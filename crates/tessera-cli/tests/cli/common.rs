//! A temporary Tessera home per test and helpers to run the real `tessera` binary in it.

use std::path::PathBuf;

use assert_cmd::Command;
use assert_cmd::assert::Assert;
use serde_json::Value;
use tempfile::TempDir;

/// Exit codes, as documented.
pub(crate) const STORAGE: i32 = 1;
pub(crate) const BAD_INPUT: i32 = 2;
pub(crate) const REJECTED: i32 = 3;
pub(crate) const NOT_FOUND: i32 = 4;

/// A temporary directory with its own SQLite database and key file.
pub(crate) struct Env {
    pub(crate) dir: TempDir,
    pub(crate) db: PathBuf,
}

impl Env {
    /// A fresh directory, not initialised.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data").join("tessera.db");
        Self { dir, db }
    }

    /// A fresh, initialised directory.
    pub(crate) fn init() -> Self {
        let env = Self::new();
        env.ok(&["init"]);
        env
    }

    /// The binary, isolated from the caller's environment, pointed at this database.
    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
        for var in [
            "TESSERA_DB",
            "TESSERA_DATABASE_URL",
            "TESSERA_KEY_FILE",
            "TESSERA_PEPPER",
            "TESSERA_USER",
            "TESSERA_NOW",
            "TESSERA_DORMANT_AFTER",
            "TESSERA_DELETE_AFTER",
            "XDG_DATA_HOME",
        ] {
            c.env_remove(var);
        }
        c.env("HOME", self.dir.path())
            .env("USER", "operator")
            .env("TESSERA_DB", &self.db)
            .write_stdin("");
        c
    }

    /// Run with `args` and standard input `stdin`.
    pub(crate) fn run_in(&self, args: &[&str], stdin: &str) -> Assert {
        self.cmd().args(args).write_stdin(stdin.to_owned()).assert()
    }

    /// Run with `args`.
    pub(crate) fn run(&self, args: &[&str]) -> Assert {
        self.run_in(args, "")
    }

    /// Run, expect success, return standard output.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        stdout(self.run(args).success())
    }

    /// Run with input, expect success, return standard output.
    pub(crate) fn ok_in(&self, args: &[&str], stdin: &str) -> String {
        stdout(self.run_in(args, stdin).success())
    }

    /// Run with `--json`, expect success, parse standard output.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        self.json_in(args, "")
    }

    /// Run with `--json` and input, expect success, parse standard output.
    pub(crate) fn json_in(&self, args: &[&str], stdin: &str) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        parse(&self.ok_in(&all, stdin))
    }

    /// Run, expect exit `code`, return standard error.
    pub(crate) fn fails(&self, args: &[&str], code: i32) -> String {
        self.fails_in(args, "", code)
    }

    /// Run with input, expect exit `code`, return standard error.
    pub(crate) fn fails_in(&self, args: &[&str], stdin: &str, code: i32) -> String {
        let out = self.run_in(args, stdin).code(code).get_output().clone();
        String::from_utf8(out.stderr).unwrap()
    }

    /// Run with `--json`, expect exit `code`, parse standard output (a rejection result).
    pub(crate) fn json_fails_in(&self, args: &[&str], stdin: &str, code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run_in(&all, stdin).code(code).get_output().clone();
        parse(&String::from_utf8(out.stdout).unwrap())
    }

    /// The state of a token, from `show`.
    pub(crate) fn state(&self, id: &str) -> String {
        self.json(&["show", id])["state"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Standard output of a finished run.
pub(crate) fn stdout(a: Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

/// Parse JSON, showing the text on failure.
pub(crate) fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The secret and id of a JSON creation result.
pub(crate) fn issued(v: &Value) -> (String, String) {
    assert_eq!(v["shown_once"], Value::Bool(true), "{v}");
    (
        v["secret"].as_str().unwrap().to_owned(),
        v["token"]["id"].as_str().unwrap().to_owned(),
    )
}
