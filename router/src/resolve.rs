//! Which file of a deployment answers a request path, and under which URL each page lives.
//!
//! Every candidate is looked up in the manifest's map; nothing here touches a filesystem, so a
//! request can only ever reach files the deployment contains.
//!
//! # Clean URLs
//!
//! Pages have one URL each, as on Netlify with "pretty URLs" on; the other spellings answer 301
//! to it (the caller keeps the query string):
//!
//! | file               | canonical URL | redirected to it                               |
//! |--------------------|---------------|------------------------------------------------|
//! | `about.html`       | `/about`      | `/about.html`, `/about/`                       |
//! | `docs/index.html`  | `/docs/`      | `/docs`, `/docs/index.html`, `/docs/index`     |
//! | `index.html`       | `/`           | `/index.html`, `/index`                        |
//!
//! A directory's index is served under a trailing slash so that its relative links resolve
//! inside the directory. When `about.html` and a file named `about` both exist, `/about` is the
//! file and `/about.html` is served as it is. When `docs.html` and `docs/index.html` both exist,
//! `/docs` is `docs.html` and `/docs/` the index. Any other file is served at its own path
//! (`/app.js`; `/app.js/` is not found: a file is not a directory).
//!
//! A path that names nothing falls back, for a single-page app, to `index.html` with 200 — but
//! only when the path looks like a page route (no extension, or `.html`): a missing script or
//! image is a 404, never HTML with a 200 that breaks in the browser in confusing ways. Then
//! comes the site's `404.html`, with 404.

use axum::http::StatusCode;
use platform::RelPath;
use platform::artifacts::{FileEntry, Manifest};
use platform::site_rules::path::{RequestPath, extension, url_path};

/// The file chosen to answer, and with which status (404 when it is the site's own `404.html`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved<'m> {
    pub(crate) path: &'m RelPath,
    pub(crate) entry: &'m FileEntry,
    pub(crate) status: StatusCode,
}

/// What a request path is, for the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution<'m> {
    /// The path names this file: the file itself, its page (`p.html`) or its directory's index.
    Found(Resolved<'m>),
    /// The path names a page, but not by its canonical URL: answer 301 with this URL path
    /// (percent-encoded, no query).
    Moved(String),
    /// Nothing has this path; the site's fallback answers (`index.html` of a single-page app with
    /// 200, or `404.html` with 404).
    Fallback(Resolved<'m>),
    /// Nothing has this path and the site has no fallback.
    Missing,
}

impl Resolution<'_> {
    /// Whether the path names something of the deployment (which shadows redirect rules that
    /// are not forced).
    pub(crate) fn exists(&self) -> bool {
        matches!(self, Resolution::Found(_) | Resolution::Moved(_))
    }
}

/// Resolves `req` against `manifest` (see the module documentation for the scheme).
pub(crate) fn resolve<'m>(manifest: &'m Manifest, req: &RequestPath) -> Resolution<'m> {
    let p = req.path.as_str();
    if req.dir {
        if let Some(r) = found(manifest, &index_of(p), StatusCode::OK) {
            return Resolution::Found(r);
        }
        if !p.is_empty() && has(manifest, &format!("{p}.html")) {
            return Resolution::Moved(url_path(p, false));
        }
    } else {
        if let Some(r) = found(manifest, p, StatusCode::OK) {
            return match canonical_url(manifest, p) {
                Some(url) => Resolution::Moved(url),
                None => Resolution::Found(r),
            };
        }
        if let Some(r) = found(manifest, &format!("{p}.html"), StatusCode::OK) {
            // `/docs/index` names `docs/index.html`, whose URL is `/docs/`.
            return match p.strip_suffix("index") {
                Some(dir) if dir.is_empty() || dir.ends_with('/') => Resolution::Moved(url_path(dir, true)),
                _ => Resolution::Found(r),
            };
        }
        if has(manifest, &index_of(p)) {
            return Resolution::Moved(url_path(p, true));
        }
    }
    if manifest.spa
        && looks_like_page(req)
        && let Some(r) = found(manifest, "index.html", StatusCode::OK)
    {
        return Resolution::Fallback(r);
    }
    match not_found(manifest) {
        Some(r) => Resolution::Fallback(r),
        None => Resolution::Missing,
    }
}

/// The file a rewrite rule's target names, without redirects or fallbacks (a rewrite is one
/// step): the file itself, `p.html`, or `p/index.html`.
pub(crate) fn target<'m>(manifest: &'m Manifest, req: &RequestPath) -> Option<Resolved<'m>> {
    let p = req.path.as_str();
    let ok = StatusCode::OK;
    if req.dir {
        return found(manifest, &index_of(p), ok);
    }
    found(manifest, p, ok)
        .or_else(|| found(manifest, &format!("{p}.html"), ok))
        .or_else(|| found(manifest, &index_of(p), ok))
}

/// The site's own `404.html`, with 404.
pub(crate) fn not_found(manifest: &Manifest) -> Option<Resolved<'_>> {
    found(manifest, "404.html", StatusCode::NOT_FOUND)
}

/// The pretty URL of the page stored at `p`, when `p` is one and its pretty URL leads back to it.
fn canonical_url(manifest: &Manifest, p: &str) -> Option<String> {
    if p == "index.html" {
        return Some("/".to_owned());
    }
    if let Some(dir) = p.strip_suffix("/index.html") {
        return Some(url_path(dir, true));
    }
    let stem = p.strip_suffix(".html")?;
    if stem.is_empty() || stem.ends_with('/') || has(manifest, stem) {
        return None;
    }
    Some(url_path(stem, false))
}

fn index_of(p: &str) -> String {
    if p.is_empty() {
        "index.html".to_owned()
    } else {
        format!("{p}/index.html")
    }
}

/// A path a browser-side router could own: no extension, or an HTML one.
fn looks_like_page(req: &RequestPath) -> bool {
    match req.file_name().and_then(extension) {
        None => true,
        Some(ext) => ext.eq_ignore_ascii_case("html") || ext.eq_ignore_ascii_case("htm"),
    }
}

fn found<'m>(manifest: &'m Manifest, candidate: &str, status: StatusCode) -> Option<Resolved<'m>> {
    lookup(manifest, candidate).map(|(path, entry)| Resolved { path, entry, status })
}

fn has(manifest: &Manifest, candidate: &str) -> bool {
    lookup(manifest, candidate).is_some()
}

/// Looked up as a plain string, without parsing (and allocating) a `RelPath` per candidate:
/// candidates are normalized like every key, and one that is not a valid `RelPath` (a control
/// character, too long) equals no key, so it simply does not match.
fn lookup<'m>(manifest: &'m Manifest, candidate: &str) -> Option<(&'m RelPath, &'m FileEntry)> {
    manifest.files.get_key_value(candidate)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use platform::DeploymentId;
    use platform::artifacts::ContentHash;

    /// A deployment of `paths` (content irrelevant), without rules; also for `rules`' tests.
    pub(crate) fn manifest(spa: bool, paths: &[&str]) -> Manifest {
        let files = paths
            .iter()
            .map(|p| {
                let entry = FileEntry {
                    hash: ContentHash::of(p.as_bytes()),
                    size: 1,
                    content_type: "text/plain".into(),
                    encodings: Default::default(),
                };
                (RelPath::parse(p).unwrap_or_else(|e| panic!("{p}: {e}")), entry)
            })
            .collect();
        Manifest {
            deployment_id: DeploymentId::generate(),
            spa,
            files,
            rules: Default::default(),
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum A {
        File(String, u16),
        Moved(String),
        Fallback(String, u16),
        Missing,
    }

    fn answer(m: &Manifest, raw: &str) -> A {
        let req = RequestPath::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        match resolve(m, &req) {
            Resolution::Found(r) => A::File(r.path.as_str().to_owned(), r.status.as_u16()),
            Resolution::Moved(url) => A::Moved(url),
            Resolution::Fallback(r) => A::Fallback(r.path.as_str().to_owned(), r.status.as_u16()),
            Resolution::Missing => A::Missing,
        }
    }

    fn file(path: &str) -> A {
        A::File(path.to_owned(), 200)
    }

    fn moved(url: &str) -> A {
        A::Moved(url.to_owned())
    }

    fn not_found() -> A {
        A::Fallback("404.html".to_owned(), 404)
    }

    #[test]
    fn static_site() {
        let m = manifest(
            false,
            &[
                "index.html",
                "about.html",
                "blog/index.html",
                "blog/post.html",
                "app.js",
                "404.html",
            ],
        );
        assert_eq!(answer(&m, "/"), file("index.html"));
        assert_eq!(answer(&m, "/about"), file("about.html"));
        assert_eq!(answer(&m, "/blog/"), file("blog/index.html"));
        assert_eq!(answer(&m, "/blog/post"), file("blog/post.html"));
        assert_eq!(answer(&m, "/app.js"), file("app.js"));
        // Every other spelling of a page moves to its one URL.
        assert_eq!(answer(&m, "/index.html"), moved("/"));
        assert_eq!(answer(&m, "/index"), moved("/"));
        assert_eq!(answer(&m, "/about.html"), moved("/about"));
        assert_eq!(answer(&m, "/about/"), moved("/about"));
        assert_eq!(answer(&m, "/blog"), moved("/blog/"));
        assert_eq!(answer(&m, "/blog/index.html"), moved("/blog/"));
        assert_eq!(answer(&m, "/blog/index"), moved("/blog/"));
        assert_eq!(answer(&m, "//blog/./post.html"), moved("/blog/post"));
        assert_eq!(answer(&m, "/blog/post/"), moved("/blog/post"));
        // A file is not a directory.
        assert_eq!(answer(&m, "/app.js/"), not_found());
        assert_eq!(answer(&m, "/nope"), not_found());
        assert_eq!(answer(&m, "/nope/"), not_found());
        assert_eq!(answer(&m, "/404"), file("404.html"), "the page itself is a page");
    }

    #[test]
    fn moved_urls_are_encoded() {
        let m = manifest(false, &["café/index.html", "a b.html", "100%.html"]);
        assert_eq!(answer(&m, "/caf%C3%A9"), moved("/caf%C3%A9/"));
        assert_eq!(answer(&m, "/a%20b.html"), moved("/a%20b"));
        assert_eq!(answer(&m, "/a b/"), moved("/a%20b"));
        assert_eq!(answer(&m, "/100%25.html"), moved("/100%25"));
    }

    #[test]
    fn siblings_keep_both_urls() {
        let m = manifest(false, &["docs.html", "docs/index.html", "notes", "notes.html"]);
        assert_eq!(answer(&m, "/docs"), file("docs.html"));
        assert_eq!(answer(&m, "/docs/"), file("docs/index.html"));
        assert_eq!(answer(&m, "/docs.html"), moved("/docs"));
        // `/notes` is the extensionless file: `notes.html` keeps its own name.
        assert_eq!(answer(&m, "/notes"), file("notes"));
        assert_eq!(answer(&m, "/notes.html"), file("notes.html"));
        assert_eq!(answer(&m, "/missing"), A::Missing);
    }

    #[test]
    fn single_page_app() {
        let m = manifest(true, &["index.html", "assets/index-BXq3x8Zl.js", "404.html"]);
        let app = || A::Fallback("index.html".to_owned(), 200);
        assert_eq!(answer(&m, "/dashboard/settings"), app());
        assert_eq!(answer(&m, "/dashboard/"), app());
        assert_eq!(answer(&m, "/old-page.html"), app());
        assert_eq!(answer(&m, "/old-page.HTM"), app());
        assert_eq!(answer(&m, "/"), file("index.html"));
        assert_eq!(
            answer(&m, "/assets/index-BXq3x8Zl.js"),
            file("assets/index-BXq3x8Zl.js")
        );
        assert_eq!(answer(&m, "/assets/missing.js"), not_found());
        assert_eq!(answer(&m, "/logo.png"), not_found());
        let bare = manifest(true, &["index.html"]);
        assert_eq!(answer(&bare, "/style.css"), A::Missing);
        let no_index = manifest(true, &["app.js"]);
        assert_eq!(answer(&no_index, "/route"), A::Missing);
    }

    #[test]
    fn existence_shadows_rules() {
        let m = manifest(true, &["index.html", "about.html", "404.html"]);
        let exists = |raw: &str| resolve(&m, &RequestPath::parse(raw).unwrap_or_else(|e| panic!("{e}"))).exists();
        assert!(exists("/about"));
        assert!(exists("/about.html"), "a page asked by another name exists");
        assert!(exists("/"));
        assert!(!exists("/route"), "the SPA fallback is not a file at that path");
        assert!(!exists("/x.js"));
    }

    #[test]
    fn rewrite_targets_take_one_step() {
        let m = manifest(false, &["index.html", "about.html", "docs/index.html", "app.js"]);
        let t = |raw: &str| {
            target(&m, &RequestPath::parse(raw).unwrap_or_else(|e| panic!("{e}"))).map(|r| r.path.as_str().to_owned())
        };
        assert_eq!(t("/").as_deref(), Some("index.html"));
        assert_eq!(t("/index.html").as_deref(), Some("index.html"));
        assert_eq!(t("/about").as_deref(), Some("about.html"));
        assert_eq!(
            t("/docs").as_deref(),
            Some("docs/index.html"),
            "no redirect inside a rewrite"
        );
        assert_eq!(t("/app.js").as_deref(), Some("app.js"));
        assert_eq!(t("/app.js/"), None);
        assert_eq!(t("/nope"), None);
    }

    #[test]
    fn odd_candidates_just_miss() {
        let m = manifest(false, &["index.html"]);
        assert_eq!(answer(&m, "/a%01b"), A::Missing);
        assert_eq!(answer(&m, &format!("/{}", "a".repeat(3000))), A::Missing);
    }
}
