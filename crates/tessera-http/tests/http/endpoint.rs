//! `EndpointLayer`: primaries, mapped secondaries, methods and routes, as HTTP.

use axum::routing::{get, put};
use axum::{Extension, Router};
use http::Method;
use tessera::core::id::{Description, EndpointId, TokenId, TokenName};
use tessera::core::kind::endpoint::Method as TokenMethod;
use tessera::endpoint::{Carrier, EndpointAccess};
use tessera::store::UsageSubject;
use tessera_http::EndpointLayer;

use crate::common::{CHALLENGE, INVALID_REQUEST, INVALID_TOKEN, World};

async fn which(Extension(access): Extension<EndpointAccess>) -> String {
    match access.carrier {
        Carrier::Primary => format!("primary {}", access.token),
        Carrier::Secondary { name } => format!("secondary {name} {}", access.token),
    }
}

fn orders() -> EndpointId {
    EndpointId::parse("/api/v1/orders").unwrap()
}

fn app(w: &World) -> Router {
    Router::new()
        .route(
            "/api/v1/orders",
            get(which).post(which).delete(which).put(which),
        )
        .layer(EndpointLayer::new(w.service.clone(), orders()))
}

struct Setup {
    get: String,
    post: String,
    delete: String,
    erp: (TokenId, String),
    shop: (TokenId, String),
}

async fn setup(w: &World, allow_delete: bool) -> Setup {
    let svc = w.service.endpoint();
    let primaries = svc.enable(&orders(), allow_delete, &w.admin).await.unwrap();
    let primary = |m: TokenMethod| {
        primaries
            .iter()
            .find(|(method, _)| *method == m)
            .map_or_else(String::new, |(_, issued)| {
                w.secret(issued.secret.expose_secret())
            })
    };
    let (get, post, delete) = (
        primary(TokenMethod::Get),
        primary(TokenMethod::Post),
        primary(TokenMethod::Delete),
    );
    let secondary = async |name: &str| {
        let issued = svc
            .create_secondary(
                TokenName::parse(name).unwrap(),
                Description::default(),
                &w.admin,
            )
            .await
            .unwrap();
        (issued.token.id, w.secret(issued.secret.expose_secret()))
    };
    let erp = secondary("erp-connector").await;
    let shop = secondary("webshop").await;
    svc.map(erp.0, &orders(), TokenMethod::Get, &w.admin)
        .await
        .unwrap();
    svc.map(erp.0, &orders(), TokenMethod::Post, &w.admin)
        .await
        .unwrap();
    svc.map(shop.0, &orders(), TokenMethod::Get, &w.admin)
        .await
        .unwrap();
    Setup {
        get,
        post,
        delete,
        erp,
        shop,
    }
}

#[tokio::test]
async fn primaries_and_mapped_secondaries_are_accepted_and_attributed() {
    let w = World::new();
    let s = setup(&w, true).await;
    let app = app(&w);

    let body = w
        .bearer(&app, Method::GET, "/api/v1/orders", &s.get)
        .await
        .assert_ok()
        .to_owned();
    assert!(body.starts_with("primary "), "{body}");
    w.bearer(&app, Method::POST, "/api/v1/orders", &s.post)
        .await
        .assert_ok();
    w.bearer(&app, Method::DELETE, "/api/v1/orders", &s.delete)
        .await
        .assert_ok();
    // HEAD is a GET.
    assert_eq!(
        w.bearer(&app, Method::HEAD, "/api/v1/orders", &s.get)
            .await
            .status,
        200
    );

    let body = w
        .bearer(&app, Method::GET, "/api/v1/orders", &s.erp.1)
        .await
        .assert_ok()
        .to_owned();
    assert_eq!(body, format!("secondary erp-connector {}", s.erp.0));
    w.bearer(&app, Method::POST, "/api/v1/orders", &s.erp.1)
        .await
        .assert_ok();
    let body = w
        .bearer(&app, Method::GET, "/api/v1/orders", &s.shop.1)
        .await
        .assert_ok()
        .to_owned();
    assert_eq!(body, format!("secondary webshop {}", s.shop.0));

    // Traffic per integration, as the store counted it.
    let traffic = w.service.endpoint().traffic(&orders()).await.unwrap();
    let count = |id: TokenId, m: TokenMethod| {
        traffic
            .iter()
            .filter(|u| u.token == id && u.subject == UsageSubject::Endpoint(orders(), m))
            .map(|u| u.count)
            .sum::<u64>()
    };
    assert_eq!(count(s.erp.0, TokenMethod::Get), 1);
    assert_eq!(count(s.erp.0, TokenMethod::Post), 1);
    assert_eq!(count(s.shop.0, TokenMethod::Get), 1);
    w.assert_clean();
}

#[tokio::test]
async fn wrong_method_endpoint_mapping_or_state_is_an_invalid_token() {
    let w = World::new();
    let s = setup(&w, false).await;
    let app = app(&w);
    let svc = w.service.endpoint();

    let cases = [
        // The GET primary on POST, and the POST primary on GET.
        (Method::POST, &s.get, "wrong_method"),
        (Method::GET, &s.post, "wrong_method"),
        // The shop is mapped for GET only.
        (Method::POST, &s.shop.1, "wrong_endpoint"),
        // No DELETE primary, no PUT tokens at all.
        (Method::DELETE, &s.get, "wrong_method"),
        (Method::PUT, &s.get, "method_without_tokens"),
    ];
    for (method, token, reason) in cases {
        w.bearer(&app, method, "/api/v1/orders", token)
            .await
            .assert_refused(401, INVALID_TOKEN);
        w.assert_logged_reason(reason);
    }

    // Turning the shop's mapping off cuts the shop alone.
    svc.set_mapping_enabled(s.shop.0, &orders(), TokenMethod::Get, false, &w.admin)
        .await
        .unwrap();
    w.bearer(&app, Method::GET, "/api/v1/orders", &s.shop.1)
        .await
        .assert_refused(401, INVALID_TOKEN);
    w.assert_logged_reason("mapping_disabled");
    w.bearer(&app, Method::GET, "/api/v1/orders", &s.erp.1)
        .await
        .assert_ok();

    // A deactivated secondary, and a regenerated one's old value.
    svc.deactivate(s.erp.0, &w.admin).await.unwrap();
    w.bearer(&app, Method::GET, "/api/v1/orders", &s.erp.1)
        .await
        .assert_refused(401, INVALID_TOKEN);
    w.assert_logged_reason("disabled");
    svc.activate(s.erp.0, &w.admin).await.unwrap();
    let new = svc.regenerate_secondary(s.erp.0, &w.admin).await.unwrap();
    let new = w.secret(new.expose_secret());
    w.bearer(&app, Method::GET, "/api/v1/orders", &s.erp.1)
        .await
        .assert_refused(401, INVALID_TOKEN);
    w.bearer(&app, Method::GET, "/api/v1/orders", &new)
        .await
        .assert_ok();

    // The endpoint's tokens do not open another endpoint.
    let other = Router::new()
        .route("/api/v1/invoices", get(which))
        .layer(EndpointLayer::new(
            w.service.clone(),
            EndpointId::parse("/api/v1/invoices").unwrap(),
        ));
    w.bearer(&other, Method::GET, "/api/v1/invoices", &s.get)
        .await
        .assert_refused(401, INVALID_TOKEN);
    w.assert_logged_reason("wrong_endpoint");

    // Header problems answer as everywhere.
    w.send(&app, Method::GET, "/api/v1/orders", &[])
        .await
        .assert_refused(401, CHALLENGE);
    w.send(&app, Method::GET, "/api/v1/orders", &["Bearer"])
        .await
        .assert_refused(400, INVALID_REQUEST);
    w.assert_clean();
}

#[tokio::test]
async fn matched_route_is_the_endpoint() {
    let w = World::new();
    let endpoint = EndpointId::parse("/orders/{id}").unwrap();
    let primaries = w
        .service
        .endpoint()
        .enable(&endpoint, false, &w.admin)
        .await
        .unwrap();
    let get_token = w.secret(primaries[0].1.secret.expose_secret());
    assert_eq!(primaries[0].0, TokenMethod::Get);
    let app = Router::new()
        .route("/orders/{id}", get(which))
        .route("/other/{id}", put(which).get(which))
        .route_layer(EndpointLayer::matched_path(w.service.clone()));

    w.bearer(&app, Method::GET, "/orders/42", &get_token)
        .await
        .assert_ok();
    w.bearer(&app, Method::GET, "/other/42", &get_token)
        .await
        .assert_refused(401, INVALID_TOKEN);
    // Unrouted paths are not the guard's business.
    assert_eq!(
        w.bearer(&app, Method::GET, "/nowhere", &get_token)
            .await
            .status,
        404
    );

    // Without a router, there is no matched path: a setup error.
    let bare = tower::ServiceBuilder::new()
        .layer(EndpointLayer::matched_path(w.service.clone()))
        .service(Router::new().route("/orders/{id}", get(which)));
    let bare = Router::new().fallback_service(bare);
    w.bearer(&bare, Method::GET, "/orders/42", &get_token)
        .await
        .assert_refused(500, None);
    w.assert_clean();
}

#[tokio::test]
async fn a_failing_store_is_a_503() {
    let up = World::new();
    let s = setup(&up, false).await;
    let w = World::down();
    w.secret(&s.get);
    let app = app(&w);
    w.bearer(&app, Method::GET, "/api/v1/orders", &s.get)
        .await
        .assert_refused(503, None);
    w.assert_clean();
}
