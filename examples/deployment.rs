//! Deployment tokens: the "Mass Deployment > Manage Token" page of a backup console.
//!
//! An admin generates a token with an expiry and auto-renewal and renders the installer
//! command with it for the software-distribution tool. When the token expires, the nightly
//! sweep issues a successor valid 90 days: the command rendered earlier keeps its old token and
//! stops working, a freshly rendered one works. A token that leaked is expired at once.
//!
//! Run it with `cargo run --example deployment`.

use std::error::Error;
use std::sync::Arc;

use tessera::core::audit::AuditAction;
use tessera::core::clock::{Clock, ManualClock};
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::lifecycle::State;
use tessera::core::record::TokenSummary;
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::store::AuditFilter;
use tessera::{Principal, Rejection, Secret, TokenService};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// The installer command the console shows; `{token}` is where the token goes.
const TEMPLATE: &str = "msiexec /i inSyncClient.msi TOKEN={token} /quiet";

async fn run() -> Result<(), Box<dyn Error>> {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-23 09:00 UTC)));
    let peppers = Peppers::new(Pepper::generate(KeyId(1))?);
    let service = TokenService::builder(MemoryStore::new(), peppers)
        .clock(clock.clone())
        .build();
    let admin = Principal::admin("backup-admin")?;
    let tokens = service.deployment();

    println!(
        "== {}: Generate Token (expires in 30 days, auto-renew on)",
        when(clock.now())
    );
    // Auto-renewal is on by default (`.auto_renew(false)` opts a token out).
    let spec = NewDeployment::named("imd-2026-q4")?.expires_at(clock.now() + Duration::days(30));
    let first = tokens.generate(spec, &admin).await?;
    println!(
        "   token (shown once, copy it now): {}",
        first.secret.expose_secret()
    );
    row(&first.token);

    let old_command = tokens.render_command(TEMPLATE, &first.secret).await?;
    println!(
        "   installer command: {}",
        masked(&old_command, &first.secret, &first.token)
    );
    let activation = tokens.validate(token_in(&old_command)?).await?;
    verdict(
        "a laptop installed with this command activates",
        &activation,
    );
    assert!(activation.is_ok());

    println!();
    clock.advance(Duration::days(31));
    println!(
        "== {}: the nightly sweep runs (the token expired yesterday)",
        when(clock.now())
    );
    let preview = service.sweep(true).await?;
    println!("   dry run: would renew {} token(s)", preview.renewed.len());
    let report = service.sweep(false).await?;
    assert_eq!(report.renewed.len(), 1);
    let renewal = report
        .renewed
        .into_iter()
        .next()
        .ok_or("the sweep renewed nothing")?;
    assert_eq!(renewal.expired, first.token.id);
    let second = renewal
        .successor
        .ok_or("a sweep that writes returns the successor")?;
    println!("   auto-renewed; the sweep prints no secret, the successor is kept sealed");
    row(&second);
    assert_eq!(second.expires_at, Some(clock.now() + Duration::days(90)));
    let latest = tokens
        .latest()
        .await?
        .ok_or("no deployment token in force")?;
    assert_eq!(latest.id, second.id);
    println!("   most recent token: {}", latest.hint);

    match tokens.render_command(TEMPLATE, &first.secret).await {
        Err(e) => println!("   render with the old token: refused ({e})"),
        Ok(_) => return Err("rendering with an expired token must be refused".into()),
    }
    // The console shows the current command at any time, with no secret in hand.
    let new_command = tokens.command(TEMPLATE).await?;
    let second_secret = tokens.latest_secret().await?;
    println!(
        "   updated installer command: {}",
        masked(&new_command, &second_secret, &second)
    );

    let old = tokens.validate(token_in(&old_command)?).await?;
    verdict("a laptop installed with last month's command", &old);
    assert_eq!(old, Err(Rejection::Expired));
    let new = tokens.validate(token_in(&new_command)?).await?;
    verdict("a laptop installed with the updated command", &new);
    assert!(new.is_ok());

    println!();
    clock.advance(Duration::hours(2));
    println!(
        "== {}: a contractor wave gets its own token, which then leaks",
        when(clock.now())
    );
    let leaked = tokens
        .generate(NewDeployment::named("contractor-wave")?, &admin)
        .await?;
    println!(
        "   token (shown once, copy it now): {}",
        leaked.secret.expose_secret()
    );
    let leaked_command = tokens.render_command(TEMPLATE, &leaked.secret).await?;
    assert!(tokens.validate(token_in(&leaked_command)?).await?.is_ok());
    let expired = tokens.expire(leaked.token.id, &admin).await?;
    println!(
        "   Expire Token > Confirm: {} is now {}",
        expired.hint, expired.state
    );
    assert_eq!(expired.state, State::Expired);
    let refused = tokens.validate(token_in(&leaked_command)?).await?;
    verdict("an installer run with the leaked command", &refused);
    assert_eq!(refused, Err(Rejection::Expired));
    assert_eq!(tokens.latest().await?.map(|t| t.id), Some(second.id));

    println!();
    println!("== Manage Token list");
    let list = tokens.list().await?;
    for t in &list {
        row(t);
    }
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|t| t.state == State::Active).count(), 1);

    println!();
    println!("== Audit trail of {}", first.token.hint);
    let filter = AuditFilter::default().token(first.token.id);
    for e in service.audit(&filter, &admin).await? {
        let what = match &e.action {
            AuditAction::Issued => String::from("issued"),
            AuditAction::Used => String::from("accepted"),
            AuditAction::Refused { reason } => format!("refused: {reason}"),
            AuditAction::StateChanged { from, to } => format!("state {from} -> {to}"),
            AuditAction::Renewed { successor } => {
                format!("renewed by {}", service.token(*successor).await?.hint)
            }
            other => format!("{other:?}"),
        };
        println!("   {}  {:<18} {what}", when(e.at), e.actor.to_string());
    }
    Ok(())
}

/// One line of the token list, as the console shows it: never the secret.
fn row(t: &TokenSummary) {
    let expires = t.expires_at.map_or_else(|| String::from("never"), when);
    println!(
        "   {:<16} {:<13} {:<8} created {}  expires {}",
        t.name.as_deref().unwrap_or("-"),
        t.hint,
        t.state.to_string(),
        when(t.created_at),
        expires
    );
}

/// The token an installer reads from its `TOKEN=` property.
fn token_in(command: &Secret) -> Result<&str, &'static str> {
    command
        .expose_secret()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("TOKEN="))
        .ok_or("the command carries no TOKEN= property")
}

/// A rendered command with its token replaced by the token's hint, for printing.
fn masked(command: &Secret, secret: &Secret, token: &TokenSummary) -> String {
    command
        .expose_secret()
        .replace(secret.expose_secret(), &format!("<{}>", token.hint))
}

fn verdict<T>(what: &str, outcome: &Result<T, Rejection>) {
    match outcome {
        Ok(_) => println!("   {what}: accepted"),
        Err(r) => println!(
            "   {what}: refused: {r} [{}]; the client is told {} (HTTP {})",
            r.code(),
            r.oauth(),
            r.oauth().status()
        ),
    }
}

fn when(t: OffsetDateTime) -> String {
    format!("{} {:02}:{:02}", t.date(), t.hour(), t.minute())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs() {
        super::run().await.unwrap();
    }
}
