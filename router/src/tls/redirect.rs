//! Plain HTTP's way to HTTPS: a `308` for every host a certificate covers, except the paths an
//! ACME server checks over plain HTTP (HTTP-01 challenges).

use super::CertStore;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Where HTTP-01 challenges are answered; never redirected (the issuer asks over plain HTTP).
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Decides which plain-HTTP requests are sent to HTTPS, and where.
#[derive(Clone)]
pub struct Redirector {
    store: Arc<CertStore>,
    /// The HTTPS port in URLs; `None` for 443.
    https_port: Option<u16>,
}

impl Redirector {
    pub fn new(store: Arc<CertStore>, https_port: Option<u16>) -> Self {
        Self {
            store,
            https_port: https_port.filter(|&p| p != 443),
        }
    }

    /// Whether requests for `host` (a Host header, port allowed) may be redirected at all: a
    /// certificate covers it. Hosts with none (`*.localhost` unless a certificate names it, a
    /// server reached by address) stay on plain HTTP.
    pub fn covers_host(&self, host: &str) -> bool {
        host_name(host).is_some_and(|name| self.store.covers(name))
    }

    /// The `https://` URL a plain-HTTP request for `host` and `path_and_query` is sent to, if it is.
    pub fn location(&self, host: &str, path_and_query: &str) -> Option<String> {
        if path_and_query.starts_with(ACME_CHALLENGE_PREFIX) || !path_and_query.starts_with('/') {
            return None;
        }
        let name = host_name(host).filter(|name| self.store.covers(name))?;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        Some(match self.https_port {
            Some(port) => format!("https://{name}:{port}{path_and_query}"),
            None => format!("https://{name}{path_and_query}"),
        })
    }
}

/// The host name of a Host header: the port cut off, and only when it is a plain DNS name (so
/// that nothing else can reach a `Location`).
fn host_name(host: &str) -> Option<&str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .enumerate()
            .all(|(i, label)| (i > 0 || !label.is_empty()) && label.len() <= 63)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then_some(name)
}

/// axum middleware for the plain listener while TLS is on: a `308` to HTTPS where
/// [`Redirector::location`] says so, the request served as it is otherwise.
pub async fn redirect_to_https(State(redirector): State<Redirector>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let target = host.and_then(|host| redirector.location(host, path));
    match target.and_then(|t| HeaderValue::try_from(t).ok()) {
        Some(location) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response(),
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certified_key_from_pem;

    fn redirector(port: Option<u16>) -> Redirector {
        let store = Arc::new(CertStore::new());
        let cert = rcgen::generate_simple_self_signed(vec!["*.example.com".into(), "example.com".into()])
            .expect("certificate");
        let key =
            certified_key_from_pem(cert.cert.pem().as_bytes(), cert.key_pair.serialize_pem().as_bytes()).expect("key");
        store.insert(["*.example.com", "example.com"], Arc::new(key));
        Redirector::new(store, port)
    }

    #[test]
    fn covered_hosts_go_to_https_on_the_tls_port() {
        let r = redirector(Some(8443));
        assert_eq!(
            r.location("blog.example.com:8080", "/a?b=1").as_deref(),
            Some("https://blog.example.com:8443/a?b=1")
        );
        assert_eq!(
            r.location("Example.COM", "/").as_deref(),
            Some("https://example.com:8443/")
        );
        let standard = redirector(Some(443));
        assert_eq!(
            standard.location("blog.example.com", "/x").as_deref(),
            Some("https://blog.example.com/x")
        );
    }

    #[test]
    fn challenges_uncovered_hosts_and_odd_hosts_stay() {
        let r = redirector(None);
        assert_eq!(r.location("blog.example.com", "/.well-known/acme-challenge/tok"), None);
        assert_eq!(r.location("blog.localhost", "/"), None);
        assert_eq!(r.location("127.0.0.1:8080", "/"), None);
        assert_eq!(r.location("a.b.example.com", "/"), None);
        // Nothing but a DNS name reaches the Location header.
        assert_eq!(r.location("evil.com/x.example.com", "/"), None);
        assert_eq!(r.location("evil.com@x.example.com", "/"), None);
        assert_eq!(r.location("blog.example.com", "*"), None);
        assert!(r.covers_host("blog.example.com:80"));
        assert!(!r.covers_host("blog.localhost:80"));
    }
}
