//! Which peers may say who the client is: the trusted reverse proxies, and the client address
//! read through them from `X-Forwarded-For`.
//!
//! A header anyone can send is evidence only when a proxy the operator named wrote it, so the
//! header is read only when the connection comes from a trusted proxy. Proxies append the address
//! they received the request from, so the list is read from the right: the first address that is
//! not itself a trusted proxy is the client. Whatever stands left of it was written by the client
//! and is ignored.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;

/// The networks whose peers' `X-Forwarded-For` is believed (`CLOUDRUNR_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// An entry of the trusted proxy list that is neither an IP address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR network such as 10.0.0.0/8")]
pub struct BadProxyEntry(pub String);

impl TrustedProxies {
    /// Parses a comma (or whitespace) separated list of IP addresses and CIDR networks; an empty
    /// list trusts no proxy.
    pub fn parse(list: &str) -> Result<Self, BadProxyEntry> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| BadProxyEntry(entry.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer itself, unless the peer is a trusted proxy; then the
    /// right-most address of the `X-Forwarded-For` values (in the order the headers came) that is
    /// not a trusted proxy. A malformed entry ends the walk at the last address trusted so far,
    /// since nothing left of it can be attributed to a proxy.
    pub fn client_address<'h>(&self, peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'h str>) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

/// IPv4 clients of a dual-stack listener appear as `::ffff:a.b.c.d`; they are the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_networks() {
        let t = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8 ::1,fd00::/8").unwrap();
        assert!(t.trusts(ip("127.0.0.1")));
        assert!(t.trusts(ip("10.200.3.4")));
        assert!(t.trusts(ip("::1")));
        assert!(t.trusts(ip("fd12::5")));
        assert!(t.trusts(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(!t.trusts(ip("127.0.0.2")));
        assert!(!t.trusts(ip("192.0.2.1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/8,proxy.example").unwrap_err(),
            BadProxyEntry("proxy.example".into())
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        assert_eq!(t.client_address(ip("192.0.2.7"), ["203.0.113.9"]), ip("192.0.2.7"));
        let none = TrustedProxies::default();
        assert_eq!(none.client_address(ip("127.0.0.1"), ["203.0.113.9"]), ip("127.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap();
        // The client wrote the first entry itself; the proxies appended the rest.
        assert_eq!(
            t.client_address(ip("127.0.0.1"), ["198.51.100.1, 203.0.113.9, 10.0.0.2"]),
            ip("203.0.113.9")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            t.client_address(ip("127.0.0.1"), ["198.51.100.1", "203.0.113.9:4444"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            t.client_address(ip("127.0.0.1"), ["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        // Only proxies: the left-most of them.
        assert_eq!(
            t.client_address(ip("127.0.0.1"), ["10.0.0.3, 10.0.0.2"]),
            ip("10.0.0.3")
        );
        // No header: the proxy itself.
        assert_eq!(t.client_address(ip("127.0.0.1"), []), ip("127.0.0.1"));
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            t.client_address(ip("127.0.0.1"), ["203.0.113.9, not-an-ip, 10.0.0.2"]),
            ip("10.0.0.2")
        );
    }
}
