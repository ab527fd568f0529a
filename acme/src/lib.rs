//! Certificates from an ACME CA (Let's Encrypt; Pebble in the tests), kept in the database so
//! that every router process serves the same ones.
//!
//! [`Issuer::issue`] obtains one certificate for one [`CertName`]: a host name over HTTP-01 (the
//! key authorization is stored by token, and whichever router process the CA reaches answers
//! `/.well-known/acme-challenge/{token}` from the database: [`ChallengeAnswers`]), or the
//! platform's `*.` wildcard over DNS-01 through the operator's hook command ([`hook`]). Only one
//! process issues a name at a time (a lease in the database); failures back off and stay under
//! the CA's rate limits ([`policy`]); the certificate is stored with its key sealed by the
//! platform's `SecretBox`, and renewed at two thirds of its lifetime.

mod account;
mod challenge;
pub mod hook;
mod issue;
mod name;
mod pem;
pub mod policy;
mod service;

pub use challenge::ChallengeAnswers;
pub use issue::{Issued, Issuer, Outcome};
pub use name::{CertName, CertNameError};
pub use pem::{CertificateTimes, certificate_names, certificate_times};
pub use service::{AcmeService, OnDemandIssuance};

use std::path::PathBuf;
use std::time::Duration;

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Where and how certificates are obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The CA's directory URL (`CLOUDRUNR_ACME_DIRECTORY`).
    pub directory: String,
    /// The account's contact (`CLOUDRUNR_ACME_EMAIL`): the CA writes about expiring certificates
    /// and problems with the account.
    pub email: Option<String>,
    /// Extra roots trusted for the CA's HTTPS (`CLOUDRUNR_ACME_CA_ROOTS`, a PEM file), beside the
    /// public ones: a test or private CA.
    pub ca_roots: Option<PathBuf>,
    /// The DNS-01 hook (`CLOUDRUNR_ACME_DNS_HOOK`), called as `HOOK set|clear <fqdn> <value>`.
    pub dns_hook: Option<PathBuf>,
    /// How long after the hook's `set` the CA is asked to validate: DNS takes a while to reach
    /// every authoritative server.
    pub dns_propagation: Duration,
    /// The certificate profile asked for (Let's Encrypt's `classic`, `shortlived`, …); `None`
    /// is the CA's default.
    pub profile: Option<String>,
    /// The rate limits kept and the backoff after failures.
    pub limits: policy::Limits,
    /// The longest one order may take, from creation to the certificate.
    pub order_timeout: Duration,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            directory: LETS_ENCRYPT.to_owned(),
            email: None,
            ca_roots: None,
            dns_hook: None,
            dns_propagation: Duration::from_secs(30),
            profile: None,
            limits: policy::Limits::default(),
            order_timeout: Duration::from_secs(180),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the CA ({directory}): {message}")]
    Ca { directory: String, message: String },
    /// The CA tried to validate the name and could not: the reason is the CA's.
    #[error("the CA could not validate {name}: {message}")]
    Validation { name: String, message: String },
    #[error("the DNS hook: {0}")]
    Hook(String),
    #[error("{0} is a wildcard: it needs DNS-01, and no DNS hook is configured (CLOUDRUNR_ACME_DNS_HOOK)")]
    NoHook(String),
    #[error("cannot read the extra CA roots {}: {message}", path.display())]
    Roots { path: PathBuf, message: String },
    #[error("the issued certificate: {0}")]
    Certificate(String),
    #[error("the stored ACME data cannot be opened: {0}")]
    Sealed(#[from] platform::crypto::CryptoError),
    #[error(transparent)]
    Db(#[from] db::DbError),
}

fn now_ms() -> i64 {
    platform::Timestamp::now().millis()
}

#[cfg(test)]
mod tests;
