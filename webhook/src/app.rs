//! The GitHub App as a client of GitHub's REST API (through octocrab): App JWTs, installation
//! tokens, repositories, check runs, the manifest conversion and the OAuth code exchange.

use db::RepositoryRecord;
use octocrab::Octocrab;
use octocrab::models::AppId;
use platform::settings::{GithubAppCredentials, Secret};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// GitHub answered, with an error status.
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    /// GitHub could not be reached, or the answer could not be read.
    #[error("GitHub could not be reached: {0}")]
    Transport(String),
    #[error("the GitHub App's private key is not a usable RSA PEM key: {0}")]
    Key(String),
    #[error("unexpected answer from GitHub: {0}")]
    Unexpected(String),
}

impl GithubError {
    /// Whether trying again cannot help (the request itself is wrong, or the resource is gone).
    pub fn is_permanent(&self) -> bool {
        match self {
            GithubError::Api { status, .. } => (400..500).contains(status) && !matches!(status, 401 | 403 | 408 | 429),
            GithubError::Key(_) => true,
            GithubError::Transport(_) | GithubError::Unexpected(_) => false,
        }
    }
}

impl From<octocrab::Error> for GithubError {
    fn from(e: octocrab::Error) -> Self {
        match e {
            octocrab::Error::GitHub { source, .. } => GithubError::Api {
                status: source.status_code.as_u16(),
                message: source.message.clone(),
            },
            octocrab::Error::Serde { source, .. } => GithubError::Unexpected(source.to_string()),
            other => GithubError::Transport(other.to_string()),
        }
    }
}

/// What the manifest flow returns: a new App's credentials.
#[derive(Debug, Clone)]
pub struct CreatedApp {
    pub credentials: GithubAppCredentials,
    pub html_url: String,
}

/// An installation as GitHub describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationInfo {
    pub id: u64,
    pub account_login: String,
    pub account_type: String,
    pub suspended: bool,
}

/// How long before its expiry an installation token is replaced.
const TOKEN_MARGIN: Duration = Duration::from_secs(5 * 60);

type Builder = octocrab::OctocrabBuilder<
    octocrab::NoSvc,
    octocrab::DefaultOctocrabBuilderConfig,
    octocrab::NoAuth,
    octocrab::NotLayerReady,
>;

/// A client for `base` with bounded waits: GitHub being slow must never hold anything up for long.
fn client_builder(base: &str) -> Result<Builder, GithubError> {
    Octocrab::builder()
        .base_uri(base)
        .map_err(|e| GithubError::Unexpected(format!("bad GitHub URL {base:?}: {e}")))
        .map(|b| {
            b.set_connect_timeout(Some(Duration::from_secs(10)))
                .set_read_timeout(Some(Duration::from_secs(30)))
        })
}

/// The App, authenticated.
pub struct GithubApp {
    credentials: GithubAppCredentials,
    api_url: String,
    web_url: String,
    /// Authenticated as the App (a fresh JWT per request).
    client: Octocrab,
    tokens: Mutex<HashMap<u64, (Secret, Instant)>>,
    slug: Mutex<Option<String>>,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("app_id", &self.credentials.app_id)
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl GithubApp {
    pub fn new(credentials: GithubAppCredentials, api_url: &str, web_url: &str) -> Result<Self, GithubError> {
        let client = client_builder(api_url)?
            .app_from_rsa_pem(AppId(credentials.app_id), credentials.private_key.expose().as_bytes())
            .map_err(|e| GithubError::Key(e.to_string()))?
            .build()
            .map_err(|e| GithubError::Unexpected(e.to_string()))?;
        Ok(Self {
            slug: Mutex::new(credentials.slug.clone()),
            credentials,
            api_url: api_url.trim_end_matches('/').to_owned(),
            web_url: web_url.trim_end_matches('/').to_owned(),
            client,
            tokens: Mutex::default(),
        })
    }

    pub fn app_id(&self) -> u64 {
        self.credentials.app_id
    }

    pub fn client_id(&self) -> &str {
        &self.credentials.client_id
    }

    pub fn webhook_secret(&self) -> &Secret {
        &self.credentials.webhook_secret
    }

    pub fn web_url(&self) -> &str {
        &self.web_url
    }

    /// The App's slug (its URL name), asked of GitHub once when the configuration did not give it.
    pub async fn slug(&self) -> Result<String, GithubError> {
        let mut slug = self.slug.lock().await;
        if let Some(s) = slug.as_ref() {
            return Ok(s.clone());
        }
        let app: Value = self.client.get("/app", None::<&()>).await?;
        let s = app["slug"]
            .as_str()
            .ok_or_else(|| GithubError::Unexpected("GET /app has no slug".into()))?;
        *slug = Some(s.to_owned());
        Ok(s.to_owned())
    }

    /// A token acting as the installation, valid for at least a few more minutes. Cached.
    pub async fn installation_token(&self, installation: u64) -> Result<Secret, GithubError> {
        let mut tokens = self.tokens.lock().await;
        if let Some((token, expires)) = tokens.get(&installation)
            && Instant::now() + TOKEN_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        #[derive(Deserialize)]
        struct AccessToken {
            token: String,
            expires_at: String,
        }
        let route = format!("/app/installations/{installation}/access_tokens");
        let t: AccessToken = self.client.post(route, None::<&()>).await?;
        let lifetime = chrono::DateTime::parse_from_rfc3339(&t.expires_at)
            .ok()
            .and_then(|at| (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_secs(3600));
        let token = Secret::new(t.token);
        tokens.insert(installation, (token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    async fn as_installation(&self, installation: u64) -> Result<Octocrab, GithubError> {
        let token = self.installation_token(installation).await?;
        client_builder(&self.api_url)?
            .personal_token(token.expose().to_owned())
            .build()
            .map_err(|e| GithubError::Unexpected(e.to_string()))
    }

    pub async fn installation(&self, installation: u64) -> Result<InstallationInfo, GithubError> {
        let v: Value = self
            .client
            .get(format!("/app/installations/{installation}"), None::<&()>)
            .await?;
        installation_info(&v)
    }

    /// Every repository the installation can reach.
    pub async fn installation_repositories(&self, installation: u64) -> Result<Vec<RepositoryRecord>, GithubError> {
        let client = self.as_installation(installation).await?;
        let mut out = Vec::new();
        for page in 1..=50u32 {
            let v: Value = client
                .get(
                    "/installation/repositories",
                    Some(&json!({ "per_page": 100, "page": page })),
                )
                .await?;
            let repos = v["repositories"].as_array().cloned().unwrap_or_default();
            for r in &repos {
                out.push(repository_record(installation, r)?);
            }
            let total = v["total_count"].as_u64().unwrap_or(0);
            if repos.is_empty() || out.len() as u64 >= total {
                break;
            }
        }
        Ok(out)
    }

    /// Creates a check run on `owner/name`; returns its id.
    pub async fn create_check_run(&self, installation: u64, full_name: &str, body: &Value) -> Result<u64, GithubError> {
        let client = self.as_installation(installation).await?;
        let v: Value = client
            .post(format!("/repos/{full_name}/check-runs"), Some(body))
            .await?;
        v["id"]
            .as_u64()
            .ok_or_else(|| GithubError::Unexpected("a created check run has no id".into()))
    }

    pub async fn update_check_run(
        &self,
        installation: u64,
        full_name: &str,
        id: u64,
        body: &Value,
    ) -> Result<(), GithubError> {
        let client = self.as_installation(installation).await?;
        let _: Value = client
            .patch(format!("/repos/{full_name}/check-runs/{id}"), Some(body))
            .await?;
        Ok(())
    }

    /// Exchanges the code of GitHub's OAuth redirect for a token acting as that user.
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str) -> Result<Secret, GithubError> {
        let web = client_builder(&self.web_url)?
            .add_header(axum::http::header::ACCEPT, "application/json".into())
            .build()
            .map_err(|e| GithubError::Unexpected(e.to_string()))?;
        let body = json!({
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret.expose(),
            "code": code,
            "redirect_uri": redirect_uri,
        });
        let v: Value = web.post("/login/oauth/access_token", Some(&body)).await?;
        match v["access_token"].as_str() {
            Some(t) => Ok(Secret::new(t)),
            None => Err(GithubError::Api {
                status: 400,
                message: v["error_description"]
                    .as_str()
                    .or(v["error"].as_str())
                    .unwrap_or("no token")
                    .to_owned(),
            }),
        }
    }

    /// The GitHub account (id, login) the token acts for.
    pub async fn github_user(&self, user_token: &Secret) -> Result<(u64, String), GithubError> {
        let client = client_builder(&self.api_url)?
            .user_access_token(user_token.expose().to_owned())
            .build()
            .map_err(|e| GithubError::Unexpected(e.to_string()))?;
        let v: Value = client.get("/user", None::<&()>).await?;
        match (v["id"].as_u64(), v["login"].as_str()) {
            (Some(id), Some(login)) => Ok((id, login.to_owned())),
            _ => Err(GithubError::Unexpected("GET /user has no id or login".into())),
        }
    }

    /// The App's installations the user (by their OAuth token) can reach.
    pub async fn user_installations(&self, user_token: &Secret) -> Result<Vec<InstallationInfo>, GithubError> {
        let client = client_builder(&self.api_url)?
            .user_access_token(user_token.expose().to_owned())
            .build()
            .map_err(|e| GithubError::Unexpected(e.to_string()))?;
        let mut out = Vec::new();
        for page in 1..=20u32 {
            let v: Value = client
                .get("/user/installations", Some(&json!({ "per_page": 100, "page": page })))
                .await?;
            let items = v["installations"].as_array().cloned().unwrap_or_default();
            for i in &items {
                out.push(installation_info(i)?);
            }
            if items.is_empty() || out.len() as u64 >= v["total_count"].as_u64().unwrap_or(0) {
                break;
            }
        }
        Ok(out)
    }
}

/// Trades the code of the manifest flow's redirect for the new App's credentials.
pub async fn convert_manifest(api_url: &str, code: &str) -> Result<CreatedApp, GithubError> {
    if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(GithubError::Api {
            status: 400,
            message: "malformed code".into(),
        });
    }
    let client = client_builder(api_url)?
        .build()
        .map_err(|e| GithubError::Unexpected(e.to_string()))?;
    let v: Value = client
        .post(format!("/app-manifests/{code}/conversions"), None::<&()>)
        .await?;
    let text = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .ok_or_else(|| GithubError::Unexpected(format!("the conversion has no {k}")))
    };
    Ok(CreatedApp {
        credentials: GithubAppCredentials {
            app_id: v["id"]
                .as_u64()
                .ok_or_else(|| GithubError::Unexpected("the conversion has no id".into()))?,
            slug: Some(text("slug")?),
            client_id: text("client_id")?,
            client_secret: Secret::new(text("client_secret")?),
            webhook_secret: Secret::new(text("webhook_secret")?),
            private_key: Secret::new(text("pem")?),
        },
        html_url: text("html_url")?,
    })
}

fn installation_info(v: &Value) -> Result<InstallationInfo, GithubError> {
    Ok(InstallationInfo {
        id: v["id"]
            .as_u64()
            .ok_or_else(|| GithubError::Unexpected("an installation has no id".into()))?,
        account_login: v["account"]["login"].as_str().unwrap_or_default().to_owned(),
        account_type: v["account"]["type"]
            .as_str()
            .or(v["target_type"].as_str())
            .unwrap_or("User")
            .to_owned(),
        suspended: !v["suspended_at"].is_null(),
    })
}

fn repository_record(installation: u64, r: &Value) -> Result<RepositoryRecord, GithubError> {
    Ok(RepositoryRecord {
        id: r["id"]
            .as_u64()
            .ok_or_else(|| GithubError::Unexpected("a repository has no id".into()))?,
        installation_id: installation,
        full_name: r["full_name"].as_str().unwrap_or_default().to_owned(),
        clone_url: r["clone_url"].as_str().unwrap_or_default().to_owned(),
        default_branch: r["default_branch"].as_str().map(str::to_owned),
        private: r["private"].as_bool().unwrap_or(true),
    })
}
