//! Test support: a local stand-in for GitHub that checks every request against GitHub's official
//! OpenAPI description and answers with that description's example responses.
//!
//! [`MockGitHub`] serves, on `http://127.0.0.1:PORT`, both the REST API (what `api.github.com` is) and
//! the one `github.com` web endpoint a GitHub App's web flow calls from the server side
//! (`POST /login/oauth/access_token`). The description is `@octokit/openapi` (pinned, installed by
//! `scripts/test-data` into `${CLOUDRUNR_TEST_DATA:-$HOME/.cache/cloudrunr/test-data}`); it is parsed once
//! per test process.
//!
//! Per request the mock checks, and records a *violation* (see [`MockGitHub::violations`]) plus answers
//! with an error shaped like GitHub's when a check fails:
//! 1. method + path match an operation of the description (literal segments win over parameters); path
//!    parameters are non-empty and fit their schema; query parameters are declared by the operation and
//!    fit their schema; required ones are present;
//! 2. the credential kind the operation needs (App JWT, installation token, user token, client
//!    credentials), verified: App JWTs are RS256 signatures by the test App's key with sane `iss`/`iat`/
//!    `exp`; tokens are ones the mock issued, unexpired, of installations that exist and reach the repo;
//! 3. `User-Agent` is present; `X-GitHub-Api-Version`, if sent, is one GitHub accepts (`2026-03-10`
//!    selects the description with that version's breaking changes applied); `Accept` is JSON-compatible;
//! 4. the JSON body validates against the operation's `requestBody` schema (OpenAPI 3.0 translated to JSON
//!    Schema draft 4: `$ref`s into `components`, `nullable`, dropped annotations); no body where the
//!    operation takes none; plus the rules the description only states in prose (check-run `conclusion`
//!    required with `status: completed`/`completed_at`, never `stale`; `head_sha` is a commit sha).
//!
//! Answers are the description's example for the operation's success status, with URLs pointing at the
//! mock and patched with the mock's state (installations, repos, tokens, check runs, users) where the
//! platform needs consistent data. Some failures are *not* violations because the platform cannot
//! avoid them: a GitHub outage ([`MockGitHub::set_outage`]), tokens of an installation the test removed,
//! one-time codes (OAuth, manifest) that are unknown or already used, and 404s for lookups of state
//! (e.g. the installation of a repo the App is not installed on).
//!
//! The server runs on its own thread with its own tokio runtime (like `git_server.rs`), so blocking test
//! code cannot deadlock it. JWT signatures are checked with the `openssl` CLI (which also makes the test
//! App's key, once per process), so the mock needs no crypto crates.
//!
//! Besides the platform-facing API: [`TestApp::jwt`]/[`TestApp::sign_jwt`] mint App JWTs for tests that
//! call the mock directly, [`TestRepo::new`] makes a public repo on `main`, and [`check_description`]
//! reports operations the mock could not check or answer (its own test keeps that list known).
//!
//! Note for octocrab users: octocrab 0.54's `update_check_run` also sends `check_run_id` in the body; the
//! description allows extra properties there and GitHub ignores it, so it is accepted and shows up in
//! [`MockGitHub::check_runs`] bodies.

mod answers;
mod auth;
mod check_runs;
mod description;
mod encodings;
mod request;
mod validate;

pub use description::{check_description, test_data_dir};

use answers::{Call, put, rewrite_urls};
use description::{Route, Spec, spec, split_path};
use encodings::{
    app_keys, base64_decode, node_id, numeric_claim, parse_form, percent_decode, percent_encode, random_alnum,
    random_hex, random_u64, rfc3339, sign_rs256, stable_id, unix_now, verified_jwts,
};
use request::{Credential, Ctx, Need, Reply, ReplyBody, body_for_record, handle, need_for};
use validate::{Params, check_body, check_headers, check_parameters};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Router;
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The API versions GitHub accepts in `X-GitHub-Api-Version`; the first is the default.
pub const API_VERSIONS: &[&str] = &["2022-11-28", "2026-03-10"];
/// Where error answers point, like GitHub's.
const DOCS_URL: &str = "https://docs.github.com/rest";
/// Path of the description inside the test data directory.
const SPEC_FILE: &str = "node_modules/@octokit/openapi/generated/api.github.com.json";
/// Trailing path parameters GitHub lets span several segments (unencoded slashes).
const MULTI_SEGMENT_PARAMS: &[&str] = &["path", "ref", "dir"];
/// The description's version `scripts/test-data` pins.
const SPEC_VERSION: &str = "23.0.2";
/// Installation tokens live this long, like GitHub's.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Clock skew allowed for an App JWT's `iat`.
const JWT_SKEW_SECS: i64 = 60;
/// Longest App JWT lifetime GitHub accepts (`exp - iat`).
const JWT_MAX_LIFETIME_SECS: i64 = 600;

// ---------------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------------

/// The GitHub App the platform acts as. Secrets are random per [`MockGitHub`]; the private key is one
/// RSA 2048 key per test process, PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`) like the keys GitHub issues.
#[derive(Clone, Debug)]
pub struct TestApp {
    pub id: u64,
    pub slug: String,
    pub client_id: String,
    pub client_secret: String,
    pub webhook_secret: String,
    pub private_key_pem: String,
}

/// A repository an installation can reach.
#[derive(Clone, Debug)]
pub struct TestRepo {
    pub id: u64,
    /// `owner/name`
    pub full_name: String,
    pub clone_url: String,
    pub private: bool,
    pub default_branch: String,
}

/// One request the mock received, in arrival order.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The URL path, without the query string.
    pub path: String,
    /// The description's `operationId`, when the request matched an operation.
    pub operation_id: Option<String>,
    pub auth: Auth,
    /// The JSON body (a form-encoded body as an object of strings), `Null` when empty, a string when
    /// it is neither.
    pub body: Value,
    /// The status the mock answered with.
    pub status: u16,
}

/// The credential a request carried.
#[derive(Clone, Debug, PartialEq)]
pub enum Auth {
    None,
    /// A valid JWT signed by the test App's key.
    AppJwt,
    /// A valid installation access token of this installation.
    Installation(u64),
    /// A valid user access token from the OAuth web flow, for this login.
    User(String),
    /// HTTP Basic with the App's client id and secret.
    Basic,
    /// Anything else; says why it is not valid.
    Invalid(String),
}

/// A check run the platform created: its repo (`owner/name` as the repo is registered), its id, and every
/// accepted create/update JSON body, in order.
#[derive(Clone, Debug)]
pub struct CheckRun {
    pub repo: String,
    pub id: u64,
    pub bodies: Vec<Value>,
}

impl TestRepo {
    /// A public repo on branch `main`.
    pub fn new(id: u64, full_name: &str, clone_url: &str) -> TestRepo {
        TestRepo {
            id,
            full_name: full_name.to_owned(),
            clone_url: clone_url.to_owned(),
            private: false,
            default_branch: "main".to_owned(),
        }
    }

    fn owner(&self) -> &str {
        self.full_name
            .split_once('/')
            .map_or(self.full_name.as_str(), |(o, _)| o)
    }

    fn name(&self) -> &str {
        self.full_name
            .split_once('/')
            .map_or(self.full_name.as_str(), |(_, n)| n)
    }
}

impl TestApp {
    /// An App JWT as GitHub wants it (and octocrab makes it): `iat` 60 s ago, `exp` in 9 minutes, `iss`
    /// the App id.
    pub fn jwt(&self) -> String {
        let now = unix_now();
        self.sign_jwt(&json!({ "iat": now - 60, "exp": now + 540, "iss": self.id }))
    }

    /// Signs arbitrary claims as an RS256 JWT with the App's private key (for tests that need a bad one).
    pub fn sign_jwt(&self, claims: &Value) -> String {
        sign_rs256(&self.private_key_pem, &json!({ "alg": "RS256", "typ": "JWT" }), claims)
    }
}

// ---------------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------------

/// A GitHub stand-in on 127.0.0.1:<random port>; see the module docs.
pub struct MockGitHub {
    inner: Arc<Inner>,
    /// Dropping this stops the server thread.
    _shutdown: oneshot::Sender<()>,
}

struct Inner {
    url: String,
    app: TestApp,
    /// Holds the App's public key for `openssl dgst -verify`, and scratch signature files.
    key_dir: TempDir,
    state: Mutex<MockState>,
}

#[derive(Default)]
struct MockState {
    outage: bool,
    installations: BTreeMap<u64, Installation>,
    removed_installations: HashSet<u64>,
    installation_tokens: HashMap<String, InstallationToken>,
    oauth_codes: HashMap<String, UserGrant>,
    used_oauth_codes: HashSet<String>,
    user_tokens: HashMap<String, UserGrant>,
    manifest_codes: HashSet<String>,
    check_runs: Vec<CheckRunState>,
    next_check_run_id: u64,
    requests: Vec<Recorded>,
    violations: Vec<String>,
}

struct Installation {
    account: String,
    account_id: u64,
    repos: Vec<TestRepo>,
}

struct InstallationToken {
    installation_id: u64,
    expires_at: SystemTime,
    /// `Some` when the token was restricted to these repository ids at creation.
    repo_ids: Option<Vec<u64>>,
}

#[derive(Clone)]
struct UserGrant {
    login: String,
    user_id: u64,
    installation_ids: Vec<u64>,
}

struct CheckRunState {
    repo: String,
    id: u64,
    bodies: Vec<Value>,
    /// The check run as GitHub would now show it: name, head_sha, status, conclusion, ...
    current: Map<String, Value>,
    annotations: u64,
}

impl MockGitHub {
    /// Loads the description (once per process; panics with "run scripts/test-data" when it is missing),
    /// makes the App key (once per process), binds 127.0.0.1:0 and spawns the server on its own thread.
    pub async fn start() -> MockGitHub {
        let _ = spec(API_VERSIONS[0]);
        let keys = app_keys();
        let key_dir = tempfile::Builder::new()
            .prefix("mock-github-")
            .tempdir()
            .expect("create mock GitHub key dir");
        std::fs::write(key_dir.path().join("app.pub.pem"), &keys.public_pem).expect("write App public key");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind mock GitHub to 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("set mock GitHub listener non-blocking");
        let addr = listener.local_addr().expect("mock GitHub local address");

        let app = TestApp {
            id: 100_000 + random_u64() % 900_000,
            slug: "cloudrunr-test".to_owned(),
            client_id: format!("Iv23li{}", random_alnum(14)),
            client_secret: random_hex(40),
            webhook_secret: random_hex(40),
            private_key_pem: keys.private_pem.clone(),
        };
        let inner = Arc::new(Inner {
            url: format!("http://{addr}"),
            app,
            key_dir,
            state: Mutex::new(MockState {
                next_check_run_id: 4_000_000_001 + random_u64() % 1_000_000,
                ..MockState::default()
            }),
        });

        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let server_inner = inner.clone();
        std::thread::Builder::new()
            .name(format!("mock-github-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("build mock GitHub runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("register mock GitHub listener");
                    let router = Router::new().fallback(handle).with_state(server_inner);
                    tokio::select! {
                        result = axum::serve(listener, router) => {
                            if let Err(err) = result {
                                eprintln!("mock GitHub on {addr} stopped: {err}");
                            }
                        }
                        // Resolves (with Err) when the MockGitHub is dropped.
                        _ = shutdown_rx => {}
                    }
                });
            })
            .expect("spawn mock GitHub thread");

        MockGitHub {
            inner,
            _shutdown: shutdown_tx,
        }
    }

    /// `http://127.0.0.1:PORT`: the REST API base URL and the github.com web base URL at once.
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The GitHub App the platform acts as.
    pub fn app(&self) -> TestApp {
        self.inner.app.clone()
    }

    /// Installs the App on `account_login` as installation `installation_id` (with no repos yet).
    pub fn add_installation(&self, installation_id: u64, account_login: &str) {
        let mut st = self.inner.state();
        st.removed_installations.remove(&installation_id);
        st.installations.insert(
            installation_id,
            Installation {
                account: account_login.to_owned(),
                account_id: stable_id(account_login),
                repos: Vec::new(),
            },
        );
    }

    /// Lets installation `installation_id` reach `repo` (replacing a repo with the same id).
    pub fn add_repo(&self, installation_id: u64, repo: TestRepo) {
        assert!(
            repo.full_name.split('/').filter(|s| !s.is_empty()).count() == 2,
            "TestRepo.full_name must be owner/name, got {:?}",
            repo.full_name
        );
        let mut st = self.inner.state();
        let installation = st
            .installations
            .get_mut(&installation_id)
            .unwrap_or_else(|| panic!("add_repo: no installation {installation_id}; call add_installation first"));
        installation.repos.retain(|r| r.id != repo.id);
        installation.repos.push(repo);
    }

    /// Uninstalls: the installation's tokens stop working (401), lookups of it answer 404. Neither counts
    /// as a violation: the platform learns of it only later.
    pub fn remove_installation(&self, installation_id: u64) {
        let mut st = self.inner.state();
        st.installations.remove(&installation_id);
        st.removed_installations.insert(installation_id);
    }

    /// An OAuth code the web flow may exchange once; the user token it yields belongs to `login` and sees
    /// these installations (those that still exist).
    pub fn authorize_user(&self, oauth_code: &str, login: &str, installation_ids: &[u64]) {
        let mut st = self.inner.state();
        st.used_oauth_codes.remove(oauth_code);
        st.oauth_codes.insert(
            oauth_code.to_owned(),
            UserGrant {
                login: login.to_owned(),
                user_id: stable_id(login),
                installation_ids: installation_ids.to_vec(),
            },
        );
    }

    /// A one-time code for `POST /app-manifests/{code}/conversions`, answered with [`MockGitHub::app`]'s
    /// credentials.
    pub fn expect_manifest_code(&self, code: &str) {
        self.inner.state().manifest_codes.insert(code.to_owned());
    }

    /// While down, every request gets 503 (not a violation).
    pub fn set_outage(&self, down: bool) {
        self.inner.state().outage = down;
    }

    /// Every request, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.state().requests.clone()
    }

    /// Per check run created: repo, id and every accepted create/update body, in creation order.
    pub fn check_runs(&self) -> Vec<CheckRun> {
        self.inner
            .state()
            .check_runs
            .iter()
            .map(|c| CheckRun {
                repo: c.repo.clone(),
                id: c.id,
                bodies: c.bodies.clone(),
            })
            .collect()
    }

    /// Requests the description (or the mock's rules) did not allow, as `METHOD /path?query: reason`.
    pub fn violations(&self) -> Vec<String> {
        self.inner.state().violations.clone()
    }

    /// Panics listing the violations, if any.
    pub fn assert_no_violations(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "the mock GitHub saw {} request(s) GitHub would not accept:\n  {}",
            violations.len(),
            violations.join("\n  ")
        );
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
