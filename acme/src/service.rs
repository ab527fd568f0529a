//! Issuance inside a running platform: keeps the router's `CertStore` filled from the database
//! (so every process serves what any process issued), starts an order when a domain is verified
//! and, on demand, at the first handshake for a verified domain without a certificate (never for
//! a name that is not a verified domain), renews what is due, keeps the platform's wildcard when a
//! DNS hook is configured, and reports each domain's outcome in its state.

use crate::{CertName, Issued, Issuer, Outcome};
use db::Database;
use platform::domain::{DomainName, DomainState};
use router::tls::rustls::sign::CertifiedKey;
use router::tls::{CertStore, OnDemand};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a handshake waits for an on-demand certificate before it goes on without one (the
/// order goes on, and the next handshake is served from the store).
const ON_DEMAND_WAIT: Duration = Duration::from_secs(8);

pub struct AcmeService {
    issuer: Arc<Issuer>,
    db: Database,
    store: Arc<CertStore>,
    /// `*.<platform domain>`, issued over DNS-01 when a hook is configured.
    wildcard: Option<CertName>,
    /// Names whose order runs in this process.
    in_flight: Mutex<HashSet<String>>,
    /// The `issued_at` of each certificate in the store, to load only what changed.
    loaded: Mutex<HashMap<String, i64>>,
}

impl AcmeService {
    /// `platform_domain` is the sites' domain: its wildcard is kept when the issuer has a hook.
    pub fn new(issuer: Issuer, db: Database, store: Arc<CertStore>, platform_domain: &str) -> Arc<Self> {
        let wildcard = issuer
            .config()
            .dns_hook
            .as_ref()
            .and_then(|_| CertName::parse(&format!("*.{platform_domain}")).ok());
        Arc::new(Self {
            issuer: Arc::new(issuer),
            db,
            store,
            wildcard,
            in_flight: Mutex::new(HashSet::new()),
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// Loads into the store every stored certificate it does not hold yet (or holds an older
    /// one of), and drops those of custom domains that are no longer verified.
    pub async fn load(&self) {
        let stored = match self.db.certificates().await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored certificates");
                return;
            }
        };
        let verified: Option<HashSet<String>> = match self.db.verified_domains().await {
            Ok(domains) => Some(domains.into_iter().map(|d| d.name.as_str().to_owned()).collect()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the verified domains");
                None
            }
        };
        for cert in stored {
            let is_custom = Some(cert.name.as_str()) != self.wildcard.as_ref().map(CertName::as_str);
            if is_custom && verified.as_ref().is_some_and(|v| !v.contains(&cert.name)) {
                // The domain was removed: stop serving its certificate, and never renew it.
                if self.loaded_at(&cert.name).is_some() {
                    self.store.remove(&cert.name);
                    self.lock_loaded().remove(&cert.name);
                }
                if let Err(e) = self.db.delete_certificate(&cert.name).await {
                    tracing::warn!(name = cert.name, error = %e, "cannot forget the certificate of a removed domain");
                }
                continue;
            }
            if self.loaded_at(&cert.name) == Some(cert.issued_at) {
                continue;
            }
            let name = cert.name.clone();
            let issued_at = cert.issued_at;
            let issued = match self
                .issuer
                .stored(&match CertName::parse(&name) {
                    Ok(n) => n,
                    Err(_) => continue,
                })
                .await
            {
                Ok(Some(issued)) => issued,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(name, error = %e, "cannot open a stored certificate");
                    continue;
                }
            };
            if self.serve(&issued) {
                self.lock_loaded().insert(name, issued_at);
            }
        }
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn loaded_at(&self, name: &str) -> Option<i64> {
        self.lock_loaded().get(name).copied()
    }

    /// Puts `issued` into the store; false (logged) when it cannot be served.
    fn serve(&self, issued: &Issued) -> bool {
        match router::tls::certified_key_from_pem(issued.chain_pem.as_bytes(), issued.key_pem.expose().as_bytes()) {
            Ok(key) => {
                let names = issued.served_names();
                if names.is_empty() {
                    tracing::error!(name = %issued.name, "an issued certificate is valid for none of its names");
                    return false;
                }
                self.store.insert(names, Arc::new(key));
                true
            }
            Err(e) => {
                tracing::error!(name = %issued.name, error = %e, "an issued certificate cannot be served");
                false
            }
        }
    }

    fn is_in_flight(&self, name: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name)
    }

    /// Starts the name's order in the background unless one runs here already.
    fn kick(self: &Arc<Self>, name: CertName) {
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.as_str().to_owned())
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.obtain(&name).await;
            this.in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(name.as_str());
        });
    }

    async fn obtain(&self, name: &CertName) {
        let domain = DomainName::parse(name.as_str()).ok().filter(|_| !name.is_wildcard());
        match self.issuer.ensure(name).await {
            Ok(Outcome::Issued(issued) | Outcome::Current(issued)) => {
                if self.serve(&issued) {
                    let issued_at = self
                        .db
                        .certificate(name.as_str())
                        .await
                        .ok()
                        .flatten()
                        .map(|c| c.issued_at);
                    if let Some(at) = issued_at {
                        self.lock_loaded().insert(name.as_str().to_owned(), at);
                    }
                }
                if let Some(domain) = &domain {
                    self.set_state(domain, DomainState::CertificateIssued, None).await;
                }
            }
            Ok(Outcome::Busy) => {}
            Ok(Outcome::Waiting { until, reason }) => {
                tracing::debug!(name = %name, until, reason, "not ordering yet");
            }
            Err(e) => {
                if let Some(domain) = &domain {
                    self.set_state(domain, DomainState::Failed, Some(&e.to_string())).await;
                }
            }
        }
    }

    async fn set_state(&self, domain: &DomainName, state: DomainState, reason: Option<&str>) {
        if let Err(e) = self.db.set_domain_state(domain, state, reason).await {
            tracing::warn!(domain = %domain.as_str(), error = %e, "cannot record the domain's certificate state");
        }
    }

    /// One round of the background work: load, order for verified domains without a
    /// certificate, renew what is due, keep the wildcard.
    pub async fn tick(self: &Arc<Self>) {
        self.load().await;
        let verified: HashSet<String> = match self.db.verified_domains().await {
            Ok(domains) => domains.into_iter().map(|d| d.name.as_str().to_owned()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the verified domains");
                return;
            }
        };
        for name in verified.iter().filter_map(|n| CertName::parse(n).ok()) {
            if self.loaded_at(name.as_str()).is_none() {
                self.kick(name);
            }
        }
        match self.db.certificates_due(crate::now_ms()).await {
            Ok(names) => {
                let wildcard = self.wildcard.as_ref().map(CertName::as_str);
                for name in names
                    .iter()
                    .filter(|n| verified.contains(*n) || Some(n.as_str()) == wildcard)
                {
                    if let Ok(name) = CertName::parse(name) {
                        self.kick(name);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the certificates due for renewal"),
        }
        // Not loaded yet, or loaded from before the certificate covered the platform's host.
        if let Some(wildcard) = &self.wildcard
            && (self.loaded_at(wildcard.as_str()).is_none() || !self.store.covers(wildcard.base()))
        {
            self.kick(wildcard.clone());
        }
    }

    /// Runs [`AcmeService::tick`] now and then every `interval`.
    pub fn spawn(self: &Arc<Self>, interval: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                this.tick().await;
            }
        });
    }
}

/// The on-demand rule (Caddy's "ask"): a certificate is ordered at a handshake only for a name
/// that is a verified custom domain; any other name gets nothing from here.
pub struct OnDemandIssuance(pub Arc<AcmeService>);

#[async_trait::async_trait]
impl OnDemand for OnDemandIssuance {
    async fn certificate_for(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let service = &self.0;
        let domain = DomainName::parse(sni).ok()?;
        match service.db.domain(&domain).await {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a handshake's name against the verified domains");
                return None;
            }
        }
        let name = CertName::parse(domain.as_str()).ok()?;
        // Issued by another process since this one last loaded?
        service.load().await;
        if let Some(key) = service.store.resolve(name.as_str()) {
            return Some(key);
        }
        service.kick(name.clone());
        // Until this process's order for the name ends (issued, failed, or waiting out a
        // backoff), or the wait runs out.
        let deadline = tokio::time::Instant::now() + ON_DEMAND_WAIT;
        while tokio::time::Instant::now() < deadline && service.is_in_flight(name.as_str()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service.store.resolve(name.as_str())
    }
}
