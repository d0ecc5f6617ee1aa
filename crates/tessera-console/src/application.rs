//! Application tokens: the list with Deactivate/Activate for the selected, the create form,
//! the shown-once screen, and a token's page with the addresses that used it and Block/Unblock
//! for the selected.

use std::net::IpAddr;

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::{get, post};
use maud::html;
use tessera::core::id::{AccessType, ApplicationName, Description, TokenId};
use tessera::core::kind::application::AccessTypes;
use tessera::store::UsageSubject;

use crate::error::{Error, Result};
use crate::page::{
    Ctx, Done, Posted, Section, Shared, confirm, csrf_field, notice, once_warning, page,
    secret_field, state_badge, token_id, when,
};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/applications", get(list))
        .route("/applications/new", get(new_form).post(create))
        .route("/applications/state", post(set_state))
        .route("/applications/{id}", get(detail))
        .route("/applications/{id}/ips", post(set_blocked))
}

async fn list(ctx: Ctx, Query(q): Query<Done>) -> Result<Response> {
    ctx.admin()?;
    let tokens = ctx.service().application().list().await?;
    Ok(page(
        &ctx,
        Section::Applications,
        "Application tokens",
        html! {
            (notice(q.done.as_deref()))
            p.muted { "A token unused for 30 days becomes inactive and refuses all access until \
                       activated again; unused for 90 days it is deleted for good." }
            div.toolbar { a.button.primary href=(ctx.at("/applications/new")) { "+ Create token" } }
            form method="post" action=(ctx.at("/applications/state")) {
                (csrf_field(&ctx))
                div.toolbar {
                    button type="submit" name="action" value="deactivate" { "Deactivate" }
                    button type="submit" name="action" value="activate" { "Activate" }
                }
                @if tokens.is_empty() {
                    p.muted { "No application token yet." }
                } @else {
                    table {
                        thead { tr {
                            th scope="col" { span.sr-only { "Select" } }
                            th scope="col" { "Name" } th scope="col" { "Description" }
                            th scope="col" { "Access type" } th scope="col" { "Token" }
                            th scope="col" { "Created" } th scope="col" { "Last used" }
                            th scope="col" { "State" }
                        } }
                        tbody {
                            @for t in &tokens {
                                @let name = t.data.name.as_str();
                                tr {
                                    td { input type="checkbox" name="id" value=(t.token.id)
                                        id={ "sel-" (t.token.id) } aria-label={ "Select " (name) }; }
                                    td { a href=(ctx.at(&format!("/applications/{}", t.token.id))) { (name) } }
                                    td { (t.data.description.as_str()) }
                                    td { @for (i, a) in t.data.access.iter().enumerate() { @if i > 0 { ", " } (a) } }
                                    td { code { (t.token.hint) } }
                                    td { (when(Some(t.token.created_at))) }
                                    td { (when(t.token.last_used_at)) }
                                    td { (state_badge(t.token.state)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn new_form(ctx: Ctx) -> Result<Response> {
    ctx.admin()?;
    let types = &ctx.console.settings.access_types;
    Ok(page(
        &ctx,
        Section::Applications,
        "Create application token",
        html! {
            form.dialog method="post" action=(ctx.at("/applications/new")) {
                (csrf_field(&ctx))
                div.field {
                    label for="name" { "Name" }
                    input #name name="name" type="text" required maxlength="32"
                        pattern="[A-Za-z0-9-]+" aria-describedby="name-help";
                    p #name-help .help { "Unique; letters, numbers and dashes only, no spaces; \
                                          at most 32 characters." }
                }
                div.field {
                    label for="description" { "Description" }
                    textarea #description name="description" maxlength="1024"
                        aria-describedby="description-help" {}
                    p #description-help .help { "At most 1024 characters. Make it useful for \
                                                 every administrator." }
                }
                fieldset {
                    legend { "Access type" }
                    @for t in types {
                        div.check {
                            input id={ "access-" (t) } name="access" type="checkbox" value=(t);
                            label for={ "access-" (t) } { (t) }
                        }
                    }
                }
                div.actions {
                    button.primary type="submit" { "OK" }
                    a.button href=(ctx.at("/applications")) { "Cancel" }
                }
            }
        },
    ))
}

async fn create(Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let bad = |e: tessera::core::Error| Error::bad(e.to_string());
    let name = ApplicationName::parse(fields.need("name", "name")?).map_err(bad)?;
    let description =
        Description::parse(fields.get("description").unwrap_or_default()).map_err(bad)?;
    let offered = &ctx.console.settings.access_types;
    let mut chosen = Vec::new();
    for a in fields.all("access") {
        let t = AccessType::parse(a).map_err(bad)?;
        if !offered.contains(&t) {
            return Err(Error::bad(format!(
                "access type {t} is not offered here; tick the ones listed"
            )));
        }
        chosen.push(t);
    }
    let access =
        AccessTypes::new(chosen).map_err(|_| Error::bad("tick at least one access type"))?;
    let issued = ctx
        .service()
        .application()
        .create(name, description, access, &ctx.principal)
        .await?;
    Ok(page(
        &ctx,
        Section::Applications,
        "Application token created",
        html! {
            p { "The token " strong { (issued.token.name.clone().unwrap_or_default()) }
                " is active. Use it as the bearer token in the authorization header: "
                code { "Authorization: Bearer <token>" } "." }
            (once_warning())
            (secret_field("token", "Application token", issued.secret.expose_secret(), false))
            p { a.button href=(ctx.at("/applications")) { "Close" } }
        },
    ))
}

fn selected(fields: &crate::page::Fields) -> Result<Vec<TokenId>> {
    let ids = fields.all("id").map(token_id).collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        return Err(Error::bad(
            "select at least one token with its check box first",
        ));
    }
    Ok(ids)
}

async fn set_state(Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let ids = selected(&fields)?;
    let apps = ctx.service().application();
    match fields.get("action") {
        Some("deactivate") => {
            if !fields.confirmed() {
                let mut hidden: Vec<(&str, String)> =
                    ids.iter().map(|id| ("id", id.to_string())).collect();
                hidden.push(("action", String::from("deactivate")));
                return Ok(confirm(
                    &ctx,
                    Section::Applications,
                    "Deactivate tokens",
                    html! { p { "Deactivate " (ids.len()) " token(s)? All access with them is \
                    refused until they are activated again." } },
                    "/applications/state",
                    &hidden,
                    "Deactivate",
                    "/applications",
                ));
            }
            for id in ids {
                apps.deactivate(id, &ctx.principal).await?;
            }
            Ok(ctx.back("/applications?done=deactivated"))
        }
        Some("activate") => {
            for id in ids {
                apps.activate(id, &ctx.principal).await?;
            }
            Ok(ctx.back("/applications?done=activated"))
        }
        _ => Err(Error::bad("choose Deactivate or Activate")),
    }
}

async fn detail(ctx: Ctx, Path(id): Path<String>, Query(q): Query<Done>) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let listing = ctx
        .service()
        .application()
        .list()
        .await?
        .into_iter()
        .find(|l| l.token.id == id)
        .ok_or_else(|| {
            Error::NotFound(String::from(
                "no application token has this id; pick one from the list",
            ))
        })?;
    let ips = ctx.service().application().ips(id).await?;
    let name = listing.data.name.as_str();
    Ok(page(
        &ctx,
        Section::Applications,
        &format!("Application token {name}"),
        html! {
            (notice(q.done.as_deref()))
            p { (state_badge(listing.token.state)) " " code { (listing.token.hint) } " — "
                (listing.data.description.as_str()) }
            h2 { "Addresses that used this token" }
            form method="post" action=(ctx.at(&format!("/applications/{id}/ips"))) {
                (csrf_field(&ctx))
                div.toolbar {
                    button type="submit" name="action" value="block" { "Block" }
                    button type="submit" name="action" value="unblock" { "Unblock" }
                }
                @if ips.is_empty() {
                    p.muted { "No address has used this token yet." }
                } @else {
                    table {
                        thead { tr {
                            th scope="col" { span.sr-only { "Select" } }
                            th scope="col" { "IP address" } th scope="col" { "First used" }
                            th scope="col" { "Last used" } th scope="col" { "Requests" }
                            th scope="col" { "Access" }
                        } }
                        tbody {
                            @for u in &ips {
                                @if let UsageSubject::Ip(ip) = &u.subject {
                                    tr {
                                        td { input type="checkbox" name="ip" value=(ip)
                                            id={ "ip-" (ip) } aria-label={ "Select " (ip) }; }
                                        td { code { (ip) } }
                                        td { (when(u.first_seen)) }
                                        td { (when(u.last_seen)) }
                                        td { (u.count) }
                                        td { @if u.blocked { span.state.state-revoked { "Blocked" } } @else { span.state.state-active { "Allowed" } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p { a href=(ctx.at("/applications")) { "Back to application tokens" } }
        },
    ))
}

async fn set_blocked(Path(id): Path<String>, Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let ips = fields
        .all("ip")
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| Error::bad(format!("{s} is not an IP address")))
        })
        .collect::<Result<Vec<_>>>()?;
    if ips.is_empty() {
        return Err(Error::bad(
            "select at least one address with its check box first",
        ));
    }
    let apps = ctx.service().application();
    match fields.get("action") {
        Some("block") => {
            if !fields.confirmed() {
                let mut hidden: Vec<(&str, String)> =
                    ips.iter().map(|ip| ("ip", ip.to_string())).collect();
                hidden.push(("action", String::from("block")));
                return Ok(confirm(
                    &ctx,
                    Section::Applications,
                    "Block addresses",
                    html! {
                        p { "Block these addresses for this token? Their requests are refused; \
                             other addresses are not affected." }
                        ul { @for ip in &ips { li { code { (ip) } } } }
                    },
                    &format!("/applications/{id}/ips"),
                    &hidden,
                    "Block",
                    &format!("/applications/{id}"),
                ));
            }
            for ip in ips {
                apps.block(id, ip, &ctx.principal).await?;
            }
            Ok(ctx.back(&format!("/applications/{id}?done=blocked")))
        }
        Some("unblock") => {
            for ip in ips {
                apps.unblock(id, ip, &ctx.principal).await?;
            }
            Ok(ctx.back(&format!("/applications/{id}?done=unblocked")))
        }
        _ => Err(Error::bad("choose Block or Unblock")),
    }
}
