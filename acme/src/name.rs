//! The name a certificate is issued for.

use std::fmt;

/// A certificate's name: a host name (`shop.example.com`) or a wildcard of one label
/// (`*.apps.example.com`); lowercase ASCII letters, digits and hyphens, at least two labels.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a name a certificate can be issued for: {1}")]
pub struct CertNameError(String, &'static str);

impl CertName {
    pub fn parse(raw: &str) -> Result<Self, CertNameError> {
        let fail = |why| CertNameError(raw.chars().take(300).collect(), why);
        let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        if name.len() > 253 {
            return Err(fail("longer than 253 characters"));
        }
        let host = name.strip_prefix("*.").unwrap_or(&name);
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() < 2 {
            return Err(fail("it needs at least two labels"));
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err(fail("a label is empty or longer than 63 characters"));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(fail(
                    "use letters, digits and hyphens (international names in their xn-- form)",
                ));
            }
        }
        if labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
            return Err(fail("an IP address is not a host name"));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The host name DNS-01 proves: the name without its `*.`.
    pub fn base(&self) -> &str {
        self.0.strip_prefix("*.").unwrap_or(&self.0)
    }

    /// The names one certificate for this name covers: a wildcard covers its base too
    /// (`*.example.com` and `example.com`), so the platform's own host is served by the same
    /// certificate as its sites.
    pub fn covered(&self) -> Vec<&str> {
        if self.is_wildcard() {
            vec![self.as_str(), self.base()]
        } else {
            vec![self.as_str()]
        }
    }

    /// Whether a certificate valid for `names` (its alternative names, lowercase) serves every
    /// name this one covers.
    pub fn is_covered_by(&self, names: &[String]) -> bool {
        self.covered().iter().all(|n| names.iter().any(|have| have == n))
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertName({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_wildcards_parse_to_lowercase() {
        assert_eq!(
            CertName::parse("Shop.Example.COM.").unwrap().as_str(),
            "shop.example.com"
        );
        let w = CertName::parse("*.apps.example.com").unwrap();
        assert!(w.is_wildcard());
        assert_eq!(w.base(), "apps.example.com");
        assert!(!CertName::parse("example.com").unwrap().is_wildcard());
    }

    #[test]
    fn a_wildcard_covers_its_base_and_a_host_only_itself() {
        let w = CertName::parse("*.apps.example.com").unwrap();
        assert_eq!(w.covered(), ["*.apps.example.com", "apps.example.com"]);
        assert!(w.is_covered_by(&["apps.example.com".into(), "*.apps.example.com".into()]));
        // Issued before the base was part of the order: not enough.
        assert!(!w.is_covered_by(&["*.apps.example.com".into()]));
        let host = CertName::parse("shop.example.com").unwrap();
        assert_eq!(host.covered(), ["shop.example.com"]);
        assert!(host.is_covered_by(&["shop.example.com".into()]));
        assert!(!host.is_covered_by(&["*.example.com".into()]));
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        for bad in [
            "",
            "localhost",
            "*.com",
            "a..b",
            "-a.com",
            "a_b.com",
            "*.*.a.com",
            "a.*.b.com",
            "1.2.3.4",
            "é.com",
        ] {
            let e = CertName::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("not a name"), "{e}");
        }
        assert!(CertName::parse(&format!("{}.com", "a".repeat(64))).is_err());
    }
}
