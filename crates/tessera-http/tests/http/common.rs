//! What every test shares: a service on a manual clock, a store that is down, a log capture, and
//! a client that remembers every answer so the test can check no secret ever left.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tessera::core::audit::AuditEvent;
use tessera::core::clock::ManualClock;
use tessera::core::digest::{Digest, Hint, KeyId, Pepper, Peppers};
use tessera::core::id::{DeviceId, EndpointId, TokenId};
use tessera::core::kind::KindData;
use tessera::core::kind::endpoint::{Mapping, Method as TokenMethod};
use tessera::core::record::TokenRecord;
use tessera::memory::MemoryStore;
use tessera::store::{
    AuditFilter, Capabilities, Enrollment, RedeemEvents, Redemption, StateChange, Store,
    StoreError, TokenFilter, UsageEntry, UsageOutcome, UsageSubject,
};
use tessera::{Principal, TokenService};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// A detail of the failing store that must never reach a client.
pub(crate) const STORE_DETAIL: &str = "connection refused by db.internal:5432 as user tessera_rw";

/// One test's world.
pub(crate) struct World {
    pub(crate) service: TokenService,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) admin: Principal,
    /// Every secret issued in this world: none may appear in an answer or a log line.
    secrets: Mutex<Vec<String>>,
    /// Every answer rendered as text (status, headers, body).
    answers: Mutex<Vec<String>>,
    logs: Arc<Mutex<Vec<Line>>>,
    _capture: DefaultGuard,
}

/// One captured log event.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    pub(crate) target: String,
    pub(crate) level: tracing::Level,
    pub(crate) text: String,
}

/// What a request got back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    /// The one `WWW-Authenticate` value, if any (fails on several).
    pub(crate) fn challenge(&self) -> Option<&str> {
        let all: Vec<_> = self.headers.get_all("www-authenticate").iter().collect();
        assert!(all.len() <= 1, "several challenges: {all:?}");
        all.first().map(|v| v.to_str().unwrap())
    }

    /// Assert exactly the refusal `status` with `challenge`, an empty body and no other header
    /// than the challenge.
    #[track_caller]
    pub(crate) fn assert_refused(&self, status: u16, challenge: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.challenge(), challenge, "{self:?}");
        assert_eq!(self.body, "", "{self:?}");
        // axum's router adds `content-length: 0` to the empty body; nothing else is sent.
        if let Some(length) = self.headers.get("content-length") {
            assert_eq!(length, "0");
        }
        let others: Vec<_> = self
            .headers
            .keys()
            .filter(|k| *k != "www-authenticate" && *k != "content-length")
            .collect();
        assert!(others.is_empty(), "unexpected headers {others:?}");
    }

    #[track_caller]
    pub(crate) fn assert_ok(&self) -> &str {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        &self.body
    }
}

pub(crate) const INVALID_TOKEN: Option<&str> = Some("Bearer error=\"invalid_token\"");
pub(crate) const INVALID_REQUEST: Option<&str> = Some("Bearer error=\"invalid_request\"");
pub(crate) const INSUFFICIENT_SCOPE: Option<&str> = Some("Bearer error=\"insufficient_scope\"");
pub(crate) const CHALLENGE: Option<&str> = Some("Bearer");

pub(crate) const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

impl World {
    pub(crate) fn new() -> Self {
        Self::over(Arc::new(MemoryStore::new()))
    }

    /// A world whose store fails every call.
    pub(crate) fn down() -> Self {
        Self::over(Arc::new(Down))
    }

    fn over(store: Arc<dyn Store>) -> Self {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let capture = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(Capture(Arc::clone(&logs))),
        );
        let clock = Arc::new(ManualClock::new(datetime!(2026-03-02 09:00 UTC)));
        let peppers = Peppers::new(Pepper::generate(KeyId(1)).unwrap());
        let service = TokenService::builder_shared(store, peppers)
            .clock(clock.clone())
            .build();
        Self {
            service,
            clock,
            admin: Principal::admin("admin").unwrap(),
            secrets: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            logs,
            _capture: capture,
        }
    }

    /// Remember a secret so that [`assert_clean`](Self::assert_clean) looks for it, and return it.
    pub(crate) fn secret(&self, secret: &str) -> String {
        lock(&self.secrets).push(secret.to_owned());
        secret.to_owned()
    }

    pub(crate) fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        tessera::core::clock::Clock::now(&*self.clock)
    }

    /// Send `method path` from [`CLIENT`] with these `Authorization` values.
    pub(crate) async fn send(
        &self,
        app: &Router,
        method: Method,
        path: &str,
        authorization: &[&str],
    ) -> Answer {
        self.send_from(app, method, path, authorization, Some(CLIENT), &[])
            .await
    }

    /// Send with the bearer `token`.
    pub(crate) async fn bearer(
        &self,
        app: &Router,
        method: Method,
        path: &str,
        token: &str,
    ) -> Answer {
        self.send(app, method, path, &[&format!("Bearer {token}")])
            .await
    }

    /// Send from `peer` (none: no `ConnectInfo`) with extra headers.
    pub(crate) async fn send_from(
        &self,
        app: &Router,
        method: Method,
        path: &str,
        authorization: &[&str],
        peer: Option<IpAddr>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(ip) = peer {
            request = request.extension(ConnectInfo(SocketAddr::new(ip, 50123)));
        }
        for value in authorization {
            request = request.header("authorization", *value);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let answer = Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        };
        lock(&self.answers).push(format!(
            "{} {:?} {}",
            answer.status, answer.headers, answer.body
        ));
        answer
    }

    /// Remember an answer read off the wire, for [`assert_clean`](Self::assert_clean).
    pub(crate) fn record_answer(&self, raw: &str) {
        lock(&self.answers).push(raw.to_owned());
    }

    /// The captured log lines under `target`.
    pub(crate) fn logs(&self, target: &str) -> Vec<Line> {
        lock(&self.logs)
            .iter()
            .filter(|l| l.target == target)
            .cloned()
            .collect()
    }

    /// Whether a DEBUG line under `tessera_http` gives `reason`.
    #[track_caller]
    pub(crate) fn assert_logged_reason(&self, reason: &str) {
        let lines = self.logs(tessera_http::LOG_TARGET);
        assert!(
            lines.iter().any(|l| l.level == tracing::Level::DEBUG
                && l.text.contains(&format!("reason={reason}"))),
            "no refusal logged with reason {reason}: {lines:?}"
        );
    }

    /// No secret of this world, nor any 12-character piece of one, appears in any answer or log
    /// line, and no answer holds the store's failure detail.
    #[track_caller]
    pub(crate) fn assert_clean(&self) {
        let secrets = lock(&self.secrets).clone();
        assert!(!secrets.is_empty(), "no secret was issued");
        let answers = lock(&self.answers).clone();
        let logs: Vec<String> = lock(&self.logs).iter().map(|l| l.text.clone()).collect();
        assert!(
            !answers.is_empty() && !logs.is_empty(),
            "nothing was captured"
        );
        for text in answers.iter().chain(&logs) {
            for secret in &secrets {
                for piece in secret.as_bytes().windows(12) {
                    let piece = std::str::from_utf8(piece).unwrap();
                    // The prefix (`tsr_app_`) is public.
                    if piece.starts_with("tsr_") {
                        continue;
                    }
                    assert!(!text.contains(piece), "a secret leaked into {text:?}");
                }
            }
        }
        for answer in &answers {
            assert!(
                !answer.contains("db.internal"),
                "store detail leaked into {answer:?}"
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records every event, at every level and target, with all its fields.
struct Capture(Arc<Mutex<Vec<Line>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!("{}={value} ", field.name()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        lock(&self.0).push(Line {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            text: fields.0,
        });
    }
}

/// A store whose every call fails, with a detail that must stay in the log.
#[derive(Debug)]
pub(crate) struct Down;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Backend(STORE_DETAIL.into()))
}

#[async_trait]
impl Store for Down {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn insert(&self, _: &TokenRecord, _: &[AuditEvent]) -> Result<(), StoreError> {
        down()
    }
    async fn insert_many(&self, _: &[TokenRecord], _: &[AuditEvent]) -> Result<(), StoreError> {
        down()
    }
    async fn get(&self, _: TokenId) -> Result<Option<TokenRecord>, StoreError> {
        down()
    }
    async fn find_by_digest(&self, _: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        down()
    }
    async fn list(&self, _: &TokenFilter) -> Result<Vec<TokenRecord>, StoreError> {
        down()
    }
    async fn change_state(
        &self,
        _: TokenId,
        _: &StateChange,
        _: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        down()
    }
    async fn replace(
        &self,
        _: TokenId,
        _: &StateChange,
        _: &TokenRecord,
        _: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        down()
    }
    async fn update_data(
        &self,
        _: TokenId,
        _: &KindData,
        _: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        down()
    }
    async fn set_digest(
        &self,
        _: TokenId,
        _: &Digest,
        _: &Hint,
        _: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        down()
    }
    async fn set_sealed(
        &self,
        _: TokenId,
        _: Option<&tessera::core::seal::Sealed>,
        _: &[AuditEvent],
    ) -> Result<TokenRecord, StoreError> {
        down()
    }
    async fn touch(&self, _: TokenId, _: OffsetDateTime, _: Duration) -> Result<bool, StoreError> {
        down()
    }
    async fn purge(&self, _: &[TokenId], _: &[AuditEvent]) -> Result<u64, StoreError> {
        down()
    }
    async fn redeem(
        &self,
        _: &Digest,
        _: &DeviceId,
        _: OffsetDateTime,
        _: &RedeemEvents,
    ) -> Result<Redemption, StoreError> {
        down()
    }
    async fn enrollments(&self, _: TokenId) -> Result<Vec<Enrollment>, StoreError> {
        down()
    }
    async fn record_usage(
        &self,
        _: TokenId,
        _: &UsageSubject,
        _: OffsetDateTime,
    ) -> Result<UsageOutcome, StoreError> {
        down()
    }
    async fn is_blocked(&self, _: TokenId, _: IpAddr) -> Result<bool, StoreError> {
        down()
    }
    async fn record_batch(&self, _: &tessera::store::UsageBatch) -> Result<bool, StoreError> {
        down()
    }
    async fn set_blocked(
        &self,
        _: TokenId,
        _: IpAddr,
        _: bool,
        _: &[AuditEvent],
    ) -> Result<UsageEntry, StoreError> {
        down()
    }
    async fn usage(&self, _: TokenId) -> Result<Vec<UsageEntry>, StoreError> {
        down()
    }
    async fn endpoint_usage(&self, _: &EndpointId) -> Result<Vec<UsageEntry>, StoreError> {
        down()
    }
    async fn put_mapping(&self, _: &Mapping, _: &[AuditEvent]) -> Result<(), StoreError> {
        down()
    }
    async fn mapping(
        &self,
        _: TokenId,
        _: &EndpointId,
        _: TokenMethod,
    ) -> Result<Option<Mapping>, StoreError> {
        down()
    }
    async fn set_mapping_enabled(
        &self,
        _: TokenId,
        _: &EndpointId,
        _: TokenMethod,
        _: bool,
        _: &[AuditEvent],
    ) -> Result<Mapping, StoreError> {
        down()
    }
    async fn remove_mapping(
        &self,
        _: TokenId,
        _: &EndpointId,
        _: TokenMethod,
        _: &[AuditEvent],
    ) -> Result<(), StoreError> {
        down()
    }
    async fn mappings(
        &self,
        _: Option<TokenId>,
        _: Option<&EndpointId>,
    ) -> Result<Vec<Mapping>, StoreError> {
        down()
    }
    async fn append(&self, _: &AuditEvent) -> Result<(), StoreError> {
        down()
    }
    async fn events(&self, _: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        down()
    }
}
