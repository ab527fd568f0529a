//! Properties every parse must have, whatever the input: checked by the property tests on
//! generated inputs and by the fuzz targets in `fuzz/` on arbitrary ones. Each function panics
//! when a property does not hold.

use crate::site_rules::path::{self, RequestPath};
use crate::site_rules::{
    Action, HeaderBlock, MAX_FILE_BYTES, MAX_HEADER_BLOCKS, MAX_HEADERS_PER_BLOCK, MAX_LINE_BYTES, MAX_REDIRECTS,
    RedirectRule, SiteRules, parse_headers, parse_redirects,
};

/// The lines of a file as the parsers count them, and how many of them say something (neither
/// blank nor a comment, or unreadable): written independently of the parsers' own splitting.
fn lines(input: &[u8]) -> (usize, usize) {
    let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
    let mut all = 0;
    let mut meaningful = 0;
    for line in input.split(|&b| b == b'\n') {
        all += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        meaningful += match std::str::from_utf8(line) {
            _ if line.len() > MAX_LINE_BYTES => 1,
            Err(_) => 1,
            Ok(text) => usize::from(!text.trim().is_empty() && !text.trim().starts_with('#')),
        };
    }
    if input.ends_with(b"\n") || input.is_empty() {
        all -= 1;
    }
    (all, meaningful)
}

/// Paths to try the rules on, made from the input itself (so that the fuzzer's discoveries reach
/// the matcher), normalized as the router normalizes request paths.
fn sample_paths(input: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(input);
    let mut paths = vec![String::new()];
    for token in text.split_whitespace().take(64) {
        let segments: Vec<&str> = token
            .split('/')
            .filter(|s| !s.is_empty() && *s != "." && *s != ".." && !s.contains(['\0', '\\']))
            .collect();
        paths.push(segments.join("/"));
    }
    paths
}

/// `_redirects`: no panic; limits hold; every rule prints and parses back to itself; the stored
/// form loads back the same; matching agrees with capturing; a local target never expands to
/// something that leaves the site.
pub fn redirects(input: &[u8]) {
    let parsed = parse_redirects(input);
    assert!(parsed.rules.len() <= MAX_REDIRECTS);
    let (all, meaningful) = lines(input);
    for warning in &parsed.warnings {
        assert!(
            warning.line.is_none_or(|l| (1..=all).contains(&l)),
            "{warning:?} of {all} lines"
        );
        assert!(!warning.message.is_empty());
    }
    if input.len() > MAX_FILE_BYTES {
        assert!(parsed.rules.is_empty() && parsed.warnings.len() == 1);
    } else if parsed.rules.len() < MAX_REDIRECTS {
        // Every line that says something is a rule or a warning: nothing is dropped silently.
        assert_eq!(parsed.rules.len() + parsed.warnings.len(), meaningful, "{parsed:?}");
    }
    for rule in &parsed.rules {
        check_rule_round_trip(rule);
    }
    let rules = SiteRules {
        redirects: parsed.rules,
        headers: Vec::new(),
    };
    check_stored(&rules);
    for path in sample_paths(input) {
        for rule in &rules.redirects {
            let captures = rule.from.captures(&path);
            assert_eq!(rule.from.matches(&path), captures.is_some(), "{rule} on {path:?}");
            if let Some(captures) = captures {
                let target = rule.to.expand(&captures);
                if !rule.to.is_external() {
                    assert!(target.starts_with('/'), "{rule} on {path:?}: {target}");
                    assert!(
                        !target.starts_with("//") && !target.starts_with("/\\"),
                        "{rule} on {path:?} leaves the site: {target}"
                    );
                }
                assert!(
                    target.bytes().all(|b| b.is_ascii_graphic()),
                    "{rule} on {path:?}: {target:?} is not a valid Location"
                );
                if let Action::Redirect(status) = rule.action() {
                    assert!((301..=308).contains(&status));
                }
            }
        }
        for exists in [false, true] {
            if let Some((rule, _)) = rules.redirect_for(&path, exists) {
                assert!(rule.force || !exists);
            }
        }
    }
}

fn check_rule_round_trip(rule: &RedirectRule) {
    let line = rule.to_string();
    let rebuilt = RedirectRule::new(&rule.from.to_string(), rule.to.as_str(), rule.status, rule.force);
    assert_eq!(rebuilt.as_ref(), Ok(rule), "{line}");
    if line.len() <= MAX_LINE_BYTES {
        let again = parse_redirects(line.as_bytes());
        assert!(again.warnings.is_empty(), "{line}: {:?}", again.warnings);
        assert_eq!(again.rules, std::slice::from_ref(rule), "{line}");
    }
}

/// `_headers`: no panic; limits hold; names are lowercase and allowed, values valid; every
/// block prints and parses back to itself; the stored form loads back the same.
pub fn headers(input: &[u8]) {
    let parsed = parse_headers(input);
    assert!(parsed.rules.len() <= MAX_HEADER_BLOCKS);
    let (all, _) = lines(input);
    for warning in &parsed.warnings {
        assert!(
            warning.line.is_none_or(|l| (1..=all).contains(&l)),
            "{warning:?} of {all} lines"
        );
        assert!(!warning.message.is_empty());
    }
    for block in &parsed.rules {
        assert!(!block.headers.is_empty() && block.headers.len() <= MAX_HEADERS_PER_BLOCK);
        for (name, value) in &block.headers {
            assert_eq!(
                crate::site_rules::check_header(name, value).as_deref(),
                Ok(name.as_str())
            );
            assert_eq!(value.trim(), value);
        }
        let text = block.to_string();
        let rebuilt = HeaderBlock::new(&block.pattern.to_string(), &block.headers);
        assert_eq!(rebuilt.as_ref(), Ok(block), "{text}");
        if text.lines().all(|l| l.len() <= MAX_LINE_BYTES) {
            let again = parse_headers(text.as_bytes());
            assert!(again.warnings.is_empty(), "{text}: {:?}", again.warnings);
            assert_eq!(again.rules, std::slice::from_ref(block), "{text}");
        }
    }
    let rules = SiteRules {
        redirects: Vec::new(),
        headers: parsed.rules,
    };
    check_stored(&rules);
    let paths = sample_paths(input);
    for path in &paths {
        let found = rules.headers_for(&[path.as_str()]);
        for (i, (name, value)) in found.iter().enumerate() {
            assert!(!name.is_empty() && !value.is_empty());
            assert!(found[..i].iter().all(|(n, _)| n != name), "{name} is sent once");
        }
    }
    let all: Vec<&str> = paths.iter().map(String::as_str).collect();
    let _ = rules.headers_for(&all);
}

/// The manifest's JSON form loads back to the same rules.
fn check_stored(rules: &SiteRules) {
    let json = serde_json::to_string(rules).unwrap_or_else(|e| panic!("serialize: {e}"));
    let back: SiteRules = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(&back, rules, "{json}");
}

/// Request paths: parsing `raw` does not panic; an accepted path has no empty, `.` or `..`
/// segment, no NUL or backslash, and comes back the same from its own URL form (the form used in
/// `Location`).
pub fn request_path(raw: &str) {
    let Ok(p) = RequestPath::parse(raw) else {
        return;
    };
    assert!(!p.path.starts_with('/') && !p.path.ends_with('/'), "{raw:?}: {p:?}");
    assert!(!p.path.contains("//"), "{raw:?}: {p:?}");
    assert!(!p.path.contains(['\\', '\0']), "{raw:?}: {p:?}");
    assert!(p.path.split('/').all(|s| s != ".." && s != "."), "{raw:?}: {p:?}");
    assert!(!p.path.is_empty() || p.dir, "{raw:?}: the root is a directory");
    let url = path::url_path(&p.path, p.dir);
    assert!(url.starts_with('/') && !url.starts_with("//"), "{raw:?}: {url}");
    assert!(url.bytes().all(|b| b.is_ascii_graphic()), "{raw:?}: {url}");
    assert_eq!(RequestPath::parse(&url).as_ref(), Ok(&p), "{raw:?} -> {url}");
    let _ = p.file_name().map(path::extension);
}
