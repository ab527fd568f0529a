//! Which file of a deployment answers a request path.
//!
//! Every candidate is looked up in the manifest's map; nothing here touches a filesystem, so a
//! request can only ever reach files the deployment contains.

use crate::path::{RequestPath, extension};
use axum::http::StatusCode;
use platform::RelPath;
use platform::artifacts::{FileEntry, Manifest};

/// The file chosen to answer, and with which status (404 when it is the site's own `404.html`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved<'m> {
    pub(crate) path: &'m RelPath,
    pub(crate) entry: &'m FileEntry,
    pub(crate) status: StatusCode,
}

/// Resolves `req` against `manifest`, in order:
/// 1. the file itself (unless the request names a directory);
/// 2. `p/index.html`, then `p.html` (static-site generators emit either for pretty URLs);
/// 3. for a single-page app, `index.html` with 200 when the path looks like a page route — never
///    for a missing asset, which would otherwise come back as HTML with a 200 and break in the
///    browser in confusing ways;
/// 4. the site's `404.html`, with 404.
///
/// `None` means nothing matched: the caller answers with the platform's own 404 page.
pub(crate) fn resolve<'m>(manifest: &'m Manifest, req: &RequestPath) -> Option<Resolved<'m>> {
    let p = req.path.as_str();
    let found = |candidate: &str, status: StatusCode| {
        lookup(manifest, candidate).map(|(path, entry)| Resolved { path, entry, status })
    };
    if !req.dir
        && let Some(r) = found(p, StatusCode::OK)
    {
        return Some(r);
    }
    let index = if p.is_empty() {
        "index.html".to_owned()
    } else {
        format!("{p}/index.html")
    };
    if let Some(r) = found(&index, StatusCode::OK) {
        return Some(r);
    }
    if !req.dir
        && let Some(r) = found(&format!("{p}.html"), StatusCode::OK)
    {
        return Some(r);
    }
    if manifest.spa
        && looks_like_page(req)
        && let Some(r) = found("index.html", StatusCode::OK)
    {
        return Some(r);
    }
    found("404.html", StatusCode::NOT_FOUND)
}

/// A path a browser-side router could own: no extension, or an HTML one.
fn looks_like_page(req: &RequestPath) -> bool {
    match req.file_name().and_then(extension) {
        None => true,
        Some(ext) => ext.eq_ignore_ascii_case("html") || ext.eq_ignore_ascii_case("htm"),
    }
}

/// A candidate that is not a valid `RelPath` (a control character, too long) cannot be a key of
/// the manifest, so it simply does not match.
fn lookup<'m>(manifest: &'m Manifest, candidate: &str) -> Option<(&'m RelPath, &'m FileEntry)> {
    let key = RelPath::parse(candidate).ok()?;
    manifest.files.get_key_value(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::DeploymentId;
    use platform::artifacts::ContentHash;

    fn manifest(spa: bool, paths: &[&str]) -> Manifest {
        let files = paths
            .iter()
            .map(|p| {
                let entry = FileEntry {
                    hash: ContentHash::of(p.as_bytes()),
                    size: 1,
                    content_type: "text/plain".into(),
                };
                (RelPath::parse(p).unwrap_or_else(|e| panic!("{p}: {e}")), entry)
            })
            .collect();
        Manifest {
            deployment_id: DeploymentId::generate(),
            spa,
            files,
        }
    }

    fn answer(m: &Manifest, raw: &str) -> Option<(String, u16)> {
        let req = RequestPath::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        resolve(m, &req).map(|r| (r.path.as_str().to_owned(), r.status.as_u16()))
    }

    fn is(path: &str, status: u16) -> Option<(String, u16)> {
        Some((path.to_owned(), status))
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
        assert_eq!(answer(&m, "/"), is("index.html", 200));
        assert_eq!(answer(&m, "/index.html"), is("index.html", 200));
        assert_eq!(answer(&m, "/about"), is("about.html", 200));
        assert_eq!(answer(&m, "/about.html"), is("about.html", 200));
        // A directory request never falls back to `p.html`.
        assert_eq!(answer(&m, "/about/"), is("404.html", 404));
        assert_eq!(answer(&m, "/blog"), is("blog/index.html", 200));
        assert_eq!(answer(&m, "/blog/"), is("blog/index.html", 200));
        assert_eq!(answer(&m, "/blog/post"), is("blog/post.html", 200));
        assert_eq!(answer(&m, "/app.js"), is("app.js", 200));
        // A file is not a directory.
        assert_eq!(answer(&m, "/app.js/"), is("404.html", 404));
        assert_eq!(answer(&m, "/nope"), is("404.html", 404));
    }

    #[test]
    fn index_beats_sibling_html() {
        let m = manifest(false, &["docs.html", "docs/index.html"]);
        assert_eq!(answer(&m, "/docs"), is("docs/index.html", 200));
        assert_eq!(answer(&m, "/missing"), None);
    }

    #[test]
    fn single_page_app() {
        let m = manifest(true, &["index.html", "assets/index-BXq3x8Zl.js", "404.html"]);
        assert_eq!(answer(&m, "/dashboard/settings"), is("index.html", 200));
        assert_eq!(answer(&m, "/dashboard/"), is("index.html", 200));
        assert_eq!(answer(&m, "/old-page.html"), is("index.html", 200));
        assert_eq!(answer(&m, "/old-page.HTM"), is("index.html", 200));
        assert_eq!(
            answer(&m, "/assets/index-BXq3x8Zl.js"),
            is("assets/index-BXq3x8Zl.js", 200)
        );
        assert_eq!(answer(&m, "/assets/missing.js"), is("404.html", 404));
        assert_eq!(answer(&m, "/logo.png"), is("404.html", 404));
        let bare = manifest(true, &["index.html"]);
        assert_eq!(answer(&bare, "/style.css"), None);
        let no_index = manifest(true, &["app.js"]);
        assert_eq!(answer(&no_index, "/route"), None);
    }

    #[test]
    fn odd_candidates_just_miss() {
        let m = manifest(false, &["index.html"]);
        assert_eq!(answer(&m, "/a%01b"), None);
        assert_eq!(answer(&m, &format!("/{}", "a".repeat(3000))), None);
    }
}
