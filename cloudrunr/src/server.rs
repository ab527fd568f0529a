//! What every HTTP component shares: binding, serving until a signal, shutting down in time.

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::serve::ListenerExt;
use bytes::{Buf, Bytes};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use router::wire::{Ended, SiteConnections};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long requests in flight may take to finish once a shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serves `app` until SIGINT or SIGTERM.
///
/// Accepted connections get `TCP_NODELAY`: a response goes out as soon as it is written, rather
/// than waiting (Nagle's algorithm) for the acknowledgement of the previous segment — which,
/// against a client's delayed ACKs, can hold a streamed body's first chunk back for 40 ms.
pub async fn run(listener: TcpListener, app: axum::Router) -> anyhow::Result<()> {
    let shutdown = cancelled_on_signal();
    let listener = listener.tap_io(no_delay);
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    // Live log streams never end by themselves: give requests in flight a moment, then close.
    tokio::select! {
        result = server => result?,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::info!("closing connections still open after {SHUTDOWN_GRACE:?}"),
    }
    Ok(())
}

/// Serves `app` until SIGINT or SIGTERM, with site requests answered on the fast path.
///
/// Each connection starts with [`SiteConnections::serve`], which answers the plain site requests
/// (`GET`/`HEAD` for a Host under the sites domain) itself; at the first request that is anything
/// else it hands the connection back, and `app` — through hyper, HTTP/1 or HTTP/2 — serves it
/// from that request on, with the bytes already read put back in front of the socket. `app`
/// must answer site requests too (it gets the ones the fast path hands off): it does, through
/// the same [`router::Sites::answer`].
pub async fn run_with_sites(listener: TcpListener, app: axum::Router, sites: SiteConnections) -> anyhow::Result<()> {
    let shutdown = cancelled_on_signal();
    let connections = TaskTracker::new();
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
        no_delay(&mut tcp);
        let (app, sites, shutdown) = (app.clone(), sites.clone(), shutdown.clone());
        connections.spawn(async move {
            if let Ended::HandOff { stream, unread } = sites.serve(tcp, &shutdown).await {
                serve_general(stream, unread, peer, app, &shutdown).await;
            }
        });
    }
    connections.close();
    // Live log streams never end by themselves: give requests in flight a moment, then close.
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await.is_err() {
        tracing::info!("closing connections still open after {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// The rest of a connection, through hyper and `app`, starting with `unread`.
async fn serve_general(
    stream: TcpStream,
    unread: Bytes,
    peer: SocketAddr,
    app: axum::Router,
    shutdown: &CancellationToken,
) {
    let app = app.layer(axum::Extension(ConnectInfo(peer)));
    let service = TowerToHyperService::new(app);
    let builder = auto::Builder::new(TokioExecutor::new());
    let io = TokioIo::new(Prefixed { unread, stream });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
}

/// A socket with bytes already read from it put back in front.
struct Prefixed {
    unread: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// `TCP_NODELAY` (see [`run`]); a socket that refuses it is served all the same.
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
