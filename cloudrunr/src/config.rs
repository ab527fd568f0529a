//! Flags and `CLOUDRUNR_*` variables, turned into the typed [`Settings`].

use anyhow::Context;
use bus::KafkaConfig;
use clap::Args;
use platform::GitHostPolicy;
use platform::artifacts::ArtifactLocation;
use platform::byte_size::ByteSize;
use platform::connection_limits::ConnectionLimits;
use platform::proxies::TrustedProxies;
use platform::settings::AccountLimits;
use platform::settings::BuildQuotas;
use platform::settings::{
    BuildLimits, EcsSettings, ExecutorSettings, GithubAppCredentials, GithubSettings, LogLimits, SandboxMode, Secret,
    Settings, SitesSettings,
};
use platform::settings::{CertificateFiles, TlsSettings};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use store::S3Options;

/// The configuration every component reads (each uses what it needs).
#[derive(Args, Debug)]
pub struct Config {
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
    /// Comma list of what builds and git may reach besides public addresses on ports 80 and
    /// 443: IP addresses, CIDR networks, host names or *.suffix, each with an optional :port.
    #[arg(long, env = "CLOUDRUNR_BUILD_EGRESS_ALLOW", default_value = "", value_parser = parse_egress)]
    pub build_egress_allow: platform::egress::EgressPolicy,
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
    #[command(flatten)]
    pub build_log: BuildLogArgs,
    #[command(flatten)]
    pub build_quotas: BuildQuotaArgs,
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
    #[command(flatten)]
    pub backends: BackendArgs,
    #[command(flatten)]
    pub accounts: AccountArgs,
    #[command(flatten)]
    pub domains: DomainArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub acme: AcmeArgs,
}

/// Certificates from ACME (see `platform::settings::AcmeSettings`).
#[derive(Args, Debug)]
pub struct AcmeArgs {
    /// The ACME CA's directory URL; setting it (or the email) turns issuance on with TLS.
    #[arg(long, env = "CLOUDRUNR_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// The ACME account's contact email.
    #[arg(long, env = "CLOUDRUNR_ACME_EMAIL")]
    pub acme_email: Option<String>,
    /// A PEM file of extra roots trusted for the CA's HTTPS (a test or private CA).
    #[arg(long, env = "CLOUDRUNR_ACME_CA_ROOTS")]
    pub acme_ca_roots: Option<std::path::PathBuf>,
    /// DNS-01 hook for the platform's wildcard, called as `HOOK set|clear <fqdn> <value>`.
    #[arg(long, env = "CLOUDRUNR_ACME_DNS_HOOK")]
    pub acme_dns_hook: Option<std::path::PathBuf>,
    /// Seconds between the hook's `set` and asking the CA to validate.
    #[arg(long, env = "CLOUDRUNR_ACME_DNS_WAIT_SECS", default_value_t = 30.0)]
    pub acme_dns_wait_secs: f64,
    /// The certificate profile asked for (e.g. Let's Encrypt's `shortlived`).
    #[arg(long, env = "CLOUDRUNR_ACME_PROFILE")]
    pub acme_profile: Option<String>,
    /// Seconds to wait after a first failed issuance (doubled per failure in a row).
    #[arg(long, env = "CLOUDRUNR_ACME_RETRY_SECS", default_value_t = 60.0)]
    pub acme_retry_secs: f64,
    /// How often, in seconds, domains needing a certificate and renewals are looked for.
    #[arg(long, env = "CLOUDRUNR_ACME_CHECK_SECS", default_value_t = 60.0)]
    pub acme_check_secs: f64,
}

impl AcmeArgs {
    pub fn settings(&self, tls_on: bool) -> anyhow::Result<platform::settings::AcmeSettings> {
        let defaults = platform::settings::AcmeSettings::default();
        let secs = |name: &str, v: f64, min: f64| {
            if v.is_finite() && v >= min && v <= 86_400.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(anyhow::anyhow!("{name} must be between {min} and 86400 seconds"))
            }
        };
        let directory = self.acme_directory.clone().filter(|d| !d.trim().is_empty());
        let email = self.acme_email.clone().filter(|e| !e.trim().is_empty());
        if let Some(d) = &directory
            && !d.starts_with("https://")
        {
            anyhow::bail!("CLOUDRUNR_ACME_DIRECTORY must be an https:// URL");
        }
        if let Some(e) = &email
            && (!e.contains('@') || e.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            anyhow::bail!("CLOUDRUNR_ACME_EMAIL is not an email address");
        }
        let wanted = directory.is_some() || email.is_some();
        if wanted && !tls_on {
            anyhow::bail!(
                "CLOUDRUNR_ACME_* is set but CLOUDRUNR_TLS_LISTEN is not: certificates would have no listener"
            );
        }
        Ok(platform::settings::AcmeSettings {
            enabled: wanted,
            directory: directory.unwrap_or(defaults.directory),
            email,
            ca_roots: self.acme_ca_roots.clone(),
            dns_hook: self.acme_dns_hook.clone(),
            dns_propagation: secs("CLOUDRUNR_ACME_DNS_WAIT_SECS", self.acme_dns_wait_secs, 0.0)?,
            profile: self.acme_profile.clone().filter(|p| !p.trim().is_empty()),
            retry_base: secs("CLOUDRUNR_ACME_RETRY_SECS", self.acme_retry_secs, 0.05)?,
            check_interval: secs("CLOUDRUNR_ACME_CHECK_SECS", self.acme_check_secs, 0.05)?,
        })
    }
}

/// The TLS listener and the platform's certificate files (see `platform::settings::TlsSettings`).
#[derive(Args, Debug)]
pub struct TlsArgs {
    /// Address of the HTTPS port beside the plain one, e.g. 0.0.0.0:443; TLS is off without it.
    #[arg(long, env = "CLOUDRUNR_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain(s), comma-separated; the first is the default certificate.
    #[arg(long, env = "CLOUDRUNR_TLS_CERT", default_value = "")]
    pub tls_cert: String,
    /// PEM private key(s), comma-separated, one for each certificate in the same order.
    #[arg(long, env = "CLOUDRUNR_TLS_KEY", default_value = "")]
    pub tls_key: String,
    /// How often the certificate files are checked for changes, in seconds (fractions allowed).
    #[arg(long, env = "CLOUDRUNR_TLS_RELOAD_SECS", default_value_t = 5.0)]
    pub tls_reload_secs: f64,
    /// How long a TLS handshake may take, in seconds.
    #[arg(long, env = "CLOUDRUNR_TLS_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10)]
    pub tls_handshake_timeout_secs: u64,
}

impl TlsArgs {
    /// The TLS settings, `bound` being where the TLS listener was bound (when it is).
    pub fn settings(&self, bound: Option<SocketAddr>) -> anyhow::Result<TlsSettings> {
        let (certs, keys) = (comma_list(&self.tls_cert), comma_list(&self.tls_key));
        if certs.len() != keys.len() {
            anyhow::bail!(
                "CLOUDRUNR_TLS_CERT names {} file(s) and CLOUDRUNR_TLS_KEY {}: each certificate needs its key",
                certs.len(),
                keys.len()
            );
        }
        if !certs.is_empty() && self.tls_listen.is_none() {
            anyhow::bail!("CLOUDRUNR_TLS_CERT is set but CLOUDRUNR_TLS_LISTEN is not: nothing would serve it");
        }
        if !(self.tls_reload_secs.is_finite() && self.tls_reload_secs >= 0.05) {
            anyhow::bail!("CLOUDRUNR_TLS_RELOAD_SECS must be at least 0.05");
        }
        if self.tls_handshake_timeout_secs == 0 {
            anyhow::bail!("CLOUDRUNR_TLS_HANDSHAKE_TIMEOUT_SECS must be at least 1");
        }
        Ok(TlsSettings {
            listen: bound.or(self.tls_listen),
            files: certs
                .into_iter()
                .zip(keys)
                .map(|(cert, key)| CertificateFiles {
                    cert: cert.into(),
                    key: key.into(),
                })
                .collect(),
            reload_interval: Duration::from_secs_f64(self.tls_reload_secs),
            handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_secs),
        })
    }
}

/// Custom domains (see `platform::settings::DomainSettings`).
#[derive(Args, Debug)]
pub struct DomainArgs {
    /// Comma list of the public IP addresses the platform is reached at: what apex custom
    /// domains' A/AAAA records must hold. Empty: apex domains cannot be added.
    #[arg(long, env = "CLOUDRUNR_PUBLIC_IPS", default_value = "")]
    pub public_ips: String,
    /// DNS server (host:port) that custom-domain verification asks; the system's by default.
    #[arg(long, env = "CLOUDRUNR_DNS_RESOLVER")]
    pub dns_resolver: Option<SocketAddr>,
}

impl DomainArgs {
    pub fn settings(&self) -> anyhow::Result<platform::settings::DomainSettings> {
        let public_ips = comma_list(&self.public_ips)
            .into_iter()
            .map(|ip| {
                ip.parse::<std::net::IpAddr>()
                    .with_context(|| format!("CLOUDRUNR_PUBLIC_IPS: {ip:?} is not an IP address"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(platform::settings::DomainSettings {
            public_ips,
            dns_resolver: self.dns_resolver,
        })
    }
}

/// Log-in throttling, trusted proxies and per-account build caps (see
/// `platform::settings::AccountLimits`, which documents each one and its default).
#[derive(Args, Debug)]
pub struct AccountArgs {
    /// Comma list of IP addresses and CIDR networks of reverse proxies whose X-Forwarded-For
    /// names the client; empty trusts none.
    #[arg(long, env = "CLOUDRUNR_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Failed log-ins of one account from one address before each further attempt must wait.
    #[arg(long, env = "CLOUDRUNR_LOGIN_FREE_ATTEMPTS", default_value_t = AccountLimits::default().login_free_attempts)]
    pub login_free_attempts: u32,
    /// Failed log-ins from one address within an hour past which it gets no free attempts.
    #[arg(long, env = "CLOUDRUNR_LOGIN_ADDRESS_CEILING", default_value_t = AccountLimits::default().login_address_ceiling)]
    pub login_address_ceiling: u32,
    /// Builds of one account running at once.
    #[arg(long, env = "CLOUDRUNR_MAX_RUNNING_BUILDS_PER_ACCOUNT", default_value_t = AccountLimits::default().max_running_builds,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_running_builds_per_account: u32,
    /// Deployments of one account waiting in the queue; past it, new ones are refused.
    #[arg(long, env = "CLOUDRUNR_MAX_QUEUED_BUILDS_PER_ACCOUNT", default_value_t = AccountLimits::default().max_queued_builds,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued_builds_per_account: u32,
}

impl AccountArgs {
    pub fn limits(&self) -> anyhow::Result<AccountLimits> {
        Ok(AccountLimits {
            trusted_proxies: TrustedProxies::parse(&self.trusted_proxies).context("CLOUDRUNR_TRUSTED_PROXIES")?,
            login_free_attempts: self.login_free_attempts,
            login_address_ceiling: self.login_address_ceiling,
            max_running_builds: self.max_running_builds_per_account,
            max_queued_builds: self.max_queued_builds_per_account,
        })
    }
}

/// Which engine backs each interface, and how to reach it.
#[derive(Args, Debug)]
pub struct BackendArgs {
    /// Where artifacts live: file:///dir or s3://bucket/prefix; defaults to <data dir>/artifacts.
    #[arg(long, env = "CLOUDRUNR_ARTIFACT_STORE")]
    pub artifact_store: Option<String>,
    /// Path-style S3 addressing (http://host/bucket/key), for S3-compatible servers.
    #[arg(long, env = "CLOUDRUNR_S3_PATH_STYLE", value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_path_style: bool,
    /// An S3 endpoint other than AWS's (AWS_ENDPOINT_URL works too).
    #[arg(long, env = "CLOUDRUNR_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Kafka bootstrap servers (host:port,...); without them the log bus is in-process, and every
    /// component must run in one process (`serve`).
    #[arg(long, env = "CLOUDRUNR_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    #[arg(long, env = "CLOUDRUNR_KAFKA_EVENTS_TOPIC", default_value = KafkaConfig::DEFAULT_EVENTS_TOPIC)]
    pub kafka_events_topic: String,
    #[arg(long, env = "CLOUDRUNR_KAFKA_NOTICES_TOPIC", default_value = KafkaConfig::DEFAULT_NOTICES_TOPIC)]
    pub kafka_notices_topic: String,
    /// The log consumers' group.
    #[arg(long, env = "CLOUDRUNR_KAFKA_CONSUMER_GROUP", default_value = KafkaConfig::DEFAULT_CONSUMER_GROUP)]
    pub kafka_consumer_group: String,
    /// Where builds run: local (sandboxed processes on this machine) or ecs.
    #[arg(long, env = "CLOUDRUNR_EXECUTOR", default_value = "local", value_parser = ["local", "ecs"])]
    pub executor: String,
    #[arg(long, env = "CLOUDRUNR_ECS_CLUSTER", default_value = "default")]
    pub ecs_cluster: String,
    /// The task definition (family[:revision] or ARN) whose container runs `cloudrunr build`.
    #[arg(long, env = "CLOUDRUNR_ECS_TASK_DEFINITION")]
    pub ecs_task_definition: Option<String>,
    #[arg(long, env = "CLOUDRUNR_ECS_CONTAINER", default_value = "build")]
    pub ecs_container: String,
    #[arg(long, env = "CLOUDRUNR_ECS_LAUNCH_TYPE", default_value = "FARGATE", value_parser = ["FARGATE", "EC2", "EXTERNAL"])]
    pub ecs_launch_type: String,
    /// Comma list of subnet ids (awsvpc networking).
    #[arg(long, env = "CLOUDRUNR_ECS_SUBNETS", default_value = "")]
    pub ecs_subnets: String,
    /// Comma list of security group ids.
    #[arg(long, env = "CLOUDRUNR_ECS_SECURITY_GROUPS", default_value = "")]
    pub ecs_security_groups: String,
    #[arg(long, env = "CLOUDRUNR_ECS_ASSIGN_PUBLIC_IP", value_parser = clap::builder::BoolishValueParser::new())]
    pub ecs_assign_public_ip: bool,
    /// Where builds reach the API (they fetch their job and report their events there);
    /// defaults to the public URL.
    #[arg(long, env = "CLOUDRUNR_API_URL")]
    pub api_url: Option<String>,
    /// How long build logs are kept on TimescaleDB, e.g. 30d; kept forever when not given.
    #[arg(long, env = "CLOUDRUNR_LOG_RETENTION", value_parser = parse_duration)]
    pub log_retention: Option<Duration>,
    /// Bytes of site content the router keeps in memory.
    #[arg(long, env = "CLOUDRUNR_ROUTER_CACHE_BYTES", default_value_t = 256 << 20)]
    pub router_cache_bytes: u64,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// The limits on HTTP connections (see `platform::connection_limits`, which documents each one
/// and its default). Unset, each keeps [`ConnectionLimits::default`]'s value.
#[derive(Args, Debug)]
pub struct ConnectionArgs {
    /// Connections open at once; at the cap, the one idle the longest is closed for a new one.
    #[arg(long, env = "CLOUDRUNR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a request head may take to arrive, from its first byte.
    #[arg(long, env = "CLOUDRUNR_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a connection with no request in flight stays open.
    #[arg(long, env = "CLOUDRUNR_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a request body may go without a byte arriving.
    #[arg(long, env = "CLOUDRUNR_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// The slowest a request body may arrive on average, bytes a second (0: no minimum).
    #[arg(long, env = "CLOUDRUNR_MIN_BODY_RATE")]
    pub min_body_rate: Option<u64>,
    /// Seconds a response may wait for the client to take more of it.
    #[arg(long, env = "CLOUDRUNR_SEND_TIMEOUT_SECS")]
    pub send_timeout_secs: Option<u64>,
    /// The largest request head, in bytes (at least 8192).
    #[arg(long, env = "CLOUDRUNR_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Seconds between HTTP/2 pings, and how long an answer may take.
    #[arg(long, env = "CLOUDRUNR_H2_KEEPALIVE_SECS")]
    pub h2_keepalive_secs: Option<u64>,
    /// Streams one HTTP/2 connection may have open at once.
    #[arg(long, env = "CLOUDRUNR_H2_MAX_STREAMS")]
    pub h2_max_streams: Option<u32>,
}

impl ConnectionArgs {
    /// The limits, each given one in place of its default; zero durations and counts are refused.
    pub fn limits(&self) -> anyhow::Result<ConnectionLimits> {
        let d = ConnectionLimits::default();
        let secs = |value: Option<u64>, default: Duration, name: &str| match value {
            None => Ok(default),
            Some(0) => anyhow::bail!("{name} must be at least 1"),
            Some(n) => Ok(Duration::from_secs(n)),
        };
        let max_connections = match self.max_connections {
            Some(0) => anyhow::bail!("CLOUDRUNR_MAX_CONNECTIONS must be at least 1"),
            n => n.unwrap_or(d.max_connections),
        };
        let h2_max_streams = match self.h2_max_streams {
            Some(0) => anyhow::bail!("CLOUDRUNR_H2_MAX_STREAMS must be at least 1"),
            n => n.unwrap_or(d.h2_max_streams),
        };
        Ok(ConnectionLimits {
            max_connections,
            header_timeout: secs(
                self.header_timeout_secs,
                d.header_timeout,
                "CLOUDRUNR_HEADER_TIMEOUT_SECS",
            )?,
            idle_timeout: secs(self.idle_timeout_secs, d.idle_timeout, "CLOUDRUNR_IDLE_TIMEOUT_SECS")?,
            body_timeout: secs(self.body_timeout_secs, d.body_timeout, "CLOUDRUNR_BODY_TIMEOUT_SECS")?,
            min_body_rate: self.min_body_rate.unwrap_or(d.min_body_rate),
            send_timeout: secs(self.send_timeout_secs, d.send_timeout, "CLOUDRUNR_SEND_TIMEOUT_SECS")?,
            max_header_bytes: self
                .max_header_bytes
                .unwrap_or(d.max_header_bytes)
                .max(ConnectionLimits::MIN_HEADER_BYTES),
            h2_keepalive: secs(self.h2_keepalive_secs, d.h2_keepalive, "CLOUDRUNR_H2_KEEPALIVE_SECS")?,
            h2_max_streams,
        })
    }
}

fn comma_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The configuration of one build away from the platform (`cloudrunr build`), as the executor
/// that started it set it: which deployment, with what token, and where things are.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Where the platform's API is.
    #[arg(long, env = "CLOUDRUNR_API_URL")]
    pub api_url: String,
    #[arg(long, env = "CLOUDRUNR_DEPLOYMENT_ID")]
    pub deployment_id: String,
    /// This deployment's build token (it cannot be used for anything else).
    #[arg(long, env = "CLOUDRUNR_BUILD_TOKEN", hide_env_values = true)]
    pub build_token: String,
    /// file:///dir or s3://bucket/prefix.
    #[arg(long, env = "CLOUDRUNR_ARTIFACT_STORE")]
    pub artifact_store: String,
    #[arg(long, env = "CLOUDRUNR_S3_PATH_STYLE", value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_path_style: bool,
    #[arg(long, env = "CLOUDRUNR_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Workspaces go under here (removed after the build); defaults to the temporary directory.
    #[arg(long, env = "CLOUDRUNR_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Dependency caches kept between builds; defaults to a directory under the work directory.
    #[arg(long, env = "CLOUDRUNR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[arg(long, env = "CLOUDRUNR_BUILD_TIMEOUT", default_value = "15m", value_parser = parse_duration)]
    pub build_timeout: Duration,
    #[arg(long, env = "CLOUDRUNR_MAX_OUTPUT_FILES", default_value_t = 20_000)]
    pub max_output_files: u64,
    #[arg(long, env = "CLOUDRUNR_MAX_OUTPUT_BYTES", default_value_t = 1 << 30)]
    pub max_output_bytes: u64,
    #[command(flatten)]
    pub build_log: BuildLogArgs,
    #[command(flatten)]
    pub build_quotas: BuildQuotaArgs,
    #[arg(long, env = "CLOUDRUNR_BWRAP", default_value = "bwrap")]
    pub bwrap: PathBuf,
    #[arg(long, env = "CLOUDRUNR_UNSAFE_NO_SANDBOX", value_parser = clap::builder::BoolishValueParser::new())]
    pub unsafe_no_sandbox: bool,
    #[arg(long, env = "CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS", default_value = "")]
    pub git_allow_http_hosts: String,
    /// Comma list of what builds and git may reach besides public addresses on ports 80 and
    /// 443: IP addresses, CIDR networks, host names or *.suffix, each with an optional :port.
    #[arg(long, env = "CLOUDRUNR_BUILD_EGRESS_ALLOW", default_value = "", value_parser = parse_egress)]
    pub build_egress_allow: platform::egress::EgressPolicy,
}

/// How much log one build may write, and how fast (the same flags for the platform and for
/// `cloudrunr build`, which gets them from the platform through [`build_env`]).
#[derive(Args, Debug, Clone)]
pub struct BuildLogArgs {
    /// Most bytes of log one deployment keeps; the rest of its output is dropped after a
    /// "log truncated" line, and the build goes on.
    #[arg(long, env = "CLOUDRUNR_BUILD_LOG_MAX_BYTES", default_value_t = LogLimits::DEFAULT_MAX_BYTES,
          value_parser = clap::value_parser!(u64).range(LogLimits::MIN_BYTES..))]
    pub build_log_max_bytes: u64,
    /// Most log lines one deployment keeps.
    #[arg(long, env = "CLOUDRUNR_BUILD_LOG_MAX_LINES", default_value_t = LogLimits::DEFAULT_MAX_LINES,
          value_parser = clap::value_parser!(u64).range(LogLimits::MIN_LINES..))]
    pub build_log_max_lines: u64,
    /// Bytes of output per second one build's log is read at (beyond a one-second burst); a
    /// faster build waits on its own pipe.
    #[arg(long, env = "CLOUDRUNR_BUILD_LOG_BYTES_PER_SEC", default_value_t = LogLimits::DEFAULT_BYTES_PER_SEC,
          value_parser = clap::value_parser!(u64).range(LogLimits::MIN_BYTES_PER_SEC..))]
    pub build_log_bytes_per_sec: u64,
    /// Lines of output per second one build's log is read at (beyond a one-second burst).
    #[arg(long, env = "CLOUDRUNR_BUILD_LOG_LINES_PER_SEC", default_value_t = LogLimits::DEFAULT_LINES_PER_SEC,
          value_parser = clap::value_parser!(u64).range(LogLimits::MIN_LINES_PER_SEC..))]
    pub build_log_lines_per_sec: u64,
}

impl BuildLogArgs {
    pub fn limits(&self) -> LogLimits {
        LogLimits::new(
            self.build_log_max_bytes,
            self.build_log_max_lines,
            self.build_log_bytes_per_sec,
            self.build_log_lines_per_sec,
        )
    }
}

impl BuildArgs {
    pub fn limits(&self) -> BuildLimits {
        BuildLimits {
            timeout: self.build_timeout,
            sandbox: sandbox_mode(self.unsafe_no_sandbox, &self.bwrap),
            max_concurrent: 1,
            max_output_files: self.max_output_files,
            max_output_bytes: self.max_output_bytes,
            log: self.build_log.limits(),
            quotas: self.build_quotas.quotas(),
        }
    }
}

/// What one build may use of the machine (see `platform::settings::BuildQuotas`; the same flags
/// for the platform and for `cloudrunr build`, which gets them through [`build_env`]).
#[derive(Args, Debug, Clone)]
pub struct BuildQuotaArgs {
    /// Processes and threads one build may run at once; past it the build is stopped.
    #[arg(long, env = "CLOUDRUNR_BUILD_PIDS_MAX", default_value_t = BuildQuotas::DEFAULT_PIDS_MAX,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub build_pids_max: u64,
    /// Memory one build may use (page cache and /tmp included), e.g. 2GiB; past it the build is
    /// stopped.
    #[arg(long, env = "CLOUDRUNR_BUILD_MEMORY_MAX", default_value_t = BuildQuotas::DEFAULT_MEMORY_MAX)]
    pub build_memory_max: ByteSize,
    /// The size of a build's /tmp (a tmpfs, in memory), e.g. 1GiB.
    #[arg(long, env = "CLOUDRUNR_BUILD_TMP_MAX", default_value_t = BuildQuotas::DEFAULT_TMP_MAX)]
    pub build_tmp_max: ByteSize,
    /// Disk one build's checkout may take, with everything it writes there, e.g. 4GiB.
    #[arg(long, env = "CLOUDRUNR_BUILD_WORKSPACE_MAX", default_value_t = BuildQuotas::DEFAULT_WORKSPACE_MAX)]
    pub build_workspace_max: ByteSize,
    /// Disk a project's dependency cache may take, e.g. 2GiB; a cache past it is emptied.
    #[arg(long, env = "CLOUDRUNR_BUILD_CACHE_MAX", default_value_t = BuildQuotas::DEFAULT_CACHE_MAX)]
    pub build_cache_max: ByteSize,
}

impl BuildQuotaArgs {
    pub fn quotas(&self) -> BuildQuotas {
        BuildQuotas {
            pids_max: self.build_pids_max,
            memory_max: self.build_memory_max,
            tmp_max: self.build_tmp_max,
            workspace_max: self.build_workspace_max,
            cache_max: self.build_cache_max,
        }
    }
}

/// What a platform hands on to the builds it starts, so that they build under its own limits.
pub fn build_env(settings: &Settings) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "CLOUDRUNR_MAX_OUTPUT_FILES".to_owned(),
            settings.build.max_output_files.to_string(),
        ),
        (
            "CLOUDRUNR_MAX_OUTPUT_BYTES".to_owned(),
            settings.build.max_output_bytes.to_string(),
        ),
        ("CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS".to_owned(), settings.git.to_list()),
        (platform::egress::ALLOW_VAR.to_owned(), settings.git.egress().to_list()),
        (
            "CLOUDRUNR_BUILD_LOG_MAX_BYTES".to_owned(),
            settings.build.log.max_bytes().to_string(),
        ),
        (
            "CLOUDRUNR_BUILD_LOG_MAX_LINES".to_owned(),
            settings.build.log.max_lines().to_string(),
        ),
        (
            "CLOUDRUNR_BUILD_LOG_BYTES_PER_SEC".to_owned(),
            settings.build.log.bytes_per_sec().to_string(),
        ),
        (
            "CLOUDRUNR_BUILD_LOG_LINES_PER_SEC".to_owned(),
            settings.build.log.lines_per_sec().to_string(),
        ),
        (
            "CLOUDRUNR_BUILD_PIDS_MAX".to_owned(),
            settings.build.quotas.pids_max.to_string(),
        ),
        (
            "CLOUDRUNR_BUILD_MEMORY_MAX".to_owned(),
            settings.build.quotas.memory_max.bytes().to_string(),
        ),
        (
            "CLOUDRUNR_BUILD_TMP_MAX".to_owned(),
            settings.build.quotas.tmp_max.bytes().to_string(),
        ),
        (
            "CLOUDRUNR_BUILD_WORKSPACE_MAX".to_owned(),
            settings.build.quotas.workspace_max.bytes().to_string(),
        ),
        (
            "CLOUDRUNR_BUILD_CACHE_MAX".to_owned(),
            settings.build.quotas.cache_max.bytes().to_string(),
        ),
    ];
    if let Some(endpoint) = &settings.s3.endpoint {
        env.push(("CLOUDRUNR_S3_ENDPOINT".to_owned(), endpoint.clone()));
    }
    env
}

fn sandbox_mode(unsafe_no_sandbox: bool, bwrap: &Path) -> SandboxMode {
    if unsafe_no_sandbox {
        SandboxMode::UnsafeNone
    } else {
        SandboxMode::Bubblewrap(bwrap.to_owned())
    }
}

fn parse_egress(raw: &str) -> Result<platform::egress::EgressPolicy, String> {
    platform::egress::EgressPolicy::parse(raw).map_err(|e| e.to_string())
}

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 90s, 15m, 1h or 30d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{raw:?} is not a duration like 90s, 15m, 1h or 30d")),
    };
    if secs == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

impl Config {
    /// The settings, once the listening port is known.
    pub fn settings(self, bound: SocketAddr) -> anyhow::Result<Settings> {
        self.settings_with_tls(bound, None)
    }

    /// The settings, once the listening ports are known: `tls_bound` is where the TLS listener
    /// was bound (`None`: as configured). With TLS on, site URLs (and the public URL, unless set)
    /// are `https://` on the TLS port.
    pub fn settings_with_tls(self, bound: SocketAddr, tls_bound: Option<SocketAddr>) -> anyhow::Result<Settings> {
        let tls = self.tls.settings(tls_bound)?;
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
        let domain = self.domain.trim_matches('.').to_ascii_lowercase();
        let https_port = tls.listen.map(|a| a.port()).filter(|&p| p != 443);
        let public_url = self
            .public_url
            .unwrap_or_else(|| match (tls.listen, https_port) {
                (Some(_), Some(port)) => format!("https://{domain}:{port}"),
                (Some(_), None) => format!("https://{domain}"),
                (None, _) => format!("http://{bound}"),
            })
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
        if !matches!(self.sites_scheme.as_str(), "http" | "https") {
            anyhow::bail!("CLOUDRUNR_SITES_SCHEME must be http or https");
        }
        // Sites are shown where they are served: over HTTPS on the TLS port once it is on.
        let (sites_scheme, default_port) = match tls.listen {
            Some(_) => ("https".to_owned(), https_port),
            None => {
                let port = match (self.sites_scheme.as_str(), bound.port()) {
                    ("http", 80) | ("https", 443) => None,
                    (_, p) => Some(p),
                };
                (self.sites_scheme, port)
            }
        };
        let b = self.backends;
        let artifacts = match &b.artifact_store {
            Some(raw) => ArtifactLocation::parse(raw)?,
            None => ArtifactLocation::Local(data_dir.join("artifacts")),
        };
        let kafka = b
            .kafka_brokers
            .filter(|s| !s.trim().is_empty())
            .map(|brokers| KafkaConfig {
                events_topic: b.kafka_events_topic,
                notices_topic: b.kafka_notices_topic,
                consumer_group: b.kafka_consumer_group,
                ..KafkaConfig::new(brokers)
            });
        let executor = match b.executor.as_str() {
            "ecs" => ExecutorSettings::Ecs(EcsSettings {
                cluster: b.ecs_cluster,
                task_definition: b
                    .ecs_task_definition
                    .context("the ECS executor needs CLOUDRUNR_ECS_TASK_DEFINITION")?,
                container: b.ecs_container,
                launch_type: b.ecs_launch_type,
                subnets: comma_list(&b.ecs_subnets),
                security_groups: comma_list(&b.ecs_security_groups),
                assign_public_ip: b.ecs_assign_public_ip,
            }),
            _ => ExecutorSettings::Local,
        };
        if matches!(executor, ExecutorSettings::Ecs(_)) && matches!(artifacts, ArtifactLocation::Local(_)) {
            anyhow::bail!(
                "builds on ECS cannot reach a local artifact directory: set CLOUDRUNR_ARTIFACT_STORE=s3://..."
            );
        }
        // Builds on this machine reach a wildcard listener on loopback.
        let api_url = b
            .api_url
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| match bound.ip().is_unspecified() {
                true => format!("http://127.0.0.1:{}", bound.port()),
                false => format!("http://{bound}"),
            });
        Ok(Settings {
            data_dir,
            listen: bound,
            public_url,
            secret_key,
            github,
            sites: SitesSettings {
                domain,
                scheme: sites_scheme,
                port: self.sites_port.or(default_port),
            },
            git: GitHostPolicy::from_list(&self.git_allow_http_hosts).with_egress(self.build_egress_allow),
            jwt_secret,
            database_url: Secret::new(database_url),
            build: BuildLimits {
                timeout: self.build_timeout,
                sandbox: sandbox_mode(self.unsafe_no_sandbox, &self.bwrap),
                max_concurrent: self.max_concurrent_builds.max(1),
                max_output_files: self.max_output_files,
                max_output_bytes: self.max_output_bytes,
                log: self.build_log.limits(),
                quotas: self.build_quotas.quotas(),
            },
            artifacts,
            s3: S3Options {
                path_style: b.s3_path_style,
                endpoint: b.s3_endpoint,
            },
            kafka,
            executor,
            api_url,
            log_retention: b.log_retention,
            router_cache_bytes: b.router_cache_bytes,
            accounts: self.accounts.limits()?,
            domains: self.domains.settings()?,
            connections: b.connections.limits()?,
            acme: self.acme.settings(tls.listen.is_some())?,
            tls,
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

/// This machine's name among the processes sharing a queue: kept in the data directory, so that it
/// survives restarts.
pub fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    Ok(persisted(&data_dir.join("node-id"), 32)?.expose()[..12].to_owned())
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
    fn acme_is_off_unless_asked_for_and_bad_values_say_what_is_wrong() {
        let args = |directory: Option<&str>, email: Option<&str>| AcmeArgs {
            acme_directory: directory.map(str::to_owned),
            acme_email: email.map(str::to_owned),
            acme_ca_roots: None,
            acme_dns_hook: None,
            acme_dns_wait_secs: 30.0,
            acme_profile: None,
            acme_retry_secs: 60.0,
            acme_check_secs: 60.0,
        };
        let off = args(None, None).settings(true).unwrap();
        assert!(!off.enabled, "TLS alone does not reach a CA");
        let on = args(None, Some("ops@example.com")).settings(true).unwrap();
        assert!(on.enabled);
        assert_eq!(on.directory, "https://acme-v02.api.letsencrypt.org/directory");
        let e = args(Some("https://ca.example/dir"), None).settings(false).unwrap_err();
        assert!(e.to_string().contains("CLOUDRUNR_TLS_LISTEN"), "{e}");
        let e = args(Some("http://ca.example/dir"), None).settings(true).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = args(None, Some("not an email")).settings(true).unwrap_err();
        assert!(e.to_string().contains("CLOUDRUNR_ACME_EMAIL"), "{e}");
        let mut bad = args(None, Some("ops@example.com"));
        bad.acme_check_secs = 0.0;
        let e = bad.settings(true).unwrap_err();
        assert!(e.to_string().contains("CLOUDRUNR_ACME_CHECK_SECS"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0").is_err());
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn builds_away_from_the_platform_get_its_log_limits() {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            config: Config,
        }
        #[derive(clap::Parser)]
        struct Build {
            #[command(flatten)]
            args: BuildArgs,
        }
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let serve = |extra: &[&str]| {
            let mut argv = vec!["cloudrunr", "--data-dir", data];
            argv.extend(extra);
            Serve::try_parse_from(argv)
        };
        let config = serve(&[
            "--build-log-max-bytes",
            "123456",
            "--build-log-max-lines",
            "789",
            "--build-log-bytes-per-sec",
            "65536",
            "--build-log-lines-per-sec",
            "321",
        ])
        .unwrap()
        .config;
        let settings = config.settings("127.0.0.1:8080".parse().unwrap()).unwrap();
        assert_eq!(settings.build.log, LogLimits::new(123_456, 789, 65_536, 321));
        // The variables a platform hands its builds, as `cloudrunr build` reads them.
        let mut argv: Vec<String> = [
            "cloudrunr",
            "--api-url=http://127.0.0.1:1",
            "--deployment-id=d",
            "--build-token=t",
            "--artifact-store=file:///tmp",
        ]
        .map(String::from)
        .into();
        for (k, v) in build_env(&settings) {
            if let Some(name) = k.strip_prefix("CLOUDRUNR_BUILD_LOG_") {
                argv.push(format!("--build-log-{}={v}", name.to_lowercase().replace('_', "-")));
            }
        }
        assert_eq!(argv.len(), 9, "{argv:?}");
        let build = Build::try_parse_from(argv).unwrap();
        assert_eq!(build.args.limits().log, settings.build.log);
        // Too small a cap leaves no room for the notice: refused, naming the minimum.
        let err = serve(&["--build-log-max-bytes", "100"]).err().unwrap().to_string();
        assert!(err.contains("4096"), "{err}");
        assert_eq!(serve(&[]).unwrap().config.build_log.limits(), LogLimits::default());
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
