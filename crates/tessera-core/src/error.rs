//! The one error type of `tessera-core`, with its detail enums.

use crate::lifecycle::{Action, State};

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong in `tessera-core`.
///
/// Messages are lowercase, say what was wrong and what to do, and never contain a secret.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A token string could not be parsed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A lifecycle transition is not allowed from the current state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// A value given by a caller broke one of its rules (a name, a description, a scope...).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The operating system's random number generator failed.
    #[error(
        "the operating system's random number generator failed; retry, and check the host's entropy source"
    )]
    Rng,
    /// A sealed secret names a pepper that is no longer configured.
    #[error(
        "the token's secret is sealed under pepper {key}, which is no longer configured; configure that pepper again as a previous one, or issue a new token"
    )]
    SealKeyRetired {
        /// The pepper it is sealed under.
        key: crate::digest::KeyId,
    },
    /// A sealed secret did not open under the pepper it names.
    #[error(
        "the token's sealed secret does not open under pepper {key}: the pepper configured as {key} is not the one that sealed it, or the stored value was altered; check the pepper, or issue a new token"
    )]
    SealBroken {
        /// The pepper it names.
        key: crate::digest::KeyId,
    },
    /// Stored bytes are not a sealed value this version reads.
    #[error("a stored sealed secret is malformed or of an unknown version; issue a new token")]
    SealedMalformed,
    /// The cipher refused to seal (never expected for a token-sized secret).
    #[error("sealing the token's secret failed; retry, and report it if it persists")]
    SealFailed,
}

/// Why a token string was refused by the parser.
///
/// Variants are checked in this order: length, charset, prefix, body, checksum.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input was empty.
    #[error("token is empty; pass the whole token as it was issued")]
    Empty,
    /// The input is longer than any token can be.
    #[error("token is {len} bytes long, more than the {max} any token can be; pass only the token")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The input holds a character no token contains.
    #[error(
        "token holds a character no token contains at byte {at}; copy the token again without spaces or quotes"
    )]
    Charset {
        /// Byte offset of the first offending character.
        at: usize,
    },
    /// The input does not start with a known Tessera prefix.
    #[error(
        "token does not start with a known prefix such as `tsr_onb_`; check that this is a Tessera token"
    )]
    UnknownPrefix,
    /// The token is of another kind than the one expected.
    #[error(
        "token is {} token where {} token was expected; use the right token for this call",
        found.with_article(),
        expected.with_article()
    )]
    WrongKind {
        /// The kind that was expected.
        expected: crate::Kind,
        /// The kind the prefix names.
        found: crate::Kind,
    },
    /// The body is shorter or longer than a token of this kind can be.
    #[error(
        "token body has {len} characters, outside {min}..={max}; the token was truncated or extended, copy it again"
    )]
    BodyLength {
        /// Characters in the body.
        len: usize,
        /// Fewest characters allowed.
        min: usize,
        /// Most characters allowed.
        max: usize,
    },
    /// The checksum at the end does not match the rest: a typo or a truncated copy.
    #[error("token checksum does not match; the token was mistyped or damaged, copy it again")]
    Checksum,
}

/// A lifecycle action that is not allowed from a state.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("cannot {action} a token that is {from}; {hint}", hint = from.hint())]
pub struct TransitionError {
    /// The state the token was in.
    pub from: State,
    /// The action that was refused.
    pub action: Action,
}

/// A caller-supplied value that breaks a rule.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A name was empty, too long or held forbidden characters.
    #[error("{what} is invalid: {why}")]
    Name {
        /// Which name (e.g. "application token name").
        what: &'static str,
        /// What is wrong and how to fix it.
        why: String,
    },
    /// A text field is longer than allowed.
    #[error("{what} has {len} characters, more than the {max} allowed; shorten it")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An expiry could not be parsed.
    #[error(
        "expiry `{input}` is not understood: {why}; write e.g. `90m`, `12h`, `30d` or `2027-01-31`"
    )]
    Expiry {
        /// The offending text (never a secret: expiries are not secrets), cut to 64 characters.
        input: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A set that must not be empty was empty.
    #[error("{what} must hold at least one entry; pick one or more")]
    Empty {
        /// Which set.
        what: &'static str,
    },
    /// An entropy request below the floor.
    #[error("{bits} bits of entropy is too few; tokens carry at least 128 bits")]
    Entropy {
        /// Bits asked for.
        bits: u32,
    },
    /// An expiry that lies in the past, or a window that is not positive.
    #[error("{what} must lie in the future; pick a later time")]
    NotInFuture {
        /// Which value.
        what: &'static str,
    },
    /// A usage limit of zero.
    #[error("a usage limit of 0 would make the token useless; use 1 or more, or unlimited")]
    ZeroUses,
    /// A scope action outside what the user holds.
    #[error("scope action `{action}` is not delegated to the user; pick actions the user holds")]
    ScopeNotHeld {
        /// The action.
        action: String,
    },
    /// An IP address could not be read.
    #[error("`{input}` is not an IP address; {why}")]
    Ip {
        /// The offending text, cut to 64 characters.
        input: String,
        /// What is wrong and how to write it.
        why: &'static str,
    },
    /// A value given twice where each may appear once.
    #[error("{what} `{value}` is given twice; give each once")]
    Repeated {
        /// Which list.
        what: &'static str,
        /// The repeated value (never a secret: access types and the like).
        value: String,
    },
    /// An application access type outside the set the service offers.
    #[error("access type `{given}` is not offered; pick from: {offered}")]
    AccessTypeNotOffered {
        /// The type asked for.
        given: String,
        /// The offered types, comma-separated.
        offered: String,
    },
    /// An identifier could not be parsed.
    #[error("{what} `{input}` is not a valid identifier; {why}")]
    Id {
        /// Which identifier.
        what: &'static str,
        /// The offending text, cut to 64 characters.
        input: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Cut untrusted text for an error message. Text that may hold a token (one pasted into the
/// wrong field, whole or damaged) is redacted whole, so that no message carries a secret: any
/// text with a `tsr_` prefix or with 24 or more letters and digits (no expiry or hint has that
/// many, and a token id that long is refused without being echoed).
pub(crate) fn cut(s: &str) -> String {
    if s.contains("tsr_") || s.bytes().filter(u8::is_ascii_alphanumeric).count() >= 24 {
        return String::from("[REDACTED]");
    }
    s.chars().take(64).collect()
}
