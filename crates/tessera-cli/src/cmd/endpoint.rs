//! `tessera endpoint ...`: primary tokens per endpoint and method, secondaries mapped to them.

use serde_json::{Value, json};
use tessera::Issued;
use tessera::core::id::{Description, EndpointId, TokenId, TokenName};
use tessera::core::kind::KindData;
use tessera::core::kind::endpoint::{EndpointData, Method};
use tessera::endpoint::{Carrier, SecondaryFilter, TrafficFilter};

use crate::cli::{EndpointCmd, MethodArg, PrimaryCmd, SecondaryCmd};
use crate::cmd::deployment::{grace, rejected_json};
use crate::context::{Ctx, read_token};
use crate::error::{CliError, Result};
use crate::output::{self, opt_time, summary_with};
use crate::parse;

/// Run an endpoint command.
pub(crate) async fn run(ctx: &Ctx, cmd: EndpointCmd) -> Result<()> {
    let svc = ctx.service.endpoint();
    match cmd {
        EndpointCmd::Enable {
            endpoint,
            allow_delete,
        } => {
            let ep = EndpointId::parse(endpoint)?;
            let issued = svc.enable(&ep, allow_delete, &ctx.principal).await?;
            let extra = |m: Method| {
                [
                    ("endpoint", Value::from(ep.as_str())),
                    ("method", Value::from(m.as_str())),
                ]
            };
            if ctx.out.json {
                // One JSON document: an array with a primary per method.
                let all: Vec<Value> = issued
                    .iter()
                    .map(|(m, i)| output::issued_json(i, &extra(*m)))
                    .collect();
                ctx.out.json(&Value::Array(all))?;
                eprintln!("{}", output::SHOWN_ONCE);
                return Ok(());
            }
            for (m, i) in &issued {
                ctx.out
                    .issued(&format!("{m} primary token of {ep}"), i, &extra(*m))?;
            }
            Ok(())
        }
        EndpointCmd::Disable { endpoint } => {
            let ep = EndpointId::parse(endpoint)?;
            ctx.out.confirm(&format!(
                "turn token authentication off for {ep}? its primaries are revoked and every mapping to it removed"
            ))?;
            svc.disable(&ep, &ctx.principal).await?;
            ctx.out.result(
                &format!("token authentication is off for {ep}"),
                &json!({ "endpoint": ep, "token_authentication": false }),
            )
        }
        EndpointCmd::AllowDelete { endpoint, off } => {
            let ep = EndpointId::parse(endpoint)?;
            if off {
                ctx.out.confirm(&format!(
                    "forbid DELETE on {ep}? its DELETE primary is revoked"
                ))?;
            }
            match svc.set_allow_delete(&ep, !off, &ctx.principal).await? {
                Some(i) => ctx.out.issued(
                    &format!("DELETE primary token of {ep}"),
                    &i,
                    &[
                        ("endpoint", Value::from(ep.as_str())),
                        ("method", Value::from("DELETE")),
                    ],
                ),
                None => ctx.out.result(
                    &format!(
                        "DELETE is {} on {ep}",
                        if off { "forbidden" } else { "already allowed" }
                    ),
                    &json!({ "endpoint": ep, "allow_delete": !off }),
                ),
            }
        }
        EndpointCmd::Primary(PrimaryCmd::List { endpoint }) => {
            let ep = EndpointId::parse(endpoint)?;
            if !svc.was_set_up(&ep).await? {
                return Err(tessera::Error::NoSuchEndpoint {
                    endpoint: ep.to_string(),
                }
                .into());
            }
            let primaries = svc.primaries(&ep).await?;
            let rows: Vec<Vec<String>> = primaries
                .iter()
                .map(|(m, t)| {
                    vec![
                        m.to_string(),
                        t.id.to_string(),
                        output::state_word(t.state).to_owned(),
                        opt_time(t.last_used_at),
                        t.hint.clone(),
                    ]
                })
                .collect();
            let json: Vec<Value> = primaries
                .iter()
                .map(|(m, t)| summary_with(t, json!({ "endpoint": ep, "method": m })))
                .collect();
            ctx.out.listing(
                &["METHOD", "ID", "STATE", "LAST USED", "HINT"],
                &rows,
                &Value::Array(json),
                &format!("token authentication is off for {ep}; turn it on with `tessera endpoint enable {ep}`"),
            )
        }
        EndpointCmd::Primary(PrimaryCmd::Regenerate {
            endpoint,
            method,
            grace,
        }) => {
            let ep = EndpointId::parse(endpoint)?;
            let m = parse::method(method);
            let grace = grace.map(|g| parse::duration("--grace", &g)).transpose()?;
            let when = if grace.is_some() {
                "after the grace window"
            } else {
                "at once"
            };
            ctx.out.confirm(&format!(
                "regenerate the {m} primary of {ep}? the current one stops working {when}"
            ))?;
            let issued = svc
                .regenerate_primary(&ep, m, grace, &ctx.principal)
                .await?;
            ctx.out.issued(
                &format!("{m} primary token of {ep}"),
                &issued,
                &[
                    ("endpoint", Value::from(ep.as_str())),
                    ("method", Value::from(m.as_str())),
                ],
            )
        }
        EndpointCmd::Secondary(c) => secondary(ctx, c).await,
        EndpointCmd::Check {
            endpoint,
            method,
            ip,
            token,
        } => {
            let ep = EndpointId::parse(endpoint)?;
            let m = parse::method(method);
            let token = read_token(token)?;
            match svc.check(&ep, m, &token, ip).await? {
                Ok(a) => {
                    let by = match &a.carrier {
                        Carrier::Primary => String::from("the primary"),
                        Carrier::Secondary { name } => format!("secondary {name}"),
                    };
                    ctx.out.result(
                        &format!(
                            "accepted: {m} {ep} with {by} ({}){}",
                            a.token,
                            grace(a.in_grace)
                        ),
                        &json!({
                            "accepted": true,
                            "token": a.token,
                            "carrier": match &a.carrier {
                                Carrier::Primary => json!({ "primary": true }),
                                Carrier::Secondary { name } => json!({ "secondary": name }),
                            },
                            "in_grace": a.in_grace,
                        }),
                    )
                }
                Err(rej) => {
                    rejected_json(ctx, rej)?;
                    Err(CliError::rejected(rej, format!("{m} {ep}")))
                }
            }
        }
        EndpointCmd::Traffic {
            endpoint,
            token,
            name,
            since,
            until,
        } => {
            let ep = EndpointId::parse(endpoint)?;
            let now = ctx.now();
            let mut filter = TrafficFilter::default();
            if let Some(t) = token {
                filter = filter.token(ctx.resolve_id(&t).await?);
            }
            if let Some(n) = name {
                filter = filter.name(TokenName::parse(n)?.as_str());
            }
            if let Some(t) = since {
                filter = filter.since(parse::instant("--since", &t, now)?);
            }
            if let Some(t) = until {
                filter = filter.until(parse::instant("--until", &t, now)?);
            }
            let traffic = svc.traffic_filtered(&ep, &filter).await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for u in &traffic {
                let name = match (&u.name, u.primary) {
                    (Some(n), _) => n.clone(),
                    (None, true) => String::from("(primary)"),
                    (None, false) => String::from("(purged)"),
                };
                rows.push(vec![
                    u.token.to_string(),
                    name.clone(),
                    u.method.to_string(),
                    u.count.to_string(),
                    opt_time(u.first_seen),
                    opt_time(u.last_seen),
                ]);
                json.push(json!({
                    "token": u.token,
                    "name": u.name,
                    "primary": u.primary,
                    "method": u.method,
                    "count": u.count,
                    "first_seen": u.first_seen.map(output::rfc3339),
                    "last_seen": u.last_seen.map(output::rfc3339),
                }));
            }
            ctx.out.listing(
                &["TOKEN", "NAME", "METHOD", "REQUESTS", "FIRST", "LAST"],
                &rows,
                &Value::Array(json),
                &format!("no accepted requests on {ep} match"),
            )
        }
    }
}

async fn secondary(ctx: &Ctx, cmd: SecondaryCmd) -> Result<()> {
    let svc = ctx.service.endpoint();
    let p = &ctx.principal;
    match cmd {
        SecondaryCmd::Create { name, description } => {
            let issued = svc
                .create_secondary(TokenName::parse(name)?, Description::parse(description)?, p)
                .await?;
            ctx.show_created("secondary endpoint token", &issued, &[])
                .await?;
            if !ctx.out.json {
                eprintln!(
                    "map it to an endpoint with `tessera endpoint secondary map {} ENDPOINT METHOD`",
                    issued.token.id
                );
            }
            Ok(())
        }
        SecondaryCmd::List {
            all,
            hide_unassigned,
            endpoint,
        } => {
            let filter = SecondaryFilter {
                include_inactive: all,
                hide_unassigned,
                endpoint: endpoint.map(EndpointId::parse).transpose()?,
            };
            let list = svc.secondaries(filter).await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for s in &list {
                let t = &s.token;
                let maps: Vec<String> = s
                    .mappings
                    .iter()
                    .map(|m| {
                        format!(
                            "{} {}{}",
                            m.method,
                            m.endpoint,
                            if m.enabled { "" } else { " (off)" }
                        )
                    })
                    .collect();
                rows.push(vec![
                    t.id.to_string(),
                    t.name.clone().unwrap_or_default(),
                    if s.enabled { "on".into() } else { "off".into() },
                    output::state_word(t.state).to_owned(),
                    if maps.is_empty() {
                        "-".into()
                    } else {
                        maps.join(", ")
                    },
                    output::cut(s.description.as_str(), 40),
                    t.hint.clone(),
                ]);
                json.push(summary_with(
                    t,
                    json!({
                        "description": s.description.as_str(),
                        "enabled": s.enabled,
                        "mappings": s.mappings,
                    }),
                ));
            }
            ctx.out.listing(
                &["ID", "NAME", "TOGGLE", "STATE", "MAPPINGS", "DESCRIPTION", "HINT"],
                &rows,
                &Value::Array(json),
                "no secondary endpoint tokens; create one with `tessera endpoint secondary create --name APP`",
            )
        }
        SecondaryCmd::Enable { id } => {
            let id = secondary_id(ctx, &id).await?;
            svc.set_enabled(id, true, p).await?;
            done(ctx, id, "toggled on", json!({ "enabled": true })).await
        }
        SecondaryCmd::Disable { id } => {
            let id = secondary_id(ctx, &id).await?;
            svc.set_enabled(id, false, p).await?;
            done(ctx, id, "toggled off", json!({ "enabled": false })).await
        }
        SecondaryCmd::Activate { id } => {
            let id = secondary_id(ctx, &id).await?;
            svc.activate(id, p).await?;
            done(ctx, id, "activated", json!({})).await
        }
        SecondaryCmd::Deactivate { id } => {
            let id = secondary_id(ctx, &id).await?;
            svc.deactivate(id, p).await?;
            done(ctx, id, "deactivated", json!({})).await
        }
        SecondaryCmd::Regenerate { id } => {
            let id = secondary_id(ctx, &id).await?;
            ctx.out.confirm(&format!(
                "give secondary {id} a new value? the current value stops working at once"
            ))?;
            let secret = svc.regenerate_secondary(id, p).await?;
            // The facade returns the secret alone; show it with the stored summary.
            let issued = Issued {
                secret,
                token: ctx.service.token(id).await?,
            };
            ctx.out
                .issued("new value of secondary endpoint token", &issued, &[])
        }
        SecondaryCmd::Map {
            id,
            endpoint,
            method,
        } => {
            let (id, ep, m) = mapping_args(ctx, &id, endpoint, method).await?;
            let mapping = svc.map(id, &ep, m, p).await?;
            ctx.out.result(
                &format!("mapped secondary {id} to {m} {ep}"),
                &serde_json::to_value(&mapping).unwrap_or(Value::Null),
            )
        }
        SecondaryCmd::Unmap {
            id,
            endpoint,
            method,
        } => {
            let (id, ep, m) = mapping_args(ctx, &id, endpoint, method).await?;
            ctx.out.confirm(&format!(
                "remove the mapping of secondary {id} to {m} {ep}?"
            ))?;
            svc.unmap(id, &ep, m, p).await?;
            ctx.out.result(
                &format!("unmapped secondary {id} from {m} {ep}"),
                &json!({ "secondary": id, "endpoint": ep, "method": m, "mapped": false }),
            )
        }
        SecondaryCmd::MapEnable {
            id,
            endpoint,
            method,
        } => {
            let (id, ep, m) = mapping_args(ctx, &id, endpoint, method).await?;
            let mapping = svc.set_mapping_enabled(id, &ep, m, true, p).await?;
            ctx.out.result(
                &format!("turned on the mapping of secondary {id} to {m} {ep}"),
                &serde_json::to_value(&mapping).unwrap_or(Value::Null),
            )
        }
        SecondaryCmd::MapDisable {
            id,
            endpoint,
            method,
        } => {
            let (id, ep, m) = mapping_args(ctx, &id, endpoint, method).await?;
            let mapping = svc.set_mapping_enabled(id, &ep, m, false, p).await?;
            ctx.out.result(
                &format!("turned off the mapping of secondary {id} to {m} {ep}"),
                &serde_json::to_value(&mapping).unwrap_or(Value::Null),
            )
        }
    }
}

async fn mapping_args(
    ctx: &Ctx,
    id: &str,
    endpoint: String,
    method: MethodArg,
) -> Result<(TokenId, EndpointId, Method)> {
    Ok((
        secondary_id(ctx, id).await?,
        EndpointId::parse(endpoint)?,
        parse::method(method),
    ))
}

/// Resolve an id and check it names a secondary endpoint token.
async fn secondary_id(ctx: &Ctx, text: &str) -> Result<TokenId> {
    let id = ctx.resolve_id(text).await?;
    let r = ctx.record(id).await?;
    match &r.data {
        KindData::Endpoint(EndpointData::Secondary { .. }) => Ok(id),
        KindData::Endpoint(EndpointData::Primary { .. }) => Err(CliError::not_found(format!(
            "{id} is a primary endpoint token, not a secondary; see `tessera endpoint primary`"
        ))),
        _ => Err(CliError::not_found(format!(
            "{id} is {} token, not a secondary endpoint token",
            output::article(r.kind())
        ))),
    }
}

async fn done(ctx: &Ctx, id: TokenId, what: &str, extra: Value) -> Result<()> {
    let t = ctx.service.token(id).await?;
    ctx.out.result(
        &format!("{what} secondary {id} ({})", t.hint),
        &summary_with(&t, extra),
    )
}
