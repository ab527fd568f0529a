//! What the issuer reads from an issued chain: the leaf's validity.

use crate::AcmeError;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_cert::der::Decode;

/// A leaf certificate's validity, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateTimes {
    pub not_before: i64,
    pub not_after: i64,
}

/// The validity of the first certificate of a PEM chain.
pub fn certificate_times(chain_pem: &str) -> Result<CertificateTimes, AcmeError> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| AcmeError::Certificate("the chain holds no certificate".into()))?
        .map_err(|e| AcmeError::Certificate(format!("the chain is not valid PEM: {e}")))?;
    let cert = x509_cert::Certificate::from_der(&leaf)
        .map_err(|e| AcmeError::Certificate(format!("the leaf certificate does not parse: {e}")))?;
    let validity = &cert.tbs_certificate.validity;
    let ms = |t: &x509_cert::time::Time| i64::try_from(t.to_unix_duration().as_millis()).unwrap_or(i64::MAX);
    Ok(CertificateTimes {
        not_before: ms(&validity.not_before),
        not_after: ms(&validity.not_after),
    })
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
    fn garbage_is_an_error_not_a_panic() {
        assert!(certificate_times("").is_err());
        assert!(certificate_times("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
