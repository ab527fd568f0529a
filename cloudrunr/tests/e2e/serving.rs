//! How a deployed site's files go over the wire, end to end: a real `cloudrunr serve`, a
//! deployment built from a fixture through a real git server, and raw HTTP — precompressed
//! variants chosen by `Accept-Encoding`, per-representation ETags, byte ranges, HEAD.

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::io::Read;
use test_support::git_server::GitServer;
use test_support::{Platform, fixture};

const SCRIPT: &str = "assets/app-C0mpr3ss.js";
const STYLE: &str = "assets/style-9aB8c7D6.css";

/// A deployed copy of the `compressible` fixture.
struct Site {
    p: Platform,
    _git: GitServer,
    /// A client that neither asks for nor decodes compression: every byte is checked as sent.
    raw: reqwest::Client,
}

impl Site {
    async fn deploy() -> Site {
        let git = GitServer::start().await;
        git.create_repo("packed", &fixture("compressible"));
        let p = Platform::start().await;
        let token = p.signup("Ann").await;
        p.create_project(&token, json!({ "name": "packed", "git_url": git.url("packed") }))
            .await;
        let id = p.deploy(&token, "packed").await;
        let d = p.wait_final(&token, &id).await;
        let log = p.log_text(&token, &id).await;
        assert_eq!(d["state"], "ready", "{log}");
        assert_eq!(d["artifact"]["files"], 4, "variants are not counted as files: {d}");
        assert!(
            log.contains("Precompressed 3 files: 3 brotli and 3 gzip variants"),
            "{log}"
        );
        let raw = reqwest::Client::builder()
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .build()
            .expect("client");
        Site { p, _git: git, raw }
    }

    async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = self
            .raw
            .request(method, format!("http://127.0.0.1:{}{path}", self.p.sites_port))
            .header("host", format!("packed.localhost:{}", self.p.sites_port));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("site request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body").to_vec();
        Answer { status, headers, body }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request(Method::GET, path, headers).await
    }
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The body with its Content-Encoding undone.
    fn decoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.header("content-encoding") {
            "" => out.clone_from(&self.body),
            "br" => {
                brotli::Decompressor::new(&self.body[..], 4096)
                    .read_to_end(&mut out)
                    .expect("valid brotli");
            }
            "gzip" => {
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("valid gzip");
            }
            other => panic!("unexpected Content-Encoding {other}"),
        }
        out
    }
}

fn original(path: &str) -> Vec<u8> {
    std::fs::read(fixture("compressible").join(path)).expect("fixture file")
}

#[tokio::test]
async fn compressed_variants_follow_accept_encoding() {
    let site = Site::deploy().await;
    for (url, file, content_type) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        (&format!("/{SCRIPT}")[..], SCRIPT, "text/javascript; charset=utf-8"),
        (&format!("/{STYLE}")[..], STYLE, "text/css; charset=utf-8"),
    ] {
        let bytes = original(file);
        let mut etags = Vec::new();
        let mut sizes = Vec::new();
        for (accept, coding) in [
            (Some("br"), "br"),
            (Some("gzip"), "gzip"),
            (None, ""),
            (Some("br;q=0, gzip"), "gzip"),
            (Some("gzip, deflate, br, zstd"), "br"),
        ] {
            let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept-encoding", *a)).collect();
            let r = site.get(url, &headers).await;
            let what = format!("{url} with {accept:?}");
            assert_eq!(r.status, StatusCode::OK, "{what}");
            assert_eq!(r.header("content-encoding"), coding, "{what}");
            assert_eq!(r.header("vary"), "accept-encoding", "{what}");
            assert_eq!(r.header("content-type"), content_type, "{what}");
            assert_eq!(r.header("content-length"), r.body.len().to_string(), "{what}");
            assert_eq!(r.header("x-content-type-options"), "nosniff", "{what}");
            assert_eq!(r.decoded(), bytes, "{what}: decodes to the original");
            if coding.is_empty() {
                assert_eq!(r.body.len(), bytes.len(), "{what}");
            } else {
                assert!(r.body.len() < bytes.len() / 2, "{what}: {} bytes", r.body.len());
            }
            etags.push(r.header("etag").to_owned());
            sizes.push(r.body.len());
        }
        // br, gzip and identity each have their own ETag and length.
        assert_eq!(etags[1], etags[3], "{url}");
        assert_eq!(etags[0], etags[4], "{url}");
        assert!(
            etags[0] != etags[1] && etags[1] != etags[2] && etags[0] != etags[2],
            "{etags:?}"
        );
        assert!(etags[0].ends_with("-br\"") && etags[1].ends_with("-gz\""), "{etags:?}");
        assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{url}: {sizes:?}");

        // 304 per representation: the brotli ETag validates brotli only.
        let same = site
            .get(url, &[("accept-encoding", "br"), ("if-none-match", &etags[0])])
            .await;
        assert_eq!(same.status, StatusCode::NOT_MODIFIED, "{url}");
        assert_eq!(same.header("vary"), "accept-encoding");
        assert_eq!(same.header("etag"), etags[0]);
        let other = site
            .get(url, &[("accept-encoding", "gzip"), ("if-none-match", &etags[0])])
            .await;
        assert_eq!(other.status, StatusCode::OK, "{url}");
        assert_eq!(other.header("content-encoding"), "gzip");

        // HEAD: the chosen representation's headers and length, no body.
        let head = site.request(Method::HEAD, url, &[("accept-encoding", "br")]).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-encoding"), "br");
        assert_eq!(head.header("content-length"), sizes[0].to_string(), "{url}");
        assert_eq!(head.header("etag"), etags[0]);
        assert_eq!(head.header("vary"), "accept-encoding");
    }
    assert!(
        site.get(&format!("/{SCRIPT}"), &[])
            .await
            .header("cache-control")
            .contains("immutable")
    );

    // Too small to be worth compressing: served as it is, varying on nothing.
    let tiny = site.get("/tiny.txt", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(tiny.status, StatusCode::OK);
    assert_eq!(tiny.body, original("tiny.txt"));
    assert_eq!(tiny.header("content-encoding"), "");
    assert_eq!(tiny.header("vary"), "");
}

#[tokio::test]
async fn byte_ranges() {
    let site = Site::deploy().await;
    let url = format!("/{SCRIPT}");
    let bytes = original(SCRIPT);
    let len = bytes.len();

    let whole = site.get(&url, &[]).await;
    assert_eq!(whole.header("accept-ranges"), "bytes");
    let etag = whole.header("etag").to_owned();

    // A range is of the file's own bytes, even for a client that takes brotli.
    let part = site
        .get(&url, &[("range", "bytes=100-199"), ("accept-encoding", "br")])
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, bytes[100..200]);
    assert_eq!(part.header("content-range"), format!("bytes 100-199/{len}"));
    assert_eq!(part.header("content-length"), "100");
    assert_eq!(part.header("content-encoding"), "");
    assert_eq!(part.header("etag"), etag);

    let suffix = site.get(&url, &[("range", "bytes=-50")]).await;
    assert_eq!(suffix.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(suffix.body, bytes[len - 50..]);
    assert_eq!(
        suffix.header("content-range"),
        format!("bytes {}-{}/{len}", len - 50, len - 1)
    );

    let open = site.get(&url, &[("range", &format!("bytes={}-", len - 10))]).await;
    assert_eq!(open.body, bytes[len - 10..]);

    let beyond = site.get(&url, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.header("content-range"), format!("bytes */{len}"));
    assert!(beyond.body.is_empty());

    // If-Range: the current ETag keeps the range; anything else sends the whole file.
    let kept = site.get(&url, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(
        (kept.status, kept.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &bytes[..10])
    );
    let changed = site
        .get(&url, &[("range", "bytes=0-9"), ("if-range", "\"an-older-version\"")])
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body, bytes);
    assert_eq!(changed.header("content-range"), "");

    // Several ranges at once: the whole file, as RFC 9110 allows.
    let several = site.get(&url, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!((several.status, several.body.len()), (StatusCode::OK, len));

    // HEAD ignores Range.
    let head = site.request(Method::HEAD, &url, &[("range", "bytes=0-9")]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), len.to_string());
}

/// One raw HTTP/1.1 connection, read response by response.
struct Conn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

/// A response as read off the wire: status, headers (names lowercased), body.
struct Wire {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl Conn {
    async fn open(port: u16) -> Conn {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `METHOD target` for `host`, with `extra` header lines (each ending in CRLF), and
    /// reads the (first) response.
    async fn request(&mut self, method: &str, target: &str, host: &str, extra: &str) -> Wire {
        self.send(format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").as_bytes())
            .await;
        self.response(method == "HEAD").await
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(20), self.stream.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response; `head` for the answer to a HEAD (no body whatever it announces).
    async fn response(&mut self, head: bool) -> Wire {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await, "connection closed before a response");
        };
        let text = String::from_utf8(self.buf[..end].to_vec()).expect("ASCII head");
        self.buf.drain(..end);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().expect("status line");
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let mut wire = Wire {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = match wire.header("content-length") {
            _ if head || status == 304 => 0,
            Some(len) => len.parse().expect("length"),
            None => panic!("no content-length in {text}"),
        };
        while self.buf.len() < len {
            assert!(self.fill().await, "connection closed inside a body");
        }
        wire.body = self.buf.drain(..len).collect();
        wire
    }

    /// Whether the server closed the connection (nothing more after what was read).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }
}

/// The connection as a whole: requests pipelined or split across packets, HEAD, `Connection:
/// close`, and the requests the fast path for sites does not take (a body, `Expect`, an API Host,
/// a huge head, garbage), which must be answered exactly as before on the same connection —
/// nothing read is lost when the connection changes hands.
#[tokio::test]
async fn one_connection_carries_every_kind_of_request() {
    let site = Site::deploy().await;
    let port = site.p.sites_port;
    let host = format!("packed.localhost:{port}");
    let index = original("index.html");
    let script = original(SCRIPT);
    let tiny = original("tiny.txt");

    let mut c = Conn::open(port).await;
    // Two requests in one packet, then one arriving in three pieces.
    c.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\nGET /{SCRIPT} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
        .await;
    let first = c.response(false).await;
    assert!(first.status == 200 && first.body == index, "{}", first.status);
    assert!(first.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert_eq!(first.header("x-content-type-options"), Some("nosniff"));
    let second = c.response(false).await;
    assert!(second.status == 200 && second.body == script, "{}", second.status);
    assert_eq!(
        second.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    for piece in ["GET /tin", "y.txt HTTP/1.1\r\nHo", &format!("st: {host}\r\n\r\n")] {
        c.send(piece.as_bytes()).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let split = c.response(false).await;
    assert_eq!((split.status, split.body.as_slice()), (200, tiny.as_slice()));
    // Not a single-page app: a path it does not have is the platform's 404, kept-alive.
    let missing = c.request("GET", "/some/route", &host, "").await;
    assert_eq!(missing.status, 404);
    assert!(String::from_utf8_lossy(&missing.body).contains("Not found"));

    // HEAD: the GET's headers, no body — from the answer just cached, and before it is.
    for path in ["/", "/tiny.txt"] {
        let head = c.request("HEAD", path, &host, "").await;
        let get = c.request("GET", path, &host, "").await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some(get.body.len().to_string().as_str()));
        assert_eq!(head.header("etag"), get.header("etag"));
    }

    // A request with a body (the site says 405), one expecting 100-continue, and one for the
    // API: all on this same connection, in one packet with a site request after them.
    let api_host = format!("127.0.0.1:{port}");
    c.send(
        format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\n\r\nx=1\
             GET /api/openapi.json HTTP/1.1\r\nHost: {api_host}\r\n\r\n\
             GET /{SCRIPT} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let post = c.response(false).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let api = c.response(false).await;
    assert_eq!(api.status, 200);
    let spec: serde_json::Value = serde_json::from_slice(&api.body).expect("the OpenAPI document");
    assert!(spec["openapi"].is_string());
    let after = c.response(false).await;
    assert!(after.status == 200 && after.body == script, "{}", after.status);

    // Connection: close is honoured, and said back.
    let mut c = Conn::open(port).await;
    let last = c.request("GET", "/tiny.txt", &host, "Connection: close\r\n").await;
    assert_eq!(last.status, 200);
    assert_eq!(last.header("connection"), Some("close"));
    assert!(c.closed().await, "the server closes after Connection: close");

    // A head longer than the fast path takes, and a malformed one: the general server answers.
    let mut c = Conn::open(port).await;
    let cookie = "a".repeat(20 * 1024);
    let long = c
        .request("GET", "/tiny.txt", &host, &format!("Cookie: {cookie}\r\n"))
        .await;
    assert_eq!((long.status, long.body.as_slice()), (200, tiny.as_slice()));
    c.send(b"GET / HTTP/1.1\r\nHost: \x01bad\r\nbroken header line\r\n\r\n")
        .await;
    let bad = c.response(false).await;
    assert_eq!(bad.status, 400);

    // Expect: 100-continue on a site GET is taken over too, and still answered.
    let mut c = Conn::open(port).await;
    let mut expect = c.request("GET", "/tiny.txt", &host, "Expect: 100-continue\r\n").await;
    if expect.status == 100 {
        expect = c.response(false).await;
    }
    assert_eq!((expect.status, expect.body.as_slice()), (200, tiny.as_slice()));

    // Conditional and ranged requests bypass the cache of answers: each gets its own answer.
    let etag = first.header("etag").expect("an ETag").to_owned();
    let mut c = Conn::open(port).await;
    let revalidated = c
        .request("GET", "/", &host, &format!("If-None-Match: {etag}\r\n"))
        .await;
    assert_eq!(revalidated.status, 304);
    let part = c.request("GET", "/tiny.txt", &host, "Range: bytes=0-1\r\n").await;
    assert_eq!((part.status, part.body.as_slice()), (206, &tiny[..2]));
    let whole = c.request("GET", "/tiny.txt", &host, "").await;
    assert_eq!((whole.status, whole.body.as_slice()), (200, tiny.as_slice()));
}
