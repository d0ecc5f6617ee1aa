//! Unique names: which names a store keeps unique, and the key it indexes them by.
//!
//! The rule, from the consoles: an **application token's name is unique ignoring case** (the
//! App Tokens page asks for "a unique name"); an **auth token's name is unique per owner,
//! ignoring case**, so a technician tells their tokens apart by name. Deployment tokens (a
//! name "for reference", shared by a token and its renewals), endpoint secondaries (named after
//! the integrating application, which may hold several) and onboarding tokens (no name) are not
//! unique. A name is held only while its token may be in force: any state but superseded,
//! rotated out, revoked or deleted, so a rotation's successor takes its predecessor's name.
//!
//! Every store enforces it atomically: the memory store under its write lock, the SQL stores
//! with a unique partial index on the key ([`name_key`]), so that concurrent creations cannot
//! both take a name.

use tessera_core::Kind;
use tessera_core::kind::KindData;
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;

/// The key a unique name is indexed by, whatever the record's state: `None` for kinds whose
/// names are not unique. Application names (ASCII letters, digits and dashes) are lowercased;
/// an auth token's key is `auth:<owner's length in bytes>:<owner>:<name lowercased>` (ASCII
/// case), unambiguous, and never an application name (which holds no `:`).
pub fn name_key(data: &KindData) -> Option<String> {
    match data {
        KindData::Application(a) => Some(a.name.as_str().to_ascii_lowercase()),
        KindData::Auth(a) => {
            let owner = a.owner.as_str();
            Some(format!(
                "auth:{}:{owner}:{}",
                owner.len(),
                a.name.as_str().to_ascii_lowercase()
            ))
        }
        _ => None,
    }
}

/// Whether a token in `state` holds its name.
pub const fn holds_name(state: State) -> bool {
    !matches!(
        state,
        State::Superseded | State::RotatedOut | State::Revoked | State::Deleted
    )
}

/// The key of the name `r` holds now, if it holds one.
pub fn held_name(r: &TokenRecord) -> Option<String> {
    if holds_name(r.state) {
        name_key(&r.data)
    } else {
        None
    }
}

/// What [`StoreError::AlreadyExists`](crate::StoreError::AlreadyExists) names when a record of
/// `kind` collides on its name.
pub const fn taken(kind: Kind) -> &'static str {
    match kind {
        Kind::Auth => "auth token name of this owner",
        _ => "application token name",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_that_hold_a_name() {
        for s in State::ALL {
            let held = !matches!(
                s,
                State::Superseded | State::RotatedOut | State::Revoked | State::Deleted
            );
            assert_eq!(holds_name(s), held, "{s}");
        }
    }
}
