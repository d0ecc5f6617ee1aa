//! # tessera-qr
//!
//! Put a Tessera token in a QR code. Build a [`Payload`] around the token, then draw it with
//! [`render_svg`], [`render_png`] or [`render_terminal`] under some [`Options`].
//!
//! ## Which payload
//!
//! - [`Payload::text`]: the token alone. The smallest, most robust code; pick it when your own
//!   app scans the code and knows where to send the token, or for a short code
//!   ([`Spelling::ShortCode`](tessera_core::format::Spelling)) someone may also type.
//! - [`Payload::uri`]: a link such as `https://mdm.example.com/enroll?token=...` or
//!   `myapp://enroll?token=...`, built from a checked [`Uri`]. Pick it when a phone's own camera
//!   scans the code: the link opens your enrollment page or app with the token in it.
//! - [`Payload::android`]: the Android Enterprise provisioning JSON from an
//!   [`AndroidProvisioning`]. Pick it for a factory-reset Android device, tapped six times on
//!   its welcome screen: it downloads the DPC named in the JSON and hands it the token.
//!
//! A payload carries the token, so it never prints it (`Debug` is redacted), wipes it on drop,
//! and gives it out only through [`Payload::expose_text`]. Errors never contain it.
//!
//! ## Which options
//!
//! Error correction [`EcLevel::M`] suits screens; [`EcLevel::H`] suits printed codes, at the
//! price of a denser code. The Android payload is a few hundred bytes, so it makes a large code
//! at `H`; a payload that fits no QR version is [`Error::TooLarge`]. Keep the quiet zone on.
//!
//! ## Example
//!
//! ```
//! use tessera_core::{Kind, Secret};
//! use tessera_qr::{EcLevel, Options, Payload, Uri, render_png, render_svg, render_terminal};
//!
//! let secret = Secret::generate(Kind::Onboarding)?;
//! let uri = Uri::parse("https://mdm.example.com/enroll")?;
//! let payload = Payload::uri(&secret, &uri);
//! assert!(payload.expose_text().starts_with("https://mdm.example.com/enroll?token=tsr_onb_"));
//!
//! let options = Options::default().with_ec_level(EcLevel::Q);
//! let svg = render_svg(&payload, &options)?;
//! let png = render_png(&payload, &options)?;
//! let text = render_terminal(&payload, &options)?;
//! assert!(svg.starts_with("<svg"));
//! assert!(png.starts_with(b"\x89PNG"));
//! assert!(text.contains('█'));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod android;
mod error;
mod options;
mod payload;
mod render;
mod uri;

pub use android::AndroidProvisioning;
pub use error::{Error, Result};
pub use options::{EcLevel, Options, TerminalColors};
pub use payload::{Payload, PayloadKind};
pub use render::{render_png, render_svg, render_terminal};
pub use uri::Uri;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
