//! The policy is proven here, without a packet: every range by example, and the IPv6 forms of
//! the IPv4 ranges by property.

use super::*;
use proptest::prelude::*;

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn none() -> EgressPolicy {
    EgressPolicy::default()
}

fn range_of(ip: &str) -> Option<Range> {
    classify(ip.parse().unwrap())
}

#[test]
fn every_special_range_is_denied() {
    let cases: &[(&str, Range)] = &[
        ("0.0.0.0", Range::Unspecified),
        ("0.1.2.3", Range::ThisNetwork),
        ("10.0.0.1", Range::Private),
        ("10.255.255.255", Range::Private),
        ("100.64.0.1", Range::SharedNat),
        ("100.127.255.254", Range::SharedNat),
        ("100.100.100.200", Range::SharedNat),
        ("127.0.0.1", Range::Loopback),
        ("127.255.255.254", Range::Loopback),
        ("169.254.169.254", Range::LinkLocal),
        ("169.254.170.2", Range::LinkLocal),
        ("169.254.0.1", Range::LinkLocal),
        ("168.63.129.16", Range::CloudPlatform),
        ("172.16.0.1", Range::Private),
        ("172.31.255.255", Range::Private),
        ("192.0.0.8", Range::IetfProtocol),
        ("192.0.2.1", Range::Documentation),
        ("198.51.100.7", Range::Documentation),
        ("203.0.113.9", Range::Documentation),
        ("192.88.99.1", Range::Relay6to4),
        ("192.168.1.1", Range::Private),
        ("198.18.0.1", Range::Benchmarking),
        ("198.19.255.255", Range::Benchmarking),
        ("224.0.0.1", Range::Multicast),
        ("239.255.255.250", Range::Multicast),
        ("240.0.0.1", Range::Reserved),
        ("255.255.255.254", Range::Reserved),
        ("255.255.255.255", Range::Broadcast),
        ("::", Range::Unspecified),
        ("::1", Range::Loopback),
        ("::ffff:127.0.0.1", Range::Loopback),
        ("::ffff:169.254.169.254", Range::LinkLocal),
        ("::ffff:10.1.2.3", Range::Private),
        ("::127.0.0.1", Range::Ipv4Compatible),
        ("::8.8.8.8", Range::Ipv4Compatible),
        ("64:ff9b::a9fe:a9fe", Range::LinkLocal),
        ("64:ff9b::7f00:1", Range::Loopback),
        ("64:ff9b::10.0.0.1", Range::Private),
        ("64:ff9b:1::1", Range::LocalNat64),
        ("2002:7f00:0001::1", Range::Loopback),
        ("2002:a9fe:a9fe::", Range::LinkLocal),
        ("2002:c0a8:0101::1", Range::Private),
        ("2001::1", Range::IetfProtocol),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Range::IetfProtocol),
        ("2001:1ff::1", Range::IetfProtocol),
        ("2001:db8::1", Range::Documentation),
        ("3fff::1", Range::Documentation),
        ("100::1", Range::Reserved),
        ("5f00::1", Range::Reserved),
        ("4000::1", Range::Reserved),
        ("fc00::1", Range::UniqueLocal),
        ("fd00:ec2::254", Range::UniqueLocal),
        ("fe80::1", Range::LinkLocal),
        ("febf::1", Range::LinkLocal),
        ("fec0::1", Range::SiteLocal),
        ("ff02::1", Range::Multicast),
        ("ff0e::1", Range::Multicast),
    ];
    for (ip, range) in cases {
        assert_eq!(range_of(ip), Some(*range), "{ip}");
        let addr = sa(ip, 443);
        assert_eq!(
            none().decide(ip, addr),
            Decision::Deny(Denied::Range { addr, range: *range }),
            "{ip}"
        );
    }
}

#[test]
fn public_addresses_are_allowed_on_web_ports_only() {
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "104.16.0.1",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "169.253.255.255",
        "192.0.1.1",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "2606:4700::6810:1",
        "2001:200::1",
        "2a00:1450:4001::1",
        "::ffff:8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:0808:0808::1",
    ] {
        assert_eq!(range_of(ip), None, "{ip}");
        for port in OPEN_PORTS {
            assert_eq!(
                none().decide("example.com", sa(ip, port)),
                Decision::Allow,
                "{ip}:{port}"
            );
        }
        for port in [22, 25, 3306, 8080, 8443] {
            let addr = sa(ip, port);
            assert_eq!(
                none().decide("example.com", addr),
                Decision::Deny(Denied::Port { addr }),
                "{ip}:{port}"
            );
        }
    }
}

#[test]
fn the_allow_list_opens_addresses_networks_names_and_ports() {
    let p = EgressPolicy::parse("127.0.0.1:4873, 10.0.0.0/8, registry.internal, *.corp.example:8443, [fd00::/8]:443")
        .unwrap();
    assert_eq!(p.decide("127.0.0.1", sa("127.0.0.1", 4873)), Decision::Allow);
    assert!(matches!(
        p.decide("127.0.0.1", sa("127.0.0.1", 4874)),
        Decision::Deny(_)
    ));
    assert!(matches!(
        p.decide("127.0.0.2", sa("127.0.0.2", 4873)),
        Decision::Deny(_)
    ));
    // An IPv4-mapped form is the same address.
    assert_eq!(p.decide("x", sa("::ffff:127.0.0.1", 4873)), Decision::Allow);
    assert_eq!(p.decide("db", sa("10.9.8.7", 5432)), Decision::Allow);
    assert!(matches!(
        p.decide("db", sa("11.9.8.7", 5432)),
        Decision::Deny(Denied::Port { .. })
    ));
    // A listed name is trusted whatever it resolves to, in any case, with a trailing dot.
    assert_eq!(p.decide("Registry.Internal.", sa("192.168.1.5", 4873)), Decision::Allow);
    assert!(matches!(
        p.decide("registry.internal.evil", sa("192.168.1.5", 443)),
        Decision::Deny(_)
    ));
    assert_eq!(p.decide("git.corp.example", sa("172.20.0.1", 8443)), Decision::Allow);
    assert!(matches!(
        p.decide("corp.example", sa("172.20.0.1", 8443)),
        Decision::Deny(_)
    ));
    assert!(matches!(
        p.decide("evilcorp.example", sa("172.20.0.1", 8443)),
        Decision::Deny(_)
    ));
    assert!(matches!(
        p.decide("git.corp.example", sa("172.20.0.1", 443)),
        Decision::Deny(_)
    ));
    assert_eq!(p.decide("[fd12::1]", sa("fd12::1", 443)), Decision::Allow);
    assert!(matches!(p.decide("fd12::1", sa("fd12::1", 80)), Decision::Deny(_)));
    // Nothing listed about the metadata service: still denied.
    assert!(matches!(
        p.decide("metadata", sa("169.254.169.254", 80)),
        Decision::Deny(_)
    ));
}

#[test]
fn allow_lists_parse_and_print_back() {
    let list = "127.0.0.1,10.0.0.0/8:5432,registry.internal,*.corp.example:8443,[fd00::/8]:443,::1,[fe80::1]:80";
    let p = EgressPolicy::parse(list).unwrap();
    assert_eq!(p.to_list(), list);
    assert_eq!(EgressPolicy::parse(&p.to_list()).unwrap(), p);
    assert_eq!(EgressPolicy::parse(" , ").unwrap(), EgressPolicy::default());
    assert_eq!(EgressPolicy::parse("10.1.2.3/8").unwrap().to_list(), "10.0.0.0/8");
    assert_eq!(
        EgressPolicy::parse("Registry.Internal.").unwrap().to_list(),
        "registry.internal"
    );
    for bad in [
        "*",
        "10.0.0.0/33",
        "host:0",
        "host:65536",
        "host:http",
        "[::1",
        "[::1]x",
        "[10.0.0.1]:80",
        "bad host",
        "a..b",
        "127.1",
        "*.",
        "http://x",
        "-",
    ] {
        let e = EgressPolicy::parse(bad).unwrap_err();
        assert_eq!(e.entry, bad);
        assert!(e.to_string().contains(ALLOW_VAR), "{e}");
    }
}

#[test]
fn reasons_read_well() {
    let addr = sa("169.254.169.254", 80);
    let Decision::Deny(d) = none().decide("169.254.169.254", addr) else {
        panic!("allowed")
    };
    assert_eq!(
        d.to_string(),
        "169.254.169.254 is a link-local address (where cloud instance and task metadata services answer)"
    );
    let Decision::Deny(d) = none().decide("example.com", sa("8.8.8.8", 22)) else {
        panic!("allowed")
    };
    assert!(d.to_string().starts_with("port 22 is not open to builds"), "{d}");
}

/// IPv4 networks builds may not reach, as (network, prefix length).
const DENIED_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 88, 99, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

fn denied_v4() -> impl Strategy<Value = Ipv4Addr> {
    (0..DENIED_V4.len(), any::<u32>()).prop_map(|(i, bits)| {
        let (net, len) = DENIED_V4[i];
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Ipv4Addr::from((u32::from_be_bytes(net) & mask) | (bits & !mask))
    })
}

/// The IPv6 forms that reach an IPv4 address: mapped, NAT64 and 6to4.
fn v6_forms(v4: Ipv4Addr) -> [Ipv6Addr; 3] {
    let [a, b, c, d] = v4.octets();
    let hi = u16::from_be_bytes([a, b]);
    let lo = u16::from_be_bytes([c, d]);
    [
        v4.to_ipv6_mapped(),
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
        Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
    ]
}

proptest! {
    #[test]
    fn denied_v4_ranges_are_denied_in_every_form(v4 in denied_v4(), port in any::<u16>()) {
        prop_assert!(classify_v4(v4).is_some(), "{}", v4);
        let p = EgressPolicy::default();
        prop_assert!(
            matches!(p.decide("h", SocketAddr::new(v4.into(), port)), Decision::Deny(Denied::Range { .. })),
            "{} is allowed",
            v4
        );
        for v6 in v6_forms(v4) {
            prop_assert_eq!(classify_v6(v6), classify_v4(v4), "{}", v6);
            prop_assert!(
                matches!(p.decide("h", SocketAddr::new(v6.into(), port)), Decision::Deny(Denied::Range { .. })),
                "{} is allowed",
                v6
            );
        }
        let compatible = Ipv6Addr::from(u128::from(u32::from(v4)));
        prop_assert!(classify_v6(compatible).is_some());
    }

    #[test]
    fn an_ipv4_address_and_its_ipv6_forms_are_judged_alike(bits in any::<u32>(), port in any::<u16>()) {
        let v4 = Ipv4Addr::from(bits);
        let p = EgressPolicy::default();
        let want = p.decide("h", SocketAddr::new(v4.into(), port)) == Decision::Allow;
        for v6 in v6_forms(v4) {
            prop_assert_eq!(p.decide("h", SocketAddr::new(v6.into(), port)) == Decision::Allow, want, "{}", v6);
        }
    }

    #[test]
    fn ipv6_outside_global_unicast_is_denied(bits in any::<u128>(), port in any::<u16>()) {
        let v6 = Ipv6Addr::from(bits);
        let global = bits >> 125 == 0b001;
        let via_v4 = v6.to_ipv4_mapped().is_some() || bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000;
        if !global && !via_v4 {
            prop_assert!(classify_v6(v6).is_some(), "{}", v6);
            prop_assert!(matches!(EgressPolicy::default().decide("h", SocketAddr::new(v6.into(), port)), Decision::Deny(_)));
        }
    }

    #[test]
    fn a_listed_network_allows_its_addresses_on_any_port(bits in any::<u32>(), len in 8u8..=32, port in 1u16..) {
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(bits), len).unwrap().trunc();
        let p = EgressPolicy::parse(&net.to_string()).unwrap();
        let inside = Ipv4Addr::from(u32::from(net.network()) | (bits & !u32::from(net.netmask())));
        prop_assert_eq!(p.decide("h", SocketAddr::new(inside.into(), port)), Decision::Allow);
        prop_assert_eq!(EgressPolicy::parse(&p.to_list()).unwrap(), p);
    }

    #[test]
    fn parsing_never_panics(raw in "\\PC{0,40}") {
        let _ = EgressPolicy::parse(&raw);
    }
}
