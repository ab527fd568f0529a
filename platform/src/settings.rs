//! The one typed configuration of a CloudRunr process.
//!
//! The binary fills it from flags and `CLOUDRUNR_*` environment variables; everything else takes
//! what it needs from here. Secrets are wrapped in [`Secret`] so that `Debug` never prints them.

use crate::GitHostPolicy;
use crate::byte_size::ByteSize;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A value that must not appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the embedded backends keep their state (database, artifacts, build workspaces).
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Where users and GitHub reach the platform (dashboard, webhooks, OAuth callbacks), without a
    /// trailing slash, e.g. `https://deploy.example.com`.
    pub public_url: String,
    /// Seals secrets stored in the database (see `crypto::SecretBox`).
    pub secret_key: Secret,
    pub github: GithubSettings,
    pub sites: SitesSettings,
    pub git: GitHostPolicy,
    pub jwt_secret: Secret,
    /// `sqlite://…` or `postgres://…`; may carry a password, hence secret.
    pub database_url: Secret,
    pub build: BuildLimits,
    /// Where artifacts live: a local directory or an S3 bucket.
    pub artifacts: crate::artifacts::ArtifactLocation,
    pub s3: S3Options,
    /// The Kafka log bus; `None` is the in-process bus (one process only).
    pub kafka: Option<KafkaConfig>,
    pub executor: ExecutorSettings,
    /// Where builds that run away from the platform (processes, ECS tasks) reach the API.
    pub api_url: String,
    /// How long build logs are kept (TimescaleDB retention policy); `None` keeps them.
    pub log_retention: Option<Duration>,
    /// Bytes of artifact content the router keeps in memory.
    pub router_cache_bytes: u64,
    /// Timeouts and caps on every HTTP connection (see [`crate::connection_limits`]).
    pub connections: crate::connection_limits::ConnectionLimits,
    /// Log-in throttling, the proxies trusted to name clients, and per-account build caps.
    pub accounts: AccountLimits,
    /// Custom domains: the public addresses apex domains point at, and the resolver that checks
    /// their DNS records.
    pub domains: DomainSettings,
    /// The TLS listener and the platform's certificate files (off unless configured).
    pub tls: TlsSettings,
    /// Certificates from ACME (off unless configured).
    pub acme: AcmeSettings,
}

/// Certificates from an ACME CA for verified custom domains (HTTP-01) and the platform's
/// wildcard (DNS-01 through a hook). On only with the TLS listener and `CLOUDRUNR_ACME_DIRECTORY`
/// or `CLOUDRUNR_ACME_EMAIL` set, so that no configuration reaches a CA by surprise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub enabled: bool,
    /// `CLOUDRUNR_ACME_DIRECTORY` (default Let's Encrypt production).
    pub directory: String,
    /// `CLOUDRUNR_ACME_EMAIL`: the account's contact.
    pub email: Option<String>,
    /// `CLOUDRUNR_ACME_CA_ROOTS`: a PEM file of extra roots trusted for the CA's HTTPS.
    pub ca_roots: Option<PathBuf>,
    /// `CLOUDRUNR_ACME_DNS_HOOK`: `HOOK set|clear <fqdn> <value>` publishes DNS-01 records.
    pub dns_hook: Option<PathBuf>,
    /// `CLOUDRUNR_ACME_DNS_WAIT_SECS` (default 30): the wait between the hook's `set` and asking
    /// the CA to validate.
    pub dns_propagation: Duration,
    /// `CLOUDRUNR_ACME_PROFILE`: the certificate profile asked for; the CA's default when unset.
    pub profile: Option<String>,
    /// `CLOUDRUNR_ACME_RETRY_SECS` (default 60): the wait after a first failure, doubled per
    /// failure in a row.
    pub retry_base: Duration,
    /// `CLOUDRUNR_ACME_CHECK_SECS` (default 60): how often verified domains without a certificate
    /// and certificates due for renewal are looked for, and new certificates loaded.
    pub check_interval: Duration,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            directory: "https://acme-v02.api.letsencrypt.org/directory".to_owned(),
            email: None,
            ca_roots: None,
            dns_hook: None,
            dns_propagation: Duration::from_secs(30),
            profile: None,
            retry_base: Duration::from_secs(60),
            check_interval: Duration::from_secs(60),
        }
    }
}

/// HTTPS at the edge: where the TLS listener is, and the certificates read from files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The TLS listener's address (`CLOUDRUNR_TLS_LISTEN`); `None` serves plain HTTP only.
    pub listen: Option<SocketAddr>,
    /// Certificate chains and their keys, PEM (`CLOUDRUNR_TLS_CERT`, `CLOUDRUNR_TLS_KEY`, comma
    /// lists of the same length). Each is served for the names it covers; the first is also the
    /// default certificate, for clients naming no host or one no certificate covers.
    pub files: Vec<CertificateFiles>,
    /// How often the files are checked for changes (`CLOUDRUNR_TLS_RELOAD_SECS`, default 5 s).
    pub reload_interval: Duration,
    /// How long a TLS handshake may take from the connection's accept
    /// (`CLOUDRUNR_TLS_HANDSHAKE_TIMEOUT_SECS`, default 10 s).
    pub handshake_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            listen: None,
            files: Vec::new(),
            reload_interval: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// One certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Custom domains (see [`crate::domain`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainSettings {
    /// The addresses the platform is reached at from the internet (`CLOUDRUNR_PUBLIC_IPS`): what
    /// an apex domain's A/AAAA records must hold. Empty: apex domains cannot be added.
    pub public_ips: Vec<std::net::IpAddr>,
    /// The DNS server verification asks (`CLOUDRUNR_DNS_RESOLVER`, `host:port`); `None` is the
    /// system's (`/etc/resolv.conf`).
    pub dns_resolver: Option<SocketAddr>,
}

/// What keeps one account or one client from taking more than its share: log-in throttling,
/// whose client addresses come through the trusted proxies, and build caps per account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLimits {
    /// Peers whose `X-Forwarded-For` names the client (`CLOUDRUNR_TRUSTED_PROXIES`).
    pub trusted_proxies: crate::proxies::TrustedProxies,
    /// Failed log-ins of one account from one address before each further attempt must wait
    /// (2, 4, 8 … seconds, at most 15 minutes).
    pub login_free_attempts: u32,
    /// Failed log-ins from one address within an hour (over all accounts) past which that
    /// address gets no free attempts on any further account.
    pub login_address_ceiling: u32,
    /// Builds of one account running at once.
    pub max_running_builds: u32,
    /// Deployments of one account waiting in the queue; past it, new ones are refused.
    pub max_queued_builds: u32,
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self {
            trusted_proxies: crate::proxies::TrustedProxies::default(),
            login_free_attempts: 10,
            login_address_ceiling: 100,
            max_running_builds: 2,
            max_queued_builds: 20,
        }
    }
}

/// How to reach the bucket beyond the standard AWS configuration chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Path-style addressing (`http://host/bucket/key`), which most S3-compatible servers need
    /// (`CLOUDRUNR_S3_PATH_STYLE`).
    pub path_style: bool,
    /// An endpoint URL overriding the chain's (`AWS_ENDPOINT_URL`, profiles); `http://` works.
    pub endpoint: Option<String>,
}

/// Where the Kafka log bus lives. [`KafkaConfig::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Build events, keyed by deployment id (created with 6 partitions if missing).
    pub events_topic: String,
    /// Notices (created with 1 partition if missing).
    pub notices_topic: String,
    /// The durable consumer's group: the log consumers share it; watchers read its commits.
    pub consumer_group: String,
    /// How this process names itself to the brokers (their logs, quotas).
    pub client_id: String,
}

impl KafkaConfig {
    pub const DEFAULT_EVENTS_TOPIC: &str = "cloudrunr.build-events";
    pub const DEFAULT_NOTICES_TOPIC: &str = "cloudrunr.notices";
    pub const DEFAULT_CONSUMER_GROUP: &str = "cloudrunr-log-consumer";
    pub const DEFAULT_CLIENT_ID: &str = "cloudrunr";

    /// The default topics, group and client id, on `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            events_topic: Self::DEFAULT_EVENTS_TOPIC.to_owned(),
            notices_topic: Self::DEFAULT_NOTICES_TOPIC.to_owned(),
            consumer_group: Self::DEFAULT_CONSUMER_GROUP.to_owned(),
            client_id: Self::DEFAULT_CLIENT_ID.to_owned(),
        }
    }

    /// Every name is set and the two topics differ; the error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        for (what, value) in [
            ("brokers", &self.brokers),
            ("events topic", &self.events_topic),
            ("notices topic", &self.notices_topic),
            ("consumer group", &self.consumer_group),
            ("client id", &self.client_id),
        ] {
            if value.trim().is_empty() {
                return Err(format!("the Kafka {what} is empty"));
            }
        }
        if self.events_topic == self.notices_topic {
            return Err("the Kafka events and notices topics must differ".into());
        }
        Ok(())
    }
}

/// Where builds run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorSettings {
    /// On this machine, sandboxed: inside `serve`, or as `cloudrunr build` children of `api`.
    Local,
    /// As AWS ECS tasks running `cloudrunr build`.
    Ecs(EcsSettings),
}

/// The ECS task that runs builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsSettings {
    pub cluster: String,
    pub task_definition: String,
    /// The container of the task definition that runs `cloudrunr build`.
    pub container: String,
    /// `FARGATE`, `EC2` or `EXTERNAL`.
    pub launch_type: String,
    /// awsvpc networking; empty for task definitions that do not use it.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

/// How deployed sites are addressed: `<scheme>://<slug>.<domain>[:<port>]/`.
#[derive(Debug, Clone)]
pub struct SitesSettings {
    pub domain: String,
    pub scheme: String,
    /// Omitted from URLs when `None`.
    pub port: Option<u16>,
}

impl SitesSettings {
    /// Whether `host` (a Host header, port allowed) names a site; returns its leftmost label.
    pub fn site_label<'h>(&self, host: &'h str) -> Option<&'h str> {
        let name = strip_port(host);
        let suffix_len = self.domain.len() + 1;
        if name.len() <= suffix_len {
            return None;
        }
        let (label, rest) = name.split_at(name.len() - suffix_len);
        let matches_domain = rest.as_bytes()[0] == b'.' && rest[1..].eq_ignore_ascii_case(&self.domain);
        (matches_domain && !label.contains('.')).then_some(label)
    }

    /// Where a deployment is served: its project's site for production, the branch's preview
    /// host otherwise (`None` when the names leave no room for a preview label).
    pub fn deployment_url(&self, d: &crate::model::Deployment) -> Option<String> {
        match d.target {
            crate::model::DeploymentTarget::Production => Some(self.url_for(d.project_slug.as_str())),
            crate::model::DeploymentTarget::Preview => {
                crate::names::preview_label(&d.branch, &d.project_slug).map(|l| self.url_for(&l))
            }
        }
    }

    /// The deployment's own, immutable URL: `<short id>--<project>` serves exactly this
    /// deployment for as long as it exists, whatever production or previews do.
    pub fn immutable_url(&self, d: &crate::model::Deployment) -> Option<String> {
        let label = format!("{}--{}", d.id.short(), d.project_slug);
        (label.len() <= crate::ProjectSlug::MAX_LEN).then(|| self.url_for(&label))
    }

    /// The public URL of the site whose host label is `label`.
    pub fn url_for(&self, label: &str) -> String {
        match self.port {
            Some(port) => format!("{}://{label}.{}:{port}/", self.scheme, self.domain),
            None => format!("{}://{label}.{}/", self.scheme, self.domain),
        }
    }
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Where GitHub is, and the App's credentials when they come from the environment rather than
/// from the manifest flow.
#[derive(Debug, Clone)]
pub struct GithubSettings {
    /// The REST API, e.g. `https://api.github.com` or `https://ghe.example.com/api/v3`.
    pub api_url: String,
    /// The web site (OAuth, App settings), e.g. `https://github.com`.
    pub web_url: String,
    pub app: Option<GithubAppCredentials>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubAppCredentials {
    pub app_id: u64,
    /// Known after the manifest flow; fetched from GitHub otherwise.
    pub slug: Option<String>,
    pub client_id: String,
    pub client_secret: Secret,
    pub webhook_secret: Secret,
    /// PEM.
    pub private_key: Secret,
}

/// Whether builds run inside bubblewrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMode {
    /// The `bwrap` program to run builds with.
    Bubblewrap(std::path::PathBuf),
    /// Builds run as plain child processes. Only for machines where bubblewrap cannot run, and
    /// only when asked for explicitly.
    UnsafeNone,
}

#[derive(Debug, Clone)]
pub struct BuildLimits {
    pub timeout: Duration,
    pub sandbox: SandboxMode,
    /// Builds running at once across all projects.
    pub max_concurrent: usize,
    pub max_output_files: u64,
    pub max_output_bytes: u64,
    /// How much log one build may write, and how fast.
    pub log: LogLimits,
    /// Processes, memory and disk one build may use.
    pub quotas: BuildQuotas,
}

impl Default for BuildLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15 * 60),
            sandbox: SandboxMode::Bubblewrap("bwrap".into()),
            max_concurrent: 2,
            max_output_files: 20_000,
            max_output_bytes: 1 << 30,
            log: LogLimits::default(),
            quotas: BuildQuotas::default(),
        }
    }
}

/// What one build may use of the machine, enforced by `builder::quota`: a build past a limit
/// is stopped (or, for `/tmp`, fails once it is full) with a message naming the limit's
/// variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildQuotas {
    /// Processes and threads at once (`CLOUDRUNR_BUILD_PIDS_MAX`, cgroup `pids.max`).
    pub pids_max: u64,
    /// Memory, page cache and `/tmp` included (`CLOUDRUNR_BUILD_MEMORY_MAX`, cgroup memory
    /// limit, no swap).
    pub memory_max: ByteSize,
    /// The size of the sandbox's `/tmp` tmpfs (`CLOUDRUNR_BUILD_TMP_MAX`).
    pub tmp_max: ByteSize,
    /// Disk used by the checkout and everything the build writes into it
    /// (`CLOUDRUNR_BUILD_WORKSPACE_MAX`).
    pub workspace_max: ByteSize,
    /// Disk used by the project's dependency cache, kept between builds
    /// (`CLOUDRUNR_BUILD_CACHE_MAX`).
    pub cache_max: ByteSize,
}

impl BuildQuotas {
    pub const DEFAULT_PIDS_MAX: u64 = 1024;
    pub const DEFAULT_MEMORY_MAX: ByteSize = ByteSize::gib(2);
    pub const DEFAULT_TMP_MAX: ByteSize = ByteSize::gib(1);
    pub const DEFAULT_WORKSPACE_MAX: ByteSize = ByteSize::gib(4);
    pub const DEFAULT_CACHE_MAX: ByteSize = ByteSize::gib(2);
}

impl Default for BuildQuotas {
    fn default() -> Self {
        Self {
            pids_max: Self::DEFAULT_PIDS_MAX,
            memory_max: Self::DEFAULT_MEMORY_MAX,
            tmp_max: Self::DEFAULT_TMP_MAX,
            workspace_max: Self::DEFAULT_WORKSPACE_MAX,
            cache_max: Self::DEFAULT_CACHE_MAX,
        }
    }
}

/// Per-deployment bounds on a build's log, enforced by the builder where lines are produced.
///
/// `max_bytes`/`max_lines` cap what one deployment stores (all attempts of it together are not
/// tracked: each attempt starts afresh); `bytes_per_sec`/`lines_per_sec` pace how fast one
/// build's output is read, so that a flooding build slows itself rather than the shared log
/// pipeline. Values below the minimums are raised to them: the cap must leave room for the
/// platform's own lines and the truncation notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    max_bytes: u64,
    max_lines: u64,
    bytes_per_sec: u64,
    lines_per_sec: u64,
}

impl LogLimits {
    pub const MIN_BYTES: u64 = 4096;
    pub const MIN_LINES: u64 = 20;
    pub const MIN_BYTES_PER_SEC: u64 = 1024;
    pub const MIN_LINES_PER_SEC: u64 = 10;
    pub const DEFAULT_MAX_BYTES: u64 = 50 * 1000 * 1000;
    pub const DEFAULT_MAX_LINES: u64 = 500_000;
    pub const DEFAULT_BYTES_PER_SEC: u64 = 4 << 20;
    pub const DEFAULT_LINES_PER_SEC: u64 = 20_000;

    pub fn new(max_bytes: u64, max_lines: u64, bytes_per_sec: u64, lines_per_sec: u64) -> Self {
        Self {
            max_bytes: max_bytes.max(Self::MIN_BYTES),
            max_lines: max_lines.max(Self::MIN_LINES),
            bytes_per_sec: bytes_per_sec.max(Self::MIN_BYTES_PER_SEC),
            lines_per_sec: lines_per_sec.max(Self::MIN_LINES_PER_SEC),
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn max_lines(&self) -> u64 {
        self.max_lines
    }

    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    pub fn lines_per_sec(&self) -> u64 {
        self.lines_per_sec
    }
}

impl Default for LogLimits {
    fn default() -> Self {
        Self::new(
            Self::DEFAULT_MAX_BYTES,
            Self::DEFAULT_MAX_LINES,
            Self::DEFAULT_BYTES_PER_SEC,
            Self::DEFAULT_LINES_PER_SEC,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(domain: &str) -> SitesSettings {
        SitesSettings {
            domain: domain.into(),
            scheme: "http".into(),
            port: Some(8080),
        }
    }

    #[test]
    fn site_labels() {
        let s = sites("localhost");
        assert_eq!(s.site_label("app.localhost:8080"), Some("app"));
        assert_eq!(s.site_label("APP.LocalHost"), Some("APP"));
        assert_eq!(s.site_label("localhost:8080"), None);
        assert_eq!(s.site_label(".localhost"), None);
        assert_eq!(s.site_label("a.b.localhost"), None);
        assert_eq!(s.site_label("app.localhostx"), None);
        assert_eq!(s.site_label("127.0.0.1:8080"), None);
        let s = sites("sites.example.com");
        assert_eq!(s.site_label("blog.sites.example.com"), Some("blog"));
        assert_eq!(s.site_label("sites.example.com"), None);
    }

    #[test]
    fn urls() {
        assert_eq!(sites("localhost").url_for("app"), "http://app.localhost:8080/");
        let s = SitesSettings {
            domain: "example.com".into(),
            scheme: "https".into(),
            port: None,
        };
        assert_eq!(s.url_for("app"), "https://app.example.com/");
    }

    #[test]
    fn log_limits_keep_their_minimums() {
        let l = LogLimits::new(0, 1, 2, 3);
        assert_eq!(
            (l.max_bytes(), l.max_lines(), l.bytes_per_sec(), l.lines_per_sec()),
            (
                LogLimits::MIN_BYTES,
                LogLimits::MIN_LINES,
                LogLimits::MIN_BYTES_PER_SEC,
                LogLimits::MIN_LINES_PER_SEC
            )
        );
        let d = LogLimits::default();
        assert_eq!((d.max_bytes(), d.max_lines()), (50_000_000, 500_000));
        assert_eq!(BuildLimits::default().log, d);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
