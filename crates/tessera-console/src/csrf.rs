//! CSRF tokens: every state-changing form carries one, bound to the signed-in user and the
//! day, derived under a key only the server knows.

use std::fmt;

use subtle::ConstantTimeEq as _;
use tessera::core::id::UserId;
use time::OffsetDateTime;

/// Seconds a token stays valid for at least (it is accepted the day it is drawn and the next).
const WINDOW: i64 = 86_400;

/// The server's CSRF key; `None` when the OS could not draw one, and then every form is
/// refused (fail closed) until the host configures [`Settings::csrf_key`](crate::Settings::csrf_key).
pub(crate) struct CsrfKey(Option<[u8; 32]>);

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfKey").finish_non_exhaustive()
    }
}

impl CsrfKey {
    pub(crate) const fn new(key: [u8; 32]) -> Self {
        Self(Some(key))
    }

    /// A fresh random key from the OS.
    pub(crate) fn generate() -> Self {
        use rand::TryRngCore as _;
        let mut key = [0; 32];
        Self(
            rand::rngs::OsRng
                .try_fill_bytes(&mut key)
                .ok()
                .map(|()| key),
        )
    }

    fn derive(&self, user: &UserId, window: i64) -> Option<String> {
        let mut hasher = blake3::Hasher::new_keyed(self.0.as_ref()?);
        hasher.update(b"tessera-console csrf\0");
        hasher.update(&window.to_le_bytes());
        hasher.update(user.as_str().as_bytes());
        Some(hasher.finalize().to_hex().to_string())
    }

    /// The token forms drawn now for `user` carry.
    pub(crate) fn token(&self, user: &UserId) -> String {
        self.derive(user, OffsetDateTime::now_utc().unix_timestamp() / WINDOW)
            .unwrap_or_default()
    }

    /// Whether `presented` is a token drawn for `user` this window or the one before.
    pub(crate) fn check(&self, user: &UserId, presented: &str) -> bool {
        let window = OffsetDateTime::now_utc().unix_timestamp() / WINDOW;
        [window, window - 1].into_iter().any(|w| {
            let Some(expected) = self.derive(user, w) else {
                return false;
            };
            expected.len() == presented.len()
                && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_bound_to_user_and_key() {
        let key = CsrfKey::generate();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let t = key.token(&alice);
        assert!(key.check(&alice, &t));
        assert!(!key.check(&bob, &t));
        assert!(!CsrfKey::generate().check(&alice, &t));
        assert!(!key.check(&alice, ""));
        assert!(!key.check(&alice, &t[1..]));
    }
}
