//! `_headers`: blocks of response headers for path patterns, as on Netlify.

use super::pattern::PathPattern;
use super::{Lines, MAX_HEADER_BLOCKS, MAX_HEADERS_PER_BLOCK, Parsed, Warning};
use std::fmt;

/// Headers for the requests a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock {
    pub pattern: PathPattern,
    /// Lowercase names, each once (values of a name repeated in the block are joined with `, `),
    /// in the order they first appear.
    pub headers: Vec<(String, String)>,
}

impl HeaderBlock {
    /// A block from its parts, checked as the parser checks them; a header that cannot be used is
    /// an error.
    pub fn new(pattern: &str, headers: &[(String, String)]) -> Result<Self, String> {
        let pattern = PathPattern::parse(pattern)?;
        let mut block = Self {
            pattern,
            headers: Vec::new(),
        };
        for (name, value) in headers {
            let name = check_header(name, value)?;
            block.add(name, value.trim());
        }
        if block.headers.is_empty() {
            return Err("the block has no headers".into());
        }
        if block.headers.len() > MAX_HEADERS_PER_BLOCK {
            return Err(format!("more than {MAX_HEADERS_PER_BLOCK} headers for one path"));
        }
        Ok(block)
    }

    fn add(&mut self, name: String, value: &str) {
        match self.headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            None => self.headers.push((name, value.to_owned())),
        }
    }
}

/// The path line, then one indented `name: value` line per header.
impl fmt::Display for HeaderBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.pattern)?;
        for (name, value) in &self.headers {
            writeln!(f, "  {name}: {value}")?;
        }
        Ok(())
    }
}

/// Headers the platform owns: they describe how the body is framed or encoded, tie a response
/// to a connection, or would let one site act on others (`Set-Cookie` on the shared domain).
const REFUSED: &[(&str, &str)] = &[
    ("accept-ranges", "the platform answers range requests itself"),
    ("connection", "it belongs to the connection, not the response"),
    ("content-encoding", "the platform chooses the encoding"),
    ("content-length", "the platform sets the length of what it sends"),
    ("content-range", "the platform answers range requests itself"),
    ("date", "the server sets it"),
    ("etag", "the platform's validators make conditional requests work"),
    ("host", "it is a request header"),
    ("keep-alive", "it belongs to the connection, not the response"),
    (
        "last-modified",
        "the platform's validators make conditional requests work",
    ),
    ("location", "redirects belong in _redirects"),
    ("proxy-connection", "it belongs to the connection, not the response"),
    (
        "set-cookie",
        "sites on the platform's domain may not set cookies through it",
    ),
    ("te", "it belongs to the connection, not the response"),
    ("trailer", "the platform sends no trailers"),
    ("transfer-encoding", "the platform frames the body"),
    ("upgrade", "it belongs to the connection, not the response"),
];

/// Whether a `name: value` header may be set by a site: its lowercase name, or why not (an
/// invalid name or value, or a header the platform owns).
pub fn check_header(name: &str, value: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("the header has no name".into());
    }
    if !name.bytes().all(is_token_byte) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == lower) {
        return Err(format!("{name} cannot be set: {why}"));
    }
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{name} has no value"));
    }
    if !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return Err(format!(
            "the value of {name} has a control or non-ASCII character (percent-encode it)"
        ));
    }
    Ok(lower)
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a `_headers` file: a line starting with `/` opens a block for that path pattern, and
/// the `Name: value` lines after it (indented by convention) are its headers; `#` starts a
/// comment line. A line that cannot be used is skipped with a warning naming it.
pub fn parse_headers(input: &[u8]) -> Parsed<HeaderBlock> {
    let mut out = Parsed::default();
    let lines = match Lines::new(input) {
        Ok(lines) => lines,
        Err(warning) => {
            out.warnings.push(warning);
            return out;
        }
    };
    // The block being read: its first line and its contents, or `None` after a path that could
    // not be used (its header lines are skipped quietly: the path was reported).
    let mut current: Option<(usize, Option<HeaderBlock>)> = None;
    let finish = |current: Option<(usize, Option<HeaderBlock>)>, out: &mut Parsed<HeaderBlock>| {
        if let Some((line, Some(block))) = current {
            if block.headers.is_empty() {
                out.warnings
                    .push(Warning::at(line, "no headers follow this path".to_owned()));
            } else {
                out.rules.push(block);
            }
        }
    };
    for (number, line) in lines {
        let text = match line {
            Ok(text) => text,
            Err(message) => {
                out.warnings.push(Warning::at(number, message));
                continue;
            }
        };
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        let is_url = lower.starts_with("http://") || lower.starts_with("https://");
        if text.starts_with('/') || is_url {
            finish(current.take(), &mut out);
            if out.rules.len() >= MAX_HEADER_BLOCKS {
                out.warnings.push(Warning::at(
                    number,
                    format!("more than {MAX_HEADER_BLOCKS} paths: this one and the ones after it are ignored"),
                ));
                break;
            }
            let block = if is_url {
                Err("a URL as the path (domain-level headers) is not supported".to_owned())
            } else if text.split_whitespace().nth(1).is_some() {
                Err("a path line has one path and nothing else".to_owned())
            } else {
                PathPattern::parse(text)
            };
            match block {
                Ok(pattern) => {
                    current = Some((
                        number,
                        Some(HeaderBlock {
                            pattern,
                            headers: Vec::new(),
                        }),
                    ))
                }
                Err(message) => {
                    out.warnings.push(Warning::at(number, message));
                    current = Some((number, None));
                }
            }
            continue;
        }
        let Some((_, block)) = current.as_mut() else {
            out.warnings.push(Warning::at(
                number,
                "a header before any path: start a block with a path such as /*".to_owned(),
            ));
            continue;
        };
        let Some(block) = block else {
            continue;
        };
        let Some((name, value)) = text.split_once(':') else {
            out.warnings
                .push(Warning::at(number, format!("expected `Name: value`, found {text:?}")));
            continue;
        };
        match check_header(name, value) {
            Ok(name) => {
                if block.headers.len() >= MAX_HEADERS_PER_BLOCK && !block.headers.iter().any(|(n, _)| *n == name) {
                    out.warnings.push(Warning::at(
                        number,
                        format!("more than {MAX_HEADERS_PER_BLOCK} headers for one path: this one is ignored"),
                    ));
                } else {
                    block.add(name, value.trim());
                }
            }
            Err(message) => out.warnings.push(Warning::at(number, message)),
        }
    }
    finish(current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(text: &str) -> Parsed<HeaderBlock> {
        parse_headers(text.as_bytes())
    }

    #[test]
    fn golden() {
        let parsed = headers(concat!(
            "# Security for every page\n",
            "/*\n",
            "  X-Frame-Options: DENY\n",
            "  Link: </style.css>; rel=preload\n",
            "  link: </app.js>; rel=preload\n",
            "\n",
            "/assets/*\n",
            "\tCache-Control: public, max-age=31536000, immutable\n",
            "/blog/:slug\n",
            "  X-Blog:yes \r\n",
            "  Content-Length: 5\n",
            "  Set-Cookie: a=b\n",
            "  Bad Name: x\n",
            "  X-Empty:\n",
            "  no colon here\n",
            "/empty\n",
            "https://example.com/*\n",
            "  X-Skipped: quietly\n",
            "/a /b\n",
            "/ok\n",
            "  X-Caf\u{e9}: 1\n",
            "  X-Value: caf\u{e9}\n",
            "  X-Ok: 1\n",
        ));
        let shown: Vec<String> = parsed.rules.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "/*\n  x-frame-options: DENY\n  link: </style.css>; rel=preload, </app.js>; rel=preload\n",
                "/assets/*\n  cache-control: public, max-age=31536000, immutable\n",
                "/blog/:slug\n  x-blog: yes\n",
                "/ok\n  x-ok: 1\n",
            ]
        );
        let expect = [
            (11, "Content-Length cannot be set"),
            (12, "Set-Cookie cannot be set"),
            (13, "not a valid header name"),
            (14, "X-Empty has no value"),
            (15, "expected `Name: value`"),
            (16, "no headers follow this path"),
            (17, "domain-level"),
            (19, "one path and nothing else"),
            (21, "not a valid header name"),
            (22, "non-ASCII"),
        ];
        let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(parsed.warnings.len(), expect.len(), "{warnings:#?}");
        for (w, (line, text)) in parsed.warnings.iter().zip(expect) {
            assert_eq!(w.line, Some(line), "{w}");
            assert!(w.message.contains(text), "line {line}: {w}");
        }
    }

    #[test]
    fn headers_before_a_path_and_limits() {
        let parsed = headers("X-A: 1\n/a\n  X-B: 2\n");
        assert_eq!(parsed.rules.len(), 1);
        assert_eq!(parsed.warnings[0].line, Some(1));
        assert!(parsed.warnings[0].message.contains("before any path"));

        let mut many = String::from("/a\n");
        for i in 0..MAX_HEADERS_PER_BLOCK + 2 {
            many.push_str(&format!("  X-H{i}: {i}\n"));
        }
        many.push_str("  X-H0: again\n");
        let parsed = headers(&many);
        assert_eq!(parsed.rules[0].headers.len(), MAX_HEADERS_PER_BLOCK);
        assert_eq!(parsed.rules[0].headers[0].1, "0, again", "a known name still joins");
        assert_eq!(parsed.warnings.len(), 2);

        let blocks: String = (0..MAX_HEADER_BLOCKS + 3)
            .map(|i| format!("/p{i}\n  X: {i}\n"))
            .collect();
        let parsed = headers(&blocks);
        assert_eq!(parsed.rules.len(), MAX_HEADER_BLOCKS);
        assert_eq!(parsed.warnings.len(), 1);
        assert!(parsed.warnings[0].message.contains("more than 2000 paths"));
    }
}
