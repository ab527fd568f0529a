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
//!
//! - [`connection`]: the loop that reads request heads and decides what is answered here;
//! - [`kept`]: the answers kept for the next identical request;
//! - [`write`]: putting responses on the socket;
//! - [`slots`]: the cap on open connections, shared with the general server, and which of them
//!   are idle.
//!
//! Every wait here is bounded by the server's [`ConnectionLimits`]: the idle wait for a request,
//! the head from its first byte (however steadily its bytes come), and each write.

mod connection;
mod kept;
pub mod slots;
mod write;

pub use write::Transport;

use crate::Sites;
use bytes::Bytes;
use kept::Answers;
use platform::connection_limits::ConnectionLimits;
use platform::settings::SitesSettings;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;

/// The largest request head answered here (when the limits allow as much); a longer one goes to
/// the general server, which takes heads up to [`ConnectionLimits::max_header_bytes`].
const MAX_HEAD: usize = 16 * 1024;

/// How a connection served here ended.
pub enum Ended<S = TcpStream> {
    /// Closed: by the client, after `Connection: close`, on a timeout, at shutdown, or on an
    /// I/O error.
    Closed,
    /// The next request is not for this path: serve the connection from here, starting with
    /// `unread` (what was read from the socket and not answered).
    HandOff { stream: S, unread: Bytes },
}

/// Serves site requests on connections, handing off what it does not answer.
#[derive(Clone)]
pub struct SiteConnections {
    sites: Sites,
    settings: Arc<SitesSettings>,
    answers: Arc<Answers>,
    answer_dir: Arc<Path>,
    limits: Arc<ConnectionLimits>,
    /// On the plain listener while TLS is on: hosts this covers are not answered here but
    /// handed off, for the general server to redirect to HTTPS.
    redirecting: Option<crate::tls::redirect::Redirector>,
    /// The connections are TLS: requests are marked [`Https`](crate::tls::Https).
    https: bool,
}

impl SiteConnections {
    /// `answer_dir`: a directory on disk for the bodies of long answers kept (unnamed files,
    /// gone when closed); the data directory does. `limits` bound every wait on a connection.
    pub fn new(sites: Sites, settings: Arc<SitesSettings>, answer_dir: &Path, limits: Arc<ConnectionLimits>) -> Self {
        Self {
            sites,
            settings,
            answers: Arc::default(),
            answer_dir: answer_dir.into(),
            limits,
            redirecting: None,
            https: false,
        }
    }

    /// The same, for a plain listener beside a TLS one: requests for hosts `redirector` covers
    /// go to the general server (which redirects them to HTTPS). Answers are kept apart from
    /// this value's (each listener keeps its own).
    pub fn redirecting(&self, redirector: crate::tls::redirect::Redirector) -> Self {
        Self {
            answers: Arc::default(),
            redirecting: Some(redirector),
            ..self.clone()
        }
    }

    /// The same sites for a TLS listener: requests marked [`Https`](crate::tls::Https), and
    /// answers kept apart from this value's (a TLS listener's may carry headers, HSTS, that
    /// plain HTTP's must not).
    pub fn https(&self) -> Self {
        Self {
            answers: Arc::default(),
            https: true,
            ..self.clone()
        }
    }
}
