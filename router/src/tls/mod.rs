//! HTTPS at the edge: the certificates served ([`CertStore`]), where they come from (files,
//! [`files`]; issuers through [`OnDemand`] and by filling the store), the TLS handshake
//! ([`TlsEdge`]) and plain HTTP's redirect to HTTPS ([`redirect`]).
//!
//! Every piece runs on rustls with ring; TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, session
//! resumption by tickets and by a server-side session cache.

mod accept;
pub mod files;
mod pem;
pub mod redirect;
mod store;

pub use accept::{Protocol, TlsEdge};
pub use pem::{certified_key_from_pem, dns_names, provider};
pub use store::CertStore;
pub use tokio_rustls::rustls;
pub use tokio_rustls::server::TlsStream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::sign::CertifiedKey;

/// Marks a request that came over TLS (a request extension): answers for a project that opted
/// in to HSTS carry [`HSTS`] then, and only then.
#[derive(Debug, Clone, Copy)]
pub struct Https;

/// The `Strict-Transport-Security` value of projects that opted in: a year, as browsers'
/// preload lists ask for; the project's hosts only (no `includeSubDomains`: a project's host
/// says nothing about the names under it).
pub const HSTS: &str = "max-age=31536000";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key that cannot be served, and why.
    #[error("{0}")]
    Certificate(String),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the TLS configuration is refused: {0}")]
    Config(#[from] rustls::Error),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("the TLS handshake took longer than {0:?}")]
    HandshakeTimeout(Duration),
}

/// Gets a certificate while a handshake waits, for a name the [`CertStore`] has none for (an
/// issuer obtaining one on demand). It must decide quickly, and say no (`None`) for any name it
/// does not serve: the handshake then goes on with the default certificate, or fails without one.
#[async_trait::async_trait]
pub trait OnDemand: Send + Sync {
    async fn certificate_for(&self, sni: &str) -> Option<Arc<CertifiedKey>>;
}

/// No certificates on demand: names the store does not cover get the default certificate.
pub struct NoOnDemand;

#[async_trait::async_trait]
impl OnDemand for NoOnDemand {
    async fn certificate_for(&self, _sni: &str) -> Option<Arc<CertifiedKey>> {
        None
    }
}
