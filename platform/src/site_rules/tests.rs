use super::*;
use proptest::prelude::*;

fn site(redirects: &str, headers: &str) -> SiteRules {
    let r = parse_redirects(redirects.as_bytes());
    let h = parse_headers(headers.as_bytes());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(h.warnings.is_empty(), "{:?}", h.warnings);
    SiteRules {
        redirects: r.rules,
        headers: h.rules,
    }
}

#[test]
fn first_match_wins() {
    let rules = site("/a/:x /first/:x 302\n/a/* /second/:splat\n/* /index.html 200\n", "");
    let target = |path: &str| {
        rules
            .redirect_for(path, false)
            .map(|(r, c)| (r.status, r.to.expand(&c)))
    };
    assert_eq!(target("a/b"), Some((302, "/first/b".into())));
    assert_eq!(target("a/b/c"), Some((301, "/second/b/c".into())));
    assert_eq!(target("a"), Some((301, "/second/".into())));
    assert_eq!(target(""), Some((200, "/index.html".into())));
    assert_eq!(site("/a /b", "").redirect_for("c", false), None);
}

#[test]
fn files_shadow_rules_unless_forced() {
    let rules = site(
        "/about /old 302
/about /forced 302!
/other /x
",
        "",
    );
    let target = |exists: bool| {
        rules
            .redirect_for("about", exists)
            .map(|(r, _)| r.to.as_str().to_owned())
    };
    assert_eq!(target(false).as_deref(), Some("/old"), "first match wins");
    assert_eq!(
        target(true).as_deref(),
        Some("/forced"),
        "only forced rules beat a file"
    );
    assert!(rules.redirect_for("other", true).is_none());
}

#[test]
fn empty_values_never_make_a_protocol_relative_target() {
    let rules = site("/go/* /:splat/index.html 301\n", "");
    let (rule, captures) = rules.redirect_for("go", false).unwrap_or_else(|| panic!("no match"));
    assert_eq!(rule.to.expand(&captures), "/index.html");
}

#[test]
fn headers_of_every_matching_block_joined() {
    let rules = site(
        "",
        "/*\n  X-Frame-Options: DENY\n  Link: <a>\n/docs/*\n  Link: <b>\n  Cache-Control: no-cache\n/docs/:page\n  X-Page: yes\n/index.html\n  X-Index: 1\n",
    );
    let names = |paths: &[&str]| -> Vec<(String, String)> {
        rules
            .headers_for(paths)
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.into_owned()))
            .collect()
    };
    let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    assert_eq!(
        names(&["docs/intro"]),
        [
            pair("x-frame-options", "DENY"),
            pair("link", "<a>, <b>"),
            pair("cache-control", "no-cache"),
            pair("x-page", "yes"),
        ]
    );
    assert_eq!(
        names(&["about"]),
        [pair("x-frame-options", "DENY"), pair("link", "<a>")]
    );
    // The request path and the file that answers it: each block once.
    assert_eq!(
        names(&["", "index.html"]),
        [
            pair("x-frame-options", "DENY"),
            pair("link", "<a>"),
            pair("x-index", "1")
        ]
    );
    assert!(SiteRules::default().headers_for(&["a"]).is_empty());
}

#[test]
fn stored_as_canonical_text_and_compiled_on_load() {
    let rules = site("/blog/:slug /posts/:slug 302!\n/caf%C3%A9 /x\n", "/*\n  X-A: 1\n");
    let json = serde_json::to_value(&rules).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json,
        serde_json::json!({
            "redirects": [
                { "from": "/blog/:slug", "to": "/posts/:slug", "status": 302, "force": true },
                { "from": "/caf%C3%A9", "to": "/x", "status": 301 },
            ],
            "headers": [{ "path": "/*", "headers": [["x-a", "1"]] }],
        })
    );
    let back: SiteRules = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, rules);
    assert_eq!(serde_json::to_string(&SiteRules::default()).unwrap_or_default(), "{}");
    // A rule this version cannot use is dropped, not the deployment.
    let odd = serde_json::json!({
        "redirects": [
            { "from": "no-slash", "to": "/x", "status": 301 },
            { "from": "/a", "to": "/b", "status": 999 },
            { "from": "/ok", "to": "/fine", "status": 302 },
        ],
        "headers": [
            { "path": "/*", "headers": [["content-length", "1"]] },
            { "path": "/*", "headers": [["x-ok", "1"]] },
        ],
        "future": true,
    });
    let loaded: SiteRules = serde_json::from_value(odd).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.redirects.len(), 1);
    assert_eq!(loaded.redirects[0].to.as_str(), "/fine");
    assert_eq!(loaded.headers.len(), 1);
}

#[test]
fn warnings_name_their_file_and_line() {
    let parsed = parse_redirects(b"/ok /fine\n/broken\n");
    assert_eq!(
        parsed.warnings[0].for_file(REDIRECTS_FILE),
        "_redirects:2: the rule has no target: write `from to [status]`"
    );
    let parsed = parse_headers(&vec![b'#'; MAX_FILE_BYTES + 1]);
    assert_eq!(
        parsed.warnings[0].for_file(HEADERS_FILE),
        "_headers: the file is larger than 64 KiB: it is ignored"
    );
}

#[test]
fn golden_inputs_keep_their_invariants() {
    invariants::redirects(include_bytes!("../../../fuzz/seeds/redirects_parse/golden"));
    invariants::headers(include_bytes!("../../../fuzz/seeds/headers_parse/golden"));
}

/// Pieces of rules files, so that generated inputs are mostly almost-valid.
const REDIRECT_TOKENS: &[&str] = &[
    "/",
    "/a",
    "/a/",
    "/:x",
    "/:y",
    "/*",
    "/a/*",
    "/a/:x/*",
    "/b/:x",
    "/:splat",
    ":splat",
    "/c/:splat",
    "/%2F",
    "/%e9",
    "/%C3%A9",
    "/é",
    "/.",
    "/..",
    "/a*",
    "*",
    "200",
    "200!",
    "301",
    "302!",
    "404",
    "410",
    "999",
    "https://h.example/:splat",
    "http://h",
    "//h",
    "x=1",
    "id=:x",
    "Country=fr",
    "#",
    "\\",
    "/:x/:x",
    "/a?b",
    "/a#b",
    "/ :x",
    "\u{1}",
];
const HEADER_TOKENS: &[&str] = &[
    "/*",
    "/a",
    "/a/:x",
    "/a/*",
    "https://h/*",
    "  X-A: 1",
    "  X-A: 2",
    "\tLink: <x>; rel=preload",
    "  Set-Cookie: a=b",
    "  Content-Length: 1",
    "Cache-Control: max-age=1",
    "  bad name: x",
    "  X-E:",
    "  X-U: é",
    "# comment",
    "  no colon",
    "/a /b",
    "  X-Tab:\tv\t",
];
const SEPARATORS: &[&str] = &[" ", "  ", "\t", "\n", "\r\n", "\n\n", ""];

fn assembled(tokens: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((prop::sample::select(tokens), prop::sample::select(SEPARATORS)), 0..40).prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(t, s)| [t, s])
            .collect::<String>()
            .into_bytes()
    })
}

proptest! {
    #[test]
    fn redirects_from_pieces(input in assembled(REDIRECT_TOKENS)) {
        invariants::redirects(&input);
    }

    #[test]
    fn redirects_from_bytes(input in prop::collection::vec(any::<u8>(), 0..512)) {
        invariants::redirects(&input);
    }

    #[test]
    fn headers_from_pieces(input in assembled(HEADER_TOKENS)) {
        invariants::headers(&input);
    }

    #[test]
    fn headers_from_bytes(input in prop::collection::vec(any::<u8>(), 0..512)) {
        invariants::headers(&input);
    }

    #[test]
    fn patterns_match_what_they_print(raw in "(/([a-z]{1,3}|:[a-z]{1,2}|%[0-9A-F]{2}|\\*)){0,5}/?",
                                      path in "([a-z]{1,3}|é|%)(/([a-z]{1,3}|é)){0,5}") {
        if let Ok(pattern) = PathPattern::parse(&raw) {
            prop_assert_eq!(PathPattern::parse(&pattern.to_string()), Ok(pattern.clone()));
            prop_assert_eq!(pattern.matches(&path), pattern.captures(&path).is_some());
        }
    }
}

#[test]
fn manifests_without_rules_still_load_and_stay_unchanged() {
    use crate::artifacts::Manifest;
    let id = crate::DeploymentId::generate();
    let old = serde_json::json!({ "deployment_id": id.to_string(), "spa": false, "files": {} });
    let manifest: Manifest = serde_json::from_value(old.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert!(manifest.rules.is_empty());
    assert_eq!(
        serde_json::to_value(&manifest).unwrap_or_default(),
        old,
        "no new field when there are no rules"
    );

    let with = Manifest {
        rules: site("/a /b 302\n", "/*\n  X-A: 1\n"),
        ..manifest
    };
    let json = serde_json::to_string(&with).unwrap_or_default();
    let back: Manifest = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(back, with);
}
