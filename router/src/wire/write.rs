//! Putting responses on the socket: the head built into a reused buffer, the body copied behind
//! it or sent from where it lies, every write bounded by the client's patience.

use super::kept::{ANSWER_BODY, Answer, AnswerBody, AnswerFile, CACHEABLE, Keep};
use axum::body::HttpBody;
use axum::http::StatusCode;
use axum::http::header;
use bytes::Bytes;
use http_body_util::BodyExt;
use nix::sys::socket::MsgFlags;
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// A body at most this long is copied behind the head and sent with one `write`; a longer one is
/// sent from where it is, with a vectored write.
const COPY_BODY: usize = 16 * 1024;

/// Writes `response` on `stream`: the head into `out` (cleared first), then the body; each write
/// waits at most `patience` for the client to take more (the send timeout).
///
/// The framing is always right: the length sent is the body's own when it knows it exactly (a
/// `Content-Length` that says otherwise is replaced), else the one announced, and the body is held
/// to it — longer is cut, shorter ends the connection. A body of no known length is delimited by
/// closing the connection.
pub(super) async fn write_response<S: Transport>(
    stream: &mut S,
    out: &mut Vec<u8>,
    response: axum::response::Response,
    head: bool,
    close: bool,
    keep: Option<Keep<'_>>,
    patience: Duration,
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
        return stream.send(out, patience).await;
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
                stream.send(out, patience).await?;
            } else {
                stream.send_two(out, &data, patience).await?;
            }
        } else {
            stream.send(&data, patience).await?;
        }
    }
    if first {
        stream.send(out, patience).await?;
    }
    if left != 0 && length.is_some() {
        // Shorter than announced: the client is still waiting for bytes that will not come.
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a site body ended early"));
    }
    Ok(())
}

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

/// Sends a cached answer (its head only for `HEAD`), with [`write_response`]'s patience.
pub(super) async fn write_cached<S: Transport>(
    stream: &mut S,
    out: &mut Vec<u8>,
    answer: &Answer,
    head: bool,
    close: bool,
    patience: Duration,
) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(&answer.head);
    end_head(out, close);
    if head {
        return stream.send(out, patience).await;
    }
    match &answer.body {
        AnswerBody::Memory(body) if body.len() <= COPY_BODY => {
            out.extend_from_slice(body);
            stream.send(out, patience).await
        }
        AnswerBody::Memory(body) => stream.send_two(out, body, patience).await,
        AnswerBody::File(AnswerFile { file, len }) => stream.send_file(out, file, *len, patience).await,
    }
}

/// A connection the wire path answers on: a plain socket, written with `send`, vectored writes
/// and `sendfile`; or TLS over one, where every byte passes through the encryption and a
/// file's bytes are read and written instead.
///
/// Every write waits at most `patience` for the client to take more (the send timeout).
pub trait Transport: AsyncRead + Unpin + Send {
    /// Writes all of `data`.
    fn send(&mut self, data: &[u8], patience: Duration) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes `head`, then `body`.
    fn send_two(&mut self, head: &[u8], body: &[u8], patience: Duration)
    -> impl Future<Output = io::Result<()>> + Send;
    /// Writes `head` (which it may use as a buffer), then the first `len` bytes of `file`.
    fn send_file(
        &mut self,
        head: &mut Vec<u8>,
        file: &std::fs::File,
        len: usize,
        patience: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

impl Transport for TcpStream {
    async fn send(&mut self, data: &[u8], patience: Duration) -> io::Result<()> {
        send_all(self, data, patience).await
    }

    async fn send_two(&mut self, head: &[u8], body: &[u8], patience: Duration) -> io::Result<()> {
        write_two(self, head, body, patience).await
    }

    async fn send_file(
        &mut self,
        head: &mut Vec<u8>,
        file: &std::fs::File,
        len: usize,
        patience: Duration,
    ) -> io::Result<()> {
        let stream = &*self;
        // The head waits (MSG_MORE) to leave in the same segment as the body's start.
        send_all_with(stream, head, MsgFlags::from_bits_retain(nix::libc::MSG_MORE), patience).await?;
        let mut offset: nix::libc::off_t = 0;
        while (offset as usize) < len {
            let left = len - offset as usize;
            let n = write_with(stream, patience, || {
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

/// Plaintext handed to TLS at once: a full record's worth, so that a head and the start of its
/// body leave in one record.
const TLS_CHUNK: usize = 16 * 1024;

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    async fn send(&mut self, data: &[u8], patience: Duration) -> io::Result<()> {
        write_all_patiently(self, data, patience).await?;
        patiently(patience, self.flush()).await
    }

    async fn send_two(&mut self, head: &[u8], body: &[u8], patience: Duration) -> io::Result<()> {
        // The head and the body's first bytes share a record.
        let first = body.len().min(TLS_CHUNK.saturating_sub(head.len()));
        let mut start = Vec::with_capacity(head.len() + first);
        start.extend_from_slice(head);
        start.extend_from_slice(&body[..first]);
        write_all_patiently(self, &start, patience).await?;
        write_all_patiently(self, &body[first..], patience).await?;
        patiently(patience, self.flush()).await
    }

    async fn send_file(
        &mut self,
        head: &mut Vec<u8>,
        file: &std::fs::File,
        len: usize,
        patience: Duration,
    ) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // No `sendfile` through encryption: the bytes are read (from the page cache: the file
        // was just written) and encrypted, a record's worth at a time, behind the head.
        let mut offset = 0;
        let mut buf = std::mem::take(head);
        while offset < len {
            let start = buf.len();
            let want = (len - offset).min(TLS_CHUNK.saturating_sub(start).max(4096));
            buf.resize(start + want, 0);
            let n = file.read_at(&mut buf[start..], offset as u64)?;
            if n == 0 {
                *head = buf;
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.truncate(start + n);
            offset += n;
            let written = write_all_patiently(self, &buf, patience).await;
            buf.clear();
            if let Err(e) = written {
                *head = buf;
                return Err(e);
            }
        }
        *head = buf;
        patiently(patience, self.flush()).await
    }
}

/// `write_all` where each write may wait at most `patience` for the client.
async fn write_all_patiently<W: AsyncWrite + Unpin>(w: &mut W, mut data: &[u8], patience: Duration) -> io::Result<()> {
    while !data.is_empty() {
        let n = patiently(patience, w.write(data)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// `io` if it completes within `patience`; a timeout error otherwise.
async fn patiently<T>(patience: Duration, io: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(patience, io)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Runs a non-blocking write `f` on `stream`, waiting for the socket to take more when it is full
/// — for at most `patience` each time, as nginx's `send_timeout`: a client that stops reading
/// does not hold its connection for ever.
async fn write_with(
    stream: &TcpStream,
    patience: Duration,
    mut f: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        match stream.try_io(Interest::WRITABLE, &mut f) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => return result,
        }
        match tokio::time::timeout(patience, stream.writable()).await {
            Ok(ready) => ready?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// Writes all of `data`, with [`write_with`]'s patience.
async fn send_all(stream: &TcpStream, data: &[u8], patience: Duration) -> io::Result<()> {
    send_all_with(stream, data, MsgFlags::empty(), patience).await
}

/// [`send_all`] with `send(2)` flags.
async fn send_all_with(stream: &TcpStream, mut data: &[u8], flags: MsgFlags, patience: Duration) -> io::Result<()> {
    while !data.is_empty() {
        let n = write_with(stream, patience, || {
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
async fn write_two(stream: &TcpStream, a: &[u8], b: &[u8], patience: Duration) -> io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() {
        let n = write_with(stream, patience, || {
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
    send_all(stream, b, patience).await
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
    use tokio::time::Instant;

    const SEND_TIMEOUT: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_let_go() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Far more than the two sockets' buffers hold.
        let data = vec![b'x'; 64 << 20];
        let started = Instant::now();
        let sent = tokio::time::timeout(SEND_TIMEOUT * 2, send_all(&server, &data, SEND_TIMEOUT)).await;
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

    #[test]
    fn dates_are_imf_fixdate() {
        let date = with_date(|d| String::from_utf8_lossy(d).into_owned());
        assert!(httpdate::parse_http_date(&date).is_ok(), "{date}");
        assert!(date.ends_with(" GMT"), "{date}");
    }
}
