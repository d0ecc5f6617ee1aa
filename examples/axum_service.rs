//! An axum service guarded by Tessera, one route per kind, on SQLite.
//!
//! - `GET /feed`: an integration's application token (`Authorization: Bearer <token>`); every
//!   use is recorded against the client's address.
//! - `GET` and `POST /orders`: the endpoint's primary tokens, or a secondary token mapped to them,
//!   one per integrating application; the handler logs which integration called.
//! - `POST /users/{user}/reset-password`: a technician's auth token, scoped to actions the
//!   technician still holds (the `Authorized` extractor asks the user directory on each request).
//!
//! Refusals follow RFC 6750: 401 `invalid_token` for any refused token, 403
//! `insufficient_scope`, 400 `invalid_request` for a broken header, 401 with a bare `Bearer`
//! challenge without credentials. A 503 (the store failed) is logged on stderr with the reason.
//!
//! Run it with `cargo run --example axum_service` and try the printed `curl` lines; Ctrl-C
//! writes the usage ledger (`TokenService::flush`) before exiting. For the
//! service a team would deploy (configuration from the environment, a database file or
//! PostgreSQL, health checks, metrics, graceful shutdown), see `crates/tessera-service`.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};

use axum::extract::{FromRef, Path};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tessera::application::ApplicationAccess;
use tessera::auth::NewAuth;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{
    AccessType, ApplicationName, Description, EndpointId, Permission, TokenName, UserId,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::auth::{Expiry, Scope};
use tessera::core::kind::endpoint::Method;
use tessera::endpoint::{Carrier, EndpointAccess};
use tessera::{Principal, TokenService};
use tessera_http::{
    Action, ApplicationLayer, AuthGuard, Authorized, ClientIp, EndpointLayer, Permissions,
};
use tessera_sql::SqliteStore;
use tokio::net::TcpListener;

/// The token store: SQLite, in memory so every run starts afresh. For a file that keeps the
/// tokens across restarts, use `SqliteStore::open("tessera.db")`.
async fn open_store() -> Result<SqliteStore, Box<dyn Error>> {
    let store = SqliteStore::open_in_memory().await?;
    store.migrate().await?;
    Ok(store)
}

/// What the user directory says a technician may do now.
fn held_by(user: &UserId) -> BTreeSet<Permission> {
    let names: &[&str] = match user.as_str() {
        "tech-1" => &["reset_password", "unlock_account"],
        _ => &[],
    };
    names
        .iter()
        .filter_map(|n| Permission::parse(*n).ok())
        .collect()
}

struct ResetPassword;

impl Action for ResetPassword {
    const PERMISSION: &'static str = "reset_password";
}

#[derive(Clone)]
struct AppState {
    auth: AuthGuard,
}

impl FromRef<AppState> for AuthGuard {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

async fn feed(
    Extension(access): Extension<ApplicationAccess>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
) -> String {
    let types: Vec<&str> = access.access().iter().map(AccessType::as_str).collect();
    format!(
        "feed for {} ({}) at {ip}\n",
        access.name(),
        types.join(", ")
    )
}

async fn orders(
    method: axum::http::Method,
    Extension(access): Extension<EndpointAccess>,
) -> String {
    // Traffic per integration: the application knows which token carried the request.
    let caller = match access.carrier {
        Carrier::Primary => "the primary token".to_owned(),
        Carrier::Secondary { name } => format!("integration {name}"),
    };
    println!("[orders] {method} by {caller} (token {})", access.token);
    format!("orders: {method} accepted from {caller}\n")
}

async fn reset_password(auth: Authorized<ResetPassword>, Path(user): Path<String>) -> String {
    format!(
        "password of {user} reset on behalf of {}\n",
        auth.access.owner()
    )
}

/// The router, the tokens a client can try, as `(label, method, path, token)`, and the
/// service (to write its usage ledger on shutdown).
async fn app() -> Result<
    (
        Router,
        Vec<(&'static str, &'static str, &'static str, String)>,
        TokenService,
    ),
    Box<dyn Error>,
> {
    let peppers = Peppers::new(Pepper::generate(KeyId(1))?);
    let service = TokenService::new(open_store().await?, peppers);
    let admin = Principal::admin("admin")?;

    // An application token for a threat feed.
    let feed_token = service
        .application()
        .create(
            ApplicationName::parse("threat-feed")?,
            Description::parse("SIEM collector")?,
            AccessTypes::new([AccessType::parse("third-party-feeds")?])?,
            &admin,
        )
        .await?;

    // Token authentication on /orders, and a secondary token for the ERP mapped to GET and POST.
    let endpoint = EndpointId::parse("/orders")?;
    service.endpoint().enable(&endpoint, false, &admin).await?;
    let erp = service
        .endpoint()
        .create_secondary(
            TokenName::parse("erp-connector")?,
            Description::default(),
            &admin,
        )
        .await?;
    for method in [Method::Get, Method::Post] {
        service
            .endpoint()
            .map(erp.token.id, &endpoint, method, &admin)
            .await?;
    }

    // A helpdesk technician's token that may reset passwords only.
    let tech = UserId::parse("tech-1")?;
    let spec = NewAuth {
        owner: tech.clone(),
        name: TokenName::parse("helpdesk script")?,
        scope: Scope::new([Permission::parse("reset_password")?])?,
        expiry: Expiry::Hours(8),
    };
    let helpdesk = service
        .auth()
        .generate(spec, &held_by(&tech), &admin)
        .await?;

    let permissions =
        Permissions::from_fn(|user: UserId| async move { Ok::<_, Infallible>(held_by(&user)) });
    let state = AppState {
        auth: AuthGuard::new(service.clone(), permissions),
    };
    let router = Router::new()
        .route(
            "/feed",
            get(feed).layer(ApplicationLayer::new(service.clone())),
        )
        .route(
            "/orders",
            get(orders)
                .post(orders)
                .layer(EndpointLayer::new(service.clone(), endpoint)),
        )
        .route("/users/{user}/reset-password", post(reset_password))
        .with_state(state);

    let tries = vec![
        (
            "application token",
            "GET",
            "/feed",
            feed_token.secret.expose_secret().to_owned(),
        ),
        (
            "endpoint secondary (ERP)",
            "POST",
            "/orders",
            erp.secret.expose_secret().to_owned(),
        ),
        (
            "auth token",
            "POST",
            "/users/tech-2/reset-password",
            helpdesk.secret.expose_secret().to_owned(),
        ),
    ];
    Ok((router, tries, service))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Logs to stderr (INFO and above): a 503 says why there (the store's error), and so do
    // the validation cache and the PostgreSQL change watch when they turn off and on again.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let (router, tries, service) = app().await?;
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 3000)).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?,
    };
    let base = format!("http://{}", listener.local_addr()?);
    println!("listening on {base}; tokens are shown once, here:\n");
    for (label, method, path, token) in &tries {
        println!("# {label}");
        println!("curl -i -X {method} -H 'Authorization: Bearer {token}' {base}{path}\n");
    }
    println!("# refused: no credentials (401), an unknown token (401 invalid_token)");
    println!("curl -i {base}/feed");
    println!("curl -i -H 'Authorization: Bearer tsr_app_unknown' {base}/feed\n");
    // The client address of application tokens comes from the connection.
    // Ctrl-C: finish the requests in flight, then write what the usage ledger holds (the
    // last second's counts, last uses and audit rows) before the store goes away.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    let flushed = service.flush().await?;
    println!("usage ledger written: {} uses", flushed.uses);
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn send(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// The printed `curl` lines work: each token opens its route and no other.
    #[tokio::test]
    async fn the_printed_requests_work() {
        let (router, tries, _service) = app().await.unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        for (label, method, path, token) in &tries {
            let answer = send(addr, method, path, Some(token)).await;
            assert!(
                answer.starts_with("HTTP/1.1 200 OK\r\n"),
                "{label}: {answer}"
            );
            for (_, method, other, _) in tries.iter().filter(|(_, _, p, _)| p != path) {
                let answer = send(addr, method, other, Some(token)).await;
                assert!(
                    answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
                    "{label} on {other}: {answer}"
                );
            }
        }
        let answer = send(addr, "GET", "/feed", None).await;
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer\r\n"),
            "{answer}"
        );
        server.abort();
    }
}
