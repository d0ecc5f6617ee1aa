//! [`AndroidProvisioning`]: the Android Enterprise provisioning payload, a JSON object that a
//! factory-reset device reads from a QR code to download its device policy controller (DPC)
//! and hand it the enrollment token.

use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::error::{Error, Result};

const COMPONENT_NAME: &str = "android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME";
const DOWNLOAD_LOCATION: &str =
    "android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION";
const SIGNATURE_CHECKSUM: &str = "android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM";
const SKIP_ENCRYPTION: &str = "android.app.extra.PROVISIONING_SKIP_ENCRYPTION";
const LEAVE_ALL_SYSTEM_APPS_ENABLED: &str =
    "android.app.extra.PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED";
const ADMIN_EXTRAS_BUNDLE: &str = "android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE";

const MAX_COMPONENT_LEN: usize = 512;
const MAX_EXTRAS_KEY_LEN: usize = 256;

/// What an Android Enterprise provisioning QR code says besides the token: which DPC to
/// download, from where, how to check it, and under which key of the admin extras bundle the
/// DPC finds the token.
///
/// The JSON holds `PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME`,
/// `PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION`,
/// `PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM`, `PROVISIONING_SKIP_ENCRYPTION` and
/// `PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED` when set, and
/// `PROVISIONING_ADMIN_EXTRAS_BUNDLE` = `{ <extras key>: <token> }` (all under
/// `android.app.extra.`). The extras key is Android Device Policy's
/// [`AndroidProvisioning::DEFAULT_EXTRAS_KEY`] unless [`AndroidProvisioning::with_extras_key`]
/// names your own DPC's.
///
/// # Examples
///
/// ```
/// use tessera_qr::{AndroidProvisioning, Payload};
/// use tessera_core::{Kind, Secret};
///
/// let provisioning = AndroidProvisioning::new(
///     "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver",
///     "https://play.google.com/managed/downloadManagingApp?identifier=setup",
///     "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg",
/// )?
/// .with_leave_all_system_apps_enabled(true);
/// let secret = Secret::generate(Kind::Onboarding)?;
/// let payload = Payload::android(&secret, &provisioning);
/// assert!(payload.expose_text().contains(secret.expose_secret()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct AndroidProvisioning {
    component_name: String,
    download_location: String,
    signature_checksum: String,
    skip_encryption: Option<bool>,
    leave_all_system_apps_enabled: Option<bool>,
    extras_key: String,
}

impl AndroidProvisioning {
    /// The key under which Android Device Policy (`clouddpc`) reads its enrollment token.
    pub const DEFAULT_EXTRAS_KEY: &'static str =
        "com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN";

    /// Check and keep the three fields every provisioning payload needs:
    ///
    /// - `component_name`: the DPC's device admin receiver, `<package>/<class>`, the class
    ///   either full or starting with `.` (`com.example.dpc/.AdminReceiver`);
    /// - `download_location`: the `https://` URL of the DPC's APK;
    /// - `signature_checksum`: the URL-safe base64 SHA-256 of the APK's signing certificate,
    ///   43 characters. Android reads it URL-safe, so the standard alphabet (`+`, `/`) and a
    ///   trailing `=` are accepted and converted: the payload always carries the URL-safe
    ///   spelling without padding. A mix of both alphabets, or a last character that leaves
    ///   bits over (not the spelling of exactly 32 bytes), is refused.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidComponentName`], [`Error::InvalidDownloadLocation`] or
    /// [`Error::InvalidSignatureChecksum`] for the first field that is refused.
    pub fn new(
        component_name: &str,
        download_location: &str,
        signature_checksum: &str,
    ) -> Result<Self> {
        if !is_component_name(component_name) {
            return Err(Error::InvalidComponentName);
        }
        check_download_location(download_location)
            .map_err(|reason| Error::InvalidDownloadLocation { reason })?;
        let signature_checksum =
            url_safe_sha256(signature_checksum).ok_or(Error::InvalidSignatureChecksum)?;
        Ok(Self {
            component_name: component_name.to_owned(),
            download_location: download_location.to_owned(),
            signature_checksum,
            skip_encryption: None,
            leave_all_system_apps_enabled: None,
            extras_key: Self::DEFAULT_EXTRAS_KEY.to_owned(),
        })
    }

    /// Include `PROVISIONING_SKIP_ENCRYPTION` with this value (left out unless set).
    #[must_use]
    pub fn with_skip_encryption(mut self, skip: bool) -> Self {
        self.skip_encryption = Some(skip);
        self
    }

    /// Include `PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED` with this value (left out unless
    /// set).
    #[must_use]
    pub fn with_leave_all_system_apps_enabled(mut self, leave: bool) -> Self {
        self.leave_all_system_apps_enabled = Some(leave);
        self
    }

    /// Put the token under this key of the admin extras bundle instead of
    /// [`AndroidProvisioning::DEFAULT_EXTRAS_KEY`]: 1 to 256 letters, digits, `.`, `_` or `-`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidExtrasKey`] for an empty, long or otherwise unusable key.
    pub fn with_extras_key(mut self, key: &str) -> Result<Self> {
        let ok = !key.is_empty()
            && key.len() <= MAX_EXTRAS_KEY_LEN
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(Error::InvalidExtrasKey);
        }
        key.clone_into(&mut self.extras_key);
        Ok(self)
    }

    /// The device admin component name.
    pub fn component_name(&self) -> &str {
        &self.component_name
    }

    /// The DPC's download location.
    pub fn download_location(&self) -> &str {
        &self.download_location
    }

    /// The signature checksum.
    pub fn signature_checksum(&self) -> &str {
        &self.signature_checksum
    }

    /// The admin extras key the token goes under.
    pub fn extras_key(&self) -> &str {
        &self.extras_key
    }

    /// The JSON document with `token` in it. The document's own copy of the token is wiped
    /// once it is written out.
    pub(crate) fn json(&self, token: &str) -> String {
        let text = |s: &str| Value::String(s.to_owned());
        let mut extras = Map::new();
        extras.insert(self.extras_key.clone(), text(token));
        let mut doc = Map::new();
        doc.insert(COMPONENT_NAME.to_owned(), text(&self.component_name));
        doc.insert(DOWNLOAD_LOCATION.to_owned(), text(&self.download_location));
        doc.insert(
            SIGNATURE_CHECKSUM.to_owned(),
            text(&self.signature_checksum),
        );
        if let Some(skip) = self.skip_encryption {
            doc.insert(SKIP_ENCRYPTION.to_owned(), Value::Bool(skip));
        }
        if let Some(leave) = self.leave_all_system_apps_enabled {
            doc.insert(LEAVE_ALL_SYSTEM_APPS_ENABLED.to_owned(), Value::Bool(leave));
        }
        doc.insert(ADMIN_EXTRAS_BUNDLE.to_owned(), Value::Object(extras));
        let mut doc = Value::Object(doc);
        let out = doc.to_string();
        if let Some(Value::String(copy)) = doc
            .get_mut(ADMIN_EXTRAS_BUNDLE)
            .and_then(|extras| extras.get_mut(&self.extras_key))
        {
            copy.zeroize();
        }
        out
    }
}

/// `<package>/<class>`: a package of two or more Java identifiers joined by `.`, and a class of
/// one or more (`$` allowed, for nested classes), optionally starting with `.`.
fn is_component_name(name: &str) -> bool {
    /// How many Java identifiers `s` joins with `.`, or `None` if it is not such a list.
    fn identifiers(s: &str, dollar: bool) -> Option<usize> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || (dollar && b == b'$');
        let mut count = 0;
        for part in s.split('.') {
            let first = *part.as_bytes().first()?;
            if first.is_ascii_digit() || !part.bytes().all(ok) {
                return None;
            }
            count += 1;
        }
        Some(count)
    }
    let Some((package, class)) = name.split_once('/') else {
        return false;
    };
    let class = class.strip_prefix('.').unwrap_or(class);
    name.len() <= MAX_COMPONENT_LEN
        && identifiers(package, false).is_some_and(|n| n >= 2)
        && identifiers(class, true).is_some()
}

fn check_download_location(url: &str) -> core::result::Result<(), &'static str> {
    if !url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        return Err("it must start with https://");
    }
    crate::uri::Uri::parse(url).map(drop).map_err(|e| match e {
        Error::InvalidBaseUrl { reason } => reason,
        _ => "it is not a valid url",
    })
}

/// The URL-safe, unpadded spelling of 32 bytes written in base64 (URL-safe or standard
/// alphabet, not both, optionally one `=`), or `None` when it is not such a spelling.
fn url_safe_sha256(s: &str) -> Option<String> {
    let body = s.strip_suffix('=').unwrap_or(s);
    if body.len() != 43 {
        return None;
    }
    let url_safe = body.bytes().any(|b| matches!(b, b'-' | b'_'));
    let standard = body.bytes().any(|b| matches!(b, b'+' | b'/'));
    if url_safe && standard {
        return None;
    }
    let value = |b: u8| -> Option<u8> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        })
    };
    let mut out = String::with_capacity(43);
    for (i, b) in body.bytes().enumerate() {
        let v = value(b)?;
        // 43 characters carry 258 bits: the last one's low two bits must be zero.
        if i == 42 && v & 0b11 != 0 {
            return None;
        }
        out.push(match b {
            b'+' => '-',
            b'/' => '_',
            other => char::from(other),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &str =
        "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver";
    const LOCATION: &str = "https://play.google.com/managed/downloadManagingApp?identifier=setup";
    const CHECKSUM: &str = "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg";

    #[test]
    fn accepts_component_names() {
        for ok in [
            COMPONENT,
            "com.example.dpc/com.example.dpc.Admin",
            "com.example_2.dpc/.Outer$Inner",
        ] {
            assert!(is_component_name(ok), "{ok}");
        }
        for bad in [
            "",
            "com.example.dpc",
            "example/.Admin",
            "com.example.dpc/",
            "com.example.dpc/.",
            "com..example/.Admin",
            "com.1example/.Admin",
            "com.example/.Ad min",
            "com.example/.Admin/x",
            "com.example/.Ad\"min",
        ] {
            assert!(!is_component_name(bad), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_fields() {
        assert_eq!(
            AndroidProvisioning::new("nope", LOCATION, CHECKSUM),
            Err(Error::InvalidComponentName)
        );
        for bad in [
            "http://x.io/dpc.apk",
            "https://",
            "https://x.io/a b",
            "ftp://x.io",
        ] {
            assert!(
                matches!(
                    AndroidProvisioning::new(COMPONENT, bad, CHECKSUM),
                    Err(Error::InvalidDownloadLocation { .. })
                ),
                "{bad}"
            );
        }
        for bad in [
            "",
            "abc",
            &CHECKSUM[1..],
            &format!("{CHECKSUM}=="),
            // Both alphabets at once.
            "I5YvS+_5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg",
            // A last character with bits over: not 32 bytes.
            "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlh",
        ] {
            assert_eq!(
                AndroidProvisioning::new(COMPONENT, LOCATION, bad),
                Err(Error::InvalidSignatureChecksum)
            );
        }
        let p = AndroidProvisioning::new(COMPONENT, LOCATION, &format!("{CHECKSUM}=")).unwrap();
        for bad in ["", "a b", "a\"b", &"k".repeat(257)] {
            assert_eq!(p.clone().with_extras_key(bad), Err(Error::InvalidExtrasKey));
        }
    }

    #[test]
    fn standard_base64_becomes_url_safe() {
        // SHA-256 of b"x1", as `base64` (standard) prints it.
        let standard = "7DFoL95WGReVL/eKeore/9D+vDct0mhxkWxGxjA4G0U=";
        let p = AndroidProvisioning::new(COMPONENT, LOCATION, standard).unwrap();
        assert_eq!(
            p.signature_checksum(),
            "7DFoL95WGReVL_eKeore_9D-vDct0mhxkWxGxjA4G0U"
        );
        let v: Value = serde_json::from_str(&p.json("tok")).unwrap();
        assert_eq!(
            v[SIGNATURE_CHECKSUM],
            "7DFoL95WGReVL_eKeore_9D-vDct0mhxkWxGxjA4G0U"
        );
        let same = AndroidProvisioning::new(COMPONENT, LOCATION, p.signature_checksum()).unwrap();
        assert_eq!(same, p);
    }

    #[test]
    fn writes_the_documented_keys() {
        let p = AndroidProvisioning::new(COMPONENT, LOCATION, CHECKSUM)
            .unwrap()
            .with_skip_encryption(false);
        let v: Value = serde_json::from_str(&p.json("tok")).unwrap();
        assert_eq!(v[COMPONENT_NAME], COMPONENT);
        assert_eq!(v[DOWNLOAD_LOCATION], LOCATION);
        assert_eq!(v[SIGNATURE_CHECKSUM], CHECKSUM);
        assert_eq!(v[SKIP_ENCRYPTION], false);
        assert!(v.get(LEAVE_ALL_SYSTEM_APPS_ENABLED).is_none());
        assert_eq!(
            v[ADMIN_EXTRAS_BUNDLE][AndroidProvisioning::DEFAULT_EXTRAS_KEY],
            "tok"
        );
    }
}
