//! Building responses: file responses from the artifact store (from memory when the store
//! holds the bytes, streamed otherwise), content negotiation between a file and its
//! precompressed variants, conditional and range requests, caching headers, and the platform's
//! own small HTML pages.
//!
//! This is the hot path of every site request: headers are built from static values where
//! they can be, and nothing is logged unless something is wrong.

use crate::assets::is_hashed_asset;
use crate::encoding::{self, Coding};
use crate::range::{self, Ranged};
use crate::resolve::Resolved;
use askama::Template;
use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use platform::artifacts::{ArtifactStore, ContentHash, FileEntry, ObjectReader, StoreError};
use platform::site_rules::path::extension;
use std::sync::LazyLock;
use tokio_util::io::ReaderStream;

/// For files whose name carries their content hash: they can never change.
pub(crate) const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For everything else: a new deployment must show up on the next load.
pub(crate) const CACHE_REVALIDATE: &str = "public, max-age=0, must-revalidate";

/// Read size when streaming objects: fewer, larger chunks than the 4 KiB default.
const STREAM_CHUNK: usize = 64 * 1024;

/// Hex digits of the content hash in an ETag: 128 bits are plenty to tell versions of one URL
/// apart, and keep the header short.
const ETAG_HEX: usize = 32;

/// The validator of a representation: the file's content hash, shortened, with a suffix per
/// content coding (`"<hash>"`, `"<hash>-br"`, `"<hash>-gz"`), so that caches never take one
/// coding for another and `If-None-Match` is answered per representation.
pub(crate) fn etag_of(hash: &ContentHash, coding: Coding) -> HeaderValue {
    let short = hash.as_str().get(..ETAG_HEX).unwrap_or(hash.as_str());
    let suffix: &[u8] = match coding {
        Coding::Identity => b"",
        Coding::Brotli => b"-br",
        Coding::Gzip => b"-gz",
    };
    // Built in place rather than with format!: one allocation, the header's own.
    let mut tag = [0u8; ETAG_HEX + 5];
    let len = short.len() + suffix.len() + 2;
    tag[0] = b'"';
    tag[1..=short.len()].copy_from_slice(short.as_bytes());
    tag[short.len() + 1..len - 1].copy_from_slice(suffix);
    tag[len - 1] = b'"';
    HeaderValue::from_bytes(&tag[..len]).expect("hex digits, a suffix and quotes make a valid header")
}

/// Whether `If-None-Match` (any number of headers, each a comma list, `*`, weak `W/` tags) matches
/// `etag`. The comparison is weak, as RFC 9110 requires for `If-None-Match`.
pub(crate) fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|tag| tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == etag)
}

/// HTML is the entry point that names the hashed assets, so it must always revalidate, whatever
/// its name looks like.
pub(crate) fn cache_control(path: &str, content_type: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let html = content_type
        .trim_start()
        .get(..9)
        .is_some_and(|t| t.eq_ignore_ascii_case("text/html"))
        || extension(name).is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if !html && is_hashed_asset(path) {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    }
}

/// The `Content-Type` header of a file: the builder's common types are static values (no
/// allocation, no validation per request); anything else is checked and copied.
fn content_type_value(content_type: &str) -> HeaderValue {
    const COMMON: &[&str] = &[
        "text/html; charset=utf-8",
        "text/javascript; charset=utf-8",
        "text/css; charset=utf-8",
        "application/json; charset=utf-8",
        "image/svg+xml; charset=utf-8",
        "text/plain; charset=utf-8",
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/x-icon",
        "font/woff2",
        "application/wasm",
    ];
    match COMMON.iter().find(|c| **c == content_type) {
        Some(common) => HeaderValue::from_static(common),
        None => {
            HeaderValue::from_str(content_type).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
        }
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

/// The representation of a file chosen for a request: the file itself or one of its variants.
struct Representation<'m> {
    coding: Coding,
    hash: &'m ContentHash,
    size: u64,
}

impl<'m> Representation<'m> {
    fn of(entry: &'m FileEntry, coding: Coding) -> Self {
        let variant = match coding {
            Coding::Identity => None,
            Coding::Brotli => entry.encodings.br.as_ref(),
            Coding::Gzip => entry.encodings.gzip.as_ref(),
        };
        match variant {
            Some(v) => Self {
                coding,
                hash: &v.hash,
                size: v.size,
            },
            None => Self {
                coding: Coding::Identity,
                hash: &entry.hash,
                size: entry.size,
            },
        }
    }

    fn content_encoding(&self) -> Option<HeaderValue> {
        match self.coding {
            Coding::Identity => None,
            Coding::Brotli => Some(HeaderValue::from_static("br")),
            Coding::Gzip => Some(HeaderValue::from_static("gzip")),
        }
    }
}

/// Answers with the file a request path names.
///
/// * The representation: with a `Range` header, the file itself (ranges are of its bytes);
///   otherwise the best of the file and its variants for `Accept-Encoding`. A file with
///   variants always says `Vary: Accept-Encoding`, whatever was chosen.
/// * `If-None-Match` against the chosen representation's ETag → 304.
/// * A single satisfiable range → 206; outside the file → 416.
/// * `head` answers from the manifest alone: the object is not opened, so a HEAD costs no store
///   I/O.
/// * The body comes from memory when the store holds the object there, else it is streamed.
pub(crate) async fn file(
    store: &dyn ArtifactStore,
    found: Resolved<'_>,
    request_headers: &HeaderMap,
    head: bool,
) -> Response {
    let exact = found.status == StatusCode::OK;
    answer(store, found, request_headers, head, exact).await
}

/// Answers with a file standing in for a path the deployment does not have: a single-page app's
/// `index.html` (200) or the site's `404.html` (404). As [`file`], except that it is not the
/// resource asked for, so byte ranges do not apply (nor does `If-None-Match` on a 404).
pub(crate) async fn fallback(
    store: &dyn ArtifactStore,
    found: Resolved<'_>,
    request_headers: &HeaderMap,
    head: bool,
) -> Response {
    answer(store, found, request_headers, head, false).await
}

/// [`file`] and [`fallback`]; `exact` says whether ranges apply.
async fn answer(
    store: &dyn ArtifactStore,
    found: Resolved<'_>,
    request_headers: &HeaderMap,
    head: bool,
    exact: bool,
) -> Response {
    let entry = found.entry;
    let ranged = exact && !head && request_headers.contains_key(header::RANGE);
    let coding = if ranged {
        Coding::Identity
    } else {
        encoding::choose(request_headers, &entry.encodings)
    };
    let rep = Representation::of(entry, coding);
    let etag = etag_of(&entry.hash, rep.coding);

    let mut headers = HeaderMap::with_capacity(16);
    security_headers(&mut headers);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control(found.path.as_str(), &entry.content_type)),
    );
    if !entry.encodings.is_empty() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }

    // Only a successful answer may become a 304: a 404 page is not the resource asked for.
    if found.status == StatusCode::OK && none_match(request_headers, &etag) {
        headers.insert(header::ETAG, etag);
        return with_parts(StatusCode::NOT_MODIFIED, headers, Body::empty());
    }

    let part = if ranged {
        range::evaluate(request_headers, rep.size, etag.as_bytes())
    } else {
        Ranged::Full
    };
    headers.insert(header::ETAG, etag);
    headers.insert(header::CONTENT_TYPE, content_type_value(&entry.content_type));
    if let Some(value) = rep.content_encoding() {
        headers.insert(header::CONTENT_ENCODING, value);
    }
    if exact {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }

    let (status, start, len) = match part {
        Ranged::Full => (found.status, 0, rep.size),
        Ranged::Part { start, end } => {
            headers.insert(header::CONTENT_RANGE, content_range(start, end, rep.size));
            (StatusCode::PARTIAL_CONTENT, start, end - start)
        }
        Ranged::Unsatisfiable => {
            headers.insert(header::CONTENT_RANGE, unsatisfied_range(rep.size));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return with_parts(StatusCode::RANGE_NOT_SATISFIABLE, headers, Body::empty());
        }
    };

    if head {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        return with_parts(status, headers, Body::empty());
    }

    let body = match body(store, &rep, start, len, part == Ranged::Full).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(path = found.path.as_str(), hash = %rep.hash, error = %e, "cannot read a deployed file");
            return page(StatusCode::BAD_GATEWAY, Page::StoreFailed, false);
        }
    };
    // The length sent is the length of what is sent, so the framing is always right.
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len));
    with_parts(status, headers, body.body)
}

/// A body with its exact length.
struct Sized {
    body: Body,
    len: u64,
}

/// `len` bytes of the representation from `start`: a slice of the store's memory when it holds
/// the object there (one `Bytes`, no copy, no reader), else streamed from the store. `whole`
/// says the range is the entire object, which a store's size may contradict (a manifest that
/// disagrees with its object): then what the store has is sent, and the disagreement logged.
async fn body(
    store: &dyn ArtifactStore,
    rep: &Representation<'_>,
    start: u64,
    len: u64,
    whole: bool,
) -> Result<Sized, StoreError> {
    if let Some(bytes) = store.cached_object(rep.hash) {
        let bytes = if whole {
            warn_on_size(rep, bytes.len() as u64);
            bytes
        } else {
            let end = platform::artifacts::check_range(rep.hash, start, len, bytes.len() as u64)?;
            // Both ends are within `bytes.len()`, a usize.
            bytes.slice(start as usize..end as usize)
        };
        let len = bytes.len() as u64;
        return Ok(Sized {
            body: Body::from(bytes),
            len,
        });
    }
    let object = if whole {
        let object = store.get_object(rep.hash).await?;
        warn_on_size(rep, object.len);
        object
    } else {
        store.get_object_range(rep.hash, start, len).await?
    };
    Ok(streamed(object))
}

fn warn_on_size(rep: &Representation<'_>, stored: u64) {
    if stored != rep.size {
        tracing::warn!(
            hash = %rep.hash,
            manifest = rep.size,
            stored,
            "stored object size differs from the manifest"
        );
    }
}

fn streamed(object: ObjectReader) -> Sized {
    // A small object needs a small buffer, not a 64 KiB one.
    let chunk = usize::try_from(object.len).map_or(STREAM_CHUNK, |len| len.clamp(1, STREAM_CHUNK));
    Sized {
        body: Body::from_stream(ReaderStream::with_capacity(object.reader, chunk)),
        len: object.len,
    }
}

/// `Content-Range: bytes start-last/size` for the bytes `start..end`.
fn content_range(start: u64, end: u64, size: u64) -> HeaderValue {
    let value = format!("bytes {start}-{}/{size}", end - 1);
    HeaderValue::from_str(&value).expect("digits make a valid header")
}

/// `Content-Range: bytes */size`, the answer's part of a 416.
fn unsatisfied_range(size: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes */{size}")).expect("digits make a valid header")
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
    fn title(&self) -> &'static str {
        match self {
            Page::NoSite => "No site here",
            Page::NotDeployed { .. } => "Nothing deployed yet",
            Page::NotFound => "Not found",
            Page::BadPath => "Bad request",
            Page::MethodNotAllowed => "Method not allowed",
            Page::StoreFailed => "Bad gateway",
            Page::Unavailable => "Site unavailable",
        }
    }
}

/// `site/page.html`: a page's title here, its message in the template.
#[derive(Template)]
#[template(path = "site/page.html")]
struct PageHtml<'a> {
    code: u16,
    title: &'static str,
    page: Page<'a>,
}

/// A small self-contained HTML page (no external assets: it must render even when nothing else
/// does).
pub(crate) fn page(status: StatusCode, which: Page<'_>, head: bool) -> Response {
    // The pages that bots and broken links ask for over and over are rendered once.
    static NOT_FOUND: LazyLock<Bytes> = LazyLock::new(|| render(StatusCode::NOT_FOUND, Page::NotFound));
    static NO_SITE: LazyLock<Bytes> = LazyLock::new(|| render(StatusCode::NOT_FOUND, Page::NoSite));
    let html = match (status, which) {
        (StatusCode::NOT_FOUND, Page::NotFound) => NOT_FOUND.clone(),
        (StatusCode::NOT_FOUND, Page::NoSite) => NO_SITE.clone(),
        _ => render(status, which),
    };
    let mut headers = HeaderMap::with_capacity(8);
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

fn render(status: StatusCode, which: Page<'_>) -> Bytes {
    let html = PageHtml {
        code: status.as_u16(),
        title: which.title(),
        page: which,
    };
    // Strings and numbers only: formatting them into a `String` cannot fail.
    html.render().expect("a page renders").into()
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
    fn etags_are_the_short_hash_per_coding() {
        let hash = ContentHash::parse("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(etag_of(&hash, Coding::Identity), "\"0123456789abcdef0123456789abcdef\"");
        assert_eq!(
            etag_of(&hash, Coding::Brotli),
            "\"0123456789abcdef0123456789abcdef-br\""
        );
        assert_eq!(etag_of(&hash, Coding::Gzip), "\"0123456789abcdef0123456789abcdef-gz\"");
    }

    #[test]
    fn common_content_types_are_static() {
        assert_eq!(
            content_type_value("text/html; charset=utf-8"),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type_value("application/x-custom"), "application/x-custom");
        assert_eq!(content_type_value("bad\nvalue"), "application/octet-stream");
    }

    #[test]
    fn range_headers() {
        assert_eq!(content_range(0, 1, 10), "bytes 0-0/10");
        assert_eq!(content_range(5, 10, 10), "bytes 5-9/10");
        assert_eq!(unsatisfied_range(10), "bytes */10");
    }

    #[test]
    fn if_none_match_forms() {
        let tag = &HeaderValue::from_static("\"abc\"");
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
        let html = render(StatusCode::NOT_FOUND, Page::NotDeployed { slug: "<b>" });
        let text = String::from_utf8_lossy(&html);
        assert!(
            text.contains("<strong>&#60;b&#62;</strong>") && !text.contains("<b>"),
            "{text}"
        );
        let r = page(StatusCode::METHOD_NOT_ALLOWED, Page::MethodNotAllowed, true);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }

    #[tokio::test]
    async fn pages_rendered_once_are_the_same_pages() {
        for (status, which) in [
            (StatusCode::NOT_FOUND, Page::NotFound),
            (StatusCode::NOT_FOUND, Page::NoSite),
            (StatusCode::GONE, Page::NotFound),
        ] {
            for _ in 0..2 {
                let r = page(status, which, false);
                assert_eq!(r.status(), status);
                let len = r.headers()[header::CONTENT_LENGTH].to_str().unwrap().to_owned();
                let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
                assert_eq!(body, render(status, which));
                assert_eq!(len, body.len().to_string());
                let text = String::from_utf8_lossy(&body);
                assert!(text.contains(&format!("<title>{} ·", status.as_u16())), "{text}");
            }
        }
    }
}
