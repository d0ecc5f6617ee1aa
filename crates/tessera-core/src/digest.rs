//! What is stored instead of a secret: a keyed BLAKE3 [`Digest`] under a server-side [`Pepper`],
//! and a short non-secret [`Hint`] for listings.

use core::fmt;

use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::{Error, InvalidInput, cut};
use crate::format::{Presented, Spelling};

/// Names a pepper, so that a digest says which key made it.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k{}", self.0)
    }
}

/// A server-side key for digesting secrets. Keep it out of the database: a leaked database then
/// reveals no tokens and allows no offline guessing.
///
/// Never printed; wiped on drop.
pub struct Pepper {
    id: KeyId,
    key: [u8; 32],
}

impl Pepper {
    /// A pepper from 32 key bytes.
    pub const fn new(id: KeyId, key: [u8; 32]) -> Self {
        Self { id, key }
    }

    /// A fresh random pepper from the OS CSPRNG.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`] when the generator fails.
    pub fn generate(id: KeyId) -> Result<Self, Error> {
        let mut key = [0u8; 32];
        OsRng.try_fill_bytes(&mut key).map_err(|_| Error::Rng)?;
        Ok(Self { id, key })
    }

    /// Read a pepper from 64 hexadecimal characters (as kept in a key file or an environment
    /// variable).
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Id`] when the text is not 64 hex digits.
    pub fn from_hex(id: KeyId, hex: &str) -> Result<Self, Error> {
        let hex = hex.trim();
        let bad = || InvalidInput::Id {
            what: "pepper",
            input: String::from("[REDACTED]"),
            why: "a pepper is 64 hexadecimal characters; create one with `tessera init`",
        };
        if hex.len() != 64 {
            return Err(bad().into());
        }
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(Self { id, key })
    }

    /// The key as 64 hexadecimal characters, for writing a key file. Handle it like a secret.
    pub fn expose_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key id.
    pub const fn id(&self) -> KeyId {
        self.id
    }

    /// Digest a parsed token.
    pub fn digest(&self, presented: &Presented<'_>) -> Digest {
        self.digest_bytes(presented.canonical())
    }

    /// A key for another purpose, derived from this pepper with BLAKE3 `derive_key` under
    /// `context` (so it is independent of the digest key).
    pub(crate) fn derive_key(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.key)
    }

    /// Digest canonical token bytes.
    pub fn digest_bytes(&self, canonical: &[u8]) -> Digest {
        Digest {
            key: self.id,
            bytes: *blake3::keyed_hash(&self.key, canonical).as_bytes(),
        }
    }
}

impl Drop for Pepper {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pepper")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The peppers a deployment has configured: one current (used for new tokens) and older ones
/// still accepted for validation, newest first (like rustls' `TicketRotator`).
#[derive(Debug)]
pub struct Peppers {
    current: Pepper,
    previous: Vec<Pepper>,
}

impl Peppers {
    /// Only one pepper.
    pub const fn new(current: Pepper) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Add an older pepper that still validates tokens digested under it.
    #[must_use]
    pub fn with_previous(mut self, previous: Pepper) -> Self {
        self.previous.push(previous);
        self
    }

    /// The pepper new tokens are digested under.
    pub const fn current(&self) -> &Pepper {
        &self.current
    }

    /// Every configured pepper, current first.
    pub fn all(&self) -> impl Iterator<Item = &Pepper> {
        core::iter::once(&self.current).chain(self.previous.iter())
    }

    /// The digests under which `presented` may be stored, current pepper first.
    pub fn candidates(&self, presented: &Presented<'_>) -> impl Iterator<Item = Digest> {
        self.all().map(|p| p.digest(presented))
    }
}

/// A keyed BLAKE3 digest of a secret, naming the pepper that made it. May be stored and
/// compared; reveals nothing about the secret without the pepper.
#[derive(Clone, Copy, Eq, Hash, PartialEq)]
pub struct Digest {
    key: KeyId,
    bytes: [u8; 32],
}

impl Digest {
    /// Rebuild a digest read back from storage.
    pub const fn from_parts(key: KeyId, bytes: [u8; 32]) -> Self {
        Self { key, bytes }
    }

    /// The pepper that made it.
    pub const fn key(&self) -> KeyId {
        self.key
    }

    /// The 32 digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Compare in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.key == other.key && bool::from(self.bytes.ct_eq(&other.bytes))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only a fingerprint: enough to tell digests apart in a test failure.
        write!(
            f,
            "Digest({}:{:02x}{:02x}{:02x}{:02x}..)",
            self.key, self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]
        )
    }
}

/// A short non-secret piece of a token for listings: the prefix and the first four characters
/// of the body (`tsr_onb_7Kq2…`). Four base62 characters reveal under 24 of 256 bits.
#[derive(Clone, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
pub struct Hint(String);

impl Hint {
    const SHOWN: usize = 4;

    pub(crate) fn of_canonical(spelling: Spelling, canonical: &[u8]) -> Self {
        let skip = match spelling {
            Spelling::Prefixed => 8,
            Spelling::Plain64 | Spelling::ShortCode => 0,
        };
        let end = (skip + Self::SHOWN).min(canonical.len());
        let mut s = String::from_utf8_lossy(&canonical[..end]).into_owned();
        s.push('…');
        Self(s)
    }

    /// Rebuild a hint read back from storage.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Id`] when the text is longer than any hint.
    pub fn from_stored(s: &str) -> Result<Self, Error> {
        if s.chars().count() > 16 {
            return Err(InvalidInput::Id {
                what: "hint",
                input: cut(s),
                why: "a hint has at most 16 characters",
            }
            .into());
        }
        Ok(Self(s.to_owned()))
    }

    /// The hint's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, Secret, format::parse};

    #[test]
    fn older_pepper_still_finds_its_digests() {
        let old = Pepper::new(KeyId(1), [1; 32]);
        let new = Pepper::new(KeyId(2), [2; 32]);
        let s = Secret::generate(Kind::Auth).unwrap();
        let p = parse(Kind::Auth, s.expose_secret()).unwrap();
        let stored = old.digest(&p);
        let peppers = Peppers::new(new).with_previous(Pepper::new(KeyId(1), [1; 32]));
        let c: Vec<_> = peppers.candidates(&p).collect();
        assert_eq!(c[0].key(), KeyId(2));
        assert!(c.iter().any(|d| d.ct_eq(&stored)));
    }

    #[test]
    fn pepper_hex_round_trips_and_never_prints() {
        let p = Pepper::generate(KeyId(7)).unwrap();
        let hex = p.expose_hex();
        let q = Pepper::from_hex(KeyId(7), &hex).unwrap();
        assert_eq!(p.digest_bytes(b"x"), q.digest_bytes(b"x"));
        assert!(!format!("{p:?}").contains(&hex));
        assert!(Pepper::from_hex(KeyId(7), "zz").is_err());
    }

    #[test]
    fn hint_shows_prefix_and_four() {
        let s = Secret::generate(Kind::Onboarding).unwrap();
        let p = parse(Kind::Onboarding, s.expose_secret()).unwrap();
        let h = p.hint();
        assert_eq!(h.as_str().chars().count(), 13);
        assert!(
            s.expose_secret()
                .starts_with(h.as_str().trim_end_matches('…'))
        );
    }
}
