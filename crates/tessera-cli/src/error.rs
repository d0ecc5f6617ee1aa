//! [`CliError`]: every way a command fails, each with its documented exit code.

use std::fmt;

use tessera::Rejection;
use tessera::store::StoreError;

/// Exit code: the command did what was asked.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code: storage or internal failure (database unreachable, unreadable, too new).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code: bad input or usage, an illegal state change, or a destructive command not
/// confirmed (clap's own usage errors use 2 as well).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: a token was checked and rejected.
pub(crate) const EXIT_REJECTED: u8 = 3;
/// Exit code: no such token, mapping or file, or the acting user may not do this.
pub(crate) const EXIT_NOT_FOUND: u8 = 4;
/// Exit code: `tessera scan` found at least one token (so it can gate CI).
pub(crate) const EXIT_TOKENS_FOUND: u8 = 5;

/// The exit codes as shown at the end of `tessera --help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok
  1  storage or internal error: database missing, unreachable, unreadable or newer than
     this build; pepper key file missing
  2  bad input or usage, an illegal state change, or a destructive command not confirmed
  3  token rejected (malformed, unknown, expired, revoked, disabled, out of scope, ...)
  4  not found (no such token or mapping) or forbidden for the acting user (see --as, --admin)
  5  `tessera scan` found at least one token (0 when the input is clean)

Secrets are printed once, when a token is created, and never again. Destructive commands ask
for confirmation unless --yes is given. Every listing and result takes --json.";

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum CliError {
    /// Bad input, usage, an illegal state change, or no confirmation (exit 2).
    Usage(String),
    /// Storage or internal failure (exit 1).
    Failure(String),
    /// A token was checked and rejected (exit 3).
    Rejected {
        /// Why.
        reason: Rejection,
        /// What was checked, for the message.
        context: String,
        /// What to do about it, when more is known than the reason's usual advice.
        fix: Option<String>,
    },
    /// Not found or forbidden (exit 4).
    NotFound(String),
    /// `scan` found this many tokens (exit 5).
    TokensFound(usize),
}

impl CliError {
    /// Bad input.
    pub(crate) fn usage(msg: impl Into<String>) -> Self {
        Self::Usage(msg.into())
    }

    /// Storage or internal failure.
    pub(crate) fn failure(msg: impl Into<String>) -> Self {
        Self::Failure(msg.into())
    }

    /// Not found or forbidden.
    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }

    /// A rejected token.
    pub(crate) fn rejected(reason: Rejection, context: impl Into<String>) -> Self {
        Self::Rejected {
            reason,
            context: context.into(),
            fix: None,
        }
    }

    /// The process exit code.
    pub(crate) const fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Failure(_) => EXIT_FAILURE,
            Self::Rejected { .. } => EXIT_REJECTED,
            Self::NotFound(_) => EXIT_NOT_FOUND,
            Self::TokensFound(_) => EXIT_TOKENS_FOUND,
        }
    }

    /// A stable name of the failure class, for `--json` error output.
    pub(crate) const fn class(&self) -> &'static str {
        match self {
            Self::Usage(_) => "bad_input",
            Self::Failure(_) => "storage",
            Self::Rejected { .. } => "rejected",
            Self::NotFound(_) => "not_found",
            Self::TokensFound(_) => "tokens_found",
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) | Self::Failure(m) | Self::NotFound(m) => f.write_str(m),
            Self::TokensFound(n) => write!(
                f,
                "found {n} Tessera token(s); revoke them (`tessera scan --revoke`) and remove them from the input"
            ),
            Self::Rejected {
                reason,
                context,
                fix,
            } => {
                write!(f, "{context} rejected: {reason} ({})", reason.code())?;
                if let Some(fix) = fix.as_deref().or_else(|| rejection_fix(*reason)) {
                    write!(f, "; {fix}")?;
                }
                Ok(())
            }
        }
    }
}

/// What an operator can do about a rejection.
pub(crate) const fn rejection_fix(reason: Rejection) -> Option<&'static str> {
    Some(match reason {
        Rejection::Malformed => "check that the whole token was copied, without quotes or spaces",
        Rejection::NotFound => "the token is not in this database: check --db or --database-url",
        Rejection::Expired | Rejection::Revoked | Rejection::RotatedOut | Rejection::Deleted => {
            "issue a new token"
        }
        Rejection::Exhausted => "issue a new token with more uses",
        Rejection::Disabled => {
            "activate it again (`tessera app activate ID` or `tessera endpoint secondary activate ID`)"
        }
        Rejection::ToggledOff => "turn its toggle on with `tessera endpoint secondary enable ID`",
        Rejection::Dormant => "reactivate it with `tessera app activate ID`",
        Rejection::IpBlocked => "unblock the address with `tessera app unblock ID IP`",
        Rejection::InsufficientScope => "generate a token whose --scope includes the action",
        Rejection::PermissionWithdrawn => {
            "delegate the action to the user again, or pass every action they hold in --held"
        }
        Rejection::WrongEndpoint => "present a token issued for this endpoint, or one mapped to it",
        Rejection::WrongMethod => "use the primary of this method",
        Rejection::MappingDisabled => "turn the mapping on with `endpoint secondary map-enable`",
        Rejection::DeviceMismatch => "the token is bound to another device",
        _ => return None,
    })
}

impl From<tessera::Error> for CliError {
    fn from(e: tessera::Error) -> Self {
        use tessera::core::Error as Core;
        let msg = e.to_string();
        match e {
            tessera::Error::Core(Core::Rng) => Self::Failure(msg),
            tessera::Error::Core(_)
            | tessera::Error::Unsupported(_)
            | tessera::Error::NotSealed { .. } => Self::Usage(msg),
            tessera::Error::Store(s) => s.into(),
            tessera::Error::Forbidden { .. } => Self::NotFound(format!(
                "{msg}; act as the owner with --as USER, or as an administrator with --admin"
            )),
            tessera::Error::NoSuchToken { .. } | tessera::Error::NoSuchEndpoint { .. } => {
                Self::NotFound(msg)
            }
            _ => Self::Failure(msg),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        match e {
            StoreError::NotFound { .. } => Self::NotFound(msg),
            StoreError::AlreadyExists { .. } => Self::Usage(msg),
            _ => Self::Failure(msg),
        }
    }
}

impl From<tessera::core::Error> for CliError {
    fn from(e: tessera::core::Error) -> Self {
        tessera::Error::Core(e).into()
    }
}

impl From<tessera::core::FormatError> for CliError {
    fn from(e: tessera::core::FormatError) -> Self {
        Self::Usage(e.to_string())
    }
}

impl From<tessera_qr::Error> for CliError {
    fn from(e: tessera_qr::Error) -> Self {
        Self::Usage(format!("cannot draw the QR code: {e}"))
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<tessera_sql::Error> for CliError {
    fn from(e: tessera_sql::Error) -> Self {
        Self::Failure(e.to_string())
    }
}

/// A `Result` whose error is [`CliError`].
pub(crate) type Result<T, E = CliError> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let codes = [
            CliError::usage("x").exit_code(),
            CliError::failure("x").exit_code(),
            CliError::rejected(Rejection::Expired, "token").exit_code(),
            CliError::not_found("x").exit_code(),
        ];
        assert_eq!(
            codes,
            [EXIT_USAGE, EXIT_FAILURE, EXIT_REJECTED, EXIT_NOT_FOUND]
        );
        assert_ne!(EXIT_OK, EXIT_FAILURE);
    }

    #[test]
    fn facade_errors_map_to_codes() {
        let e: CliError = tessera::Error::Forbidden { why: "no" }.into();
        assert_eq!(e.exit_code(), EXIT_NOT_FOUND);
        let e: CliError = StoreError::AlreadyExists { what: "name" }.into();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        let e: CliError = StoreError::Unavailable("busy".into()).into();
        assert_eq!(e.exit_code(), EXIT_FAILURE);
    }
}
