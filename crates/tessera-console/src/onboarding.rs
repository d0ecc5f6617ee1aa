//! Onboarding: create with policy, device group, usage limit and expiry; the token as an inline
//! SVG QR code, as text or as a short code; Android Enterprise provisioning when configured;
//! bulk generation with a download of the list; revoke; uses and enrolled devices per token.

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, PreEscaped, html};
use tessera::Issued;
use tessera::core::format::Spelling;
use tessera::core::kind::onboarding::UsageLimit;
use tessera::onboarding::NewOnboarding;
use tessera_qr::{Options, Payload};

use crate::error::{Error, Result};
use crate::page::{
    Ctx, Done, Fields, Posted, Section, Shared, confirm, csrf_field, end_of_day, notice,
    once_warning, page, secret_field, state_badge, token_id, when,
};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/onboarding", get(list))
        .route("/onboarding/new", get(new_form).post(create))
        .route("/onboarding/bulk", get(bulk_form).post(bulk))
        .route("/onboarding/{id}", get(detail))
        .route("/onboarding/{id}/revoke", get(revoke_ask).post(revoke))
        .route("/onboarding/{id}/reveal", axum::routing::post(reveal))
}

fn limit_text(max: Option<u64>) -> String {
    max.map_or_else(|| String::from("unlimited"), |n| n.to_string())
}

async fn list(ctx: Ctx, Query(q): Query<Done>) -> Result<Response> {
    ctx.admin()?;
    let tokens = ctx.service().onboarding().list().await?;
    Ok(page(
        &ctx,
        Section::Onboarding,
        "Onboarding tokens",
        html! {
            (notice(q.done.as_deref()))
            div.toolbar {
                a.button.primary href=(ctx.at("/onboarding/new")) { "+ Create token" }
                a.button href=(ctx.at("/onboarding/bulk")) { "Bulk generate" }
            }
            @if tokens.is_empty() {
                p.muted { "No onboarding token yet." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Token" } th scope="col" { "Policy" }
                        th scope="col" { "Device group" } th scope="col" { "Uses" }
                        th scope="col" { "Devices" } th scope="col" { "Expires" }
                        th scope="col" { "State" }
                    } }
                    tbody {
                        @for t in tokens.iter().rev() {
                            tr {
                                td { a href=(ctx.at(&format!("/onboarding/{}", t.token.id))) { code { (t.token.hint) } } }
                                td { (t.data.policy) }
                                td { (t.data.group) }
                                td { (t.token.uses) " of " (limit_text(t.token.remaining.map(|r| r + t.token.uses))) }
                                td { (t.devices.len()) }
                                td { (when(t.token.expires_at)) }
                                td { (state_badge(t.token.state)) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// The fields every onboarding form shares: usage limit and expiry.
fn limit_fields() -> Markup {
    html! {
        fieldset {
            legend { "Usage limit" }
            div.check {
                input #limit-single name="limit" type="radio" value="single" checked;
                label for="limit-single" { "Single use" }
            }
            div.check {
                input #limit-n name="limit" type="radio" value="n";
                label for="limit-n" { "Limited to" }
                label.sr-only for="uses" { "Number of uses" }
                input #uses name="uses" type="number" min="1" value="10";
                span { "devices" }
            }
            div.check {
                input #limit-unlimited name="limit" type="radio" value="unlimited";
                label for="limit-unlimited" { "Unlimited" }
            }
        }
        div.field {
            label for="expires" { "Expiry date (optional)" }
            input #expires name="expires" type="date" aria-describedby="expires-help";
            p #expires-help .help { "The token is refused after the end of this day (UTC)." }
        }
    }
}

fn limit_and_expiry(fields: &Fields) -> Result<(UsageLimit, Option<time::OffsetDateTime>)> {
    let limit = match fields.get("limit").unwrap_or("single") {
        "single" => UsageLimit::SINGLE,
        "unlimited" => UsageLimit::Unlimited,
        "n" => {
            let n: u64 = fields
                .need("uses", "number of uses")?
                .parse()
                .map_err(|_| Error::bad("number of uses must be a whole number from 1"))?;
            UsageLimit::uses(n).map_err(|e| Error::bad(e.to_string()))?
        }
        _ => {
            return Err(Error::bad(
                "choose single use, a number of uses or unlimited",
            ));
        }
    };
    let expires = fields
        .get("expires")
        .map(|d| end_of_day(d, "expiry date"))
        .transpose()?;
    Ok((limit, expires))
}

fn spec(
    policy: &str,
    group: &str,
    limit: UsageLimit,
    expires: Option<time::OffsetDateTime>,
) -> Result<NewOnboarding> {
    let mut spec = NewOnboarding::new(policy, group)?.limit(limit);
    if let Some(at) = expires {
        spec = spec.expires_at(at);
    }
    Ok(spec)
}

async fn new_form(ctx: Ctx) -> Result<Response> {
    ctx.admin()?;
    let android = ctx.console.settings.android.is_some();
    Ok(page(
        &ctx,
        Section::Onboarding,
        "Create onboarding token",
        html! {
            form.dialog method="post" action=(ctx.at("/onboarding/new")) {
                (csrf_field(&ctx))
                div.field {
                    label for="policy" { "Enrollment policy" }
                    input #policy name="policy" type="text" required;
                }
                div.field {
                    label for="group" { "Device group" }
                    input #group name="group" type="text" required;
                }
                (limit_fields())
                fieldset {
                    legend { "Show the token as" }
                    div.check {
                        input #sp-token name="spelling" type="radio" value="token" checked;
                        label for="sp-token" { "QR code and text" }
                    }
                    div.check {
                        input #sp-short name="spelling" type="radio" value="short";
                        label for="sp-short" { "QR code and a short code to type on the device" }
                    }
                }
                div.check {
                    input #keep name="keep" type="checkbox" value="on";
                    label for="keep" { "Keep the QR code so it can be shown again (sealed at rest under the server's key)" }
                }
                @if android {
                    div.check {
                        input #android name="android" type="checkbox" value="on";
                        label for="android" { "Android Enterprise provisioning QR code" }
                    }
                }
                div.actions {
                    button.primary type="submit" { "Create token" }
                    a.button href=(ctx.at("/onboarding")) { "Cancel" }
                }
            }
        },
    ))
}

/// The QR code of a token, inline SVG.
fn qr(ctx: &Ctx, issued: &Issued, android: bool) -> Result<Markup> {
    let payload = match (&ctx.console.settings.android, android) {
        (Some(p), true) => Payload::android(&issued.secret, p),
        _ => Payload::text(&issued.secret),
    };
    let svg = tessera_qr::render_svg(&payload, &Options::default().with_module_size(6))?;
    Ok(html! {
        figure.qr #qr role="img" aria-label="QR code of the onboarding token" {
            (PreEscaped(svg))
        }
    })
}

async fn create(Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let (limit, expires) = limit_and_expiry(&fields)?;
    let mut spec = spec(
        fields.need("policy", "enrollment policy")?,
        fields.need("group", "device group")?,
        limit,
        expires,
    )?;
    let short = fields.get("spelling") == Some("short");
    if short {
        spec = spec.short_code();
    }
    spec = spec.keep_sealed(fields.checked("keep"));
    let android = fields.checked("android");
    if android && ctx.console.settings.android.is_none() {
        return Err(Error::bad(
            "Android Enterprise provisioning is not configured here",
        ));
    }
    let issued = ctx
        .service()
        .onboarding()
        .create(spec, &ctx.principal)
        .await?;
    let code = qr(&ctx, &issued, android)?;
    Ok(page(
        &ctx,
        Section::Onboarding,
        "Onboarding token created",
        html! {
            p { "Devices that scan this code enroll with policy " strong { (fields.get("policy").unwrap_or_default()) }
                " into group " strong { (fields.get("group").unwrap_or_default()) } "; "
                (limit_text(limit.max())) " use(s), expires " (when(expires)) "." }
            (once_warning())
            (code)
            @if issued.token.spelling == Spelling::ShortCode {
                (secret_field("token", "Short code", issued.secret.expose_secret(), false))
            } @else {
                (secret_field("token", "Token as text", issued.secret.expose_secret(), false))
            }
            p { a.button href=(ctx.at(&format!("/onboarding/{}", issued.token.id))) { "Done" } }
        },
    ))
}

async fn bulk_form(ctx: Ctx) -> Result<Response> {
    ctx.admin()?;
    Ok(page(
        &ctx,
        Section::Onboarding,
        "Bulk generate onboarding tokens",
        html! {
            form.dialog method="post" action=(ctx.at("/onboarding/bulk")) {
                (csrf_field(&ctx))
                div.field {
                    label for="lines" { "One token per line: policy, device group" }
                    textarea #lines name="lines" required rows="6" aria-describedby="lines-help" {}
                    p #lines-help .help { "For example " code { "kiosk, lobby" } " on one line and "
                        code { "staff, sales" } " on the next: one token for each department or location." }
                }
                (limit_fields())
                div.actions {
                    button.primary type="submit" { "Generate tokens" }
                    a.button href=(ctx.at("/onboarding")) { "Cancel" }
                }
            }
        },
    ))
}

/// `text` percent-encoded for a `data:` address.
fn data_url(text: &str) -> String {
    let mut out = String::from("data:text/csv;charset=utf-8,");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn bulk(Posted { ctx, fields }: Posted) -> Result<Response> {
    ctx.admin()?;
    let (limit, expires) = limit_and_expiry(&fields)?;
    let mut specs = Vec::new();
    let mut rows = Vec::new();
    for (n, line) in fields
        .need("lines", "the list of tokens")?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let (policy, group) = line
            .split_once(',')
            .ok_or_else(|| Error::bad(format!("line {} must be `policy, device group`", n + 1)))?;
        specs.push(spec(policy.trim(), group.trim(), limit, expires)?);
        rows.push((policy.trim().to_owned(), group.trim().to_owned()));
    }
    if specs.len() > 1000 {
        return Err(Error::bad("generate at most 1000 tokens at once"));
    }
    let issued = ctx
        .service()
        .onboarding()
        .bulk(specs, &ctx.principal)
        .await?;
    let mut csv = String::from("policy,device_group,token,expires\n");
    for ((policy, group), i) in rows.iter().zip(&issued) {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        csv.push_str(&format!(
            "{},{},{},{}\n",
            quote(policy),
            quote(group),
            i.secret.expose_secret(),
            when(i.token.expires_at)
        ));
    }
    Ok(page(
        &ctx,
        Section::Onboarding,
        "Onboarding tokens generated",
        html! {
            p { (issued.len()) " tokens were generated, " (limit_text(limit.max())) " use(s) each." }
            (once_warning())
            p { a.button.primary href=(data_url(&csv)) download="onboarding-tokens.csv" { "Download the list (CSV)" } }
            table {
                thead { tr { th scope="col" { "Policy" } th scope="col" { "Device group" } th scope="col" { "Token" } } }
                tbody {
                    @for ((policy, group), i) in rows.iter().zip(&issued) {
                        tr { td { (policy) } td { (group) } td { code.token { (i.secret.expose_secret()) } } }
                    }
                }
            }
            p { a.button href=(ctx.at("/onboarding")) { "Done" } }
        },
    ))
}

async fn detail(ctx: Ctx, Path(id): Path<String>, Query(q): Query<Done>) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let t = ctx
        .service()
        .onboarding()
        .list()
        .await?
        .into_iter()
        .find(|l| l.token.id == id)
        .ok_or_else(|| {
            Error::NotFound(String::from(
                "no onboarding token has this id; pick one from the list",
            ))
        })?;
    Ok(page(
        &ctx,
        Section::Onboarding,
        "Onboarding token",
        html! {
            (notice(q.done.as_deref()))
            dl {
                dt { "Token" } dd { code { (t.token.hint) } }
                dt { "State" } dd { (state_badge(t.token.state)) }
                dt { "Enrollment policy" } dd { (t.data.policy) }
                dt { "Device group" } dd { (t.data.group) }
                dt { "Uses" } dd { (t.token.uses) " of " (limit_text(t.token.remaining.map(|r| r + t.token.uses))) }
                dt { "Created" } dd { (when(Some(t.token.created_at))) }
                dt { "Expires" } dd { (when(t.token.expires_at)) }
            }
            @if !t.token.state.is_terminal() {
                div.actions {
                    form method="post" action=(ctx.at(&format!("/onboarding/{id}/reveal"))) {
                        (csrf_field(&ctx))
                        button type="submit" { "Show QR code again" }
                    }
                    a.button.danger href=(ctx.at(&format!("/onboarding/{id}/revoke"))) { "Revoke" }
                }
                p.help { "The QR code can be shown again only for tokens created with “Keep the QR \
                          code”; others were shown once." }
            }
            h2 { "Enrolled devices" }
            @if t.devices.is_empty() {
                p.muted { "No device has enrolled with this token." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Device" } th scope="col" { "Enrolled" } } }
                    tbody { @for d in &t.devices { tr { td { (d.device) } td { (when(Some(d.at))) } } } }
                }
            }
            p { a href=(ctx.at("/onboarding")) { "Back to onboarding tokens" } }
        },
    ))
}

async fn revoke_ask(ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let token = ctx.service().token(id).await?;
    if token.kind != tessera::Kind::Onboarding {
        return Err(Error::NotFound(String::from(
            "no onboarding token has this id; pick one from the list",
        )));
    }
    Ok(confirm(
        &ctx,
        Section::Onboarding,
        "Revoke onboarding token",
        html! {
            p { "Revoke the token " code { (token.hint) } "? No further device can enroll \
                 with it; enrolled devices stay enrolled. This cannot be undone." }
        },
        &format!("/onboarding/{id}/revoke"),
        &[],
        "Revoke",
        &format!("/onboarding/{id}"),
    ))
}

async fn revoke(Path(id): Path<String>, posted: Posted) -> Result<Response> {
    posted.ctx.admin()?;
    let token = token_id(&id)?;
    if !posted.fields.confirmed() {
        return revoke_ask(posted.ctx, Path(id)).await;
    }
    let ctx = posted.ctx;
    ctx.service()
        .onboarding()
        .revoke(token, &ctx.principal)
        .await?;
    Ok(ctx.back(&format!("/onboarding/{token}?done=revoked")))
}

async fn reveal(Path(id): Path<String>, Posted { ctx, .. }: Posted) -> Result<Response> {
    ctx.admin()?;
    let id = token_id(&id)?;
    let token = ctx.service().token(id).await?;
    if token.kind != tessera::Kind::Onboarding {
        return Err(Error::NotFound(String::from(
            "no onboarding token has this id; pick one from the list",
        )));
    }
    if token.state.is_terminal() {
        return Err(Error::bad(
            "this token can no longer enroll devices; its QR code is not shown",
        ));
    }
    let secret = ctx.service().onboarding().reveal(id).await?;
    let issued = Issued { secret, token };
    let code = qr(&ctx, &issued, false)?;
    Ok(page(
        &ctx,
        Section::Onboarding,
        "Onboarding QR code",
        html! {
            p { "The QR code of " code { (issued.token.hint) } ", shown again at your request. \
                 Treat it as the token itself." }
            (code)
            (secret_field("token", if issued.token.spelling == Spelling::ShortCode { "Short code" } else { "Token as text" }, issued.secret.expose_secret(), false))
            p { a.button href=(ctx.at(&format!("/onboarding/{id}"))) { "Done" } }
        },
    ))
}
