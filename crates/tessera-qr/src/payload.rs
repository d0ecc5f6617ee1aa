//! [`Payload`]: the text a QR code carries, built around a token.

use core::fmt;

use tessera_core::Secret;
use zeroize::Zeroize;

use crate::android::AndroidProvisioning;
use crate::uri::Uri;

/// Which shape a [`Payload`] has.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum PayloadKind {
    /// The Android Enterprise provisioning JSON, token in the admin extras bundle.
    AndroidProvisioning,
    /// The token alone.
    Text,
    /// A link with the token in a query parameter.
    Uri,
}

/// The text a QR code carries. It holds a token, so it is handled like one: `Debug` shows only
/// its kind and `[REDACTED]`, the text is wiped on drop, and it is read only through [`Payload::expose_text`].
///
/// # Examples
///
/// ```
/// use tessera_qr::{Payload, PayloadKind};
/// use tessera_core::{Kind, Secret};
///
/// let secret = Secret::generate(Kind::Onboarding)?;
/// let payload = Payload::text(&secret);
/// assert_eq!(payload.expose_text(), secret.expose_secret());
/// assert_eq!(format!("{payload:?}"), "Payload { kind: Text, text: [REDACTED] }");
/// # Ok::<(), tessera_core::Error>(())
/// ```
pub struct Payload {
    kind: PayloadKind,
    text: String,
}

impl Payload {
    /// The token alone: the smallest code, for an app that already knows where to send it.
    pub fn text(secret: &Secret) -> Self {
        Self {
            kind: PayloadKind::Text,
            text: secret.expose_secret().to_owned(),
        }
    }

    /// A link with the token in a query parameter of `uri`, percent-encoded: for a phone's
    /// camera, which opens it in a browser or in the app that owns the scheme.
    pub fn uri(secret: &Secret, uri: &Uri) -> Self {
        Self {
            kind: PayloadKind::Uri,
            text: uri.link(secret.expose_secret()),
        }
    }

    /// The Android Enterprise provisioning JSON with the token in its admin extras bundle: for
    /// the QR provisioning of a factory-reset Android device.
    pub fn android(secret: &Secret, provisioning: &AndroidProvisioning) -> Self {
        Self {
            kind: PayloadKind::AndroidProvisioning,
            text: provisioning.json(secret.expose_secret()),
        }
    }

    /// Which shape this payload has.
    pub fn kind(&self) -> PayloadKind {
        self.kind
    }

    /// The payload's text, token included.
    ///
    /// # Security
    ///
    /// Whoever reads this can use the token: keep it between building the payload and
    /// rendering the code.
    pub fn expose_text(&self) -> &str {
        &self.text
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("kind", &self.kind)
            .field("text", &format_args!("[REDACTED]"))
            .finish()
    }
}
