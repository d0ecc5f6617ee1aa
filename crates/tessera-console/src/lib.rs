#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod application;
mod assets;
mod auth;
mod csrf;
mod deployment;
mod endpoint;
mod error;
mod host;
mod onboarding;
mod page;
mod settings;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tessera::TokenService;

pub use error::{Error, Result};
pub use host::{Host, Refusal};
pub use settings::{EndpointConfig, Settings};

use crate::csrf::CsrfKey;
use crate::page::{Console, Shared};

/// The five consoles as a router to nest where the application likes:
/// `Router::new().nest("/admin/tokens", tessera_console::router(service, settings))`.
///
/// Every page asks [`Host::principal`] first; every state change is a POST carrying a CSRF
/// token; every answer carries a Content-Security-Policy with no inline script.
pub fn router(service: TokenService, settings: Settings) -> Router {
    let csrf = settings
        .csrf_key
        .map_or_else(CsrfKey::generate, CsrfKey::new);
    let console: Shared = Arc::new(Console {
        service,
        settings,
        csrf,
    });
    Router::new()
        .route("/", get(assets::overview))
        .route("/assets/console.css", get(assets::css))
        .route("/assets/console.js", get(assets::js))
        .merge(deployment::routes())
        .merge(onboarding::routes())
        .merge(endpoint::routes())
        .merge(auth::routes())
        .merge(application::routes())
        .fallback(assets::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&console),
            page::frame,
        ))
        .with_state(console)
}
