//! Audit: append-only events, oldest first, narrowed by token, actor, time and count; a change
//! and its events commit together or not at all.

use std::sync::Arc;

use libtest_mimic::Failed;
use tessera_core::Kind;
use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::id::{Description, EndpointId, TokenId, TokenName};
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::kind::{EndpointData, KindData};
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use tessera_core::seal::Sealed;
use tessera_core::validate::Rejection;

use super::fixtures::{
    at, device, endpoint, event, fresh_seal, ip, mapping, record, secondary, user,
};
use super::{Case, Context, Outcome};
use crate::{AuditFilter, StateChange, Store, StoreError, UsageEntry};

pub(super) fn cases() -> Vec<Case> {
    cases![
        events_of_empty_store_are_empty,
        append_round_trips_every_field_and_action,
        events_are_oldest_first,
        events_at_one_instant_keep_append_order,
        events_filter_by_token,
        events_filter_by_actor,
        events_filter_since_inclusive_until_exclusive,
        events_limit_keeps_the_oldest,
        events_filters_combine_like_audit_filter_matches,
        changes_store_their_events_with_them,
        change_with_an_unstorable_event_is_undone,
        refused_change_stores_no_events,
    ]
}

/// A filter.
fn filter(
    token: Option<TokenId>,
    actor: Option<Actor>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
) -> AuditFilter {
    AuditFilter {
        token,
        actor,
        since: since.map(at),
        until: until.map(at),
        limit,
    }
}

/// Events of tokens `a` and `b` by several actors, one per second from `at(0)`.
fn population(a: TokenId, b: TokenId) -> Result<Vec<AuditEvent>, Failed> {
    let hint = super::fixtures::digest(Kind::Auth)?.1;
    let actors = [
        Actor::System,
        Actor::User(user("ann")?),
        Actor::Client,
        Actor::User(user("bob")?),
    ];
    let mut out = Vec::new();
    for i in 0..24i64 {
        let idx = usize::try_from(i)?;
        let mut e = AuditEvent::new(at(i), actors[idx % actors.len()].clone(), AuditAction::Used);
        e = match i % 3 {
            0 => e.token(a, Kind::Auth, &hint),
            1 => e.token(b, Kind::Auth, &hint),
            _ => e,
        };
        out.push(e);
    }
    Ok(out)
}

async fn append_all(store: &dyn Store, events: &[AuditEvent]) -> Outcome {
    for e in events {
        store.append(e).await.ctx("append")?;
    }
    Ok(())
}

/// A store with no events returns none.
async fn events_of_empty_store_are_empty(store: Arc<dyn Store>) -> Outcome {
    ensure!(
        store
            .events(&AuditFilter::default())
            .await
            .ctx("events")?
            .is_empty(),
        "events"
    );
    Ok(())
}

/// Every field of every kind of event comes back as appended.
async fn append_round_trips_every_field_and_action(store: Arc<dyn Store>) -> Outcome {
    let id = TokenId::generate()?;
    let other = TokenId::generate()?;
    let (_, hint) = super::fixtures::digest(Kind::Onboarding)?;
    let nasty = user("Zoë 'admin'; -- \"root\" 名")?;
    let actions = [
        AuditAction::Issued,
        AuditAction::Used,
        AuditAction::Refused {
            reason: Rejection::DeviceMismatch,
        },
        AuditAction::Refused {
            reason: Rejection::IpBlocked,
        },
        AuditAction::StateChanged {
            from: State::Active,
            to: State::Superseded,
        },
        AuditAction::StateChanged {
            from: State::Dormant,
            to: State::Deleted,
        },
        AuditAction::Rotated { successor: other },
        AuditAction::Renewed { successor: other },
        AuditAction::Mapped,
        AuditAction::Unmapped,
        AuditAction::MappingToggled { enabled: false },
        AuditAction::MappingToggled { enabled: true },
        AuditAction::Toggled { enabled: false },
        AuditAction::Toggled { enabled: true },
        AuditAction::IpBlocked,
        AuditAction::IpUnblocked,
        AuditAction::Purged,
        AuditAction::Resealed,
        AuditAction::EnrolledAgain,
    ];
    let mut events = Vec::new();
    for (i, action) in actions.into_iter().enumerate() {
        let secs = i64::try_from(i)?;
        let actor = match i % 3 {
            0 => Actor::System,
            1 => Actor::User(nasty.clone()),
            _ => Actor::Client,
        };
        let bare = AuditEvent::new(at(secs), actor, action);
        let e = match i % 4 {
            // Every optional field empty.
            0 => bare,
            1 => bare
                .token(id, Kind::Onboarding, &hint)
                .device(&device("SN;'--\"1")?)
                .ip(Some(ip("192.0.2.44")?))
                .generated_by(Some(nasty.clone())),
            2 => bare
                .token(id, Kind::Endpoint, &hint)
                .endpoint(&endpoint("/api/ü?x='1'")?, Method::Delete)
                .ip(Some(ip("2001:db8::44")?)),
            _ => {
                let mut e = bare.generated_by(Some(user("admin")?));
                e.subject.kind = Some(Kind::Application);
                e.subject.method = Some(Method::Get);
                e
            }
        };
        events.push(e);
    }
    append_all(&*store, &events).await?;
    ensure_eq!(
        store.events(&AuditFilter::default()).await.ctx("events")?,
        events,
        "events"
    );
    Ok(())
}

/// Events come back ordered by their instant, whatever the append order.
async fn events_are_oldest_first(store: Arc<dyn Store>) -> Outcome {
    let mut events = Vec::new();
    for secs in [30, -5, 10, 0, 20, 25, -10] {
        events.push(event(at(secs), AuditAction::Issued));
    }
    append_all(&*store, &events).await?;
    events.sort_by_key(|e| e.at);
    ensure_eq!(
        store.events(&AuditFilter::default()).await.ctx("events")?,
        events,
        "events"
    );
    Ok(())
}

/// Events at the same instant come back in the order they were appended.
async fn events_at_one_instant_keep_append_order(store: Arc<dyn Store>) -> Outcome {
    let id = TokenId::generate()?;
    let hint = super::fixtures::digest(Kind::Deployment)?.1;
    let events = vec![
        event(at(1), AuditAction::Issued).token(id, Kind::Deployment, &hint),
        event(at(0), AuditAction::Used),
        event(
            at(1),
            AuditAction::StateChanged {
                from: State::Active,
                to: State::Superseded,
            },
        ),
        event(
            at(1),
            AuditAction::Rotated {
                successor: TokenId::generate()?,
            },
        ),
        event(at(1), AuditAction::Issued),
        event(at(1), AuditAction::Purged),
    ];
    append_all(&*store, &events).await?;
    let mut expected = events.clone();
    expected.sort_by_key(|e| e.at); // stable: same-instant events keep their order
    ensure_eq!(
        store.events(&AuditFilter::default()).await.ctx("events")?,
        expected,
        "events"
    );
    Ok(())
}

/// A token filter returns that token's events only.
async fn events_filter_by_token(store: Arc<dyn Store>) -> Outcome {
    let (a, b) = (TokenId::generate()?, TokenId::generate()?);
    let all = population(a, b)?;
    append_all(&*store, &all).await?;
    for id in [a, b, TokenId::generate()?] {
        let expected: Vec<_> = all
            .iter()
            .filter(|e| e.subject.token == Some(id))
            .cloned()
            .collect();
        let got = store
            .events(&filter(Some(id), None, None, None, None))
            .await
            .ctx("events")?;
        ensure_eq!(got, expected, "events of {id}");
    }
    Ok(())
}

/// An actor filter returns that actor's events only (system, client, or one user).
async fn events_filter_by_actor(store: Arc<dyn Store>) -> Outcome {
    let all = population(TokenId::generate()?, TokenId::generate()?)?;
    append_all(&*store, &all).await?;
    for actor in [
        Actor::System,
        Actor::Client,
        Actor::User(user("ann")?),
        Actor::User(user("ANN")?),
    ] {
        let expected: Vec<_> = all.iter().filter(|e| e.actor == actor).cloned().collect();
        let got = store
            .events(&filter(None, Some(actor.clone()), None, None, None))
            .await
            .ctx("events")?;
        ensure_eq!(got, expected, "events by {actor}");
    }
    Ok(())
}

/// `since` includes its instant; `until` excludes its instant.
async fn events_filter_since_inclusive_until_exclusive(store: Arc<dyn Store>) -> Outcome {
    let all = population(TokenId::generate()?, TokenId::generate()?)?;
    append_all(&*store, &all).await?;
    let got = store
        .events(&filter(None, None, Some(5), Some(9), None))
        .await
        .ctx("events")?;
    ensure_eq!(got, all[5..9].to_vec(), "events in [5 s, 9 s)");
    let got = store
        .events(&filter(None, None, Some(20), None, None))
        .await
        .ctx("events")?;
    ensure_eq!(got, all[20..].to_vec(), "events from 20 s");
    let got = store
        .events(&filter(None, None, None, Some(3), None))
        .await
        .ctx("events")?;
    ensure_eq!(got, all[..3].to_vec(), "events before 3 s");
    let got = store
        .events(&filter(None, None, Some(7), Some(7), None))
        .await
        .ctx("events")?;
    ensure!(got.is_empty(), "an empty window returned events");
    Ok(())
}

/// A limit keeps the oldest matching events; zero keeps none; a large one keeps all.
async fn events_limit_keeps_the_oldest(store: Arc<dyn Store>) -> Outcome {
    let (a, b) = (TokenId::generate()?, TokenId::generate()?);
    let all = population(a, b)?;
    append_all(&*store, &all).await?;
    let got = store
        .events(&filter(None, None, None, None, Some(4)))
        .await
        .ctx("events")?;
    ensure_eq!(got, all[..4].to_vec(), "first 4");
    let got = store
        .events(&filter(None, None, None, None, Some(0)))
        .await
        .ctx("events")?;
    ensure!(got.is_empty(), "limit 0 returned events");
    let got = store
        .events(&filter(None, None, None, None, Some(1_000_000)))
        .await
        .ctx("events")?;
    ensure_eq!(got, all, "a limit above the count");
    let of_b: Vec<_> = all
        .iter()
        .filter(|e| e.subject.token == Some(b) && e.at >= at(2))
        .take(3)
        .cloned()
        .collect();
    let got = store
        .events(&filter(Some(b), None, Some(2), None, Some(3)))
        .await
        .ctx("events")?;
    ensure_eq!(got, of_b, "first 3 of b from 2 s");
    Ok(())
}

/// Every combination of fields returns exactly what `AuditFilter::matches` passes, oldest
/// first, cut to the limit.
async fn events_filters_combine_like_audit_filter_matches(store: Arc<dyn Store>) -> Outcome {
    let (a, b) = (TokenId::generate()?, TokenId::generate()?);
    let all = population(a, b)?;
    append_all(&*store, &all).await?;
    let tokens = [None, Some(a), Some(b)];
    let actors = [
        None,
        Some(Actor::System),
        Some(Actor::User(user("ann")?)),
        Some(Actor::Client),
    ];
    let windows = [
        (None, None),
        (Some(4), None),
        (None, Some(18)),
        (Some(3), Some(15)),
    ];
    let limits = [None, Some(2)];
    for token in tokens {
        for actor in &actors {
            for (since, until) in windows {
                for limit in limits {
                    let f = filter(token, actor.clone(), since, until, limit);
                    let expected: Vec<_> = all
                        .iter()
                        .filter(|e| f.matches(e))
                        .take(limit.unwrap_or(usize::MAX))
                        .cloned()
                        .collect();
                    let got = store.events(&f).await.ctx("events")?;
                    ensure_eq!(got, expected, "events({f:?})");
                }
            }
        }
    }
    Ok(())
}

/// Every change a store audits, each applied to a fixture of its own.
#[derive(Clone, Copy, Debug)]
enum Op {
    Insert,
    InsertMany,
    ChangeState,
    Replace,
    UpdateData,
    SetDigest,
    SetSealed,
    Purge,
    SetBlocked,
    PutMapping,
    SetMappingEnabled,
    RemoveMapping,
}

const OPS: [Op; 12] = [
    Op::Insert,
    Op::InsertMany,
    Op::ChangeState,
    Op::Replace,
    Op::UpdateData,
    Op::SetDigest,
    Op::SetSealed,
    Op::Purge,
    Op::SetBlocked,
    Op::PutMapping,
    Op::SetMappingEnabled,
    Op::RemoveMapping,
];

/// A stored secondary `s` mapped for GET, and records `fresh` not stored yet (all without
/// events).
struct Fixture {
    s: TokenRecord,
    fresh: [TokenRecord; 2],
    seal: Sealed,
}

impl Fixture {
    async fn new(store: &dyn Store) -> Result<Self, Failed> {
        let s = record(secondary("ci", true)?)?;
        store.insert(&s, &[]).await.ctx("insert")?;
        store
            .put_mapping(&mapping(s.id, "/hook", Method::Get, true)?, &[])
            .await
            .ctx("put_mapping")?;
        Ok(Self {
            seal: fresh_seal(&s)?,
            s,
            fresh: [
                record(secondary("new-1", true)?)?,
                record(secondary("new-2", true)?)?,
            ],
        })
    }

    /// Everything `op` may change: the records, the mappings and usage of `s`.
    async fn snapshot(
        &self,
        store: &dyn Store,
    ) -> Result<(Vec<Option<TokenRecord>>, Vec<Mapping>, Vec<UsageEntry>), Failed> {
        let mut records = Vec::new();
        for id in [self.s.id, self.fresh[0].id, self.fresh[1].id] {
            records.push(store.get(id).await.ctx("get")?);
        }
        let mut mappings = store
            .mappings(Some(self.s.id), None)
            .await
            .ctx("mappings")?;
        mappings.sort_by_key(|m| m.method);
        Ok((
            records,
            mappings,
            store.usage(self.s.id).await.ctx("usage")?,
        ))
    }

    /// An event about `s` at `at(secs)`.
    fn event(&self, secs: i64, action: AuditAction) -> AuditEvent {
        event(at(secs), action).token(self.s.id, Kind::Endpoint, &self.s.hint)
    }

    /// Apply `op` with `events`.
    async fn apply(
        &self,
        store: &dyn Store,
        op: Op,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let s = &self.s;
        let hook = || EndpointId::parse("/hook").map_err(|e| StoreError::Backend(e.into()));
        match op {
            Op::Insert => store.insert(&self.fresh[0], events).await,
            Op::InsertMany => store.insert_many(&self.fresh, events).await,
            Op::ChangeState => store
                .change_state(
                    s.id,
                    &StateChange::new(State::Active, State::Disabled, at(1)),
                    events,
                )
                .await
                .map(drop),
            Op::Replace => {
                let change = StateChange {
                    successor: Some(self.fresh[0].id),
                    ..StateChange::new(State::Active, State::RotatedOut, at(1))
                };
                store
                    .replace(s.id, &change, &self.fresh[0], events)
                    .await
                    .map(drop)
            }
            Op::UpdateData => {
                let data = KindData::Endpoint(EndpointData::Secondary {
                    name: TokenName::parse("ci").map_err(|e| StoreError::Backend(e.into()))?,
                    description: Description::parse("off")
                        .map_err(|e| StoreError::Backend(e.into()))?,
                    enabled: false,
                });
                store.update_data(s.id, &data, events).await.map(drop)
            }
            Op::SetDigest => store
                .set_digest(s.id, &self.fresh[1].digest, &self.fresh[1].hint, events)
                .await
                .map(drop),
            Op::SetSealed => store
                .set_sealed(s.id, Some(&self.seal), events)
                .await
                .map(drop),
            Op::Purge => store.purge(&[s.id], events).await.map(drop),
            Op::SetBlocked => {
                let addr = "192.0.2.7"
                    .parse()
                    .map_err(|e: std::net::AddrParseError| StoreError::Backend(e.into()))?;
                store.set_blocked(s.id, addr, true, events).await.map(drop)
            }
            Op::PutMapping => {
                let m = Mapping {
                    secondary: s.id,
                    endpoint: hook()?,
                    method: Method::Post,
                    enabled: true,
                };
                store.put_mapping(&m, events).await
            }
            Op::SetMappingEnabled => store
                .set_mapping_enabled(s.id, &hook()?, Method::Get, false, events)
                .await
                .map(drop),
            Op::RemoveMapping => {
                store
                    .remove_mapping(s.id, &hook()?, Method::Get, events)
                    .await
            }
        }
    }
}

async fn all_events(store: &dyn Store) -> Result<Vec<AuditEvent>, Failed> {
    store.events(&AuditFilter::default()).await.ctx("events")
}

/// Every change stores the events it is given, in order, with the change.
async fn changes_store_their_events_with_them(store: Arc<dyn Store>) -> Outcome {
    for op in OPS {
        let f = Fixture::new(&*store).await?;
        let before = f.snapshot(&*store).await?;
        let mut expected = all_events(&*store).await?;
        let events = [
            f.event(2, AuditAction::Issued),
            f.event(2, AuditAction::Toggled { enabled: false }),
        ];
        f.apply(&*store, op, &events)
            .await
            .ctx(&format!("{op:?}"))?;
        ensure!(
            f.snapshot(&*store).await? != before,
            "{op:?} changed nothing"
        );
        expected.extend(events);
        ensure_eq!(
            all_events(&*store).await?,
            expected,
            "{op:?}: the events after it"
        );
    }
    Ok(())
}

/// A change whose second event cannot be stored (a time past 2262) is refused whole: the
/// change is undone and neither event is stored.
async fn change_with_an_unstorable_event_is_undone(store: Arc<dyn Store>) -> Outcome {
    let too_late = time::macros::datetime!(2300-01-01 0:00 UTC);
    for op in OPS {
        let f = Fixture::new(&*store).await?;
        let before = f.snapshot(&*store).await?;
        let events_before = all_events(&*store).await?;
        let mut late = f.event(3, AuditAction::Purged);
        late.at = too_late;
        let events = [f.event(3, AuditAction::Issued), late];
        ensure!(
            f.apply(&*store, op, &events).await.is_err(),
            "{op:?} with an unstorable event succeeded"
        );
        ensure_eq!(
            f.snapshot(&*store).await?,
            before,
            "{op:?} left its change behind"
        );
        ensure_eq!(
            all_events(&*store).await?,
            events_before,
            "{op:?} left an event behind"
        );
    }
    Ok(())
}

/// A change that is refused (here: the state it expects is not the stored one) stores none of
/// its events.
async fn refused_change_stores_no_events(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(&*store).await?;
    let stale = StateChange::new(State::Disabled, State::Active, at(1));
    let outcome = store
        .change_state(f.s.id, &stale, &[f.event(1, AuditAction::Issued)])
        .await;
    ensure_matches!(outcome, Err(StoreError::Conflict), "stale change");
    ensure!(
        all_events(&*store).await?.is_empty(),
        "events of a refused change"
    );
    Ok(())
}
