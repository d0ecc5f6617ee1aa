//! Endpoint tokens: a primary per endpoint and method, secondaries mapped to primaries.

use std::net::IpAddr;

use tessera_core::audit::{AuditAction, AuditEvent};
use tessera_core::format::Spelling;
use tessera_core::id::{Description, EndpointId, TokenId, TokenName};
use tessera_core::kind::KindData;
use tessera_core::kind::endpoint::{EndpointData, Mapping, Method};
use tessera_core::kind::onboarding::UsageLimit;
use tessera_core::lifecycle::{Action, State};
use tessera_core::record::{TokenRecord, TokenSummary};
use tessera_core::validate::{self, Rejection, Request};
use tessera_core::{Kind, Secret};
use tessera_store::{AuditFilter, StoreError, TokenFilter, UsageEntry, UsageSubject};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::ledger::Subject;
use crate::principal::Principal;
use crate::request::{Access, RequestContext, narrow};
use crate::service::{Issued, TokenService, found_or_refuse};

/// Endpoint tokens: see [`TokenService::endpoint`].
#[derive(Clone, Copy, Debug)]
pub struct EndpointTokens<'a> {
    svc: &'a TokenService,
}

/// Which token carried an accepted endpoint request.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Carrier {
    /// The endpoint's primary token for the method.
    Primary,
    /// A secondary token: the integrating application, by name.
    Secondary {
        /// The secondary's name.
        name: TokenName,
    },
}

/// An accepted endpoint request.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct EndpointAccess {
    /// The token that carried it.
    pub token: TokenId,
    /// Primary or which secondary.
    pub carrier: Carrier,
    /// Whether the token is rotated and only in its grace window.
    pub in_grace: bool,
}

/// A secondary token in a listing.
#[derive(Clone, Debug)]
pub struct SecondaryListing {
    /// The token.
    pub token: TokenSummary,
    /// Its description.
    pub description: Description,
    /// Its enabled toggle.
    pub enabled: bool,
    /// Where it is mapped.
    pub mappings: Vec<Mapping>,
}

/// Which secondaries a listing shows.
#[derive(Clone, Debug, Default)]
pub struct SecondaryFilter {
    /// Also show deactivated tokens (the console shows active ones by default).
    pub include_inactive: bool,
    /// The console's "Hide unassigned": hide tokens not assigned to [`endpoint`](Self::endpoint)
    /// (any method), or, with no endpoint in view, tokens mapped nowhere.
    pub hide_unassigned: bool,
    /// The endpoint being viewed, for [`hide_unassigned`](Self::hide_unassigned).
    pub endpoint: Option<EndpointId>,
}

/// Which accepted requests [`EndpointTokens::traffic_filtered`] counts (the data viewer's
/// filters). Every filter is optional; they combine.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct TrafficFilter {
    /// Only requests carried by this token.
    pub token: Option<TokenId>,
    /// Only requests carried by secondaries of this name (case ignored).
    pub name: Option<String>,
    /// Only requests at or after.
    pub since: Option<OffsetDateTime>,
    /// Only requests before.
    pub until: Option<OffsetDateTime>,
}

impl TrafficFilter {
    /// Only requests carried by this token.
    #[must_use]
    pub const fn token(mut self, id: TokenId) -> Self {
        self.token = Some(id);
        self
    }

    /// Only requests carried by secondaries named `name` (case ignored).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only requests at or after `at`.
    #[must_use]
    pub const fn since(mut self, at: OffsetDateTime) -> Self {
        self.since = Some(at);
        self
    }

    /// Only requests before `at`.
    #[must_use]
    pub const fn until(mut self, at: OffsetDateTime) -> Self {
        self.until = Some(at);
        self
    }

    const fn windowed(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }
}

/// Accepted requests to an endpoint by one token and method.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Traffic {
    /// The token that carried them.
    pub token: TokenId,
    /// The secondary's name (the integrating application); `None` for a primary, or a token
    /// since purged.
    pub name: Option<String>,
    /// Whether the token is a primary.
    pub primary: bool,
    /// The method.
    pub method: Method,
    /// Accepted requests.
    pub count: u64,
    /// The first of them.
    pub first_seen: Option<OffsetDateTime>,
    /// The last of them.
    pub last_seen: Option<OffsetDateTime>,
}

impl TokenService {
    /// Endpoint tokens.
    pub const fn endpoint(&self) -> EndpointTokens<'_> {
        EndpointTokens { svc: self }
    }
}

impl EndpointTokens<'_> {
    fn mint_primary(
        &self,
        endpoint: &EndpointId,
        method: Method,
        by: &Principal,
    ) -> Result<(Secret, TokenRecord)> {
        self.svc.mint(
            Kind::Endpoint,
            Spelling::Prefixed,
            KindData::Endpoint(EndpointData::Primary {
                endpoint: endpoint.clone(),
                method,
            }),
            UsageLimit::Unlimited,
            None,
            by.actor(),
            None,
            self.svc.now(),
        )
    }

    async fn primaries_in_force(&self, endpoint: &EndpointId) -> Result<Vec<TokenRecord>> {
        Ok(self
            .svc
            .inner
            .store
            .list(
                &TokenFilter::default()
                    .kind(Kind::Endpoint)
                    .endpoint(endpoint.clone())
                    .states([State::Active, State::Superseded, State::Disabled]),
            )
            .await?)
    }

    /// Whether token authentication was ever set up for `endpoint`: a primary, in any state
    /// (turned off included), was issued for it and not purged since.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn was_set_up(&self, endpoint: &EndpointId) -> Result<bool> {
        Ok(!self
            .svc
            .inner
            .store
            .list(
                &TokenFilter::default()
                    .kind(Kind::Endpoint)
                    .endpoint(endpoint.clone()),
            )
            .await?
            .is_empty())
    }

    /// Refuse an endpoint that was never set up.
    async fn set_up(&self, endpoint: &EndpointId) -> Result<()> {
        if self.was_set_up(endpoint).await? {
            return Ok(());
        }
        Err(Error::NoSuchEndpoint {
            endpoint: endpoint.to_string(),
        })
    }

    /// Turn token authentication on for an endpoint: generates the GET and POST primaries, and
    /// DELETE when the endpoint allows deleting.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when it is already on; store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn enable(
        &self,
        endpoint: &EndpointId,
        allow_delete: bool,
        by: &Principal,
    ) -> Result<Vec<(Method, Issued)>> {
        if !self.primaries_in_force(endpoint).await?.is_empty() {
            return Err(Error::Unsupported(
                "token authentication is already on for this endpoint; regenerate a primary instead",
            ));
        }
        let now = self.svc.now();
        let mut minted = Vec::new();
        for m in Method::primaries(allow_delete) {
            minted.push((*m, self.mint_primary(endpoint, *m, by)?));
        }
        let methods: Vec<Method> = minted.iter().map(|(m, _)| *m).collect();
        let enabled = AuditEvent::new(
            now,
            by.actor(),
            AuditAction::EndpointEnabled { allow_delete },
        )
        .at_endpoint(endpoint);
        let issued = self
            .svc
            .store_all_issued(
                minted.into_iter().map(|(_, t)| t).collect(),
                &[enabled],
                now,
            )
            .await?;
        Ok(methods.into_iter().zip(issued).collect())
    }

    /// Allow or disallow deleting on an endpoint: allowing creates its DELETE primary (returned),
    /// disallowing revokes it.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when token authentication is off; store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn set_allow_delete(
        &self,
        endpoint: &EndpointId,
        allow: bool,
        by: &Principal,
    ) -> Result<Option<Issued>> {
        let primaries = self.primaries_in_force(endpoint).await?;
        if primaries.is_empty() {
            return Err(Error::Unsupported(
                "token authentication is off for this endpoint; enable it first",
            ));
        }
        let delete: Vec<&TokenRecord> = primaries
            .iter()
            .filter(|r| {
                matches!(
                    &r.data,
                    KindData::Endpoint(EndpointData::Primary {
                        method: Method::Delete,
                        ..
                    })
                )
            })
            .collect();
        let event = AuditEvent::new(
            self.svc.now(),
            by.actor(),
            AuditAction::DeleteAllowed { allowed: allow },
        )
        .at_endpoint(endpoint);
        if allow {
            if !delete.is_empty() {
                return Ok(None);
            }
            let now = self.svc.now();
            let (secret, record) = self.mint_primary(endpoint, Method::Delete, by)?;
            let mut issued = self
                .svc
                .store_all_issued(vec![(secret, record)], &[event], now)
                .await?;
            return Ok(issued.pop());
        }
        // The act's event commits with the first revocation it causes.
        let mut also = vec![event];
        for r in delete {
            self.svc
                .transition_with(
                    Some(Kind::Endpoint),
                    r.id,
                    Action::Revoke,
                    by.actor(),
                    &also,
                )
                .await?;
            also.clear();
        }
        Ok(None)
    }

    /// Turn token authentication off: revokes every primary of the endpoint and removes the
    /// secondaries' mappings to it.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchEndpoint`] when the endpoint was never set up; store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn disable(&self, endpoint: &EndpointId, by: &Principal) -> Result<()> {
        self.set_up(endpoint).await?;
        let primaries = self.primaries_in_force(endpoint).await?;
        // The act's event commits with the first revocation it causes.
        let mut also = vec![
            AuditEvent::new(self.svc.now(), by.actor(), AuditAction::EndpointDisabled)
                .at_endpoint(endpoint),
        ];
        for r in primaries {
            self.svc
                .transition_with(
                    Some(Kind::Endpoint),
                    r.id,
                    Action::Revoke,
                    by.actor(),
                    &also,
                )
                .await?;
            also.clear();
        }
        for m in self.svc.inner.store.mappings(None, Some(endpoint)).await? {
            let mut event = AuditEvent::new(self.svc.now(), by.actor(), AuditAction::Unmapped)
                .endpoint(&m.endpoint, m.method);
            match self.svc.inner.store.get(m.secondary).await? {
                Some(secondary) => event = event.about(&secondary),
                None => event.subject.token = Some(m.secondary),
            }
            self.svc
                .inner
                .store
                .remove_mapping(m.secondary, &m.endpoint, m.method, &[event])
                .await?;
        }
        Ok(())
    }

    /// The endpoint's primaries in force (none when token authentication is off, or was never
    /// set up: tell the two apart with [`was_set_up`](Self::was_set_up)).
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn primaries(&self, endpoint: &EndpointId) -> Result<Vec<(Method, TokenSummary)>> {
        let now = self.svc.now();
        Ok(self
            .primaries_in_force(endpoint)
            .await?
            .iter()
            .filter_map(|r| match &r.data {
                KindData::Endpoint(EndpointData::Primary { method, .. }) => {
                    Some((*method, r.summary(now)))
                }
                _ => None,
            })
            .collect())
    }

    /// Regenerate the primary of `method` (the console's Generate button). The old one is
    /// refused at once, or after `grace`.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when the endpoint has no active primary for the method.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn regenerate_primary(
        &self,
        endpoint: &EndpointId,
        method: Method,
        grace: Option<Duration>,
        by: &Principal,
    ) -> Result<Issued> {
        let current = self
            .primaries_in_force(endpoint)
            .await?
            .into_iter()
            .find(|r| {
                r.state == State::Active
                    && matches!(&r.data, KindData::Endpoint(EndpointData::Primary { method: m, .. }) if *m == method)
            })
            .ok_or(Error::Unsupported(
                "the endpoint has no active primary for this method; enable token authentication or allow deleting",
            ))?;
        self.svc.rotate(current.id, grace, by).await
    }

    /// Create a secondary token: 64 random alphanumerics, enabled, mapped nowhere yet.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn create_secondary(
        &self,
        name: TokenName,
        description: Description,
        by: &Principal,
    ) -> Result<Issued> {
        let now = self.svc.now();
        let (secret, record) = self.svc.mint(
            Kind::Endpoint,
            Spelling::Plain64,
            KindData::Endpoint(EndpointData::Secondary {
                name,
                description,
                enabled: true,
            }),
            UsageLimit::Unlimited,
            None,
            by.actor(),
            None,
            now,
        )?;
        self.svc.store_issued(secret, record, now).await
    }

    async fn secondary(&self, id: TokenId) -> Result<TokenRecord> {
        let r = self.svc.record(Kind::Endpoint, id).await?;
        if matches!(r.data, KindData::Endpoint(EndpointData::Secondary { .. })) {
            Ok(r)
        } else {
            Err(Error::NoSuchToken {
                kind: Some(Kind::Endpoint),
                id: id.to_string(),
            })
        }
    }

    /// Give a secondary a new value in place (the rotate arrow): same id, same mappings; the
    /// old value stops working at once.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`] when `id` is not a secondary.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn regenerate_secondary(&self, id: TokenId, by: &Principal) -> Result<Secret> {
        let mut r = self.secondary(id).await?;
        let now = self.svc.now();
        let secret = Secret::generate_with(
            Kind::Endpoint,
            Spelling::Plain64,
            self.svc.inner.settings.entropy,
        )?;
        let presented = tessera_core::format::parse(Kind::Endpoint, secret.expose_secret())
            .map_err(tessera_core::Error::from)?;
        let digest = self.svc.inner.peppers.current().digest(&presented);
        let hint = presented.hint();
        drop(presented);
        // The event names the token by its new hint, as it is stored after the change.
        r.hint = hint.clone();
        let event =
            AuditEvent::new(now, by.actor(), AuditAction::Rotated { successor: id }).about(&r);
        self.svc
            .inner
            .store
            .set_digest(id, &digest, &hint, &[event])
            .await?;
        Ok(secret)
    }

    /// Flip a secondary's enabled toggle.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`] when `id` is not a secondary.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn set_enabled(&self, id: TokenId, enabled: bool, by: &Principal) -> Result<()> {
        let r = self.secondary(id).await?;
        let KindData::Endpoint(EndpointData::Secondary {
            name, description, ..
        }) = r.data.clone()
        else {
            return Err(Error::NoSuchToken {
                kind: Some(Kind::Endpoint),
                id: id.to_string(),
            });
        };
        let data = KindData::Endpoint(EndpointData::Secondary {
            name,
            description,
            enabled,
        });
        let event =
            AuditEvent::new(self.svc.now(), by.actor(), AuditAction::Toggled { enabled }).about(&r);
        self.svc
            .inner
            .store
            .update_data(id, &data, &[event])
            .await?;
        Ok(())
    }

    /// Deactivate a secondary (it leaves the default listing and is refused).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; a transition error unless active.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn deactivate(&self, id: TokenId, by: &Principal) -> Result<()> {
        self.secondary(id).await?;
        self.svc
            .transition(Some(Kind::Endpoint), id, Action::Disable, by.actor())
            .await?;
        Ok(())
    }

    /// Activate a deactivated secondary.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; a transition error unless deactivated.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn activate(&self, id: TokenId, by: &Principal) -> Result<()> {
        self.secondary(id).await?;
        self.svc
            .transition(Some(Kind::Endpoint), id, Action::Enable, by.actor())
            .await?;
        Ok(())
    }

    /// Map a secondary to the primary of (`endpoint`, `method`), enabled.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; [`Error::Unsupported`] when the endpoint has no primary for the
    /// method; `AlreadyExists` from the store when mapped already.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn map(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        by: &Principal,
    ) -> Result<Mapping> {
        let r = self.secondary(secondary).await?;
        let has_primary = self.primaries_in_force(endpoint).await?.iter().any(|p| {
            matches!(&p.data, KindData::Endpoint(EndpointData::Primary { method: m, .. }) if *m == method)
        });
        if !has_primary {
            return Err(Error::Unsupported(
                "the endpoint has no primary for this method; enable token authentication (and allow deleting for DELETE) first",
            ));
        }
        let mapping = Mapping {
            secondary,
            endpoint: endpoint.clone(),
            method,
            enabled: true,
        };
        let event = AuditEvent::new(self.svc.now(), by.actor(), AuditAction::Mapped)
            .about(&r)
            .endpoint(endpoint, method);
        match self.svc.inner.store.put_mapping(&mapping, &[event]).await {
            Ok(()) => Ok(mapping),
            Err(StoreError::AlreadyExists { .. }) => Err(Error::Unsupported(
                "the secondary is already mapped to this endpoint and method; turn the mapping on or off with map-enable or map-disable",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove a mapping.
    ///
    /// # Errors
    ///
    /// `NotFound` from the store when there is no such mapping.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn unmap(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        by: &Principal,
    ) -> Result<()> {
        let r = self.secondary(secondary).await?;
        let event = AuditEvent::new(self.svc.now(), by.actor(), AuditAction::Unmapped)
            .about(&r)
            .endpoint(endpoint, method);
        self.svc
            .inner
            .store
            .remove_mapping(secondary, endpoint, method, &[event])
            .await?;
        Ok(())
    }

    /// Turn one mapping on or off: off stops that integration alone.
    ///
    /// # Errors
    ///
    /// `NotFound` from the store when there is no such mapping.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn set_mapping_enabled(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        enabled: bool,
        by: &Principal,
    ) -> Result<Mapping> {
        let r = self.secondary(secondary).await?;
        let event = AuditEvent::new(
            self.svc.now(),
            by.actor(),
            AuditAction::MappingToggled { enabled },
        )
        .about(&r)
        .endpoint(endpoint, method);
        let m = self
            .svc
            .inner
            .store
            .set_mapping_enabled(secondary, endpoint, method, enabled, &[event])
            .await?;
        Ok(m)
    }

    /// Secondaries, active only by default; with `hide_unassigned`, only those assigned to the
    /// endpoint in view (or, with none in view, to any endpoint).
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn secondaries(&self, filter: SecondaryFilter) -> Result<Vec<SecondaryListing>> {
        let now = self.svc.now();
        let states = if filter.include_inactive {
            vec![State::Active, State::Disabled]
        } else {
            vec![State::Active]
        };
        let records = self
            .svc
            .inner
            .store
            .list(&TokenFilter::default().kind(Kind::Endpoint).states(states))
            .await?;
        // Every mapping in one read (not one per secondary): the listing is two reads however
        // many secondaries there are.
        let mut by_secondary: std::collections::HashMap<TokenId, Vec<Mapping>> =
            std::collections::HashMap::new();
        if !records.is_empty() {
            for m in self.svc.inner.store.mappings(None, None).await? {
                by_secondary.entry(m.secondary).or_default().push(m);
            }
        }
        let mut out = Vec::new();
        for r in records {
            let KindData::Endpoint(EndpointData::Secondary {
                description,
                enabled,
                ..
            }) = &r.data
            else {
                continue;
            };
            let mappings = by_secondary.remove(&r.id).unwrap_or_default();
            let assigned = match &filter.endpoint {
                Some(ep) => mappings.iter().any(|m| &m.endpoint == ep),
                None => !mappings.is_empty(),
            };
            if filter.hide_unassigned && !assigned {
                continue;
            }
            out.push(SecondaryListing {
                token: r.summary(now),
                description: description.clone(),
                enabled: *enabled,
                mappings,
            });
        }
        Ok(out)
    }

    /// Check a request to `endpoint` with `method` carrying `token`: accepted with the
    /// endpoint's primary for the method, or with an enabled, active secondary whose mapping to
    /// that primary is enabled. Accepted requests are counted per token, so
    /// [`traffic`](Self::traffic) shows which application talks to the endpoint.
    ///
    /// # Errors
    ///
    /// Store failures. A refused token is `Ok(Err(rejection))`. This is
    /// [`TokenService::validate`] with [`RequestContext::endpoint`] (and
    /// [`client`](RequestContext::client)).
    pub async fn check(
        &self,
        endpoint: &EndpointId,
        method: Method,
        token: &str,
        ip: Option<IpAddr>,
    ) -> Result<Result<EndpointAccess, Rejection>> {
        let mut request = RequestContext::new().endpoint(endpoint, method);
        if let Some(ip) = ip {
            request = request.client(ip);
        }
        narrow(self.svc.validate(token, &request).await, |a| match a {
            Access::Endpoint(a) => Some(a),
            _ => None,
        })
    }

    pub(crate) async fn accept(
        &self,
        endpoint: &EndpointId,
        method: Method,
        token: &str,
        ip: Option<IpAddr>,
    ) -> Result<Result<EndpointAccess, Rejection>> {
        let ip = ip.map(tessera_core::net::canonical);
        let found = found_or_refuse!(self.svc, Kind::Endpoint, token);
        let (record, now) = (&*found.record, found.now);
        let mapping = match &record.data {
            KindData::Endpoint(EndpointData::Secondary { .. }) => {
                self.svc
                    .inner
                    .store
                    .mapping(record.id, endpoint, method)
                    .await?
            }
            _ => None,
        };
        let event = || {
            self.svc
                .use_event(record, now)
                .endpoint(endpoint, method)
                .ip(ip)
        };
        let request = Request::Endpoint {
            endpoint,
            method,
            mapping: mapping.as_ref(),
        };
        let accepted = match validate::validate(record, &request, now) {
            Ok(a) => a,
            Err(rej) => {
                self.svc
                    .refused(&found, rej, ip, Some((endpoint, method)), event);
                return Ok(Err(rej));
            }
        };
        self.svc.used(
            &found,
            Some(Subject::Endpoint(endpoint, method)),
            ip,
            Some((endpoint, method)),
            event,
        );
        let carrier = match &record.data {
            KindData::Endpoint(EndpointData::Secondary { name, .. }) => {
                Carrier::Secondary { name: name.clone() }
            }
            _ => Carrier::Primary,
        };
        Ok(Ok(EndpointAccess {
            token: accepted.token,
            carrier,
            in_grace: accepted.in_grace,
        }))
    }

    /// Accepted requests per token on an endpoint: which application talks to it.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn traffic(&self, endpoint: &EndpointId) -> Result<Vec<UsageEntry>> {
        let _steady = self.svc.inner.ledger.steady().await;
        let stored = self.svc.inner.store.endpoint_usage(endpoint).await?;
        Ok(merge_waiting(
            stored,
            self.svc.inner.ledger.waiting_endpoint(endpoint),
        ))
    }

    /// Accepted requests to an endpoint per token and method, filtered as the data viewer
    /// filters (by token, by secondary name, by time window), each with the carrier's name.
    /// Without a window the counts come from the usage ledger; a window is answered from the
    /// audit trail of uses, which counts every accepted request with its time: exactly with
    /// [`LedgerSettings::audit_each_use`](crate::LedgerSettings::audit_each_use), else to the
    /// aggregated rows' window ([`LedgerSettings::audit_window`](crate::LedgerSettings::audit_window),
    /// a minute by default: a row's uses count at its first).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchEndpoint`] when the endpoint was never set up; [`Error::Unsupported`] for
    /// a time window when the service does not audit uses
    /// ([`Builder::audit_uses`](crate::Builder::audit_uses)); store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "endpoint"),
        err(level = "warn")
    )]
    pub async fn traffic_filtered(
        &self,
        endpoint: &EndpointId,
        filter: &TrafficFilter,
    ) -> Result<Vec<Traffic>> {
        self.set_up(endpoint).await?;
        let mut rows: Vec<Traffic> = Vec::new();
        if filter.windowed() {
            if !self.svc.inner.settings.audit_uses {
                return Err(Error::Unsupported(
                    "a time window is counted from the audit trail of uses, which this service does not keep; turn audit_uses on",
                ));
            }
            let mut events = AuditFilter::default();
            events.token = filter.token;
            events.since = filter.since;
            events.until = filter.until;
            for e in self.svc.events(&events).await? {
                let (count, last) = match &e.action {
                    AuditAction::Used => (1, e.at),
                    // An aggregated row counts where its first use falls (rows span one
                    // audit window, `LedgerSettings::audit_window`: a minute by default).
                    AuditAction::UsedMany { count, last, .. } => (*count, *last),
                    _ => continue,
                };
                let (Some(token), Some(ep), Some(method)) =
                    (e.subject.token, &e.subject.endpoint, e.subject.method)
                else {
                    continue;
                };
                if ep != endpoint {
                    continue;
                }
                match rows
                    .iter_mut()
                    .find(|t| t.token == token && t.method == method)
                {
                    Some(t) => {
                        t.count += count;
                        t.first_seen = t.first_seen.min(Some(e.at));
                        t.last_seen = t.last_seen.max(Some(last));
                    }
                    None => rows.push(Traffic {
                        token,
                        name: None,
                        primary: false,
                        method,
                        count,
                        first_seen: Some(e.at),
                        last_seen: Some(last),
                    }),
                }
            }
        } else {
            let merged = {
                let _steady = self.svc.inner.ledger.steady().await;
                let stored = self.svc.inner.store.endpoint_usage(endpoint).await?;
                merge_waiting(stored, self.svc.inner.ledger.waiting_endpoint(endpoint))
            };
            for u in merged {
                let UsageSubject::Endpoint(_, method) = u.subject else {
                    continue;
                };
                if filter.token.is_some_and(|t| t != u.token) {
                    continue;
                }
                rows.push(Traffic {
                    token: u.token,
                    name: None,
                    primary: false,
                    method,
                    count: u.count,
                    first_seen: u.first_seen,
                    last_seen: u.last_seen,
                });
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for mut t in rows {
            if let Some(r) = self.svc.inner.store.get(t.token).await? {
                match &r.data {
                    KindData::Endpoint(EndpointData::Secondary { name, .. }) => {
                        t.name = Some(name.as_str().to_owned());
                    }
                    _ => t.primary = true,
                }
            }
            if let Some(want) = &filter.name {
                if !t
                    .name
                    .as_ref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(want))
                {
                    continue;
                }
            }
            out.push(t);
        }
        Ok(out)
    }
}

/// Stored usage entries with the counts this process has not written yet added in.
fn merge_waiting(mut stored: Vec<UsageEntry>, waiting: Vec<UsageEntry>) -> Vec<UsageEntry> {
    for w in waiting {
        match stored
            .iter_mut()
            .find(|e| e.token == w.token && e.subject == w.subject)
        {
            Some(e) => {
                e.count += w.count;
                e.first_seen = match (e.first_seen, w.first_seen) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                e.last_seen = e.last_seen.max(w.last_seen);
            }
            None => stored.push(w),
        }
    }
    stored
}
