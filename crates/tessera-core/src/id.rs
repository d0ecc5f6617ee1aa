//! Identifiers and bounded strings. Each type checks its rules once, in `parse`; after that the
//! type is proof they hold.

use core::fmt;
use smol_str::SmolStr;

use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, InvalidInput, cut};

/// A token's identifier: 128 random bits, printed as 32 lowercase hex digits. Not a secret.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenId(u128);

impl TokenId {
    /// A fresh random id.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`] when the generator fails.
    pub fn generate() -> Result<Self, Error> {
        let mut b = [0u8; 16];
        OsRng.try_fill_bytes(&mut b).map_err(|_| Error::Rng)?;
        Ok(Self(u128::from_be_bytes(b)))
    }

    /// Parse 32 hex digits.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Id`] for anything else.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if let Some(v) = hex128(s) {
            return Ok(Self(v));
        }
        Err(InvalidInput::Id {
            what: "token id",
            input: cut(s),
            why: "a token id is 32 hexadecimal digits, as shown in listings",
        }
        .into())
    }

    /// The id as a number.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// Rebuild from a number.
    pub const fn from_u128(v: u128) -> Self {
        Self(v)
    }
}

/// Exactly 32 hexadecimal digits, as a number: the printed form of 128-bit ids and keys.
pub(crate) fn hex128(s: &str) -> Option<u128> {
    if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u128::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl From<TokenId> for String {
    fn from(id: TokenId) -> Self {
        id.to_string()
    }
}

impl TryFrom<String> for TokenId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl core::str::FromStr for TokenId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

fn check_text(what: &'static str, s: &str, max: usize, multiline: bool) -> Result<(), Error> {
    if s.trim().is_empty() {
        return Err(InvalidInput::Name {
            what,
            why: String::from("it is empty; give a non-empty value"),
        }
        .into());
    }
    let len = s.chars().count();
    if len > max {
        return Err(InvalidInput::TooLong { what, len, max }.into());
    }
    if s.chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t')))
    {
        return Err(InvalidInput::Name {
            what,
            why: String::from("it holds control characters; remove them"),
        }
        .into());
    }
    Ok(())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
        #[serde(try_from = "String", into = "String")]
        // Short text inline (up to 23 bytes), longer shared: a clone (every outcome and audit
        // event carries one) is a copy of 24 bytes or a count, and reading or comparing a short
        // one touches no memory beside its owner's.
        pub struct $name(SmolStr);

        impl $name {
            #[doc = concat!("The most characters a ", $what, " may have.")]
            pub const MAX_CHARS: usize = $max;

            #[doc = concat!("Check and wrap a ", $what, ": non-empty, at most ", stringify!($max), " characters, no control characters.")]
            ///
            /// # Errors
            ///
            /// [`InvalidInput`] saying which rule was broken.
            pub fn parse(s: impl Into<String>) -> Result<Self, Error> {
                let s = s.into();
                check_text($what, &s, $max, false)?;
                Ok(Self(SmolStr::from(s)))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.0.as_str())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> Self {
                Self::from(v.0.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self, Error> {
                Self::parse(s)
            }
        }
    };
}

text_newtype!(
    /// A display name for a token (deployment, endpoint secondary, auth token).
    TokenName, "token name", 128
);
text_newtype!(
    /// A user (technician) identifier, as the application knows its users.
    UserId, "user id", 256
);
text_newtype!(
    /// A device identifier (serial number, IMEI, enrollment id).
    DeviceId, "device id", 256
);
text_newtype!(
    /// An HTTP endpoint identifier (a route or a configured endpoint name).
    EndpointId, "endpoint id", 512
);
text_newtype!(
    /// An enrollment policy identifier applied to onboarded devices.
    PolicyId, "policy id", 256
);
text_newtype!(
    /// A device group onboarded devices are placed in.
    DeviceGroup, "device group", 256
);
text_newtype!(
    /// One action a user may be delegated (e.g. `reset_password`), the unit of an auth scope.
    Permission, "permission", 128
);
text_newtype!(
    /// An application token access type (e.g. `security-director`, `third-party-feeds`).
    AccessType, "access type", 64
);

/// A free-text description, at most 1024 characters; newlines and tabs allowed.
#[derive(Clone, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    /// The most characters a description may have.
    pub const MAX_CHARS: usize = 1024;

    /// Check and wrap a description; empty is allowed.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::TooLong`] past 1024 characters, [`InvalidInput::Name`] for control
    /// characters.
    pub fn parse(s: impl Into<String>) -> Result<Self, Error> {
        let s = s.into();
        if !s.is_empty() {
            check_text("description", &s, Self::MAX_CHARS, true)?;
        }
        Ok(Self(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Description> for String {
    fn from(v: Description) -> Self {
        v.0
    }
}

impl TryFrom<String> for Description {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.0.as_str())
    }
}

/// An application token's unique name: letters, digits and dashes, no spaces, 1 to 32
/// characters.
#[derive(Clone, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(try_from = "String", into = "String")]
// Inline text (at most 32 bytes: up to 23 inline, longer shared), as the identifiers above.
pub struct ApplicationName(SmolStr);

impl ApplicationName {
    /// The most characters.
    pub const MAX_CHARS: usize = 32;

    /// Check and wrap a name.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Name`] saying which rule was broken.
    pub fn parse(s: impl Into<String>) -> Result<Self, Error> {
        let s = s.into();
        let why = if s.is_empty() {
            Some("it is empty; give 1 to 32 letters, digits or dashes")
        } else if s.len() > Self::MAX_CHARS {
            Some("it is longer than 32 characters; shorten it")
        } else if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            Some("only letters, digits and dashes are allowed, no spaces")
        } else {
            None
        };
        match why {
            Some(why) => Err(InvalidInput::Name {
                what: "application token name",
                why: String::from(why),
            }
            .into()),
            None => Ok(Self(SmolStr::from(s))),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for ApplicationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.0.as_str())
    }
}

impl From<ApplicationName> for String {
    fn from(v: ApplicationName) -> Self {
        Self::from(v.0.as_str())
    }
}

impl TryFrom<String> for ApplicationName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_names_follow_the_console_rules() {
        assert!(ApplicationName::parse("siem-feed-01").is_ok());
        assert!(ApplicationName::parse("a".repeat(32)).is_ok());
        assert!(ApplicationName::parse("a".repeat(33)).is_err());
        assert!(ApplicationName::parse("has space").is_err());
        assert!(ApplicationName::parse("").is_err());
        assert!(ApplicationName::parse("ünï").is_err());
    }

    #[test]
    fn descriptions_cap_at_1024() {
        assert!(Description::parse("x".repeat(1024)).is_ok());
        assert!(Description::parse("x".repeat(1025)).is_err());
        assert!(Description::parse("line\nline").is_ok());
        assert!(Description::parse("").is_ok());
    }

    #[test]
    fn token_ids_round_trip() {
        let id = TokenId::generate().unwrap();
        assert_eq!(TokenId::parse(&id.to_string()).unwrap(), id);
        assert!(TokenId::parse("xyz").is_err());
        assert!(TokenName::parse("  ").is_err());
        assert!(TokenName::parse("a\u{0}b").is_err());
    }
}
