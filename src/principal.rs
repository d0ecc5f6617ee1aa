//! [`Principal`]: who is calling an administrative operation.

use tessera_core::audit::Actor;
use tessera_core::id::UserId;

/// The person behind an administrative call: a user, and whether they are an administrator.
///
/// Users manage their own auth tokens; administrators manage everyone's and issue tokens of
/// every kind. The principal is recorded in every audit event the call emits.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Principal {
    user: UserId,
    admin: bool,
}

impl Principal {
    /// An administrator.
    ///
    /// # Errors
    ///
    /// When `user` is not a valid [`UserId`].
    pub fn admin(user: impl Into<String>) -> Result<Self, tessera_core::Error> {
        Ok(Self {
            user: UserId::parse(user)?,
            admin: true,
        })
    }

    /// A user without administrative rights.
    ///
    /// # Errors
    ///
    /// When `user` is not a valid [`UserId`].
    pub fn user(user: impl Into<String>) -> Result<Self, tessera_core::Error> {
        Ok(Self {
            user: UserId::parse(user)?,
            admin: false,
        })
    }

    /// The user.
    pub const fn id(&self) -> &UserId {
        &self.user
    }

    /// Whether an administrator.
    pub const fn is_admin(&self) -> bool {
        self.admin
    }

    pub(crate) fn actor(&self) -> Actor {
        Actor::User(self.user.clone())
    }
}
