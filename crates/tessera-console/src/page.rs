//! The frame every console page shares: who is signed in, where the consoles are mounted, the
//! layout, the security headers, forms with their CSRF token and confirmation pages.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Form, FromRequest, FromRequestParts, OriginalUri, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use tessera::{Principal, TokenService};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::csrf::CsrfKey;
use crate::error::{Error, Failure, Result};
use crate::host::Refusal;
use crate::settings::Settings;

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Console {
    pub(crate) service: TokenService,
    pub(crate) settings: Settings,
    pub(crate) csrf: CsrfKey,
}

/// The router's state.
pub(crate) type Shared = Arc<Console>;

/// Where the consoles are mounted (`/admin/tokens`, or empty at the root).
#[derive(Clone, Debug)]
struct Base(String);

/// The Content-Security-Policy of every answer: no inline script, nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Finds where the consoles are mounted, and on the way out draws failures as pages and adds
/// the security headers to every answer.
pub(crate) async fn frame(State(console): State<Shared>, mut req: Request, next: Next) -> Response {
    let inner = req.uri().path().to_owned();
    let outer = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| inner.clone(), |o| o.0.path().to_owned());
    let base = if inner == "/" && !outer.ends_with('/') {
        outer
    } else {
        outer
            .strip_suffix(inner.as_str())
            .map_or_else(String::new, str::to_owned)
    };
    let base = base.trim_end_matches('/').to_owned();
    req.extensions_mut().insert(Base(base.clone()));
    let mut response = next.run(req).await;
    if let Some(failure) = response.extensions_mut().remove::<Failure>() {
        let (parts, _) = response.into_parts();
        let body = failure_page(&console.settings.title, &base, &failure, parts.status);
        response = Response::from_parts(parts, Body::from(body.into_string()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn failure_page(title: &str, base: &str, failure: &Failure, status: StatusCode) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (failure.title) " – " (title) }
                link rel="stylesheet" href={ (base) "/assets/console.css" };
            }
            body {
                header.top { a.brand href={ (base) "/" } { (title) } }
                main #main {
                    h1 { (failure.title) }
                    p.error role="alert" { (failure.message) }
                    p.muted { "HTTP " (status.as_u16()) }
                    p { a href={ (base) "/" } { "Back to the consoles" } }
                }
            }
        }
    }
}

/// The signed-in user and where the consoles are: every page handler's first argument.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) principal: Principal,
    pub(crate) base: String,
    pub(crate) csrf: String,
    pub(crate) console: Shared,
}

impl Ctx {
    /// Refuse unless the signed-in user is an administrator.
    pub(crate) fn admin(&self) -> Result<()> {
        if self.principal.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "this console is for administrators; ask one to manage these tokens",
            ))
        }
    }

    pub(crate) fn service(&self) -> &TokenService {
        &self.console.service
    }

    /// An address inside the consoles.
    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// 303 to a page of the consoles.
    pub(crate) fn back(&self, path: &str) -> Response {
        Redirect::to(&self.at(path)).into_response()
    }
}

impl FromRequestParts<Shared> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> core::result::Result<Self, Response> {
        let base = parts
            .extensions
            .get::<Base>()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        let refused = |status: StatusCode, title, message: &str| {
            let mut r = status.into_response();
            r.extensions_mut().insert(Failure {
                title,
                message: message.to_owned(),
            });
            r
        };
        match state.settings.host.principal(parts).await {
            Ok(principal) => Ok(Self {
                csrf: state.csrf.token(principal.id()),
                principal,
                base,
                console: Arc::clone(state),
            }),
            Err(Refusal::SignIn(to)) => Err(Redirect::to(&to).into_response()),
            Err(Refusal::Forbidden) => Err(refused(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "your account may not use the token consoles; ask an administrator",
            )),
            Err(_) => Err(refused(
                StatusCode::UNAUTHORIZED,
                "Sign in first",
                "sign in to the application, then open the token consoles again",
            )),
        }
    }
}

/// The fields of a submitted form, in order (check boxes repeat their name).
#[derive(Debug)]
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value of a required field.
    pub(crate) fn need(&self, name: &str, label: &str) -> Result<&str> {
        self.get(name)
            .ok_or_else(|| Error::bad(format!("{label} is required; fill it in")))
    }

    /// Every non-blank value of `name`.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Whether a check box was ticked.
    pub(crate) fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether this is the confirmed second step of a destructive action.
    pub(crate) fn confirmed(&self) -> bool {
        self.get("confirm") == Some("yes")
    }
}

/// A state-changing request: a POST from the signed-in user carrying their CSRF token, sent
/// from this site.
#[derive(Debug)]
pub(crate) struct Posted {
    pub(crate) ctx: Ctx,
    pub(crate) fields: Fields,
}

impl FromRequest<Shared> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Shared) -> core::result::Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let ctx = Ctx::from_request_parts(&mut parts, state).await?;
        if parts.method != Method::POST {
            return Err(Error::bad("this action is sent with POST from its form").into_response());
        }
        let cross_site = parts
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
        if cross_site {
            return Err(Error::Csrf.into_response());
        }
        let req = Request::from_parts(parts, body);
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|_| {
                Error::bad("the form could not be read; send it from the console page")
                    .into_response()
            })?;
        let fields = Fields(fields);
        let presented = fields.get("csrf").unwrap_or_default();
        if !state.csrf.check(ctx.principal.id(), presented) {
            return Err(Error::Csrf.into_response());
        }
        Ok(Self { ctx, fields })
    }
}

/// The consoles, as the navigation lists them.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Section {
    Home,
    Deployment,
    Onboarding,
    Endpoints,
    EndpointTokens,
    MyAuth,
    TechnicianAuth,
    Applications,
}

impl Section {
    const fn link(self) -> (&'static str, &'static str, bool) {
        match self {
            Self::Home => ("/", "Overview", false),
            Self::Deployment => ("/deployment", "Mass deployment", true),
            Self::Onboarding => ("/onboarding", "Onboarding", true),
            Self::Endpoints => ("/endpoints", "Endpoints", true),
            Self::EndpointTokens => ("/endpoint-tokens", "Endpoint tokens", true),
            Self::MyAuth => (
                "/account/authtokens",
                "My Account › Active Authtokens",
                false,
            ),
            Self::TechnicianAuth => ("/technician-authtokens", "Technician Authtokens", true),
            Self::Applications => ("/applications", "Application tokens", true),
        }
    }

    const ALL: [Self; 8] = [
        Self::Home,
        Self::Deployment,
        Self::Onboarding,
        Self::Endpoints,
        Self::EndpointTokens,
        Self::MyAuth,
        Self::TechnicianAuth,
        Self::Applications,
    ];
}

/// A full page of the consoles.
pub(crate) fn page(ctx: &Ctx, section: Section, title: &str, body: Markup) -> Response {
    let app = &ctx.console.settings.title;
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (app) }
                link rel="stylesheet" href=(ctx.at("/assets/console.css"));
                script src=(ctx.at("/assets/console.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href=(ctx.at("/")) { (app) }
                    span.who {
                        "Signed in as " strong { (ctx.principal.id()) }
                        @if ctx.principal.is_admin() { " (administrator)" }
                    }
                }
                nav aria-label="Consoles" {
                    ul {
                        @for s in Section::ALL {
                            @let (path, label, admin) = s.link();
                            @if !admin || ctx.principal.is_admin() {
                                li {
                                    a href=(ctx.at(path)) aria-current=[(s == section).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// The hidden CSRF field every state-changing form carries.
pub(crate) fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// The confirmation step of a destructive action: the same form again, with `confirm=yes`.
pub(crate) fn confirm(
    ctx: &Ctx,
    section: Section,
    title: &str,
    question: Markup,
    action: &str,
    hidden: &[(&str, String)],
    button: &str,
    cancel: &str,
) -> Response {
    page(
        ctx,
        section,
        title,
        html! {
            div.dialog role="alertdialog" aria-labelledby="confirm-q" {
                div #confirm-q { (question) }
                form method="post" action=(ctx.at(action)) {
                    (csrf_field(ctx))
                    @for (name, value) in hidden {
                        input type="hidden" name=(name) value=(value);
                    }
                    input type="hidden" name="confirm" value="yes";
                    div.actions {
                        button.danger type="submit" { (button) }
                        a.button href=(ctx.at(cancel)) { "Cancel" }
                    }
                }
            }
        },
    )
}

/// A secret on its shown-once screen: read-only, labelled, with a copy button.
pub(crate) fn secret_field(id: &str, label: &str, value: &str, masked: bool) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            div.secret {
                input #(id) type=(if masked { "password" } else { "text" }) readonly value=(value)
                    autocomplete="off" spellcheck="false";
                @if masked {
                    button type="button" data-reveal=(id) aria-pressed="false" { "Reveal" }
                }
                button type="button" data-copy=(id) { "Copy" }
            }
        }
    }
}

/// The warning every shown-once screen carries.
pub(crate) fn once_warning() -> Markup {
    html! {
        p.warning role="alert" {
            strong { "Copy it now. " }
            "Once you leave this screen the token is no longer available for copying: only its \
             first characters are kept for reference."
        }
    }
}

/// A date and time as the consoles show it, or a dash.
pub(crate) fn when(at: Option<OffsetDateTime>) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    at.and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok())
        .unwrap_or_else(|| String::from("—"))
}

/// A notice after a redirect (`?done=...`), from a fixed list so nothing is echoed.
pub(crate) fn notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("expired") => "The token was expired; commands carrying it stop working.",
        Some("revoked") => "The token was revoked; no further device can enroll with it.",
        Some("deleted") => "The selected authtokens were deleted.",
        Some("deactivated") => "The selected tokens were deactivated.",
        Some("activated") => "The selected tokens were activated.",
        Some("blocked") => "The selected addresses were blocked for this token.",
        Some("unblocked") => "The selected addresses were unblocked for this token.",
        Some("saved") => "Saved.",
        Some("enabled") => "Token authentication is on for this endpoint.",
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// A token id from a path or form, or a 404 page.
pub(crate) fn token_id(text: &str) -> Result<tessera::core::id::TokenId> {
    tessera::core::id::TokenId::parse(text).map_err(|_| {
        Error::NotFound(String::from(
            "no token has this id; go back to the list and pick one there",
        ))
    })
}

/// The state of a token as a badge.
pub(crate) fn state_badge(state: tessera::core::lifecycle::State) -> Markup {
    html! { span class={ "state state-" (state.as_str()) } { (state) } }
}

/// A date field (`YYYY-MM-DD`) as the end of that day in UTC: the first instant after it.
pub(crate) fn end_of_day(text: &str, label: &str) -> Result<OffsetDateTime> {
    let format = format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format)
        .map_err(|_| Error::bad(format!("{label} must be a date as YYYY-MM-DD")))?;
    date.next_day()
        .map(|d| d.midnight().assume_utc())
        .ok_or_else(|| Error::bad(format!("{label} is too far in the future")))
}

/// The `?done=` of a page shown after a redirect.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Done {
    pub(crate) done: Option<String>,
}
