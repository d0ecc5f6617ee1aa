//! Application tokens: unique name, description, access types, per-IP log and block list,
//! dormancy and deletion after inactivity.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, InvalidInput};
use crate::id::{AccessType, ApplicationName, Description};
use crate::lifecycle::{Action, State};

/// A non-empty set of access types.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(try_from = "BTreeSet<AccessType>", into = "BTreeSet<AccessType>")]
// Shared: a clone (every accepted bearer request's outcome carries one) is a count.
pub struct AccessTypes(Arc<BTreeSet<AccessType>>);

impl AccessTypes {
    /// One or more access types, each once.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Empty`] when none is given; [`InvalidInput::Repeated`] when one is given
    /// twice.
    pub fn new(types: impl IntoIterator<Item = AccessType>) -> Result<Self, Error> {
        let mut set = BTreeSet::new();
        for t in types {
            if set.contains(&t) {
                return Err(InvalidInput::Repeated {
                    what: "access type",
                    value: t.as_str().to_owned(),
                }
                .into());
            }
            set.insert(t);
        }
        if set.is_empty() {
            return Err(InvalidInput::Empty {
                what: "access types",
            }
            .into());
        }
        Ok(Self(Arc::new(set)))
    }

    /// The access types.
    pub fn iter(&self) -> impl Iterator<Item = &AccessType> {
        self.0.iter()
    }

    /// Whether it holds `t`.
    pub fn contains(&self, t: &AccessType) -> bool {
        self.0.contains(t)
    }
}

impl TryFrom<BTreeSet<AccessType>> for AccessTypes {
    type Error = Error;
    fn try_from(s: BTreeSet<AccessType>) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<AccessTypes> for BTreeSet<AccessType> {
    fn from(s: AccessTypes) -> Self {
        Arc::try_unwrap(s.0).unwrap_or_else(|shared| (*shared).clone())
    }
}

/// The access types an application service offers: a closed set, configured per service
/// ([`AccessCatalog::SEED`] by default: the console's Security Director and Third Party
/// feeds). A token may be created only with types from it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AccessCatalog(BTreeSet<AccessType>);

impl AccessCatalog {
    /// The seed's two access types, spelled `security-director` and `third-party-feeds`.
    pub const SEED: [&'static str; 2] = ["security-director", "third-party-feeds"];

    /// The seed's set.
    #[allow(
        clippy::missing_panics_doc,
        reason = "the seed's names are valid access types"
    )]
    pub fn seed() -> Self {
        Self(
            Self::SEED
                .iter()
                .filter_map(|t| AccessType::parse(*t).ok())
                .collect(),
        )
    }

    /// A set of one or more types, each once.
    ///
    /// # Errors
    ///
    /// As [`AccessTypes::new`].
    pub fn new(types: impl IntoIterator<Item = AccessType>) -> Result<Self, Error> {
        Ok(Self(AccessTypes::new(types)?.into()))
    }

    /// The offered types.
    pub fn iter(&self) -> impl Iterator<Item = &AccessType> {
        self.0.iter()
    }

    /// Check that every type of `types` is offered.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::AccessTypeNotOffered`] naming the first that is not.
    pub fn check(&self, types: &AccessTypes) -> Result<(), Error> {
        match types.iter().find(|t| !self.0.contains(*t)) {
            None => Ok(()),
            Some(t) => Err(InvalidInput::AccessTypeNotOffered {
                given: t.as_str().to_owned(),
                offered: self
                    .0
                    .iter()
                    .map(AccessType::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .into()),
        }
    }
}

impl Default for AccessCatalog {
    fn default() -> Self {
        Self::seed()
    }
}

/// An application token's own fields.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ApplicationData {
    /// Unique name.
    pub name: ApplicationName,
    /// What it is for, for other administrators.
    pub description: Description,
    /// What it grants access to.
    pub access: AccessTypes,
}

/// When unused application tokens go dormant and when they are deleted.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct InactivityPolicy {
    dormant_after: Duration,
    delete_after: Duration,
}

impl InactivityPolicy {
    /// The console's rule: dormant after 30 days unused, deleted after 90.
    pub const DEFAULT: Self = Self {
        dormant_after: Duration::days(30),
        delete_after: Duration::days(90),
    };

    /// Custom thresholds.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::NotInFuture`] unless `0 < dormant_after < delete_after`.
    pub fn new(dormant_after: Duration, delete_after: Duration) -> Result<Self, Error> {
        if dormant_after <= Duration::ZERO || delete_after <= dormant_after {
            return Err(InvalidInput::NotInFuture {
                what: "inactivity thresholds (0 < dormant < delete)",
            }
            .into());
        }
        Ok(Self {
            dormant_after,
            delete_after,
        })
    }

    /// Unused this long, a token goes dormant.
    pub const fn dormant_after(self) -> Duration {
        self.dormant_after
    }

    /// Unused this long, a token is deleted.
    pub const fn delete_after(self) -> Duration {
        self.delete_after
    }

    /// What the sweep does to a token in `state` last active at `last_activity` (its last use,
    /// or its creation or reactivation if later).
    pub fn decide(
        self,
        state: State,
        last_activity: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Option<Action> {
        let idle = now - last_activity;
        if state.is_terminal() {
            None
        } else if idle >= self.delete_after {
            Some(Action::Delete)
        } else if idle >= self.dormant_after && state == State::Active {
            Some(Action::MarkDormant)
        } else {
            None
        }
    }

    /// The state a token stored in `state`, last active at `last_activity`, is in at `now`
    /// once inactivity is applied, whether or not a sweep recorded it: `Deleted` when unused
    /// for [`delete_after`](Self::delete_after) (any state but a terminal one), `Dormant` when
    /// an active token is unused for [`dormant_after`](Self::dormant_after), else `state`.
    /// Validation refuses by this state, so a use never revives an idle token.
    pub fn state_at(
        self,
        state: State,
        last_activity: OffsetDateTime,
        now: OffsetDateTime,
    ) -> State {
        match self.decide(state, last_activity, now) {
            Some(Action::Delete) => State::Deleted,
            Some(Action::MarkDormant) => State::Dormant,
            _ => state,
        }
    }
}

impl Default for InactivityPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn thirty_and_ninety_days() {
        let p = InactivityPolicy::default();
        let t0 = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(p.decide(State::Active, t0, t0 + Duration::days(29)), None);
        assert_eq!(
            p.decide(State::Active, t0, t0 + Duration::days(30)),
            Some(Action::MarkDormant)
        );
        assert_eq!(p.decide(State::Dormant, t0, t0 + Duration::days(60)), None);
        assert_eq!(
            p.decide(State::Dormant, t0, t0 + Duration::days(90)),
            Some(Action::Delete)
        );
        assert!(InactivityPolicy::new(Duration::days(5), Duration::days(5)).is_err());
    }

    #[test]
    fn state_at_applies_the_thresholds_without_a_sweep() {
        let p = InactivityPolicy::default();
        let t0 = datetime!(2026-01-01 0:00 UTC);
        let day = |d| t0 + Duration::days(d);
        assert_eq!(p.state_at(State::Active, t0, day(29)), State::Active);
        assert_eq!(p.state_at(State::Active, t0, day(30)), State::Dormant);
        assert_eq!(p.state_at(State::Active, t0, day(200)), State::Deleted);
        assert_eq!(p.state_at(State::Dormant, t0, day(89)), State::Dormant);
        assert_eq!(p.state_at(State::Disabled, t0, day(60)), State::Disabled);
        assert_eq!(p.state_at(State::Disabled, t0, day(90)), State::Deleted);
        assert_eq!(p.state_at(State::Revoked, t0, day(200)), State::Revoked);
    }
}
