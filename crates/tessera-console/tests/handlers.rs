//! Every console route through the router: statuses, CSRF refusals, a principal without rights
//! refused, refusals as HTML pages, and no secret on any page after its shown-once screen.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TEMPLATE, app, csrf, field_value, peppers};
use http_body_util::BodyExt as _;
use tessera::core::id::{EndpointId, Permission};
use tessera::core::kind::endpoint::Method;
use tessera::memory::MemoryStore;
use tessera::{Rejection, TokenService};
use tower::ServiceExt as _;

struct Page {
    status: StatusCode,
    location: Option<String>,
    csp: String,
    cache: String,
    content_type: String,
    body: String,
}

struct Console {
    service: TokenService,
    app: axum::Router,
}

impl Console {
    fn new() -> Self {
        let service = TokenService::new(MemoryStore::new(), peppers());
        Self {
            app: app(service.clone()),
            service,
        }
    }

    async fn send(&self, req: Request<Body>) -> Page {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let h = |n: header::HeaderName| {
            res.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (status, location) = (
            res.status(),
            res.headers()
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        let (csp, cache, content_type) = (
            h(header::CONTENT_SECURITY_POLICY),
            h(header::CACHE_CONTROL),
            h(header::CONTENT_TYPE),
        );
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        Page {
            status,
            location,
            csp,
            cache,
            content_type,
            body,
        }
    }

    async fn get(&self, user: &str, path: &str) -> Page {
        let mut req = Request::get(path);
        if !user.is_empty() {
            req = req.header(header::COOKIE, format!("user={user}"));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// POST a form as `user`, with `csrf` as given.
    async fn post_raw(
        &self,
        user: &str,
        path: &str,
        fields: &[(&str, &str)],
        extra: Option<(&str, &str)>,
    ) -> Page {
        let body: String = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("user={user}"));
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    /// POST a form as `user` with their CSRF token (read from their overview page).
    async fn post(&self, user: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf(user).await;
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(user, path, &all, None).await
    }

    async fn csrf(&self, user: &str) -> String {
        csrf(&self.get(user, "/admin/account/authtokens").await.body)
    }
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn assert_html_refusal(page: &Page, status: StatusCode) {
    assert_eq!(page.status, status, "{}", page.body);
    assert!(
        page.content_type.starts_with("text/html"),
        "refusal is an HTML page: {}",
        page.content_type
    );
    assert!(page.body.contains("<h1>"), "{}", page.body);
    assert!(page.csp.contains("default-src 'none'"));
}

const ADMIN_PAGES: &[&str] = &[
    "/admin/deployment",
    "/admin/deployment/new",
    "/admin/onboarding",
    "/admin/onboarding/new",
    "/admin/onboarding/bulk",
    "/admin/endpoints",
    "/admin/endpoints/0",
    "/admin/endpoints/0/traffic",
    "/admin/endpoint-tokens",
    "/admin/endpoint-tokens?inactive=1",
    "/admin/endpoint-tokens/new",
    "/admin/technician-authtokens",
    "/admin/applications",
    "/admin/applications/new",
];

#[tokio::test]
async fn every_page_answers_with_security_headers() {
    let c = Console::new();
    for path in ADMIN_PAGES.iter().chain(&[
        "/admin",
        "/admin/account/authtokens",
        "/admin/authtokens/new",
        "/admin/authtokens/new?technician=bob",
    ]) {
        let p = c.get("alice", path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        assert!(p.content_type.starts_with("text/html"), "{path}");
        assert!(
            p.csp.contains("script-src 'self'") && !p.csp.contains("unsafe-inline"),
            "{path}: {}",
            p.csp
        );
        assert!(p.csp.contains("frame-ancestors 'none'"));
        assert_eq!(p.cache, "no-store", "{path}");
        assert!(!p.body.contains("<script>"), "{path} has an inline script");
        assert!(
            p.body.contains("/admin/assets/console.css"),
            "{path}: assets under the nest prefix"
        );
    }
    let css = c.get("alice", "/admin/assets/console.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.content_type.starts_with("text/css"));
    let js = c.get("alice", "/admin/assets/console.js").await;
    assert!(js.content_type.starts_with("text/javascript"));
    assert!(js.body.contains("data-copy"));
}

#[tokio::test]
async fn nobody_signed_in_is_sent_to_sign_in_and_the_host_can_refuse() {
    let c = Console::new();
    for path in ADMIN_PAGES
        .iter()
        .chain(&["/admin", "/admin/account/authtokens"])
    {
        let p = c.get("", path).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(p.location.as_deref(), Some("/signin"));
        let p = c.get("mallory", path).await;
        assert_html_refusal(&p, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn a_technician_is_refused_every_administrator_page() {
    let c = Console::new();
    for path in ADMIN_PAGES {
        let p = c.get("bob", path).await;
        assert_html_refusal(&p, StatusCode::FORBIDDEN);
        assert!(p.body.contains("administrators"), "{path}");
    }
    assert_eq!(
        c.get("bob", "/admin/account/authtokens").await.status,
        StatusCode::OK
    );
    assert_eq!(
        c.get("bob", "/admin/authtokens/new").await.status,
        StatusCode::OK
    );
    assert_html_refusal(
        &c.get("bob", "/admin/authtokens/new?technician=carol").await,
        StatusCode::FORBIDDEN,
    );
    // Nor may a technician change anything an administrator owns.
    let csrf_bob = c.csrf("bob").await;
    for (path, fields) in [
        ("/admin/deployment/new", vec![("name", "wave")]),
        (
            "/admin/onboarding/new",
            vec![("policy", "p"), ("group", "g")],
        ),
        ("/admin/onboarding/bulk", vec![("lines", "p, g")]),
        ("/admin/endpoints/0/enable", vec![]),
        ("/admin/endpoint-tokens/new", vec![("name", "crm")]),
        (
            "/admin/applications/new",
            vec![("name", "feed"), ("access", "security-director")],
        ),
    ] {
        let mut all = vec![("csrf", csrf_bob.as_str())];
        all.extend(fields);
        let p = c.post_raw("bob", path, &all, None).await;
        assert_html_refusal(&p, StatusCode::FORBIDDEN);
    }
    assert!(c.service.deployment().list().await.unwrap().is_empty());
    assert!(c.service.application().list().await.unwrap().is_empty());
}

#[tokio::test]
async fn every_form_is_refused_without_the_right_csrf_token() {
    let c = Console::new();
    let bobs = c.csrf("bob").await;
    let posts = [
        "/admin/deployment/new",
        "/admin/deployment/00000000000000000000000000000000/expire",
        "/admin/onboarding/new",
        "/admin/onboarding/bulk",
        "/admin/onboarding/00000000000000000000000000000000/revoke",
        "/admin/onboarding/00000000000000000000000000000000/reveal",
        "/admin/endpoints/0/enable",
        "/admin/endpoints/0/regenerate",
        "/admin/endpoint-tokens/new",
        "/admin/endpoint-tokens/00000000000000000000000000000000/regenerate",
        "/admin/endpoint-tokens/00000000000000000000000000000000/enabled",
        "/admin/endpoint-tokens/00000000000000000000000000000000/state",
        "/admin/endpoint-tokens/00000000000000000000000000000000/assign",
        "/admin/endpoint-tokens/00000000000000000000000000000000/mapping",
        "/admin/authtokens/new",
        "/admin/authtokens/delete",
        "/admin/applications/new",
        "/admin/applications/state",
        "/admin/applications/00000000000000000000000000000000/ips",
    ];
    for path in posts {
        // none
        let p = c.post_raw("alice", path, &[("name", "x")], None).await;
        assert_html_refusal(&p, StatusCode::FORBIDDEN);
        assert!(p.body.contains("reload the page"), "{path}");
        // another user's
        let p = c
            .post_raw("alice", path, &[("csrf", &bobs), ("name", "x")], None)
            .await;
        assert_html_refusal(&p, StatusCode::FORBIDDEN);
        // forged
        let p = c
            .post_raw("alice", path, &[("csrf", "0123"), ("name", "x")], None)
            .await;
        assert_html_refusal(&p, StatusCode::FORBIDDEN);
        // the right token, but sent from another site
        let own = c.csrf("alice").await;
        let p = c
            .post_raw(
                "alice",
                path,
                &[("csrf", &own), ("name", "x")],
                Some(("sec-fetch-site", "cross-site")),
            )
            .await;
        assert_html_refusal(&p, StatusCode::FORBIDDEN);
    }
    // A state change is never a GET.
    assert_eq!(
        c.get("alice", "/admin/applications/state").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert!(c.service.deployment().list().await.unwrap().is_empty());
}

#[tokio::test]
async fn deployment_generate_show_once_expire_after_confirmation() {
    let c = Console::new();
    let p = c
        .post(
            "alice",
            "/admin/deployment/new",
            &[
                ("name", "wave-1"),
                ("expiry_on", "on"),
                ("expires", "2099-12-31"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let token = field_value(&p.body, "token").unwrap();
    let command = field_value(&p.body, "command").unwrap();
    assert_eq!(command, TEMPLATE.replace("{token}", &token));
    assert!(
        c.service
            .deployment()
            .validate(&token)
            .await
            .unwrap()
            .is_ok()
    );

    let list = c.get("alice", "/admin/deployment").await;
    assert!(list.body.contains("wave-1") && list.body.contains("Latest"));
    // The seed's exception: the current installer command, with the most recent token.
    assert_eq!(field_value(&list.body, "command").unwrap(), command);
    let p = c
        .post("alice", "/admin/deployment/new", &[("name", "wave-2")])
        .await;
    let newer = field_value(&p.body, "token").unwrap();
    let list = c.get("alice", "/admin/deployment").await;
    assert_eq!(
        field_value(&list.body, "command").unwrap(),
        TEMPLATE.replace("{token}", &newer)
    );
    assert!(
        !list.body.contains(&token),
        "an older token is not shown again"
    );
    assert!(
        c.service
            .deployment()
            .validate(&token)
            .await
            .unwrap()
            .is_ok(),
        "and keeps working"
    );
    let all = c.service.deployment().list().await.unwrap();
    let newer_id = all
        .iter()
        .find(|r| r.name.as_deref() == Some("wave-2"))
        .unwrap()
        .id;
    let p = c
        .post(
            "alice",
            &format!("/admin/deployment/{newer_id}/expire"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let list = c.get("alice", "/admin/deployment").await;
    assert!(
        !list.body.contains(&newer),
        "an expired token's command is not shown"
    );
    assert_eq!(
        field_value(&list.body, "command").unwrap(),
        command,
        "the command falls back to the token still in force"
    );
    let id = all
        .iter()
        .find(|r| r.name.as_deref() == Some("wave-1"))
        .unwrap()
        .id;
    let ask = c
        .get("alice", &format!("/admin/deployment/{id}/expire"))
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(!ask.body.contains(&token));
    // Without the confirmation step it asks again and changes nothing.
    let p = c
        .post("alice", &format!("/admin/deployment/{id}/expire"), &[])
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("Confirm"));
    assert!(
        c.service
            .deployment()
            .validate(&token)
            .await
            .unwrap()
            .is_ok()
    );
    let p = c
        .post(
            "alice",
            &format!("/admin/deployment/{id}/expire"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        p.location.as_deref(),
        Some("/admin/deployment?done=expired")
    );
    assert!(
        c.service
            .deployment()
            .validate(&token)
            .await
            .unwrap()
            .is_err()
    );
    // Expiring again is a conflict, answered as a page.
    let p = c
        .post(
            "alice",
            &format!("/admin/deployment/{id}/expire"),
            &[("confirm", "yes")],
        )
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    for page in ["/admin/deployment", "/admin"] {
        assert!(!c.get("alice", page).await.body.contains(&token));
    }
}

#[tokio::test]
async fn bad_input_and_unknown_ids_are_html_pages() {
    let c = Console::new();
    let p = c
        .post("alice", "/admin/deployment/new", &[("name", "")])
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("token name is required"));
    let p = c
        .post(
            "alice",
            "/admin/deployment/new",
            &[
                ("name", "w"),
                ("expiry_on", "on"),
                ("expires", "2001-01-01"),
            ],
        )
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    let p = c
        .post(
            "alice",
            "/admin/applications/new",
            &[("name", "has space"), ("access", "security-director")],
        )
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    let p = c
        .post("alice", "/admin/applications/new", &[("name", "feed")])
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("at least one access type"));
    let p = c
        .post(
            "alice",
            "/admin/applications/new",
            &[("name", "feed"), ("access", "root")],
        )
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    let long = "x".repeat(1025);
    let p = c
        .post(
            "alice",
            "/admin/applications/new",
            &[
                ("name", "feed"),
                ("description", &long),
                ("access", "security-director"),
            ],
        )
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    for path in [
        "/admin/deployment/nope/expire",
        "/admin/deployment/00000000000000000000000000000000/expire",
        "/admin/onboarding/00000000000000000000000000000000",
        "/admin/applications/zz",
        "/admin/endpoints/7",
        "/admin/endpoint-tokens/00000000000000000000000000000000",
        "/admin/no-such-page",
    ] {
        assert_html_refusal(&c.get("alice", path).await, StatusCode::NOT_FOUND);
    }
    let p = c
        .post(
            "alice",
            "/admin/applications/new",
            &[("name", "feed"), ("access", "security-director")],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let p = c
        .post(
            "alice",
            "/admin/applications/new",
            &[("name", "feed"), ("access", "security-director")],
        )
        .await;
    assert_html_refusal(&p, StatusCode::CONFLICT);
    assert!(p.body.contains("already exists"));
}

#[tokio::test]
async fn onboarding_qr_text_short_code_bulk_and_revoke() {
    let c = Console::new();
    let p = c
        .post(
            "alice",
            "/admin/onboarding/new",
            &[
                ("policy", "kiosk"),
                ("group", "lobby"),
                ("limit", "n"),
                ("uses", "2"),
                ("expires", "2099-01-01"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("<svg"), "inline SVG QR code");
    let token = field_value(&p.body, "token").unwrap();
    assert!(token.starts_with("tsr_onb_"));
    let device = tessera::core::id::DeviceId::parse("dev-1").unwrap();
    assert!(
        c.service
            .onboarding()
            .redeem(&token, &device)
            .await
            .unwrap()
            .is_ok()
    );

    let short = c
        .post(
            "alice",
            "/admin/onboarding/new",
            &[
                ("policy", "kiosk"),
                ("group", "lobby"),
                ("spelling", "short"),
                ("android", "on"),
            ],
        )
        .await;
    assert_eq!(short.status, StatusCode::OK, "{}", short.body);
    let code = field_value(&short.body, "token").unwrap();
    assert!(short.body.contains("Short code"));
    assert!(!code.starts_with("tsr_"));

    let bulk = c
        .post(
            "alice",
            "/admin/onboarding/bulk",
            &[
                ("lines", "kiosk, lobby\nstaff, sales\n"),
                ("limit", "unlimited"),
            ],
        )
        .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
    assert!(bulk.body.contains("download=\"onboarding-tokens.csv\""));
    assert_eq!(
        bulk.body.matches("tsr_onb_").count(),
        4,
        "each token in the table and in the download"
    );

    let list = c.get("alice", "/admin/onboarding").await;
    let id = c.service.onboarding().list().await.unwrap()[0].token.id;
    let detail = c.get("alice", &format!("/admin/onboarding/{id}")).await;
    assert!(detail.body.contains("dev-1"), "enrolled devices");
    assert!(detail.body.contains("1 of 2"));
    for page in [&list, &detail] {
        assert!(!page.body.contains(&token) && !page.body.contains(&code));
        assert!(
            !page.body.contains("<svg"),
            "the QR code is not shown again"
        );
    }
    let p = c
        .post(
            "alice",
            &format!("/admin/onboarding/{id}/revoke"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let dev2 = tessera::core::id::DeviceId::parse("dev-2").unwrap();
    assert_eq!(
        c.service
            .onboarding()
            .redeem(&token, &dev2)
            .await
            .unwrap()
            .unwrap_err(),
        Rejection::Revoked
    );
    // Re-showable QR codes: only for tokens created with "Keep the QR code", only while in force.
    let p = c
        .post("alice", &format!("/admin/onboarding/{id}/reveal"), &[])
        .await;
    assert!(p.status.is_client_error(), "a revoked token: {}", p.status);
    assert!(!p.body.contains(&token));
    let kept = c
        .post(
            "alice",
            "/admin/onboarding/new",
            &[("policy", "kiosk"), ("group", "depot"), ("keep", "on")],
        )
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    let kept_token = field_value(&kept.body, "token").unwrap();
    let all = c.service.onboarding().list().await.unwrap();
    let kept_id = all
        .iter()
        .find(|o| o.data.group.as_str() == "depot")
        .unwrap()
        .token
        .id;
    let detail = c
        .get("alice", &format!("/admin/onboarding/{kept_id}"))
        .await;
    assert!(detail.body.contains("Show QR code again"));
    assert!(!detail.body.contains(&kept_token));
    let again = c
        .post("alice", &format!("/admin/onboarding/{kept_id}/reveal"), &[])
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert!(again.body.contains("<svg"));
    assert_eq!(field_value(&again.body, "token").unwrap(), kept_token);
    let p = c
        .post("bob", &format!("/admin/onboarding/{kept_id}/reveal"), &[])
        .await;
    assert_html_refusal(&p, StatusCode::FORBIDDEN);
    let unkept = all
        .iter()
        .find(|o| o.data.group.as_str() == "sales")
        .unwrap()
        .token
        .id;
    let p = c
        .post("alice", &format!("/admin/onboarding/{unkept}/reveal"), &[])
        .await;
    assert_html_refusal(&p, StatusCode::CONFLICT);
    assert!(p.body.contains("not kept"));

    let p = c
        .post(
            "alice",
            "/admin/onboarding/new",
            &[
                ("policy", "kiosk"),
                ("group", "lobby"),
                ("limit", "n"),
                ("uses", "0"),
            ],
        )
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn endpoints_primaries_secondaries_mapping_traffic() {
    let c = Console::new();
    let p = c.post("alice", "/admin/endpoints/0/enable", &[]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let get_primary = field_value(&p.body, "primary-GET").unwrap();
    assert!(
        field_value(&p.body, "primary-DELETE").is_some(),
        "orders allows deleting"
    );
    let p = c.post("alice", "/admin/endpoints/1/enable", &[]).await;
    assert!(
        field_value(&p.body, "primary-DELETE").is_none(),
        "reports does not"
    );
    let orders = EndpointId::parse("orders").unwrap();
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &get_primary, None)
            .await
            .unwrap()
            .is_ok()
    );
    let tab = c.get("alice", "/admin/endpoints/0").await;
    assert!(tab.body.contains("DELETE") && !tab.body.contains(&get_primary));

    let p = c
        .post(
            "alice",
            "/admin/endpoint-tokens/new",
            &[
                ("name", "crm"),
                ("description", "the CRM"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let secondary = field_value(&p.body, "token").unwrap();
    assert_eq!(secondary.len(), 64);
    assert!(
        p.body.contains("type=\"password\""),
        "masked until revealed"
    );
    let id = c
        .service
        .endpoint()
        .secondaries(Default::default())
        .await
        .unwrap()[0]
        .token
        .id;
    let p = c
        .post(
            "alice",
            &format!("/admin/endpoint-tokens/{id}/assign"),
            &[("map", "0:GET")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &secondary, None)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Post, &secondary, None)
            .await
            .unwrap()
            .is_err()
    );
    let traffic = c.get("alice", "/admin/endpoints/0/traffic").await;
    assert!(traffic.body.contains("crm"));
    let filtered = c
        .get("alice", &format!("/admin/endpoints/0/traffic?token={id}"))
        .await;
    assert!(filtered.body.contains("crm") && !filtered.body.contains("<td>primary "));
    // Hide unassigned on the endpoint's Token tab.
    c.post("alice", "/admin/endpoint-tokens/new", &[("name", "unused")])
        .await;
    let shown = c.get("alice", "/admin/endpoints/0").await;
    assert!(shown.body.contains("unused"));
    let hidden = c.get("alice", "/admin/endpoints/0?hide_unassigned=1").await;
    assert!(!hidden.body.contains("unused") && hidden.body.contains("crm"));
    let hidden = c
        .get("alice", "/admin/endpoint-tokens?hide_unassigned=1")
        .await;
    assert!(!hidden.body.contains("unused"));

    // The mapping toggle stops that integration alone.
    let p = c
        .post(
            "alice",
            &format!("/admin/endpoint-tokens/{id}/mapping"),
            &[("endpoint", "0"), ("method", "GET"), ("enabled", "off")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &secondary, None)
            .await
            .unwrap()
            .is_err()
    );
    c.post(
        "alice",
        &format!("/admin/endpoint-tokens/{id}/mapping"),
        &[("endpoint", "0"), ("method", "GET"), ("enabled", "on")],
    )
    .await;
    // The Enabled toggle.
    let p = c
        .post(
            "alice",
            &format!("/admin/endpoint-tokens/{id}/enabled"),
            &[("enabled", "off")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &secondary, None)
            .await
            .unwrap()
            .is_err()
    );
    c.post(
        "alice",
        &format!("/admin/endpoint-tokens/{id}/enabled"),
        &[("enabled", "on")],
    )
    .await;
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &secondary, None)
            .await
            .unwrap()
            .is_ok()
    );
    // Regenerate, after confirmation: the old value stops working.
    let ask = c
        .post(
            "alice",
            &format!("/admin/endpoint-tokens/{id}/regenerate"),
            &[],
        )
        .await;
    assert!(ask.body.contains("Regenerate") && ask.status == StatusCode::OK);
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &secondary, None)
            .await
            .unwrap()
            .is_ok()
    );
    let p = c
        .post(
            "alice",
            &format!("/admin/endpoint-tokens/{id}/regenerate"),
            &[("confirm", "yes")],
        )
        .await;
    let fresh = field_value(&p.body, "token").unwrap();
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &secondary, None)
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &fresh, None)
            .await
            .unwrap()
            .is_ok()
    );
    // Deactivate leaves the default (active) list; Activate brings it back.
    c.post(
        "alice",
        &format!("/admin/endpoint-tokens/{id}/state"),
        &[("action", "deactivate")],
    )
    .await;
    assert!(
        !c.get("alice", "/admin/endpoint-tokens")
            .await
            .body
            .contains(">crm<")
    );
    assert!(
        c.get("alice", "/admin/endpoint-tokens?inactive=1")
            .await
            .body
            .contains(">crm<")
    );
    c.post(
        "alice",
        &format!("/admin/endpoint-tokens/{id}/state"),
        &[("action", "activate")],
    )
    .await;
    assert!(
        c.get("alice", "/admin/endpoint-tokens")
            .await
            .body
            .contains(">crm<")
    );
    // Regenerating a primary asks first, then shows the new one once.
    let p = c
        .post(
            "alice",
            "/admin/endpoints/0/regenerate",
            &[("method", "GET"), ("confirm", "yes")],
        )
        .await;
    let new_get = field_value(&p.body, "primary-GET").unwrap();
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &get_primary, None)
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        c.service
            .endpoint()
            .check(&orders, Method::Get, &new_get, None)
            .await
            .unwrap()
            .is_ok()
    );
    for page in [
        "/admin/endpoints/0",
        "/admin/endpoint-tokens",
        &format!("/admin/endpoint-tokens/{id}"),
        &format!("/admin/endpoint-tokens/{id}/assign"),
        "/admin/endpoints/0/traffic",
    ] {
        let body = c.get("alice", page).await.body;
        for s in [&get_primary, &new_get, &secondary, &fresh] {
            assert!(!body.contains(s.as_str()), "{page} shows a secret");
        }
    }
}

#[tokio::test]
async fn auth_tokens_own_for_technicians_generated_by_and_delete_many() {
    let c = Console::new();
    // A technician generates their own, scoped among their delegated actions.
    let p = c
        .post(
            "bob",
            "/admin/authtokens/new",
            &[
                ("owner", "bob"),
                ("name", "script"),
                ("scope", "reset_password"),
                ("amount", "90"),
                ("unit", "m"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let bobs = field_value(&p.body, "token").unwrap();
    let held: BTreeSet<Permission> = [Permission::parse("reset_password").unwrap()].into();
    let action = Permission::parse("reset_password").unwrap();
    assert!(
        c.service
            .auth()
            .check(&bobs, &action, &held)
            .await
            .unwrap()
            .is_ok()
    );
    // ... never for someone else, nor beyond what is delegated to them.
    let p = c
        .post(
            "bob",
            "/admin/authtokens/new",
            &[
                ("owner", "carol"),
                ("name", "x"),
                ("scope", "reset_password"),
                ("amount", "1"),
                ("unit", "d"),
            ],
        )
        .await;
    assert_html_refusal(&p, StatusCode::FORBIDDEN);
    let p = c
        .post(
            "bob",
            "/admin/authtokens/new",
            &[
                ("owner", "bob"),
                ("name", "x"),
                ("scope", "create_user"),
                ("amount", "1"),
                ("unit", "d"),
            ],
        )
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    // The administrator generates for carol, with a date.
    let p = c
        .post(
            "alice",
            "/admin/authtokens/new",
            &[
                ("owner", "carol"),
                ("name", "nightly"),
                ("scope", "unlock_account"),
                ("unit", "date"),
                ("date", "2099-06-30"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let carols = field_value(&p.body, "token").unwrap();
    let list = c.get("alice", "/admin/technician-authtokens").await;
    assert!(list.body.contains("nightly") && list.body.contains("script"));
    assert!(list.body.contains("<td>alice</td>"), "Generated by column");
    let mine = c.get("carol", "/admin/account/authtokens").await;
    assert!(
        mine.body.contains("nightly")
            && mine.body.contains("<td>alice</td>")
            && !mine.body.contains(">script<")
    );
    let only_bob = c
        .get("alice", "/admin/technician-authtokens?technician=bob")
        .await;
    assert!(only_bob.body.contains(">script<") && !only_bob.body.contains("nightly"));
    for page in [&list, &mine, &only_bob] {
        assert!(!page.body.contains(&bobs) && !page.body.contains(&carols));
    }
    // bob may not delete carol's token.
    let ids: Vec<String> = c
        .service
        .auth()
        .list(None, &tessera::Principal::admin("alice").unwrap())
        .await
        .unwrap()
        .iter()
        .map(|l| l.token.id.to_string())
        .collect();
    let p = c
        .post(
            "bob",
            "/admin/authtokens/delete",
            &[("id", &ids[0]), ("id", &ids[1]), ("confirm", "yes")],
        )
        .await;
    assert_html_refusal(&p, StatusCode::FORBIDDEN);
    // The administrator deletes both at once, after confirming.
    let ask = c
        .post(
            "alice",
            "/admin/authtokens/delete",
            &[("id", &ids[0]), ("id", &ids[1]), ("back", "technicians")],
        )
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.body.contains("Delete 2 authtoken(s)?"));
    let p = c
        .post(
            "alice",
            "/admin/authtokens/delete",
            &[
                ("id", &ids[0]),
                ("id", &ids[1]),
                ("back", "technicians"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(
        p.location.as_deref(),
        Some("/admin/technician-authtokens?done=deleted")
    );
    assert!(
        c.service
            .auth()
            .check(&bobs, &action, &held)
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        !c.get("alice", "/admin/technician-authtokens")
            .await
            .body
            .contains("nightly")
    );
}

#[tokio::test]
async fn application_tokens_show_once_ips_block_and_deactivate() {
    let c = Console::new();
    let p = c
        .post(
            "alice",
            "/admin/applications/new",
            &[
                ("name", "siem-feed"),
                ("description", "feeds"),
                ("access", "security-director"),
                ("access", "third-party-feeds"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let token = field_value(&p.body, "token").unwrap();
    assert!(p.body.contains("no longer available"));
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let other: IpAddr = "192.0.2.8".parse().unwrap();
    assert!(
        c.service
            .application()
            .validate(&token, ip)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        c.service
            .application()
            .validate(&token, other)
            .await
            .unwrap()
            .is_ok()
    );
    let id = c.service.application().list().await.unwrap()[0].token.id;
    let detail = c.get("alice", &format!("/admin/applications/{id}")).await;
    assert!(detail.body.contains("192.0.2.7"));
    let ask = c
        .post(
            "alice",
            &format!("/admin/applications/{id}/ips"),
            &[("ip", "192.0.2.7"), ("action", "block")],
        )
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(
        c.service
            .application()
            .validate(&token, ip)
            .await
            .unwrap()
            .is_ok(),
        "not before confirming"
    );
    let p = c
        .post(
            "alice",
            &format!("/admin/applications/{id}/ips"),
            &[("ip", "192.0.2.7"), ("action", "block"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        c.service
            .application()
            .validate(&token, ip)
            .await
            .unwrap()
            .unwrap_err(),
        Rejection::IpBlocked
    );
    assert!(
        c.service
            .application()
            .validate(&token, other)
            .await
            .unwrap()
            .is_ok()
    );
    c.post(
        "alice",
        &format!("/admin/applications/{id}/ips"),
        &[("ip", "192.0.2.7"), ("action", "unblock")],
    )
    .await;
    assert!(
        c.service
            .application()
            .validate(&token, ip)
            .await
            .unwrap()
            .is_ok()
    );
    let idt = id.to_string();
    let p = c
        .post(
            "alice",
            "/admin/applications/state",
            &[("id", &idt), ("action", "deactivate"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        c.service
            .application()
            .validate(&token, ip)
            .await
            .unwrap()
            .unwrap_err(),
        Rejection::Disabled
    );
    c.post(
        "alice",
        "/admin/applications/state",
        &[("id", &idt), ("action", "activate")],
    )
    .await;
    assert!(
        c.service
            .application()
            .validate(&token, ip)
            .await
            .unwrap()
            .is_ok()
    );
    let p = c
        .post(
            "alice",
            "/admin/applications/state",
            &[("action", "activate")],
        )
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    let p = c
        .post(
            "alice",
            &format!("/admin/applications/{id}/ips"),
            &[("ip", "not-an-ip"), ("action", "block")],
        )
        .await;
    assert_html_refusal(&p, StatusCode::BAD_REQUEST);
    for page in ["/admin/applications", &format!("/admin/applications/{id}")] {
        assert!(!c.get("alice", page).await.body.contains(&token));
    }
}
