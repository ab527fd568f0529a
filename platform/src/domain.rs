//! Custom domains: the name a tenant brings ([`DomainName`]), where it stands
//! ([`DomainState`]), and the DNS records that prove ownership and route it ([`DnsRecord`]).
//!
//! A name is parsed once, at the edge: lowercase, IDNA-mapped to its ASCII form, no trailing dot,
//! never an IP address, and within DNS's length limits. Whether a name is an apex (routed with
//! A/AAAA records, which a zone apex needs because it cannot hold a CNAME) or a subdomain (routed
//! with a CNAME) is decided by the public suffix list, so `example.co.uk` is an apex while
//! `shop.example.com` is not — counting labels would get the first one wrong.

use crate::{ProjectId, Timestamp};
use std::fmt;
use std::net::IpAddr;

/// The longest name DNS carries in presentation form (RFC 1035: 255 octets on the wire).
pub const MAX_NAME_LEN: usize = 253;
/// The longest label DNS allows.
pub const MAX_LABEL_LEN: usize = 63;
/// The label under which the ownership proof is published: `_cloudrunr.<name>`.
pub const PROOF_LABEL: &str = "_cloudrunr";

/// Why a string is not an acceptable custom domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainNameError {
    #[error("the domain name is empty")]
    Empty,
    #[error("the domain name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("a label of the domain name is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong,
    #[error("the domain name has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("{0:?} is not a valid domain name: use letters, digits and hyphens (or an international name)")]
    Invalid(String),
    #[error("an IP address is not a domain name")]
    IpAddress,
    #[error("{0:?} is a public suffix (like com or co.uk); add a name under it")]
    PublicSuffix(String),
    #[error("names under the platform's own domain {0:?} are already served; add a domain of your own")]
    PlatformDomain(String),
}

/// A custom domain name: lowercase ASCII (IDNA `xn--` form for international names), at least
/// two labels, no trailing dot, not an IP address, not a bare public suffix.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

/// The canonical ASCII form of `raw`: trimmed, IDNA-mapped, checked against DNS's limits; not
/// yet checked for being registrable.
fn canonical(raw: &str) -> Result<String, DomainNameError> {
    let trimmed = raw.trim();
    // One trailing dot is the fully-qualified spelling of the same name.
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(DomainNameError::Empty);
    }
    // Checked before IDNA, which would otherwise spend work on arbitrarily long input.
    if trimmed.len() > 4 * MAX_NAME_LEN {
        return Err(DomainNameError::TooLong);
    }
    if trimmed
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return Err(DomainNameError::IpAddress);
    }
    if trimmed.split('.').any(str::is_empty) {
        return Err(DomainNameError::EmptyLabel);
    }
    // UTS #46 with the STD3 rules: maps case and compatibility forms, then refuses anything but
    // letters, digits and hyphens (and hyphens at a label's ends). Lengths are checked below, so
    // that their error says which limit was passed.
    let ascii = idna::uts46::Uts46::new()
        .to_ascii(
            trimmed.as_bytes(),
            idna::uts46::AsciiDenyList::STD3,
            idna::uts46::Hyphens::Check,
            idna::uts46::DnsLength::Ignore,
        )
        .map_err(|_| DomainNameError::Invalid(raw.trim().to_owned()))?
        .into_owned();
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(DomainNameError::EmptyLabel);
    }
    if labels.iter().any(|l| l.len() > MAX_LABEL_LEN) {
        return Err(DomainNameError::LabelTooLong);
    }
    if ascii.len() > MAX_NAME_LEN {
        return Err(DomainNameError::TooLong);
    }
    if ascii.parse::<IpAddr>().is_ok() || labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        // A numeric last label is an IPv4 address in some spelling (`1.2.3.4`, `127.1`), never
        // a top-level domain.
        return Err(DomainNameError::IpAddress);
    }
    Ok(ascii)
}

/// A canonical name that is not itself a public suffix (`com`, `co.uk`): one with a registrable
/// domain.
fn registrable(ascii: String) -> Result<DomainName, DomainNameError> {
    if !ascii.contains('.') || psl::domain_str(&ascii).is_none() {
        return Err(DomainNameError::PublicSuffix(ascii));
    }
    Ok(DomainName(ascii))
}

impl DomainName {
    /// Parses what a user typed (`Example.COM.`, `bücher.example`) into its canonical form.
    pub fn parse(raw: &str) -> Result<Self, DomainNameError> {
        registrable(canonical(raw)?)
    }

    /// [`DomainName::parse`], refusing the platform's own domain and every name under it:
    /// those are the platform's (`<slug>.<domain>`), never a tenant's.
    pub fn parse_custom(raw: &str, platform_domain: &str) -> Result<Self, DomainNameError> {
        let name = DomainName(canonical(raw)?);
        if name.is_within(platform_domain) {
            return Err(DomainNameError::PlatformDomain(platform_domain.to_owned()));
        }
        registrable(name.0)
    }

    /// Whether this name is `domain` or a name under it (compared without case).
    pub fn is_within(&self, domain: &str) -> bool {
        let domain = domain.trim_matches('.');
        if domain.is_empty() {
            return false;
        }
        let name = self.0.as_str();
        name.eq_ignore_ascii_case(domain)
            || (name.len() > domain.len()
                && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
                && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a registrable domain (`example.com`, `example.co.uk`): routed with A/AAAA
    /// records, since a zone's apex cannot hold a CNAME.
    pub fn is_apex(&self) -> bool {
        psl::domain_str(&self.0) == Some(self.0.as_str())
    }

    /// The other half of a `www` ↔ apex pair: `example.com` ↔ `www.example.com`; `None` for
    /// every other name.
    pub fn www_counterpart(&self) -> Option<DomainName> {
        if self.is_apex() {
            let www = format!("www.{}", self.0);
            return (www.len() <= MAX_NAME_LEN).then_some(DomainName(www));
        }
        let rest = self.0.strip_prefix("www.")?;
        let apex = DomainName(rest.to_owned());
        apex.is_apex().then_some(apex)
    }

    /// Where the ownership proof is published: `_cloudrunr.<name>`.
    pub fn proof_name(&self) -> String {
        format!("{PROOF_LABEL}.{}", self.0)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName({})", self.0)
    }
}

/// Where a custom domain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainState {
    /// Added; its TXT proof and routing record have not been checked successfully yet.
    PendingVerification,
    /// Ownership and routing were proven: the domain serves its project.
    Verified,
    /// A certificate was issued for it (set by ACME issuance).
    CertificateIssued,
    /// The last check (or issuance) failed; the domain's `reason` says why.
    Failed,
}

impl DomainState {
    pub const ALL: [DomainState; 4] = [
        Self::PendingVerification,
        Self::Verified,
        Self::CertificateIssued,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingVerification => "pending_verification",
            Self::Verified => "verified",
            Self::CertificateIssued => "certificate_issued",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// For people: the dashboard's badge.
    pub fn label(self) -> &'static str {
        match self {
            Self::PendingVerification => "Pending verification",
            Self::Verified => "Verified",
            Self::CertificateIssued => "Certificate issued",
            Self::Failed => "Failed",
        }
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A custom domain of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub project_id: ProjectId,
    pub name: DomainName,
    /// The value the `_cloudrunr.<name>` TXT record must hold (random, per domain and project).
    pub token: String,
    pub state: DomainState,
    /// Why the last check or issuance failed: the DNS answer seen, or the CA's error.
    pub reason: Option<String>,
    /// The other half of a `www` ↔ apex pair that requests for this name are redirected to.
    pub redirect_to: Option<DomainName>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When ownership was proven. Set exactly while the domain routes to this project: a name
    /// is routed to one project at most, the one that proved ownership last.
    pub verified_at: Option<Timestamp>,
}

impl Domain {
    /// A fresh ownership token: 128 random bits in hex.
    pub fn new_token() -> String {
        let mut bytes = [0u8; 16];
        crate::ids::random_bytes(&mut bytes);
        format!("cloudrunr-verify-{}", hex::encode(bytes))
    }

    /// Whether requests for this name reach the project.
    pub fn is_routed(&self) -> bool {
        self.verified_at.is_some()
    }
}

/// A DNS record a tenant is asked to set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DnsRecord {
    /// `TXT`, `CNAME`, `A` or `AAAA`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub value: String,
    /// What the record is for: `ownership` or `routing`.
    pub purpose: &'static str,
}

/// How a domain is routed to the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// A subdomain: `CNAME <name> → <slug>.<platform domain>`.
    Cname(String),
    /// An apex (or any name when the operator prefers addresses): A/AAAA to these.
    Addresses(Vec<IpAddr>),
}

impl Routing {
    /// The routing a domain needs: a CNAME to the project's site for a subdomain; for an apex,
    /// address records to the platform's public addresses (`None` when none are configured).
    pub fn for_domain(name: &DomainName, site_host: &str, public_ips: &[IpAddr]) -> Option<Routing> {
        if name.is_apex() {
            (!public_ips.is_empty()).then(|| Routing::Addresses(public_ips.to_vec()))
        } else {
            Some(Routing::Cname(site_host.to_ascii_lowercase()))
        }
    }

    /// The records to set: the ownership proof first, then the routing.
    pub fn records(&self, name: &DomainName, token: &str) -> Vec<DnsRecord> {
        let mut out = vec![DnsRecord {
            kind: "TXT",
            name: name.proof_name(),
            value: token.to_owned(),
            purpose: "ownership",
        }];
        match self {
            Routing::Cname(target) => out.push(DnsRecord {
                kind: "CNAME",
                name: name.to_string(),
                value: target.clone(),
                purpose: "routing",
            }),
            Routing::Addresses(ips) => out.extend(ips.iter().map(|ip| DnsRecord {
                kind: if ip.is_ipv4() { "A" } else { "AAAA" },
                name: name.to_string(),
                value: ip.to_string(),
                purpose: "routing",
            })),
        }
        out
    }
}

/// What a DNS lookup found for one domain: the inputs of [`judge`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsAnswers {
    /// The TXT strings at `_cloudrunr.<name>`.
    pub txt: Vec<String>,
    /// The CNAME target of `<name>`, without the trailing dot.
    pub cname: Option<String>,
    /// The A and AAAA addresses `<name>` resolves to.
    pub addresses: Vec<IpAddr>,
    /// Lookups that failed other than with "no such record" (timeouts, SERVFAIL).
    pub errors: Vec<String>,
}

/// Whether the DNS answers prove ownership (the TXT record holds `token`) and route the domain
/// to the platform (`routing`); on failure, a reason naming what was seen.
pub fn judge(answers: &DnsAnswers, name: &DomainName, token: &str, routing: &Routing) -> Result<(), String> {
    let mut problems = Vec::new();
    if !answers.txt.iter().any(|t| t.trim() == token) {
        let seen = if answers.txt.is_empty() {
            "no TXT record".to_owned()
        } else {
            format!("TXT {}", quoted_list(&answers.txt))
        };
        problems.push(format!(
            "ownership: expected TXT {} = {token:?}, found {seen}",
            name.proof_name()
        ));
    }
    match routing {
        Routing::Cname(target) => {
            let found = answers.cname.as_deref().map(|c| c.trim_end_matches('.'));
            if !found.is_some_and(|c| c.eq_ignore_ascii_case(target)) {
                let seen = match found {
                    Some(c) => format!("CNAME {c}"),
                    None if answers.addresses.is_empty() => "no CNAME record".to_owned(),
                    None => format!("no CNAME record (addresses {})", ip_list(&answers.addresses)),
                };
                problems.push(format!("routing: expected CNAME {name} → {target}, found {seen}"));
            }
        }
        Routing::Addresses(ours) => {
            // Every address must be ours: one left pointing elsewhere sends part of the traffic
            // (and certificate validation) to someone else.
            let foreign: Vec<IpAddr> = answers
                .addresses
                .iter()
                .filter(|a| !ours.contains(a))
                .copied()
                .collect();
            if answers.addresses.is_empty() || !foreign.is_empty() {
                let seen = if answers.addresses.is_empty() {
                    "no A or AAAA record".to_owned()
                } else {
                    format!("{} (not ours: {})", ip_list(&answers.addresses), ip_list(&foreign))
                };
                problems.push(format!(
                    "routing: expected A/AAAA {name} → {}, found {seen}",
                    ip_list(ours)
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    for e in &answers.errors {
        problems.push(format!("lookup error: {e}"));
    }
    Err(problems.join("; "))
}

fn quoted_list(values: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out: Vec<String> = values.iter().take(SHOWN).map(|v| format!("{:?}", clip(v))).collect();
    if values.len() > SHOWN {
        out.push(format!("and {} more", values.len() - SHOWN));
    }
    out.join(", ")
}

fn ip_list(ips: &[IpAddr]) -> String {
    ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
}

/// A DNS string cut to a length that fits a reason (TXT strings are up to 255 bytes each).
fn clip(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> DomainName {
        DomainName::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn names_are_canonical() {
        assert_eq!(name("Example.COM").as_str(), "example.com");
        assert_eq!(name(" shop.example.com. ").as_str(), "shop.example.com");
        assert_eq!(name("bücher.example").as_str(), "xn--bcher-kva.example");
        assert_eq!(name("WWW.Bücher.Example").as_str(), "www.xn--bcher-kva.example");
    }

    #[test]
    fn bad_names_are_refused() {
        use DomainNameError::*;
        let cases: &[(&str, DomainNameError)] = &[
            ("", Empty),
            (".", Empty),
            ("a..example.com", EmptyLabel),
            (".example.com", EmptyLabel),
            ("example.com..", EmptyLabel),
            ("1.2.3.4", IpAddress),
            ("[::1]", IpAddress),
            ("127.1", IpAddress),
            ("com", PublicSuffix("com".into())),
            ("co.uk", PublicSuffix("co.uk".into())),
        ];
        for (raw, want) in cases {
            assert_eq!(
                DomainName::parse(raw).as_ref().map_err(Clone::clone),
                Err(want.clone()),
                "{raw:?}"
            );
        }
        for raw in [
            "exa mple.com",
            "exa_mple.com",
            "-example.com",
            "example-.com",
            "ex/ample.com",
            "example.com:80",
            "http://example.com",
            "*.example.com",
            "ex\u{0}ample.com",
        ] {
            assert!(
                matches!(DomainName::parse(raw), Err(Invalid(_))),
                "{raw:?}: {:?}",
                DomainName::parse(raw)
            );
        }
        let label = "a".repeat(64);
        assert_eq!(DomainName::parse(&format!("{label}.com")), Err(LabelTooLong));
        let long = format!("{}example.com", "abcdefghi.".repeat(25));
        assert_eq!(DomainName::parse(&long), Err(TooLong));
        assert_eq!(DomainName::parse(&"a".repeat(100_000)), Err(TooLong));
    }

    #[test]
    fn the_platform_domain_is_not_a_custom_domain() {
        for raw in ["sites.example.com", "blog.sites.example.com", "BLOG.Sites.Example.com."] {
            assert_eq!(
                DomainName::parse_custom(raw, "sites.example.com"),
                Err(DomainNameError::PlatformDomain("sites.example.com".into())),
                "{raw}"
            );
        }
        assert!(DomainName::parse_custom("mysites.example.com", "sites.example.com").is_ok());
        assert!(DomainName::parse_custom("example.com", "sites.example.com").is_ok());
        assert!(DomainName::parse_custom("blog.localhost", "localhost").is_err());
        assert_eq!(
            DomainName::parse_custom("localhost", "localhost"),
            Err(DomainNameError::PlatformDomain("localhost".into()))
        );
    }

    #[test]
    fn apex_follows_the_public_suffix_list() {
        assert!(name("example.com").is_apex());
        assert!(name("example.co.uk").is_apex());
        assert!(!name("www.example.co.uk").is_apex());
        assert!(!name("shop.example.com").is_apex());
        assert!(!name("a.b.example.com").is_apex());
    }

    #[test]
    fn www_pairs() {
        assert_eq!(name("example.com").www_counterpart(), Some(name("www.example.com")));
        assert_eq!(name("www.example.co.uk").www_counterpart(), Some(name("example.co.uk")));
        assert_eq!(name("shop.example.com").www_counterpart(), None);
        assert_eq!(name("www.shop.example.com").www_counterpart(), None);
    }

    #[test]
    fn states_round_trip() {
        for s in DomainState::ALL {
            assert_eq!(DomainState::parse(s.as_str()), Some(s));
        }
        assert_eq!(DomainState::parse("live"), None);
    }

    #[test]
    fn records_to_set() {
        let sub = name("shop.example.com");
        let routing = Routing::for_domain(&sub, "Shop.Sites.Test", &[]).expect("a subdomain needs no addresses");
        let records = routing.records(&sub, "tok");
        assert_eq!(records.len(), 2);
        assert_eq!(
            (records[0].kind, records[0].name.as_str(), records[0].value.as_str()),
            ("TXT", "_cloudrunr.shop.example.com", "tok")
        );
        assert_eq!(
            (records[1].kind, records[1].value.as_str()),
            ("CNAME", "shop.sites.test")
        );

        let apex = name("example.com");
        assert_eq!(Routing::for_domain(&apex, "shop.sites.test", &[]), None);
        let ips: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let records = Routing::for_domain(&apex, "shop.sites.test", &ips)
            .unwrap()
            .records(&apex, "tok");
        let kinds: Vec<&str> = records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["TXT", "A", "AAAA"]);
    }

    #[test]
    fn judging_dns_answers() {
        let sub = name("shop.example.com");
        let cname = Routing::Cname("shop.sites.test".into());
        let good = DnsAnswers {
            txt: vec!["other".into(), "tok".into()],
            cname: Some("Shop.Sites.Test.".into()),
            ..DnsAnswers::default()
        };
        assert_eq!(judge(&good, &sub, "tok", &cname), Ok(()));

        let wrong_txt = DnsAnswers {
            txt: vec!["someone-else".into()],
            ..good.clone()
        };
        let reason = judge(&wrong_txt, &sub, "tok", &cname).unwrap_err();
        assert!(
            reason.contains("\"someone-else\"") && reason.contains("_cloudrunr.shop.example.com"),
            "{reason}"
        );

        let wrong_cname = DnsAnswers {
            cname: Some("elsewhere.example.net".into()),
            ..good.clone()
        };
        let reason = judge(&wrong_cname, &sub, "tok", &cname).unwrap_err();
        assert!(reason.contains("found CNAME elsewhere.example.net"), "{reason}");
        assert!(!reason.contains("ownership"), "{reason}");

        let apex = name("example.com");
        let ours: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap()];
        let addrs = Routing::Addresses(ours.clone());
        let mut answers = DnsAnswers {
            txt: vec!["tok".into()],
            addresses: ours.clone(),
            ..DnsAnswers::default()
        };
        assert_eq!(judge(&answers, &apex, "tok", &addrs), Ok(()));
        answers.addresses.push("198.51.100.1".parse().unwrap());
        let reason = judge(&answers, &apex, "tok", &addrs).unwrap_err();
        assert!(reason.contains("not ours: 198.51.100.1"), "{reason}");
        answers.addresses.clear();
        answers.errors.push("timed out".into());
        let reason = judge(&answers, &apex, "tok", &addrs).unwrap_err();
        assert!(
            reason.contains("no A or AAAA record") && reason.contains("timed out"),
            "{reason}"
        );
    }

    #[test]
    fn tokens_differ() {
        let a = Domain::new_token();
        assert_ne!(a, Domain::new_token());
        assert!(a.len() > 32);
    }
}
