//! What the console tests share: a host that reads who is signed in from a cookie, the
//! consoles nested under `/admin`, and helpers to read pages.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::collections::BTreeSet;

use axum::http::request::Parts;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{Permission, UserId};
use tessera::{Principal, TokenService};
use tessera_console::{EndpointConfig, Host, Refusal, Settings};

/// Signed in by the `user` cookie: `alice` is the administrator, everyone else a technician;
/// `mallory` may not use the consoles at all. No cookie: off to `/signin`.
#[derive(Debug)]
pub struct CookieHost;

pub fn cookie_user(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("user="))
        .map(str::to_owned)
        .next()
}

#[async_trait::async_trait]
impl Host for CookieHost {
    async fn principal(&self, request: &Parts) -> Result<Principal, Refusal> {
        match cookie_user(request).as_deref() {
            None | Some("") => Err(Refusal::SignIn(String::from("/signin"))),
            Some("mallory") => Err(Refusal::Forbidden),
            Some("alice") => Principal::admin("alice").map_err(|_| Refusal::Unauthenticated),
            Some(u) => Principal::user(u).map_err(|_| Refusal::Unauthenticated),
        }
    }

    async fn delegated(&self, user: &UserId) -> BTreeSet<Permission> {
        let names: &[&str] = match user.as_str() {
            "alice" => &["reset_password", "unlock_account", "create_user"],
            "bob" | "carol" => &["reset_password", "unlock_account"],
            _ => &[],
        };
        names
            .iter()
            .filter_map(|n| Permission::parse(*n).ok())
            .collect()
    }

    async fn technicians(&self) -> Vec<UserId> {
        ["bob", "carol"]
            .into_iter()
            .filter_map(|u| UserId::parse(u).ok())
            .collect()
    }
}

pub const TEMPLATE: &str = "msiexec /i agent.msi TOKEN={token} /qn";

pub fn settings() -> Settings {
    Settings::new(CookieHost)
        .title("Test tokens")
        .installer_template(TEMPLATE)
        .endpoint(EndpointConfig::new("orders", true).unwrap())
        .endpoint(EndpointConfig::new("reports", false).unwrap())
        .android(
            tessera_qr::AndroidProvisioning::new(
                "com.example.dpc/.AdminReceiver",
                "https://example.com/dpc.apk",
                "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg",
            )
            .unwrap(),
        )
}

pub fn peppers() -> Peppers {
    Peppers::new(Pepper::generate(KeyId(1)).unwrap())
}

/// The consoles nested under `/admin`, over `service`.
pub fn app(service: TokenService) -> axum::Router {
    axum::Router::new().nest("/admin", tessera_console::router(service, settings()))
}

/// The value of the input with this id on a page.
pub fn field_value(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[at..tag_end];
    let v = tag.find("value=\"")? + 7;
    let end = tag[v..].find('"')?;
    Some(unescape(&tag[v..v + end]))
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The CSRF token of the first form on a page.
pub fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("page has a form")
        + 19;
    let end = html[at..].find('"').unwrap();
    html[at..at + end].to_owned()
}
