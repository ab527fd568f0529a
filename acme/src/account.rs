//! The ACME account: its HTTP client (the public roots plus the operator's extra ones), and its
//! credentials, created once per directory and kept sealed in the database.

use crate::{AcmeConfig, AcmeError};
use db::Database;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{Account, AccountCredentials, BodyWrapper, NewAccount};
use instant_acme::{BytesResponse, HttpClient};
use platform::crypto::SecretBox;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_rustls::rustls;

/// Counts the CA's badNonce rejections on the way through (instant-acme retries each request
/// a few times with the fresh nonce the rejection carries; the count shows that happening).
struct CountingRejections {
    inner: Box<dyn HttpClient>,
    rejections: Arc<AtomicU64>,
}

impl HttpClient for CountingRejections {
    fn request(
        &self,
        req: http::Request<BodyWrapper<bytes::Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.inner.request(req);
        let rejections = self.rejections.clone();
        Box::pin(async move {
            let mut rsp = fut.await?;
            if rsp.parts.status != http::StatusCode::BAD_REQUEST {
                return Ok(rsp);
            }
            let body = rsp.body.into_bytes().await.map_err(instant_acme::Error::Other)?;
            if body.windows(BAD_NONCE.len()).any(|w| w == BAD_NONCE) {
                rejections.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("the CA rejected a nonce; the request is retried with a fresh one");
            }
            Ok(BytesResponse {
                parts: rsp.parts,
                body: Box::new(body),
            })
        })
    }
}

const BAD_NONCE: &[u8] = b"urn:ietf:params:acme:error:badNonce";

/// [`http_client`], counting the CA's nonce rejections into `rejections`.
pub(crate) fn counting_client(
    extra_roots: Option<&Path>,
    rejections: Arc<AtomicU64>,
) -> Result<Box<dyn HttpClient>, AcmeError> {
    Ok(Box::new(CountingRejections {
        inner: http_client(extra_roots)?,
        rejections,
    }))
}

/// An HTTPS client for the CA trusting the public roots (webpki-roots) and, when configured, the
/// certificates of `extra_roots` (a PEM file).
pub(crate) fn http_client(extra_roots: Option<&Path>) -> Result<Box<dyn instant_acme::HttpClient>, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_roots {
        let fail = |message: String| AcmeError::Roots {
            path: path.to_owned(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(fail("no CERTIFICATE in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| fail(e.to_string()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Certificate(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, BodyWrapper<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}

pub(crate) fn ca_error(config: &AcmeConfig, e: impl std::fmt::Display) -> AcmeError {
    AcmeError::Ca {
        directory: config.directory.clone(),
        message: e.to_string(),
    }
}

/// The account at the configured directory: the stored one, or a new one stored for every
/// process (when two processes create one at once, both go on with the one stored first).
pub(crate) async fn load_or_create(
    db: &Database,
    secrets: &SecretBox,
    config: &AcmeConfig,
    rejections: &Arc<AtomicU64>,
) -> Result<Account, AcmeError> {
    let stored = match db.acme_account(&config.directory).await? {
        Some(sealed) => sealed,
        None => {
            let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
            let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
            let (_, credentials) =
                Account::builder_with_http(counting_client(config.ca_roots.as_deref(), rejections.clone())?)
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        config.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| ca_error(config, format!("creating the account: {e}")))?;
            let json = serde_json::to_string(&credentials).map_err(|e| AcmeError::Certificate(e.to_string()))?;
            tracing::info!(directory = %config.directory, "created an ACME account");
            db.insert_acme_account(&config.directory, &secrets.seal(&json), crate::now_ms())
                .await?
        }
    };
    let json = secrets.open(&stored)?;
    let credentials: AccountCredentials = serde_json::from_str(json.expose())
        .map_err(|e| AcmeError::Certificate(format!("the stored ACME account does not parse: {e}")))?;
    Account::builder_with_http(counting_client(config.ca_roots.as_deref(), rejections.clone())?)
        .from_credentials(credentials)
        .await
        .map_err(|e| ca_error(config, format!("loading the account: {e}")))
}
