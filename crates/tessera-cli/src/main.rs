//! # tessera
//!
//! The `tessera` command: every action of the five token consoles (deployment, onboarding,
//! endpoint, auth and application tokens) from the shell, over a SQLite file by default or a
//! shared PostgreSQL database. See `tessera --help` and this crate's README.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod context;
mod error;
mod output;
mod parse;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_error(&e),
    };
    let json = cli.global.json;
    logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = error::CliError::failure(format!("cannot start the async runtime: {e}"));
            report(&err, json);
            return ExitCode::from(err.exit_code());
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::from(error::EXIT_OK),
        Err(e) => {
            report(&e, json);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Install the tracing subscriber on standard error: `-v` info, `-vv` debug, `-vvv` trace for
/// every target; without `-v`, `RUST_LOG` when set; else nothing is logged (the command's own
/// messages say what happened). The library never puts a secret in a span or event.
fn logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match verbose {
        0 => match EnvFilter::try_from_default_env() {
            Ok(f) => f,
            Err(_) => return,
        },
        1 => EnvFilter::new("info"),
        2 => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A command line clap could not read: help and version as clap prints them; with `--json`,
/// the documented JSON error object (exit 2) instead of clap's text.
fn parse_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    let shown = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if shown || !json {
        e.exit();
    }
    let text = e.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let message = text.split("\n\n").next().unwrap_or(text).trim();
    let err = error::CliError::usage(format!(
        "{message}; see `tessera --help` for the command line"
    ));
    report(&err, true);
    ExitCode::from(err.exit_code())
}

/// Print an error on standard error: a line for people, a JSON object for scripts.
fn report(e: &error::CliError, json: bool) {
    if json {
        let mut v = serde_json::json!({
            "error": {
                "class": e.class(),
                "exit_code": e.exit_code(),
                "message": e.to_string(),
            }
        });
        if let error::CliError::Rejected { reason, .. } = e {
            v["error"]["reason"] = serde_json::Value::from(reason.code());
        }
        eprintln!("{v}");
    } else {
        eprintln!("error: {e}");
    }
}
