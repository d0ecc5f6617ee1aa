//! [`Secret`]: the token text that is shown to a person once.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The token string handed to a person once, at issue.
///
/// A `Secret` never prints itself: `Debug` and `Display` show `Secret([REDACTED])`. Its memory is
/// wiped on drop. It has no `Clone`, no `Serialize` and no `PartialEq`; compare two secrets with
/// [`Secret::ct_eq`], which runs in constant time. Read it only through
/// [`Secret::expose_secret`], which is easy to find in review.
///
/// # Examples
///
/// ```
/// use tessera_core::{Kind, Secret};
///
/// let secret = Secret::generate(Kind::Onboarding)?;
/// assert!(secret.expose_secret().starts_with("tsr_onb_"));
/// assert_eq!(format!("{secret:?}"), "Secret([REDACTED])");
/// # Ok::<(), tessera_core::Error>(())
/// ```
pub struct Secret {
    text: String,
}

impl Secret {
    /// Wrap text that a caller received (for example from a request) so that it is handled with
    /// the same care as a generated secret.
    pub fn from_presented(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }

    /// The secret's text. Every call is a place where the secret leaves its box: keep it between
    /// generation and the response that shows it once.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// Compare with other text in constant time (for equal lengths).
    pub fn ct_eq(&self, other: &str) -> bool {
        self.text.as_bytes().ct_eq(other.as_bytes()).into()
    }

    pub(crate) fn from_generated(text: String) -> Self {
        Self { text }
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let s = Secret::from_presented("tsr_onb_supersecretvalue");
        assert!(!format!("{s:?}").contains("supersecret"));
        assert!(!format!("{s}").contains("supersecret"));
        assert!(!format!("{s:#?}").contains("supersecret"));
    }

    #[test]
    fn compares_in_constant_time() {
        let s = Secret::from_presented("abc");
        assert!(s.ct_eq("abc"));
        assert!(!s.ct_eq("abd"));
        assert!(!s.ct_eq("ab"));
    }
}
