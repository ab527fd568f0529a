//! Turning a request's raw path into a normalized path that can only ever be a key of a manifest.
//!
//! The result is never joined onto a filesystem path: files are found by looking this string up in
//! the deployment's manifest, so even a path that slipped through could not read outside it. The
//! checks here exist so that traversal attempts get a clear 400 instead of an accidental match.

use percent_encoding::percent_decode_str;

/// A request path after percent-decoding and normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestPath {
    /// Segments joined with `/`, no leading or trailing slash; `""` is the site root.
    pub(crate) path: String,
    /// The request named a directory (trailing slash, or the root): never served as a file itself.
    pub(crate) dir: bool,
}

/// Why a path is refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadPath {
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
    pub(crate) fn parse(raw: &str) -> Result<Self, BadPath> {
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

    /// The last segment, `None` at the root.
    pub(crate) fn file_name(&self) -> Option<&str> {
        self.path.rsplit('/').next().filter(|s| !s.is_empty())
    }
}

/// The extension of a file name, as `RelPath::extension` sees it: `.env` has none, `a.` has none.
pub(crate) fn extension(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then_some(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

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
