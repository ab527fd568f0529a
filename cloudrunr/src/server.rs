//! What every HTTP component shares: binding, serving until a signal, shutting down in time.

use crate::connections::{self, Patient};
use anyhow::Context;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use platform::connection_limits::ConnectionLimits;
use router::wire::slots::{Admitted, Connections};
use router::wire::{Ended, SiteConnections};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
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

/// Serves `app` until SIGINT or SIGTERM, every connection held to `limits` (see [`serve_connections`]).
pub async fn run(listener: TcpListener, app: axum::Router, limits: &ConnectionLimits) -> anyhow::Result<()> {
    serve_connections(listener, app, None, limits).await
}

/// Serves `app` until SIGINT or SIGTERM, with site requests answered on the fast path.
///
/// Each connection starts with [`SiteConnections::serve`], which answers the plain site requests
/// (`GET`/`HEAD` for a Host under the sites domain) itself; at the first request that is anything
/// else it hands the connection back, and `app` — through hyper, HTTP/1 or HTTP/2 — serves it
/// from that request on, with the bytes already read put back in front of the socket. `app`
/// must answer site requests too (it gets the ones the fast path hands off): it does, through
/// the same [`router::Sites::answer`].
pub async fn run_with_sites(
    listener: TcpListener,
    app: axum::Router,
    sites: SiteConnections,
    limits: &ConnectionLimits,
) -> anyhow::Result<()> {
    serve_connections(listener, app, Some(sites), limits).await
}

/// The accept loop both paths share.
///
/// Accepted connections get `TCP_NODELAY`: a response goes out as soon as it is written, rather
/// than waiting (Nagle's algorithm) for the acknowledgement of the previous segment — which,
/// against a client's delayed ACKs, can hold a streamed body's first chunk back for 40 ms.
///
/// Every connection takes a place among [`ConnectionLimits::max_connections`] (lowered to fit the
/// open-file limit); at the cap the connection idle the longest is closed to make room, and a
/// new one is closed at once only when all are busy. Each is then bounded in time: see
/// [`General::serve`] and [`SiteConnections::serve`].
async fn serve_connections(
    listener: TcpListener,
    app: axum::Router,
    sites: Option<SiteConnections>,
    limits: &ConnectionLimits,
) -> anyhow::Result<()> {
    let cap = limits.effective_max_connections(connections::open_files_limit());
    if cap < limits.max_connections {
        tracing::warn!(
            "serving at most {cap} connections at once, not {}: the open-file limit (ulimit -n) \
             leaves room for no more",
            limits.max_connections
        );
    }
    let open = Connections::new(cap);
    let limits = Arc::new(limits.clone());
    let builder = Arc::new(connections::http_builder(&limits));
    let shutdown = cancelled_on_signal();
    let tasks = TaskTracker::new();
    let (mut refused, mut last_warned) = (0u64, None);
    loop {
        let (mut tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: let connections end before the next.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some(slot) = open.admit() else {
            // Once a minute at most: a flood would otherwise fill the log as well.
            refused += 1;
            if last_warned.is_none_or(|at: Instant| at.elapsed() >= REFUSAL_WARNING) {
                tracing::warn!(
                    "closed {refused} new connection(s), the last from {peer}: all {cap} connections are busy"
                );
                (refused, last_warned) = (0, Some(Instant::now()));
            }
            continue;
        };
        no_delay(&mut tcp);
        let (app, sites, shutdown) = (app.clone(), sites.clone(), shutdown.clone());
        let (limits, builder) = (limits.clone(), builder.clone());
        tasks.spawn(async move {
            let (stream, unread) = match sites {
                Some(sites) => {
                    let ended = tokio::select! {
                        ended = sites.serve(tcp, &shutdown, &slot) => ended,
                        // Only idle connections are shed: nothing is cut short.
                        () = slot.shed() => return,
                    };
                    match ended {
                        Ended::HandOff { stream, unread } => (stream, unread),
                        Ended::Closed => return,
                    }
                }
                None => (tcp, Bytes::new()),
            };
            let general = General {
                builder: &builder,
                slot: &slot,
                limits: &limits,
                shutdown: &shutdown,
            };
            general.serve(stream, unread, peer, app).await;
        });
    }
    tasks.close();
    // Live log streams never end by themselves: give requests in flight a moment, then close.
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await.is_err() {
        tracing::info!("closing connections still open after {SHUTDOWN_GRACE:?}");
    }
    Ok(())
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
    async fn serve(self, stream: TcpStream, unread: Bytes, peer: SocketAddr, app: axum::Router) {
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
