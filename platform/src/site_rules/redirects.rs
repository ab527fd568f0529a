//! `_redirects`: one rule a line, `from [to] [status][!]`, as on Netlify.

use super::pattern::{Captures, PathPattern, SEGMENT, is_param_name};
use super::{Lines, MAX_REDIRECTS, Parsed, Warning};
use percent_encoding::{AsciiSet, utf8_percent_encode};
use std::fmt;

/// The statuses a rule may have: 200 rewrites, 3xx redirect, 404 and 410 answer with the target's
/// content under that status.
pub const STATUSES: [u16; 8] = [200, 301, 302, 303, 307, 308, 404, 410];

/// One rule of `_redirects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRule {
    pub from: PathPattern,
    pub to: Target,
    /// One of [`STATUSES`].
    pub status: u16,
    /// `!`: applies even when the path names an existing file (otherwise the file wins).
    pub force: bool,
}

/// What a rule does with a request it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer with a redirect (301, 302, 303, 307, 308) to the target.
    Redirect(u16),
    /// Serve the target path of the same deployment with this status (200: a rewrite; 404, 410:
    /// a custom error page).
    Serve(u16),
}

impl RedirectRule {
    pub fn action(&self) -> Action {
        if matches!(self.status, 301 | 302 | 303 | 307 | 308) {
            Action::Redirect(self.status)
        } else {
            Action::Serve(self.status)
        }
    }

    /// Builds a rule from its parts, checked as the parser checks them.
    pub fn new(from: &str, to: &str, status: u16, force: bool) -> Result<Self, String> {
        let from = PathPattern::parse(from)?;
        if !STATUSES.contains(&status) {
            return Err(format!(
                "status {status} is not supported (use 200, 301, 302, 303, 307, 308, 404 or 410)"
            ));
        }
        let to = Target::parse(to, &from)?;
        if to.is_external() && !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Err(format!(
                "serving another site's content (status {status} to an external URL) is not supported: \
                 use a redirect status"
            ));
        }
        Ok(Self {
            from,
            to,
            status,
            force,
        })
    }
}

/// `from to status[!]`, always with the status: parsing it again gives the same rule.
impl fmt::Display for RedirectRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.from, self.to, self.status)?;
        if self.force {
            f.write_str("!")?;
        }
        Ok(())
    }
}

/// Where a rule sends a request: a path of the site (possibly with its own query string) or an
/// absolute `http(s)://` URL, in which `:name` and `:splat` stand for what the pattern captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As written (non-ASCII characters percent-encoded).
    raw: String,
    parts: Vec<Part>,
    external: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// The placeholder at this index of the pattern's placeholders.
    Param(usize, Place),
    Splat(Place),
}

/// Where in the target a value goes, which decides what must be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Path,
    /// After the `?`: `&`, `=`, `+` and `;` in a value would change the parameters.
    Query,
}

const QUERY_VALUE: &AsciiSet = &SEGMENT.add(b'&').add(b'=').add(b'+').add(b';');

impl Place {
    fn encoded(self) -> &'static AsciiSet {
        match self {
            Place::Path => SEGMENT,
            Place::Query => QUERY_VALUE,
        }
    }
}

impl Target {
    /// Parses a target for a rule whose pattern is `from`. `:name` is replaced only when the
    /// pattern has a placeholder of that name (`:splat` when it ends with `*`); any other `:word`
    /// is kept as written.
    pub fn parse(raw: &str, from: &PathPattern) -> Result<Self, String> {
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("the target contains a space or a control character".into());
        }
        if raw.contains('\\') {
            return Err("the target contains a backslash".into());
        }
        let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
        let external = lower.starts_with("https://") || lower.starts_with("http://");
        if external {
            let rest = &raw[raw.find("://").map_or(0, |i| i + 3)..];
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if authority.is_empty() {
                return Err(format!("{raw:?} has no host"));
            }
        } else if raw.starts_with("//") {
            return Err("a target starting with // leaves the site: write the full https:// URL".into());
        } else if !raw.starts_with('/') {
            return Err(format!(
                "{raw:?} is not a target: write a path starting with / or an http(s):// URL"
            ));
        }
        // Non-ASCII characters go out percent-encoded (a Location header is ASCII).
        let raw: String = if raw.is_ascii() {
            raw.to_owned()
        } else {
            raw.chars()
                .map(|c| {
                    if c.is_ascii() {
                        c.to_string()
                    } else {
                        utf8_percent_encode(c.encode_utf8(&mut [0; 4]), SEGMENT).to_string()
                    }
                })
                .collect()
        };
        let params: Vec<&str> = from.params().collect();
        let mut parts = Vec::new();
        let mut text = String::new();
        let query_at = raw.find('?').unwrap_or(raw.len());
        let mut rest = raw.as_str();
        while let Some(at) = rest.find(':') {
            text.push_str(&rest[..at]);
            let place = if raw.len() - rest.len() + at > query_at {
                Place::Query
            } else {
                Place::Path
            };
            let after = &rest[at + 1..];
            let len = after
                .char_indices()
                .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(after.len(), |(i, _)| i);
            let name = &after[..len];
            let part = if !is_param_name(name) {
                None
            } else if name == "splat" && from.has_splat() {
                Some(Part::Splat(place))
            } else {
                params.iter().position(|p| *p == name).map(|i| Part::Param(i, place))
            };
            match part {
                Some(part) => {
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(part);
                    rest = &after[len..];
                }
                None => {
                    text.push(':');
                    rest = after;
                }
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self { raw, parts, external })
    }

    /// An absolute `http(s)://` URL (only redirects may have one).
    pub fn is_external(&self) -> bool {
        self.external
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The target with the captured values in place, percent-encoded (a placeholder's value as
    /// one segment or one query value, the splat's segment by segment).
    pub fn expand(&self, captures: &Captures<'_>) -> String {
        let mut out = String::with_capacity(self.raw.len() + captures.splat.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Param(i, place) => {
                    let value = captures.params.get(*i).copied().unwrap_or_default();
                    out.extend(utf8_percent_encode(value, place.encoded()));
                }
                Part::Splat(place) => {
                    let mut first = true;
                    for segment in captures.splat.split('/').filter(|s| !s.is_empty()) {
                        if !first {
                            out.push('/');
                        }
                        first = false;
                        out.extend(utf8_percent_encode(segment, place.encoded()));
                    }
                }
            }
        }
        // An empty value next to a slash (`/:splat/x` for an empty splat) would make `//x`, which
        // a browser reads as another host: a path of the site starts with exactly one slash.
        if !self.external && out.starts_with("//") {
            let trimmed = out.trim_start_matches('/');
            out = format!("/{trimmed}");
        }
        out
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Parses a `_redirects` file. Each line is a rule, a `#` comment, or blank (a rule may end with
/// a comment: a field starting with `#`); a rule that cannot be used is skipped with a warning
/// naming its line, and the rest still apply.
///
/// A rule is `from [query conditions] to [status][!] [conditions]`: query (`key=value`) and
/// country/language/role/cookie conditions are not supported, nor are domain-level rules
/// (`from` as a URL) or proxying (status 200 to an external URL); such rules are skipped.
pub fn parse_redirects(input: &[u8]) -> Parsed<RedirectRule> {
    let mut out = Parsed::default();
    let lines = match Lines::new(input) {
        Ok(lines) => lines,
        Err(warning) => {
            out.warnings.push(warning);
            return out;
        }
    };
    for (number, line) in lines {
        let line = match line {
            Ok(line) => line,
            Err(message) => {
                out.warnings.push(Warning::at(number, message));
                continue;
            }
        };
        if out.rules.len() >= MAX_REDIRECTS {
            out.warnings.push(Warning::at(
                number,
                format!("more than {MAX_REDIRECTS} rules: this rule and the ones after it are ignored"),
            ));
            break;
        }
        match parse_line(line) {
            Ok(rule) => out.rules.push(rule),
            Err(message) => out.warnings.push(Warning::at(number, message)),
        }
    }
    out
}

fn parse_line(line: &str) -> Result<RedirectRule, String> {
    // A field starting with `#` starts a comment to the end of the line.
    let mut fields = line.split_whitespace().take_while(|f| !f.starts_with('#'));
    let from = fields.next().unwrap_or_default();
    let lower = from.get(..8).unwrap_or(from).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err("domain-level rules (a URL as the path) are not supported".into());
    }
    if !from.starts_with('/') {
        return Err(format!(
            "{from:?} is not a path: a rule starts with the path it matches, as in `/old /new 301`"
        ));
    }
    let rest: Vec<&str> = fields.collect();
    let to_at = rest
        .iter()
        .position(|f| !f.contains('=') || f.starts_with('/') || f.contains("://"));
    let (conditions, to, after) = match to_at {
        Some(i) => (&rest[..i], Some(rest[i]), &rest[i + 1..]),
        None => (&rest[..], None, &[][..]),
    };
    if !conditions.is_empty() {
        return Err("query conditions are not supported".into());
    }
    let Some(to) = to else {
        return Err("the rule has no target: write `from to [status]`".into());
    };
    if status_of(to).is_some() {
        return Err("the rule has no target: write `from to [status]`".into());
    }
    let (status, force, after) = match after.split_first() {
        Some((field, more)) => match status_of(field) {
            Some((status, force)) => (status?, force, more),
            None => (301, false, after),
        },
        None => (301, false, after),
    };
    if let Some(field) = after.first() {
        return Err(if field.contains('=') {
            "conditions (country, language, role, cookie) are not supported".into()
        } else {
            format!("unexpected {field:?} after the target: expected a status such as 301 or 200!")
        });
    }
    RedirectRule::new(from, to, status, force)
}

/// `Some` when `field` looks like a status (`301`, `200!`): the parsed status (or why it cannot
/// be used) and whether it is forced.
fn status_of(field: &str) -> Option<(Result<u16, String>, bool)> {
    let (digits, force) = match field.strip_suffix('!') {
        Some(d) => (d, true),
        None => (field, false),
    };
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let status: u16 = digits.parse().ok()?;
    let status = if STATUSES.contains(&status) {
        Ok(status)
    } else {
        Err(format!(
            "status {status} is not supported (use 200, 301, 302, 303, 307, 308, 404 or 410)"
        ))
    };
    Some((status, force))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Parsed<RedirectRule> {
        parse_redirects(text.as_bytes())
    }

    fn expand(rule: &RedirectRule, path: &str) -> Option<String> {
        rule.from.captures(path).map(|c| rule.to.expand(&c))
    }

    /// The golden file: every form, and what each line becomes.
    #[test]
    fn golden() {
        let parsed = rules(concat!(
            "# Netlify-style rules\n",
            "/home              /\n",
            "/blog/*            /news/:splat        301\n",
            "/posts/:year/:slug /blog/:year-:slug.html 302\n",
            "/app/*             /app/index.html     200\n",
            "/shop              https://shop.example.com/?ref=site 307!\n",
            "/en/*              /en/404.html        404\n",
            "\n",
            "  /indented   /ok  \r\n",
            "/gone /gone.html 410   # a comment after a rule\n",
            "/broken\n",
            "/a /b 999\n",
            "/store id=:id /blog/:id 301\n",
            "/fr /fr-home 302 Country=fr\n",
            "/proxy/* https://api.example.com/:splat 200\n",
            "https://old.example.com/* https://new.example.com/:splat 301!\n",
            "/c /d 301 extra\n",
            "/admin/* 200! Role=admin\n",
            "/x //evil.example.com\n",
            "/a* /b\n",
        ));
        let shown: Vec<String> = parsed.rules.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "/home / 301",
                "/blog/* /news/:splat 301",
                "/posts/:year/:slug /blog/:year-:slug.html 302",
                "/app/* /app/index.html 200",
                "/shop https://shop.example.com/?ref=site 307!",
                "/en/* /en/404.html 404",
                "/indented /ok 301",
                "/gone /gone.html 410",
            ]
        );
        let warnings: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 10, "{warnings:#?}");
        let expect = [
            (11, "no target"),
            (12, "status 999 is not supported"),
            (13, "query conditions are not supported"),
            (14, "conditions (country, language, role, cookie) are not supported"),
            (15, "status 200 to an external URL"),
            (16, "domain-level rules"),
            (17, "unexpected \"extra\""),
            (18, "no target"),
            (19, "leaves the site"),
            (20, "whole last segment"),
        ];
        for (w, (line, text)) in parsed.warnings.iter().zip(expect) {
            assert_eq!(w.line, Some(line), "{w}");
            assert!(w.message.contains(text), "line {line}: {w}");
        }

        let r = &parsed.rules;
        assert_eq!(r[0].action(), Action::Redirect(301));
        assert_eq!(expand(&r[1], "blog/2024/a b"), Some("/news/2024/a%20b".into()));
        assert_eq!(expand(&r[1], "blog"), Some("/news/".into()));
        assert_eq!(expand(&r[2], "posts/2024/hello"), Some("/blog/2024-hello.html".into()));
        assert_eq!(expand(&r[2], "posts/2024"), None);
        assert_eq!(r[3].action(), Action::Serve(200));
        assert!(r[4].to.is_external() && r[4].force);
        assert_eq!(r[5].action(), Action::Serve(404));
        assert_eq!(r[7].action(), Action::Serve(410));
    }

    #[test]
    fn targets() {
        let rule = |from: &str, to: &str| RedirectRule::new(from, to, 301, false);
        // Unknown names and ports stay as written.
        let r = rule("/a/:id", "https://example.com:8443/:id/:other?x=:id").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(expand(&r, "a/x/y"), None, "a placeholder matches one segment");
        assert_eq!(
            expand(&r, "a/é?#"),
            Some("https://example.com:8443/%C3%A9%3F%23/:other?x=%C3%A9%3F%23".into())
        );
        // A value in the query cannot add parameters.
        let r = rule("/p/:id", "/post/:id?id=:id&x=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            expand(&r, "p/a&b=c+d"),
            Some("/post/a&b=c+d?id=a%26b%3Dc%2Bd&x=1".into())
        );
        // :splat without a splat is text.
        let r = rule("/a", "/b/:splat").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(expand(&r, "a"), Some("/b/:splat".into()));
        // Non-ASCII targets are encoded.
        let r = rule("/a", "/café").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.to.as_str(), "/caf%C3%A9");
        for (to, why) in [
            ("b", "not a target"),
            ("//x.example", "leaves the site"),
            ("https:///x", "no host"),
            ("/a\\b", "backslash"),
            ("mailto:x@example.com", "not a target"),
        ] {
            let err = rule("/a", to).err().unwrap_or_else(|| panic!("{to} accepted"));
            assert!(err.contains(why), "{to}: {err}");
        }
    }

    #[test]
    fn limits() {
        let many: String = (0..MAX_REDIRECTS + 5).map(|i| format!("/r{i} /t{i}\n")).collect();
        let parsed = rules(&many);
        assert_eq!(parsed.rules.len(), MAX_REDIRECTS);
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(parsed.warnings[0].line, Some(MAX_REDIRECTS + 1));
        assert!(parsed.warnings[0].message.contains("more than 2000 rules"));

        let long = format!("/a /{}\n/b /c\n", "x".repeat(5000));
        let parsed = rules(&long);
        assert_eq!(parsed.rules.len(), 1);
        assert_eq!(parsed.warnings[0].line, Some(1));
        assert!(parsed.warnings[0].message.contains("longer than 4096 bytes"));

        let huge = "# padding\n".repeat(7000);
        let parsed = rules(&huge);
        assert!(parsed.rules.is_empty());
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(parsed.warnings[0].line, None);
        assert!(parsed.warnings[0].message.contains("64 KiB"));

        let parsed = parse_redirects(b"\xef\xbb\xbf/a /b\n/\xff /c\n/d /e");
        assert_eq!(
            parsed.rules.len(),
            2,
            "a BOM is skipped; a bad line does not stop the file"
        );
        assert_eq!(parsed.warnings[0].line, Some(2));
        assert!(parsed.warnings[0].message.contains("UTF-8"));
    }
}
