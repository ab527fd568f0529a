//! One certificate, start to end: the gate (backoff and rate limits), the lease, the order and
//! its challenges, the key and CSR, and the stored result.

use crate::account::{ca_error, load_or_create};
use crate::policy::{self, Gate, Recent};
use crate::{AcmeConfig, AcmeError, CertName, certificate_names, certificate_times, hook, now_ms};
use db::{Database, OrderOutcome, StoredCertificate};
use instant_acme::{Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy};
use platform::crypto::SecretBox;
use platform::settings::Secret;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// A certificate ready to serve: the PEM chain (leaf first), its PEM key, and its times (Unix
/// milliseconds).
#[derive(Clone)]
pub struct Issued {
    pub name: CertName,
    pub chain_pem: String,
    pub key_pem: Secret,
    pub not_before: i64,
    pub not_after: i64,
    pub renew_at: i64,
}

impl Issued {
    /// The names of its certificate name that the certificate is valid for: all of them, unless
    /// it was issued before its name covered more (a wildcard without its base).
    pub fn served_names(&self) -> Vec<&str> {
        let valid_for = certificate_names(&self.chain_pem).unwrap_or_default();
        self.name
            .covered()
            .into_iter()
            .filter(|n| valid_for.iter().any(|v| v == n))
            .collect()
    }

    /// Whether it still does its job at `now`: not due for renewal, and valid for every name
    /// its certificate name covers.
    pub fn is_current(&self, now: i64) -> bool {
        self.renew_at > now
            && self
                .name
                .is_covered_by(&certificate_names(&self.chain_pem).unwrap_or_default())
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("name", &self.name)
            .field("not_after", &self.not_after)
            .field("renew_at", &self.renew_at)
            .finish_non_exhaustive()
    }
}

/// What [`Issuer::ensure`] did.
#[derive(Debug)]
pub enum Outcome {
    /// A new certificate, stored.
    Issued(Issued),
    /// The stored certificate is not due for renewal (maybe another process just issued it).
    Current(Issued),
    /// Another process holds the name's lease: it is issuing now.
    Busy,
    /// No order may start before `until` (Unix milliseconds), for `reason`.
    Waiting { until: i64, reason: String },
}

/// Obtains and renews certificates; one per process (its lease holder id is its own).
pub struct Issuer {
    db: Database,
    secrets: SecretBox,
    config: AcmeConfig,
    holder: String,
    account: Mutex<Option<Account>>,
    nonce_rejections: Arc<AtomicU64>,
}

/// Undone when the order ends, whatever its result.
enum Published {
    Http { token: String },
    Dns { fqdn: String, value: String },
}

impl Issuer {
    pub fn new(db: Database, secrets: SecretBox, config: AcmeConfig) -> Self {
        let mut id = [0u8; 12];
        platform::ids::random_bytes(&mut id);
        Self {
            db,
            secrets,
            config,
            holder: hex::encode(id),
            account: Mutex::new(None),
            nonce_rejections: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many requests the CA refused for a stale nonce so far (each retried by instant-acme).
    pub fn nonce_rejections(&self) -> u64 {
        self.nonce_rejections.load(Ordering::Relaxed)
    }

    pub fn config(&self) -> &AcmeConfig {
        &self.config
    }

    /// The stored certificate of `name`, its key opened.
    pub async fn stored(&self, name: &CertName) -> Result<Option<Issued>, AcmeError> {
        match self.db.certificate(name.as_str()).await? {
            Some(stored) => Ok(Some(self.open(stored)?)),
            None => Ok(None),
        }
    }

    fn open(&self, stored: StoredCertificate) -> Result<Issued, AcmeError> {
        let name = CertName::parse(&stored.name).map_err(|e| AcmeError::Certificate(e.to_string()))?;
        Ok(Issued {
            name,
            key_pem: self.secrets.open(&stored.key_sealed)?,
            chain_pem: stored.chain_pem,
            not_before: stored.not_before,
            not_after: stored.not_after,
            renew_at: stored.renew_at,
        })
    }

    /// Makes sure `name` has a certificate that is not due for renewal: the stored one, or a new
    /// one when the gate and the lease allow. A failed attempt is recorded (the streak, its
    /// backoff, the reason) and returned as the error.
    pub async fn ensure(&self, name: &CertName) -> Result<Outcome, AcmeError> {
        let now = now_ms();
        if let Some(current) = self.stored(name).await?
            && current.is_current(now)
        {
            return Ok(Outcome::Current(current));
        }
        let state = self.db.issuance_state(name.as_str()).await?;
        let limits = &self.config.limits;
        let counts = self
            .db
            .acme_order_counts(
                &self.config.directory,
                now - ms(limits.orders_window),
                name.as_str(),
                now - ms(limits.failed_validations_window),
            )
            .await?;
        let recent = Recent {
            account_orders: counts.account_orders,
            oldest_account_order: counts.oldest_account_order,
            name_failed_validations: counts.name_failed_validations,
            oldest_name_failure: counts.oldest_name_failure,
        };
        if let Gate::Wait { until, reason } = policy::gate(now, state.next_attempt_at, recent, limits) {
            return Ok(Outcome::Waiting { until, reason });
        }
        let lease_until = now + ms(self.config.order_timeout) + 60_000;
        if !self
            .db
            .take_issuance_lease(name.as_str(), &self.holder, now, lease_until)
            .await?
        {
            return Ok(Outcome::Busy);
        }
        let result = self.issue_leased(name).await;
        if let Err(e) = self.db.release_issuance_lease(name.as_str(), &self.holder).await {
            tracing::warn!(name = %name, error = %e, "releasing the issuance lease failed; it runs out by itself");
        }
        result
    }

    async fn issue_leased(&self, name: &CertName) -> Result<Outcome, AcmeError> {
        // Another process may have finished this name between our look and our lease.
        if let Some(current) = self.stored(name).await?
            && current.is_current(now_ms())
        {
            return Ok(Outcome::Current(current));
        }
        if name.is_wildcard() && self.config.dns_hook.is_none() {
            return Err(AcmeError::NoHook(name.to_string()));
        }
        let mut order_id = [0u8; 12];
        platform::ids::random_bytes(&mut order_id);
        let order_id = hex::encode(order_id);
        let started = now_ms();
        tracing::info!(name = %name, directory = %self.config.directory, "ordering a certificate");
        self.db
            .start_acme_order(&order_id, &self.config.directory, name.as_str(), started)
            .await?;
        let result = tokio::time::timeout(self.config.order_timeout, self.order(name)).await;
        let (outcome, result) = match result {
            Ok(Ok(issued)) => (OrderOutcome::Valid, Ok(issued)),
            Ok(Err(e @ AcmeError::Validation { .. })) => (OrderOutcome::FailedValidation, Err(e)),
            Ok(Err(e)) => (OrderOutcome::Error, Err(e)),
            Err(_) => (
                OrderOutcome::Error,
                Err(ca_error(
                    &self.config,
                    format!("the order took longer than {:?}", self.config.order_timeout),
                )),
            ),
        };
        self.db.finish_acme_order(&order_id, outcome).await?;
        let now = now_ms();
        match result {
            Ok(issued) => {
                self.db.record_issuance_success(name.as_str(), now).await?;
                tracing::info!(name = %name, not_after = issued.not_after, "certificate issued");
                Ok(Outcome::Issued(issued))
            }
            Err(e) => {
                let failures = self.db.issuance_state(name.as_str()).await?.failures.saturating_add(1);
                let next = policy::next_attempt_after_failure(now, failures, &self.config.limits);
                self.db
                    .record_issuance_failure(name.as_str(), &e.to_string(), now, next)
                    .await?;
                tracing::warn!(name = %name, failures, error = %e, "issuing a certificate failed");
                Err(e)
            }
        }
    }

    async fn account(&self) -> Result<Account, AcmeError> {
        let mut cached = self.account.lock().await;
        if let Some(account) = cached.as_ref() {
            return Ok(account.clone());
        }
        let account = load_or_create(&self.db, &self.secrets, &self.config, &self.nonce_rejections).await?;
        *cached = Some(account.clone());
        Ok(account)
    }

    /// The order itself; what it published for the CA is withdrawn whatever happens.
    async fn order(&self, name: &CertName) -> Result<Issued, AcmeError> {
        let account = self.account().await?;
        // A wildcard's order names its base too: one certificate for the platform's sites and
        // its own host.
        let identifiers: Vec<Identifier> = name
            .covered()
            .into_iter()
            .map(|n| Identifier::Dns(n.to_owned()))
            .collect();
        let mut new_order = NewOrder::new(&identifiers);
        if let Some(profile) = &self.config.profile {
            new_order = new_order.profile(profile);
        }
        let mut order = account
            .new_order(&new_order)
            .await
            .map_err(|e| ca_error(&self.config, format!("creating the order: {e}")))?;
        let mut published = Vec::new();
        let result = self.validate_and_finalize(name, &mut order, &mut published).await;
        for item in published {
            self.withdraw(item).await;
        }
        result
    }

    async fn validate_and_finalize(
        &self,
        name: &CertName,
        order: &mut instant_acme::Order,
        published: &mut Vec<Published>,
    ) -> Result<Issued, AcmeError> {
        let ca = |e: instant_acme::Error| ca_error(&self.config, e);
        // Over DNS-01 a wildcard and its base are proven by two values of one record
        // (`_acme-challenge.<base>.`): every value is published before the CA is told to look,
        // so it never checks the record while only some of them are there.
        let kind = if name.is_wildcard() {
            ChallengeType::Dns01
        } else {
            ChallengeType::Http01
        };
        let mut published_dns = false;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(ca)?;
            match authz.status {
                // Reused from an earlier order of the same account: nothing to prove.
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(ca_error(
                        &self.config,
                        format!("the authorization of {} is {other:?}", authz.identifier()),
                    ));
                }
            }
            let Identifier::Dns(proven) = authz.identifier().identifier.clone() else {
                return Err(ca_error(
                    &self.config,
                    format!("the CA asks to prove {}, which is no DNS name", authz.identifier()),
                ));
            };
            let challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                ca_error(
                    &self.config,
                    format!("the CA offers no {kind:?} challenge for {proven}"),
                )
            })?;
            let key_authorization = challenge.key_authorization();
            match kind {
                ChallengeType::Dns01 => {
                    let hook_path = self
                        .config
                        .dns_hook
                        .as_deref()
                        .ok_or_else(|| AcmeError::NoHook(name.to_string()))?;
                    let fqdn = hook::challenge_fqdn(&proven);
                    let value = key_authorization.dns_value();
                    hook::run(hook_path, "set", &fqdn, &value).await?;
                    published.push(Published::Dns { fqdn, value });
                    published_dns = true;
                }
                _ => {
                    let token = challenge.token.clone();
                    let expires = now_ms() + ms(self.config.order_timeout) + 60_000;
                    self.db
                        .put_acme_http_challenge(&token, key_authorization.as_str(), name.as_str(), expires)
                        .await?;
                    published.push(Published::Http { token });
                }
            }
        }
        if published_dns {
            tokio::time::sleep(self.config.dns_propagation).await;
        }
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(ca)?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| ca_error(&self.config, format!("the CA offers no {kind:?} challenge for {name}")))?;
            challenge.set_ready().await.map_err(ca)?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(self.config.order_timeout);
        let status = match order.poll_ready(&retries).await {
            Ok(status) => status,
            Err(instant_acme::Error::Api(problem)) => {
                return Err(self.validation_error(name, order, Some(problem.to_string())).await);
            }
            Err(e) => return Err(ca(e)),
        };
        if status != OrderStatus::Ready {
            return Err(self.validation_error(name, order, None).await);
        }

        let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Certificate(e.to_string()))?;
        let covered: Vec<String> = name.covered().into_iter().map(str::to_owned).collect();
        let mut params = rcgen::CertificateParams::new(covered).map_err(|e| AcmeError::Certificate(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| AcmeError::Certificate(e.to_string()))?;
        order.finalize_csr(csr.der()).await.map_err(ca)?;
        let chain_pem = order.poll_certificate(&retries).await.map_err(ca)?;
        let times = certificate_times(&chain_pem)?;
        let key_pem = key.serialize_pem();
        let renew_at = policy::renew_at(times.not_before, times.not_after);
        self.db
            .put_certificate(&StoredCertificate {
                name: name.as_str().to_owned(),
                chain_pem: chain_pem.clone(),
                key_sealed: self.secrets.seal(&key_pem),
                not_before: times.not_before,
                not_after: times.not_after,
                renew_at,
                issued_at: now_ms(),
            })
            .await?;
        Ok(Issued {
            name: name.clone(),
            chain_pem,
            key_pem: Secret::new(key_pem),
            not_before: times.not_before,
            not_after: times.not_after,
            renew_at,
        })
    }

    /// Why the CA did not validate: the challenges' own errors (what the CA saw), else `fallback`.
    async fn validation_error(
        &self,
        name: &CertName,
        order: &mut instant_acme::Order,
        fallback: Option<String>,
    ) -> AcmeError {
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(authz)) = authorizations.next().await {
            for challenge in &authz.challenges {
                if let Some(problem) = &challenge.error {
                    reasons.push(problem.detail.clone().unwrap_or_else(|| problem.to_string()));
                }
            }
        }
        let message = if reasons.is_empty() {
            fallback.unwrap_or_else(|| "the order became invalid".into())
        } else {
            reasons.join("; ")
        };
        AcmeError::Validation {
            name: name.to_string(),
            message,
        }
    }

    async fn withdraw(&self, item: Published) {
        match item {
            Published::Http { token } => {
                if let Err(e) = self.db.delete_acme_http_challenge(&token, now_ms()).await {
                    tracing::warn!(error = %e, "removing an HTTP-01 token failed; it expires by itself");
                }
            }
            Published::Dns { fqdn, value } => {
                if let Some(hook_path) = &self.config.dns_hook
                    && let Err(e) = hook::run(hook_path, "clear", &fqdn, &value).await
                {
                    tracing::warn!(error = %e, "the DNS hook could not clear the challenge record");
                }
            }
        }
    }

    /// Renews every stored certificate that is due; each name's result.
    pub async fn renew_due(&self) -> Vec<(String, Result<Outcome, AcmeError>)> {
        let names = match self.db.certificates_due(now_ms()).await {
            Ok(names) => names,
            Err(e) => return vec![(String::new(), Err(e.into()))],
        };
        let mut results = Vec::with_capacity(names.len());
        for raw in names {
            let result = match CertName::parse(&raw) {
                Ok(name) => self.ensure(&name).await,
                Err(e) => Err(AcmeError::Certificate(e.to_string())),
            };
            results.push((raw, result));
        }
        results
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
