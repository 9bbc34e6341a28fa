//! Addresses: which a webhook may be sent to (public ones only, unless the operator allows the
//! install's own network), and who the client is behind trusted proxies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Is `ip` a public unicast address? Loopback, private (RFC 1918, unique local), link-local,
/// shared (CGNAT), documentation, benchmarking, multicast, broadcast, unspecified and reserved
/// ranges are not; an IPv4 address inside IPv6 (mapped, compatible, NAT64) is judged as IPv4.
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..=127).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..=19).contains(&b)))
}

fn public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and IPv4-compatible (::a.b.c.d) carry an IPv4 address.
    if (s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0)) || s[..6].iter().all(|x| *x == 0) {
        let [.., hi, lo] = s;
        let v4 = Ipv4Addr::new((hi >> 8) as u8, (hi & 0xff) as u8, (lo >> 8) as u8, (lo & 0xff) as u8);
        return !ip.is_unspecified() && !ip.is_loopback() && public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] == 0x2001 && s[1] == 0x0db8))
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn only_public_unicast_addresses_pass() {
        for ok in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ok.parse().expect("ip")), "{ok}");
        }
        for no in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(no.parse().expect("ip")), "{no}");
        }
    }
}

/// The proxies whose forwarding headers are believed (`KEYROLL_TRUSTED_PROXIES`): addresses and
/// networks. From any other peer, `Forwarded`, `X-Forwarded-For` and `X-Real-IP` are the
/// client's own words and change nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR networks (empty: trust none).
    ///
    /// # Errors
    /// The entry that is neither.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<ipnet::IpNet>()
                .ok()
                .or_else(|| item.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
                .ok_or_else(|| format!("{item} is not an address or a CIDR network"))?;
            nets.push(net);
        }
        Ok(Self(nets))
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[must_use]
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer`: the peer itself unless it is trusted; then the right-most
    /// address of the forwarding chain (`Forwarded`, else `X-Forwarded-For`, else `X-Real-IP`)
    /// that is not a trusted proxy. An entry that cannot be read ends the walk at the last
    /// trusted hop: nothing to its left can be believed.
    #[must_use]
    pub fn client(
        &self,
        peer: IpAddr,
        forwarded: Option<&str>,
        x_forwarded_for: Option<&str>,
        x_real_ip: Option<&str>,
    ) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let chain: Vec<Option<IpAddr>> = match (forwarded, x_forwarded_for, x_real_ip) {
            (Some(f), _, _) => f.split(',').map(forwarded_for).collect(),
            (None, Some(x), _) => x.split(',').map(|s| s.trim().parse().ok()).collect(),
            (None, None, Some(r)) => vec![r.trim().parse().ok()],
            (None, None, None) => Vec::new(),
        };
        let mut client = peer;
        for hop in chain.into_iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(ip);
                    if !self.trusts(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The `for=` address of one element of an RFC 7239 `Forwarded` header (`for=192.0.2.60`,
/// `for="[2001:db8::17]:4711"`); `None` for `unknown`, an obfuscated name or no `for`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"'))
    })?;
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    value.parse().ok().or_else(|| value.rsplit_once(':').and_then(|(host, _port)| host.parse().ok()))
}

#[cfg(test)]
mod proxy_tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let t = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").expect("parsed");
        assert_eq!(
            t.client(ip("203.0.113.9"), Some("for=10.1.1.1"), Some("10.1.1.1"), Some("10.1.1.1")),
            ip("203.0.113.9")
        );
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), None, Some("10.1.1.1"), None), ip("127.0.0.1"));
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let t = TrustedProxies::parse("10.0.0.0/8,127.0.0.1").expect("parsed");
        let peer = ip("127.0.0.1");
        // A client that forges an entry gets it ignored: it is to the left of its own address.
        assert_eq!(t.client(peer, None, Some("198.51.100.7, 203.0.113.9, 10.0.0.5"), None), ip("203.0.113.9"));
        assert_eq!(t.client(peer, None, Some("203.0.113.9"), Some("198.51.100.7")), ip("203.0.113.9"));
        assert_eq!(t.client(peer, None, None, Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(t.client(peer, None, None, None), peer);
        // Every hop trusted: the left-most.
        assert_eq!(t.client(peer, None, Some("10.0.0.1, 10.0.0.2"), None), ip("10.0.0.1"));
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(t.client(peer, None, Some("203.0.113.9, nonsense, 10.0.0.2"), None), ip("10.0.0.2"));
        // Forwarded comes first, in its own syntax.
        let f = r#"for=198.51.100.7;proto=https, for="[2001:db8::17]:4711", for=10.0.0.3:80"#;
        assert_eq!(t.client(peer, Some(f), Some("192.0.2.1"), None), ip("2001:db8::17"));
        assert_eq!(t.client(peer, Some("for=unknown"), None, None), peer);
        assert_eq!(t.client(ip("::ffff:127.0.0.1"), None, Some("203.0.113.9"), None), ip("203.0.113.9"));
    }

    #[test]
    fn lists_are_checked() {
        assert!(TrustedProxies::parse("").expect("empty").is_empty());
        assert!(TrustedProxies::parse("10.0.0.0/8, ::1, 192.168.1.1").is_ok());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.internal").is_err());
    }
}
