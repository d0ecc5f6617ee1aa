//! A real server on a loopback socket: the client address comes from the connection, and the
//! answer on the wire is exactly the RFC 6750 one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::routing::get;
use axum::{Extension, Router};
use tessera::application::ApplicationAccess;
use tessera::core::id::{AccessType, ApplicationName, Description};
use tessera::core::kind::application::AccessTypes;
use tessera::store::UsageSubject;
use tessera_http::{ApplicationLayer, ClientIp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::World;

/// Send one raw HTTP/1.1 request and read the whole answer.
async fn raw(addr: SocketAddr, authorization: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET /feed HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn served_on_loopback_with_the_connection_address() {
    let w = World::new();
    let issued = w
        .service
        .application()
        .create(
            ApplicationName::parse("loopback").unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &w.admin,
        )
        .await
        .unwrap();
    let token = w.secret(issued.secret.expose_secret());
    let app = Router::new()
        .route(
            "/feed",
            get(
                |Extension(a): Extension<ApplicationAccess>,
                 Extension(ClientIp(ip)): Extension<ClientIp>| async move {
                    format!("{} from {ip}", a.name())
                },
            ),
        )
        .layer(ApplicationLayer::new(w.service.clone()));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let ok = raw(addr, Some(&format!("Bearer {token}"))).await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.ends_with("loopback from 127.0.0.1"), "{ok}");

    let missing = raw(addr, None).await;
    assert!(
        missing.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{missing}"
    );
    assert!(
        missing
            .to_ascii_lowercase()
            .contains("\r\nwww-authenticate: bearer\r\n"),
        "{missing}"
    );

    let flip = if token.ends_with('x') { 'y' } else { 'x' };
    let forged = format!("Bearer {}{flip}", &token[..token.len() - 1]);
    let invalid = raw(addr, Some(&forged)).await;
    assert!(
        invalid.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{invalid}"
    );
    assert!(
        invalid
            .to_ascii_lowercase()
            .contains("\r\nwww-authenticate: bearer error=\"invalid_token\"\r\n"),
        "{invalid}"
    );
    assert!(
        invalid.ends_with("\r\n\r\n"),
        "the body is empty: {invalid}"
    );
    for answer in [&ok, &missing, &invalid] {
        w.record_answer(answer);
    }
    server.abort();

    let ips = w.service.application().ips(issued.token.id).await.unwrap();
    assert_eq!(ips.len(), 1);
    assert_eq!(
        ips[0].subject,
        UsageSubject::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
    w.assert_clean();
}
