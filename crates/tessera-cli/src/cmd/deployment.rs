//! `tessera deployment ...`: mass-deployment tokens.

use serde_json::{Value, json};
use tessera::core::kind::KindData;
use tessera::core::{Kind, Secret};
use tessera::deployment::NewDeployment;
use tessera::store::TokenFilter;

use crate::cli::DeploymentCmd;
use crate::context::{Ctx, read_token, read_token_if_given};
use crate::error::{CliError, Result};
use crate::output::{self, opt_time, summary_with};
use crate::parse;

/// Run a deployment command.
pub(crate) async fn run(ctx: &Ctx, cmd: DeploymentCmd) -> Result<()> {
    let svc = ctx.service.deployment();
    match cmd {
        DeploymentCmd::Generate {
            name,
            expires,
            auto_renew: _,
            no_auto_renew,
            command,
        } => {
            let auto_renew = !no_auto_renew;
            let mut spec = NewDeployment::named(name)?.auto_renew(auto_renew);
            if let Some(e) = expires {
                spec = spec.expires_at(parse::expiry(&e, ctx.now())?);
            }
            let issued = svc.generate(spec, &ctx.principal).await?;
            let mut extra = vec![("auto_renew", Value::from(auto_renew))];
            if let Some(template) = command {
                let rendered = svc.render_command(&template, &issued.secret).await?;
                extra.push(("installer_command", Value::from(rendered.expose_secret())));
            }
            ctx.show_created("deployment token", &issued, &extra).await
        }
        DeploymentCmd::List => {
            let latest = svc.latest().await?.map(|t| t.id);
            let now = ctx.now();
            let records = ctx
                .store()
                .list(&TokenFilter::default().kind(Kind::Deployment))
                .await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for r in &records {
                let KindData::Deployment(d) = &r.data else {
                    continue;
                };
                let t = r.summary(now);
                let is_latest = latest == Some(t.id);
                rows.push(vec![
                    t.id.to_string(),
                    d.name.to_string(),
                    output::state_word(t.state).to_owned(),
                    if is_latest { "*".into() } else { String::new() },
                    if d.auto_renew {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    opt_time(t.expires_at),
                    opt_time(t.last_used_at),
                    t.hint.clone(),
                ]);
                json.push(summary_with(
                    &t,
                    json!({ "latest": is_latest, "auto_renew": d.auto_renew }),
                ));
            }
            ctx.out.listing(
                &[
                    "ID",
                    "NAME",
                    "STATE",
                    "LATEST",
                    "AUTO-RENEW",
                    "EXPIRES",
                    "LAST USED",
                    "HINT",
                ],
                &rows,
                &Value::Array(json),
                "no deployment tokens; create one with `tessera deployment generate --name NAME`",
            )
        }
        DeploymentCmd::Expire { id } => {
            let id = ctx.resolve_id(&id).await?;
            let r = ctx.record(id).await?;
            if r.kind() != Kind::Deployment {
                return Err(CliError::not_found(format!(
                    "{id} is {} token, not a deployment token",
                    output::article(r.kind())
                )));
            }
            ctx.out.confirm(&format!(
                "expire deployment token {id} ({}) now? installer commands that carry it stop working",
                r.hint
            ))?;
            let t = svc.expire(id, &ctx.principal).await?;
            ctx.out.result(
                &format!("expired deployment token {} ({})", t.id, t.hint),
                &output::summary_json(&t),
            )
        }
        DeploymentCmd::Command { template, token } => {
            let rendered = match read_token_if_given(token)? {
                Some(token) => {
                    let secret = Secret::from_presented(token.as_str());
                    svc.render_command(&template, &secret).await?
                }
                None => svc.command(&template).await?,
            };
            ctx.out.result(
                rendered.expose_secret(),
                &json!({ "installer_command": rendered.expose_secret() }),
            )
        }
        DeploymentCmd::Verify { token } => {
            let token = read_token(token)?;
            match svc.validate(&token).await? {
                Ok(a) => ctx.out.result(
                    &format!("accepted: deployment token {}{}", a.token, grace(a.in_grace)),
                    &json!({ "accepted": true, "token": a.token, "kind": a.kind, "in_grace": a.in_grace }),
                ),
                Err(rej) => {
                    rejected_json(ctx, rej)?;
                    Err(CliError::rejected(rej, "deployment token"))
                }
            }
        }
    }
}

/// A note for tokens in their rotation grace window.
pub(crate) const fn grace(in_grace: bool) -> &'static str {
    if in_grace {
        " (rotated: accepted only until its grace window ends)"
    } else {
        ""
    }
}

/// With `--json`, print a rejection as a result on standard output.
pub(crate) fn rejected_json(ctx: &Ctx, rej: tessera::Rejection) -> Result<()> {
    if ctx.out.json {
        ctx.out.json(&json!({
            "accepted": false,
            "reason": rej.code(),
            "oauth_error": rej.oauth().as_str(),
        }))?;
    }
    Ok(())
}
