//! Operations every kind shares: look up, rotate, revoke, sweep, clean up, notify, audit.

use std::collections::HashMap;

use tessera_core::Kind;
use tessera_core::audit::{Actor, AuditAction, AuditEvent, RowKey};
use tessera_core::id::{TokenId, UserId};
use tessera_core::kind::onboarding::UsageLimit;
use tessera_core::kind::{EndpointData, KindData};
use tessera_core::lifecycle::{Action, State};
use tessera_core::record::{TokenRecord, TokenSummary};
use tessera_store::{AuditFilter, StateChange, StoreError, TokenFilter};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::principal::Principal;
use crate::service::{Issued, TokenService, change_event, issued_event};

/// An auto-renewing deployment token that expired and its successor.
///
/// The successor's secret is not here: it is kept sealed, and
/// [`DeploymentTokens::command`](crate::deployment::DeploymentTokens::command) renders the
/// installer command with it whenever it is needed, so a scheduled sweep's output (cron mail,
/// a log file) never carries a secret.
#[derive(Clone, Debug)]
pub struct Renewal {
    /// The expired token.
    pub expired: TokenId,
    /// The successor, valid 90 days; `None` in a dry run.
    pub successor: Option<TokenSummary>,
}

/// What a [`TokenService::reseal`] did.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ResealReport {
    /// Tokens whose secret is now sealed under the current pepper.
    pub resealed: Vec<TokenId>,
    /// Tokens whose sealed secret could not be opened (sealed under a pepper no longer
    /// configured, or not under the one configured with its key id): left as they were; their
    /// secret cannot be shown again.
    pub unreadable: Vec<TokenId>,
}

/// What a [`TokenService::sweep`] did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Tokens that passed their expiry.
    pub expired: Vec<TokenId>,
    /// Auto-renewing deployment tokens renewed.
    pub renewed: Vec<Renewal>,
    /// Rotated tokens whose grace window ended.
    pub retired: Vec<TokenId>,
    /// Application tokens unused long enough to go dormant.
    pub dormant: Vec<TokenId>,
    /// Application tokens unused long enough to be deleted for good.
    pub deleted: Vec<TokenId>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl TokenService {
    /// The summary of any token.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`] when no token has this id.
    #[tracing::instrument(level = "info", skip_all, err(level = "warn"))]
    pub async fn token(&self, id: TokenId) -> Result<TokenSummary> {
        let now = self.now();
        match self.inner.store.get(id).await? {
            Some(r) => Ok(self.summary(&r, now)),
            None => Err(Error::NoSuchToken {
                kind: None,
                id: id.to_string(),
            }),
        }
    }

    /// Every token matching `filter`, oldest first.
    ///
    /// A state filter matches the state each summary shows, the effective state at this
    /// moment: `Dormant` finds an application token dormant only by inactivity (no sweep
    /// recorded it yet), `Expired` one whose expiry has passed, and `Active` finds neither.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(level = "info", skip_all, err(level = "warn"))]
    pub async fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenSummary>> {
        let now = self.now();
        // The stored state is not the shown one (expiry, inactivity): ask the store for every
        // state and keep the summaries whose shown state was asked for.
        let wanted = filter.states.as_deref();
        let stored = match wanted {
            Some(_) => {
                let mut every_state = filter.clone();
                every_state.states = None;
                self.inner.store.list(&every_state).await?
            }
            None => self.inner.store.list(filter).await?,
        };
        Ok(stored
            .iter()
            .map(|r| self.summary(r, now))
            .filter(|s| wanted.is_none_or(|w| w.contains(&s.state)))
            .collect())
    }

    /// Rotate a token of any kind: issue a successor with the same settings and retire the
    /// old one, at once (`grace` = `None`) or when `grace` has passed, during which both work.
    /// An onboarding successor carries only the uses left. Endpoint secondaries keep their id
    /// and mappings: regenerate them with
    /// [`EndpointTokens::regenerate_secondary`](crate::endpoint::EndpointTokens::regenerate_secondary).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; a transition error unless the token is active (or, without
    /// grace, disabled or dormant); [`Error::Unsupported`] for endpoint secondaries.
    #[tracing::instrument(level = "info", skip_all, err(level = "warn"))]
    pub async fn rotate(
        &self,
        id: TokenId,
        grace: Option<Duration>,
        by: &Principal,
    ) -> Result<Issued> {
        let now = self.now();
        let old = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or_else(|| Error::NoSuchToken {
                kind: None,
                id: id.to_string(),
            })?;
        if matches!(old.data, KindData::Endpoint(EndpointData::Secondary { .. })) {
            return Err(Error::Unsupported(
                "endpoint secondary tokens are regenerated in place, keeping their mappings; use regenerate_secondary",
            ));
        }
        let (action, grace_until) = match grace {
            Some(g) if g > Duration::ZERO => (Action::Supersede, Some(now + g)),
            _ => (Action::Retire, None),
        };
        let to = old.state.apply(action)?;
        let limit = match old.limit.remaining(old.uses) {
            Some(left) => UsageLimit::uses(left)?,
            None => UsageLimit::Unlimited,
        };
        let (secret, mut new) = self.mint(
            old.kind(),
            old.spelling,
            old.data.clone(),
            limit,
            old.expires_at,
            by.actor(),
            old.generated_by.clone(),
            now,
        )?;
        if old.sealed.is_some() {
            self.seal_into(&secret, &mut new)?;
        }
        let change = StateChange {
            grace_until,
            successor: Some(new.id),
            ..StateChange::new(old.state, to, now)
        };
        let events = [
            issued_event(&new),
            AuditEvent::new(now, by.actor(), AuditAction::Rotated { successor: new.id })
                .about(&old),
            change_event(&old, old.state, to, by.actor(), now),
        ];
        self.inner.store.replace(id, &change, &new, &events).await?;
        Ok(Issued {
            secret,
            token: new.summary(now),
        })
    }

    /// Revoke a token of any kind: it is refused from now on, for good.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; a transition error when it is already revoked or deleted.
    #[tracing::instrument(level = "info", skip_all, err(level = "warn"))]
    pub async fn revoke(&self, id: TokenId, by: &Principal) -> Result<TokenSummary> {
        let r = self
            .transition(None, id, Action::Revoke, by.actor())
            .await?;
        Ok(r.summary(self.now()))
    }

    /// Tokens whose expiry falls within `window` from now and are still in force (to notify
    /// their owners).
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(level = "info", skip_all, err(level = "warn"))]
    pub async fn expiring_within(&self, window: Duration) -> Result<Vec<TokenSummary>> {
        let now = self.now();
        let filter = TokenFilter::default()
            .states([State::Active, State::Superseded])
            .expires_before(now + window);
        Ok(self
            .inner
            .store
            .list(&filter)
            .await?
            .iter()
            .filter(|r| r.expires_at.is_some_and(|e| e > now))
            .map(|r| r.summary(now))
            .collect())
    }

    /// Tokens whose usage limit is reached.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(level = "info", skip_all, err(level = "warn"))]
    pub async fn exhausted(&self) -> Result<Vec<TokenSummary>> {
        self.list(&TokenFilter::default().states([State::Exhausted]))
            .await
    }

    /// Apply the time-driven rules to every token: expiry (renewing auto-renewing deployment
    /// tokens), the end of grace windows, and application-token dormancy and deletion. Safe to
    /// run from several instances at once: each change is a compare-and-set, so each happens
    /// once. With `dry_run`, report what would happen and write nothing.
    ///
    /// The usage ledger of this service is written first, so the last uses it holds count
    /// (another instance's are written within its ledger interval).
    ///
    /// # Errors
    ///
    /// Store failures (also when the ledger cannot be written: nothing is swept then, so no
    /// token in use goes dormant for want of its last use).
    #[tracing::instrument(level = "info", skip_all, err(level = "warn"))]
    pub async fn sweep(&self, dry_run: bool) -> Result<SweepReport> {
        self.inner.ledger.flush().await?;
        let now = self.now();
        let filter = TokenFilter::default().states([
            State::Active,
            State::Disabled,
            State::Dormant,
            State::Superseded,
        ]);
        let mut report = SweepReport {
            dry_run,
            ..SweepReport::default()
        };
        for r in self.inner.store.list(&filter).await? {
            if r.state == State::Superseded && r.grace_until.is_none_or(|g| g <= now) {
                if dry_run || self.sweep_step(&r, State::RotatedOut, now).await? {
                    report.retired.push(r.id);
                }
            } else if r.expires_at.is_some_and(|e| e <= now) {
                if let KindData::Deployment(d) = &r.data {
                    if tessera_core::kind::deployment::due_for_renewal(d, r.expires_at, now)
                        && r.state == State::Active
                    {
                        let successor = if dry_run {
                            None
                        } else {
                            self.renew(&r, now).await?
                        };
                        if dry_run || successor.is_some() {
                            report.renewed.push(Renewal {
                                expired: r.id,
                                successor,
                            });
                        }
                        continue;
                    }
                }
                if dry_run || self.sweep_step(&r, State::Expired, now).await? {
                    report.expired.push(r.id);
                }
            } else if r.kind() == Kind::Application {
                match self
                    .inner
                    .settings
                    .inactivity
                    .decide(r.state, r.last_activity(), now)
                {
                    Some(Action::MarkDormant)
                        if dry_run || self.sweep_step(&r, State::Dormant, now).await? =>
                    {
                        report.dormant.push(r.id);
                    }
                    Some(Action::Delete)
                        if dry_run || self.sweep_step(&r, State::Deleted, now).await? =>
                    {
                        report.deleted.push(r.id);
                    }
                    _ => {}
                }
            }
        }
        Ok(report)
    }

    /// One compare-and-set step of the sweep; `false` when another caller changed it first.
    async fn sweep_step(&self, r: &TokenRecord, to: State, now: OffsetDateTime) -> Result<bool> {
        let event = change_event(r, r.state, to, Actor::System, now);
        match self
            .inner
            .store
            .change_state(r.id, &StateChange::new(r.state, to, now), &[event])
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict | StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Renew an expired auto-renewing deployment token: one atomic replace, so concurrent
    /// sweeps renew it once. `None` when another caller renewed it first.
    async fn renew(&self, old: &TokenRecord, now: OffsetDateTime) -> Result<Option<TokenSummary>> {
        let (secret, mut new) = self.mint(
            Kind::Deployment,
            old.spelling,
            old.data.clone(),
            UsageLimit::Unlimited,
            Some(tessera_core::kind::deployment::successor_expiry(now)),
            Actor::System,
            None,
            now,
        )?;
        self.seal_into(&secret, &mut new)?;
        drop(secret);
        let change = StateChange {
            successor: Some(new.id),
            ..StateChange::new(old.state, State::Expired, now)
        };
        let events = [
            issued_event(&new),
            change_event(old, old.state, State::Expired, Actor::System, now),
            AuditEvent::new(
                now,
                Actor::System,
                AuditAction::Renewed { successor: new.id },
            )
            .about(old),
        ];
        match self
            .inner
            .store
            .replace(old.id, &change, &new, &events)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        Ok(Some(new.summary(now)))
    }

    /// Seal every sealed secret that is sealed under an older pepper anew under the current
    /// one, so that the older pepper can be retired without losing the installer command or a
    /// re-showable QR code. Run it after making a new pepper current (the old one configured as
    /// previous). Secrets sealed under a pepper no longer configured cannot be opened: they are
    /// reported, not changed. Safe to run again and from several instances.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn reseal(&self) -> Result<ResealReport> {
        let current = self.inner.peppers.current().id();
        let mut report = ResealReport::default();
        for r in self.inner.store.list(&TokenFilter::default()).await? {
            let Some(sealed) = &r.sealed else { continue };
            if sealed.key() == current {
                continue;
            }
            match self.open(&r) {
                Ok(secret) => {
                    let fresh = self.inner.peppers.seal(r.id, &secret)?;
                    let event =
                        AuditEvent::new(self.now(), Actor::System, AuditAction::Resealed).about(&r);
                    match self
                        .inner
                        .store
                        .set_sealed(r.id, Some(&fresh), &[event])
                        .await
                    {
                        Ok(_) => report.resealed.push(r.id),
                        Err(StoreError::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(Error::Core(
                    tessera_core::Error::SealKeyRetired { .. }
                    | tessera_core::Error::SealBroken { .. }
                    | tessera_core::Error::SealedMalformed,
                )) => report.unreadable.push(r.id),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Remove for good the tokens that can never be accepted again (expired, exhausted,
    /// rotated out, revoked, deleted) and were last active more than `retention` ago, with
    /// their usage and mappings. The audit trail stays. Returns the purged ids.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(level = "info", skip_all, err(level = "warn"))]
    pub async fn cleanup(&self, retention: Duration, by: &Principal) -> Result<Vec<TokenId>> {
        let now = self.now();
        let filter = TokenFilter::default().states([
            State::Active,
            State::Expired,
            State::Exhausted,
            State::RotatedOut,
            State::Revoked,
            State::Deleted,
        ]);
        let dead: Vec<TokenRecord> = self
            .inner
            .store
            .list(&filter)
            .await?
            .into_iter()
            .filter(|r| {
                let dead = r.effective_state(now);
                matches!(
                    dead,
                    State::Expired
                        | State::Exhausted
                        | State::RotatedOut
                        | State::Revoked
                        | State::Deleted
                ) && r
                    .expires_at
                    .map_or_else(|| r.last_activity(), |e| e.max(r.last_activity()))
                    + retention
                    <= now
            })
            .collect();
        let ids: Vec<TokenId> = dead.iter().map(|r| r.id).collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        let events: Vec<AuditEvent> = dead
            .iter()
            .map(|r| AuditEvent::new(now, by.actor(), AuditAction::Purged).about(r))
            .collect();
        self.inner.store.purge(&ids, &events).await?;
        Ok(ids)
    }

    /// The audit trail `by` may read, oldest first, under the rule listings follow: an
    /// administrator reads every event; any other user reads the events about their own auth
    /// tokens, never another user's (an auth token's history names its owner in every event;
    /// one whose owner cannot be told is not shown), and the events about the other kinds, which
    /// are not owned by a user.
    ///
    /// # Errors
    ///
    /// [`Error::Forbidden`] when `filter` asks for another user's auth token and `by` is not an
    /// administrator; store failures.
    #[tracing::instrument(level = "info", skip_all, err(level = "warn"))]
    pub async fn audit(&self, filter: &AuditFilter, by: &Principal) -> Result<Vec<AuditEvent>> {
        if by.is_admin() {
            return self.events(filter).await;
        }
        // The limit counts the events the caller may read, so it is applied after the rule.
        let mut unlimited = filter.clone();
        let limit = unlimited.limit.take();
        let events = self.events(&unlimited).await?;
        let mut owners: HashMap<TokenId, Owner> = HashMap::new();
        if let Some(id) = filter.token {
            if self.owner_of(id, by, &mut owners).await? == Owner::Other {
                return Err(Error::Forbidden {
                    why: "only the token's owner or an administrator can read an auth token's history",
                });
            }
        }
        let mut out = Vec::new();
        for e in events {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            let readable = match e.subject.token {
                None => true,
                Some(id) => {
                    let owner = match &e.subject.owner {
                        Some(o) => Owner::of(o, by),
                        None => self.owner_of(id, by, &mut owners).await?,
                    };
                    owner != Owner::Other
                }
            };
            if readable {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Stored events passing `filter` with those the usage ledger has not written yet, oldest
    /// first, at most `filter.limit`.
    pub(crate) async fn events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let _steady = self.inner.ledger.steady().await;
        let waiting = self.inner.ledger.waiting_events(filter);
        if waiting.is_empty() {
            return Ok(self.inner.store.events(filter).await?);
        }
        let mut events = self.inner.store.events(filter).await?;
        // An aggregated row the ledger still holds replaces its stored version (the totals
        // written at an earlier batch of its window).
        let newer: std::collections::HashSet<RowKey> =
            waiting.iter().filter_map(|e| e.action.row()).collect();
        if !newer.is_empty() {
            events.retain(|e| e.action.row().is_none_or(|k| !newer.contains(&k)));
        }
        events.extend(waiting);
        // Stable: events at one instant keep their order, stored ones first.
        events.sort_by_key(|e| e.at);
        if let Some(limit) = filter.limit {
            events.truncate(limit);
        }
        Ok(events)
    }

    /// Whose token `id` is for `by`, from its record or, once purged, from its events;
    /// remembered in `known`. A token whose owner cannot be told counts as another user's.
    async fn owner_of(
        &self,
        id: TokenId,
        by: &Principal,
        known: &mut HashMap<TokenId, Owner>,
    ) -> Result<Owner> {
        if let Some(o) = known.get(&id) {
            return Ok(*o);
        }
        let owner = match self.inner.store.get(id).await? {
            Some(r) => match &r.data {
                KindData::Auth(a) => Owner::of(&a.owner, by),
                _ => Owner::Nobody,
            },
            None => self
                .inner
                .store
                .events(&AuditFilter::default().token(id))
                .await?
                .iter()
                .find_map(|e| match (&e.subject.owner, e.subject.kind) {
                    (Some(o), _) => Some(Owner::of(o, by)),
                    (None, Some(Kind::Auth)) => Some(Owner::Other),
                    (None, Some(_)) => Some(Owner::Nobody),
                    (None, None) => None,
                })
                .unwrap_or(Owner::Other),
        };
        known.insert(id, owner);
        Ok(owner)
    }
}

/// Whose a token is, seen by the caller of [`TokenService::audit`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Owner {
    /// An auth token of the caller's.
    Mine,
    /// Of a kind no user owns.
    Nobody,
    /// Another user's auth token, or one whose owner cannot be told.
    Other,
}

impl Owner {
    fn of(owner: &UserId, by: &Principal) -> Self {
        if owner == by.id() {
            Self::Mine
        } else {
            Self::Other
        }
    }
}
