//! Operations every kind shares: look up, rotate, revoke, sweep, clean up, notify, audit.

use tessera_core::Kind;
use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::id::TokenId;
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
#[derive(Debug)]
pub struct Renewal {
    /// The expired token.
    pub expired: TokenId,
    /// The successor, valid 90 days; `None` in a dry run. Its secret is shown here once.
    pub successor: Option<Issued>,
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
    pub async fn token(&self, id: TokenId) -> Result<TokenSummary> {
        let now = self.now();
        match self.inner.store.get(id).await? {
            Some(r) => Ok(r.summary(now)),
            None => Err(Error::NoSuchToken {
                kind: None,
                id: id.to_string(),
            }),
        }
    }

    /// Every token matching `filter`, oldest first.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenSummary>> {
        let now = self.now();
        Ok(self
            .inner
            .store
            .list(filter)
            .await?
            .iter()
            .map(|r| r.summary(now))
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
        let (secret, new) = self.mint(
            old.kind(),
            old.spelling,
            old.data.clone(),
            limit,
            old.expires_at,
            by.actor(),
            old.generated_by.clone(),
            now,
        )?;
        let change = StateChange {
            grace_until,
            successor: Some(new.id),
            ..StateChange::new(old.state, to, now)
        };
        let events = [
            issued_event(&new),
            AuditEvent::new(now, by.actor(), AuditAction::Rotated { successor: new.id })
                .token(old.id, old.kind(), &old.hint)
                .generated_by(old.generated_by.clone()),
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
    pub async fn exhausted(&self) -> Result<Vec<TokenSummary>> {
        self.list(&TokenFilter::default().states([State::Exhausted]))
            .await
    }

    /// Apply the time-driven rules to every token: expiry (renewing auto-renewing deployment
    /// tokens), the end of grace windows, and application-token dormancy and deletion. Safe to
    /// run from several instances at once: each change is a compare-and-set, so each happens
    /// once. With `dry_run`, report what would happen and write nothing.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn sweep(&self, dry_run: bool) -> Result<SweepReport> {
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
    async fn renew(&self, old: &TokenRecord, now: OffsetDateTime) -> Result<Option<Issued>> {
        let (secret, new) = self.mint(
            Kind::Deployment,
            old.spelling,
            old.data.clone(),
            UsageLimit::Unlimited,
            Some(tessera_core::kind::deployment::successor_expiry(now)),
            Actor::System,
            None,
            now,
        )?;
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
            .token(old.id, old.kind(), &old.hint),
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
        Ok(Some(Issued {
            secret,
            token: new.summary(now),
        }))
    }

    /// Remove for good the tokens that can never be accepted again (expired, exhausted,
    /// rotated out, revoked, deleted) and were last active more than `retention` ago, with
    /// their usage and mappings. The audit trail stays. Returns the purged ids.
    ///
    /// # Errors
    ///
    /// Store failures.
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
        let ids: Vec<TokenId> = self
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
            .map(|r| r.id)
            .collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        let events: Vec<AuditEvent> = ids
            .iter()
            .map(|id| {
                let mut event = AuditEvent::new(now, by.actor(), AuditAction::Purged);
                event.subject.token = Some(*id);
                event
            })
            .collect();
        self.inner.store.purge(&ids, &events).await?;
        Ok(ids)
    }

    /// The audit trail, oldest first.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        Ok(self.inner.store.events(filter).await?)
    }
}
