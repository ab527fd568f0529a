//! Path patterns shared by `_redirects` and `_headers`: `/literal/:placeholder/*`.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::fmt;

/// Characters encoded when a decoded value goes back into a URL path segment: everything that
/// would end, split or change the meaning of a segment, and everything outside visible ASCII.
pub const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// How a literal segment of a pattern is written back: [`SEGMENT`] plus the pattern syntax
/// (`:` starts a placeholder, `*` is the splat), so that printing and parsing again gives the
/// same pattern.
const LITERAL: &AsciiSet = &SEGMENT.add(b':').add(b'*');

/// A pattern matched against a request's normalized path.
///
/// Segments are compared one by one, case-sensitively, after percent-decoding (a literal segment
/// is decoded when the pattern is parsed; the request path was decoded by the router). A trailing
/// slash never matters: `/blog` and `/blog/` are the same pattern and match the same requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    /// Ends with `*`: matches any rest of the path, including nothing.
    splat: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches exactly this (decoded) segment.
    Literal(String),
    /// `:name`: matches any one segment.
    Param(String),
}

/// What a match captured: placeholder values in the order the pattern names them, and the rest
/// of the path matched by `*`. Values are decoded, as in the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captures<'p> {
    pub params: Vec<&'p str>,
    pub splat: &'p str,
}

/// Whether `name` can be a placeholder's name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl PathPattern {
    /// Parses a pattern as written in `_redirects` or `_headers`: it starts with `/`; `:name`
    /// as a whole segment is a placeholder; `*` as the whole last segment is the splat; anything
    /// else is literal and percent-decoded. Empty and `.` segments are dropped, as the router does
    /// with request paths. The error says what is wrong.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !raw.starts_with('/') {
            return Err(format!("{raw:?} is not a path: a path starts with /"));
        }
        if raw.contains('?') {
            return Err("a path cannot match a query string (query conditions are not supported)".into());
        }
        if raw.contains('#') {
            return Err("a path cannot contain # (write it as %23)".into());
        }
        let mut segments = Vec::new();
        let mut splat = false;
        for part in raw.split('/').filter(|p| !p.is_empty()) {
            if splat {
                return Err("* is only allowed as the last segment, as in /blog/*".into());
            }
            if part == "*" {
                splat = true;
                continue;
            }
            if let Some(name) = part.strip_prefix(':') {
                if !is_param_name(name) {
                    return Err(format!(
                        "{part:?} is not a valid placeholder: a placeholder is : followed by letters, digits or _"
                    ));
                }
                if name == "splat" {
                    return Err(":splat is reserved for what * matches".into());
                }
                if segments.iter().any(|s| matches!(s, Segment::Param(p) if p == name)) {
                    return Err(format!("the placeholder :{name} appears twice"));
                }
                segments.push(Segment::Param(name.to_owned()));
                continue;
            }
            if part.contains('*') {
                return Err("* only matches as a whole last segment, as in /blog/*".into());
            }
            let decoded = percent_decode_str(part)
                .decode_utf8()
                .map_err(|_| format!("{part:?} is not UTF-8 once percent-decoded"))?;
            if decoded.contains('/') {
                return Err(format!("{part:?} contains an encoded /, which never matches a request"));
            }
            if decoded.contains('\0') || decoded.contains('\\') {
                return Err(format!(
                    "{part:?} contains a NUL or a backslash, which never match a request"
                ));
            }
            match decoded.as_ref() {
                "." => {}
                ".." => return Err("a path cannot contain a .. segment".into()),
                _ => segments.push(Segment::Literal(decoded.into_owned())),
            }
        }
        Ok(Self { segments, splat })
    }

    /// The placeholder names, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Whether the pattern ends with `*`.
    pub fn has_splat(&self) -> bool {
        self.splat
    }

    /// Whether `path` matches. `path` is a normalized request path: decoded segments joined
    /// with `/`, no leading or trailing slash, no empty segment; `""` is the root.
    pub fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        for segment in &self.segments {
            match (segment, parts.next()) {
                (_, None) => return false,
                (Segment::Literal(literal), Some(part)) if literal != part => return false,
                _ => {}
            }
        }
        self.splat || parts.next().is_none()
    }

    /// What the pattern captures from `path`, or `None` if it does not match.
    pub fn captures<'p>(&self, path: &'p str) -> Option<Captures<'p>> {
        let mut params = Vec::new();
        let mut rest = path.trim_start_matches('/');
        for segment in &self.segments {
            if rest.is_empty() {
                return None;
            }
            let (part, after) = rest.split_once('/').unwrap_or((rest, ""));
            match segment {
                Segment::Literal(literal) if literal != part => return None,
                Segment::Literal(_) => {}
                Segment::Param(_) => params.push(part),
            }
            rest = after.trim_start_matches('/');
        }
        let rest = rest.trim_end_matches('/');
        if !self.splat && !rest.is_empty() {
            return None;
        }
        Some(Captures { params, splat: rest })
    }
}

/// The canonical spelling: parsing it again gives the same pattern.
impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() && !self.splat {
            return f.write_str("/");
        }
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => write!(f, "/{}", utf8_percent_encode(literal, LITERAL))?,
                Segment::Param(name) => write!(f, "/:{name}")?,
            }
        }
        if self.splat {
            f.write_str("/*")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> PathPattern {
        PathPattern::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn literals_placeholders_and_splats() {
        let blog = p("/blog");
        assert!(blog.matches("blog"));
        assert!(!blog.matches("blog/x"));
        assert!(!blog.matches("Blog"), "case-sensitive");
        assert!(!blog.matches(""));
        assert_eq!(p("/blog/"), blog, "a trailing slash does not matter");
        assert_eq!(p("//blog/./"), blog);

        let root = p("/");
        assert!(root.matches(""));
        assert!(!root.matches("a"));

        let all = p("/*");
        assert!(all.matches(""));
        assert!(all.matches("a/b/c"));
        assert_eq!(all.captures("a/b/c").map(|c| c.splat), Some("a/b/c"));

        let news = p("/news/:year/:slug");
        assert!(news.matches("news/2024/hello"));
        assert!(!news.matches("news/2024"));
        assert!(!news.matches("news/2024/hello/more"));
        assert_eq!(
            news.captures("news/2024/hello"),
            Some(Captures {
                params: vec!["2024", "hello"],
                splat: ""
            })
        );
        assert_eq!(news.params().collect::<Vec<_>>(), ["year", "slug"]);

        let docs = p("/docs/*");
        assert!(docs.matches("docs"), "the splat may match nothing");
        assert!(docs.matches("docs/a/b"));
        assert!(!docs.matches("documents"));
        assert_eq!(docs.captures("docs/a/b").map(|c| c.splat), Some("a/b"));
        assert_eq!(docs.captures("docs").map(|c| c.splat), Some(""));
        assert_eq!(docs.captures("other"), None);
    }

    #[test]
    fn literals_are_decoded() {
        let cafe = p("/authors/c%C3%A9line");
        assert!(cafe.matches("authors/céline"));
        assert_eq!(cafe.to_string(), "/authors/c%C3%A9line");
        let space = p("/a%20b/x:y");
        assert!(space.matches("a b/x:y"));
        assert_eq!(space.to_string(), "/a%20b/x%3Ay");
        assert_eq!(p(&space.to_string()), space);
        let colon = p("/%3Aname");
        assert!(colon.matches(":name"));
        assert_eq!(colon.params().count(), 0);
        assert_eq!(p(&colon.to_string()), colon);
    }

    #[test]
    fn refusals() {
        for (raw, why) in [
            ("blog", "starts with /"),
            ("https://example.com/a", "starts with /"),
            ("/a?x=1", "query"),
            ("/a#b", "#"),
            ("/*/a", "last segment"),
            ("/a*", "whole last segment"),
            ("/:1x", "not a valid placeholder"),
            ("/:", "not a valid placeholder"),
            ("/:splat", "reserved"),
            ("/:a/:a", "twice"),
            ("/a%2fb", "encoded /"),
            ("/%ff", "UTF-8"),
            ("/a/../b", ".."),
            ("/a/%2e%2e", ".."),
            ("/a%00", "NUL"),
            ("/a%5c", "backslash"),
        ] {
            let err = PathPattern::parse(raw).err().unwrap_or_else(|| panic!("{raw} parsed"));
            assert!(err.contains(why), "{raw}: {err}");
        }
    }
}
