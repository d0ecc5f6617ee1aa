//! `ApplicationLayer`: every outcome, as HTTP.

use std::net::IpAddr;

use axum::routing::get;
use axum::{Extension, Router};
use http::{HeaderMap, HeaderName, Method};
use tessera::TokenService;
use tessera::application::ApplicationAccess;
use tessera::core::id::{AccessType, ApplicationName, Description, TokenId};
use tessera::core::kind::application::AccessTypes;
use tessera::store::UsageSubject;
use tessera_http::{ApplicationLayer, ClientIp, ClientIpSource, TrustedProxy};
use time::Duration;

use crate::common::{CHALLENGE, CLIENT, INVALID_REQUEST, INVALID_TOKEN, World};

async fn feed(
    Extension(access): Extension<ApplicationAccess>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
) -> String {
    let types: Vec<&str> = access.access().iter().map(AccessType::as_str).collect();
    // A handler that logs its request headers must not print the token.
    format!(
        "{} {} {} {ip} {headers:?}",
        access.token,
        access.name(),
        types.join(",")
    )
}

fn app(layer: ApplicationLayer) -> Router {
    Router::new().route("/feed", get(feed)).layer(layer)
}

async fn issue(w: &World, name: &str) -> (TokenId, String) {
    let issued = w
        .service
        .application()
        .create(
            ApplicationName::parse(name).unwrap(),
            Description::parse("test feed").unwrap(),
            AccessTypes::new([
                AccessType::parse("security-director").unwrap(),
                AccessType::parse("third-party-feeds").unwrap(),
            ])
            .unwrap(),
            &w.admin,
        )
        .await
        .unwrap();
    (issued.token.id, w.secret(issued.secret.expose_secret()))
}

#[tokio::test]
async fn accepted_token_reaches_the_handler_and_its_use_is_recorded() {
    let w = World::new();
    let (id, token) = issue(&w, "threat-feed").await;
    let app = app(ApplicationLayer::new(w.service.clone()));

    let answer = w.bearer(&app, Method::GET, "/feed", &token).await;
    let body = answer.assert_ok();
    assert!(
        body.starts_with(&format!(
            "{id} threat-feed security-director,third-party-feeds {CLIENT} "
        )),
        "{body}"
    );
    assert!(body.contains("\"authorization\": Sensitive"), "{body}");

    // Scheme in any case, extra spaces.
    w.send(&app, Method::GET, "/feed", &[&format!("bEaReR   {token}")])
        .await
        .assert_ok();

    let ips = w.service.application().ips(id).await.unwrap();
    assert_eq!(ips.len(), 1);
    assert_eq!(ips[0].subject, UsageSubject::Ip(CLIENT));
    assert_eq!(ips[0].count, 2);
    assert_eq!(ips[0].last_seen, Some(w.now()));
    w.assert_clean();
}

#[tokio::test]
async fn missing_or_foreign_credentials_get_a_bare_challenge() {
    let w = World::new();
    let (_, token) = issue(&w, "feed").await;
    let app = app(ApplicationLayer::new(w.service.clone()));

    w.send(&app, Method::GET, "/feed", &[])
        .await
        .assert_refused(401, CHALLENGE);
    w.assert_logged_reason("no_authorization_header");
    w.send(&app, Method::GET, "/feed", &[&format!("Basic {token}")])
        .await
        .assert_refused(401, CHALLENGE);
    w.send(&app, Method::GET, "/feed", &[&format!("Token {token}")])
        .await
        .assert_refused(401, CHALLENGE);
    w.assert_logged_reason("not_bearer_scheme");
    w.assert_clean();
}

#[tokio::test]
async fn malformed_headers_are_invalid_requests() {
    let w = World::new();
    let (_, token) = issue(&w, "feed").await;
    let app = app(ApplicationLayer::new(w.service.clone()));

    for header in [
        "Bearer",
        "Bearer ",
        &format!("Bearer {token} extra"),
        &format!("Bearer \"{token}\""),
    ] {
        w.send(&app, Method::GET, "/feed", &[header])
            .await
            .assert_refused(400, INVALID_REQUEST);
    }
    let twice = format!("Bearer {token}");
    w.send(&app, Method::GET, "/feed", &[&twice, &twice])
        .await
        .assert_refused(400, INVALID_REQUEST);
    w.assert_logged_reason("bearer_without_token");
    w.assert_logged_reason("bearer_token_syntax");
    w.assert_logged_reason("several_authorization_headers");
    w.assert_clean();
}

#[tokio::test]
async fn every_invalid_token_gets_the_same_answer() {
    let w = World::new();
    let (_, good) = issue(&w, "good").await;
    let (disabled_id, disabled) = issue(&w, "disabled").await;
    let (revoked_id, revoked) = issue(&w, "revoked").await;
    let (blocked_id, blocked) = issue(&w, "blocked").await;
    let (rotated_id, rotated) = issue(&w, "rotated").await;
    let svc = w.service.clone();
    svc.application()
        .deactivate(disabled_id, &w.admin)
        .await
        .unwrap();
    svc.revoke(revoked_id, &w.admin).await.unwrap();
    svc.application()
        .block(blocked_id, CLIENT, &w.admin)
        .await
        .unwrap();
    let successor = svc.rotate(rotated_id, None, &w.admin).await.unwrap();
    w.secret(successor.secret.expose_secret());
    let app = app(ApplicationLayer::new(svc.clone()));

    // A well-formed token nobody issued, one with a broken checksum, and another kind's prefix.
    let mut typo = good.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    let unknown = tessera::Secret::generate(tessera::Kind::Application).unwrap();
    let unknown = w.secret(unknown.expose_secret());
    let other_kind = good.replacen("tsr_app_", "tsr_aut_", 1);

    let cases = [
        (&disabled, "disabled"),
        (&revoked, "revoked"),
        (&blocked, "ip_blocked"),
        (&rotated, "rotated_out"),
        (&typo, "malformed"),
        (&unknown, "not_found"),
        (&other_kind, "malformed"),
    ];
    for (token, reason) in cases {
        w.bearer(&app, Method::GET, "/feed", token)
            .await
            .assert_refused(401, INVALID_TOKEN);
        w.assert_logged_reason(reason);
    }

    // The blocked token still works from another address.
    let other: IpAddr = "198.51.100.7".parse().unwrap();
    let bearer = format!("Bearer {blocked}");
    let answer = w
        .send_from(&app, Method::GET, "/feed", &[&bearer], Some(other), &[])
        .await;
    answer.assert_ok();

    // Dormant after 30 days without use, deleted after 90: refused alike.
    w.advance(Duration::days(31));
    svc.sweep(false).await.unwrap();
    w.bearer(&app, Method::GET, "/feed", &good)
        .await
        .assert_refused(401, INVALID_TOKEN);
    w.assert_logged_reason("dormant");
    w.assert_clean();
}

#[tokio::test]
async fn a_failing_store_is_a_503_without_details() {
    let up = World::new();
    let (_, token) = issue(&up, "feed").await;
    let w = World::down();
    w.secret(&token);
    let app = app(ApplicationLayer::new(w.service.clone()));

    let answer = w.bearer(&app, Method::GET, "/feed", &token).await;
    answer.assert_refused(503, None);
    // The operator sees the detail at WARN; the client does not.
    let warned = w.logs(tessera_http::LOG_TARGET);
    assert!(
        warned
            .iter()
            .any(|l| l.level == tracing::Level::WARN && l.text.contains(common_detail())),
        "{warned:?}"
    );
    // Header problems are still answered without the store.
    w.send(&app, Method::GET, "/feed", &[])
        .await
        .assert_refused(401, CHALLENGE);
    w.assert_clean();
}

fn common_detail() -> &'static str {
    crate::common::STORE_DETAIL
}

#[tokio::test]
async fn no_client_address_is_a_setup_error() {
    let w = World::new();
    let (_, token) = issue(&w, "feed").await;
    let app = app(ApplicationLayer::new(w.service.clone()));
    let bearer = format!("Bearer {token}");
    let answer = w
        .send_from(&app, Method::GET, "/feed", &[&bearer], None, &[])
        .await;
    answer.assert_refused(500, None);
    w.assert_clean();
}

fn behind_proxy(service: TokenService) -> ApplicationLayer {
    ApplicationLayer::new(service).client_ip(ClientIpSource::trusted_proxy_header(
        HeaderName::from_static("x-forwarded-for"),
        [TrustedProxy::parse("10.0.0.0/8").unwrap()],
    ))
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let w = World::new();
    let (id, token) = issue(&w, "feed").await;
    let bearer = format!("Bearer {token}");
    let proxy: IpAddr = "10.0.0.5".parse().unwrap();
    let real: IpAddr = "203.0.113.9".parse().unwrap();
    let forged = [("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.6")];

    // Not configured: the header is ignored, the proxy's address is charged.
    let plain = app(ApplicationLayer::new(w.service.clone()));
    let answer = w
        .send_from(
            &plain,
            Method::GET,
            "/feed",
            &[&bearer],
            Some(proxy),
            &forged,
        )
        .await;
    assert!(answer.assert_ok().contains(&format!(" {proxy} ")));

    // Configured: right-most untrusted hop.
    let proxied = app(behind_proxy(w.service.clone()));
    let answer = w
        .send_from(
            &proxied,
            Method::GET,
            "/feed",
            &[&bearer],
            Some(proxy),
            &forged,
        )
        .await;
    assert!(answer.assert_ok().contains(&format!(" {real} ")));

    // From a peer that is not a trusted proxy, the header is ignored.
    let answer = w
        .send_from(
            &proxied,
            Method::GET,
            "/feed",
            &[&bearer],
            Some(CLIENT),
            &forged,
        )
        .await;
    assert!(answer.assert_ok().contains(&format!(" {CLIENT} ")));

    // Blocking the real client's address refuses it through the proxy.
    w.service
        .application()
        .block(id, real, &w.admin)
        .await
        .unwrap();
    w.send_from(
        &proxied,
        Method::GET,
        "/feed",
        &[&bearer],
        Some(proxy),
        &forged,
    )
    .await
    .assert_refused(401, INVALID_TOKEN);

    let mut seen: Vec<_> = w
        .service
        .application()
        .ips(id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.subject, u.count))
        .collect();
    seen.sort_by_key(|(s, _)| format!("{s:?}"));
    assert_eq!(
        seen,
        vec![
            (UsageSubject::Ip(proxy), 1),
            (UsageSubject::Ip(CLIENT), 1),
            (UsageSubject::Ip(real), 1),
        ]
    );
    w.assert_clean();
}
