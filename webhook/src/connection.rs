//! Which GitHub App the platform is, and the signed `state` that ties GitHub's browser
//! redirects back to the CloudRunr user who started them.

use crate::app::{CreatedApp, GithubApp, GithubError};
use arc_swap::ArcSwapOption;
use db::{Database, DbError, StoredApp};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use platform::crypto::SecretBox;
use platform::settings::{GithubAppCredentials, GithubSettings, Secret};
use platform::{Timestamp, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The manifest of the App, with `PUBLIC_URL` placeholders.
const MANIFEST: &str = include_str!("../../app-manifest.yml");

/// How long a redirect through GitHub may take.
const STATE_TTL_SECS: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the stored GitHub App cannot be opened: {0}")]
    Sealed(#[from] platform::crypto::CryptoError),
    #[error("no GitHub App is connected")]
    NotConnected,
}

/// What a signed state lets its bearer finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Creating the App from the manifest (an admin).
    Manifest,
    /// Installing the App or authorizing it, to link installations to the user.
    Install,
    /// Signing in with GitHub (the subject is a nonce also kept in the browser's cookie).
    Login,
}

impl Purpose {
    fn audience(self) -> &'static str {
        match self {
            Purpose::Manifest => "cloudrunr-github-manifest",
            Purpose::Install => "cloudrunr-github-install",
            Purpose::Login => "cloudrunr-github-login",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StateClaims {
    sub: String,
    aud: String,
    iss: String,
    exp: i64,
    /// For the manifest flow: the organization the App is created in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org: Option<String>,
}

/// The platform's GitHub App, swappable at run time (the manifest flow connects one).
#[derive(Clone)]
pub struct Github {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    sealer: SecretBox,
    settings: GithubSettings,
    public_url: String,
    app: ArcSwapOption<GithubApp>,
    state_encoding: EncodingKey,
    state_decoding: DecodingKey,
}

impl Github {
    /// The App from the environment if configured there, else the one stored by the manifest
    /// flow, else none yet.
    pub async fn load(
        db: Database,
        sealer: SecretBox,
        settings: GithubSettings,
        public_url: &str,
        state_secret: &Secret,
    ) -> Result<Self, ConnectionError> {
        let app = match &settings.app {
            Some(creds) => Some(GithubApp::new(creds.clone(), &settings.api_url, &settings.web_url)?),
            None => match db.github_app().await? {
                Some(stored) => Some(GithubApp::new(
                    open_stored(&sealer, &stored)?,
                    &settings.api_url,
                    &settings.web_url,
                )?),
                None => None,
            },
        };
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                sealer,
                public_url: public_url.trim_end_matches('/').to_owned(),
                app: ArcSwapOption::from(app.map(Arc::new)),
                state_encoding: EncodingKey::from_secret(state_secret.expose().as_bytes()),
                state_decoding: DecodingKey::from_secret(state_secret.expose().as_bytes()),
                settings,
            }),
        })
    }

    pub fn app(&self) -> Option<Arc<GithubApp>> {
        self.inner.app.load_full()
    }

    /// Picks up an App another process connected (components running apart share the database,
    /// not this handle). Nothing changes for an App from the environment.
    pub async fn refresh(&self) -> Result<(), ConnectionError> {
        if self.configured_by_environment() {
            return Ok(());
        }
        let stored = self.inner.db.github_app().await?;
        let current = self.app().map(|a| a.app_id());
        match stored {
            Some(stored) if Some(stored.app_id) != current => {
                let creds = open_stored(&self.inner.sealer, &stored)?;
                let app = GithubApp::new(creds, &self.inner.settings.api_url, &self.inner.settings.web_url)?;
                tracing::info!(app_id = stored.app_id, "picked up the GitHub App");
                self.inner.app.store(Some(Arc::new(app)));
            }
            _ => {}
        }
        Ok(())
    }

    /// Calls [`Github::refresh`] every `every`, for as long as the process runs.
    pub fn spawn_refresh(&self, every: std::time::Duration) {
        let github = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = github.refresh().await {
                    tracing::warn!("cannot re-read the GitHub App: {e}");
                }
            }
        });
    }

    pub fn require_app(&self) -> Result<Arc<GithubApp>, ConnectionError> {
        self.app().ok_or(ConnectionError::NotConnected)
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    pub fn settings(&self) -> &GithubSettings {
        &self.inner.settings
    }

    /// Whether the App comes from the environment (and so cannot be replaced by the manifest flow).
    pub fn configured_by_environment(&self) -> bool {
        self.inner.settings.app.is_some()
    }

    /// Stores the App the manifest flow created (sealed) and starts acting as it.
    pub async fn connect(&self, created: CreatedApp) -> Result<Arc<GithubApp>, ConnectionError> {
        let c = &created.credentials;
        let sealer = &self.inner.sealer;
        if self
            .inner
            .db
            .github_app()
            .await?
            .is_some_and(|old| old.app_id != c.app_id)
        {
            // Installations belong to an App: the old App's mean nothing to the new one.
            self.inner.db.forget_installations().await?;
        }
        self.inner
            .db
            .save_github_app(&StoredApp {
                app_id: c.app_id,
                slug: c.slug.clone().unwrap_or_default(),
                html_url: created.html_url.clone(),
                client_id: c.client_id.clone(),
                sealed_client_secret: sealer.seal(c.client_secret.expose()),
                sealed_webhook_secret: sealer.seal(c.webhook_secret.expose()),
                sealed_private_key: sealer.seal(c.private_key.expose()),
            })
            .await?;
        let app = Arc::new(GithubApp::new(
            created.credentials,
            &self.inner.settings.api_url,
            &self.inner.settings.web_url,
        )?);
        self.inner.app.store(Some(app.clone()));
        Ok(app)
    }

    /// The App manifest with this platform's URLs filled in.
    pub fn manifest(&self) -> Value {
        let parsed: Value = serde_norway::from_str(MANIFEST).expect("app-manifest.yml is valid YAML");
        fill(parsed, &self.inner.public_url)
    }

    /// Where the admin's browser posts the manifest: their account, or an organization.
    pub fn manifest_post_url(&self, org: Option<&str>) -> String {
        let web = self.inner.settings.web_url.trim_end_matches('/');
        match org {
            Some(org) => format!("{web}/organizations/{org}/settings/apps/new"),
            None => format!("{web}/settings/apps/new"),
        }
    }

    /// A page of this platform that sends the admin's browser through the manifest flow.
    pub fn connect_url(&self, admin: &UserId, org: Option<&str>) -> String {
        let state = self.sign_state(Purpose::Manifest, admin.as_str(), org);
        format!("{}/github/connect?state={state}", self.inner.public_url)
    }

    /// Where a user installs the App; GitHub brings them back with this state.
    pub async fn install_url(&self, user: &UserId) -> Result<String, ConnectionError> {
        let app = self.require_app()?;
        let slug = app.slug().await?;
        let web = self.inner.settings.web_url.trim_end_matches('/');
        Ok(format!(
            "{web}/apps/{slug}/installations/new?state={}",
            self.sign_state(Purpose::Install, user.as_str(), None)
        ))
    }

    /// Where a user authorizes the App, so that their GitHub account and the installations
    /// they can reach get linked to them.
    pub fn authorize_url(&self, user: &UserId) -> Result<String, ConnectionError> {
        self.oauth_url(&self.sign_state(Purpose::Install, user.as_str(), None))
    }

    /// Where someone signs in with GitHub; `nonce` is also kept in their browser.
    pub fn login_url(&self, nonce: &str) -> Result<String, ConnectionError> {
        self.oauth_url(&self.sign_state(Purpose::Login, nonce, None))
    }

    fn oauth_url(&self, state: &str) -> Result<String, ConnectionError> {
        let app = self.require_app()?;
        let web = self.inner.settings.web_url.trim_end_matches('/');
        Ok(format!(
            "{web}/login/oauth/authorize?client_id={}&state={state}&redirect_uri={}",
            app.client_id(),
            encode_query(&self.callback_url()),
        ))
    }

    pub fn callback_url(&self) -> String {
        format!("{}/github/callback", self.inner.public_url)
    }

    fn sign_state(&self, purpose: Purpose, subject: &str, org: Option<&str>) -> String {
        let claims = StateClaims {
            sub: subject.to_owned(),
            aud: purpose.audience().into(),
            iss: "cloudrunr".into(),
            exp: Timestamp::now().millis() / 1000 + STATE_TTL_SECS,
            org: org.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.inner.state_encoding)
            .expect("HS256 signing does not fail")
    }

    /// The user (and organization) a state was signed for, if it is genuine, unexpired and for
    /// `purpose`.
    pub fn verify_state(&self, purpose: Purpose, state: &str) -> Option<(UserId, Option<String>)> {
        let claims = self.state_claims(purpose, state)?;
        Some((UserId::parse(&claims.sub).ok()?, claims.org))
    }

    /// The nonce a sign-in state was made for, if it is genuine and unexpired.
    pub fn verify_login_state(&self, state: &str) -> Option<String> {
        self.state_claims(Purpose::Login, state).map(|c| c.sub)
    }

    fn state_claims(&self, purpose: Purpose, state: &str) -> Option<StateClaims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[purpose.audience()]);
        v.set_issuer(&["cloudrunr"]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        jsonwebtoken::decode::<StateClaims>(state, &self.inner.state_decoding, &v)
            .ok()
            .map(|d| d.claims)
    }
}

fn open_stored(sealer: &SecretBox, s: &StoredApp) -> Result<GithubAppCredentials, ConnectionError> {
    Ok(GithubAppCredentials {
        app_id: s.app_id,
        slug: (!s.slug.is_empty()).then(|| s.slug.clone()),
        client_id: s.client_id.clone(),
        client_secret: sealer.open(&s.sealed_client_secret)?,
        webhook_secret: sealer.open(&s.sealed_webhook_secret)?,
        private_key: sealer.open(&s.sealed_private_key)?,
    })
}

/// Replaces `PUBLIC_URL` in every string of the manifest.
fn fill(v: Value, public_url: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("PUBLIC_URL", public_url)),
        Value::Array(items) => Value::Array(items.into_iter().map(|i| fill(i, public_url)).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, i)| (k, fill(i, public_url))).collect()),
        other => other,
    }
}

/// Percent-encodes a query parameter value.
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_asks_for_what_the_platform_needs() {
        let m = fill(serde_norway::from_str(MANIFEST).unwrap(), "https://deploy.example.com");
        assert_eq!(
            m["hook_attributes"]["url"],
            "https://deploy.example.com/webhooks/github"
        );
        assert_eq!(m["redirect_url"], "https://deploy.example.com/github/app-created");
        assert_eq!(m["callback_urls"][0], "https://deploy.example.com/github/callback");
        assert_eq!(m["setup_url"], "https://deploy.example.com/github/setup");
        assert_eq!(m["public"], false);
        let p = &m["default_permissions"];
        assert_eq!(
            (p["checks"].as_str(), p["contents"].as_str()),
            (Some("write"), Some("read"))
        );
        assert_eq!(
            (p["metadata"].as_str(), p["pull_requests"].as_str()),
            (Some("read"), Some("read"))
        );
        let events: Vec<&str> = m["default_events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.as_str())
            .collect();
        assert_eq!(events, ["push", "pull_request", "check_run"]);
        assert!(!m.to_string().contains("PUBLIC_URL"));
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query("http://a.b/c?d=e f"), "http%3A%2F%2Fa.b%2Fc%3Fd%3De%20f");
    }
}
