//! Certificates and keys from PEM, as rustls serves them.

use super::TlsError;
use std::sync::Arc;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

/// The cryptography every TLS piece here uses: ring, as the rest of the workspace's rustls.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// A servable certificate from a PEM chain (leaf first) and its PEM private key (PKCS#8, PKCS#1
/// or SEC1). Fails, saying why, when either does not parse or the key is not the leaf's.
pub fn certified_key_from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(format!("the certificate chain is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block in the chain".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Certificate(format!("the private key is not valid PEM: {e}")))?;
    let key = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| TlsError::Certificate(format!("the key does not fit the certificate: {e}")))?;
    // `from_der` lets a key whose public half it cannot compute through; serving one that does
    // not match would fail every handshake, so only a proven match is accepted.
    key.keys_match()
        .map_err(|e| TlsError::Certificate(format!("the key does not fit the certificate: {e}")))?;
    Ok(key)
}

/// The DNS names (and `*.` wildcards) the leaf certificate of `key` is issued for, lowercase.
pub fn dns_names(key: &CertifiedKey) -> Result<Vec<String>, TlsError> {
    let leaf = key
        .end_entity_cert()
        .map_err(|e| TlsError::Certificate(format!("no leaf certificate: {e}")))?;
    let parsed = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| TlsError::Certificate(format!("the leaf certificate does not parse: {e}")))?;
    Ok(parsed.valid_dns_names().map(str::to_ascii_lowercase).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_and_its_key_make_a_certified_key_with_its_names() {
        let cert = rcgen::generate_simple_self_signed(vec!["*.example.com".into(), "example.com".into()])
            .expect("certificate");
        let key = certified_key_from_pem(cert.cert.pem().as_bytes(), cert.key_pair.serialize_pem().as_bytes())
            .expect("loads");
        assert_eq!(dns_names(&key).expect("names"), ["*.example.com", "example.com"]);
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).expect("certificate");
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).expect("certificate");
        let wrong_key = certified_key_from_pem(a.cert.pem().as_bytes(), b.key_pair.serialize_pem().as_bytes());
        assert!(
            matches!(&wrong_key, Err(TlsError::Certificate(m)) if m.contains("does not fit")),
            "{:?}",
            wrong_key.err()
        );
        let no_cert = certified_key_from_pem(b"nothing here", a.key_pair.serialize_pem().as_bytes());
        assert!(matches!(&no_cert, Err(TlsError::Certificate(m)) if m.contains("no CERTIFICATE")));
        let no_key = certified_key_from_pem(a.cert.pem().as_bytes(), b"-----BEGIN PRIVATE KEY-----\nxx\n");
        assert!(no_key.is_err());
    }
}
