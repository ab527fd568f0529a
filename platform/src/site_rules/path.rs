//! Turning a request's raw path into a normalized path that can only ever be a key of a manifest:
//! the form of path that [`SiteRules::redirect_for`](super::SiteRules::redirect_for) and
//! [`SiteRules::headers_for`](super::SiteRules::headers_for) match against.
//!
//! The result is never joined onto a filesystem path: files are found by looking this string up in
//! the deployment's manifest, so even a path that slipped through could not read outside it. The
//! checks here exist so that traversal attempts get a clear 400 instead of an accidental match.

use percent_encoding::{percent_decode_str, utf8_percent_encode};
// What is percent-encoded when a decoded segment goes back into a URL (a `Location` header): the
// same set as a `_redirects` placeholder's value.
use super::SEGMENT;

/// A request path after percent-decoding and normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// Segments joined with `/`, no leading or trailing slash; `""` is the site root.
    pub path: String,
    /// The request named a directory (trailing slash, or the root): never served as a file itself.
    pub dir: bool,
}

/// Why a path is refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("the path is not UTF-8 once decoded")]
    NotUtf8,
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains a '..' segment")]
    ParentDir,
}

impl RequestPath {
    /// Decodes `raw` (the URI's path, query excluded) and drops empty and `.` segments.
    ///
    /// Decoding happens before splitting, so `%2f` separates segments and `%2e%2e` is `..`:
    /// a segment is judged by what it means, not by how it was spelled.
    pub fn parse(raw: &str) -> Result<Self, BadPath> {
        match Self::parse_plain(raw) {
            Some(plain) => Ok(plain),
            None => Self::parse_full(raw),
        }
    }

    fn parse_full(raw: &str) -> Result<Self, BadPath> {
        let bytes: Vec<u8> = percent_decode_str(raw).collect();
        let decoded = String::from_utf8(bytes).map_err(|_| BadPath::NotUtf8)?;
        if decoded.contains('\0') {
            return Err(BadPath::Nul);
        }
        if decoded.contains('\\') {
            return Err(BadPath::Backslash);
        }
        let mut segments = Vec::new();
        for segment in decoded.split('/') {
            match segment {
                "" | "." => {}
                ".." => return Err(BadPath::ParentDir),
                s => segments.push(s),
            }
        }
        let path = segments.join("/");
        let dir = decoded.ends_with('/') || path.is_empty();
        Ok(Self { path, dir })
    }

    /// The common case in one pass and one allocation: a path with nothing to decode or drop (no
    /// `%`, NUL or backslash; no empty, `.` or `..` segment but a final slash). `None` sends
    /// anything else through the full parse, which gives the same answer for these.
    fn parse_plain(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix('/')?;
        let (body, dir) = match body.strip_suffix('/') {
            Some(body) => (body, true),
            None => (body, body.is_empty()),
        };
        if body.bytes().any(|b| matches!(b, b'%' | b'\\' | 0)) {
            return None;
        }
        if !body.is_empty() && body.split('/').any(|s| matches!(s, "" | "." | "..")) {
            return None;
        }
        Some(Self {
            path: body.to_owned(),
            dir,
        })
    }

    /// The last segment, `None` at the root.
    pub fn file_name(&self) -> Option<&str> {
        self.path.rsplit('/').next().filter(|s| !s.is_empty())
    }
}

/// `/` followed by `path`'s segments percent-encoded, and a trailing `/` when `dir` (the root is
/// `/`): a URL path that parses back to the same [`RequestPath`]. Never starts with `//`:
/// segments of a normalized path are not empty.
pub fn url_path(path: &str, dir: bool) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.extend(utf8_percent_encode(segment, SEGMENT));
    }
    if dir || out.is_empty() {
        out.push('/');
    }
    out
}

/// The extension of a file name, as `RelPath::extension` sees it: `.env` has none, `a.` has none.
pub fn extension(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then_some(ext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site_rules::invariants;

    fn ok(raw: &str) -> (String, bool) {
        let p = RequestPath::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        (p.path, p.dir)
    }

    #[test]
    fn normalizes() {
        assert_eq!(ok("/"), ("".into(), true));
        assert_eq!(ok(""), ("".into(), true));
        assert_eq!(ok("/about"), ("about".into(), false));
        assert_eq!(ok("/about/"), ("about".into(), true));
        assert_eq!(ok("//a/./b//c"), ("a/b/c".into(), false));
        assert_eq!(ok("/a/b/."), ("a/b".into(), false));
        assert_eq!(ok("/caf%C3%A9/x%20y.txt"), ("café/x y.txt".into(), false));
        assert_eq!(ok("/a%2fb"), ("a/b".into(), false));
        assert_eq!(ok("/.well-known/x"), (".well-known/x".into(), false));
        assert_eq!(ok("/..."), ("...".into(), false));
        assert_eq!(ok("/a..b"), ("a..b".into(), false));
        // Not a valid escape: kept literally, as percent-encoding does.
        assert_eq!(ok("/100%zz"), ("100%zz".into(), false));
    }

    #[test]
    fn refuses_traversal_and_odd_bytes() {
        let bad = |raw: &str| RequestPath::parse(raw).err();
        assert_eq!(bad("/../etc/passwd"), Some(BadPath::ParentDir));
        assert_eq!(bad("/a/.."), Some(BadPath::ParentDir));
        assert_eq!(bad("/%2e%2e/x"), Some(BadPath::ParentDir));
        assert_eq!(bad("/%2E%2e%2fetc"), Some(BadPath::ParentDir));
        assert_eq!(bad("/.%2E/x"), Some(BadPath::ParentDir));
        assert_eq!(bad("/a%00b"), Some(BadPath::Nul));
        assert_eq!(bad("/a%5cb"), Some(BadPath::Backslash));
        assert_eq!(bad("/a%5C..%5Cb"), Some(BadPath::Backslash));
        assert_eq!(bad("/%ff"), Some(BadPath::NotUtf8));
        assert_eq!(bad("/%c3"), Some(BadPath::NotUtf8));
    }

    #[test]
    fn back_to_urls() {
        let url = |raw: &str| {
            RequestPath::parse(raw)
                .map(|p| url_path(&p.path, p.dir))
                .unwrap_or_else(|e| panic!("{raw}: {e}"))
        };
        assert_eq!(url("/"), "/");
        assert_eq!(url("//"), "/");
        assert_eq!(url("/about"), "/about");
        assert_eq!(url("/docs/"), "/docs/");
        assert_eq!(url("//a/./b//c/"), "/a/b/c/");
        assert_eq!(url("/caf%C3%A9/x%20y?.txt"), "/caf%C3%A9/x%20y%3F.txt");
        assert_eq!(url("/100%zz"), "/100%25zz");
        assert_eq!(url("/%2541"), "/%2541");
        assert_eq!(url_path("a/b", true), "/a/b/");
        assert_eq!(url_path("", false), "/");
    }

    proptest::proptest! {
        #[test]
        fn normalized_paths_hold_their_invariants(raw in "(/|%2[eEfF]|%5[cC]|%00|%25|%[0-9a-fA-F]{2}|\\.|[a-z]|é|\\\\|\\?){0,24}") {
            invariants::request_path(&raw);
        }

        #[test]
        fn any_text_is_parsed_or_refused(raw in ".{0,64}") {
            invariants::request_path(&raw);
        }

        #[test]
        fn the_quick_parse_agrees_with_the_full_one(raw in "(/|\\.|\\.\\.|%2e|[a-z]|\\\\){0,16}") {
            if let Some(plain) = RequestPath::parse_plain(&raw) {
                proptest::prop_assert_eq!(Ok(plain), RequestPath::parse_full(&raw));
            }
        }
    }

    #[test]
    fn file_names_and_extensions() {
        let p = |raw: &str| RequestPath::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(p("/").file_name(), None);
        assert_eq!(p("/a/b.js").file_name(), Some("b.js"));
        assert_eq!(p("/a/b/").file_name(), Some("b"));
        assert_eq!(extension("b.JS"), Some("JS"));
        assert_eq!(extension("app.min.js"), Some("js"));
        assert_eq!(extension(".env"), None);
        assert_eq!(extension("dashboard"), None);
        assert_eq!(extension("trailing."), None);
    }
}
