//! What the issuer reads from an issued chain: the leaf's validity.

use crate::AcmeError;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// A leaf certificate's validity, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateTimes {
    pub not_before: i64,
    pub not_after: i64,
}

/// The first certificate of a PEM chain, parsed.
fn leaf(chain_pem: &str) -> Result<x509_cert::Certificate, AcmeError> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| AcmeError::Certificate("the chain holds no certificate".into()))?
        .map_err(|e| AcmeError::Certificate(format!("the chain is not valid PEM: {e}")))?;
    x509_cert::Certificate::from_der(&leaf)
        .map_err(|e| AcmeError::Certificate(format!("the leaf certificate does not parse: {e}")))
}

/// The validity of the first certificate of a PEM chain.
pub fn certificate_times(chain_pem: &str) -> Result<CertificateTimes, AcmeError> {
    let cert = leaf(chain_pem)?;
    let validity = &cert.tbs_certificate.validity;
    let ms = |t: &x509_cert::time::Time| i64::try_from(t.to_unix_duration().as_millis()).unwrap_or(i64::MAX);
    Ok(CertificateTimes {
        not_before: ms(&validity.not_before),
        not_after: ms(&validity.not_after),
    })
}

/// The DNS names (lowercase) the first certificate of a PEM chain is valid for: its subject
/// alternative names.
pub fn certificate_names(chain_pem: &str) -> Result<Vec<String>, AcmeError> {
    let cert = leaf(chain_pem)?;
    let san = cert
        .tbs_certificate
        .get::<SubjectAltName>()
        .map_err(|e| AcmeError::Certificate(format!("the leaf's alternative names do not parse: {e}")))?;
    Ok(san
        .map(|(_, names)| names.0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::DnsName(name) => Some(name.to_string().to_ascii_lowercase()),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_leaf_validity() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 4, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let times = certificate_times(&cert.pem()).unwrap();
        assert_eq!(times.not_before, 1_893_456_000_000);
        assert_eq!(times.not_after, 1_893_456_000_000 + 90 * 86_400_000);
    }

    #[test]
    fn reads_the_leaf_names() {
        let params =
            rcgen::CertificateParams::new(vec!["*.Apps.example.com".to_owned(), "apps.example.com".to_owned()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_names(&cert.pem()).unwrap(),
            ["*.apps.example.com", "apps.example.com"]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(certificate_names("").is_err());
        assert!(certificate_times("").is_err());
        assert!(certificate_times("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
