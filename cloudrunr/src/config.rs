//! Flags and `CLOUDRUNR_*` variables, turned into the typed [`Settings`].

use anyhow::Context;
use clap::Args;
use platform::GitHostPolicy;
use platform::settings::{BuildLimits, SandboxMode, Secret, Settings, SitesSettings};
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

/// Reads the secret kept at `path`, creating it (owner-only) on first start.
fn persisted_secret(path: &Path) -> anyhow::Result<Secret> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
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
