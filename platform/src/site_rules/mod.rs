//! The rules a site ships in its output: Netlify-compatible `_redirects` and `_headers`.
//!
//! The builder parses both files at upload time ([`parse_redirects`], [`parse_headers`]); a line
//! that cannot be used becomes a [`Warning`] with its line number, reported in the build log, and
//! the rest of the file still applies. The result, [`SiteRules`], is stored in the deployment's
//! manifest, and the router applies it to every request for that deployment.
//!
//! In a manifest the rules are stored in their canonical text form and compiled when the manifest
//! is read, so matching a request never parses anything. A rule that a later version of the
//! platform no longer accepts is dropped (and logged) while loading, rather than making the whole
//! deployment unreadable.
//!
//! Request paths are matched in the normalized form of [`path`], the router's own: a rule sees
//! what the router serves, never a spelling of it.
//!
//! Limits: each file at most [`MAX_FILE_BYTES`] (a larger file is ignored whole), lines at most
//! [`MAX_LINE_BYTES`], at most [`MAX_REDIRECTS`] rules, [`MAX_HEADER_BLOCKS`] paths in
//! `_headers` and [`MAX_HEADERS_PER_BLOCK`] headers under one path.

mod headers;
pub mod path;
mod pattern;
mod redirects;

pub use headers::{HeaderBlock, check_header, parse_headers};
pub use pattern::{Captures, PathPattern, SEGMENT};
pub use redirects::{Action, RedirectRule, STATUSES, Target, parse_redirects};

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The name of the redirects file, at the root of the output.
pub const REDIRECTS_FILE: &str = "_redirects";
/// The name of the headers file, at the root of the output.
pub const HEADERS_FILE: &str = "_headers";

/// A larger file is ignored whole.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// A longer line is skipped.
pub const MAX_LINE_BYTES: usize = 4096;
/// Rules of `_redirects` after this many are ignored.
pub const MAX_REDIRECTS: usize = 2000;
/// Paths of `_headers` after this many are ignored.
pub const MAX_HEADER_BLOCKS: usize = 2000;
/// Headers under one path after this many (distinct names) are ignored.
pub const MAX_HEADERS_PER_BLOCK: usize = 64;

/// A deployment's redirect rules and header blocks, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawSiteRules", into = "RawSiteRules")]
pub struct SiteRules {
    pub redirects: Vec<RedirectRule>,
    pub headers: Vec<HeaderBlock>,
}

impl SiteRules {
    pub fn is_empty(&self) -> bool {
        self.redirects.is_empty() && self.headers.is_empty()
    }

    /// The rule that applies to `path` (a normalized request path: decoded segments joined with
    /// `/`, `""` for the root), with what it captured: the first in file order whose pattern
    /// matches, among the forced ones only when the path names an existing file (`file_exists`):
    /// a file shadows the rules that are not forced.
    pub fn redirect_for<'r, 'p>(
        &'r self,
        path: &'p str,
        file_exists: bool,
    ) -> Option<(&'r RedirectRule, Captures<'p>)> {
        self.redirects
            .iter()
            .find(|r| (r.force || !file_exists) && r.from.matches(path))
            .and_then(|r| r.from.captures(path).map(|c| (r, c)))
    }

    /// The headers of every block whose pattern matches one of `paths`, in file order; a name set
    /// by several blocks gets their values joined with `, `. A block applies once even when it
    /// matches several of the paths.
    pub fn headers_for(&self, paths: &[&str]) -> Vec<(&str, Cow<'_, str>)> {
        let mut out: Vec<(&str, Cow<'_, str>)> = Vec::new();
        for block in &self.headers {
            if !paths.iter().any(|p| block.pattern.matches(p)) {
                continue;
            }
            for (name, value) in &block.headers {
                match out.iter_mut().find(|(n, _)| n == name) {
                    Some((_, joined)) => {
                        let joined = joined.to_mut();
                        joined.push_str(", ");
                        joined.push_str(value);
                    }
                    None => out.push((name, Cow::Borrowed(value))),
                }
            }
        }
        out
    }
}

/// A line of `_redirects` or `_headers` that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based; `None` when the warning is about the whole file.
    pub line: Option<usize>,
    pub message: String,
}

impl Warning {
    fn at(line: usize, message: String) -> Self {
        Self {
            line: Some(line),
            message,
        }
    }

    /// As a build log line: `_redirects:12: message`, or `_redirects: message` for the file.
    pub fn for_file(&self, file: &str) -> String {
        match self.line {
            Some(line) => format!("{file}:{line}: {}", self.message),
            None => format!("{file}: {}", self.message),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What a parser found: the usable rules, and a warning for every line it skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub rules: Vec<T>,
    pub warnings: Vec<Warning>,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// The lines of a rules file that say something, with their 1-based numbers: `\n` or `\r\n`
/// separated, a leading UTF-8 byte order mark skipped, each trimmed; blank lines and `#` comment
/// lines left out; over-long and non-UTF-8 lines given as the reason to skip them.
struct Lines<'a> {
    rest: Option<&'a [u8]>,
    number: usize,
}

impl<'a> Lines<'a> {
    /// Refuses a file over [`MAX_FILE_BYTES`].
    fn new(input: &'a [u8]) -> Result<Self, Warning> {
        if input.len() > MAX_FILE_BYTES {
            return Err(Warning {
                line: None,
                message: "the file is larger than 64 KiB: it is ignored".to_owned(),
            });
        }
        let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
        Ok(Self {
            rest: Some(input),
            number: 0,
        })
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, Result<&'a str, String>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest.filter(|r| !r.is_empty())?;
            let (line, after) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            self.rest = after;
            self.number += 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE_BYTES {
                let message = format!("the line is longer than {MAX_LINE_BYTES} bytes: it is ignored");
                return Some((self.number, Err(message)));
            }
            let Ok(line) = std::str::from_utf8(line) else {
                return Some((self.number, Err("the line is not UTF-8: it is ignored".to_owned())));
            };
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                return Some((self.number, Ok(line)));
            }
        }
    }
}

/// The stored form of [`SiteRules`]: canonical text, compiled on load.
#[derive(Serialize, Deserialize)]
struct RawSiteRules {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    redirects: Vec<RawRedirect>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<RawHeaderBlock>,
}

#[derive(Serialize, Deserialize)]
struct RawRedirect {
    from: String,
    to: String,
    status: u16,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    force: bool,
}

#[derive(Serialize, Deserialize)]
struct RawHeaderBlock {
    path: String,
    headers: Vec<(String, String)>,
}

impl From<SiteRules> for RawSiteRules {
    fn from(rules: SiteRules) -> Self {
        Self {
            redirects: rules
                .redirects
                .into_iter()
                .map(|r| RawRedirect {
                    from: r.from.to_string(),
                    to: r.to.to_string(),
                    status: r.status,
                    force: r.force,
                })
                .collect(),
            headers: rules
                .headers
                .into_iter()
                .map(|b| RawHeaderBlock {
                    path: b.pattern.to_string(),
                    headers: b.headers,
                })
                .collect(),
        }
    }
}

impl From<RawSiteRules> for SiteRules {
    fn from(raw: RawSiteRules) -> Self {
        let redirects = raw
            .redirects
            .into_iter()
            .filter_map(|r| match RedirectRule::new(&r.from, &r.to, r.status, r.force) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    tracing::warn!(from = %r.from, to = %r.to, "dropping a stored redirect rule: {e}");
                    None
                }
            })
            .collect();
        let headers = raw
            .headers
            .into_iter()
            .filter_map(|b| match HeaderBlock::new(&b.path, &b.headers) {
                Ok(block) => Some(block),
                Err(e) => {
                    tracing::warn!(path = %b.path, "dropping a stored header block: {e}");
                    None
                }
            })
            .collect();
        Self { redirects, headers }
    }
}

// Public for the fuzz targets in `fuzz/`, which run these checks on arbitrary input; not API.
#[doc(hidden)]
pub mod invariants;
#[cfg(test)]
mod tests;
