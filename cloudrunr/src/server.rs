//! What every HTTP component shares: binding, serving until a signal, shutting down in time.

use crate::connections::{self, Patient};
use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use platform::connection_limits::ConnectionLimits;
use router::tls::{Protocol, TlsEdge};
use router::wire::slots::{Admitted, Connections};
use router::wire::{Ended, SiteConnections, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long requests in flight may take to finish once a shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long an idle connection told to close (HTTP/2: sent `GOAWAY`) may take to do so.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How often connections turned away at the cap are reported.
const REFUSAL_WARNING: Duration = Duration::from_secs(60);

pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serves `app` until SIGINT or SIGTERM, every connection held to `limits` (see [`serve_endpoints`]).
pub async fn run(listener: TcpListener, app: axum::Router, limits: &ConnectionLimits) -> anyhow::Result<()> {
    serve_endpoints(vec![Endpoint::plain(listener, app, None)], limits).await
}

/// One listening socket and how its connections are served.
pub struct Endpoint {
    listener: TcpListener,
    app: axum::Router,
    sites: Option<SiteConnections>,
    /// TLS is spoken on this socket.
    tls: Option<Arc<TlsEdge>>,
}

impl Endpoint {
    /// Plain HTTP, site requests on the fast path when `sites` is given.
    ///
    /// Each connection then starts with [`SiteConnections::serve`], which answers the plain site
    /// requests (`GET`/`HEAD` for a Host under the sites domain) itself; at the first request
    /// that is anything else it hands the connection back, and `app` — through hyper, HTTP/1 or
    /// HTTP/2 — serves it from that request on, with the bytes already read put back in front
    /// of the socket. `app` must answer site requests too (it gets the ones the fast path hands
    /// off): it does, through the same [`router::Sites::answer`].
    pub fn plain(listener: TcpListener, app: axum::Router, sites: Option<SiteConnections>) -> Self {
        Self {
            listener,
            app,
            sites,
            tls: None,
        }
    }

    /// HTTPS: each connection's handshake first, then HTTP/1.1 (with the site fast path when
    /// `sites` is given) or HTTP/2 as ALPN chose. Requests reach `app` as over plain HTTP,
    /// marked [`router::tls::Https`], with a `Host` header even over HTTP/2 (from `:authority`).
    pub fn tls(listener: TcpListener, app: axum::Router, sites: Option<SiteConnections>, tls: Arc<TlsEdge>) -> Self {
        let app = app
            .layer(axum::middleware::map_request(host_from_authority))
            .layer(axum::Extension(router::tls::Https));
        Self {
            listener,
            app,
            sites,
            tls: Some(tls),
        }
    }
}

/// HTTP/2 names the host in `:authority` only; what reads `Host` (the dashboard's same-origin
/// check, for one) reads it there.
async fn host_from_authority(mut req: axum::extract::Request) -> axum::extract::Request {
    if !req.headers().contains_key(header::HOST)
        && let Some(value) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, value);
    }
    req
}

/// What every connection of every endpoint shares.
struct Shared {
    open: Connections,
    cap: usize,
    limits: Arc<ConnectionLimits>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Serves every endpoint until SIGINT or SIGTERM.
///
/// Accepted connections get `TCP_NODELAY`: a response goes out as soon as it is written, rather
/// than waiting (Nagle's algorithm) for the acknowledgement of the previous segment — which,
/// against a client's delayed ACKs, can hold a streamed body's first chunk back for 40 ms.
///
/// Every connection, of whichever endpoint, takes a place among
/// [`ConnectionLimits::max_connections`] (lowered to fit the open-file limit); at the cap the
/// connection idle the longest is closed to make room, and a new one is closed at once only
/// when all are busy. A TLS connection holds its place from its accept: its handshake has
/// [`TlsEdge`]'s timeout and counts as idle (it may be shed). Each is then bounded in time: see
/// [`General::serve`] and [`SiteConnections::serve`].
pub async fn serve_endpoints(endpoints: Vec<Endpoint>, limits: &ConnectionLimits) -> anyhow::Result<()> {
    let cap = limits.effective_max_connections(connections::open_files_limit());
    if cap < limits.max_connections {
        tracing::warn!(
            "serving at most {cap} connections at once, not {}: the open-file limit (ulimit -n) \
             leaves room for no more",
            limits.max_connections
        );
    }
    let shared = Arc::new(Shared {
        open: Connections::new(cap),
        cap,
        limits: Arc::new(limits.clone()),
        builder: Arc::new(connections::http_builder(limits)),
        shutdown: cancelled_on_signal(),
        tasks: TaskTracker::new(),
    });
    let loops: Vec<_> = endpoints
        .into_iter()
        .map(|endpoint| tokio::spawn(accept_loop(endpoint, shared.clone())))
        .collect();
    for accepting in loops {
        accepting.await.context("an accept loop failed")?;
    }
    shared.tasks.close();
    // Live log streams never end by themselves: give requests in flight a moment, then close.
    if tokio::time::timeout(SHUTDOWN_GRACE, shared.tasks.wait()).await.is_err() {
        tracing::info!("closing connections still open after {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// Accepts connections on one endpoint until shutdown.
async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    let (mut refused, mut last_warned) = (0u64, None);
    loop {
        let (mut tcp, peer) = tokio::select! {
            accepted = endpoint.listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: let connections end before the next.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shared.shutdown.cancelled() => break,
        };
        let Some(slot) = shared.open.admit() else {
            // Once a minute at most: a flood would otherwise fill the log as well.
            refused += 1;
            if last_warned.is_none_or(|at: Instant| at.elapsed() >= REFUSAL_WARNING) {
                tracing::warn!(
                    "closed {refused} new connection(s), the last from {peer}: all {} connections are busy",
                    shared.cap
                );
                (refused, last_warned) = (0, Some(Instant::now()));
            }
            continue;
        };
        no_delay(&mut tcp);
        let (app, sites, tls) = (endpoint.app.clone(), endpoint.sites.clone(), endpoint.tls.clone());
        let connection = Connection {
            shared: shared.clone(),
            slot,
            peer,
        };
        shared.tasks.spawn(async move {
            match tls {
                None => connection.serve(tcp, sites, app).await,
                Some(tls) => {
                    let accepted = tokio::select! {
                        accepted = tls.accept(tcp) => accepted,
                        () = connection.slot.shed() => return,
                        () = connection.shared.shutdown.cancelled() => return,
                    };
                    match accepted {
                        // The fast path speaks HTTP/1.1 only.
                        Ok((stream, Protocol::Http2)) => connection.serve(stream, None, app).await,
                        Ok((stream, Protocol::Http1)) => connection.serve(stream, sites, app).await,
                        Err(e) => tracing::debug!("no TLS connection with {peer}: {e}"),
                    }
                }
            }
        });
    }
}

/// One accepted connection, holding its place among the open ones.
struct Connection {
    shared: Arc<Shared>,
    slot: Admitted,
    peer: SocketAddr,
}

impl Connection {
    /// Serves the connection: on the site fast path while it can, then through hyper.
    async fn serve<S: Transport + AsyncWrite + 'static>(
        self,
        stream: S,
        sites: Option<SiteConnections>,
        app: axum::Router,
    ) {
        let (stream, unread) = match sites {
            Some(sites) => {
                let ended = tokio::select! {
                    ended = sites.serve(stream, &self.shared.shutdown, &self.slot) => ended,
                    // Only idle connections are shed: nothing is cut short.
                    () = self.slot.shed() => return,
                };
                match ended {
                    Ended::HandOff { stream, unread } => (stream, unread),
                    Ended::Closed => return,
                }
            }
            None => (stream, Bytes::new()),
        };
        let general = General {
            builder: &self.shared.builder,
            slot: &self.slot,
            limits: &self.shared.limits,
            shutdown: &self.shared.shutdown,
        };
        general.serve(stream, unread, self.peer, app).await;
    }
}

/// What serving one connection through hyper needs.
struct General<'c> {
    builder: &'c auto::Builder<TokioExecutor>,
    slot: &'c Admitted,
    limits: &'c Arc<ConnectionLimits>,
    shutdown: &'c CancellationToken,
}

impl General<'_> {
    /// The rest of a connection, through hyper and `app`, starting with `unread`.
    ///
    /// hyper bounds an HTTP/1 head (and the wait for it), pings HTTP/2 peers and caps their
    /// streams and headers ([`connections::http_builder`]); request bodies may not stall and
    /// answers may not wait for ever on the client ([`connections`]). Here: a connection with no
    /// request in flight for [`ConnectionLimits::idle_timeout`] is shut down (HTTP/2: `GOAWAY`),
    /// one shed to make room is closed at once, and at shutdown requests in flight may finish.
    async fn serve<S: Transport + AsyncWrite + 'static>(
        self,
        stream: S,
        unread: Bytes,
        peer: SocketAddr,
        app: axum::Router,
    ) {
        let app = app.layer(axum::Extension(ConnectInfo(peer)));
        let service = connections::service(app, self.slot.slot(), self.limits.clone());
        let io = TokioIo::new(Patient::new(stream, unread, self.limits.send_timeout));
        let connection = self.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        let idle_timeout = self.limits.idle_timeout;
        // Rearmed only when it fires: a busy connection costs one wakeup per idle timeout.
        let check = tokio::time::sleep(idle_timeout);
        tokio::pin!(check);
        let result = loop {
            tokio::select! {
                result = connection.as_mut() => break result,
                () = self.shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    break connection.await;
                }
                () = self.slot.shed() => return,
                () = &mut check => match self.slot.idle_deadline(idle_timeout) {
                    Some(at) if at <= Instant::now() => {
                        connection.as_mut().graceful_shutdown();
                        match tokio::time::timeout(IDLE_CLOSE_GRACE, connection.as_mut()).await {
                            Ok(result) => break result,
                            Err(_) => return,
                        }
                    }
                    Some(at) => check.as_mut().reset(at),
                    None => check.as_mut().reset(Instant::now() + idle_timeout),
                },
            }
        };
        if let Err(e) = result {
            tracing::debug!("connection ended: {e}");
        }
    }
}

/// `TCP_NODELAY` (see [`serve_connections`]); a socket that refuses it is served all the same.
fn no_delay(tcp: &mut TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY on a connection: {e}");
    }
}

/// A token cancelled at the first SIGINT or SIGTERM.
fn cancelled_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    shutdown
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
