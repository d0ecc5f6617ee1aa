//! Application bearer tokens with a per-IP usage log, IP blocking and inactivity rules.

use std::net::IpAddr;
use std::sync::Arc;

use tessera_core::Kind;
use tessera_core::audit::{AuditAction, AuditEvent};
use tessera_core::format::Spelling;
use tessera_core::id::{ApplicationName, Description, TokenId};
use tessera_core::kind::KindData;
use tessera_core::kind::application::{AccessCatalog, AccessTypes, ApplicationData};
use tessera_core::kind::onboarding::UsageLimit;
use tessera_core::lifecycle::{Action, State};
use tessera_core::net::canonical;
use tessera_core::record::TokenRecord;
use tessera_core::record::TokenSummary;
use tessera_core::validate::{self, Rejection, Request};
use tessera_store::{SharedRecord, TokenFilter, UsageEntry, UsageSubject};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::ledger::Subject;
use crate::principal::Principal;
use crate::request::{Access, RequestContext, narrow};
use crate::service::{Issued, TokenService, found_or_refuse};

/// Application tokens: see [`TokenService::application`].
#[derive(Clone, Copy, Debug)]
pub struct ApplicationTokens<'a> {
    svc: &'a TokenService,
}

/// An accepted bearer request.
///
/// It shares the token's stored record: its name and access types are read when asked for,
/// never copied on the validation path.
#[derive(Clone)]
pub struct ApplicationAccess {
    /// The token.
    pub token: TokenId,
    record: Arc<SharedRecord>,
}

impl ApplicationAccess {
    /// The access `record` grants, if it is an application token's.
    fn of(record: Arc<SharedRecord>) -> Option<Self> {
        matches!(record.data, KindData::Application(_)).then(|| Self {
            token: record.id,
            record,
        })
    }

    fn data(&self) -> &ApplicationData {
        match &self.record.data {
            KindData::Application(d) => d,
            // `of` admits an application token's record only, and a shared record never
            // changes (a write shares a new one).
            _ => unreachable!("an ApplicationAccess holds an application token's record"),
        }
    }

    /// The token's name.
    pub fn name(&self) -> &ApplicationName {
        &self.data().name
    }

    /// What the token grants.
    pub fn access(&self) -> &AccessTypes {
        &self.data().access
    }
}

impl PartialEq for ApplicationAccess {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token && self.name() == other.name() && self.access() == other.access()
    }
}

impl Eq for ApplicationAccess {}

impl core::fmt::Debug for ApplicationAccess {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ApplicationAccess")
            .field("token", &self.token)
            .field("name", self.name())
            .field("access", self.access())
            .finish()
    }
}

/// An application token in a listing.
#[derive(Clone, Debug)]
pub struct ApplicationListing {
    /// The token.
    pub token: TokenSummary,
    /// Its name, description and access types.
    pub data: ApplicationData,
}

/// Why an `Authorization` header could not be read (RFC 6750 `invalid_request`).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BearerError {
    /// The header does not use the `Bearer` scheme.
    #[error("authorization header must use the Bearer scheme: `Authorization: Bearer <token>`")]
    Scheme,
    /// The scheme is there but no token follows.
    #[error("authorization header has no token after `Bearer `")]
    Missing,
}

/// The token in an `Authorization` header value (`Bearer <token>`, scheme any case).
///
/// # Errors
///
/// [`BearerError`] when the header is not a bearer header.
pub fn parse_bearer(header: &str) -> Result<&str, BearerError> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Scheme);
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(BearerError::Missing);
    }
    Ok(token)
}

impl TokenService {
    /// Application tokens.
    pub const fn application(&self) -> ApplicationTokens<'_> {
        ApplicationTokens { svc: self }
    }
}

impl ApplicationTokens<'_> {
    /// Generate a token, active at once. The secret is in the result and nowhere else: copy it
    /// now.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` from the store when the name is taken by a token in force.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "application"),
        err(level = "warn")
    )]
    pub async fn create(
        &self,
        name: ApplicationName,
        description: Description,
        access: AccessTypes,
        by: &Principal,
    ) -> Result<Issued> {
        self.svc.inner.settings.access_types.check(&access)?;
        let now = self.svc.now();
        let (secret, record) = self.svc.mint(
            Kind::Application,
            Spelling::Prefixed,
            KindData::Application(ApplicationData {
                name,
                description,
                access,
            }),
            UsageLimit::Unlimited,
            None,
            by.actor(),
            None,
            now,
        )?;
        self.svc.store_issued(secret, record, now).await
    }

    /// The access types tokens may carry, as configured
    /// ([`Builder::access_types`](crate::Builder::access_types)).
    pub fn access_types(&self) -> &AccessCatalog {
        &self.svc.inner.settings.access_types
    }

    /// Every application token not deleted.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "application"),
        err(level = "warn")
    )]
    pub async fn list(&self) -> Result<Vec<ApplicationListing>> {
        let now = self.svc.now();
        Ok(self
            .svc
            .inner
            .store
            .list(&TokenFilter::default().kind(Kind::Application))
            .await?
            .into_iter()
            .filter(|r| self.svc.idle_state(r, now) != State::Deleted)
            .filter_map(|r| match &r.data {
                KindData::Application(d) => Some(ApplicationListing {
                    token: self.svc.summary(&r, now),
                    data: d.clone(),
                }),
                _ => None,
            })
            .collect())
    }

    /// Deactivate a token: all access is refused until it is activated.
    ///
    /// # Errors
    ///
    /// A transition error unless active or dormant.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "application"),
        err(level = "warn")
    )]
    pub async fn deactivate(&self, id: TokenId, by: &Principal) -> Result<TokenSummary> {
        let r = self
            .svc
            .transition(Some(Kind::Application), id, Action::Disable, by.actor())
            .await?;
        Ok(r.summary(self.svc.now()))
    }

    /// Activate a deactivated or dormant token; its inactivity clock starts again (activation
    /// counts as activity). A token unused past the dormancy threshold is dormant whether or not
    /// a sweep recorded it, and activating it makes it usable again; one unused past the
    /// deletion threshold is deleted for good and cannot be activated.
    ///
    /// # Errors
    ///
    /// A transition error unless disabled or dormant.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "application"),
        err(level = "warn")
    )]
    pub async fn activate(&self, id: TokenId, by: &Principal) -> Result<TokenSummary> {
        let r = self.svc.record(Kind::Application, id).await?;
        let action = if self.svc.idle_state(&r, self.svc.now()) == State::Dormant {
            Action::Reactivate
        } else {
            Action::Enable
        };
        let r = self
            .svc
            .transition(Some(Kind::Application), id, action, by.actor())
            .await?;
        Ok(r.summary(self.svc.now()))
    }

    /// Validate an `Authorization` header value (`Bearer <token>`) from `ip`: refused when `ip`
    /// is blocked for the token (the block list travels with the record: one lookup); on
    /// acceptance the use is counted for that address (first seen, last seen, count) by the
    /// usage ledger, written behind the request path.
    ///
    /// Every address is taken in its canonical ([`tessera_core::net::canonical`]) spelling, here
    /// and in [`block`](Self::block), [`unblock`](Self::unblock) and [`ips`](Self::ips):
    /// `::ffff:10.0.0.9` and `::10.0.0.9` are `10.0.0.9`, so a block holds for every spelling.
    ///
    /// # Errors
    ///
    /// Store failures. A refused token is `Ok(Err(rejection))`; a header that is not a bearer
    /// header is `Malformed`.
    pub async fn validate_bearer(
        &self,
        header: &str,
        ip: IpAddr,
    ) -> Result<Result<ApplicationAccess, Rejection>> {
        match parse_bearer(header) {
            Ok(token) => self.validate(token, ip).await,
            Err(_) => Ok(Err(Rejection::Malformed)),
        }
    }

    /// Validate a bare token from `ip`, as [`validate_bearer`](Self::validate_bearer):
    /// [`TokenService::validate`] with [`RequestContext::application`].
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn validate(
        &self,
        token: &str,
        ip: IpAddr,
    ) -> Result<Result<ApplicationAccess, Rejection>> {
        let outcome = self
            .svc
            .validate(token, &RequestContext::new().application(ip))
            .await;
        narrow(outcome, |a| match a {
            Access::Application(a) => Some(a),
            _ => None,
        })
    }

    pub(crate) async fn accept(
        &self,
        token: &str,
        ip: IpAddr,
    ) -> Result<Result<ApplicationAccess, Rejection>> {
        let ip = canonical(ip);
        let found = found_or_refuse!(self.svc, Kind::Application, token);
        let (record, now) = (&*found.record, found.now);
        let event = || self.svc.use_event(record, now).ip(Some(ip));
        // The block list travels with the record: one lookup decides.
        let request = Request::Application {
            ip,
            ip_blocked: record.is_blocked(ip),
        };
        // Inactivity holds at the moment of use, whether or not a sweep recorded it, on cached
        // records too; a refused use writes no last use, so it never revives an idle token.
        let verdict = match self.idle(record, now).await? {
            State::Deleted if record.state != State::Deleted => Err(Rejection::Deleted),
            State::Dormant if record.state != State::Dormant => Err(Rejection::Dormant),
            _ => validate::validate(record, &request, now).map(drop),
        };
        if let Err(rej) = verdict {
            self.svc.refused(&found, rej, Some(ip), None, event);
            return Ok(Err(rej));
        }
        self.svc
            .used(&found, Some(Subject::Ip(ip)), Some(ip), None, event);
        Ok(ApplicationAccess::of(found.record).ok_or(Rejection::NotFound))
    }

    /// The state `record` is in at `now` with inactivity applied. A cached copy may lag behind
    /// another instance's last-use write: when it says idle, the stored record decides.
    async fn idle(&self, record: &TokenRecord, now: OffsetDateTime) -> Result<State> {
        let idle = self.svc.idle_state(record, now);
        if idle == record.state {
            return Ok(idle);
        }
        // Rare: the token looks idle. Its last use may wait in this process's usage ledger, and
        // a cached copy may be older than the store's: ask both.
        let _steady = self.svc.inner.ledger.steady().await;
        let waiting = self.svc.inner.ledger.waiting_last_use(record.id);
        let state_of = |r: &TokenRecord| {
            let mut r = r.clone();
            r.last_used_at = r.last_used_at.max(waiting);
            self.svc.idle_state(&r, now)
        };
        Ok(match self.svc.inner.store.get(record.id).await? {
            Some(stored) => state_of(&stored),
            None => State::Deleted,
        })
    }

    /// The addresses that used a token, with first and last use, count and block flag, each
    /// address once in its canonical spelling (entries a store kept under another spelling are
    /// merged into it).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "application"),
        err(level = "warn")
    )]
    pub async fn ips(&self, id: TokenId) -> Result<Vec<UsageEntry>> {
        self.svc.record(Kind::Application, id).await?;
        let mut out: Vec<UsageEntry> = Vec::new();
        let stored = {
            let _steady = self.svc.inner.ledger.steady().await;
            let mut stored = self.svc.inner.store.usage(id).await?;
            // Counts this process has not written yet.
            stored.extend(self.svc.inner.ledger.waiting_usage(id));
            stored
        };
        for mut u in stored {
            let UsageSubject::Ip(ip) = u.subject else {
                continue;
            };
            let ip = canonical(ip);
            match out
                .iter_mut()
                .find(|e| matches!(e.subject, UsageSubject::Ip(a) if a == ip))
            {
                Some(e) => {
                    e.count += u.count;
                    e.blocked |= u.blocked;
                    e.first_seen = earliest(e.first_seen, u.first_seen);
                    e.last_seen = e.last_seen.max(u.last_seen);
                }
                None => {
                    u.subject = UsageSubject::Ip(ip);
                    out.push(u);
                }
            }
        }
        Ok(out)
    }

    /// Block `ip` (any spelling) for this token: its requests are refused, whatever spelling
    /// they arrive in; other addresses are not affected.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "application"),
        err(level = "warn")
    )]
    pub async fn block(&self, id: TokenId, ip: IpAddr, by: &Principal) -> Result<UsageEntry> {
        self.set_blocked(id, ip, true, by).await
    }

    /// Unblock `ip` for this token.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "application"),
        err(level = "warn")
    )]
    pub async fn unblock(&self, id: TokenId, ip: IpAddr, by: &Principal) -> Result<UsageEntry> {
        self.set_blocked(id, ip, false, by).await
    }

    async fn set_blocked(
        &self,
        id: TokenId,
        ip: IpAddr,
        blocked: bool,
        by: &Principal,
    ) -> Result<UsageEntry> {
        let ip = canonical(ip);
        let r = self.svc.record(Kind::Application, id).await?;
        if r.state == State::Deleted {
            return Err(Error::NoSuchToken {
                kind: Some(Kind::Application),
                id: id.to_string(),
            });
        }
        let action = if blocked {
            AuditAction::IpBlocked
        } else {
            AuditAction::IpUnblocked
        };
        let event = AuditEvent::new(self.svc.now(), by.actor(), action)
            .about(&r)
            .ip(Some(ip));
        Ok(self
            .svc
            .inner
            .store
            .set_blocked(id, ip, blocked, &[event])
            .await?)
    }
}

/// The earlier of two optional instants, either missing counting as unknown.
fn earliest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
