//! A deployment's `_redirects` and `_headers` (parsed at upload time, see
//! [`platform::site_rules`]) applied to a request.
//!
//! Order, as on Netlify: the path is resolved first ([`resolve::resolve`]); a rule applies when
//! its pattern matches the path and either it is forced (`!`) or the path names no file of the
//! deployment (clean-URL spellings count as naming their page; the single-page-app fallback and
//! `404.html` do not). The first such rule in file order wins; otherwise the resolution answers.
//!
//! - 301/302/303/307/308: a redirect to the expanded target. The request's query string is kept
//!   unless the target has its own.
//! - 200: a rewrite: the target path of the same deployment answers with 200, resolved once
//!   (its file, `.html` page or directory index; no redirect and no further rule).
//! - 404/410: the target's file answers with that status (a custom error page).
//!
//! A target that names no file answers as a missing page would (the site's `404.html`).
//!
//! `_headers` blocks apply to every answer for the site's paths — files, fallbacks, error pages
//! and redirects alike — when their pattern matches the request path or the path of the file
//! that answers (so `/index.html` blocks reach `/` and a single-page app's routes). A site's
//! value replaces the platform's default for the same header (`Cache-Control`, `Content-Type`),
//! except `Vary`, which is added to (the platform's encodings depend on it).

use crate::resolve::{self, Resolution, Resolved};
use crate::respond::CACHE_REVALIDATE;
use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Response, StatusCode};
use platform::artifacts::Manifest;
use platform::site_rules::path::RequestPath;
use platform::site_rules::{Action, RedirectRule, SiteRules};

/// How to answer a request for a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer<'m> {
    /// A file of the deployment, with its status: the one the path names, or a rule's target.
    File(Resolved<'m>),
    /// A file standing in for a path the deployment does not have: a single-page app's
    /// `index.html` (200) or the site's `404.html` (404, or a rule's error status).
    Fallback(Resolved<'m>),
    /// A redirect; `location` is a path of the site or an absolute URL.
    Redirect { status: StatusCode, location: String },
    /// Nothing to serve: the platform's own page with this status.
    NotFound(StatusCode),
}

impl Answer<'_> {
    /// The path of the file that answers, if one does.
    pub(crate) fn file_path(&self) -> Option<&str> {
        match self {
            Answer::File(r) | Answer::Fallback(r) => Some(r.path.as_str()),
            Answer::Redirect { .. } | Answer::NotFound(_) => None,
        }
    }
}

/// Decides how `req` (with its raw query string) is answered from `manifest`.
pub(crate) fn answer<'m>(manifest: &'m Manifest, req: &RequestPath, query: Option<&str>) -> Answer<'m> {
    let resolution = resolve::resolve(manifest, req);
    if !manifest.rules.redirects.is_empty()
        && let Some((rule, captures)) = manifest.rules.redirect_for(&req.path, resolution.exists())
    {
        return apply(manifest, rule, &rule.to.expand(&captures), query);
    }
    match resolution {
        Resolution::Found(r) => Answer::File(r),
        Resolution::Fallback(r) => Answer::Fallback(r),
        Resolution::Moved(url) => Answer::Redirect {
            status: StatusCode::MOVED_PERMANENTLY,
            location: with_query(url, query),
        },
        Resolution::Missing => Answer::NotFound(StatusCode::NOT_FOUND),
    }
}

fn apply<'m>(manifest: &'m Manifest, rule: &RedirectRule, target: &str, query: Option<&str>) -> Answer<'m> {
    let code = |status: u16| StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
    match rule.action() {
        Action::Redirect(status) => Answer::Redirect {
            status: code(status),
            location: with_query(target.to_owned(), query),
        },
        Action::Serve(status) => {
            let status = code(status);
            let path = target.split(['?', '#']).next().unwrap_or_default();
            let found = RequestPath::parse(path)
                .ok()
                .and_then(|t| resolve::target(manifest, &t));
            match found {
                Some(r) => Answer::File(Resolved { status, ..r }),
                None => {
                    // A rewrite to nothing is a missing page; a custom error keeps its status.
                    let status = if status == StatusCode::OK {
                        StatusCode::NOT_FOUND
                    } else {
                        status
                    };
                    match resolve::not_found(manifest) {
                        Some(r) => Answer::Fallback(Resolved { status, ..r }),
                        None => Answer::NotFound(status),
                    }
                }
            }
        }
    }
}

/// `location` with the request's query string, unless it has its own.
fn with_query(mut location: String, query: Option<&str>) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return location;
    };
    let end = location.find('#').unwrap_or(location.len());
    if location[..end].contains('?') {
        return location;
    }
    location.insert_str(end, &format!("?{query}"));
    location
}

/// A redirect: no body, revalidated (a rule may change with the next deployment).
pub(crate) fn redirect(status: StatusCode, location: &str) -> Option<Response<Body>> {
    let location = HeaderValue::from_str(location).ok()?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_REVALIDATE));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    Some(response)
}

/// Adds the `_headers` of `rules` that match the request path or the file that answers.
pub(crate) fn add_headers(headers: &mut HeaderMap, rules: &SiteRules, path: &str, file: Option<&str>) {
    let found = match file {
        Some(file) if file != path => rules.headers_for(&[path, file]),
        _ => rules.headers_for(&[path]),
    };
    for (name, value) in found {
        // Names and values were checked at upload time; anything odd is skipped, not sent.
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) else {
            continue;
        };
        if name == header::VARY {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::site_rules::{parse_headers, parse_redirects};

    fn manifest(paths: &[&str], redirects: &str, headers: &str) -> Manifest {
        let r = parse_redirects(redirects.as_bytes());
        let h = parse_headers(headers.as_bytes());
        assert!(r.warnings.is_empty() && h.warnings.is_empty(), "{r:?} {h:?}");
        Manifest {
            rules: SiteRules {
                redirects: r.rules,
                headers: h.rules,
            },
            ..crate::resolve::tests::manifest(false, paths)
        }
    }

    fn ask(m: &Manifest, target: &str) -> String {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let req = RequestPath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        match answer(m, &req, query) {
            Answer::File(r) => format!("{} {}", r.status.as_u16(), r.path),
            Answer::Fallback(r) => format!("{} {} (fallback)", r.status.as_u16(), r.path),
            Answer::Redirect { status, location } => format!("{} -> {location}", status.as_u16()),
            Answer::NotFound(status) => format!("{} platform page", status.as_u16()),
        }
    }

    const FILES: &[&str] = &[
        "index.html",
        "about.html",
        "docs/index.html",
        "app/index.html",
        "en/404.html",
        "404.html",
        "legacy.html",
    ];

    #[test]
    fn rules_in_order_and_shadowing() {
        let m = manifest(
            FILES,
            concat!(
                "/about        /elsewhere            302\n",
                "/legacy       /about                301!\n",
                "/blog/*       /news/:splat          301\n",
                "/p/:id        /posts?id=:id         302\n",
                "/app/*        /app/index.html       200\n",
                "/en/*         /en/404.html          404\n",
                "/gone         /nothing              410\n",
                "/shop         https://shop.example/ 307\n",
                "/missing      /nowhere              200\n",
            ),
            "",
        );
        // A file shadows a rule that is not forced; a forced one wins.
        assert_eq!(ask(&m, "/about"), "200 about.html");
        assert_eq!(ask(&m, "/legacy"), "301 -> /about");
        assert_eq!(
            ask(&m, "/legacy.html"),
            "301 -> /legacy",
            "rules match the path asked for"
        );
        // Splats, placeholders and the query string.
        assert_eq!(ask(&m, "/blog/2024/hello"), "301 -> /news/2024/hello");
        assert_eq!(ask(&m, "/blog/a?x=1"), "301 -> /news/a?x=1");
        assert_eq!(
            ask(&m, "/p/42?utm=x"),
            "302 -> /posts?id=42",
            "the target's own query wins"
        );
        assert_eq!(ask(&m, "/shop?ref=a"), "307 -> https://shop.example/?ref=a");
        // Rewrites and custom error pages serve the target with the rule's status.
        assert_eq!(ask(&m, "/app/settings/profile"), "200 app/index.html");
        assert_eq!(ask(&m, "/app/"), "200 app/index.html", "the index exists anyway");
        assert_eq!(ask(&m, "/en/nope"), "404 en/404.html");
        assert_eq!(
            ask(&m, "/gone"),
            "410 404.html (fallback)",
            "a missing target keeps the status"
        );
        assert_eq!(ask(&m, "/missing"), "404 404.html (fallback)");
        // Without a rule: clean URLs.
        assert_eq!(ask(&m, "/docs?page=2"), "301 -> /docs/?page=2");
        assert_eq!(ask(&m, "/about.html?x"), "301 -> /about?x");
        assert_eq!(ask(&m, "/nope"), "404 404.html (fallback)");
    }

    #[test]
    fn a_catch_all_rewrite_is_a_single_page_app() {
        let m = manifest(&["index.html", "app.js"], "/*  /index.html  200\n", "");
        assert_eq!(ask(&m, "/"), "200 index.html");
        assert_eq!(ask(&m, "/app.js"), "200 app.js");
        assert_eq!(ask(&m, "/some/route"), "200 index.html");
        let bare = manifest(&["app.js"], "/* /index.html 200\n", "");
        assert_eq!(ask(&bare, "/x"), "404 platform page");
    }

    #[test]
    fn location_keeps_fragments_last() {
        assert_eq!(with_query("/a#top".into(), Some("x=1")), "/a?x=1#top");
        assert_eq!(with_query("/a?b#top".into(), Some("x=1")), "/a?b#top");
        assert_eq!(with_query("/a".into(), Some("")), "/a");
        assert_eq!(with_query("/a".into(), None), "/a");
    }

    #[test]
    fn headers_for_the_request_and_the_file() {
        let m = manifest(
            FILES,
            "",
            "/*\n  X-Frame-Options: DENY\n  Cache-Control: no-store\n  Vary: Origin\n/index.html\n  X-Index: yes\n",
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_REVALIDATE));
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        add_headers(&mut headers, &m.rules, "", Some("index.html"));
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "the site's value wins");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-index"], "yes");
        let vary: Vec<_> = headers.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);

        let mut headers = HeaderMap::new();
        add_headers(&mut headers, &m.rules, "about", Some("about.html"));
        assert!(headers.get("x-index").is_none());
        assert_eq!(headers["x-frame-options"], "DENY");
    }

    #[test]
    fn redirects_are_empty_and_revalidated() {
        let r = redirect(StatusCode::FOUND, "/x?y=1").unwrap_or_else(|| panic!("valid"));
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()[header::LOCATION], "/x?y=1");
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "0");
        assert_eq!(r.headers()[header::CACHE_CONTROL], CACHE_REVALIDATE);
        assert!(redirect(StatusCode::FOUND, "/x\ny").is_none());
    }
}
