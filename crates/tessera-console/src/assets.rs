//! The overview page, the stylesheet and the one small script (copy to clipboard, reveal).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::error::Error;
use crate::page::{Ctx, Section, page};

/// The consoles' stylesheet.
pub(crate) async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/console.css"),
    )
        .into_response()
}

/// The consoles' one script: copy buttons and the reveal toggle. Served as a file, so the
/// Content-Security-Policy allows no inline script.
pub(crate) async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/console.js"),
    )
        .into_response()
}

/// Any other address.
pub(crate) async fn not_found(_ctx: Ctx) -> Error {
    Error::NotFound(String::from(
        "there is no such console page; use the navigation to find it",
    ))
}

/// The overview: one card per console the user may use.
pub(crate) async fn overview(ctx: Ctx) -> Response {
    let admin = ctx.principal.is_admin();
    let cards: &[(&str, &str, &str, bool)] = &[
        (
            "/deployment",
            "Mass deployment",
            "Tokens for installer commands; the current installer command.",
            true,
        ),
        (
            "/onboarding",
            "Onboarding",
            "Device enrollment tokens as QR codes, with usage limits.",
            true,
        ),
        (
            "/endpoints",
            "Endpoints",
            "Primary tokens per endpoint and method; traffic per token.",
            true,
        ),
        (
            "/endpoint-tokens",
            "Endpoint tokens",
            "Secondary tokens, one per integrating application.",
            true,
        ),
        (
            "/account/authtokens",
            "My Account › Active Authtokens",
            "Your REST API authtokens.",
            false,
        ),
        (
            "/technician-authtokens",
            "Technician Authtokens",
            "Every technician's authtokens, with who generated them.",
            true,
        ),
        (
            "/applications",
            "Application tokens",
            "Bearer tokens for integrations; addresses and blocking.",
            true,
        ),
    ];
    page(
        &ctx,
        Section::Home,
        "Token consoles",
        html! {
            ul.cards {
                @for (path, title, text, for_admin) in cards {
                    @if admin || !for_admin {
                        li { a href=(ctx.at(path)) { strong { (title) } } p { (text) } }
                    }
                }
            }
        },
    )
}
