//! Endpoints: per endpoint the Token tab (GET/POST primaries, DELETE when deleting is allowed,
//! Generate and Copy, the secondaries with Hide unassigned), traffic per token filterable by
//! application; the Endpoint tokens list (active only by default, Deactivate/Activate, the
//! Enabled toggle, Assign endpoint tokens, Hide unassigned) and the Token settings dialog.

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use tessera::Issued;
use tessera::core::id::{Description, TokenId, TokenName};
use tessera::core::kind::endpoint::Method;
use tessera::endpoint::{SecondaryFilter, SecondaryListing};
use tessera::store::UsageSubject;

use crate::error::{Error, Result};
use crate::page::{
    Ctx, Posted, Section, Shared, confirm, csrf_field, notice, once_warning, page, secret_field,
    state_badge, token_id, when,
};
use crate::settings::EndpointConfig;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/endpoints", get(endpoints))
        .route("/endpoints/{n}", get(token_tab))
        .route("/endpoints/{n}/enable", post(enable))
        .route("/endpoints/{n}/regenerate", post(regenerate_primary))
        .route("/endpoints/{n}/traffic", get(traffic))
        .route("/endpoint-tokens", get(secondaries))
        .route("/endpoint-tokens/new", get(new_form).post(create))
        .route("/endpoint-tokens/{id}", get(settings_dialog))
        .route(
            "/endpoint-tokens/{id}/regenerate",
            post(regenerate_secondary),
        )
        .route("/endpoint-tokens/{id}/enabled", post(set_enabled))
        .route("/endpoint-tokens/{id}/state", post(set_state))
        .route(
            "/endpoint-tokens/{id}/assign",
            get(assign_form).post(assign),
        )
        .route("/endpoint-tokens/{id}/mapping", post(set_mapping))
}

#[derive(Debug, Default, serde::Deserialize)]
struct View {
    done: Option<String>,
    hide_unassigned: Option<String>,
    inactive: Option<String>,
    token: Option<String>,
}

fn endpoint(ctx: &Ctx, n: &str) -> Result<(usize, EndpointConfig)> {
    n.parse::<usize>()
        .ok()
        .and_then(|i| {
            ctx.console
                .settings
                .endpoints
                .get(i)
                .map(|e| (i, e.clone()))
        })
        .ok_or_else(|| {
            Error::NotFound(String::from(
                "no such endpoint; pick one from the Endpoints list",
            ))
        })
}

fn method(text: Option<&str>) -> Result<Method> {
    text.and_then(Method::parse)
        .ok_or_else(|| Error::bad("choose the method: GET, POST or DELETE"))
}

async fn endpoints(ctx: Ctx) -> Result<Response> {
    ctx.admin()?;
    let mut rows = Vec::new();
    for (i, e) in ctx.console.settings.endpoints.iter().enumerate() {
        let primaries = ctx.service().endpoint().primaries(&e.id).await?;
        rows.push((i, e, primaries.len()));
    }
    Ok(page(
        &ctx,
        Section::Endpoints,
        "Endpoints",
        html! {
            @if rows.is_empty() {
                p.muted { "No endpoint is configured for this application." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Endpoint" } th scope="col" { "Allow deleting" }
                                 th scope="col" { "Token authentication" } } }
                    tbody {
                        @for (i, e, n) in &rows {
                            tr {
                                td { a href=(ctx.at(&format!("/endpoints/{i}"))) { code { (e.id) } } }
                                td { @if e.allow_delete { "yes" } @else { "no" } }
                                td { @if *n > 0 { (n) " primary tokens" } @else { span.muted { "off" } } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn token_tab(ctx: Ctx, Path(n): Path<String>, Query(v): Query<View>) -> Result<Response> {
    ctx.admin()?;
    let (i, e) = endpoint(&ctx, &n)?;
    let primaries = ctx.service().endpoint().primaries(&e.id).await?;
    let hide = v.hide_unassigned.is_some();
    let all = ctx
        .service()
        .endpoint()
        .secondaries(SecondaryFilter::default())
        .await?;
    let shown: Vec<&SecondaryListing> = all
        .iter()
        .filter(|s| !hide || s.mappings.iter().any(|m| m.endpoint == e.id))
        .collect();
    Ok(page(
        &ctx,
        Section::Endpoints,
        &format!("Endpoint {}", e.id),
        html! {
            (notice(v.done.as_deref()))
            nav.tabs aria-label="Endpoint" {
                span.tab aria-current="page" { "Token" }
                a href=(ctx.at(&format!("/endpoints/{i}/traffic"))) { "Traffic" }
            }
            h2 { "Primary tokens" }
            @if primaries.is_empty() {
                p { "Token authentication is off: turning it on generates the GET and POST primary \
                     tokens" @if e.allow_delete { ", and DELETE as this endpoint allows deleting" } "." }
                form method="post" action=(ctx.at(&format!("/endpoints/{i}/enable"))) {
                    (csrf_field(&ctx))
                    button.primary type="submit" { "Turn on token authentication" }
                }
            } @else {
                p.muted { "Generated tokens are primary tokens: rather than handing them out, map a \
                           secondary token per integrating application to them." }
                table {
                    thead { tr { th scope="col" { "Method" } th scope="col" { "Token" }
                                 th scope="col" { "Created" } th scope="col" { "State" }
                                 th scope="col" { span.sr-only { "Actions" } } } }
                    tbody {
                        @for (m, t) in &primaries {
                            tr {
                                th scope="row" { (m.as_str()) }
                                td { code { (t.hint) } }
                                td { (when(Some(t.created_at))) }
                                td { (state_badge(t.state)) }
                                td {
                                    form method="post" action=(ctx.at(&format!("/endpoints/{i}/regenerate"))) {
                                        (csrf_field(&ctx))
                                        input type="hidden" name="method" value=(m.as_str());
                                        button type="submit" aria-label={ "Generate a new " (m.as_str()) " primary token" } { "Generate" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Secondary tokens" }
            form.toolbar method="get" action=(ctx.at(&format!("/endpoints/{i}"))) {
                div.check {
                    input #hide_unassigned name="hide_unassigned" type="checkbox" value="1" checked[hide];
                    label for="hide_unassigned" { "Hide unassigned" }
                }
                button type="submit" { "Apply" }
            }
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Description" }
                             th scope="col" { "Mapped here" } th scope="col" { "Enabled" } } }
                tbody {
                    @for s in &shown {
                        @let here: Vec<String> = s.mappings.iter().filter(|m| m.endpoint == e.id)
                            .map(|m| format!("{}{}", m.method.as_str(), if m.enabled { "" } else { " (off)" })).collect();
                        tr {
                            td { a href=(ctx.at(&format!("/endpoint-tokens/{}/assign", s.token.id))) { (s.token.name.clone().unwrap_or_default()) } }
                            td { (s.description.as_str()) }
                            td { @if here.is_empty() { span.muted { "unassigned" } } @else { (here.join(", ")) } }
                            td { @if s.enabled { "on" } @else { "off" } }
                        }
                    }
                }
            }
            p { a href=(ctx.at("/endpoint-tokens")) { "Manage endpoint tokens" } }
        },
    ))
}

fn primaries_once(ctx: &Ctx, title: &str, issued: &[(Method, Issued)], back: &str) -> Response {
    page(
        ctx,
        Section::Endpoints,
        title,
        html! {
            (once_warning())
            @for (m, i) in issued {
                (secret_field(&format!("primary-{}", m.as_str()), &format!("{} primary token", m.as_str()), i.secret.expose_secret(), false))
            }
            p { a.button href=(ctx.at(back)) { "Done" } }
        },
    )
}

async fn enable(Path(n): Path<String>, Posted { ctx, .. }: Posted) -> Result<Response> {
    ctx.admin()?;
    let (i, e) = endpoint(&ctx, &n)?;
    let issued = ctx
        .service()
        .endpoint()
        .enable(&e.id, e.allow_delete, &ctx.principal)
        .await?;
    Ok(primaries_once(
        &ctx,
        "Token authentication is on",
        &issued,
        &format!("/endpoints/{i}"),
    ))
}

async fn regenerate_primary(
    Path(n): Path<String>,
    Posted { ctx, fields }: Posted,
) -> Result<Response> {
    ctx.admin()?;
    let (i, e) = endpoint(&ctx, &n)?;
    let m = method(fields.get("method"))?;
    if !fields.confirmed() {
        return Ok(confirm(
            &ctx,
            Section::Endpoints,
            "Generate a new primary token",
            html! { p { "Generate a new " (m.as_str()) " primary token for " code { (e.id) } "? The \
            current one is refused from now on; secondary tokens mapped to it keep working." } },
            &format!("/endpoints/{i}/regenerate"),
            &[("method", m.as_str().to_owned())],
            "Generate",
            &format!("/endpoints/{i}"),
        ));
    }
    let issued = ctx
        .service()
        .endpoint()
        .regenerate_primary(&e.id, m, None, &ctx.principal)
        .await?;
    Ok(primaries_once(
        &ctx,
        "New primary token",
        &[(m, issued)],
        &format!("/endpoints/{i}"),
    ))
}

async fn traffic(ctx: Ctx, Path(n): Path<String>, Query(v): Query<View>) -> Result<Response> {
    ctx.admin()?;
    let (i, e) = endpoint(&ctx, &n)?;
    let filter = v
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(token_id)
        .transpose()?;
    let entries = ctx.service().endpoint().traffic(&e.id).await?;
    let mut names = Vec::new();
    for u in &entries {
        if names.iter().any(|(id, _)| *id == u.token) {
            continue;
        }
        let label = match ctx.service().token(u.token).await {
            Ok(t) => t.name.unwrap_or_else(|| format!("primary {}", t.hint)),
            Err(_) => String::from("(removed token)"),
        };
        names.push((u.token, label));
    }
    let label = |id: TokenId| {
        names
            .iter()
            .find(|(t, _)| *t == id)
            .map_or_else(String::new, |(_, l)| l.clone())
    };
    Ok(page(
        &ctx,
        Section::Endpoints,
        &format!("Traffic of {}", e.id),
        html! {
            nav.tabs aria-label="Endpoint" {
                a href=(ctx.at(&format!("/endpoints/{i}"))) { "Token" }
                span.tab aria-current="page" { "Traffic" }
            }
            form.toolbar method="get" action=(ctx.at(&format!("/endpoints/{i}/traffic"))) {
                label for="token" { "Application" }
                select #token name="token" {
                    option value="" { "All applications" }
                    @for (id, l) in &names { option value=(id) selected[filter == Some(*id)] { (l) } }
                }
                button type="submit" { "Filter" }
            }
            table {
                thead { tr { th scope="col" { "Application (token)" } th scope="col" { "Method" }
                             th scope="col" { "Requests" } th scope="col" { "First" } th scope="col" { "Last" } } }
                tbody {
                    @for u in entries.iter().filter(|u| filter.is_none_or(|f| f == u.token)) {
                        tr {
                            td { (label(u.token)) }
                            td { @if let UsageSubject::Endpoint(_, m) = &u.subject { (m.as_str()) } }
                            td { (u.count) }
                            td { (when(u.first_seen)) }
                            td { (when(u.last_seen)) }
                        }
                    }
                }
            }
        },
    ))
}

async fn secondaries(ctx: Ctx, Query(v): Query<View>) -> Result<Response> {
    ctx.admin()?;
    let inactive = v.inactive.is_some();
    let hide = v.hide_unassigned.is_some();
    let list = ctx
        .service()
        .endpoint()
        .secondaries(SecondaryFilter {
            include_inactive: inactive,
            hide_unassigned: hide,
            ..SecondaryFilter::default()
        })
        .await?;
    let active_state = tessera::core::lifecycle::State::Active;
    let list: Vec<&SecondaryListing> = list
        .iter()
        .filter(|s| (s.token.state == active_state) != inactive)
        .collect();
    Ok(page(
        &ctx,
        Section::EndpointTokens,
        "Endpoint tokens",
        html! {
            (notice(v.done.as_deref()))
            div.toolbar { a.button.primary href=(ctx.at("/endpoint-tokens/new")) { "+ Add" } }
            form.toolbar method="get" action=(ctx.at("/endpoint-tokens")) {
                div.check {
                    input #inactive name="inactive" type="checkbox" value="1" checked[inactive];
                    label for="inactive" { "Show inactive tokens" }
                }
                div.check {
                    input #hide_unassigned name="hide_unassigned" type="checkbox" value="1" checked[hide];
                    label for="hide_unassigned" { "Hide unassigned" }
                }
                button type="submit" { "Apply" }
            }
            @if list.is_empty() {
                p.muted { @if inactive { "No inactive endpoint token." } @else { "No active endpoint token." } }
            } @else {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Description" }
                                 th scope="col" { "Enabled" } th scope="col" { span.sr-only { "Actions" } } } }
                    tbody {
                        @for s in &list {
                            @let name = s.token.name.clone().unwrap_or_default();
                            @let id = s.token.id;
                            tr {
                                td { a href=(ctx.at(&format!("/endpoint-tokens/{id}"))) { (name) } }
                                td { (s.description.as_str()) }
                                td {
                                    form method="post" action=(ctx.at(&format!("/endpoint-tokens/{id}/enabled"))) {
                                        (csrf_field(&ctx))
                                        input type="hidden" name="enabled" value=(if s.enabled { "off" } else { "on" });
                                        button.switch type="submit" role="switch" aria-checked=(s.enabled)
                                            aria-label={ "Enabled: " (name) } { @if s.enabled { "On" } @else { "Off" } }
                                    }
                                }
                                td.actions {
                                    form method="post" action=(ctx.at(&format!("/endpoint-tokens/{id}/state"))) {
                                        (csrf_field(&ctx))
                                        @if inactive {
                                            input type="hidden" name="action" value="activate";
                                            button type="submit" aria-label={ "Activate token " (name) } { "Activate token" }
                                        } @else {
                                            input type="hidden" name="action" value="deactivate";
                                            button type="submit" aria-label={ "Deactivate token " (name) } { "Deactivate token" }
                                        }
                                    }
                                    a.button href=(ctx.at(&format!("/endpoint-tokens/{id}/assign")))
                                        aria-label={ "Assign endpoint tokens: " (name) } { "Assign endpoint tokens" }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

fn settings_form(ctx: &Ctx) -> Markup {
    html! {
        form.dialog method="post" action=(ctx.at("/endpoint-tokens/new")) aria-labelledby="ts-h" {
            h2 #ts-h { "Token settings" }
            (csrf_field(ctx))
            div.field {
                label for="name" { "Name" }
                input #name name="name" type="text" required maxlength="128" aria-describedby="name-help";
                p #name-help .help { "Name it after the application that will use it, so its traffic \
                                      is easy to find." }
            }
            div.field {
                label for="token" { "Token" }
                input #token type="text" readonly value="Generated when you save: 64 random letters and digits";
            }
            div.field {
                label for="description" { "Description" }
                textarea #description name="description" maxlength="1024" {}
            }
            div.check {
                input #enabled name="enabled" type="checkbox" value="on" checked;
                label for="enabled" { "Enabled" }
            }
            div.actions {
                button.primary type="submit" { "Save" }
                a.button href=(ctx.at("/endpoint-tokens")) { "Cancel" }
            }
        }
    }
}

async fn new_form(ctx: Ctx) -> Result<Response> {
    ctx.admin()?;
    Ok(page(
        &ctx,
        Section::EndpointTokens,
        "Add endpoint token",
        settings_form(&ctx),
    ))
}

async fn create(Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let bad = |e: tessera::core::Error| Error::bad(e.to_string());
    let name = TokenName::parse(fields.need("name", "name")?).map_err(bad)?;
    let description =
        Description::parse(fields.get("description").unwrap_or_default()).map_err(bad)?;
    let ep = ctx.service().endpoint();
    let issued = ep
        .create_secondary(name, description, &ctx.principal)
        .await?;
    if !fields.checked("enabled") {
        ep.set_enabled(issued.token.id, false, &ctx.principal)
            .await?;
    }
    let id = issued.token.id;
    Ok(page(
        &ctx,
        Section::EndpointTokens,
        "Endpoint token created",
        html! {
            p { "The endpoint token " strong { (issued.token.name.clone().unwrap_or_default()) }
                " was created. Assign it to endpoints so its application can call them." }
            (once_warning())
            (secret_field("token", "Token", issued.secret.expose_secret(), true))
            div.actions {
                a.button.primary href=(ctx.at(&format!("/endpoint-tokens/{id}/assign"))) { "Assign endpoint tokens" }
                a.button href=(ctx.at("/endpoint-tokens")) { "Done" }
            }
        },
    ))
}

async fn secondary(ctx: &Ctx, id: TokenId) -> Result<SecondaryListing> {
    ctx.service()
        .endpoint()
        .secondaries(SecondaryFilter {
            include_inactive: true,
            ..SecondaryFilter::default()
        })
        .await?
        .into_iter()
        .find(|s| s.token.id == id)
        .ok_or_else(|| {
            Error::NotFound(String::from(
                "no endpoint token has this id; pick one from the list",
            ))
        })
}

async fn settings_dialog(
    ctx: Ctx,
    Path(id): Path<String>,
    Query(v): Query<View>,
) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let s = secondary(&ctx, id).await?;
    let name = s.token.name.clone().unwrap_or_default();
    Ok(page(
        &ctx,
        Section::EndpointTokens,
        "Token settings",
        html! {
            (notice(v.done.as_deref()))
            div.dialog {
                dl {
                    dt { "Name" } dd { (name) }
                    dt { "Token" } dd { code { (s.token.hint) } span.muted { " (shown once, when generated)" } }
                    dt { "Description" } dd { (s.description.as_str()) }
                    dt { "State" } dd { (state_badge(s.token.state)) }
                }
                div.actions {
                    form method="post" action=(ctx.at(&format!("/endpoint-tokens/{id}/enabled"))) {
                        (csrf_field(&ctx))
                        input type="hidden" name="enabled" value=(if s.enabled { "off" } else { "on" });
                        input type="hidden" name="back" value="settings";
                        button.switch type="submit" role="switch" aria-checked=(s.enabled) aria-label="Enabled" {
                            "Enabled: " @if s.enabled { "On" } @else { "Off" }
                        }
                    }
                    form method="post" action=(ctx.at(&format!("/endpoint-tokens/{id}/regenerate"))) {
                        (csrf_field(&ctx))
                        button type="submit" aria-label="Regenerate the token value" { "↻ Regenerate" }
                    }
                    a.button href=(ctx.at(&format!("/endpoint-tokens/{id}/assign"))) { "Assign endpoint tokens" }
                }
            }
            p { a href=(ctx.at("/endpoint-tokens")) { "Back to endpoint tokens" } }
        },
    ))
}

async fn regenerate_secondary(
    Path(id): Path<String>,
    Posted { ctx, fields }: Posted,
) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let s = secondary(&ctx, id).await?;
    let name = s.token.name.clone().unwrap_or_default();
    if !fields.confirmed() {
        return Ok(confirm(
            &ctx,
            Section::EndpointTokens,
            "Regenerate token",
            html! { p { "Give " strong { (name) } " a new value? The application using the current \
            value is refused until it is given the new one. Its mappings stay." } },
            &format!("/endpoint-tokens/{id}/regenerate"),
            &[],
            "Regenerate",
            &format!("/endpoint-tokens/{id}"),
        ));
    }
    let secret = ctx
        .service()
        .endpoint()
        .regenerate_secondary(id, &ctx.principal)
        .await?;
    Ok(page(
        &ctx,
        Section::EndpointTokens,
        "Token regenerated",
        html! {
            p { "New value of " strong { (name) } ":" }
            (once_warning())
            (secret_field("token", "Token", secret.expose_secret(), true))
            p { a.button href=(ctx.at(&format!("/endpoint-tokens/{id}"))) { "Done" } }
        },
    ))
}

async fn set_enabled(Path(id): Path<String>, Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let on = match fields.get("enabled") {
        Some("on") => true,
        Some("off") => false,
        _ => return Err(Error::bad("enabled must be on or off")),
    };
    ctx.service()
        .endpoint()
        .set_enabled(id, on, &ctx.principal)
        .await?;
    Ok(match fields.get("back") {
        Some("settings") => ctx.back(&format!("/endpoint-tokens/{id}?done=saved")),
        _ => ctx.back("/endpoint-tokens?done=saved"),
    })
}

async fn set_state(Path(id): Path<String>, Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let ep = ctx.service().endpoint();
    match fields.get("action") {
        Some("deactivate") => {
            ep.deactivate(id, &ctx.principal).await?;
            Ok(ctx.back("/endpoint-tokens?done=deactivated"))
        }
        Some("activate") => {
            ep.activate(id, &ctx.principal).await?;
            Ok(ctx.back("/endpoint-tokens?inactive=1&done=activated"))
        }
        _ => Err(Error::bad("choose Deactivate token or Activate token")),
    }
}

async fn assign_form(ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let s = secondary(&ctx, id).await?;
    let mut rows = Vec::new();
    for (i, e) in ctx.console.settings.endpoints.iter().enumerate() {
        for (m, _) in ctx.service().endpoint().primaries(&e.id).await? {
            let mapping = s
                .mappings
                .iter()
                .find(|x| x.endpoint == e.id && x.method == m);
            rows.push((i, e.id.clone(), m, mapping.map(|x| x.enabled)));
        }
    }
    let name = s.token.name.clone().unwrap_or_default();
    Ok(page(
        &ctx,
        Section::EndpointTokens,
        "Assign endpoint tokens",
        html! {
            p { "Map " strong { (name) } " to endpoint primary tokens. Requests carrying it are \
                 accepted where a mapping is ticked and switched on." }
            @if rows.is_empty() {
                p.muted { "No endpoint has token authentication on yet: turn it on from the Endpoints console first." }
            } @else {
                form.dialog method="post" action=(ctx.at(&format!("/endpoint-tokens/{id}/assign"))) {
                    (csrf_field(&ctx))
                    fieldset {
                        legend { "Endpoints and methods" }
                        @for (i, ep, m, mapped) in &rows {
                            @let key = format!("{i}:{}", m.as_str());
                            div.check {
                                input id={ "map-" (i) "-" (m.as_str()) } name="map" type="checkbox" value=(key) checked[mapped.is_some()];
                                label for={ "map-" (i) "-" (m.as_str()) } { (m.as_str()) " " (ep) }
                            }
                        }
                    }
                    div.actions {
                        button.primary type="submit" { "Save" }
                        a.button href=(ctx.at("/endpoint-tokens")) { "Cancel" }
                    }
                }
                h2 { "Mappings" }
                table {
                    thead { tr { th scope="col" { "Endpoint" } th scope="col" { "Method" } th scope="col" { "Mapping" } } }
                    tbody {
                        @for (i, ep, m, mapped) in &rows {
                            @if let Some(on) = mapped {
                                tr {
                                    td { code { (ep) } }
                                    td { (m.as_str()) }
                                    td {
                                        form method="post" action=(ctx.at(&format!("/endpoint-tokens/{id}/mapping"))) {
                                            (csrf_field(&ctx))
                                            input type="hidden" name="endpoint" value=(i);
                                            input type="hidden" name="method" value=(m.as_str());
                                            input type="hidden" name="enabled" value=(if *on { "off" } else { "on" });
                                            button.switch type="submit" role="switch" aria-checked=(on)
                                                aria-label={ "Mapping " (m.as_str()) " " (ep) } { @if *on { "On" } @else { "Off" } }
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

async fn assign(Path(id): Path<String>, Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let s = secondary(&ctx, id).await?;
    let mut wanted = Vec::new();
    for key in fields.all("map") {
        let (n, m) = key.split_once(':').ok_or_else(|| {
            Error::bad("a mapping is `endpoint:method`; tick the boxes on the form")
        })?;
        let (_, e) = endpoint(&ctx, n)?;
        wanted.push((e.id, method(Some(m))?));
    }
    let ep = ctx.service().endpoint();
    for (e, m) in &wanted {
        if !s
            .mappings
            .iter()
            .any(|x| &x.endpoint == e && x.method == *m)
        {
            ep.map(id, e, *m, &ctx.principal).await?;
        }
    }
    for x in &s.mappings {
        let configured = ctx
            .console
            .settings
            .endpoints
            .iter()
            .any(|c| c.id == x.endpoint);
        if configured
            && !wanted
                .iter()
                .any(|(e, m)| e == &x.endpoint && *m == x.method)
        {
            ep.unmap(id, &x.endpoint, x.method, &ctx.principal).await?;
        }
    }
    Ok(ctx.back(&format!("/endpoint-tokens/{id}?done=saved")))
}

async fn set_mapping(Path(id): Path<String>, Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let (_, e) = endpoint(&ctx, fields.need("endpoint", "endpoint")?)?;
    let m = method(fields.get("method"))?;
    let on = fields.get("enabled") == Some("on");
    ctx.service()
        .endpoint()
        .set_mapping_enabled(id, &e.id, m, on, &ctx.principal)
        .await?;
    Ok(ctx.back(&format!("/endpoint-tokens/{id}/assign")))
}
