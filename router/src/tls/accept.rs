//! The TLS handshake: SNI picks the certificate from the [`CertStore`] (an issuer may supply one
//! on demand while the handshake waits), ALPN picks HTTP/2 or HTTP/1.1.

use super::{CertStore, OnDemand, TlsError, provider};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::rustls::server::{Acceptor, ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::version::{TLS12, TLS13};
use tokio_rustls::server::TlsStream;

/// Sessions remembered for resumption by session id (TLS 1.2 clients without tickets); about
/// 100 bytes each.
const SESSION_CACHE: usize = 4096;
/// How often handshakes naming a host no certificate covers are reported.
const UNKNOWN_REPORT: Duration = Duration::from_secs(60);

/// What the client and the server agreed to speak, by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http2,
    /// `http/1.1`, or no ALPN at all.
    Http1,
}

/// Accepts TLS connections with the certificates of a [`CertStore`].
///
/// One [`ServerConfig`] serves every connection, so that its session cache and ticket keys are
/// shared: a returning client resumes its session (an abbreviated handshake, no certificate
/// sent) rather than starting over. Ticket keys rotate every six hours (rustls's ticketer).
pub struct TlsEdge {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    on_demand: Arc<dyn OnDemand>,
    handshake_timeout: Duration,
}

impl TlsEdge {
    pub fn new(
        store: Arc<CertStore>,
        on_demand: Arc<dyn OnDemand>,
        handshake_timeout: Duration,
    ) -> Result<Self, TlsError> {
        let resolver = Resolver {
            store: store.clone(),
            unknown: Mutex::new(Unknown::default()),
        };
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&TLS13, &TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = tokio_rustls::rustls::crypto::ring::Ticketer::new()?;
        Ok(Self {
            config: Arc::new(config),
            store,
            on_demand,
            handshake_timeout,
        })
    }

    /// The store certificates are served from.
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// Runs the server side of a handshake on `tcp`, for at most the handshake timeout (an
    /// on-demand certificate included).
    pub async fn accept(&self, tcp: TcpStream) -> Result<(TlsStream<TcpStream>, Protocol), TlsError> {
        match tokio::time::timeout(self.handshake_timeout, self.handshake(tcp)).await {
            Ok(result) => result,
            Err(_) => Err(TlsError::HandshakeTimeout(self.handshake_timeout)),
        }
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<(TlsStream<TcpStream>, Protocol), TlsError> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp)
            .await
            .map_err(TlsError::Handshake)?;
        // Only a name the store does not cover is asked for, once the client has said it.
        let wanted = start
            .client_hello()
            .server_name()
            .filter(|name| !self.store.covers(name))
            .map(str::to_owned);
        if let Some(name) = wanted
            && let Some(key) = self.on_demand.certificate_for(&name).await
        {
            self.store.insert([&name], key);
        }
        let stream = start
            .into_stream(self.config.clone())
            .await
            .map_err(TlsError::Handshake)?;
        let protocol = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        };
        Ok((stream, protocol))
    }
}

/// Picks the certificate of each handshake by its SNI name.
struct Resolver {
    store: Arc<CertStore>,
    unknown: Mutex<Unknown>,
}

/// Handshakes for names no certificate covers, since the last report.
#[derive(Default)]
struct Unknown {
    count: u64,
    reported: Option<Instant>,
}

impl Resolver {
    /// Counts a handshake for `name`, which nothing covers; reports at most once a minute, so
    /// that scanners trying names cannot fill the log.
    fn count_unknown(&self, name: &str, default: bool) {
        let mut unknown = self.unknown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        unknown.count += 1;
        if unknown.reported.is_none_or(|at| at.elapsed() >= UNKNOWN_REPORT) {
            let answer = match default {
                true => "served the default certificate",
                false => "refused: there is no default certificate",
            };
            tracing::warn!(
                "{} TLS handshake(s) named a host no certificate covers, the last {name:?}: {answer}",
                unknown.count
            );
            unknown.count = 0;
            unknown.reported = Some(Instant::now());
        }
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            // Reached by address: no name to pick by.
            return self.store.default_certificate();
        };
        if let Some(key) = self.store.resolve(name) {
            return Some(key);
        }
        let default = self.store.default_certificate();
        self.count_unknown(name, default.is_some());
        default
    }
}
