//! Mass deployment: the Manage Token tab, the Generate Token window, the current installer
//! command and Expire Token behind a confirmation.

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::get;
use maud::html;
use tessera::deployment::NewDeployment;

use crate::error::{Error, Result};
use crate::page::{
    Ctx, Done, Posted, Section, Shared, confirm, csrf_field, end_of_day, notice, once_warning,
    page, secret_field, state_badge, token_id, when,
};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/deployment", get(list))
        .route("/deployment/new", get(new_form).post(generate))
        .route("/deployment/{id}/expire", get(expire_ask).post(expire))
}

async fn list(ctx: Ctx, Query(q): Query<Done>) -> Result<Response> {
    ctx.admin()?;
    let tokens = ctx.service().deployment().list().await?;
    let latest = ctx.service().deployment().latest().await?.map(|t| t.id);
    let template = ctx.console.settings.installer_template.as_deref();
    // The seed's one exception to "shown once": the current installer command, rendered with
    // the most recent token (kept sealed under the pepper), can be shown and copied again.
    let command = match template {
        Some(t) if latest.is_some() => match ctx.service().deployment().command(t).await {
            Ok(c) => Ok(c),
            Err(tessera::Error::NotSealed { .. }) => Err("The most recent token was generated \
                before tokens were kept sealed, so its command cannot be shown again: generate a \
                new token."),
            Err(e) => return Err(e.into()),
        },
        _ => Err("No token is in force: generate one to get the installer command."),
    };
    Ok(page(
        &ctx,
        Section::Deployment,
        "Mass deployment",
        html! {
            (notice(q.done.as_deref()))
            nav.tabs aria-label="Mass deployment" { span.tab aria-current="page" { "Manage Token" } }
            div.toolbar {
                a.button.primary href=(ctx.at("/deployment/new")) { "Generate Token" }
            }
            section aria-labelledby="cmd-h" {
                h2 #cmd-h { "Installer command" }
                @match template {
                    Some(_) => {
                        p { "Run this command on the devices to deploy the client: it carries the \
                             most recently generated token and stays current when a new token is \
                             generated. Commands copied earlier keep their token until it expires \
                             or is expired." }
                        @match &command {
                            Ok(c) => (secret_field("command", "Installer command", c.expose_secret(), false)),
                            Err(why) => p.muted { (why) },
                        }
                    }
                    None => p.muted { "No installer command is configured for this application." }
                }
            }
            section aria-labelledby="tokens-h" {
                h2 #tokens-h { "Generated tokens" }
                @if tokens.is_empty() {
                    p.muted { "No token yet. Use Generate Token." }
                } @else {
                    table {
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Token" }
                            th scope="col" { "Created" } th scope="col" { "Expiry" }
                            th scope="col" { "State" } th scope="col" { "Latest" }
                            th scope="col" { span.sr-only { "Actions" } }
                        } }
                        tbody {
                            @for t in tokens.iter().rev() {
                                @let name = t.name.clone().unwrap_or_default();
                                tr {
                                    td { (name) }
                                    td { code { (t.hint) } }
                                    td { (when(Some(t.created_at))) }
                                    td { (when(t.expires_at)) }
                                    td { (state_badge(t.state)) }
                                    td { @if latest == Some(t.id) { span.badge { "Latest" } } }
                                    td {
                                        @if t.state == tessera::core::lifecycle::State::Active {
                                            details.menu {
                                                summary aria-label={ "More actions for " (name) } { "⋯" }
                                                a href=(ctx.at(&format!("/deployment/{}/expire", t.id))) { "Expire Token" }
                                            }
                                        }
                                    }
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
    Ok(page(
        &ctx,
        Section::Deployment,
        "Generate Token",
        html! {
            form.dialog method="post" action=(ctx.at("/deployment/new")) {
                (csrf_field(&ctx))
                div.field {
                    label for="name" { "Token name" }
                    input #name name="name" type="text" required maxlength="128"
                        aria-describedby="name-help";
                    p #name-help .help { "For your reference, e.g. the deployment wave." }
                }
                div.check {
                    input #expiry_on name="expiry_on" type="checkbox" value="on";
                    label for="expiry_on" { "Enable Expiry Date" }
                }
                div.field {
                    label for="expires" { "Expire date" }
                    input #expires name="expires" type="date" aria-describedby="expires-help";
                    p #expires-help .help { "The token is refused after the end of this day (UTC)." }
                }
                div.check {
                    input #auto_renew name="auto_renew" type="checkbox" value="on" checked;
                    label for="auto_renew" { "Renew automatically: on expiry a new token valid 90 days is generated" }
                }
                div.actions {
                    button.primary type="submit" { "Generate Token" }
                    a.button href=(ctx.at("/deployment")) { "Cancel" }
                }
            }
        },
    ))
}

async fn generate(Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let mut spec = NewDeployment::named(fields.need("name", "token name")?)?;
    if fields.checked("expiry_on") {
        let date = fields.need("expires", "expire date (Enable Expiry Date is ticked)")?;
        spec = spec.expires_at(end_of_day(date, "expire date")?);
    }
    spec = spec.auto_renew(fields.checked("auto_renew"));
    let issued = ctx
        .service()
        .deployment()
        .generate(spec, &ctx.principal)
        .await?;
    let command = match &ctx.console.settings.installer_template {
        Some(t) => Some(
            ctx.service()
                .deployment()
                .render_command(t, &issued.secret)
                .await?,
        ),
        None => None,
    };
    let name = issued.token.name.clone().unwrap_or_default();
    Ok(page(
        &ctx,
        Section::Deployment,
        "Token generated",
        html! {
            p { "A new activation token " strong { (name) } " was generated. It is now the most \
                 recent token: add it to the installer command. Earlier tokens keep working until \
                 their own expiry." }
            (once_warning())
            (secret_field("token", "Mass deployment token", issued.secret.expose_secret(), false))
            @if let Some(c) = &command {
                (secret_field("command", "Installer command", c.expose_secret(), false))
            }
            p { a.button href=(ctx.at("/deployment")) { "Done" } }
        },
    ))
}

async fn expire_ask(ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let token = ctx.service().token(id).await?;
    if token.kind != tessera::Kind::Deployment {
        return Err(Error::NotFound(String::from(
            "no mass deployment token has this id; pick one from the list",
        )));
    }
    let name = token.name.unwrap_or_default();
    Ok(confirm(
        &ctx,
        Section::Deployment,
        "Expire Token",
        html! {
            p { "Expire the token " strong { (name) } " (" code { (token.hint) } ") now?" }
            p { "Installer commands that carry it stop working at once. This cannot be undone." }
        },
        &format!("/deployment/{id}/expire"),
        &[],
        "Confirm",
        "/deployment",
    ))
}

async fn expire(Path(id): Path<String>, posted: Posted) -> Result<Response> {
    let ctx = &posted.ctx;
    ctx.admin()?;
    let token = token_id(&id)?;
    if !posted.fields.confirmed() {
        return expire_ask(posted.ctx, Path(id)).await;
    }
    ctx.service()
        .deployment()
        .expire(token, &ctx.principal)
        .await?;
    Ok(ctx.back("/deployment?done=expired"))
}
