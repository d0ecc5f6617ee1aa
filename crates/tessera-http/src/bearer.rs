//! Reading the token out of `Authorization: Bearer <token>`.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use tessera::application::{BearerError, parse_bearer};

use crate::refusal::{Refusal, refused};

/// Mark the `Authorization` header sensitive, so that a later `Debug` of the headers (a tracing
/// layer, a handler logging its request) prints `Sensitive` instead of the token.
///
/// Not through `HeaderMap::entry`: it makes room for an insertion first, and a full map (as
/// hyper hands over for some header counts) would grow for nothing.
pub(crate) fn hide(headers: &mut HeaderMap) {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let several = values.next().is_some() && values.next().is_some();
    if several {
        // Refused as a broken request anyway; every value is hidden all the same.
        for (name, value) in headers.iter_mut() {
            if name == AUTHORIZATION {
                value.set_sensitive(true);
            }
        }
    } else if let Some(value) = headers.get_mut(AUTHORIZATION) {
        value.set_sensitive(true);
    }
}

/// The bearer token in `headers`, or the refusal (already logged) for `kind`.
///
/// - no `Authorization` header, or one with another scheme (RFC 6750 section 3.1: "attempted
///   using an unsupported authentication method"): [`Refusal::NoCredentials`];
/// - several `Authorization` headers, bytes that are not visible ASCII, `Bearer` without a
///   token, or a token outside the `b64token` syntax of RFC 6750 section 2.1:
///   [`Refusal::InvalidRequest`].
pub(crate) fn token<'h>(headers: &'h HeaderMap, kind: &'static str) -> Result<&'h str, Refusal> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(refused(
            kind,
            "no_authorization_header",
            Refusal::NoCredentials,
        ));
    };
    if values.next().is_some() {
        return Err(refused(
            kind,
            "several_authorization_headers",
            Refusal::InvalidRequest,
        ));
    }
    let Ok(text) = value.to_str() else {
        return Err(refused(
            kind,
            "authorization_not_visible_ascii",
            Refusal::InvalidRequest,
        ));
    };
    match parse_bearer(text) {
        Ok(token) if is_b64token(token) => Ok(token),
        Ok(_) => Err(refused(
            kind,
            "bearer_token_syntax",
            Refusal::InvalidRequest,
        )),
        Err(BearerError::Scheme) => Err(refused(kind, "not_bearer_scheme", Refusal::NoCredentials)),
        Err(_) => Err(refused(
            kind,
            "bearer_without_token",
            Refusal::InvalidRequest,
        )),
    }
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 6750 2.1).
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn reads_the_bearer_token() {
        assert_eq!(
            token(&with(&["Bearer abc_DEF-1.2~3+4/5=="]), "t"),
            Ok("abc_DEF-1.2~3+4/5==")
        );
        assert_eq!(token(&with(&["bearer   abc"]), "t"), Ok("abc"));
    }

    #[test]
    fn refuses_as_rfc_6750_says() {
        assert_eq!(token(&HeaderMap::new(), "t"), Err(Refusal::NoCredentials));
        assert_eq!(
            token(&with(&["Basic dXNlcjpwdw=="]), "t"),
            Err(Refusal::NoCredentials)
        );
        assert_eq!(token(&with(&["Bearer"]), "t"), Err(Refusal::InvalidRequest));
        assert_eq!(
            token(&with(&["Bearer   "]), "t"),
            Err(Refusal::InvalidRequest)
        );
        assert_eq!(
            token(&with(&["Bearer a b"]), "t"),
            Err(Refusal::InvalidRequest)
        );
        assert_eq!(
            token(&with(&["Bearer ="]), "t"),
            Err(Refusal::InvalidRequest)
        );
        assert_eq!(
            token(&with(&["Bearer a", "Bearer b"]), "t"),
            Err(Refusal::InvalidRequest)
        );
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xe9t\xe9").unwrap(),
        );
        assert_eq!(token(&h, "t"), Err(Refusal::InvalidRequest));
    }

    /// hyper sizes a request's header map to the headers it read, so a request with 3, 6, 12...
    /// headers comes in a full map: it must not grow (an allocation and a rehash on every such
    /// request) to mark a value.
    #[test]
    fn hides_without_growing_a_full_map() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tsr_app_x"));
        let full = h.capacity();
        for i in 1..full {
            let name = http::HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap();
            h.insert(name, HeaderValue::from_static("1"));
        }
        assert_eq!(h.len(), full, "the test needs a full map");
        hide(&mut h);
        assert_eq!(h.capacity(), full);
        assert!(h.get(AUTHORIZATION).unwrap().is_sensitive());
    }

    #[test]
    fn hides_every_authorization_header() {
        let mut h = with(&["Bearer tsr_app_one", "Bearer tsr_app_two"]);
        hide(&mut h);
        assert!(
            h.get_all(AUTHORIZATION)
                .iter()
                .all(HeaderValue::is_sensitive)
        );
        let printed = format!("{h:?}");
        assert!(!printed.contains("tsr_app_one") && !printed.contains("tsr_app_two"));
    }

    #[test]
    fn hides_the_header_from_debug() {
        let mut h = with(&["Bearer tsr_app_visible"]);
        hide(&mut h);
        assert!(!format!("{h:?}").contains("tsr_app_visible"));
    }
}
