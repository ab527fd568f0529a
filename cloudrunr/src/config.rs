//! Flags and `CLOUDRUNR_*` variables, turned into the typed [`Settings`].

use anyhow::Context;
use clap::Args;
use platform::GitHostPolicy;
use platform::settings::{
    BuildLimits, GithubAppCredentials, GithubSettings, SandboxMode, Secret, Settings, SitesSettings,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where data lives: database, artifacts, build workspaces.
    #[arg(long, env = "CLOUDRUNR_DATA_DIR", default_value = "./.cloudrunr")]
    pub data_dir: PathBuf,
    /// Address of the one HTTP port (API and sites). Port 0 picks a free port.
    #[arg(long, env = "CLOUDRUNR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base domain of the sites: a project is served at <slug>.<domain>.
    #[arg(long, env = "CLOUDRUNR_DOMAIN", default_value = "localhost")]
    pub domain: String,
    /// Scheme of site URLs shown to users (http or https, when a proxy terminates TLS).
    #[arg(long, env = "CLOUDRUNR_SITES_SCHEME", default_value = "http")]
    pub sites_scheme: String,
    /// Port of site URLs shown to users; defaults to the listening port.
    #[arg(long, env = "CLOUDRUNR_SITES_PORT")]
    pub sites_port: Option<u16>,
    /// Comma list of hosts that may be cloned over plain http:// (`host` or `host:port`).
    #[arg(long, env = "CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS", default_value = "")]
    pub git_allow_http_hosts: String,
    /// Secret that signs session tokens; generated and kept in the data dir when not given.
    #[arg(long, env = "CLOUDRUNR_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Database URL; defaults to sqlite://<data dir>/cloudrunr.db.
    #[arg(long, env = "CLOUDRUNR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Build time limit, e.g. 900, 90s, 15m, 1h.
    #[arg(long, env = "CLOUDRUNR_BUILD_TIMEOUT", default_value = "15m", value_parser = parse_duration)]
    pub build_timeout: Duration,
    /// Builds running at once.
    #[arg(long, env = "CLOUDRUNR_MAX_CONCURRENT_BUILDS", default_value_t = 2)]
    pub max_concurrent_builds: usize,
    /// Most files one deployment may have.
    #[arg(long, env = "CLOUDRUNR_MAX_OUTPUT_FILES", default_value_t = 20_000)]
    pub max_output_files: u64,
    /// Most bytes one deployment may have.
    #[arg(long, env = "CLOUDRUNR_MAX_OUTPUT_BYTES", default_value_t = 1 << 30)]
    pub max_output_bytes: u64,
    /// The bubblewrap program builds run in.
    #[arg(long, env = "CLOUDRUNR_BWRAP", default_value = "bwrap")]
    pub bwrap: PathBuf,
    /// Where users and GitHub reach this server (webhooks, OAuth callbacks, links in check runs);
    /// defaults to http://<listen address>.
    #[arg(long, env = "CLOUDRUNR_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// 64 hex characters that seal secrets stored in the database; generated and kept in the data
    /// dir when not given.
    #[arg(long, env = "CLOUDRUNR_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// GitHub's REST API (GitHub Enterprise Server: https://HOST/api/v3).
    #[arg(long, env = "CLOUDRUNR_GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
    /// GitHub's web site (GitHub Enterprise Server: https://HOST).
    #[arg(long, env = "CLOUDRUNR_GITHUB_URL", default_value = "https://github.com")]
    pub github_url: String,
    /// The GitHub App's id, when the App is configured here rather than by the manifest flow.
    #[arg(long, env = "CLOUDRUNR_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// The App's private key: PEM text, or @path to a PEM file.
    #[arg(long, env = "CLOUDRUNR_GITHUB_PRIVATE_KEY", hide_env_values = true)]
    pub github_private_key: Option<String>,
    #[arg(long, env = "CLOUDRUNR_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,
    #[arg(long, env = "CLOUDRUNR_GITHUB_CLIENT_ID")]
    pub github_client_id: Option<String>,
    #[arg(long, env = "CLOUDRUNR_GITHUB_CLIENT_SECRET", hide_env_values = true)]
    pub github_client_secret: Option<String>,
    /// The App's slug (its URL name); asked of GitHub when not given.
    #[arg(long, env = "CLOUDRUNR_GITHUB_APP_SLUG")]
    pub github_app_slug: Option<String>,
    /// Run builds WITHOUT a sandbox. Only for machines where bubblewrap cannot run, and never
    /// with code you do not trust.
    #[arg(long, env = "CLOUDRUNR_UNSAFE_NO_SANDBOX", value_parser = clap::builder::BoolishValueParser::new())]
    pub unsafe_no_sandbox: bool,
}

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 90s, 15m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{raw:?} is not a duration like 90s, 15m or 1h")),
    };
    if secs == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

impl ServeArgs {
    /// The settings, once the listening port is known.
    pub fn settings(self, bound: SocketAddr) -> anyhow::Result<Settings> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create the data directory {}", self.data_dir.display()))?;
        let data_dir = self.data_dir.canonicalize()?;
        let jwt_secret = match self.jwt_secret {
            Some(s) if s.len() >= 16 => Secret::new(s),
            Some(_) => anyhow::bail!("CLOUDRUNR_JWT_SECRET must be at least 16 characters"),
            None => persisted_secret(&data_dir.join("jwt-secret"))?,
        };
        let secret_key = match self.secret_key {
            Some(k) => Secret::new(k),
            None => persisted_key(&data_dir.join("secret-key"))?,
        };
        platform::crypto::SecretBox::new(&secret_key).context("CLOUDRUNR_SECRET_KEY")?;
        let public_url = self
            .public_url
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_owned();
        let github = GithubSettings {
            api_url: self.github_api_url.trim_end_matches('/').to_owned(),
            web_url: self.github_url.trim_end_matches('/').to_owned(),
            app: github_app(
                self.github_app_id,
                self.github_private_key,
                self.github_webhook_secret,
                self.github_client_id,
                self.github_client_secret,
                self.github_app_slug,
            )?,
        };
        let database_url = self
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("cloudrunr.db").display()));
        let default_port = match (self.sites_scheme.as_str(), bound.port()) {
            ("http", 80) | ("https", 443) => None,
            (_, p) => Some(p),
        };
        if !matches!(self.sites_scheme.as_str(), "http" | "https") {
            anyhow::bail!("CLOUDRUNR_SITES_SCHEME must be http or https");
        }
        Ok(Settings {
            data_dir,
            listen: bound,
            public_url,
            secret_key,
            github,
            sites: SitesSettings {
                domain: self.domain.trim_matches('.').to_ascii_lowercase(),
                scheme: self.sites_scheme,
                port: self.sites_port.or(default_port),
            },
            git: GitHostPolicy::from_list(&self.git_allow_http_hosts),
            jwt_secret,
            database_url: Secret::new(database_url),
            build: BuildLimits {
                timeout: self.build_timeout,
                sandbox: if self.unsafe_no_sandbox {
                    SandboxMode::UnsafeNone
                } else {
                    SandboxMode::Bubblewrap(self.bwrap)
                },
                max_concurrent: self.max_concurrent_builds.max(1),
                max_output_files: self.max_output_files,
                max_output_bytes: self.max_output_bytes,
            },
        })
    }
}

/// The App's credentials from the environment: all of them, or none.
fn github_app(
    app_id: Option<u64>,
    private_key: Option<String>,
    webhook_secret: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    slug: Option<String>,
) -> anyhow::Result<Option<GithubAppCredentials>> {
    match (app_id, private_key, webhook_secret, client_id, client_secret) {
        (None, None, None, None, None) => Ok(None),
        (Some(app_id), Some(key), Some(webhook_secret), Some(client_id), Some(client_secret)) => {
            if webhook_secret.len() < 16 {
                // Anyone can sign with a short (or empty) secret.
                anyhow::bail!("CLOUDRUNR_GITHUB_WEBHOOK_SECRET must be at least 16 characters");
            }
            let pem = match key.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read CLOUDRUNR_GITHUB_PRIVATE_KEY from {path}"))?,
                None => key.replace("\\n", "\n"),
            };
            Ok(Some(GithubAppCredentials {
                app_id,
                slug,
                client_id,
                client_secret: Secret::new(client_secret),
                webhook_secret: Secret::new(webhook_secret),
                private_key: Secret::new(pem),
            }))
        }
        _ => anyhow::bail!(
            "configure the GitHub App with all of CLOUDRUNR_GITHUB_APP_ID, CLOUDRUNR_GITHUB_PRIVATE_KEY, \
             CLOUDRUNR_GITHUB_WEBHOOK_SECRET, CLOUDRUNR_GITHUB_CLIENT_ID and CLOUDRUNR_GITHUB_CLIENT_SECRET, or none"
        ),
    }
}

/// Reads the secret kept at `path`, creating it (owner-only) on first start.
fn persisted_secret(path: &Path) -> anyhow::Result<Secret> {
    persisted(path, 32)
}

/// Like [`persisted_secret`], for the 32-byte key that seals stored secrets.
fn persisted_key(path: &Path) -> anyhow::Result<Secret> {
    persisted(path, 64)
}

fn persisted(path: &Path, min_len: usize) -> anyhow::Result<Secret> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if existing.len() >= min_len {
            return Ok(Secret::new(existing));
        }
    }
    let mut bytes = [0u8; 32];
    platform::ids::random_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn secret_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let a = persisted_secret(&path).unwrap();
        let b = persisted_secret(&path).unwrap();
        assert_eq!(a.expose(), b.expose());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
