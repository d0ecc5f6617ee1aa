//! How a secret is spelled: prefixed tokens with a checksum, the plain 64-character endpoint form
//! and the short onboarding code; generation and the parser for text from outside.
//!
//! # The prefixed form
//!
//! `tsr_onb_` + body + checksum. The body is base62 (`0-9A-Za-z`), 43 random characters plus one
//! random letter for the default 256 bits. The checksum is the CRC-32 of prefix and body spelled
//! as six base62 digits, so it always starts with `0`..`4`. CRC-32 catches every change confined
//! to 32 consecutive bits, hence every single-character substitution and every adjacent
//! transposition inside prefix and body; the checksum digits are an injective spelling, so a
//! change there is caught too; and a swap across the body/checksum boundary puts a letter in the
//! checksum's first place, which no checksum can hold.
//!
//! # The short code
//!
//! 26 Crockford base32 characters (130 bits) and two check characters, in groups of four:
//! `7K3M-...`. The check makes the weighted sum of all 28 digits zero modulo the prime 1021, with
//! distinct non-zero weights, which catches every single substitution and every adjacent
//! transposition. Input is read the Crockford way: any case, `I`/`L` as `1`, `O` as `0`, dashes
//! ignored.

use core::fmt;

use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, FormatError, InvalidInput};
use crate::secret::Secret;

/// The most bytes any presented token may have; longer input is refused before anything else.
pub const MAX_TOKEN_LEN: usize = 512;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LETTERS: &[u8; 52] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CHECKSUM_LEN: usize = 6;
const PREFIX_LEN: usize = 8;
const PLAIN_LEN: usize = 64;
const SHORT_DATA: usize = 26;
const SHORT_LEN: usize = SHORT_DATA + 2;
const SHORT_PRIME: u32 = 1021;

/// The five token kinds, one per product the design takes them from.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Mass-deployment token for client installers.
    Deployment,
    /// Device onboarding (enrollment) token, shown as a QR code, usage-limited.
    Onboarding,
    /// Per-endpoint primary and secondary tokens.
    Endpoint,
    /// Per-user scoped REST API token.
    Auth,
    /// Application bearer token with per-IP usage log.
    Application,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Deployment,
        Self::Onboarding,
        Self::Endpoint,
        Self::Auth,
        Self::Application,
    ];

    /// The readable prefix that starts every prefixed token of this kind.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Deployment => "tsr_dep_",
            Self::Onboarding => "tsr_onb_",
            Self::Endpoint => "tsr_ept_",
            Self::Auth => "tsr_aut_",
            Self::Application => "tsr_app_",
        }
    }

    /// A lowercase name, as stored and printed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::Onboarding => "onboarding",
            Self::Endpoint => "endpoint",
            Self::Auth => "auth",
            Self::Application => "application",
        }
    }

    /// The name with its indefinite article, for messages ("an application", "a deployment").
    pub const fn with_article(self) -> &'static str {
        match self {
            Self::Deployment => "a deployment",
            Self::Onboarding => "an onboarding",
            Self::Endpoint => "an endpoint",
            Self::Auth => "an auth",
            Self::Application => "an application",
        }
    }

    /// Parse the name given by [`Kind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn from_prefix(p: &[u8]) -> Option<Self> {
        // One comparison of eight bytes per arm, rather than a slice comparison per kind.
        match p {
            b"tsr_dep_" => Some(Self::Deployment),
            b"tsr_onb_" => Some(Self::Onboarding),
            b"tsr_ept_" => Some(Self::Endpoint),
            b"tsr_aut_" => Some(Self::Auth),
            b"tsr_app_" => Some(Self::Application),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How a secret is spelled.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Spelling {
    /// `tsr_xxx_` + base62 body + base62 CRC-32: the default for every kind.
    #[default]
    Prefixed,
    /// 64 random alphanumerics with no prefix or checksum: endpoint secondary tokens.
    Plain64,
    /// Grouped Crockford base32 with two check characters: onboarding codes typed on a device.
    ShortCode,
}

/// How many bits of entropy a generated prefixed token carries: 256 by default, never fewer
/// than 128, at most 512.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Entropy(u32);

impl Entropy {
    /// The default: 256 bits.
    pub const DEFAULT: Self = Self(256);
    /// The floor: 128 bits.
    pub const MIN: Self = Self(128);
    /// The ceiling: 512 bits.
    pub const MAX: Self = Self(512);

    /// Ask for `bits` bits of entropy.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Entropy`] below 128 or above 512 bits.
    pub fn bits(bits: u32) -> Result<Self, Error> {
        if (Self::MIN.0..=Self::MAX.0).contains(&bits) {
            Ok(Self(bits))
        } else {
            Err(InvalidInput::Entropy { bits }.into())
        }
    }

    /// Characters in the body: enough full base62 characters for the bits, plus one letter.
    const fn body_len(self) -> usize {
        // log2(62) = 5.954...: multiply by 1000 to stay in integers.
        (self.0 as usize * 1000).div_ceil(5954) + 1
    }
}

impl Default for Entropy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

const MIN_BODY: usize = Entropy::MIN.body_len();
const MAX_BODY: usize = Entropy::MAX.body_len();

impl Secret {
    /// Generate a prefixed token of `kind` with 256 bits from the OS CSPRNG.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`] when the operating system's generator fails.
    pub fn generate(kind: Kind) -> Result<Self, Error> {
        Self::generate_with(kind, Spelling::Prefixed, Entropy::DEFAULT)
    }

    /// Generate a token of `kind` in the given spelling. `entropy` applies to prefixed tokens;
    /// a plain token always has 64 characters (381 bits) and a short code 26 (130 bits).
    ///
    /// # Errors
    ///
    /// [`Error::Rng`] when the operating system's generator fails.
    pub fn generate_with(kind: Kind, spelling: Spelling, entropy: Entropy) -> Result<Self, Error> {
        let text = match spelling {
            Spelling::Prefixed => {
                let n = entropy.body_len();
                let mut s = String::with_capacity(PREFIX_LEN + n + CHECKSUM_LEN);
                s.push_str(kind.prefix());
                random_chars(&mut s, BASE62, n - 1)?;
                random_chars(&mut s, LETTERS, 1)?;
                let crc = crc32fast::hash(s.as_bytes());
                push_base62_fixed(&mut s, crc);
                s
            }
            Spelling::Plain64 => {
                let mut s = String::with_capacity(PLAIN_LEN);
                random_chars(&mut s, BASE62, PLAIN_LEN)?;
                s
            }
            Spelling::ShortCode => {
                let mut digits = [0u8; SHORT_LEN];
                random_indices(CROCKFORD.len(), &mut digits[..SHORT_DATA])?;
                let v = short_check(&digits[..SHORT_DATA]);
                digits[SHORT_DATA] = u8::try_from(v / 32).unwrap_or(0);
                digits[SHORT_DATA + 1] = u8::try_from(v % 32).unwrap_or(0);
                let mut s = String::with_capacity(SHORT_LEN + SHORT_LEN / 4);
                for (i, d) in digits.iter().enumerate() {
                    if i > 0 && i % 4 == 0 {
                        s.push('-');
                    }
                    s.push(char::from(CROCKFORD[usize::from(*d)]));
                }
                digits.fill(0);
                s
            }
        };
        Ok(Self::from_generated(text))
    }
}

fn random_chars(out: &mut String, alphabet: &[u8], n: usize) -> Result<(), Error> {
    let mut indices = [0u8; 128];
    let mut left = n;
    while left > 0 {
        let chunk = &mut indices[..left.min(128)];
        random_indices(alphabet.len(), chunk)?;
        out.extend(chunk.iter().map(|i| char::from(alphabet[usize::from(*i)])));
        left -= chunk.len();
    }
    indices.fill(0);
    Ok(())
}

/// Fill `out` with uniform indices below `len` (at most 256) from the OS CSPRNG, by rejection
/// sampling: bytes at or above the largest multiple of `len` are drawn again.
fn random_indices(len: usize, out: &mut [u8]) -> Result<(), Error> {
    let limit = 256 - 256 % len;
    let mut buf = [0u8; 64];
    let mut filled = 0;
    while filled < out.len() {
        OsRng.try_fill_bytes(&mut buf).map_err(|_| Error::Rng)?;
        for b in buf {
            if filled == out.len() {
                break;
            }
            if usize::from(b) < limit {
                // b % len < len <= 256: fits a byte.
                out[filled] = u8::try_from(usize::from(b) % len).unwrap_or(0);
                filled += 1;
            }
        }
    }
    buf.fill(0);
    Ok(())
}

fn push_base62_fixed(out: &mut String, v: u32) {
    for d in base62_fixed(v) {
        out.push(char::from(d));
    }
}

/// `v` as exactly six base62 digits, most significant first (`62^6 > 2^32`).
fn base62_fixed(mut v: u32) -> [u8; CHECKSUM_LEN] {
    let mut digits = [b'0'; CHECKSUM_LEN];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(v % 62) as usize];
        v /= 62;
    }
    digits
}

/// The value of each base62 digit (0 for other bytes, which the charset check has refused).
const BASE62_VALUE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i: u8 = 0;
    while i < 62 {
        t[BASE62[i as usize] as usize] = i;
        i += 1;
    }
    t
};

/// `[A-Za-z0-9]`, without branches.
const fn is_alphanumeric(b: u8) -> bool {
    (b.wrapping_sub(b'0') < 10) | ((b | 0x20).wrapping_sub(b'a') < 26)
}

/// `[A-Za-z0-9_-]`, the envelope's charset, without branches.
const fn in_envelope(b: u8) -> bool {
    is_alphanumeric(b) | (b == b'_') | (b == b'-')
}

/// Whether `class` holds for every byte. It reads every byte with no early exit so that the
/// compiler checks many bytes at once: token text is random, and a per-byte branch on its
/// character class mispredicts on most bytes. Callers look for the position only on failure.
fn all_bytes(bytes: &[u8], class: fn(u8) -> bool) -> bool {
    bytes.iter().fold(true, |ok, b| ok & class(*b))
}

const fn crockford_value(c: u8) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    match c {
        b'0' | b'O' => Some(0),
        b'1' | b'I' | b'L' => Some(1),
        b'2'..=b'9' => Some(c - b'0'),
        b'A'..=b'H' => Some(c - b'A' + 10),
        b'J' | b'K' => Some(c - b'J' + 18),
        b'M' | b'N' => Some(c - b'M' + 20),
        b'P'..=b'T' => Some(c - b'P' + 22),
        b'V'..=b'Z' => Some(c - b'V' + 27),
        _ => None,
    }
}

/// Weight of digit `i` in the short-code sum: distinct, non-zero and below the prime; the two
/// check digits weigh 32 and 1 so that together they can reach every residue.
const fn short_weight(i: usize) -> u32 {
    match i {
        SHORT_DATA => 32,
        x if x == SHORT_DATA + 1 => 1,
        #[expect(clippy::cast_possible_truncation, reason = "i < 28")]
        _ => i as u32 + 2,
    }
}

/// The check value for the data digits: what `32*c0 + c1` must be for the sum to be zero.
fn short_check(data: &[u8]) -> u32 {
    let s: u32 = data
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * short_weight(i))
        .sum::<u32>()
        % SHORT_PRIME;
    (SHORT_PRIME - s) % SHORT_PRIME
}

/// A token that passed the parser: its kind, spelling and canonical bytes, borrowed or
/// normalised. It is as secret as the text it came from, so its `Debug` is redacted too.
pub struct Presented<'a> {
    kind: Kind,
    spelling: Spelling,
    canonical: Canonical<'a>,
}

enum Canonical<'a> {
    Borrowed(&'a [u8]),
    Short([u8; SHORT_LEN]),
}

impl Presented<'_> {
    /// The token's kind.
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// How the token was spelled.
    pub const fn spelling(&self) -> Spelling {
        self.spelling
    }

    /// The canonical bytes that are digested: the token itself, or a short code in upper case
    /// without dashes.
    pub fn canonical(&self) -> &[u8] {
        match &self.canonical {
            Canonical::Borrowed(b) => b,
            Canonical::Short(b) => b,
        }
    }

    /// The non-secret hint for listings.
    pub fn hint(&self) -> crate::digest::Hint {
        crate::digest::Hint::of_canonical(self.spelling, self.canonical())
    }
}

impl Drop for Presented<'_> {
    fn drop(&mut self) {
        if let Canonical::Short(b) = &mut self.canonical {
            zeroize::Zeroize::zeroize(b);
        }
    }
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("kind", &self.kind)
            .field("spelling", &self.spelling)
            .finish_non_exhaustive()
    }
}

/// Parse text from outside as a token of `expected` kind.
///
/// Prefixed tokens are accepted for every kind; the plain 64-character form only for
/// [`Kind::Endpoint`]; short codes only for [`Kind::Onboarding`]. Checks run cheapest first:
/// length cap, charset, prefix, body length, checksum. Nothing is allocated.
///
/// # Errors
///
/// The first [`FormatError`] found.
///
/// # Examples
///
/// ```
/// use tessera_core::{format::parse, FormatError, Kind, Secret};
///
/// let secret = Secret::generate(Kind::Auth)?;
/// let parsed = parse(Kind::Auth, secret.expose_secret())?;
/// assert_eq!(parsed.kind(), Kind::Auth);
/// assert!(matches!(parse(Kind::Auth, "tsr_aut_nope"), Err(FormatError::BodyLength { .. })));
/// # Ok::<(), tessera_core::Error>(())
/// ```
pub fn parse(expected: Kind, input: &str) -> Result<Presented<'_>, FormatError> {
    let bytes = input.as_bytes();
    if bytes.starts_with(b"tsr_") {
        let kind = parse_prefixed(bytes)?;
        if kind != expected {
            return Err(FormatError::WrongKind {
                expected,
                found: kind,
            });
        }
        return Ok(Presented {
            kind,
            spelling: Spelling::Prefixed,
            canonical: Canonical::Borrowed(bytes),
        });
    }
    check_envelope(bytes)?;
    match expected {
        Kind::Endpoint if bytes.len() == PLAIN_LEN && all_bytes(bytes, is_alphanumeric) => {
            Ok(Presented {
                kind: expected,
                spelling: Spelling::Plain64,
                canonical: Canonical::Borrowed(bytes),
            })
        }
        Kind::Onboarding if !bytes.contains(&b'_') => Ok(Presented {
            kind: expected,
            spelling: Spelling::ShortCode,
            canonical: Canonical::Short(parse_short(bytes)?),
        }),
        _ => Err(FormatError::UnknownPrefix),
    }
}

/// Parse text as any prefixed Tessera token, whatever its kind (for scanners).
///
/// # Errors
///
/// The first [`FormatError`] found.
pub fn parse_any(input: &str) -> Result<Presented<'_>, FormatError> {
    let bytes = input.as_bytes();
    let kind = parse_prefixed(bytes)?;
    Ok(Presented {
        kind,
        spelling: Spelling::Prefixed,
        canonical: Canonical::Borrowed(bytes),
    })
}

fn check_envelope(bytes: &[u8]) -> Result<(), FormatError> {
    if bytes.is_empty() {
        return Err(FormatError::Empty);
    }
    if bytes.len() > MAX_TOKEN_LEN {
        return Err(FormatError::TooLong {
            len: bytes.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    if !all_bytes(bytes, in_envelope) {
        if let Some(at) = bytes.iter().position(|b| !in_envelope(*b)) {
            return Err(FormatError::Charset { at });
        }
    }
    Ok(())
}

/// Parse a prefixed token, envelope included, with every check in the documented order.
///
/// The common case, a known prefix and an alphanumeric rest within the length cap, passes the
/// envelope and the charset checks by construction, so one pass over the text is enough and
/// only length and checksum are left to decide. Anything else takes the checks one by one.
fn parse_prefixed(bytes: &[u8]) -> Result<Kind, FormatError> {
    if let Some(kind) = bytes.get(..PREFIX_LEN).and_then(Kind::from_prefix) {
        let rest = &bytes[PREFIX_LEN..];
        if bytes.len() <= MAX_TOKEN_LEN && all_bytes(rest, is_alphanumeric) {
            let body_len = check_body_len(rest)?;
            check_sum(bytes, body_len)?;
            return Ok(kind);
        }
    }
    check_envelope(bytes)?;
    let kind = bytes
        .get(..PREFIX_LEN)
        .and_then(Kind::from_prefix)
        .ok_or(FormatError::UnknownPrefix)?;
    let rest = &bytes[PREFIX_LEN..];
    let body_len = check_body_len(rest)?;
    if let Some(at) = rest.iter().position(|b| !is_alphanumeric(*b)) {
        return Err(FormatError::Charset {
            at: PREFIX_LEN + at,
        });
    }
    check_sum(bytes, body_len)?;
    Ok(kind)
}

/// The body's length, from what follows the prefix.
fn check_body_len(rest: &[u8]) -> Result<usize, FormatError> {
    let body_len = rest.len().saturating_sub(CHECKSUM_LEN);
    if rest.len() < MIN_BODY + CHECKSUM_LEN || body_len > MAX_BODY {
        return Err(FormatError::BodyLength {
            len: body_len,
            min: MIN_BODY,
            max: MAX_BODY,
        });
    }
    Ok(body_len)
}

/// The checksum of an alphanumeric token whose body has `body_len` characters.
fn check_sum(bytes: &[u8], body_len: usize) -> Result<(), FormatError> {
    let (signed, sum) = bytes.split_at(PREFIX_LEN + body_len);
    if !signed[signed.len() - 1].is_ascii_alphabetic() {
        // The body always ends in a letter; a digit here means a swap with the checksum.
        return Err(FormatError::Checksum);
    }
    // Every character here is base62: read the digits by table, with no branch per digit and no
    // chain of dependent steps.
    let v: u64 = sum
        .iter()
        .zip([916_132_832, 14_776_336, 238_328, 3_844, 62, 1])
        .map(|(c, place)| u64::from(BASE62_VALUE[usize::from(*c)]) * place)
        .sum();
    if v != u64::from(crc32fast::hash(signed)) {
        return Err(FormatError::Checksum);
    }
    Ok(())
}

fn parse_short(bytes: &[u8]) -> Result<[u8; SHORT_LEN], FormatError> {
    let mut out = [0u8; SHORT_LEN];
    let mut digits = [0u8; SHORT_LEN];
    let mut n = 0;
    for (at, b) in bytes.iter().enumerate() {
        if *b == b'-' {
            continue;
        }
        let d = crockford_value(*b).ok_or(FormatError::Charset { at })?;
        if n == SHORT_LEN {
            n += 1;
            break;
        }
        digits[n] = d;
        n += 1;
    }
    if n != SHORT_LEN {
        let len = if n > SHORT_LEN {
            bytes.iter().filter(|b| **b != b'-').count()
        } else {
            n
        };
        return Err(FormatError::BodyLength {
            len,
            min: SHORT_LEN,
            max: SHORT_LEN,
        });
    }
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * short_weight(i))
        .sum();
    if sum % SHORT_PRIME != 0 {
        return Err(FormatError::Checksum);
    }
    for (o, d) in out.iter_mut().zip(digits) {
        *o = CROCKFORD[usize::from(d)];
    }
    digits.fill(0);
    Ok(out)
}

/// Find every prefixed Tessera token with a valid checksum in `text`, with its byte offset.
///
/// A token is found after any byte, including a letter or digit (a JSON-escaped `\n<token>`,
/// a URL-encoded `%3D<token>` or `Bearer%20<token>`): the prefix and the checksum, not the
/// text around it, tell a token. It runs to the last letter or digit after the prefix, so a
/// token with a character cut or added does not check out. Look-alikes (right prefix, wrong
/// checksum) are not reported, so a scanner has no false positives from random text.
pub fn scan(text: &str) -> Vec<(usize, Presented<'_>)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(off) = find(&bytes[i..], b"tsr_") {
        let start = i + off;
        let mut end = start + PREFIX_LEN;
        while end < bytes.len() && bytes[end].is_ascii_alphanumeric() {
            end += 1;
        }
        if end <= bytes.len() {
            if let Some(candidate) = text.get(start..end) {
                if let Ok(p) = parse_any(candidate) {
                    found.push((start, p));
                    i = end;
                    continue;
                }
            }
        }
        i = start + 4;
    }
    found
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
