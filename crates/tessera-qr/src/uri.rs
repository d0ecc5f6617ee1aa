//! [`Uri`]: a base URL and a query parameter that a token is put into, with the RFC 3986
//! escaper that puts it there.

use crate::error::{Error, Result};

/// The longest base URL accepted, in bytes.
const MAX_BASE_LEN: usize = 2048;
/// The longest query parameter name accepted, in bytes.
const MAX_PARAM_LEN: usize = 64;
/// Schemes that run or embed content where they are opened: never a place for a token.
const REFUSED_SCHEMES: [&str; 6] = ["about", "blob", "data", "file", "javascript", "vbscript"];

/// Where a token goes in a link: a checked base URL and the name of the query parameter that
/// carries the token (`token` unless set).
///
/// The base may be `https://`, `http://` or an app's own scheme (`myapp://enroll`). It may
/// already have a query, and the token is then appended with `&`; a fragment (`#...`) stays
/// last. The token is percent-encoded as RFC 3986 asks, so any token text survives the trip.
///
/// # Examples
///
/// ```
/// use tessera_qr::{Payload, Uri};
/// use tessera_core::Secret;
///
/// let uri = Uri::parse("https://mdm.example.com/enroll?site=7")?.with_param("code")?;
/// let payload = Payload::uri(&Secret::from_presented("a b&c"), &uri);
/// assert_eq!(payload.expose_text(), "https://mdm.example.com/enroll?site=7&code=a%20b%26c");
/// # Ok::<(), tessera_qr::Error>(())
/// ```
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct Uri {
    base: String,
    param: String,
}

impl Uri {
    /// The query parameter used unless [`Uri::with_param`] sets another.
    pub const DEFAULT_PARAM: &'static str = "token";

    /// Check a base URL: a scheme (`https`, `http` or a custom one), no whitespace, only
    /// characters URLs allow (percent-encode the others), at most 2,048 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidBaseUrl`], with the reason.
    pub fn parse(base: &str) -> Result<Self> {
        check_base(base).map_err(|reason| Error::InvalidBaseUrl { reason })?;
        Ok(Self {
            base: base.to_owned(),
            param: Self::DEFAULT_PARAM.to_owned(),
        })
    }

    /// Name the query parameter that carries the token: 1 to 64 unreserved characters
    /// (letters, digits, `-`, `.`, `_`, `~`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParamName`] for an empty, long or otherwise unusable name.
    pub fn with_param(mut self, name: &str) -> Result<Self> {
        if name.is_empty() || name.len() > MAX_PARAM_LEN || !name.bytes().all(is_unreserved) {
            return Err(Error::InvalidParamName);
        }
        name.clone_into(&mut self.param);
        Ok(self)
    }

    /// The base URL, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The query parameter name.
    pub fn param(&self) -> &str {
        &self.param
    }

    /// The link with `token` in it, written into one buffer sized up front so the token is not
    /// left behind in a reallocated one.
    pub(crate) fn link(&self, token: &str) -> String {
        let (before, fragment) = match self.base.split_once('#') {
            Some((before, fragment)) => (before, Some(fragment)),
            None => (self.base.as_str(), None),
        };
        let mut out =
            String::with_capacity(self.base.len() + self.param.len() + 2 + 3 * token.len());
        out.push_str(before);
        if !before.contains('?') {
            out.push('?');
        } else if !before.ends_with(['?', '&']) {
            out.push('&');
        }
        out.push_str(&self.param);
        out.push('=');
        percent_encode_into(&mut out, token);
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
        out
    }
}

/// Append `text` to `out`, percent-encoding every byte but RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), with uppercase hex digits.
pub(crate) fn percent_encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Unreserved, reserved (gen-delims and sub-delims) and `%`: everything a URI may hold.
const fn is_uri_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b':' | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

/// Check a base URL, saying what is wrong in words that fit [`Error::InvalidBaseUrl`].
fn check_base(base: &str) -> core::result::Result<(), &'static str> {
    if base.is_empty() {
        return Err("it is empty");
    }
    if base.len() > MAX_BASE_LEN {
        return Err("it is longer than 2048 bytes");
    }
    if base.chars().any(char::is_whitespace) {
        return Err("it contains whitespace");
    }
    if !base.bytes().all(is_uri_char) {
        return Err("it contains a character urls do not allow; percent-encode it");
    }
    if base.matches('#').count() > 1 {
        return Err("it contains more than one `#`");
    }
    let bytes = base.as_bytes();
    for (i, _) in base.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3);
        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Err("a `%` is not followed by two hex digits");
        }
    }
    let Some((scheme, rest)) = base.split_once(':') else {
        return Err("it has no scheme");
    };
    let mut scheme_bytes = scheme.bytes();
    let scheme_ok = scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err("its scheme is malformed");
    }
    let scheme = scheme.to_ascii_lowercase();
    if REFUSED_SCHEMES.contains(&scheme.as_str()) {
        return Err("its scheme runs or embeds content and cannot carry a token");
    }
    if scheme == "http" || scheme == "https" {
        let Some(authority) = rest.strip_prefix("//") else {
            return Err("an http or https url must continue with `//` and a host");
        };
        let host = authority.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return Err("it has no host");
        }
    } else if rest.is_empty() || rest.starts_with(['?', '#']) {
        return Err("nothing follows its scheme");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(base: &str, token: &str) -> String {
        Uri::parse(base).unwrap().link(token)
    }

    #[test]
    fn escapes_all_but_unreserved() {
        let mut out = String::new();
        percent_encode_into(&mut out, "aZ9-._~ /?#&=+%é\u{0}");
        assert_eq!(out, "aZ9-._~%20%2F%3F%23%26%3D%2B%25%C3%A9%00");
    }

    #[test]
    fn joins_queries_and_keeps_fragments() {
        assert_eq!(link("https://x.io/e", "t"), "https://x.io/e?token=t");
        assert_eq!(
            link("https://x.io/e?a=1", "t"),
            "https://x.io/e?a=1&token=t"
        );
        assert_eq!(link("https://x.io/e?", "t"), "https://x.io/e?token=t");
        assert_eq!(
            link("https://x.io/e?a=1&", "t"),
            "https://x.io/e?a=1&token=t"
        );
        assert_eq!(
            link("https://x.io/e#top", "t"),
            "https://x.io/e?token=t#top"
        );
        assert_eq!(link("myapp://enroll", "t"), "myapp://enroll?token=t");
        assert_eq!(link("myapp:enroll", "t"), "myapp:enroll?token=t");
    }

    #[test]
    fn refuses_bad_bases() {
        for bad in [
            "",
            "example.com/enroll",
            "https://",
            "https:/x.io",
            "https://x.io/a b",
            "https://x.io/\t",
            "https://x.io/\u{a0}",
            "https://x.io/é",
            "https://x.io/<script>",
            "https://x.io/%zz",
            "https://x.io/%4",
            "https://x.io/#a#b",
            "1app://x",
            "javascript:alert(1)",
            "DATA:text/html,x",
            "myapp:",
        ] {
            assert!(
                matches!(Uri::parse(bad), Err(Error::InvalidBaseUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_bad_params() {
        let uri = Uri::parse("https://x.io").unwrap();
        for bad in ["", "a b", "a&b", "a=b", "é", &"p".repeat(65)] {
            assert_eq!(uri.clone().with_param(bad), Err(Error::InvalidParamName));
        }
        assert_eq!(
            uri.with_param("enroll_code").unwrap().param(),
            "enroll_code"
        );
    }
}
