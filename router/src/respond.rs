//! Building responses: file responses streamed from the artifact store, conditional requests,
//! caching headers, and the platform's own small HTML pages.

use crate::assets::is_hashed_asset;
use crate::path::extension;
use crate::resolve::Resolved;
use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use platform::artifacts::ArtifactStore;
use tokio_util::io::ReaderStream;

/// For files whose name carries their content hash: they can never change.
pub(crate) const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For everything else: a new deployment must show up on the next load.
pub(crate) const CACHE_REVALIDATE: &str = "public, max-age=0, must-revalidate";

/// Read size when streaming objects: fewer, larger chunks than the 4 KiB default.
const STREAM_CHUNK: usize = 64 * 1024;

/// The validator of a file: its content hash, shortened (128 bits are plenty to tell versions of
/// one URL apart and keep the header short).
pub(crate) fn etag_of(hash: &str) -> String {
    let short = hash.get(..32).unwrap_or(hash);
    format!("\"{short}\"")
}

/// Whether `If-None-Match` (any number of headers, each a comma list, `*`, weak `W/` tags) matches
/// `etag`. The comparison is weak, as RFC 9110 requires for `If-None-Match`.
pub(crate) fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// HTML is the entry point that names the hashed assets, so it must always revalidate, whatever
/// its name looks like.
pub(crate) fn cache_control(path: &str, content_type: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let html = content_type.trim_start().to_ascii_lowercase().starts_with("text/html")
        || extension(name).is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if !html && is_hashed_asset(path) {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    }
}

/// Headers every response carries.
fn security_headers(headers: &mut HeaderMap) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Answers with a file of the deployment. `head` answers from the manifest alone: the object is
/// not opened, so a HEAD costs no store I/O.
pub(crate) async fn file(
    store: &dyn ArtifactStore,
    found: Resolved<'_>,
    request_headers: &HeaderMap,
    head: bool,
) -> Response {
    let entry = found.entry;
    let etag = etag_of(entry.hash.as_str());
    let cache = cache_control(found.path.as_str(), &entry.content_type);

    let mut headers = HeaderMap::new();
    security_headers(&mut headers);
    set(&mut headers, header::ETAG, &etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));

    // Only a successful answer may become a 304: a 404 page is not the resource asked for.
    if found.status == StatusCode::OK && none_match(request_headers, &etag) {
        return with_parts(StatusCode::NOT_MODIFIED, headers, Body::empty());
    }

    let content_type = HeaderValue::from_str(&entry.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);

    if head {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.size));
        return with_parts(found.status, headers, Body::empty());
    }

    let object = match store.get_object(&entry.hash).await {
        Ok(object) => object,
        Err(e) => {
            tracing::error!(path = found.path.as_str(), hash = %entry.hash, error = %e, "cannot read a deployed file");
            return page(StatusCode::BAD_GATEWAY, Page::StoreFailed, false);
        }
    };
    if object.len != entry.size {
        tracing::warn!(
            path = found.path.as_str(),
            hash = %entry.hash,
            manifest = entry.size,
            stored = object.len,
            "stored object size differs from the manifest"
        );
    }
    // The length sent is the length of what is streamed, so the framing is always right.
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.len));
    let body = Body::from_stream(ReaderStream::with_capacity(object.reader, STREAM_CHUNK));
    with_parts(found.status, headers, body)
}

fn with_parts(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The pages the platform itself answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page<'a> {
    NoSite,
    NotDeployed { slug: &'a str },
    NotFound,
    BadPath,
    MethodNotAllowed,
    StoreFailed,
    Unavailable,
}

impl Page<'_> {
    fn text(&self) -> (&'static str, String) {
        match self {
            Page::NoSite => ("No site here", "There is no site at this address.".into()),
            Page::NotDeployed { slug } => (
                "Nothing deployed yet",
                format!(
                    "The project <strong>{}</strong> exists, but nothing has been deployed to production yet.",
                    escape(slug)
                ),
            ),
            Page::NotFound => ("Not found", "This page does not exist.".into()),
            Page::BadPath => ("Bad request", "This path is not valid.".into()),
            Page::MethodNotAllowed => ("Method not allowed", "Sites only answer GET and HEAD.".into()),
            Page::StoreFailed => ("Bad gateway", "This file could not be read. Try again later.".into()),
            Page::Unavailable => (
                "Site unavailable",
                "This site could not be loaded. Try again later.".into(),
            ),
        }
    }
}

/// A small self-contained HTML page (no external assets: it must render even when nothing else
/// does).
pub(crate) fn page(status: StatusCode, which: Page<'_>, head: bool) -> Response {
    let (title, message) = which.text();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{code} · {title}</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222\">\
         <h1>{title}</h1><p>{message}</p><p style=\"color:#888\">{code} · CloudRunr</p></body></html>\n",
        code = status.as_u16(),
    );
    let mut headers = HeaderMap::new();
    security_headers(&mut headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_REVALIDATE));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(html.len()));
    if which == Page::MethodNotAllowed {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    let body = if head { Body::empty() } else { Body::from(html) };
    with_parts(status, headers, body)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inm(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{v}: {e}")),
            );
        }
        h
    }

    #[test]
    fn etags_are_the_short_hash() {
        let hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(etag_of(hash), "\"0123456789abcdef0123456789abcdef\"");
        assert_eq!(etag_of("abc"), "\"abc\"");
    }

    #[test]
    fn if_none_match_forms() {
        let tag = "\"abc\"";
        assert!(none_match(&inm(&["\"abc\""]), tag));
        assert!(none_match(&inm(&["W/\"abc\""]), tag));
        assert!(none_match(&inm(&["*"]), tag));
        assert!(none_match(&inm(&["\"x\", W/\"abc\" ,\"y\""]), tag));
        assert!(none_match(&inm(&["\"x\"", "\"abc\""]), tag));
        assert!(!none_match(&inm(&["\"x\", \"y\""]), tag));
        assert!(!none_match(&inm(&["abc"]), tag));
        assert!(!none_match(&inm(&["\"abcd\""]), tag));
        assert!(!none_match(&HeaderMap::new(), tag));
    }

    #[test]
    fn caching_policy() {
        assert_eq!(
            cache_control("assets/index-BXq3x8Zl.js", "text/javascript"),
            CACHE_IMMUTABLE
        );
        assert_eq!(cache_control("assets/logo.png", "image/png"), CACHE_REVALIDATE);
        assert_eq!(cache_control("index.html", "text/html"), CACHE_REVALIDATE);
        // HTML revalidates even under a hashed-looking name.
        assert_eq!(cache_control("report-A1b2C3d4e5.html", "text/plain"), CACHE_REVALIDATE);
        assert_eq!(
            cache_control("page-A1b2C3d4e5.x", "Text/HTML; charset=utf-8"),
            CACHE_REVALIDATE
        );
    }

    #[test]
    fn pages_are_html_and_escaped() {
        let r = page(StatusCode::NOT_FOUND, Page::NotDeployed { slug: "<b>" }, false);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let (_, text) = Page::NotDeployed { slug: "<b>" }.text();
        assert!(text.contains("&lt;b&gt;") && !text.contains("<b>"), "{text}");
        let r = page(StatusCode::METHOD_NOT_ALLOWED, Page::MethodNotAllowed, true);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }
}
