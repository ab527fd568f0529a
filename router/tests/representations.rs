//! How `Sites` serves a file's representations: precompressed variants chosen by
//! `Accept-Encoding`, ETags and 304s per representation, byte ranges, HEAD, and hot files from
//! the cache's memory. A real SQLite database and a local artifact store behind a
//! [`CachedStore`], as `cloudrunr` runs the router.

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use platform::artifacts::ContentHash;
use router::{CachedStore, Sites};
use std::path::PathBuf;
use std::sync::Arc;
use test_support::{SiteFile, TestApp};

/// Objects up to this size are kept in the cache's memory; bigger ones stream from disk.
const CACHE_MAX_OBJECT: u64 = 64 * 1024;

const APP: &str = "assets/app-BXq3x8Zl.js";
const APP_JS: &str = "console.log('the app, uncompressed, long enough to matter');";
const APP_BR: &[u8] = b"BR:app";
const APP_GZ: &[u8] = b"GZIP:app!";

/// The test site. The router serves variants as stored, so they need not really be compressed
/// here (the end-to-end tests decode real ones).
fn site_files() -> Vec<SiteFile> {
    let html = "text/html; charset=utf-8";
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    vec![
        SiteFile::new(APP, "text/javascript; charset=utf-8", APP_JS)
            .br(APP_BR)
            .gzip(APP_GZ),
        SiteFile::new("index.html", html, "<!doctype html><div id=app></div>")
            .br("BR:index")
            .gzip("GZIP:index"),
        SiteFile::new("404.html", html, "<h1>custom 404</h1>").gzip("GZIP:404"),
        SiteFile::new("plain.txt", "text/plain; charset=utf-8", "0123456789"),
        SiteFile::new("big.bin", "application/octet-stream", big),
    ]
}

struct Fixture {
    _app: TestApp,
    objects: PathBuf,
    store: Arc<CachedStore>,
    sites: Sites,
}

impl Fixture {
    /// One project, `site`, serving `files` in production (a single-page app if `spa`).
    async fn new(spa: bool, files: &[SiteFile]) -> Self {
        let app = TestApp::new().await;
        let project = app.project("site").await;
        app.deployment(&project)
            .spa(spa)
            .files(files)
            .production()
            .create()
            .await;
        let store = Arc::new(CachedStore::new(app.store.clone(), 1 << 20, CACHE_MAX_OBJECT));
        let sites = Sites::new(app.db.clone(), store.clone());
        sites.load().await.unwrap();
        Self {
            objects: app.artifacts_dir().join("objects"),
            _app: app,
            store,
            sites,
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", path, headers).await
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let response = self.sites.serve("site", req.body(Body::empty()).unwrap()).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 1 << 22).await.unwrap().to_vec();
        Answer { status, headers, body }
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(&name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn has(&self, name: header::HeaderName) -> bool {
        self.headers.contains_key(name)
    }
}

fn etag_of(bytes: &[u8], suffix: &str) -> String {
    format!("\"{}{suffix}\"", &ContentHash::of(bytes).as_str()[..32])
}

#[tokio::test]
async fn accept_encoding_picks_the_variant() {
    let f = Fixture::new(false, &site_files()).await;
    let path = format!("/{APP}");
    let cases = [
        (Some("gzip, deflate, br, zstd"), APP_BR, "br", "-br"),
        (Some("br"), APP_BR, "br", "-br"),
        (Some("gzip"), APP_GZ, "gzip", "-gz"),
        (Some("br;q=0, gzip"), APP_GZ, "gzip", "-gz"),
        (Some("identity"), APP_JS.as_bytes(), "", ""),
        (Some("deflate"), APP_JS.as_bytes(), "", ""),
        (None, APP_JS.as_bytes(), "", ""),
    ];
    let mut etags = std::collections::HashSet::new();
    for (accept, body, coding, suffix) in cases {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept-encoding", *a)).collect();
        let r = f.get(&path, &headers).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}");
        assert_eq!(r.body, body, "{headers:?}");
        assert_eq!(r.header(header::CONTENT_ENCODING), coding, "{headers:?}");
        assert_eq!(r.header(header::CONTENT_LENGTH), body.len().to_string(), "{headers:?}");
        assert_eq!(r.header(header::VARY), "accept-encoding", "{headers:?}");
        assert_eq!(
            r.header(header::ETAG),
            etag_of(APP_JS.as_bytes(), suffix),
            "{headers:?}"
        );
        assert_eq!(r.header(header::CONTENT_TYPE), "text/javascript; charset=utf-8");
        assert_eq!(r.header(header::CACHE_CONTROL), "public, max-age=31536000, immutable");
        assert_eq!(r.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(r.header(header::ACCEPT_RANGES), "bytes");
        etags.insert(r.header(header::ETAG).to_owned());
    }
    assert_eq!(etags.len(), 3, "one ETag per representation: {etags:?}");

    // A file without variants varies on nothing.
    let plain = f.get("/plain.txt", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(plain.body, b"0123456789");
    assert!(!plain.has(header::VARY) && !plain.has(header::CONTENT_ENCODING));
}

#[tokio::test]
async fn if_none_match_is_per_representation() {
    let f = Fixture::new(false, &site_files()).await;
    let path = format!("/{APP}");
    let br_tag = etag_of(APP_JS.as_bytes(), "-br");
    let not_modified = f
        .get(&path, &[("accept-encoding", "br"), ("if-none-match", &br_tag)])
        .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header(header::ETAG), br_tag);
    assert_eq!(not_modified.header(header::VARY), "accept-encoding");
    assert_eq!(
        not_modified.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    // The brotli ETag does not validate the gzip or identity representation.
    let gzip = f
        .get(&path, &[("accept-encoding", "gzip"), ("if-none-match", &br_tag)])
        .await;
    assert_eq!((gzip.status, gzip.body.as_slice()), (StatusCode::OK, APP_GZ));
    let identity = f.get(&path, &[("if-none-match", &br_tag)]).await;
    assert_eq!(identity.status, StatusCode::OK);
    let plain_tag = etag_of(APP_JS.as_bytes(), "");
    let again = f.get(&path, &[("if-none-match", &plain_tag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.header(header::VARY), "accept-encoding");
}

#[tokio::test]
async fn head_describes_the_chosen_representation() {
    let f = Fixture::new(false, &site_files()).await;
    let path = format!("/{APP}");
    for (accept, len, coding) in [
        ("br", APP_BR.len(), "br"),
        ("gzip", APP_GZ.len(), "gzip"),
        ("", APP_JS.len(), ""),
    ] {
        let head = f.send("HEAD", &path, &[("accept-encoding", accept)]).await;
        assert_eq!(head.status, StatusCode::OK, "{accept}");
        assert!(head.body.is_empty());
        assert_eq!(head.header(header::CONTENT_LENGTH), len.to_string(), "{accept}");
        assert_eq!(head.header(header::CONTENT_ENCODING), coding, "{accept}");
        assert_eq!(head.header(header::VARY), "accept-encoding");
    }
    // A Range on HEAD is ignored (ranges are defined for GET only).
    let head = f.send("HEAD", "/big.bin", &[("range", "bytes=0-9")]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header(header::CONTENT_LENGTH), "200000");
}

#[tokio::test]
async fn single_ranges_of_the_identity_bytes() {
    let f = Fixture::new(false, &site_files()).await;
    let digits = "/plain.txt";
    for (range, status, body, content_range) in [
        ("bytes=0-3", 206, "0123", "bytes 0-3/10"),
        ("bytes=7-", 206, "789", "bytes 7-9/10"),
        ("bytes=-2", 206, "89", "bytes 8-9/10"),
        ("bytes=5-100", 206, "56789", "bytes 5-9/10"),
        ("bytes=-100", 206, "0123456789", "bytes 0-9/10"),
        ("bytes=0-1,4-5", 200, "0123456789", ""),
        ("bytes=x-1", 200, "0123456789", ""),
        ("pages=1-2", 200, "0123456789", ""),
    ] {
        let r = f.get(digits, &[("range", range)]).await;
        assert_eq!(r.status.as_u16(), status, "{range}");
        assert_eq!(r.body, body.as_bytes(), "{range}");
        assert_eq!(r.header(header::CONTENT_RANGE), content_range, "{range}");
        assert_eq!(r.header(header::CONTENT_LENGTH), body.len().to_string(), "{range}");
        assert_eq!(r.header(header::ACCEPT_RANGES), "bytes", "{range}");
        assert_eq!(r.header(header::ETAG), etag_of(b"0123456789", ""), "{range}");
    }
    for range in ["bytes=10-", "bytes=10-20", "bytes=-0"] {
        let r = f.get(digits, &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.header(header::CONTENT_RANGE), "bytes */10", "{range}");
        assert!(r.body.is_empty());
    }

    // With a Range, the identity bytes are ranged even if the client takes brotli.
    let path = format!("/{APP}");
    let r = f.get(&path, &[("range", "bytes=0-6"), ("accept-encoding", "br")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, b"console");
    assert!(!r.has(header::CONTENT_ENCODING));
    assert_eq!(r.header(header::VARY), "accept-encoding");
    assert_eq!(r.header(header::CONTENT_RANGE), format!("bytes 0-6/{}", APP_JS.len()));
}

#[tokio::test]
async fn if_range_needs_the_current_etag() {
    let f = Fixture::new(false, &site_files()).await;
    let tag = etag_of(b"0123456789", "");
    let ranged = f.get("/plain.txt", &[("range", "bytes=2-3"), ("if-range", &tag)]).await;
    assert_eq!(
        (ranged.status, ranged.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"23"[..])
    );
    for stale in ["\"0000\"", &format!("W/{tag}"), "Wed, 21 Oct 2015 07:28:00 GMT"] {
        let full = f
            .get("/plain.txt", &[("range", "bytes=2-3"), ("if-range", stale)])
            .await;
        assert_eq!(full.status, StatusCode::OK, "{stale}");
        assert_eq!(full.body, b"0123456789", "{stale}");
        assert!(!full.has(header::CONTENT_RANGE));
    }
}

#[tokio::test]
async fn ranges_do_not_apply_to_fallbacks() {
    let f = Fixture::new(true, &site_files()).await;
    // The SPA's index standing in for a route.
    let route = f.get("/dashboard/settings", &[("range", "bytes=0-4")]).await;
    assert_eq!(route.status, StatusCode::OK);
    assert_eq!(route.body, b"<!doctype html><div id=app></div>");
    assert!(!route.has(header::CONTENT_RANGE) && !route.has(header::ACCEPT_RANGES));
    // Fallbacks are still served compressed, and say so.
    let route = f.get("/dashboard/settings", &[("accept-encoding", "br")]).await;
    assert_eq!(route.body, b"BR:index");
    assert_eq!(route.header(header::VARY), "accept-encoding");
    // The site's 404 page.
    let missing = f
        .get("/missing.js", &[("range", "bytes=0-4"), ("accept-encoding", "gzip")])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body, b"GZIP:404");
    assert_eq!(missing.header(header::CONTENT_ENCODING), "gzip");
    assert!(!missing.has(header::CONTENT_RANGE) && !missing.has(header::ACCEPT_RANGES));
}

#[tokio::test]
async fn big_files_stream_and_range_from_the_store() {
    let files = site_files();
    let big = &files.iter().find(|f| f.path == "big.bin").unwrap().bytes;
    let f = Fixture::new(false, &files).await;
    let whole = f.get("/big.bin", &[]).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(&whole.body, big);
    assert_eq!(whole.header(header::CONTENT_LENGTH), "200000");
    let part = f.get("/big.bin", &[("range", "bytes=100000-150000")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, big[100_000..=150_000]);
    assert_eq!(part.header(header::CONTENT_RANGE), "bytes 100000-150000/200000");
    let tail = f.get("/big.bin", &[("range", "bytes=-7")]).await;
    assert_eq!(tail.body, big[200_000 - 7..]);
    let stats = f.store.stats();
    assert_eq!(stats.cached_objects, 0, "a big file is never held in memory: {stats:?}");
}

#[tokio::test]
async fn hot_files_are_answered_from_memory() {
    let f = Fixture::new(false, &site_files()).await;
    let path = format!("/{APP}");
    // First requests read the objects once and keep them.
    assert_eq!(f.get(&path, &[("accept-encoding", "br")]).await.body, APP_BR);
    assert_eq!(f.get(&path, &[]).await.body, APP_JS.as_bytes());
    // Take the files away from the disk: what is cached is still served, whole or in part.
    std::fs::remove_dir_all(&f.objects).unwrap();
    for _ in 0..3 {
        let r = f.get(&path, &[("accept-encoding", "br")]).await;
        assert_eq!((r.status, r.body.as_slice()), (StatusCode::OK, APP_BR));
    }
    let r = f.get(&path, &[("range", "bytes=8-10")]).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"log"[..])
    );
    // Never read, so not cached: the store is asked, and its failure is a 502.
    let gzip = f.get(&path, &[("accept-encoding", "gzip")]).await;
    assert_eq!(gzip.status, StatusCode::BAD_GATEWAY);
    let stats = f.store.stats();
    assert!(stats.object_hits >= 4, "{stats:?}");
}
