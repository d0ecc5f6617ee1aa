//! [`Error`]: everything that can go wrong building a payload or rendering a code.

use crate::options::EcLevel;

/// A [`Result`](core::result::Result) whose error defaults to [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Why a payload could not be built or a code could not be rendered.
///
/// No variant ever carries the token or the payload text: an error may be logged.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The QR encoder refused the payload for a reason other than its size; the message is the
    /// encoder's and never holds the payload.
    #[error("could not encode the qr code ({0}); report it, with the payload kind and length")]
    Encode(String),
    /// The base URL of a [`Uri`](crate::Uri) payload was refused; `reason` says why.
    #[error(
        "invalid base url: {reason}; use an https://, http:// or custom-scheme (myapp://enroll) url"
    )]
    InvalidBaseUrl {
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The device admin component name of an Android provisioning payload was refused.
    #[error(
        "invalid device admin component name; use `<package>/<receiver class>`, for example \
         `com.example.dpc/.AdminReceiver`"
    )]
    InvalidComponentName,
    /// The package download location of an Android provisioning payload was refused.
    #[error("invalid package download location: {reason}; use the https:// url of the dpc apk")]
    InvalidDownloadLocation {
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The admin extras key of an Android provisioning payload was refused.
    #[error(
        "invalid admin extras key; use a non-empty name of letters, digits, `.` and `_`, such as \
         `com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN`"
    )]
    InvalidExtrasKey,
    /// The module size in pixels is outside what the renderers accept.
    #[error(
        "module size of {size} pixels is out of range; use {} to {} pixels",
        crate::Options::MIN_MODULE_SIZE,
        crate::Options::MAX_MODULE_SIZE
    )]
    InvalidModuleSize {
        /// The size that was asked for.
        size: u32,
    },
    /// The query parameter name of a [`Uri`](crate::Uri) payload was refused.
    #[error(
        "invalid query parameter name; use 1 to 64 letters, digits, `-`, `.`, `_` or `~`, such as \
         `token`"
    )]
    InvalidParamName,
    /// The signature checksum of an Android provisioning payload was refused.
    #[error(
        "invalid signature checksum; use the base64 sha-256 of the dpc's signing certificate: \
         43 characters of one alphabet, url-safe (`-`, `_`) or standard (`+`, `/`, converted), \
         optionally one `=`"
    )]
    InvalidSignatureChecksum,
    /// The PNG encoder failed; the message is the encoder's, and never holds the payload.
    #[error("could not encode the png ({0}); retry, and report it if it persists")]
    Png(String),
    /// The payload does not fit any QR version at the chosen error-correction level.
    #[error(
        "payload of {bytes} bytes does not fit any qr code at error correction level {level}; \
         choose a lower level or a shorter payload (a plain-text token instead of a uri or \
         android payload)"
    )]
    TooLarge {
        /// The payload's length in bytes.
        bytes: usize,
        /// The level it was encoded at.
        level: EcLevel,
    },
}
