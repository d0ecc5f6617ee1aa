//! Client addresses: the one spelling every rule and log keys an address by.
//!
//! The same host can be written many ways: `10.0.0.9`, its IPv4-mapped IPv6 form
//! `::ffff:10.0.0.9` (what a dual-stack listener hands over for an IPv4 client), the deprecated
//! IPv4-compatible form `::10.0.0.9`, compressed or expanded IPv6 (`2001:db8::1`,
//! `2001:0db8:0000:0000:0000:0000:0000:0001`), and link-local IPv6 with a zone id
//! (`fe80::1%eth0`). An IP block, the per-IP usage log and every audit event must see one
//! address, or a block is bypassed by a second spelling. [`canonical`] is that one place: the
//! service applies it at every entry point that takes an address, and [`parse_ip`] reads text
//! in any of these spellings.

use std::net::{IpAddr, Ipv6Addr};

use crate::error::{InvalidInput, cut};

/// The canonical form of `ip`: an IPv4 address written inside IPv6 (IPv4-mapped `::ffff:a.b.c.d`
/// or IPv4-compatible `::a.b.c.d`) becomes that IPv4 address; every other address is itself.
///
/// `::` (unspecified) and `::1` (loopback) are IPv6 addresses of their own, not IPv4-compatible
/// ones, and stay IPv6.
#[must_use]
pub const fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => compatible(v6),
        },
    }
}

/// `::a.b.c.d` (other than `::` and `::1`) as IPv4.
const fn compatible(v6: Ipv6Addr) -> IpAddr {
    let o = v6.octets();
    let mut i = 0;
    while i < 12 {
        if o[i] != 0 {
            return IpAddr::V6(v6);
        }
        i += 1;
    }
    if o[12] == 0 && o[13] == 0 && o[14] == 0 && o[15] <= 1 {
        return IpAddr::V6(v6);
    }
    IpAddr::V4(std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]))
}

/// Read an address in any spelling and return its [`canonical`] form: IPv4, IPv6 compressed or
/// expanded, IPv4-mapped or IPv4-compatible IPv6, optionally in brackets (`[::1]`), and an IPv6
/// address with a zone id (`fe80::1%eth0`, `fe80::1%2`), whose zone is dropped: the zone names
/// the local interface a link-local address was reached through, not a different host.
///
/// # Errors
///
/// [`InvalidInput::Ip`] when the text is not an address (a port, a host name or a CIDR range
/// is not one).
pub fn parse_ip(text: &str) -> Result<IpAddr, InvalidInput> {
    let bad = |why: &'static str| InvalidInput::Ip {
        input: cut(text),
        why,
    };
    let s = text.trim();
    let s = match s.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .ok_or_else(|| bad("an opening `[` has no closing `]`"))?,
        None => s,
    };
    let (addr, zone) = match s.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        bad("write an IPv4 address such as 10.0.0.9 or an IPv6 address such as 2001:db8::1")
    })?;
    if let Some(zone) = zone {
        if !ip.is_ipv6() {
            return Err(bad("only an IPv6 address can carry a zone id (`%eth0`)"));
        }
        if zone.is_empty()
            || !zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad(
                "a zone id after `%` is an interface name or number such as eth0 or 2",
            ));
        }
    }
    Ok(canonical(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_ipv4_address_is_that_address() {
        let want: IpAddr = "10.0.0.9".parse().unwrap();
        for s in [
            "10.0.0.9",
            " 10.0.0.9 ",
            "::ffff:10.0.0.9",
            "::FFFF:10.0.0.9",
            "::ffff:a00:9",
            "0:0:0:0:0:ffff:0a00:0009",
            "0000:0000:0000:0000:0000:ffff:10.0.0.9",
            "[::ffff:10.0.0.9]",
            "::10.0.0.9",
            "::a00:9",
            "0:0:0:0:0:0:a00:9",
        ] {
            assert_eq!(parse_ip(s).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn every_spelling_of_an_ipv6_address_is_that_address() {
        let want: IpAddr = "2001:db8::1".parse().unwrap();
        for s in [
            "2001:db8::1",
            "2001:DB8::1",
            "2001:0db8:0000:0000:0000:0000:0000:0001",
            "2001:db8:0:0:0:0:0:1",
            "[2001:db8::1]",
        ] {
            assert_eq!(parse_ip(s).unwrap(), want, "{s}");
        }
        let ll: IpAddr = "fe80::1".parse().unwrap();
        for s in [
            "fe80::1%eth0",
            "fe80::1%2",
            "[fe80::1%en0]",
            "fe80:0:0:0:0:0:0:1%eth0",
        ] {
            assert_eq!(parse_ip(s).unwrap(), ll, "{s}");
        }
    }

    #[test]
    fn unspecified_and_loopback_stay_ipv6() {
        for s in ["::", "::1"] {
            assert!(parse_ip(s).unwrap().is_ipv6(), "{s}");
        }
        assert_eq!(
            canonical("::2".parse().unwrap()),
            "0.0.0.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn what_is_not_an_address_is_refused() {
        for s in [
            "",
            "10.0.0",
            "10.0.0.9:80",
            "host",
            "10.0.0.0/8",
            "10.0.0.9%eth0",
            "fe80::1%",
            "fe80::1%eth 0",
            "[::1",
            "010.0.0.9",
        ] {
            let e = parse_ip(s).unwrap_err();
            assert!(matches!(e, InvalidInput::Ip { .. }), "{s}: {e}");
        }
    }
}
