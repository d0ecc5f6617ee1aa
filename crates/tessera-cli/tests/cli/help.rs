//! `--help` alone documents every command group and the exit codes; completions.

use crate::common::*;

#[test]
fn help_lists_the_commands_and_exit_codes() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    for word in [
        "init",
        "deployment",
        "onboarding",
        "endpoint",
        "auth",
        "app",
        "rotate",
        "revoke",
        "sweep",
        "audit",
        "verify",
        "scan",
        "completions",
        "Exit codes",
        "--json",
        "--yes",
        "--as",
        "--admin",
        "--db",
        "--database-url",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    for group in [
        vec!["deployment", "--help"],
        vec!["onboarding", "--help"],
        vec!["onboarding", "bulk", "--help"],
        vec!["endpoint", "--help"],
        vec!["endpoint", "secondary", "--help"],
        vec!["endpoint", "primary", "regenerate", "--help"],
        vec!["auth", "generate", "--help"],
        vec!["app", "--help"],
        vec!["scan", "--help"],
    ] {
        let text = env.ok(&group);
        assert!(text.contains("Usage: tessera"), "{text}");
    }
    assert!(
        env.ok(&["auth", "generate", "--help"])
            .contains("--delegated")
    );
    assert!(env.ok(&["--version"]).starts_with("tessera "));
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    env.fails(&["nope"], BAD_INPUT);
    env.fails(&["deployment", "generate"], BAD_INPUT);
    env.fails(&["endpoint", "check", "/x", "patch"], BAD_INPUT);
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let env = Env::new();
    assert!(env.ok(&["completions", "bash"]).contains("complete"));
    assert!(
        env.ok(&["completions", "zsh"])
            .starts_with("#compdef tessera")
    );
    assert!(
        env.ok(&["completions", "fish"])
            .contains("complete -c tessera")
    );
    env.fails(&["completions", "cmd"], BAD_INPUT);
}
