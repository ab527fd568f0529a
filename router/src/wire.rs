//! HTTP/1.1 for site traffic, straight from the socket.
//!
//! Almost every request a site gets is the same shape: `GET` or `HEAD`, HTTP/1.1, a Host under
//! the sites domain, no body. [`SiteConnections::serve`] answers those itself — the request head
//! parsed in place, the answer from [`Sites::answer`] (the same function as every other path,
//! so the semantics are one), the response head written into a reused buffer and sent with its
//! body in one write — which costs a fraction of a general-purpose server's per-request work.
//!
//! Anything else is not handled here at all: the first request that is not of that shape (another
//! method, a body, `Expect`, `Upgrade`, HTTP/1.0, a head over [`MAX_HEAD`], an unparsable head, a
//! Host that is not a site, the HTTP/2 preface) ends the fast path, and the connection is handed
//! back — with every byte read so far and not yet answered — for the general server to continue
//! from exactly that request. So the fast path never needs to reject anything, and never sees a
//! request body: request smuggling has nothing to work with here.

use crate::Sites;
use crate::cache::lock;
use axum::body::HttpBody;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, StatusCode, Uri, Version};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use nix::sys::socket::MsgFlags;
use platform::settings::SitesSettings;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The largest request head answered here; a longer one goes to the general server.
const MAX_HEAD: usize = 16 * 1024;
/// Header lines in a head answered here.
const MAX_HEADERS: usize = 64;
/// How long a kept-alive connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request head may take to arrive once it has begun.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How late a connection's deadline may be: it is moved on only when it would move by more, so
/// that a busy connection does not take a timer off and put one back for every request.
const DEADLINE_SLACK: Duration = Duration::from_secs(1);
/// How long a response may wait for the client to take more of it (nginx's `send_timeout`).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// A body at most this long is copied behind the head and sent with one `write`; a longer one is
/// sent from where it is, with a vectored write.
const COPY_BODY: usize = 16 * 1024;

/// How a connection served here ended.
pub enum Ended {
    /// Closed: by the client, after `Connection: close`, on a timeout, at shutdown, or on an
    /// I/O error.
    Closed,
    /// The next request is not for this path: serve the connection from here, starting with
    /// `unread` (what was read from the socket and not answered).
    HandOff { stream: TcpStream, unread: Bytes },
}

/// Serves site requests on connections, handing off what it does not answer.
#[derive(Clone)]
pub struct SiteConnections {
    sites: Sites,
    settings: Arc<SitesSettings>,
    answers: Arc<Answers>,
    answer_dir: Arc<Path>,
}

/// A request head this path answers, as it lies in the read buffer.
struct Head<'b> {
    method: Method,
    target: &'b str,
    host: &'b str,
    /// The site label in `host`.
    label: &'b str,
    close: bool,
    /// The headers the answer depends on.
    read: ReadHeaders<'b>,
    /// Whether the answer may come from (and go to) the cache of answers: no conditional or
    /// range header, at most one `Accept-Encoding`.
    cacheable: bool,
    len: usize,
}

impl Head<'_> {
    fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// The request, for [`Sites::answer`]; `None` for a target that is not a valid URI.
    fn parts(&self) -> Option<axum::http::request::Parts> {
        let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(self.target.as_bytes())).ok()?;
        let mut request = Request::new(());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.read.to_map()?;
        Some(request.into_parts().0)
    }
}

/// Of a request's headers, those its answer depends on ([`READ_HEADERS`]), left where they lie in
/// the read buffer: nothing is copied unless the answer has to be computed.
#[derive(Default)]
struct ReadHeaders<'b> {
    /// Index in [`READ_HEADERS`] and value.
    items: [(usize, &'b [u8]); MAX_READ_HEADERS],
    len: usize,
}

/// More of [`READ_HEADERS`] than this in one request, and it goes to the general server.
const MAX_READ_HEADERS: usize = 8;

impl<'b> ReadHeaders<'b> {
    /// Adds one; false when there is no room left.
    fn push(&mut self, index: usize, value: &'b [u8]) -> bool {
        let Some(slot) = self.items.get_mut(self.len) else {
            return false;
        };
        *slot = (index, value);
        self.len += 1;
        true
    }

    fn items(&self) -> &[(usize, &'b [u8])] {
        &self.items[..self.len]
    }

    fn accept_encoding(&self) -> Option<&'b [u8]> {
        self.items()
            .iter()
            .find(|(i, _)| READ_HEADERS[*i] == header::ACCEPT_ENCODING)
            .map(|(_, v)| *v)
    }

    /// As a header map; `None` if a value is not a valid header value (`httparse` lets none
    /// through that is not).
    fn to_map(&self) -> Option<HeaderMap> {
        let mut map = HeaderMap::with_capacity(self.len);
        for (i, value) in self.items() {
            map.append(READ_HEADERS[*i].clone(), HeaderValue::from_bytes(value).ok()?);
        }
        Some(map)
    }
}

/// The answers last given, by what they answered, for as long as the routing table they were
/// computed from is current (keyed on [`Sites::generation`]: a promotion, rollback or any other
/// table change makes every older answer a miss). A cached answer is exactly the bytes
/// [`Sites::answer`] gave, less the `Date`. Bounded by entries and bytes; when full it starts
/// over.
#[derive(Default)]
struct Answers {
    map: Mutex<AnswerMap>,
}

#[derive(Default)]
struct AnswerMap {
    entries: HashMap<Box<[u8]>, Arc<Answer>>,
    bytes: usize,
}

struct Answer {
    generation: u64,
    /// Status line and headers, without `Date` and the blank line.
    head: Bytes,
    body: AnswerBody,
}

/// A cached answer's body: bytes to copy into the socket, or — when long enough that the copy is
/// what costs — an unnamed file the kernel sends from its page cache itself (`sendfile`), as a
/// static file server does. (A `memfd` would do without a directory, but `sendfile` from shmem
/// measured twice as slow as from a disk file's page cache.)
enum AnswerBody {
    Memory(Bytes),
    File(AnswerFile),
}

/// A body in a file. Each holds a file descriptor: [`ANSWER_FILES`] at most exist at once.
struct AnswerFile {
    file: std::fs::File,
    len: usize,
}

/// Answer bodies held in files at most, so that the cache never uses up the process's
/// descriptors (a longer body beyond that is kept in memory and copied).
const ANSWER_FILES: usize = 128;
static LIVE_ANSWER_FILES: AtomicUsize = AtomicUsize::new(0);

impl Drop for AnswerFile {
    fn drop(&mut self) {
        LIVE_ANSWER_FILES.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AnswerBody {
    /// Keeps `data` as a body, in a file in `dir` when it is long and a file can be made there.
    fn of(data: Bytes, dir: &Path) -> Self {
        if data.len() < SENDFILE_MIN {
            return Self::Memory(data);
        }
        if LIVE_ANSWER_FILES.fetch_add(1, Ordering::Relaxed) >= ANSWER_FILES {
            LIVE_ANSWER_FILES.fetch_sub(1, Ordering::Relaxed);
            return Self::Memory(data);
        }
        match answer_file(dir, &data) {
            Ok(file) => Self::File(AnswerFile { file, len: data.len() }),
            Err(e) => {
                LIVE_ANSWER_FILES.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!("cannot keep an answer in a file in {}: {e}", dir.display());
                Self::Memory(data)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Memory(bytes) => bytes.len(),
            Self::File(f) => f.len,
        }
    }
}

/// An unnamed file in `dir` holding `data` (`O_TMPFILE`: it has no name to leave behind).
fn answer_file(dir: &Path, data: &[u8]) -> io::Result<std::fs::File> {
    use std::io::Write;
    let mut file = tempfile::tempfile_in(dir)?;
    file.write_all(data)?;
    Ok(file)
}

/// Cached answers at most.
const ANSWERS: usize = 4096;
/// Bytes of cached answers at most (bodies are mostly shared with the store's cache).
const ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// Bodies longer than this are not cached as answers.
const ANSWER_BODY: usize = 1024 * 1024;
/// Cached bodies from this long are sent with `sendfile` rather than copied.
const SENDFILE_MIN: usize = 32 * 1024;

/// Where an answer is to be kept, if it turns out cacheable: the cache, the request's key, and
/// the generation read before answering.
struct Keep<'a> {
    answers: &'a Answers,
    key: &'a [u8],
    generation: u64,
    /// Where long bodies go (see [`AnswerBody`]).
    dir: &'a Path,
}

impl Keep<'_> {
    fn store(&self, head: &[u8], body: Bytes) {
        let answer = Answer {
            generation: self.generation,
            head: Bytes::copy_from_slice(head),
            body: AnswerBody::of(body, self.dir),
        };
        self.answers.put(self.key, answer);
    }
}

impl Answers {
    fn get(&self, key: &[u8], generation: u64) -> Option<Arc<Answer>> {
        let map = lock(&self.map);
        map.entries.get(key).filter(|a| a.generation == generation).cloned()
    }

    fn put(&self, key: &[u8], answer: Answer) {
        let size = key.len() + answer.head.len() + answer.body.len();
        let mut map = lock(&self.map);
        if map.entries.len() >= ANSWERS || map.bytes + size > ANSWER_BYTES {
            map.entries.clear();
            map.bytes = 0;
        }
        map.bytes += size;
        if let Some(old) = map.entries.insert(key.into(), Arc::new(answer)) {
            map.bytes -= key.len() + old.head.len() + old.body.len();
        }
    }
}

impl SiteConnections {
    /// `answer_dir`: a directory on disk for the bodies of long answers kept (unnamed files,
    /// gone when closed); the data directory does.
    pub fn new(sites: Sites, settings: Arc<SitesSettings>, answer_dir: &Path) -> Self {
        Self {
            sites,
            settings,
            answers: Arc::default(),
            answer_dir: answer_dir.into(),
        }
    }

    /// Answers requests on `stream` for as long as they are site requests of the common shape.
    pub async fn serve(&self, mut stream: TcpStream, shutdown: &CancellationToken) -> Ended {
        let mut buf = BytesMut::with_capacity(4096);
        let mut out = Vec::with_capacity(1024);
        let mut key = Vec::with_capacity(256);
        // One timer and one wait for shutdown per connection, not one of each per read.
        let shutdown = shutdown.cancelled();
        let deadline = tokio::time::sleep(IDLE_TIMEOUT);
        tokio::pin!(shutdown, deadline);
        loop {
            let head = loop {
                match self.parse(&buf) {
                    Parsed::Fast(head) => break head,
                    Parsed::HandOff => return hand_off(stream, buf),
                    Parsed::Partial => {}
                }
                if buf.len() >= MAX_HEAD {
                    return hand_off(stream, buf);
                }
                // Waiting for a new request is idling; for the rest of one, a slow client.
                let wait = if buf.is_empty() { IDLE_TIMEOUT } else { HEAD_TIMEOUT };
                let want = Instant::now() + wait;
                let set = deadline.deadline();
                if want < set || want > set + DEADLINE_SLACK {
                    deadline.as_mut().reset(want);
                }
                buf.reserve(4096);
                let read = tokio::select! {
                    biased;
                    read = stream.read_buf(&mut buf) => read,
                    () = &mut deadline => return Ended::Closed,
                    () = &mut shutdown => return Ended::Closed,
                };
                match read {
                    Ok(0) | Err(_) => return Ended::Closed,
                    Ok(_) => {}
                }
            };
            let (is_head, close, len) = (head.is_head(), head.close, head.len);
            // Read before answering: an answer is good for the generation it started in.
            let generation = self.sites.generation();
            if head.cacheable {
                key.clear();
                key.extend_from_slice(head.host.as_bytes());
                key.push(0);
                key.extend_from_slice(head.target.as_bytes());
                key.push(0);
                key.extend_from_slice(head.read.accept_encoding().unwrap_or_default());
                if let Some(answer) = self.answers.get(&key, generation) {
                    buf.advance(len);
                    if write_cached(&stream, &mut out, &answer, is_head, close).await.is_err() || close {
                        return Ended::Closed;
                    }
                    continue;
                }
            }
            let Some(parts) = head.parts() else {
                return hand_off(stream, buf);
            };
            let response = self.sites.answer(head.label, &parts).await;
            let keep = (head.cacheable && !is_head).then(|| Keep {
                answers: &self.answers,
                key: &key,
                generation,
                dir: &self.answer_dir,
            });
            let written = write_response(&stream, &mut out, response, is_head, close, keep).await;
            buf.advance(len);
            if written.is_err() || close {
                return Ended::Closed;
            }
        }
    }

    /// Reads one request head from the front of `buf`.
    fn parse<'b>(&self, buf: &'b [u8]) -> Parsed<'b> {
        if buf.is_empty() {
            return Parsed::Partial;
        }
        let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut lines);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            // Too many headers, or not HTTP/1 at all: the general server says what is wrong.
            Err(_) => return Parsed::HandOff,
        };
        let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
            return Parsed::HandOff;
        };
        let method = match method {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            _ => return Parsed::HandOff,
        };
        // Origin form only; an absolute URI names its host itself.
        if !target.starts_with('/') {
            return Parsed::HandOff;
        }
        let mut host = None;
        let mut close = false;
        let mut cacheable = true;
        let mut read = ReadHeaders::default();
        for line in req.headers.iter() {
            let name = line.name;
            if name.eq_ignore_ascii_case("host") {
                if host.is_some() {
                    return Parsed::HandOff;
                }
                host = Some(line.value);
            } else if name.eq_ignore_ascii_case("connection") {
                for token in line.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                        // `Upgrade`, or hop-by-hop headers named: not this path's business.
                        return Parsed::HandOff;
                    }
                }
            } else if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect")
            {
                // A body, or a change of protocol: for the general server.
                return Parsed::HandOff;
            } else if let Some(index) = READ_HEADERS.iter().position(|h| name.eq_ignore_ascii_case(h.as_str())) {
                // Only what site answers depend on is kept (see `READ_HEADERS`).
                if READ_HEADERS[index] != header::ACCEPT_ENCODING || read.accept_encoding().is_some() {
                    cacheable = false;
                }
                if !read.push(index, line.value) {
                    return Parsed::HandOff;
                }
            }
        }
        let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else {
            return Parsed::HandOff;
        };
        let Some(label) = self.settings.site_label(host) else {
            return Parsed::HandOff;
        };
        if !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Parsed::HandOff;
        }
        Parsed::Fast(Head {
            method,
            target,
            host,
            label,
            close,
            read,
            cacheable,
            len,
        })
    }
}

/// The request headers a site's answer depends on (content negotiation, conditional and range
/// requests); the rest are not copied out of the read buffer.
static READ_HEADERS: [HeaderName; 4] = [
    header::ACCEPT_ENCODING,
    header::IF_NONE_MATCH,
    header::RANGE,
    header::IF_RANGE,
];

/// What one parse of the read buffer found. `Head` is a few hundred bytes of slices into the
/// buffer; it lives on the stack for one request, and boxing it would allocate per request.
#[allow(clippy::large_enum_variant)]
enum Parsed<'b> {
    Fast(Head<'b>),
    Partial,
    HandOff,
}

fn hand_off(stream: TcpStream, buf: BytesMut) -> Ended {
    Ended::HandOff {
        stream,
        unread: buf.freeze(),
    }
}

/// Writes `response` on `stream`: the head into `out` (cleared first), then the body.
///
/// The framing is always right: the length sent is the body's own when it knows it exactly (a
/// `Content-Length` that says otherwise is replaced), else the one announced, and the body is held
/// to it — longer is cut, shorter ends the connection. A body of no known length is delimited by
/// closing the connection.
async fn write_response(
    stream: &TcpStream,
    out: &mut Vec<u8>,
    response: axum::response::Response,
    head: bool,
    close: bool,
    keep: Option<Keep<'_>>,
) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let bodiless = head || status == StatusCode::NOT_MODIFIED || status == StatusCode::NO_CONTENT;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let exact = HttpBody::size_hint(&body).exact();
    let length = exact.or(declared);
    let close = close || (!bodiless && length.is_none());
    // Only whole answers from memory, of a status that is the same for everyone asking.
    let keep = keep.filter(|_| CACHEABLE.contains(&status) && exact.is_some_and(|n| n <= ANSWER_BODY as u64) && !head);

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if !bodiless && name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let (false, Some(length)) = (bodiless, length) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let fixed = out.len();
    end_head(out, close);

    if bodiless || length == Some(0) {
        if let Some(keep) = keep {
            keep.store(&out[..fixed], Bytes::new());
        }
        return send_all(stream, out).await;
    }
    let mut left = length.unwrap_or(u64::MAX);
    let mut first = true;
    while left > 0 {
        let data = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => take(data, &mut left),
                Err(_) => continue,
            },
            Some(Err(e)) => {
                // Nothing more can be sent in this response's frame: end the connection, so
                // that the client sees a truncated answer as one.
                tracing::warn!("a site response's body failed: {e}");
                return Err(io::Error::other(e));
            }
            None => break,
        };
        if first {
            first = false;
            if let Some(keep) = &keep
                && Some(data.len() as u64) == length
            {
                keep.store(&out[..fixed], data.clone());
            }
            if data.len() <= COPY_BODY {
                out.extend_from_slice(&data);
                send_all(stream, out).await?;
            } else {
                write_two(stream, out, &data).await?;
            }
        } else {
            send_all(stream, &data).await?;
        }
    }
    if first {
        send_all(stream, out).await?;
    }
    if left != 0 && length.is_some() {
        // Shorter than announced: the client is still waiting for bytes that will not come.
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a site body ended early"));
    }
    Ok(())
}

/// Statuses whose answers are cached: the same for everyone asking the same thing (not 304, which
/// answers a condition, nor 206/416, nor the 5xx of a failure that may pass).
const CACHEABLE: [StatusCode; 8] = [
    StatusCode::OK,
    StatusCode::MOVED_PERMANENTLY,
    StatusCode::FOUND,
    StatusCode::SEE_OTHER,
    StatusCode::TEMPORARY_REDIRECT,
    StatusCode::PERMANENT_REDIRECT,
    StatusCode::NOT_FOUND,
    StatusCode::GONE,
];

/// Ends a response head in `out`: `Date`, `Connection: close` when closing, the blank line.
fn end_head(out: &mut Vec<u8>, close: bool) {
    out.extend_from_slice(b"date: ");
    with_date(|date| out.extend_from_slice(date));
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends a cached answer (its head only for `HEAD`).
async fn write_cached(
    stream: &TcpStream,
    out: &mut Vec<u8>,
    answer: &Answer,
    head: bool,
    close: bool,
) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(&answer.head);
    end_head(out, close);
    if head {
        return send_all(stream, out).await;
    }
    match &answer.body {
        AnswerBody::Memory(body) if body.len() <= COPY_BODY => {
            out.extend_from_slice(body);
            send_all(stream, out).await
        }
        AnswerBody::Memory(body) => write_two(stream, out, body).await,
        AnswerBody::File(AnswerFile { file, len }) => {
            // The head waits (MSG_MORE) to leave in the same segment as the body's start.
            send_all_with(stream, out, MsgFlags::from_bits_retain(nix::libc::MSG_MORE)).await?;
            let mut offset: nix::libc::off_t = 0;
            while (offset as usize) < *len {
                let left = *len - offset as usize;
                let n = write_with(stream, || {
                    nix::sys::sendfile::sendfile(stream.as_fd(), file.as_fd(), Some(&mut offset), left)
                        .map_err(io::Error::from)
                })
                .await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            Ok(())
        }
    }
}

/// Runs a non-blocking write `f` on `stream`, waiting for the socket to take more when it is full
/// — for at most [`SEND_TIMEOUT`] each time, as nginx's `send_timeout`: a client that stops reading
/// does not hold its connection for ever.
async fn write_with(stream: &TcpStream, mut f: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match stream.try_io(Interest::WRITABLE, &mut f) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => return result,
        }
        match tokio::time::timeout(SEND_TIMEOUT, stream.writable()).await {
            Ok(ready) => ready?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// Writes all of `data`, with [`write_with`]'s patience.
async fn send_all(stream: &TcpStream, data: &[u8]) -> io::Result<()> {
    send_all_with(stream, data, MsgFlags::empty()).await
}

/// [`send_all`] with `send(2)` flags.
async fn send_all_with(stream: &TcpStream, mut data: &[u8], flags: MsgFlags) -> io::Result<()> {
    while !data.is_empty() {
        let n = write_with(stream, || {
            nix::sys::socket::send(stream.as_raw_fd(), data, flags).map_err(io::Error::from)
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// At most `left` bytes of `data`, counted off `left`.
fn take(mut data: Bytes, left: &mut u64) -> Bytes {
    let allowed = usize::try_from(*left).unwrap_or(usize::MAX);
    if data.len() > allowed {
        data.truncate(allowed);
    }
    *left -= data.len() as u64;
    data
}

/// Writes `a` then `b`, with as few writes as the socket allows.
async fn write_two(stream: &TcpStream, a: &[u8], b: &[u8]) -> io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() {
        let n = write_with(stream, || {
            stream.try_write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    send_all(stream, b).await
}

/// Runs `f` with the current `Date` value (RFC 9110's IMF-fixdate), formatted at most once a
/// second per thread.
fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut date = cell.borrow_mut();
        if date.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                date.1.copy_from_slice(text.as_bytes());
                date.0 = second;
            }
        }
        f(&date.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_let_go() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Far more than the two sockets' buffers hold.
        let data = vec![b'x'; 64 << 20];
        let started = Instant::now();
        let sent = tokio::time::timeout(SEND_TIMEOUT * 2, send_all(&server, &data)).await;
        let error = sent.expect("the write gives up by itself").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= SEND_TIMEOUT);
        drop(client);
    }

    #[test]
    fn take_counts_down_and_truncates() {
        let mut left = 5;
        assert_eq!(take(Bytes::from_static(b"abc"), &mut left), "abc");
        assert_eq!(left, 2);
        assert_eq!(take(Bytes::from_static(b"defg"), &mut left), "de");
        assert_eq!(left, 0);
    }

    fn answer(generation: u64, body: &'static [u8]) -> Answer {
        Answer {
            generation,
            head: Bytes::from_static(b"HTTP/1.1 200 OK\r\n"),
            body: AnswerBody::Memory(Bytes::from_static(body)),
        }
    }

    #[test]
    fn answers_hold_for_their_generation_only() {
        let answers = Answers::default();
        answers.put(b"k", answer(3, b"old"));
        assert!(answers.get(b"k", 3).is_some());
        assert!(
            answers.get(b"k", 4).is_none(),
            "a newer table never sees an older answer"
        );
        assert!(answers.get(b"other", 3).is_none());
        answers.put(b"k", answer(4, b"new"));
        let got = answers.get(b"k", 4).expect("replaced");
        assert!(matches!(&got.body, AnswerBody::Memory(b) if b == "new"));
        let map = answers.map.lock().unwrap();
        assert_eq!(map.entries.len(), 1);
        assert_eq!(
            map.bytes,
            1 + answer(0, b"new").head.len() + 3,
            "the replaced entry's bytes are returned"
        );
    }

    #[test]
    fn answers_start_over_when_full() {
        let answers = Answers::default();
        for i in 0..ANSWERS {
            answers.put(format!("{i}").as_bytes(), answer(1, b"x"));
        }
        assert!(answers.get(b"0", 1).is_some());
        answers.put(b"one more", answer(1, b"x"));
        assert!(answers.get(b"0", 1).is_none());
        assert!(answers.get(b"one more", 1).is_some());
        assert_eq!(answers.map.lock().unwrap().entries.len(), 1);
    }

    #[test]
    fn long_bodies_go_to_files_short_ones_stay_in_memory() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            AnswerBody::of(Bytes::from_static(b"short"), dir.path()),
            AnswerBody::Memory(_)
        ));
        let long: Bytes = (0..SENDFILE_MIN + 7)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let body = AnswerBody::of(long.clone(), dir.path());
        assert_eq!(body.len(), long.len());
        let AnswerBody::File(f) = &body else {
            panic!("a long body is kept in a file");
        };
        let mut back = vec![0; long.len()];
        f.file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, long);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the file has no name"
        );
    }

    #[test]
    fn dates_are_imf_fixdate() {
        let date = with_date(|d| String::from_utf8_lossy(d).into_owned());
        assert!(httpdate::parse_http_date(&date).is_ok(), "{date}");
        assert!(date.ends_with(" GMT"), "{date}");
    }
}
