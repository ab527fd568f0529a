//! Where builds (and git, on their behalf) may connect.
//!
//! One pure decision, [`EgressPolicy::decide`], is made about every address a build's proxy or a
//! clone is about to connect to, after the name was resolved and before any packet is sent: the
//! address that was checked is the one connected to, so a name cannot resolve to something else
//! in between. Public unicast addresses on the web's ports (80, 443) are allowed; loopback,
//! private, link-local (cloud metadata services), shared, multicast, documentation and reserved
//! addresses — in every IPv6 form that reaches them too — are denied unless the operator's allow
//! list (`CLOUDRUNR_BUILD_EGRESS_ALLOW`) names them.
//!
//! The allow list is a comma list of entries, each `target[:port]`:
//! - an IP address (`10.1.2.3`, `[fd00::1]:8443`) or a CIDR network (`10.0.0.0/8`,
//!   `[fd00::/8]:443`; a bare IPv6 entry without brackets takes no port);
//! - a host name (`registry.internal`) or a wildcard (`*.corp.example`, which matches names
//!   below `corp.example`, not the name itself): the connection is allowed whatever the name
//!   resolves to — the operator vouches for their DNS.
//!
//! Without a port an entry allows every port.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Ports any public address may be reached on: HTTP and HTTPS, where package registries and git
/// hosts are. Other services (SMTP, databases, SSH…) on the internet are not a build's business;
/// an operator who needs one lists it with its port.
pub const OPEN_PORTS: [u16; 2] = [80, 443];

/// The variable that holds the allow list.
pub const ALLOW_VAR: &str = "CLOUDRUNR_BUILD_EGRESS_ALLOW";

/// Special-purpose address ranges that builds may not reach unless allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Range {
    Unspecified,
    ThisNetwork,
    Loopback,
    Private,
    SharedNat,
    LinkLocal,
    CloudPlatform,
    IetfProtocol,
    Documentation,
    Benchmarking,
    Relay6to4,
    Multicast,
    Broadcast,
    Reserved,
    Ipv4Compatible,
    LocalNat64,
    UniqueLocal,
    SiteLocal,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Range::Unspecified => "the unspecified address",
            Range::ThisNetwork => "an address of \"this network\" (0.0.0.0/8)",
            Range::Loopback => "a loopback address (this machine)",
            Range::Private => "a private network address",
            Range::SharedNat => "a carrier-grade NAT address (100.64.0.0/10)",
            Range::LinkLocal => "a link-local address (where cloud instance and task metadata services answer)",
            Range::CloudPlatform => "a cloud platform's internal service address",
            Range::IetfProtocol => "a special-purpose IETF protocol address",
            Range::Documentation => "an address reserved for documentation",
            Range::Benchmarking => "an address reserved for benchmarking",
            Range::Relay6to4 => "the 6to4 relay anycast address range",
            Range::Multicast => "a multicast address",
            Range::Broadcast => "the broadcast address",
            Range::Reserved => "a reserved address",
            Range::Ipv4Compatible => "a deprecated IPv4-compatible IPv6 address",
            Range::LocalNat64 => "a local-use NAT64 address",
            Range::UniqueLocal => "a unique local (private) IPv6 address",
            Range::SiteLocal => "a deprecated site-local IPv6 address",
        })
    }
}

/// Azure's WireServer: a public-looking address that every Azure VM reaches, and which hands out
/// the VM's configuration.
const AZURE_WIRESERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// The special-purpose range `ip` is in, or `None` for a public unicast address.
pub fn classify(ip: IpAddr) -> Option<Range> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Range> {
    if ip.is_unspecified() {
        return Some(Range::Unspecified);
    }
    if ip == Ipv4Addr::BROADCAST {
        return Some(Range::Broadcast);
    }
    if ip == AZURE_WIRESERVER {
        return Some(Range::CloudPlatform);
    }
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => Range::ThisNetwork,
        (10, _, _) => Range::Private,
        (100, 64..=127, _) => Range::SharedNat,
        (127, _, _) => Range::Loopback,
        (169, 254, _) => Range::LinkLocal,
        (172, 16..=31, _) => Range::Private,
        (192, 0, 0) => Range::IetfProtocol,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Range::Documentation,
        (192, 88, 99) => Range::Relay6to4,
        (192, 168, _) => Range::Private,
        (198, 18..=19, _) => Range::Benchmarking,
        (224..=239, _, _) => Range::Multicast,
        (240..=255, _, _) => Range::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Range> {
    if ip.is_unspecified() {
        return Some(Range::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Range::Loopback);
    }
    // ::ffff:a.b.c.d reaches a.b.c.d itself.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..6] == [0; 6] {
        return Some(Range::Ipv4Compatible);
    }
    // 64:ff9b::/96 is the well-known NAT64 prefix: the gateway connects to the embedded IPv4
    // address, which decides.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return classify_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some(Range::LocalNat64);
    }
    // 2002::/16 is 6to4: a relay reaches the IPv4 address in bits 16 to 48.
    if s[0] == 0x2002 {
        return classify_v4(embedded(s[1], s[2]));
    }
    Some(match s[0] {
        // 2001::/23 (Teredo, ORCHID, benchmarking, AMT…).
        0x2001 if s[1] < 0x0200 => Range::IetfProtocol,
        0x2001 if s[1] == 0x0db8 => Range::Documentation,
        0x3fff if s[1] < 0x1000 => Range::Documentation,
        x if x & 0xfe00 == 0xfc00 => Range::UniqueLocal,
        x if x & 0xffc0 == 0xfe80 => Range::LinkLocal,
        x if x & 0xffc0 == 0xfec0 => Range::SiteLocal,
        x if x & 0xff00 == 0xff00 => Range::Multicast,
        // Only 2000::/3 is allocated for global unicast; the rest (100::/64 discard, 5f00::/16
        // SRv6…) is not for builds.
        x if x & 0xe000 != 0x2000 => Range::Reserved,
        _ => return None,
    })
}

/// What an allow-list entry matches besides the port.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Exactly this host name (lowercase, no trailing dot).
    Name(String),
    /// Names ending in this suffix (with its leading dot).
    Below(String),
    Net(IpNet),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    target: Target,
    port: Option<u16>,
}

impl Entry {
    fn matches(&self, host: &str, ip: IpAddr, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.target {
            Target::Name(name) => host == name,
            Target::Below(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
            Target::Net(net) => net.contains(&ip),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Name(n) => n.clone(),
            Target::Below(s) => format!("*{s}"),
            Target::Net(net) if net.prefix_len() == net.max_prefix_len() => net.addr().to_string(),
            Target::Net(net) => net.to_string(),
        };
        let v6 = matches!(&self.target, Target::Net(IpNet::V6(_)));
        match (self.port, v6) {
            (None, _) => f.write_str(&target),
            (Some(p), true) => write!(f, "[{target}]:{p}"),
            (Some(p), false) => write!(f, "{target}:{p}"),
        }
    }
}

/// An unusable allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ALLOW_VAR}: {entry:?} is not an IP address, a CIDR network or a host name, with an optional :port ({why})")]
pub struct EgressPolicyError {
    pub entry: String,
    pub why: &'static str,
}

/// The allow list, parsed. The default allows nothing beyond public addresses on [`OPEN_PORTS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<Entry>,
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The address is in a special-purpose range.
    Range { addr: SocketAddr, range: Range },
    /// A public address, but not on a port open to builds.
    Port { addr: SocketAddr },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Range { addr, range } => write!(f, "{} is {range}", addr.ip()),
            Denied::Port { addr } => write!(
                f,
                "port {} is not open to builds (only {} and {}, unless {ALLOW_VAR} lists it)",
                addr.port(),
                OPEN_PORTS[0],
                OPEN_PORTS[1]
            ),
        }
    }
}

/// The verdict on one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denied),
}

impl EgressPolicy {
    /// Parses the comma list of `CLOUDRUNR_BUILD_EGRESS_ALLOW`; empty entries are skipped.
    pub fn parse(list: &str) -> Result<Self, EgressPolicyError> {
        let allow = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(parse_entry)
            .collect::<Result<_, _>>()?;
        Ok(Self { allow })
    }

    /// The comma list [`EgressPolicy::parse`] reads back (handed to builds away from the server).
    pub fn to_list(&self) -> String {
        self.allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    }

    /// Whether a connection to `addr`, which `host` resolved to, may be made. `host` is the name
    /// as asked for (or the address literal); case and a trailing dot do not matter.
    pub fn decide(&self, host: &str, addr: SocketAddr) -> Decision {
        // An IPv4-mapped IPv6 address reaches the IPv4 address; match and judge that one.
        let ip = addr.ip().to_canonical();
        let host = normalize_host(host);
        if self.allow.iter().any(|e| e.matches(&host, ip, addr.port())) {
            return Decision::Allow;
        }
        if let Some(range) = classify(ip) {
            return Decision::Deny(Denied::Range { addr, range });
        }
        if !OPEN_PORTS.contains(&addr.port()) {
            return Decision::Deny(Denied::Port { addr });
        }
        Decision::Allow
    }
}

/// Lowercase, without brackets around an IPv6 literal and without a trailing dot.
fn normalize_host(host: &str) -> String {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_entry(raw: &str) -> Result<Entry, EgressPolicyError> {
    let err = |why| EgressPolicyError {
        entry: raw.to_owned(),
        why,
    };
    let (target, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| err("an unclosed '['"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| err("text after ']'"))?),
        };
        if !inside.contains(':') {
            return Err(err("brackets are only for IPv6"));
        }
        (inside, port)
    } else if raw.matches(':').count() > 1 {
        // A bare IPv6 address or network: its colons are not a port.
        (raw, None)
    } else {
        match raw.rsplit_once(':') {
            Some((t, p)) => (t, Some(p)),
            None => (raw, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err("a bad port"))
        })
        .transpose()?;
    let target = if let Ok(net) = target.parse::<IpNet>() {
        Target::Net(net.trunc())
    } else if let Ok(ip) = target.parse::<IpAddr>() {
        Target::Net(IpNet::from(ip))
    } else if let Some(suffix) = target.strip_prefix("*.") {
        Target::Below(format!(
            ".{}",
            host_name(suffix).ok_or_else(|| err("a bad wildcard name"))?
        ))
    } else {
        Target::Name(host_name(target).ok_or_else(|| err("a bad host name"))?)
    };
    Ok(Entry { target, port })
}

/// A DNS name: dot-separated labels of letters, digits, `-` (not at either end) and `_`, at most
/// 253 characters, the last label not all digits (`127.1` is an address to resolvers, not a name).
fn host_name(raw: &str) -> Option<String> {
    let name = raw.trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(name)
}

#[cfg(test)]
mod tests;
