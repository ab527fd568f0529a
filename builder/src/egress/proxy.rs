//! The build's HTTP CONNECT proxy, on a Unix socket that only its sandbox sees.
//!
//! For each tunnel it reads one bounded request head, resolves the name itself, judges every
//! address with the [`EgressPolicy`] and connects to an address it allowed — the one checked is
//! the one connected to, so no answer of a later lookup can slip in. Anything else gets a short
//! HTTP error with the reason. It serves one build and stops when dropped.

use platform::egress::{Decision, Denied, EgressPolicy};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// The socket's name in the directory the sandbox sees.
pub const SOCKET_NAME: &str = "proxy.sock";

/// Bounds on one build's proxy.
#[derive(Debug, Clone, Copy)]
pub struct ProxyLimits {
    /// Tunnels open at once; further connections wait in the socket's backlog.
    pub max_tunnels: usize,
    /// Longest request head, in bytes.
    pub max_head: usize,
    /// How long a client may take to send its request head.
    pub head_timeout: Duration,
    /// How long a name may take to resolve.
    pub resolve_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self {
            // Package managers open up to 16 (npm, pnpm) to 64 (bun) connections at once.
            max_tunnels: 64,
            max_head: 8 * 1024,
            head_timeout: Duration::from_secs(10),
            resolve_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Refusals reported to the build's log; past this many, one line says the rest are not.
const MAX_NOTICES: usize = 20;

/// Addresses of one name tried in turn before giving up.
const MAX_ATTEMPTS: usize = 4;

/// A running proxy. Dropping it stops it and every tunnel.
pub struct EgressProxy {
    dir: tempfile::TempDir,
    notices: tokio::sync::Mutex<mpsc::Receiver<String>>,
    stop: CancellationToken,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl EgressProxy {
    /// Binds a socket in a new private directory and serves it. Needs a tokio runtime.
    pub fn start(policy: EgressPolicy, limits: ProxyLimits) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cloudrunr-egress-").tempdir()?;
        let listener = UnixListener::bind(dir.path().join(SOCKET_NAME))?;
        let (tx, rx) = mpsc::channel(MAX_NOTICES + 1);
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            policy,
            limits,
            notices: tx,
            refused: AtomicUsize::new(0),
        });
        tokio::spawn(serve(listener, shared, stop.clone()));
        Ok(Self {
            dir,
            notices: tokio::sync::Mutex::new(rx),
            stop,
        })
    }

    /// The directory holding the socket (bound into the sandbox).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(SOCKET_NAME)
    }

    /// The next refusal worth telling the build about; waits for one.
    pub async fn next_notice(&self) -> Option<String> {
        self.notices.lock().await.recv().await
    }

    /// The refusals not yet told, without waiting.
    pub fn pending_notices(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(mut rx) = self.notices.try_lock() {
            while let Ok(n) = rx.try_recv() {
                out.push(n);
            }
        }
        out
    }
}

struct Shared {
    policy: EgressPolicy,
    limits: ProxyLimits,
    notices: mpsc::Sender<String>,
    refused: AtomicUsize,
}

impl Shared {
    fn notice(&self, text: String) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed);
        let text = match n {
            n if n < MAX_NOTICES => text,
            n if n == MAX_NOTICES => "Network: further refused connections are not reported".to_owned(),
            _ => return,
        };
        let _ = self.notices.try_send(text);
    }
}

async fn serve(listener: UnixListener, shared: Arc<Shared>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(shared.limits.max_tunnels.max(1)));
    loop {
        // A slot is taken before accepting: at the cap, further connections wait in the
        // backlog and hold none of this process's descriptors.
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let conn = tokio::select! {
            () = stop.cancelled() => return,
            c = listener.accept() => c,
        };
        let conn = match conn {
            Ok((conn, _)) => conn,
            Err(e) => {
                tracing::warn!("egress proxy: cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tunnel(conn, &shared) => {}
            }
            drop(permit);
        });
    }
}

/// An answer other than a tunnel.
struct Refusal {
    status: &'static str,
    reason: String,
}

impl Refusal {
    fn new(status: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

async fn tunnel(mut client: UnixStream, shared: &Shared) {
    let mut buf = Vec::with_capacity(1024);
    let result = async {
        let head = read_head(&mut client, &mut buf, &shared.limits).await?;
        let upstream = connect(&head, shared).await?;
        Ok::<_, Refusal>((head, upstream))
    }
    .await;
    let (head, mut upstream) = match result {
        Ok(ok) => ok,
        Err(refusal) => {
            let body = format!("{}\n", refusal.reason);
            let answer = format!(
                "HTTP/1.1 {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
                 Connection: close\r\nX-CloudRunr-Egress: refused\r\n\r\n{body}",
                refusal.status,
                body.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
            let _ = client.shutdown().await;
            return;
        }
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    // Bytes the client sent after the head (a TLS hello, eagerly) belong to the tunnel.
    if head.len < buf.len() && upstream.write_all(&buf[head.len..]).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// A parsed `CONNECT host:port` head.
struct Head {
    host: String,
    port: u16,
    /// Bytes of the head in the buffer.
    len: usize,
}

async fn read_head(client: &mut UnixStream, buf: &mut Vec<u8>, limits: &ProxyLimits) -> Result<Head, Refusal> {
    let read = async {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(len)) => return parse_connect(&req, len),
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Refusal::new(
                        "431 Request Header Fields Too Large",
                        "too many header fields",
                    ));
                }
                Err(_) => return Err(Refusal::new("400 Bad Request", "not an HTTP request")),
            }
            if buf.len() >= limits.max_head {
                return Err(Refusal::new(
                    "431 Request Header Fields Too Large",
                    format!("the request head is over {} bytes", limits.max_head),
                ));
            }
            let mut chunk = [0u8; 1024];
            let room = (limits.max_head - buf.len()).min(chunk.len());
            match client.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return Err(Refusal::new("400 Bad Request", "the request head ended early")),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(limits.head_timeout, read)
        .await
        .unwrap_or_else(|_| Err(Refusal::new("408 Request Timeout", "the request head took too long")))
}

fn parse_connect(req: &httparse::Request<'_, '_>, len: usize) -> Result<Head, Refusal> {
    if req.method != Some("CONNECT") {
        return Err(Refusal::new(
            "405 Method Not Allowed",
            "this proxy only opens tunnels (CONNECT): use https:// URLs",
        ));
    }
    let target = req.path.unwrap_or_default();
    let (host, port) = split_authority(target)
        .ok_or_else(|| Refusal::new("400 Bad Request", format!("{target:?} is not host:port")))?;
    Ok(Head { host, port, len })
}

/// `host:port` or `[v6]:port`; the host lowercase, without brackets.
fn split_authority(target: &str) -> Option<(String, u16)> {
    let (host, port) = match target.strip_prefix('[') {
        Some(rest) => {
            let (host, port) = rest.split_once("]:")?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            (host, port)
        }
        None => target.rsplit_once(':')?,
    };
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    ok.then(|| (host.to_ascii_lowercase(), port))
}

/// Resolves, judges and connects.
async fn connect(head: &Head, shared: &Shared) -> Result<TcpStream, Refusal> {
    let limits = &shared.limits;
    let target = format!("{}:{}", head.host, head.port);
    let started = std::time::Instant::now();
    let addrs: Vec<SocketAddr> = match head.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, head.port)],
        Err(_) => match tokio::time::timeout(
            limits.resolve_timeout,
            tokio::net::lookup_host((head.host.as_str(), head.port)),
        )
        .await
        {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(_)) | Err(_) => {
                return Err(Refusal::new("502 Bad Gateway", format!("cannot resolve {}", head.host)));
            }
        },
    };
    let mut allowed = Vec::new();
    let mut first_denial: Option<Denied> = None;
    for addr in addrs {
        match shared.policy.decide(&head.host, addr) {
            Decision::Allow => allowed.push(addr),
            Decision::Deny(why) => {
                first_denial.get_or_insert(why);
            }
        }
    }
    if allowed.is_empty() {
        let reason = match first_denial {
            Some(why) => format!("CloudRunr refused a connection to {target}: {why}"),
            None => format!("cannot resolve {}", head.host),
        };
        shared.notice(format!("Network: {reason}"));
        return Err(Refusal::new("403 Forbidden", reason));
    }
    let resolved = started.elapsed();
    for addr in allowed.into_iter().take(MAX_ATTEMPTS) {
        if let Ok(Ok(stream)) = tokio::time::timeout(limits.connect_timeout, TcpStream::connect(addr)).await {
            // Each hop passes on at once what it gets: Nagle's wait for an ACK, on top of the
            // client's own, costs a round trip per request on a kept-alive connection.
            let _ = stream.set_nodelay(true);
            tracing::debug!(%target, %addr, ?resolved, connected = ?started.elapsed(), "egress tunnel");
            return Ok(stream);
        }
    }
    Err(Refusal::new("502 Bad Gateway", format!("cannot connect to {target}")))
}

#[cfg(test)]
mod tests;
