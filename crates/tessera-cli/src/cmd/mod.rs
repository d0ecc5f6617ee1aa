//! One module per command group; [`run`] dispatches.

mod app;
mod auth;
mod deployment;
mod endpoint;
mod general;
mod init;
mod onboarding;
mod pepper;
mod scan;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::context::Ctx;
use tessera::Rejection;

use crate::error::{CliError, Result};

/// Run a parsed command line.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init => init::run(g).await,
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "tessera", &mut std::io::stdout());
            Ok(())
        }
        Command::Scan(args) => scan::run(g, args).await,
        Command::Sweep(args) => general::sweep(g, args).await,
        Command::Pepper(c) => pepper::run(g, c).await,
        command => {
            let ctx = Ctx::open(g, None).await?;
            let result = match command {
                Command::Deployment(c) => deployment::run(&ctx, c).await,
                Command::Onboarding(c) => onboarding::run(&ctx, c).await,
                Command::Endpoint(c) => endpoint::run(&ctx, c).await,
                Command::Auth(c) => auth::run(&ctx, c).await,
                Command::App(c) => app::run(&ctx, c).await,
                Command::List(a) => general::list(&ctx, a).await,
                Command::Show { id } => general::show(&ctx, &id).await,
                Command::Rotate { id, grace } => general::rotate(&ctx, &id, grace.as_deref()).await,
                Command::Revoke { ids } => general::revoke(&ctx, &ids).await,
                Command::Audit(a) => general::audit(&ctx, a).await,
                Command::Verify { token } => general::verify(&ctx, token).await,
                Command::Init
                | Command::Completions { .. }
                | Command::Scan(_)
                | Command::Sweep(_)
                | Command::Pepper(_) => Ok(()),
            };
            // A validation's use (last use, IP log, traffic, audit row) waits in the usage
            // ledger: write it before the process ends, whatever the command's outcome.
            let flushed = ctx.service.flush().await;
            let result = match result {
                // An unknown token may be a wrong pepper rather than a wrong database.
                Err(CliError::Rejected {
                    reason: Rejection::NotFound,
                    context,
                    fix: None,
                }) => Err(CliError::Rejected {
                    reason: Rejection::NotFound,
                    context,
                    fix: ctx.pepper_doubt().await?,
                }),
                other => other,
            };
            result?;
            flushed?;
            Ok(())
        }
    }
}
