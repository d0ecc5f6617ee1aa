//! The one state machine every token kind shares.
//!
//! ```text
//!             disable            reactivate
//!   Disabled <-------- Active ---------------> (from Dormant)
//!       | enable  ^      |  mark_dormant -> Dormant
//!       +---------+      |  expire       -> Expired
//!                        |  exhaust      -> Exhausted
//!                        |  supersede    -> Superseded --end_grace--> RotatedOut
//!                        |  retire       -> RotatedOut
//!                        |  revoke       -> Revoked   (terminal)
//!                        +  delete       -> Deleted   (terminal)
//! ```
//!
//! Every state but the two terminal ones can be revoked or deleted. Transitions are total
//! functions: [`State::apply`] returns the new state or a [`TransitionError`]; nothing is ignored.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::error::TransitionError;

/// Where a token is in its life. Variants follow the state machine, not the alphabet.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Usable.
    Active,
    /// Turned off by an admin; an admin can turn it on again.
    Disabled,
    /// Unused for too long; refused until an admin reactivates it.
    Dormant,
    /// Replaced by a rotation; still accepted until its grace window ends.
    Superseded,
    /// Replaced by a rotation and past its grace window.
    RotatedOut,
    /// Past its expiry.
    Expired,
    /// Its usage limit is reached.
    Exhausted,
    /// Revoked by an admin. Terminal.
    Revoked,
    /// Deleted for good. Terminal.
    Deleted,
}

/// What can happen to a token.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// An admin turns the token off.
    Disable,
    /// An admin turns a disabled token on.
    Enable,
    /// The inactivity sweep finds it unused too long.
    MarkDormant,
    /// An admin reactivates a dormant token.
    Reactivate,
    /// A rotation replaced it, with a grace window.
    Supersede,
    /// A rotation replaced it with no grace, or its grace window ended.
    Retire,
    /// It passed its expiry, or an admin expired it at once.
    Expire,
    /// Its last use was consumed.
    Exhaust,
    /// An admin revoked it.
    Revoke,
    /// It is deleted for good.
    Delete,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 10] = [
        Self::Disable,
        Self::Enable,
        Self::MarkDormant,
        Self::Reactivate,
        Self::Supersede,
        Self::Retire,
        Self::Expire,
        Self::Exhaust,
        Self::Revoke,
        Self::Delete,
    ];

    /// The action's name, lowercase.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::MarkDormant => "mark dormant",
            Self::Reactivate => "reactivate",
            Self::Supersede => "supersede",
            Self::Retire => "retire",
            Self::Expire => "expire",
            Self::Exhaust => "exhaust",
            Self::Revoke => "revoke",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl State {
    /// Every state, in machine order.
    pub const ALL: [Self; 9] = [
        Self::Active,
        Self::Disabled,
        Self::Dormant,
        Self::Superseded,
        Self::RotatedOut,
        Self::Expired,
        Self::Exhausted,
        Self::Revoked,
        Self::Deleted,
    ];

    /// The state after `action`, or why it cannot happen.
    ///
    /// # Errors
    ///
    /// [`TransitionError`] naming this state and the action.
    pub const fn apply(self, action: Action) -> Result<Self, TransitionError> {
        use Action as A;
        let next = match (self, action) {
            (Self::Revoked | Self::Deleted, _) => None,
            (_, A::Revoke) => Some(Self::Revoked),
            (_, A::Delete) => Some(Self::Deleted),
            (Self::Active, A::Disable) | (Self::Dormant, A::Disable) => Some(Self::Disabled),
            (Self::Disabled, A::Enable) => Some(Self::Active),
            (Self::Active, A::MarkDormant) => Some(Self::Dormant),
            (Self::Dormant, A::Reactivate) => Some(Self::Active),
            (Self::Active, A::Supersede) => Some(Self::Superseded),
            (Self::Active | Self::Disabled | Self::Dormant | Self::Superseded, A::Retire) => {
                Some(Self::RotatedOut)
            }
            (
                Self::Active | Self::Disabled | Self::Dormant | Self::Superseded | Self::Exhausted,
                A::Expire,
            ) => Some(Self::Expired),
            (Self::Active | Self::Superseded, A::Exhaust) => Some(Self::Exhausted),
            _ => None,
        };
        match next {
            Some(s) => Ok(s),
            None => Err(TransitionError { from: self, action }),
        }
    }

    /// Whether no transition leaves this state.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Revoked | Self::Deleted)
    }

    /// Whether a token in this state can be accepted (before expiry, grace and kind rules).
    pub const fn is_usable(self) -> bool {
        matches!(self, Self::Active | Self::Superseded)
    }

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Dormant => "dormant",
            Self::Superseded => "superseded",
            Self::RotatedOut => "rotated_out",
            Self::Expired => "expired",
            Self::Exhausted => "exhausted",
            Self::Revoked => "revoked",
            Self::Deleted => "deleted",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub(crate) const fn hint(self) -> &'static str {
        match self {
            Self::Active => "it is already active",
            Self::Disabled => "enable it first",
            Self::Dormant => "reactivate it first",
            Self::Superseded => "it was rotated; use its successor",
            Self::RotatedOut => "it was rotated; use its successor",
            Self::Expired => "issue a new token",
            Self::Exhausted => "it has no uses left; issue a new token",
            Self::Revoked => "revocation is final; issue a new token",
            Self::Deleted => "deletion is final; issue a new token",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn action() -> impl Strategy<Value = Action> {
        proptest::sample::select(Action::ALL.to_vec())
    }

    proptest! {
        /// Any sequence of actions from Active stays inside the machine: every accepted step is
        /// one of the listed edges, and terminal states are never left.
        #[test]
        fn sequences_stay_legal(actions in proptest::collection::vec(action(), 0..64)) {
            let mut s = State::Active;
            for a in actions {
                match s.apply(a) {
                    Ok(next) => {
                        prop_assert!(!s.is_terminal(), "left terminal state {s}");
                        prop_assert!(State::ALL.contains(&next));
                        s = next;
                    }
                    Err(e) => {
                        prop_assert_eq!(e.from, s);
                        prop_assert_eq!(e.action, a);
                    }
                }
            }
        }

        /// Revoked and Deleted accept no action at all.
        #[test]
        fn terminal_states_are_terminal(a in action()) {
            prop_assert!(State::Revoked.apply(a).is_err());
            prop_assert!(State::Deleted.apply(a).is_err());
        }
    }

    #[test]
    fn reversible_toggles() {
        assert_eq!(State::Active.apply(Action::Disable), Ok(State::Disabled));
        assert_eq!(State::Disabled.apply(Action::Enable), Ok(State::Active));
        assert_eq!(State::Active.apply(Action::MarkDormant), Ok(State::Dormant));
        assert_eq!(State::Dormant.apply(Action::Reactivate), Ok(State::Active));
        assert_eq!(
            State::Active.apply(Action::Supersede),
            Ok(State::Superseded)
        );
        assert_eq!(
            State::Superseded.apply(Action::Retire),
            Ok(State::RotatedOut)
        );
    }

    #[test]
    fn illegal_steps_are_errors_with_advice() {
        let e = State::Revoked.apply(Action::Enable).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot enable a token that is revoked; revocation is final; issue a new token"
        );
        assert!(State::Active.apply(Action::Enable).is_err());
        assert!(State::Expired.apply(Action::Reactivate).is_err());
        assert!(State::Exhausted.apply(Action::Enable).is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
    }
}
