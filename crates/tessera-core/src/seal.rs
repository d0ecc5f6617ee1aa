//! [`Sealed`]: a secret kept encrypted at rest, for the kinds whose seeds need it shown again (a
//! deployment token's installer command, an onboarding token's QR code where enabled).
//!
//! The cipher is XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`) under a key derived from a
//! [`Pepper`] with BLAKE3's `derive_key` and a fixed context string, so the sealing key is
//! neither the digest key nor stored anywhere. Each value carries the pepper's [`KeyId`] and a
//! random 192-bit nonce, and is bound to its token's id as associated data: a sealed value
//! copied onto another record does not open. A database without the pepper reveals nothing.

use core::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::TryRngCore;
use rand::rngs::OsRng;
use zeroize::{Zeroize, Zeroizing};

use crate::digest::{KeyId, Pepper, Peppers};
use crate::error::Error;
use crate::id::TokenId;
use crate::secret::Secret;

/// The BLAKE3 `derive_key` context of sealing keys. Changing it makes every sealed value
/// unreadable: it is part of the stored format.
const CONTEXT: &str = "tessera 2026-11 sealed token secret v1 (xchacha20poly1305)";

/// The format version byte that starts [`Sealed::to_bytes`].
const VERSION: u8 = 1;

/// Bytes before the ciphertext: version, key id, nonce.
const HEADER: usize = 1 + 4 + 24;

/// Bytes the AEAD adds (the Poly1305 tag).
const TAG: usize = 16;

/// A token secret sealed under a pepper: the pepper's key id, a random nonce and the
/// ciphertext with its tag. Opened only by [`Peppers::open`] while that pepper is configured.
///
/// Its `Debug` shows the key id and the ciphertext's length, never its bytes.
#[derive(Clone, Eq, PartialEq)]
pub struct Sealed {
    key: KeyId,
    nonce: [u8; 24],
    ciphertext: Vec<u8>,
}

impl Sealed {
    /// The pepper it is sealed under.
    pub const fn key(&self) -> KeyId {
        self.key
    }

    /// The stored form: a version byte, the key id (big-endian), the nonce, the ciphertext.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&self.key.0.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Read the stored form back.
    ///
    /// # Errors
    ///
    /// [`Error::SealedMalformed`] when the bytes are not a sealed value of a known version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER + TAG || bytes[0] != VERSION {
            return Err(Error::SealedMalformed);
        }
        let mut key = [0u8; 4];
        key.copy_from_slice(&bytes[1..5]);
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&bytes[5..HEADER]);
        Ok(Self {
            key: KeyId(u32::from_be_bytes(key)),
            nonce,
            ciphertext: bytes[HEADER..].to_vec(),
        })
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key", &self.key)
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// The associated data: the token id's text, so a value opens only on its own record.
fn aad(id: TokenId) -> String {
    id.to_string()
}

fn cipher(pepper: &Pepper) -> XChaCha20Poly1305 {
    let mut key = pepper.derive_key(CONTEXT);
    let cipher = XChaCha20Poly1305::new((&key).into());
    key.zeroize();
    cipher
}

impl Pepper {
    /// Seal `secret`, the secret of token `id`, under this pepper with a fresh random nonce.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`] when the generator fails; [`Error::SealFailed`] if the cipher refuses.
    pub fn seal(&self, id: TokenId, secret: &Secret) -> Result<Sealed, Error> {
        let mut nonce = [0u8; 24];
        OsRng.try_fill_bytes(&mut nonce).map_err(|_| Error::Rng)?;
        let aad = aad(id);
        let ciphertext = cipher(self)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::SealFailed)?;
        Ok(Sealed {
            key: self.id(),
            nonce,
            ciphertext,
        })
    }
}

impl Peppers {
    /// Open the sealed secret of token `id` with the pepper it names.
    ///
    /// # Errors
    ///
    /// [`Error::SealKeyRetired`] when that pepper is no longer configured;
    /// [`Error::SealBroken`] when it does not open (another pepper under the same key id, a
    /// value altered or copied from another token).
    pub fn open(&self, id: TokenId, sealed: &Sealed) -> Result<Secret, Error> {
        let pepper = self
            .all()
            .find(|p| p.id() == sealed.key)
            .ok_or(Error::SealKeyRetired { key: sealed.key })?;
        let aad = aad(id);
        let plain = Zeroizing::new(
            cipher(pepper)
                .decrypt(
                    XNonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| Error::SealBroken { key: sealed.key })?,
        );
        let text =
            core::str::from_utf8(&plain).map_err(|_| Error::SealBroken { key: sealed.key })?;
        Ok(Secret::from_presented(text))
    }

    /// Seal `secret` of token `id` under the current pepper.
    ///
    /// # Errors
    ///
    /// As [`Pepper::seal`].
    pub fn seal(&self, id: TokenId, secret: &Secret) -> Result<Sealed, Error> {
        self.current().seal(id, secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    fn pepper(id: u32, b: u8) -> Pepper {
        Pepper::new(KeyId(id), [b; 32])
    }

    #[test]
    fn opens_under_its_pepper_and_round_trips_bytes() {
        let peppers = Peppers::new(pepper(1, 1));
        let id = TokenId::generate().unwrap();
        let s = Secret::generate(Kind::Deployment).unwrap();
        let sealed = peppers.seal(id, &s).unwrap();
        assert_eq!(sealed.key(), KeyId(1));
        let back = Sealed::from_bytes(&sealed.to_bytes()).unwrap();
        assert_eq!(back, sealed);
        assert!(peppers.open(id, &back).unwrap().ct_eq(s.expose_secret()));
    }

    #[test]
    fn never_holds_or_prints_the_plaintext() {
        let peppers = Peppers::new(pepper(1, 1));
        let id = TokenId::generate().unwrap();
        let s = Secret::generate(Kind::Deployment).unwrap();
        let sealed = peppers.seal(id, &s).unwrap();
        let text = s.expose_secret().as_bytes();
        let bytes = sealed.to_bytes();
        assert!(!bytes.windows(12).any(|w| text.windows(12).any(|t| t == w)));
        let dbg = format!("{sealed:?}");
        assert!(
            !dbg.contains(s.expose_secret()) && !dbg.contains("tsr_"),
            "{dbg}"
        );
        // Two seals of one secret differ (random nonce).
        assert_ne!(peppers.seal(id, &s).unwrap(), sealed);
    }

    #[test]
    fn refuses_another_token_a_retired_or_a_wrong_pepper_and_tampering() {
        let id = TokenId::generate().unwrap();
        let s = Secret::generate(Kind::Deployment).unwrap();
        let sealed = Peppers::new(pepper(1, 1)).seal(id, &s).unwrap();
        let other = TokenId::generate().unwrap();
        let peppers = Peppers::new(pepper(1, 1));
        assert_eq!(
            peppers.open(other, &sealed).unwrap_err(),
            Error::SealBroken { key: KeyId(1) }
        );
        let rotated = Peppers::new(pepper(2, 2)).with_previous(pepper(1, 1));
        assert!(rotated.open(id, &sealed).is_ok());
        let retired = Peppers::new(pepper(2, 2));
        let err = retired.open(id, &sealed).unwrap_err();
        assert_eq!(err, Error::SealKeyRetired { key: KeyId(1) });
        assert!(err.to_string().contains("k1"), "{err}");
        let wrong = Peppers::new(pepper(1, 9));
        assert_eq!(
            wrong.open(id, &sealed).unwrap_err(),
            Error::SealBroken { key: KeyId(1) }
        );
        let mut bytes = sealed.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = Sealed::from_bytes(&bytes).unwrap();
        assert!(peppers.open(id, &tampered).is_err());
        assert_eq!(
            Sealed::from_bytes(&bytes[..20]).unwrap_err(),
            Error::SealedMalformed
        );
    }
}
