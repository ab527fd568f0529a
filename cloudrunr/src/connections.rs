//! The general path's share of the connection limits (`platform::connection_limits`): hyper
//! configured with them, request bodies that may not stall, responses that may not wait for ever
//! on a client that does not read, and requests counted in flight so that a connection's idle
//! time is known.

use axum::body::{Body, Bytes, HttpBody};
use bytes::Buf;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use platform::connection_limits::ConnectionLimits;
use router::wire::slots::Slot;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// hyper, HTTP/1 and HTTP/2, held to `limits`.
pub fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's header timeout runs from when it starts waiting for a head, so on a kept-alive
    // HTTP/1 connection it also bounds the wait for the next request.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(ConnectionLimits::MIN_HEADER_BYTES));
    let header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keepalive)
        .keep_alive_timeout(limits.h2_keepalive)
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(header_list);
    builder
}

/// `app` as hyper's service on one connection: each request is counted in flight on `slot` until
/// its answer is sent (or dropped), and its body may not stall (see [`TimedBody`]).
pub fn service(
    app: axum::Router,
    slot: Arc<Slot>,
    limits: Arc<ConnectionLimits>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<Body>,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::new(slot.clone());
        let request = request.map(|body| Body::new(TimedBody::new(body, limits.clone())));
        let app = app.clone();
        async move {
            let response = match app.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|body| {
                Body::new(Counted {
                    body,
                    _in_flight: in_flight,
                })
            }))
        }
    })
}

/// A request in flight on a connection, until dropped.
struct InFlight(Arc<Slot>);

impl InFlight {
    fn new(slot: Arc<Slot>) -> Self {
        slot.begin();
        Self(slot)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request counted in flight until it is sent or dropped.
struct Counted {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that may not stall: cut off with an [`io::ErrorKind::TimedOut`] error when no
/// byte came for [`ConnectionLimits::body_timeout`], or when it falls behind
/// [`ConnectionLimits::min_body_rate`] (see [`ConnectionLimits::body_allowance`]). The handler
/// reading it gets the error (axum's extractors answer 400; the webhook 408), and hyper closes
/// the connection, whose request was not read to its end.
pub struct TimedBody<B> {
    inner: B,
    limits: Arc<ConnectionLimits>,
    started: Instant,
    last_read: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limits: Arc<ConnectionLimits>) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limits,
            started: now,
            last_read: now,
            received: 0,
            timer: None,
        }
    }

    fn deadline(&self) -> Instant {
        self.started + self.limits.body_allowance(self.last_read - self.started, self.received)
    }
}

/// The error a stalled body ends with.
fn stalled(limits: &ConnectionLimits) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the request body stalled: nothing came for {}s, or it came slower than {} bytes a second",
            limits.body_timeout.as_secs(),
            limits.min_body_rate
        ),
    )
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.remaining() as u64);
                    this.last_read = Instant::now();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline();
                let timer = match &mut this.timer {
                    Some(timer) => {
                        if timer.deadline() != deadline {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => this.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(stalled(&this.limits).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket with bytes already read from it put back in front, whose writes give up after
/// `send_timeout` without progress (nginx's `send_timeout`): an answer the client does not read
/// does not hold the connection for ever. Closed by hyper, it lingers (see [`linger`]).
pub struct Patient<S: AsyncRead + Unpin + Send + 'static = TcpStream> {
    unread: Bytes,
    /// Always there until dropped.
    stream: Option<S>,
    send_timeout: Duration,
    /// Armed while a write waits for the client.
    stall: Option<Pin<Box<Sleep>>>,
    /// hyper shut the connection down (rather than it being dropped: shed, timed out).
    shut: bool,
}

/// How long a connection hyper closed goes on being read (and what comes dropped), and how much.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 32 << 20;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Patient<S> {
    pub fn new(stream: S, unread: Bytes, send_timeout: Duration) -> Self {
        Self {
            unread,
            stream: Some(stream),
            send_timeout,
            stall: None,
            shut: false,
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut S>> {
        match &mut self.stream {
            Some(stream) => Ok(Pin::new(stream)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Passes on a write's progress; while it makes none, the send timeout runs.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stall = None;
            return polled;
        }
        let patience = self.send_timeout;
        let stall = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(patience)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing of the answer for the send timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Patient<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            return self.stream()?.poll_read(cx, buf);
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Patient<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = self.stream()?.poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.stream()?.poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(S::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = self.stream()?.poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shut = true;
        let polled = self.stream()?.poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

impl<S> Drop for Patient<S>
where
    S: AsyncRead + Unpin + Send + 'static,
{
    fn drop(&mut self) {
        if !self.shut {
            return;
        }
        if let (Some(stream), Ok(runtime)) = (self.stream.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(linger(stream));
        }
    }
}

/// Reads and drops what the client still sends, for [`LINGER`] at most, then closes (nginx's
/// lingering close). hyper closes a connection whose request body it did not read (an answer
/// given before the body: 413, 401, a site's 405); closing with unread bytes in the socket makes
/// the kernel reset the connection, which can destroy the answer before the client reads it.
/// With the answer and a FIN sent, reading on lets the client see the answer and stop sending.
async fn linger<S: AsyncRead + Unpin>(mut stream: S) {
    use tokio::io::AsyncReadExt;
    let until = Instant::now() + LINGER;
    let mut buf = [0u8; 16 * 1024];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// The process's soft limit on open files, from `/proc/self/limits` (`None` where there is none,
/// or it says "unlimited").
pub fn open_files_limit() -> Option<u64> {
    parse_open_files(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn the_open_file_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(text), Some(1024));
        let unlimited = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files(unlimited), None);
        assert_eq!(parse_open_files(""), None);
        assert!(open_files_limit().is_some(), "Linux has /proc/self/limits");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_the_client_does_not_take_gives_up_after_the_send_timeout() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut io = Patient::new(server, Bytes::new(), Duration::from_secs(60));
        // Far more than the two sockets' buffers hold.
        let data = vec![b'x'; 64 << 20];
        let started = Instant::now();
        let error = io.write_all(&data).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(60));
        drop(client);
    }

    #[tokio::test]
    async fn bytes_put_back_are_read_before_the_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut io = Patient::new(server, Bytes::from_static(b"GET / "), Duration::from_secs(5));
        client.write_all(b"HTTP/1.1").await.unwrap();
        drop(client);
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET / HTTP/1.1");
    }

    fn limits(body_timeout: u64, min_body_rate: u64) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            body_timeout: Duration::from_secs(body_timeout),
            min_body_rate,
            ..ConnectionLimits::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_coming_is_cut_off() {
        let (mut tx, rx) = futures_channel_body();
        let mut body = TimedBody::new(rx, limits(5, 0));
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        let started = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let error = error.downcast::<io::Error>().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_too_slow_for_the_minimum_rate_is_cut_off() {
        let (mut tx, rx) = futures_channel_body();
        let mut body = TimedBody::new(rx, limits(10, 100));
        let started = Instant::now();
        let feeder = tokio::spawn(async move {
            // One byte every 9 s: never 10 s without one, but far below 100 bytes a second.
            loop {
                tokio::time::sleep(Duration::from_secs(9)).await;
                if tx.send(Bytes::from_static(b"x")).await.is_err() {
                    return;
                }
            }
        });
        let error = loop {
            match body.frame().await.unwrap() {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(started.elapsed(), Duration::from_secs(10), "{error}");
        drop(body);
        feeder.await.unwrap();
    }

    #[tokio::test]
    async fn a_whole_body_passes_through() {
        let (mut tx, rx) = futures_channel_body();
        let body = TimedBody::new(rx, limits(5, 1024));
        tx.send(Bytes::from_static(b"hello ")).await.unwrap();
        tx.send(Bytes::from_static(b"world")).await.unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello world");
    }

    /// A body fed through a channel, as a test drives it.
    fn futures_channel_body() -> (Feeder, ChannelBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (Feeder(tx), ChannelBody(rx))
    }

    struct Feeder(tokio::sync::mpsc::Sender<Bytes>);

    impl Feeder {
        async fn send(&mut self, data: Bytes) -> Result<(), ()> {
            self.0.send(data).await.map_err(|_| ())
        }
    }

    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|data| data.map(|d| Ok(Frame::data(d))))
        }
    }
}
