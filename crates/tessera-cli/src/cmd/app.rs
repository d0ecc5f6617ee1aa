//! `tessera app ...`: application bearer tokens, their IP log and blocks.

use serde_json::{Value, json};
use tessera::application::parse_bearer;
use tessera::core::Kind;
use tessera::core::id::{AccessType, ApplicationName, Description, TokenId};
use tessera::core::kind::application::AccessTypes;
use tessera::store::UsageSubject;

use crate::cli::AppCmd;
use crate::cmd::deployment::rejected_json;
use crate::context::{Ctx, read_token};
use crate::error::{CliError, Result};
use crate::output::{self, opt_time, summary_json, summary_with};
use crate::parse;

/// Run an application-token command.
pub(crate) async fn run(ctx: &Ctx, cmd: AppCmd) -> Result<()> {
    let svc = ctx.service.application();
    let p = &ctx.principal;
    match cmd {
        AppCmd::Create {
            name,
            description,
            access,
        } => {
            let types = parse::list("--access", &access)?
                .into_iter()
                .map(AccessType::parse)
                .collect::<Result<Vec<_>, _>>()?;
            let issued = svc
                .create(
                    ApplicationName::parse(name)?,
                    Description::parse(description)?,
                    AccessTypes::new(types)?,
                    p,
                )
                .await?;
            ctx.show_created("application token", &issued, &[]).await?;
            if !ctx.out.json {
                eprintln!("present it as `Authorization: Bearer <token>`");
            }
            Ok(())
        }
        AppCmd::List => {
            let list = svc.list().await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for l in &list {
                let t = &l.token;
                let access: Vec<&str> = l.data.access.iter().map(AccessType::as_str).collect();
                rows.push(vec![
                    t.id.to_string(),
                    l.data.name.to_string(),
                    output::state_word(t.state).to_owned(),
                    access.join(","),
                    opt_time(t.last_used_at),
                    output::cut(l.data.description.as_str(), 40),
                    t.hint.clone(),
                ]);
                json.push(summary_with(
                    t,
                    json!({ "description": l.data.description.as_str(), "access": access }),
                ));
            }
            ctx.out.listing(
                &["ID", "NAME", "STATE", "ACCESS", "LAST USED", "DESCRIPTION", "HINT"],
                &rows,
                &Value::Array(json),
                "no application tokens; create one with `tessera app create --name NAME --access TYPE`",
            )
        }
        AppCmd::Deactivate { id } => {
            let id = app_id(ctx, &id).await?;
            let t = svc.deactivate(id, p).await?;
            ctx.out.result(
                &format!(
                    "deactivated application token {} ({}): all access is refused until activated",
                    t.id, t.hint
                ),
                &summary_json(&t),
            )
        }
        AppCmd::Activate { id } => {
            let id = app_id(ctx, &id).await?;
            let t = svc.activate(id, p).await?;
            ctx.out.result(
                &format!("activated application token {} ({})", t.id, t.hint),
                &summary_json(&t),
            )
        }
        AppCmd::Ips { id } => {
            let id = app_id(ctx, &id).await?;
            let entries = svc.ips(id).await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for u in &entries {
                let UsageSubject::Ip(ip) = &u.subject else {
                    continue;
                };
                rows.push(vec![
                    ip.to_string(),
                    opt_time(u.first_seen),
                    opt_time(u.last_seen),
                    u.count.to_string(),
                    if u.blocked { "yes".into() } else { "no".into() },
                ]);
                json.push(json!({
                    "ip": ip,
                    "first_seen": u.first_seen.map(output::rfc3339),
                    "last_seen": u.last_seen.map(output::rfc3339),
                    "count": u.count,
                    "blocked": u.blocked,
                }));
            }
            ctx.out.listing(
                &["IP", "FIRST USE", "LAST USE", "USES", "BLOCKED"],
                &rows,
                &Value::Array(json),
                "no address has used this token yet",
            )
        }
        AppCmd::Block { id, ip } => {
            let id = app_id(ctx, &id).await?;
            let u = svc.block(id, ip, p).await?;
            ctx.out.result(
                &format!("blocked {ip} for application token {id}"),
                &json!({ "token": id, "ip": ip, "blocked": u.blocked }),
            )
        }
        AppCmd::Unblock { id, ip } => {
            let id = app_id(ctx, &id).await?;
            let u = svc.unblock(id, ip, p).await?;
            ctx.out.result(
                &format!("unblocked {ip} for application token {id}"),
                &json!({ "token": id, "ip": ip, "blocked": u.blocked }),
            )
        }
        AppCmd::Verify { ip, token } => {
            let text = read_token(token)?;
            // A whole `Authorization` header value is accepted too.
            let token = if text.contains(' ') {
                parse_bearer(&text).map_err(|e| CliError::usage(e.to_string()))?
            } else {
                text.as_str()
            };
            match svc.validate(token, ip).await? {
                Ok(a) => {
                    let access: Vec<&str> = a.access().iter().map(AccessType::as_str).collect();
                    ctx.out.result(
                        &format!("accepted: application {} ({}) from {ip}", a.name(), a.token),
                        &json!({ "accepted": true, "token": a.token, "name": a.name(), "access": access }),
                    )
                }
                Err(rej) => {
                    rejected_json(ctx, rej)?;
                    Err(CliError::rejected(
                        rej,
                        format!("application token from {ip}"),
                    ))
                }
            }
        }
    }
}

/// Resolve an id and check it names an application token.
async fn app_id(ctx: &Ctx, text: &str) -> Result<TokenId> {
    let id = ctx.resolve_id(text).await?;
    let r = ctx.record(id).await?;
    if r.kind() == Kind::Application {
        Ok(id)
    } else {
        Err(CliError::not_found(format!(
            "{id} is {} token, not an application token",
            output::article(r.kind())
        )))
    }
}
