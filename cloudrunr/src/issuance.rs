//! Certificates from ACME in a running process (see the `acme` crate): the store the TLS
//! listener serves from, filled from the database and by issuance; the on-demand rule for
//! handshakes; and the HTTP-01 answers in front of every other route.

use axum::middleware::from_fn_with_state;
use db::Database;
use platform::settings::Settings;
use router::acme_challenge::{ChallengeResponder, answer_challenges};
use router::tls::{CertStore, NoOnDemand, OnDemand};
use std::sync::Arc;

/// What the listeners need from issuance.
pub struct Issuance {
    pub store: Arc<CertStore>,
    pub on_demand: Arc<dyn OnDemand>,
    responder: Option<Arc<dyn ChallengeResponder>>,
}

impl Issuance {
    /// With ACME on: an issuer on the database, its background work started, the stored
    /// certificates loaded before the listeners open. Off: an empty store and no issuance.
    pub async fn start(settings: &Settings, db: &Database) -> anyhow::Result<Self> {
        let store = Arc::new(CertStore::new());
        if !settings.acme.enabled {
            return Ok(Self {
                store,
                on_demand: Arc::new(NoOnDemand),
                responder: None,
            });
        }
        let a = &settings.acme;
        let config = acme::AcmeConfig {
            directory: a.directory.clone(),
            email: a.email.clone(),
            ca_roots: a.ca_roots.clone(),
            dns_hook: a.dns_hook.clone(),
            dns_propagation: a.dns_propagation,
            profile: a.profile.clone(),
            limits: acme::policy::Limits {
                backoff_base: a.retry_base,
                ..acme::policy::Limits::default()
            },
            ..acme::AcmeConfig::default()
        };
        let secrets = platform::crypto::SecretBox::new(&settings.secret_key)?;
        let issuer = acme::Issuer::new(db.clone(), secrets, config);
        let service = acme::AcmeService::new(issuer, db.clone(), store.clone(), &settings.sites.domain);
        service.load().await;
        service.spawn(a.check_interval);
        tracing::info!(directory = %a.directory, "certificates are issued over ACME");
        Ok(Self {
            store,
            on_demand: Arc::new(acme::OnDemandIssuance(service)),
            responder: Some(Arc::new(acme::ChallengeAnswers::new(db.clone()))),
        })
    }

    /// `app` with HTTP-01 checks answered in front of it (when ACME is on).
    pub fn wrap(&self, app: axum::Router) -> axum::Router {
        match &self.responder {
            Some(responder) => app.layer(from_fn_with_state(responder.clone(), answer_challenges)),
            None => app,
        }
    }
}
