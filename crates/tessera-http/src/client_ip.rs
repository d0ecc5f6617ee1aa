//! The client's address: from the connection, or from a proxy header the operator trusts.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use http::request::Parts;
use http::{HeaderMap, HeaderName};
use tessera::core::net::canonical;

use crate::error::{Error, Result};

/// The client address a guard used, put into the request extensions of every request it lets
/// through (when known), so handlers can log it as `Extension<ClientIp>`.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct ClientIp(pub IpAddr);

/// Where a guard takes the client's address from.
///
/// By default, from the connection: the `ConnectInfo<SocketAddr>` that
/// `Router::into_make_service_with_connect_info::<SocketAddr>()` puts into every request's
/// extensions (a service not built on axum inserts `axum::extract::ConnectInfo(peer)` itself).
/// A header like `X-Forwarded-For` is ignored unless the operator says which proxies to trust
/// with [`trusted_proxy_header`](Self::trusted_proxy_header).
///
/// # Security
///
/// A client can send any `X-Forwarded-For` it likes. Only a proxy's own additions can be
/// believed, so the header is read only when the connection comes from a trusted proxy, and then
/// from right to left: each hop that is itself a trusted proxy passes on to the one before it,
/// and the first (right-most) address that is not a trusted proxy is the client. If every hop is
/// trusted, the left-most is taken. An entry that is not an address (`unknown`, garbage) or a
/// header line that is not text ends the walk at the last trusted hop, which is then charged
/// with the request: an unreadable entry is never skipped, as what lies left of it is the
/// client's to write.
#[derive(Clone, Debug, Default)]
pub struct ClientIpSource {
    proxy: Option<Arc<ProxyHeader>>,
}

#[derive(Debug)]
struct ProxyHeader {
    header: HeaderName,
    trusted: Vec<TrustedProxy>,
}

impl ClientIpSource {
    /// The connection's peer address (the default).
    pub fn connection() -> Self {
        Self::default()
    }

    /// `header` (for example `x-forwarded-for`, or `x-real-ip` for a proxy that sets a single
    /// address), believed only when the connection comes from one of `trusted` proxies. See
    /// the type's `# Security` section for how the header is read.
    pub fn trusted_proxy_header(
        header: HeaderName,
        trusted: impl IntoIterator<Item = TrustedProxy>,
    ) -> Self {
        Self {
            proxy: Some(Arc::new(ProxyHeader {
                header,
                trusted: trusted.into_iter().collect(),
            })),
        }
    }

    /// The client address of a request, or `None` when the connection's address is not in the
    /// extensions.
    pub fn client_ip(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
        let peer = canonical(peer);
        Some(match &self.proxy {
            None => peer,
            Some(proxy) => proxy.client(peer, &parts.headers),
        })
    }
}

impl ProxyHeader {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|t| t.contains(ip))
    }

    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        'lines: for line in headers.get_all(&self.header).iter().rev() {
            let Ok(text) = line.to_str() else {
                break;
            };
            for entry in text.rsplit(',') {
                let Some(hop) = parse_hop(entry.trim()) else {
                    break 'lines;
                };
                client = hop;
                if !self.trusts(hop) {
                    break 'lines;
                }
            }
        }
        client
    }
}

/// One hop of a forwarding header: an address in any spelling `parse_ip` reads (brackets, a
/// zone id), possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = tessera::core::net::parse_ip(s) {
        return Some(ip);
    }
    let ip = s.parse::<SocketAddr>().ok()?.ip();
    Some(canonical(ip))
}

/// A proxy address, or a range of them in CIDR notation, whose forwarding header is believed.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

impl TrustedProxy {
    /// Parse `10.0.0.7`, `10.0.0.0/8`, `::1` or `fd00::/8`.
    ///
    /// # Errors
    ///
    /// [`Error::TrustedProxy`] when `s` is none of these.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::TrustedProxy {
            input: s.to_owned(),
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let addr = addr.parse::<IpAddr>().map_err(|_| bad())?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self {
            network: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl From<IpAddr> for TrustedProxy {
    /// Exactly this address.
    fn from(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        Self {
            network: ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        }
    }
}

impl FromStr for TrustedProxy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Request};

    use super::*;

    fn parts(peer: &str, xff: &[&[u8]]) -> Parts {
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 4242)));
        for v in xff {
            req.headers_mut()
                .append("x-forwarded-for", HeaderValue::from_bytes(v).unwrap());
        }
        req.into_parts().0
    }

    fn behind_proxies() -> ClientIpSource {
        ClientIpSource::trusted_proxy_header(
            HeaderName::from_static("x-forwarded-for"),
            [
                "10.0.0.0/8".parse().unwrap(),
                TrustedProxy::parse("::1").unwrap(),
            ],
        )
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn connection_ignores_the_header() {
        let source = ClientIpSource::connection();
        assert_eq!(
            source.client_ip(&parts("10.1.1.1", &[b"203.0.113.9"])),
            ip("10.1.1.1")
        );
        assert_eq!(source.client_ip(&Request::new(()).into_parts().0), None);
    }

    #[test]
    fn header_is_read_only_from_trusted_proxies() {
        let source = behind_proxies();
        assert_eq!(
            source.client_ip(&parts("198.51.100.4", &[b"203.0.113.9"])),
            ip("198.51.100.4")
        );
        assert_eq!(
            source.client_ip(&parts("10.1.1.1", &[b"203.0.113.9"])),
            ip("203.0.113.9")
        );
        assert_eq!(
            source.client_ip(&parts("::ffff:10.1.1.1", &[b"203.0.113.9"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn right_most_untrusted_hop_is_the_client() {
        let source = behind_proxies();
        // The client wrote "1.1.1.1" itself; the first proxy appended the real address.
        let p = parts("10.1.1.1", &[b"1.1.1.1, 203.0.113.9, 10.2.2.2"]);
        assert_eq!(source.client_ip(&p), ip("203.0.113.9"));
        let p = parts("10.1.1.1", &[b"1.1.1.1", b"203.0.113.9:5555, 10.2.2.2"]);
        assert_eq!(source.client_ip(&p), ip("203.0.113.9"));
        let p = parts("10.1.1.1", &[b"[2001:db8::1]:443"]);
        assert_eq!(source.client_ip(&p), ip("2001:db8::1"));
    }

    #[test]
    fn unreadable_hops_stop_at_the_last_trusted_one() {
        let source = behind_proxies();
        assert_eq!(
            source.client_ip(&parts("10.1.1.1", &[b"203.0.113.9, unknown"])),
            ip("10.1.1.1")
        );
        assert_eq!(
            source.client_ip(&parts("10.1.1.1", &[b"203.0.113.9, 10.3.3.3, x"])),
            ip("10.1.1.1")
        );
        assert_eq!(
            source.client_ip(&parts("10.1.1.1", &[b"203.0.113.9", b"\xff"])),
            ip("10.1.1.1")
        );
        assert_eq!(source.client_ip(&parts("10.1.1.1", &[])), ip("10.1.1.1"));
        assert_eq!(
            source.client_ip(&parts("10.1.1.1", &[b"10.4.4.4, 10.5.5.5"])),
            ip("10.4.4.4")
        );
    }

    #[test]
    fn trusted_proxy_ranges() {
        let r = TrustedProxy::parse("192.168.8.9/16").unwrap();
        assert_eq!(r.to_string(), "192.168.0.0/16");
        assert!(r.contains("192.168.200.1".parse().unwrap()));
        assert!(!r.contains("192.169.0.1".parse().unwrap()));
        assert!(
            TrustedProxy::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            !TrustedProxy::parse("0.0.0.0/0")
                .unwrap()
                .contains("2001:db8::2".parse().unwrap())
        );
        // IPv4 written inside IPv6 (mapped or compatible) is the IPv4 address.
        let ten = TrustedProxy::parse("10.0.0.0/8").unwrap();
        for s in ["::ffff:10.1.2.3", "::10.1.2.3"] {
            assert!(ten.contains(s.parse().unwrap()), "{s}");
        }
        assert!(
            TrustedProxy::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "example.com",
            "10.0.0.0/",
        ] {
            assert_eq!(
                TrustedProxy::parse(bad),
                Err(Error::TrustedProxy {
                    input: bad.to_owned()
                })
            );
        }
    }
}
