//! [`Error`]: what can be wrong in this crate's configuration.

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// A configuration value this crate cannot use. Requests never produce one: they get a
/// [`Refusal`](crate::Refusal).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A trusted proxy is neither an address nor a CIDR range.
    #[error(
        "trusted proxy `{input}` is not an address or a CIDR range (`10.0.0.7`, `10.0.0.0/8`, \
         `fd00::/8`); fix the proxy list"
    )]
    TrustedProxy {
        /// What was given.
        input: String,
    },
}
