//! Raw input becomes these types at the edge; the core only ever sees valid values.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        /// Deserializing parses: a stored or received value is as valid as one from the edge.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Project slugs

/// A project's name in URLs and hostnames: one DNS label.
///
/// `[a-z0-9-]`, 1 to 63 characters, no hyphen at either end, and no `--` (reserved for preview
/// and per-deployment hostnames such as `<branch>--<project>`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectSlug(String);
string_newtype!(ProjectSlug);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("the slug is empty")]
    Empty,
    #[error("the slug is longer than 63 characters")]
    TooLong,
    #[error("the slug may only contain lowercase letters, digits and '-' (found {0:?})")]
    InvalidChar(char),
    #[error("the slug may not start or end with '-'")]
    EdgeHyphen,
    #[error("the slug may not contain '--' (reserved for preview hostnames)")]
    DoubleHyphen,
    #[error("the slug {0:?} is reserved")]
    Reserved(String),
}

/// Names that would collide with the platform's own hostnames or confuse users.
const RESERVED_SLUGS: &[&str] = &[
    "admin",
    "api",
    "app",
    "assets",
    "auth",
    "cdn",
    "cloudrunr",
    "console",
    "dashboard",
    "docs",
    "git",
    "help",
    "internal",
    "localhost",
    "login",
    "mail",
    "ns1",
    "ns2",
    "root",
    "smtp",
    "static",
    "status",
    "support",
    "system",
    "webhook",
    "webhooks",
    "www",
];

impl ProjectSlug {
    pub const MAX_LEN: usize = 63;

    pub fn parse(raw: &str) -> Result<Self, SlugError> {
        if raw.is_empty() {
            return Err(SlugError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(SlugError::TooLong);
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(SlugError::InvalidChar(c));
        }
        if raw.starts_with('-') || raw.ends_with('-') {
            return Err(SlugError::EdgeHyphen);
        }
        if raw.contains("--") {
            return Err(SlugError::DoubleHyphen);
        }
        if RESERVED_SLUGS.contains(&raw) {
            return Err(SlugError::Reserved(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The slug a project name suggests: lowercase, runs of other characters become one `-`.
    /// `None` when the name holds nothing usable or only a reserved word.
    pub fn from_name(name: &str) -> Option<Self> {
        let mut out = String::new();
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        out.truncate(Self::MAX_LEN);
        let trimmed = out.trim_end_matches('-');
        Self::parse(trimmed).ok()
    }

    /// This slug with a suffix, shortened so the result is still a valid slug.
    pub fn with_suffix(&self, suffix: &str) -> Option<Self> {
        let keep = Self::MAX_LEN.saturating_sub(suffix.len() + 1);
        let base = self.0[..self.0.len().min(keep)].trim_end_matches('-');
        Self::parse(&format!("{base}-{suffix}")).ok()
    }
}

/// The host label of a project's preview of `branch`: `<branch>--<slug>`, one DNS label (so one
/// wildcard certificate covers every preview). The branch part is lowercased with runs of other
/// characters turned into one `-`; when it does not fit the label's 63 characters (or nothing is
/// left of it) it is shortened and a hash of the full branch name keeps it unique. `None` when
/// the slug leaves no room at all.
pub fn preview_label(branch: &BranchName, slug: &ProjectSlug) -> Option<String> {
    const HASH: usize = 6;
    let room = ProjectSlug::MAX_LEN.checked_sub(slug.as_str().len() + 2)?;
    let mut part = String::new();
    for c in branch.as_str().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            part.push(c);
        } else if !part.is_empty() && !part.ends_with('-') {
            part.push('-');
        }
    }
    let clean = part.trim_end_matches('-');
    let part = if !clean.is_empty() && clean.len() <= room {
        clean.to_owned()
    } else {
        if room < HASH {
            return None;
        }
        let hash = &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(branch.as_str().as_bytes()))[..HASH];
        let keep = room.saturating_sub(HASH + 1);
        let prefix = clean[..clean.len().min(keep)].trim_end_matches('-');
        if prefix.is_empty() {
            hash.to_owned()
        } else {
            format!("{prefix}-{hash}")
        }
    };
    Some(format!("{part}--{slug}"))
}

// ---------------------------------------------------------------------------------------------
// Git URLs

/// A repository URL that git may fetch from without running anything: `https://host/path`, or
/// `http://` (checked against [`GitHostPolicy`] wherever it is used). No credentials, no other
/// transports (`ssh`, `file`, `ext::`, local paths), nothing git could read as an option.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GitUrl(String);
string_newtype!(GitUrl);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitUrlError {
    #[error("the git URL is empty")]
    Empty,
    #[error("the git URL is longer than 2048 characters")]
    TooLong,
    #[error("the git URL contains whitespace or control characters")]
    BadCharacters,
    #[error("only https:// git URLs are accepted (got {0:?})")]
    Scheme(String),
    #[error("the git URL is not a valid URL")]
    Malformed,
    #[error("the git URL has no host")]
    NoHost,
    #[error("the git URL must not contain credentials; connect the repository instead")]
    Credentials,
    #[error("the git URL has no repository path")]
    NoPath,
    #[error("plain http:// is not allowed for host {0:?} (see CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS)")]
    PlainHttpNotAllowed(String),
    /// The URL names an address (not a host name) that the server may not connect to.
    #[error("the git URL points at an address the server does not fetch from: {0}")]
    Forbidden(String),
}

impl GitUrl {
    pub fn parse(raw: &str) -> Result<Self, GitUrlError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(GitUrlError::Empty);
        }
        if raw.len() > 2048 {
            return Err(GitUrlError::TooLong);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(GitUrlError::BadCharacters);
        }
        // Decide on the scheme before handing the string to a URL parser, so that scp-like
        // `user@host:path`, `ext::cmd`, local paths and `--option`s are refused by name.
        let lower = raw.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            let shown = match raw.find("://") {
                Some(i) => raw[..i].to_owned(),
                None => raw.chars().take(24).collect(),
            };
            return Err(GitUrlError::Scheme(shown));
        }
        let url = url::Url::parse(raw).map_err(|_| GitUrlError::Malformed)?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(GitUrlError::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(GitUrlError::Credentials);
        }
        match url.host_str() {
            None | Some("") => return Err(GitUrlError::NoHost),
            Some(_) => {}
        }
        if url.path().trim_matches('/').is_empty() {
            return Err(GitUrlError::NoPath);
        }
        Ok(Self(url.to_string()))
    }

    pub fn is_plain_http(&self) -> bool {
        self.0.starts_with("http://")
    }

    /// The host, lowercase, without port.
    pub fn host(&self) -> String {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default()
    }

    /// Where git connects for this URL: the host and the port (the scheme's default when the
    /// URL has none).
    pub fn endpoint(&self) -> GitEndpoint {
        let url = url::Url::parse(&self.0).expect("a GitUrl is a valid URL");
        let port = url.port_or_known_default().unwrap_or(443);
        match url.host() {
            Some(url::Host::Ipv4(ip)) => GitEndpoint {
                host: ip.to_string(),
                ip: Some(ip.into()),
                port,
            },
            Some(url::Host::Ipv6(ip)) => GitEndpoint {
                host: ip.to_string(),
                ip: Some(ip.into()),
                port,
            },
            Some(url::Host::Domain(name)) => GitEndpoint {
                host: name.to_ascii_lowercase(),
                ip: None,
                port,
            },
            None => GitEndpoint {
                host: String::new(),
                ip: None,
                port,
            },
        }
    }

    fn host_port(&self) -> String {
        url::Url::parse(&self.0)
            .ok()
            .map(|u| match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{}:{p}", h.to_ascii_lowercase()),
                (Some(h), None) => h.to_ascii_lowercase(),
                _ => String::new(),
            })
            .unwrap_or_default()
    }
}

/// The host and port a [`GitUrl`] connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitEndpoint {
    /// Lowercase; an IPv6 address without brackets.
    pub host: String,
    /// Set when the URL names an address rather than a host name.
    pub ip: Option<std::net::IpAddr>,
    pub port: u16,
}

/// Which hosts may be fetched over plain `http://` (local git servers, tests), and which
/// addresses git may connect to at all (the builds' [`EgressPolicy`](crate::egress::EgressPolicy)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitHostPolicy {
    allow_http_hosts: Vec<String>,
    egress: crate::egress::EgressPolicy,
}

impl GitHostPolicy {
    /// From a comma list: `host` allows any port, `host:port` only that port.
    pub fn from_list(list: &str) -> Self {
        Self {
            allow_http_hosts: list
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            egress: crate::egress::EgressPolicy::default(),
        }
    }

    /// This policy, connecting git only where `egress` allows.
    pub fn with_egress(mut self, egress: crate::egress::EgressPolicy) -> Self {
        self.egress = egress;
        self
    }

    /// Where git (and builds) may connect.
    pub fn egress(&self) -> &crate::egress::EgressPolicy {
        &self.egress
    }

    /// The comma list [`GitHostPolicy::from_list`] reads back.
    pub fn to_list(&self) -> String {
        self.allow_http_hosts.join(",")
    }

    /// Refuses plain `http://` to hosts not listed, and URLs whose host is an address git may
    /// not connect to. A host name is only resolved, and checked, when git is about to connect
    /// (its addresses may change in between).
    pub fn check(&self, url: &GitUrl) -> Result<(), GitUrlError> {
        let endpoint = url.endpoint();
        if let Some(ip) = endpoint.ip {
            let addr = std::net::SocketAddr::new(ip, endpoint.port);
            if let crate::egress::Decision::Deny(why) = self.egress.decide(&endpoint.host, addr) {
                return Err(GitUrlError::Forbidden(why.to_string()));
            }
        }
        if !url.is_plain_http() {
            return Ok(());
        }
        let host = url.host();
        let host_port = url.host_port();
        if self
            .allow_http_hosts
            .iter()
            .any(|allowed| *allowed == host || *allowed == host_port)
        {
            Ok(())
        } else {
            Err(GitUrlError::PlainHttpNotAllowed(host))
        }
    }

    /// Protocols git may use for a fetch from `url` (`GIT_ALLOW_PROTOCOL`).
    pub fn allowed_protocols(&self, url: &GitUrl) -> &'static str {
        if url.is_plain_http() { "http" } else { "https" }
    }
}

// ---------------------------------------------------------------------------------------------
// Relative paths

/// A normalized path relative to some root that can never leave it: `/`-separated components,
/// none empty, `.` or `..`, no NUL or backslash. The empty path is the root itself.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(String);
string_newtype!(RelPath);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelPathError {
    #[error("the path must be relative (no leading '/')")]
    Absolute,
    #[error("the path may not contain '..'")]
    ParentDir,
    #[error("the path contains a NUL, a backslash or a control character")]
    BadCharacters,
    #[error("the path is longer than 1024 bytes")]
    TooLong,
}

/// Lets maps keyed by `RelPath` be searched with a `&str` (the router's lookups): the order and
/// equality are those of the inner string.
impl std::borrow::Borrow<str> for RelPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl RelPath {
    pub const MAX_LEN: usize = 1024;

    pub fn root() -> Self {
        Self(String::new())
    }

    /// Accepts `a/b`, `./a/b/`, `.` and `` (root); refuses absolute paths and any `..`.
    pub fn parse(raw: &str) -> Result<Self, RelPathError> {
        if raw.len() > Self::MAX_LEN {
            return Err(RelPathError::TooLong);
        }
        if raw.chars().any(|c| c == '\0' || c == '\\' || c.is_control()) {
            return Err(RelPathError::BadCharacters);
        }
        if raw.starts_with('/') {
            return Err(RelPathError::Absolute);
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(RelPathError::ParentDir),
                p => parts.push(p),
            }
        }
        Ok(Self(parts.join("/")))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    pub fn join(&self, other: &RelPath) -> RelPath {
        match (self.is_root(), other.is_root()) {
            (true, _) => other.clone(),
            (_, true) => self.clone(),
            _ => Self(format!("{}/{}", self.0, other.0)),
        }
    }

    /// This path under a directory on disk. Never escapes `base` (no `..`, never absolute).
    pub fn under(&self, base: &Path) -> PathBuf {
        let mut p = base.to_path_buf();
        p.extend(self.components());
        p
    }

    /// The last component's extension, lowercase, if any.
    pub fn extension(&self) -> Option<String> {
        let name = self.components().last()?;
        let (stem, ext) = name.rsplit_once('.')?;
        (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
    }
}

// ---------------------------------------------------------------------------------------------
// Git refs

/// A branch name git accepts (`git check-ref-format --branch`), and that is safe on a command
/// line: never starts with `-`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchName(String);
string_newtype!(BranchName);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid branch name")]
pub struct BranchNameError(pub String);

impl BranchName {
    pub fn parse(raw: &str) -> Result<Self, BranchNameError> {
        let bad = || BranchNameError(raw.chars().take(80).collect());
        let raw_ok = !raw.is_empty()
            && raw.len() <= 255
            && !raw.starts_with('-')
            && !raw.starts_with('/')
            && !raw.ends_with('/')
            && !raw.ends_with('.')
            && !raw.ends_with(".lock")
            && !raw.contains("..")
            && !raw.contains("//")
            && !raw.contains("@{")
            && raw != "@"
            && !raw.split('/').any(|c| c.starts_with('.'))
            && !raw
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\\u{7f}".contains(c));
        if raw_ok { Ok(Self(raw.to_owned())) } else { Err(bad()) }
    }
}

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CommitSha(String);
string_newtype!(CommitSha);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a commit must be given as its full id: 40 (or 64) hexadecimal digits")]
pub struct CommitShaError;

impl CommitSha {
    pub fn parse(raw: &str) -> Result<Self, CommitShaError> {
        let lower = raw.trim().to_ascii_lowercase();
        if matches!(lower.len(), 40 | 64) && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(lower))
        } else {
            Err(CommitShaError)
        }
    }

    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

// ---------------------------------------------------------------------------------------------
// Environment variable names

/// The name of a project environment variable: `[A-Za-z_][A-Za-z0-9_]*`, at most 256 bytes, not
/// one the build environment sets itself.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvKey(String);
string_newtype!(EnvKey);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvKeyError {
    #[error("{0:?} is not a valid environment variable name (letters, digits and '_', not starting with a digit)")]
    Invalid(String),
    #[error("{0:?} is set by the platform and cannot be overridden")]
    Reserved(String),
}

const RESERVED_ENV: &[&str] = &["PATH", "HOME", "TMPDIR", "CI", "PWD", "USER", "LOGNAME", "SHELL"];

impl EnvKey {
    pub fn parse(raw: &str) -> Result<Self, EnvKeyError> {
        let valid = !raw.is_empty()
            && raw.len() <= 256
            && !raw.starts_with(|c: char| c.is_ascii_digit())
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(EnvKeyError::Invalid(raw.chars().take(80).collect()));
        }
        if RESERVED_ENV.contains(&raw) || raw.starts_with("CLOUDRUNR_") {
            return Err(EnvKeyError::Reserved(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "my-app", "app2", "x1-y2-z3", &"a".repeat(63)] {
            assert!(ProjectSlug::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(ProjectSlug::parse(""), Err(SlugError::Empty));
        assert_eq!(ProjectSlug::parse(&"a".repeat(64)), Err(SlugError::TooLong));
        assert_eq!(ProjectSlug::parse("My-App"), Err(SlugError::InvalidChar('M')));
        assert_eq!(ProjectSlug::parse("a.b"), Err(SlugError::InvalidChar('.')));
        assert_eq!(ProjectSlug::parse("a_b"), Err(SlugError::InvalidChar('_')));
        assert_eq!(ProjectSlug::parse("-ab"), Err(SlugError::EdgeHyphen));
        assert_eq!(ProjectSlug::parse("ab-"), Err(SlugError::EdgeHyphen));
        assert_eq!(ProjectSlug::parse("a--b"), Err(SlugError::DoubleHyphen));
        assert_eq!(ProjectSlug::parse("www"), Err(SlugError::Reserved("www".into())));
        assert_eq!(ProjectSlug::parse("é"), Err(SlugError::InvalidChar('é')));
    }

    #[test]
    fn slug_from_name() {
        let s = |n: &str| ProjectSlug::from_name(n).map(|s| s.0);
        assert_eq!(s("My Cool App!").as_deref(), Some("my-cool-app"));
        assert_eq!(s("  --Hello__World--  ").as_deref(), Some("hello-world"));
        assert_eq!(s("Ünïcode 2").as_deref(), Some("n-code-2"));
        assert_eq!(s("!!!"), None);
        assert_eq!(s("WWW"), None);
        assert_eq!(s(&"ab ".repeat(40)).map(|s| s.len() <= 63), Some(true));
    }

    #[test]
    fn slug_suffix_stays_valid() {
        let long = ProjectSlug::parse(&"a".repeat(63)).unwrap();
        let s = long.with_suffix("x7k2").unwrap();
        assert_eq!(s.as_str().len(), 63);
        assert!(s.as_str().ends_with("-x7k2"));
    }

    #[test]
    fn preview_labels() {
        let b = |s: &str| BranchName::parse(s).unwrap();
        let slug = ProjectSlug::parse("site").unwrap();
        assert_eq!(preview_label(&b("main"), &slug).unwrap(), "main--site");
        assert_eq!(
            preview_label(&b("Feature/Login_Page"), &slug).unwrap(),
            "feature-login-page--site"
        );
        assert_eq!(preview_label(&b("fix--x"), &slug).unwrap(), "fix-x--site");
        let long = b(&"a".repeat(100));
        let label = preview_label(&long, &slug).unwrap();
        assert_eq!(label.len(), 63);
        assert!(label.ends_with("--site"));
        assert_ne!(
            label,
            preview_label(&b(&"a".repeat(101)), &slug).unwrap(),
            "the hash tells them apart"
        );
        let odd = preview_label(&b("__"), &slug).unwrap();
        assert_eq!(odd.len(), 6 + 6, "only the hash is left: {odd}");
        for l in [label, odd] {
            assert!(ProjectSlug::parse(l.split_once("--").unwrap().0).is_ok() || l.starts_with(char::is_alphanumeric));
            assert!(!l.split_once("--").unwrap().0.contains("--"));
        }
        let long_slug = ProjectSlug::parse(&"s".repeat(60)).unwrap();
        assert_eq!(preview_label(&b("main"), &long_slug), None);
    }

    #[test]
    fn git_urls_accepted() {
        let u = GitUrl::parse(" https://github.com/acme/site.git ").unwrap();
        assert_eq!(u.as_str(), "https://github.com/acme/site.git");
        assert_eq!(u.host(), "github.com");
        assert!(GitUrl::parse("http://127.0.0.1:9000/r.git").is_ok());
    }

    #[test]
    fn git_urls_refused() {
        use GitUrlError::*;
        let cases: &[(&str, GitUrlError)] = &[
            ("", Empty),
            ("ext::sh -c touch% /tmp/pwned", BadCharacters),
            ("ext::sh", Scheme("ext::sh".into())),
            ("file:///etc", Scheme("file".into())),
            ("--upload-pack=touch /tmp/x", BadCharacters),
            ("--upload-pack=evil", Scheme("--upload-pack=evil".into())),
            ("/tmp/repo", Scheme("/tmp/repo".into())),
            ("ssh://git@github.com/a/b", Scheme("ssh".into())),
            ("git@github.com:a/b.git", Scheme("git@github.com:a/b.git".into())),
            ("https://user:pw@github.com/a/b", Credentials),
            ("https://token@github.com/a/b", Credentials),
            ("https://github.com/", NoPath),
            ("https://", Malformed),
            ("https://exa mple.com/x", BadCharacters),
        ];
        for (raw, want) in cases {
            assert_eq!(GitUrl::parse(raw).as_ref().err(), Some(want), "{raw}");
        }
    }

    #[test]
    fn git_endpoints() {
        let e = |u: &str| GitUrl::parse(u).unwrap().endpoint();
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            e("https://GitHub.com/a/b"),
            GitEndpoint {
                host: "github.com".into(),
                ip: None,
                port: 443
            }
        );
        assert_eq!(e("http://git.internal/a").port, 80);
        assert_eq!(e("https://git.internal:8443/a").port, 8443);
        // The URL parser reads every spelling of an address as that address.
        for (raw, want) in [
            ("https://127.0.0.1:9/a", "127.0.0.1"),
            ("https://0x7f.1/a", "127.0.0.1"),
            ("https://2130706433/a", "127.0.0.1"),
            ("https://0177.0.0.1/a", "127.0.0.1"),
            ("https://[::1]/a", "::1"),
            ("https://[::ffff:169.254.169.254]/a", "::ffff:169.254.169.254"),
        ] {
            assert_eq!(e(raw).ip, ip(want), "{raw}");
            assert_eq!(e(raw).host, want, "{raw}");
        }
    }

    #[test]
    fn addresses_builds_may_not_reach_are_refused() {
        let policy = GitHostPolicy::default();
        for raw in [
            "https://127.0.0.1:9418/r.git",
            "https://0x7f.1/r.git",
            "https://[::1]/r.git",
            "https://169.254.169.254/latest/meta-data",
            "https://[::ffff:a9fe:a9fe]/r",
            "https://10.0.0.1/r.git",
            "https://192.168.1.1/r.git",
            "https://[fd00:ec2::254]/r",
            "https://8.8.8.8:22/r.git",
        ] {
            let err = policy.check(&GitUrl::parse(raw).unwrap()).unwrap_err();
            assert!(matches!(err, GitUrlError::Forbidden(_)), "{raw}: {err}");
        }
        let err = policy
            .check(&GitUrl::parse("https://169.254.169.254/r").unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the git URL points at an address the server does not fetch from: 169.254.169.254 is a link-local \
             address (where cloud instance and task metadata services answer)"
        );
        // Names are checked when git connects; public addresses pass.
        for raw in [
            "https://localhost:9/r.git",
            "https://github.com/a/b",
            "https://8.8.8.8/r.git",
        ] {
            assert!(policy.check(&GitUrl::parse(raw).unwrap()).is_ok(), "{raw}");
        }
        let allowed = policy.with_egress(crate::egress::EgressPolicy::parse("127.0.0.1:9418").unwrap());
        assert!(
            allowed
                .check(&GitUrl::parse("https://127.0.0.1:9418/r.git").unwrap())
                .is_ok()
        );
        assert!(
            allowed
                .check(&GitUrl::parse("https://127.0.0.1:9419/r.git").unwrap())
                .is_err()
        );
    }

    #[test]
    fn http_allow_list() {
        let policy = GitHostPolicy::from_list("127.0.0.1, git.internal:8080")
            .with_egress(crate::egress::EgressPolicy::parse("127.0.0.1").unwrap());
        let ok = |u: &str| policy.check(&GitUrl::parse(u).unwrap());
        assert!(ok("http://127.0.0.1:9/r.git").is_ok());
        assert!(ok("http://git.internal:8080/r.git").is_ok());
        assert!(ok("http://git.internal:8081/r.git").is_err());
        assert!(ok("http://github.com/a/b").is_err());
        assert!(ok("https://github.com/a/b").is_ok());
        assert!(
            GitHostPolicy::default()
                .check(&GitUrl::parse("http://127.0.0.1/r").unwrap())
                .is_err()
        );
    }

    #[test]
    fn rel_paths() {
        assert_eq!(RelPath::parse("./dist/").unwrap().as_str(), "dist");
        assert_eq!(RelPath::parse("a//b/./c").unwrap().as_str(), "a/b/c");
        assert!(RelPath::parse(".").unwrap().is_root());
        assert!(RelPath::parse("").unwrap().is_root());
        assert_eq!(RelPath::parse("../.."), Err(RelPathError::ParentDir));
        assert_eq!(RelPath::parse("a/../../b"), Err(RelPathError::ParentDir));
        assert_eq!(RelPath::parse("/etc"), Err(RelPathError::Absolute));
        assert_eq!(RelPath::parse("a\0b"), Err(RelPathError::BadCharacters));
        assert_eq!(RelPath::parse("a\\..\\b"), Err(RelPathError::BadCharacters));
        let base = Path::new("/srv/x");
        assert_eq!(RelPath::parse("a/b").unwrap().under(base), Path::new("/srv/x/a/b"));
        let j = RelPath::parse("app").unwrap().join(&RelPath::parse("dist").unwrap());
        assert_eq!(j.as_str(), "app/dist");
        assert_eq!(RelPath::parse("a/b.JS").unwrap().extension().as_deref(), Some("js"));
        assert_eq!(RelPath::parse("a/.env").unwrap().extension(), None);
    }

    #[test]
    fn branches() {
        for ok in ["main", "feature/x", "release-1.2", "fix_#12"] {
            assert!(BranchName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", "a..b", "a b", "a~1", "x.lock", "a/", "/a", "@", "a@{1}", ".hidden", "a/.b",
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commits() {
        let sha = "0123456789ABCDEF0123456789abcdef01234567";
        assert_eq!(CommitSha::parse(sha).unwrap().as_str(), sha.to_ascii_lowercase());
        assert!(CommitSha::parse("0123456").is_err());
        assert!(CommitSha::parse(&"g".repeat(40)).is_err());
    }

    #[test]
    fn env_keys() {
        assert!(EnvKey::parse("VITE_API_URL").is_ok());
        assert!(EnvKey::parse("_X1").is_ok());
        assert!(matches!(EnvKey::parse("1X"), Err(EnvKeyError::Invalid(_))));
        assert!(matches!(EnvKey::parse("A-B"), Err(EnvKeyError::Invalid(_))));
        assert!(matches!(EnvKey::parse("PATH"), Err(EnvKeyError::Reserved(_))));
        assert!(matches!(
            EnvKey::parse("CLOUDRUNR_JWT_SECRET"),
            Err(EnvKeyError::Reserved(_))
        ));
    }
}
