//! The connection loop: read a request head, answer it (from the kept answers when it can), and
//! hand the connection off at the first request that is not of the common shape.

use super::kept::Keep;
use super::slots::Slot;
use super::write::{Transport, write_cached, write_response};
use super::{Ended, MAX_HEAD, SiteConnections};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Uri, Version};
use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Header lines in a head answered here.
const MAX_HEADERS: usize = 64;
/// How late a connection's deadline may be: it is moved on only when it would move by more, so
/// that a busy connection does not take a timer off and put one back for every request.
const DEADLINE_SLACK: Duration = Duration::from_secs(1);

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

    /// The request, for [`Sites::answer`](crate::Sites::answer); `None` for a target that is not a valid URI.
    fn parts(&self, https: bool) -> Option<axum::http::request::Parts> {
        let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(self.target.as_bytes())).ok()?;
        let mut request = Request::new(());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.read.to_map()?;
        if https {
            request.extensions_mut().insert(crate::tls::Https);
        }
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

impl SiteConnections {
    /// Answers requests on `stream` for as long as they are site requests of the common shape.
    /// `slot` is told when a request is in flight (the connection is not idle then).
    pub async fn serve<S: Transport>(&self, mut stream: S, shutdown: &CancellationToken, slot: &Slot) -> Ended<S> {
        let limits = &*self.limits;
        let mut buf = BytesMut::with_capacity(4096);
        let mut out = Vec::with_capacity(1024);
        let mut key = Vec::with_capacity(256);
        // One timer and one wait for shutdown per connection, not one of each per read.
        let shutdown = shutdown.cancelled();
        let deadline = tokio::time::sleep(limits.idle_timeout);
        tokio::pin!(shutdown, deadline);
        // Since when the connection waits for a request, and when the head in `buf` began.
        let mut idle_since = Instant::now();
        let mut head_since = None;
        loop {
            let head = loop {
                match self.parse(&buf) {
                    Parsed::Fast(head) => break head,
                    Parsed::HandOff => return hand_off(stream, buf),
                    Parsed::Partial => {}
                }
                if buf.len() >= MAX_HEAD.min(limits.max_header_bytes) {
                    return hand_off(stream, buf);
                }
                // Waiting for a new request is idling; for the rest of one, a slow client, whose
                // head has the header timeout from its first byte however steadily bytes come.
                let want = match head_since {
                    None => idle_since + limits.idle_timeout,
                    Some(since) => since + limits.header_timeout,
                };
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
                    Ok(_) => {
                        head_since.get_or_insert_with(Instant::now);
                    }
                }
            };
            let busy = Busy::new(slot);
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
                    let written =
                        write_cached(&mut stream, &mut out, &answer, is_head, close, limits.send_timeout).await;
                    if written.is_err() || close {
                        return Ended::Closed;
                    }
                    (idle_since, head_since) = busy.done(&buf);
                    continue;
                }
            }
            let Some(parts) = head.parts(self.https) else {
                drop(busy);
                return hand_off(stream, buf);
            };
            let response = self.sites.answer(head.label, &parts).await;
            let keep = (head.cacheable && !is_head).then(|| Keep {
                answers: &self.answers,
                key: &key,
                generation,
                dir: &self.answer_dir,
            });
            let written = write_response(
                &mut stream,
                &mut out,
                response,
                is_head,
                close,
                keep,
                limits.send_timeout,
            )
            .await;
            buf.advance(len);
            if written.is_err() || close {
                return Ended::Closed;
            }
            (idle_since, head_since) = busy.done(&buf);
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
        // HTTP-01 checks are answered in front of the sites, by the general server.
        if target.starts_with(crate::tls::redirect::ACME_CHALLENGE_PREFIX) {
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
        if self.redirecting.as_ref().is_some_and(|r| r.covers_host(host)) {
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

/// A request in flight on a connection, from its head to the end of its answer.
struct Busy<'s>(&'s Slot);

impl<'s> Busy<'s> {
    fn new(slot: &'s Slot) -> Self {
        slot.begin();
        Self(slot)
    }

    /// The answer is sent: the connection is idle from now, and a head already in `buf`
    /// (pipelined) began now.
    fn done(self, buf: &[u8]) -> (Instant, Option<Instant>) {
        let now = Instant::now();
        (now, (!buf.is_empty()).then_some(now))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

fn hand_off<S>(stream: S, buf: BytesMut) -> Ended<S> {
    Ended::HandOff {
        stream,
        unread: buf.freeze(),
    }
}
