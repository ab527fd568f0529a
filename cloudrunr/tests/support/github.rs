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
//! reports operations the mock could not check or answer (the selftest keeps that list known).
//!
//! Note for octocrab users: octocrab 0.54's `update_check_run` also sends `check_run_id` in the body; the
//! description allows extra properties there and GitHub ignores it, so it is accepted and shows up in
//! [`MockGitHub::check_runs`] bodies.

// Each integration-test binary uses a different subset of this module.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;
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
    addr: SocketAddr,
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
            addr,
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

// ---------------------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------------------

/// What one request carries, plus what the checks found.
struct Ctx {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    operation_id: Option<String>,
    auth: Auth,
    violations: Vec<String>,
}

impl Ctx {
    fn violate(&mut self, reason: impl Into<String>) {
        self.violations.push(reason.into());
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An answer before it becomes a response.
struct Reply {
    status: u16,
    body: ReplyBody,
    headers: Vec<(String, String)>,
}

enum ReplyBody {
    Empty,
    Json(Value),
    Text(String, &'static str),
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: ReplyBody::Json(body),
            headers: Vec::new(),
        }
    }

    /// GitHub's error shape: `{"message", "documentation_url", "status"}`.
    fn error(status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            json!({ "message": message, "documentation_url": DOCS_URL, "status": status.to_string() }),
        )
    }

    /// 422 with `errors`, like GitHub's validation failures.
    fn invalid(message: &str, errors: Vec<Value>) -> Reply {
        Reply::json(
            422,
            json!({ "message": message, "errors": errors, "documentation_url": DOCS_URL, "status": "422" }),
        )
    }

    fn into_response(self, api_version: Option<&str>) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match self.body {
            ReplyBody::Empty => Response::new(Body::empty()),
            ReplyBody::Json(value) => {
                let mut r = Response::new(Body::from(serde_json::to_vec(&value).expect("serialize JSON answer")));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                r
            }
            ReplyBody::Text(text, content_type) => {
                let mut r = Response::new(Body::from(text));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                r
            }
        };
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if let Some(version) = api_version
            && let Ok(value) = HeaderValue::from_str(version)
        {
            headers.insert("x-github-api-version-selected", value);
        }
        headers.insert(
            "x-github-request-id",
            HeaderValue::from_str(&random_hex(16).to_uppercase()).expect("request id header"),
        );
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
        response
    }
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (body, body_error) = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(bytes) => (bytes.to_vec(), None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut cx = Ctx {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body,
        operation_id: None,
        auth: Auth::None,
        violations: Vec::new(),
    };
    let reply = match body_error {
        None => inner.process(&mut cx).await,
        Some(e) => {
            cx.violate(format!("could not read the request body: {e}"));
            Reply::error(400, "Problems parsing JSON")
        }
    };
    let api_version = if cx.path.starts_with("/login/") {
        None
    } else {
        Some(requested_api_version(&cx.headers).unwrap_or(API_VERSIONS[0]).to_owned())
    };
    {
        let mut st = inner.state();
        let target = if cx.query.is_empty() {
            cx.path.clone()
        } else {
            format!("{}?{}", cx.path, cx.query)
        };
        for v in &cx.violations {
            let line = format!("{} {target}: {v}", cx.method);
            eprintln!("mock GitHub: violation: {line}");
            st.violations.push(line);
        }
        st.requests.push(Recorded {
            method: cx.method.clone(),
            path: cx.path.clone(),
            operation_id: cx.operation_id.clone(),
            auth: cx.auth.clone(),
            body: body_for_record(&cx.headers, &cx.body),
            status: reply.status,
        });
    }
    reply.into_response(api_version.as_deref())
}

/// A sent `X-GitHub-Api-Version`, if it is one GitHub accepts.
fn requested_api_version(headers: &HeaderMap) -> Option<&'static str> {
    let sent = headers.get("x-github-api-version")?.to_str().ok()?.trim();
    API_VERSIONS.iter().copied().find(|v| *v == sent)
}

/// How a request body shows in [`Recorded::body`].
fn body_for_record(headers: &HeaderMap, body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return v;
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        let map: Map<String, Value> = parse_form(&text)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        return Value::Object(map);
    }
    Value::String(text)
}

/// The credential kind an operation needs.
enum Need {
    AppJwt,
    /// An installation token; with `true`, one that reaches `{owner}/{repo}`.
    Installation(bool),
    /// An installation token reaching `{owner}/{repo}`, or a user token whose installations reach it.
    RepoAccess,
    User,
    Basic,
    /// The operation needs no credential.
    Nothing,
    /// Whatever valid credential, or none.
    Any,
}

fn need_for(template: &str) -> Need {
    const APP_JWT: &[&str] = &[
        "/repos/{owner}/{repo}/installation",
        "/orgs/{org}/installation",
        "/users/{username}/installation",
    ];
    if template == "/app-manifests/{code}/conversions" {
        Need::Nothing
    } else if template == "/app" || template.starts_with("/app/") || APP_JWT.contains(&template) {
        Need::AppJwt
    } else if template.starts_with("/installation/") {
        Need::Installation(false)
    } else if template.starts_with("/repos/{owner}/{repo}/check-")
        || template.starts_with("/repos/{owner}/{repo}/commits/{ref}/check-")
    {
        Need::Installation(true)
    } else if template == "/repos/{owner}/{repo}" || template.starts_with("/repos/{owner}/{repo}/") {
        Need::RepoAccess
    } else if template == "/user" || template.starts_with("/user/") {
        Need::User
    } else if template.starts_with("/applications/{client_id}/") {
        Need::Basic
    } else {
        Need::Any
    }
}

/// A checked credential: the kind, and for invalid ones whether using it is the platform's fault.
struct Credential {
    auth: Auth,
    /// For `Auth::Invalid`: true when the platform could have known better (a violation).
    fault: bool,
    /// For installation tokens: the repository ids the token was restricted to.
    repo_ids: Option<Vec<u64>>,
    /// For user tokens: what the OAuth code granted.
    user: Option<UserGrant>,
    /// The bearer token itself (for revocation).
    token: Option<String>,
}

impl Inner {
    async fn process(&self, cx: &mut Ctx) -> Reply {
        let view = requested_api_version(&cx.headers).unwrap_or(API_VERSIONS[0]);
        let spec = spec(view);
        let segments = split_path(&cx.path);
        let matched = spec.find_route(&cx.method, &segments);
        if let Some((route, _)) = &matched {
            cx.operation_id = Some(route.operation_id.clone());
        }

        if self.state().outage {
            return Reply::error(503, "Service Unavailable");
        }
        if cx.method == "POST" && cx.path == "/login/oauth/access_token" {
            return self.oauth_access_token(cx);
        }
        if let Some(reply) = check_headers(cx) {
            return reply;
        }
        let Some((route, path_params)) = matched else {
            cx.violate("no operation of GitHub's REST API description matches this method and path");
            return Reply::error(404, "Not Found");
        };
        let op = spec.operation(route);

        // Credentials.
        let credential = self.authenticate(cx).await;
        cx.auth = credential.auth.clone();
        if let Auth::Invalid(reason) = &credential.auth {
            if credential.fault {
                cx.violate(format!("bad credentials: {reason}"));
            }
            return Reply::error(401, "Bad credentials");
        }

        // Parameters.
        let params = match check_parameters(spec, route, op, &path_params, &cx.query) {
            Ok(params) => params,
            Err((reply, problems)) => {
                for p in problems {
                    cx.violate(p);
                }
                return reply;
            }
        };

        // Credential kind and reach.
        if let Some(reply) = self.authorize(cx, route, &params, &credential) {
            return reply;
        }

        // Body.
        let body = match check_body(spec, route, op, &cx.body) {
            Ok(body) => body,
            Err((reply, problems)) => {
                for p in problems {
                    cx.violate(p);
                }
                return reply;
            }
        };

        // The answer.
        let (status, example) = match spec.success_example(op) {
            Ok(found) => found,
            Err(problem) => {
                cx.violate(format!(
                    "mock limitation, cannot answer {}: {problem}",
                    route.operation_id
                ));
                return Reply::error(500, &format!("mock GitHub cannot answer this: {problem}"));
            }
        };
        let example = example.map(|mut e| {
            rewrite_urls(&mut e, &self.url);
            e
        });
        let call = Call {
            operation_id: &route.operation_id,
            params: &params,
            body: &body,
            credential: &credential,
            status,
        };
        self.answer(cx, &call, example).unwrap_or_else(|reply| reply)
    }

    /// Classifies the `Authorization` header, verifying JWTs and looking tokens up.
    async fn authenticate(&self, cx: &Ctx) -> Credential {
        let ok = |auth| Credential {
            auth,
            fault: false,
            repo_ids: None,
            user: None,
            token: None,
        };
        let bad = |reason: &str| Credential {
            auth: Auth::Invalid(reason.to_owned()),
            fault: true,
            repo_ids: None,
            user: None,
            token: None,
        };
        let Some(value) = cx.headers.get(header::AUTHORIZATION) else {
            return ok(Auth::None);
        };
        let Ok(value) = value.to_str() else {
            return bad("Authorization header is not ASCII");
        };
        let (scheme, credential) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64_decode(credential, false).and_then(|b| String::from_utf8(b).ok());
            return match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((id, secret)) if id == self.app.client_id && secret == self.app.client_secret => ok(Auth::Basic),
                Some(_) => bad("Basic credentials are not the App's client id and secret"),
                None => bad("malformed Basic credentials"),
            };
        }
        if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("token") {
            return bad(&format!("unsupported Authorization scheme {scheme:?}"));
        }
        if credential.is_empty() {
            return bad("empty token");
        }
        if credential.matches('.').count() == 2 {
            return match self.verify_app_jwt(credential).await {
                Ok(()) => ok(Auth::AppJwt),
                Err(reason) => bad(&format!("App JWT rejected: {reason}")),
            };
        }
        let st = self.state();
        if let Some(token) = st.installation_tokens.get(credential) {
            if st.removed_installations.contains(&token.installation_id)
                && !st.installations.contains_key(&token.installation_id)
            {
                return Credential {
                    auth: Auth::Invalid(format!(
                        "token of installation {} which was removed",
                        token.installation_id
                    )),
                    fault: false,
                    repo_ids: None,
                    user: None,
                    token: None,
                };
            }
            if !st.installations.contains_key(&token.installation_id) {
                return bad(&format!("token of unknown installation {}", token.installation_id));
            }
            if SystemTime::now() >= token.expires_at {
                return bad("installation token expired");
            }
            return Credential {
                auth: Auth::Installation(token.installation_id),
                fault: false,
                repo_ids: token.repo_ids.clone(),
                user: None,
                token: Some(credential.to_owned()),
            };
        }
        if let Some(grant) = st.user_tokens.get(credential) {
            return Credential {
                auth: Auth::User(grant.login.clone()),
                fault: false,
                repo_ids: None,
                user: Some(grant.clone()),
                token: Some(credential.to_owned()),
            };
        }
        bad("unknown token (not one this mock issued)")
    }

    /// Checks an App JWT: RS256 signature by the App's key; `iss` the App id (or client id); `iat` not in
    /// the future (60 s skew); `exp` in the future and at most 10 minutes after `iat`.
    async fn verify_app_jwt(&self, jwt: &str) -> Result<(), String> {
        let mut parts = jwt.split('.');
        let (Some(h), Some(c), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("not three dot-separated parts".into());
        };
        let decode_json = |part: &str, what: &str| -> Result<Value, String> {
            let bytes = base64_decode(part, true).ok_or_else(|| format!("{what} is not unpadded base64url"))?;
            serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("{what} is not JSON: {e}"))
        };
        let head = decode_json(h, "header")?;
        if head.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(format!("header alg must be RS256, got {}", head["alg"]));
        }
        let claims = decode_json(c, "claims")?;
        let signature = base64_decode(s, true).ok_or("signature is not unpadded base64url")?;

        let verified = verified_jwts().lock().unwrap_or_else(|e| e.into_inner()).contains(jwt);
        if !verified {
            self.verify_signature(&format!("{h}.{c}"), &signature).await?;
            verified_jwts()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(jwt.to_owned());
        }

        let iss_ok = match &claims["iss"] {
            Value::String(s) => *s == self.app.id.to_string() || *s == self.app.client_id,
            Value::Number(n) => n.as_u64() == Some(self.app.id),
            _ => false,
        };
        if !iss_ok {
            return Err(format!(
                "iss {} is not the App id {} (or client id)",
                claims["iss"], self.app.id
            ));
        }
        let (Some(iat), Some(exp)) = (numeric_claim(&claims["iat"]), numeric_claim(&claims["exp"])) else {
            return Err("iat and exp must be numeric".into());
        };
        let now = unix_now();
        if exp <= now {
            return Err(format!("expired: exp {exp} is {} s in the past", now - exp));
        }
        if iat > now + JWT_SKEW_SECS {
            return Err(format!("iat {iat} is {} s in the future", iat - now));
        }
        if exp <= iat {
            return Err("exp is not after iat".into());
        }
        if exp - iat > JWT_MAX_LIFETIME_SECS {
            return Err(format!("exp is {} s after iat (at most 600)", exp - iat));
        }
        Ok(())
    }

    async fn verify_signature(&self, signing_input: &str, signature: &[u8]) -> Result<(), String> {
        let sig_path = self.key_dir.path().join(format!("sig-{}", random_hex(16)));
        tokio::fs::write(&sig_path, signature)
            .await
            .map_err(|e| format!("mock: write signature file: {e}"))?;
        let result = async {
            let mut child = tokio::process::Command::new("openssl")
                .arg("dgst")
                .arg("-sha256")
                .arg("-verify")
                .arg(self.key_dir.path().join("app.pub.pem"))
                .arg("-signature")
                .arg(&sig_path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("mock: run openssl: {e}"))?;
            let mut stdin = child.stdin.take().expect("openssl stdin");
            stdin
                .write_all(signing_input.as_bytes())
                .await
                .map_err(|e| format!("mock: write to openssl: {e}"))?;
            drop(stdin);
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| format!("mock: wait for openssl: {e}"))?;
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK") {
                Ok(())
            } else {
                Err("the signature is not the test App's (RS256 with its private key)".to_owned())
            }
        }
        .await;
        let _ = tokio::fs::remove_file(&sig_path).await;
        result
    }

    /// Checks the credential kind the operation needs and, for repo operations, that it reaches the repo.
    fn authorize(&self, cx: &mut Ctx, route: &Route, params: &Params, credential: &Credential) -> Option<Reply> {
        let auth = &credential.auth;
        let need = need_for(&route.template);
        let st = self.state();
        let repo = || format!("{}/{}", params.path("owner"), params.path("repo"));
        let reaches_installation = |id: u64| -> bool {
            let Some(installation) = st.installations.get(&id) else {
                return false;
            };
            let full_name = repo();
            installation.repos.iter().any(|r| {
                r.full_name.eq_ignore_ascii_case(&full_name)
                    && credential.repo_ids.as_ref().is_none_or(|ids| ids.contains(&r.id))
            })
        };
        let problem: Option<(u16, &str, String)> = match (need, auth) {
            (Need::Nothing | Need::Any, _) => None,
            (Need::AppJwt, Auth::AppJwt) => None,
            (Need::AppJwt, _) => Some((
                401,
                "A JSON web token could not be decoded",
                format!("{} needs an App JWT, got {auth:?}", route.operation_id),
            )),
            (Need::Installation(false), Auth::Installation(_)) => None,
            (Need::Installation(true) | Need::RepoAccess, Auth::Installation(id)) => {
                if reaches_installation(*id) {
                    None
                } else {
                    Some((
                        404,
                        "Not Found",
                        format!("installation {id}'s token does not reach repository {}", repo()),
                    ))
                }
            }
            (Need::RepoAccess, Auth::User(login)) => {
                let reaches = credential
                    .user
                    .as_ref()
                    .is_some_and(|g| g.installation_ids.iter().any(|id| reaches_installation(*id)));
                if reaches {
                    None
                } else {
                    Some((
                        404,
                        "Not Found",
                        format!("user {login} has no installation reaching repository {}", repo()),
                    ))
                }
            }
            (Need::Installation(_) | Need::RepoAccess, Auth::None) => Some((
                401,
                "Requires authentication",
                format!("{} needs an installation access token, got none", route.operation_id),
            )),
            (Need::Installation(_) | Need::RepoAccess, _) => Some((
                403,
                "Resource not accessible by integration",
                format!(
                    "{} needs an installation access token, got {auth:?}",
                    route.operation_id
                ),
            )),
            (Need::User, Auth::User(_)) => None,
            (Need::User, Auth::None) => Some((
                401,
                "Requires authentication",
                format!("{} needs a user access token, got none", route.operation_id),
            )),
            (Need::User, _) => Some((
                403,
                "Resource not accessible by integration",
                format!("{} needs a user access token, got {auth:?}", route.operation_id),
            )),
            (Need::Basic, Auth::Basic) => {
                if params.path("client_id") == self.app.client_id {
                    None
                } else {
                    Some((404, "Not Found", "client_id in the path is not the App's".to_owned()))
                }
            }
            (Need::Basic, _) => Some((
                401,
                "Requires authentication",
                format!(
                    "{} needs Basic client id:secret credentials, got {auth:?}",
                    route.operation_id
                ),
            )),
        };
        drop(st);
        problem.map(|(status, message, reason)| {
            cx.violate(reason);
            Reply::error(status, message)
        })
    }
}

/// `User-Agent`, `X-GitHub-Api-Version` and `Accept`.
fn check_headers(cx: &mut Ctx) -> Option<Reply> {
    if cx.header("user-agent").is_none_or(|ua| ua.trim().is_empty()) {
        cx.violate("no User-Agent header (GitHub rejects such requests)");
        return Some(Reply::error(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        ));
    }
    if let Some(version) = cx.headers.get("x-github-api-version") {
        let version = version.to_str().unwrap_or("<non-ASCII>").to_owned();
        if !API_VERSIONS.contains(&version.trim()) {
            cx.violate(format!(
                "X-GitHub-Api-Version {version:?} is not one GitHub accepts ({API_VERSIONS:?})"
            ));
            return Some(Reply::error(400, &format!("API version '{version}' is not supported.")));
        }
    }
    if let Some(accept) = cx.headers.get(header::ACCEPT) {
        let accept = accept.to_str().unwrap_or("").to_owned();
        if !accept_is_json(&accept) {
            cx.violate(format!("Accept {accept:?} is not JSON-compatible"));
            return Some(Reply::error(415, "Unsupported 'Accept' header"));
        }
    }
    None
}

fn accept_is_json(accept: &str) -> bool {
    accept.split(',').any(|item| {
        let media = item.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(media.as_str(), "*/*" | "application/*" | "application/json")
            || (media.starts_with("application/vnd.github") && media.ends_with("json"))
    })
}

/// The values of a request's parameters.
#[derive(Default)]
struct Params {
    path: HashMap<String, String>,
    query: Vec<(String, String)>,
}

impl Params {
    fn path(&self, name: &str) -> &str {
        self.path.get(name).map_or("", String::as_str)
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

type Rejection = (Reply, Vec<String>);

/// Path parameters non-empty and fitting their schema; query parameters declared, fitting, present when
/// required.
fn check_parameters(
    spec: &Spec,
    route: &Route,
    op: &Value,
    path_params: &[(String, String)],
    query: &str,
) -> Result<Params, Rejection> {
    let declared: Vec<&Value> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|p| spec.resolve(p)).collect())
        .unwrap_or_default();
    let params = Params {
        path: path_params.iter().cloned().collect(),
        query: parse_form(query),
    };

    let mut not_found = Vec::new();
    for (name, value) in path_params {
        if value.is_empty() {
            not_found.push(format!("path parameter {{{name}}} is empty"));
            continue;
        }
        let declaration = declared
            .iter()
            .find(|p| p["in"] == "path" && p["name"] == name.as_str());
        if let Some(p) = declaration
            && let Err(errors) = spec.check_value(
                &format!("{}:path:{name}", route.operation_id),
                &p["schema"],
                std::slice::from_ref(value),
            )
        {
            not_found.push(format!("path parameter {{{name}}} = {value:?}: {}", errors.join("; ")));
        }
    }
    if !not_found.is_empty() {
        return Err((Reply::error(404, "Not Found"), not_found));
    }

    let mut problems = Vec::new();
    let mut errors = Vec::new();
    let mut names: Vec<&str> = params.query.iter().map(|(k, _)| k.as_str()).collect();
    names.dedup();
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            continue;
        }
        let declaration = declared.iter().find(|p| p["in"] == "query" && p["name"] == name);
        let Some(p) = declaration else {
            problems.push(format!(
                "query parameter {name:?} is not declared by {}",
                route.operation_id
            ));
            errors.push(
                json!({ "resource": "Query", "field": name, "code": "invalid", "message": "unknown query parameter" }),
            );
            continue;
        };
        let values: Vec<String> = params
            .query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect();
        if let Err(e) = spec.check_value(&format!("{}:query:{name}", route.operation_id), &p["schema"], &values) {
            problems.push(format!("query parameter {name} = {values:?}: {}", e.join("; ")));
            errors.push(json!({ "resource": "Query", "field": name, "code": "invalid", "message": e.join("; ") }));
        }
    }
    for p in &declared {
        if p["in"] == "query" && p["required"] == true {
            let name = p["name"].as_str().unwrap_or_default();
            if params.query(name).is_none() {
                problems.push(format!("required query parameter {name:?} is missing"));
                errors.push(json!({ "resource": "Query", "field": name, "code": "missing_field" }));
            }
        }
    }
    if problems.is_empty() {
        Ok(params)
    } else {
        Err((Reply::invalid("Validation Failed", errors), problems))
    }
}

/// The request body: JSON validating against the operation's `requestBody` schema, or nothing where the
/// operation takes none. Answers `Null` for an empty body.
fn check_body(spec: &Spec, route: &Route, op: &Value, body: &[u8]) -> Result<Value, Rejection> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    let Some(request_body) = op.get("requestBody").map(|b| spec.resolve(b)) else {
        if empty {
            return Ok(Value::Null);
        }
        return Err((
            Reply::error(400, "This endpoint does not take a request body"),
            vec![format!(
                "{} takes no request body, but one was sent",
                route.operation_id
            )],
        ));
    };
    let Some(schema) = request_body.pointer("/content/application~1json/schema") else {
        // Not a JSON body (e.g. text/plain markdown, octet-stream uploads): accepted as is.
        return Ok(Value::Null);
    };
    if empty {
        if request_body["required"] == true {
            return Err((
                Reply::invalid("Invalid request.\n\nA request body is required.", Vec::new()),
                vec![format!(
                    "{} requires a JSON request body, none was sent",
                    route.operation_id
                )],
            ));
        }
        return Ok(Value::Null);
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err((
                Reply::error(400, "Problems parsing JSON"),
                vec![format!("the body is not JSON: {e}")],
            ));
        }
    };
    let key = format!("{}:body", route.operation_id);
    let validator = match spec.validator(&key, schema) {
        Ok(v) => v,
        Err(e) => {
            return Err((
                Reply::error(500, "mock GitHub could not compile the request schema"),
                vec![format!("mock limitation: the requestBody schema does not compile: {e}")],
            ));
        }
    };
    let mut problems = Vec::new();
    let mut errors = Vec::new();
    for error in validator.iter_errors(&value) {
        let at = error.instance_path().to_string();
        problems.push(format!("body {}: {error}", if at.is_empty() { "/" } else { &at }));
        errors.push(json!({ "resource": "Request", "field": at, "code": "invalid", "message": error.to_string() }));
    }
    if problems.is_empty() {
        Ok(value)
    } else {
        let message = format!(
            "Invalid request.\n\n{}",
            errors
                .iter()
                .map(|e| format!(
                    "For '{}', {}",
                    e["field"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Err((Reply::invalid(&message, errors), problems))
    }
}

// ---------------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------------

/// An operation call that passed the checks.
struct Call<'a> {
    operation_id: &'a str,
    params: &'a Params,
    body: &'a Value,
    credential: &'a Credential,
    /// The documented success status.
    status: u16,
}

impl Inner {
    /// The documented example (URLs already pointing at the mock; `None` for no-content answers) patched
    /// with the mock's state; `Err` carries an error answer (already a violation when it is the
    /// platform's fault).
    fn answer(&self, cx: &mut Ctx, call: &Call<'_>, example: Option<Value>) -> Result<Reply, Reply> {
        let status = call.status;
        let Some(mut example) = example else {
            if call.operation_id == "apps/revoke-installation-access-token"
                && let Some(token) = &call.credential.token
            {
                self.state().installation_tokens.remove(token);
            }
            if call.operation_id == "apps/delete-installation" {
                let id = self.installation_param(cx, call.params)?;
                let mut st = self.state();
                st.installations.remove(&id);
                st.removed_installations.insert(id);
            }
            return Ok(Reply {
                status,
                body: ReplyBody::Empty,
                headers: Vec::new(),
            });
        };
        let mut headers = Vec::new();
        match call.operation_id {
            "apps/get-authenticated" => self.patch_app(&mut example),
            "apps/create-from-manifest" => {
                let code = call.params.path("code").to_owned();
                if !self.state().manifest_codes.remove(&code) {
                    // Codes come from the browser redirect; a reload reuses one. Not the platform's fault.
                    return Err(Reply::error(404, "Not Found"));
                }
                self.patch_app(&mut example);
                let app = &self.app;
                put(&mut example, "client_secret", json!(app.client_secret));
                put(&mut example, "webhook_secret", json!(app.webhook_secret));
                put(&mut example, "pem", json!(app.private_key_pem));
            }
            "apps/list-installations" => {
                let template = first_item(&example)?;
                let st = self.state();
                let items: Vec<Value> = st
                    .installations
                    .iter()
                    .map(|(id, inst)| self.patched_installation(&template, *id, inst))
                    .collect();
                let (page, link) = paginate(items, call.params, &self.url, &cx.path);
                headers.extend(link);
                example = Value::Array(page);
            }
            "apps/get-installation" => {
                let id = self.installation_param(cx, call.params)?;
                let st = self.state();
                let inst = st.installations.get(&id).ok_or_else(|| self.not_found(cx, id, &st))?;
                example = self.patched_installation(&example, id, inst);
            }
            "apps/get-repo-installation" => {
                let full_name = format!("{}/{}", call.params.path("owner"), call.params.path("repo"));
                let st = self.state();
                let found = st
                    .installations
                    .iter()
                    .find(|(_, inst)| inst.repos.iter().any(|r| r.full_name.eq_ignore_ascii_case(&full_name)));
                // Asking whether the App is installed on a repo is legitimate; a 404 is an answer.
                let (id, inst) = found.ok_or_else(|| Reply::error(404, "Not Found"))?;
                example = self.patched_installation(&example, *id, inst);
            }
            "apps/create-installation-access-token" => {
                example = self.create_installation_token(cx, call.params, call.body, example)?;
            }
            "apps/list-repos-accessible-to-installation" => {
                let Auth::Installation(id) = call.credential.auth else {
                    return Err(Reply::error(403, "Resource not accessible by integration"));
                };
                let st = self.state();
                let repos: Vec<&TestRepo> = st.installations.get(&id).map_or(Vec::new(), |inst| {
                    inst.repos
                        .iter()
                        .filter(|r| call.credential.repo_ids.as_ref().is_none_or(|ids| ids.contains(&r.id)))
                        .collect()
                });
                let selection = if call.credential.repo_ids.is_some() {
                    "selected"
                } else {
                    "all"
                };
                let reply = self.repo_list(example, &repos, call.params, &cx.path, Some(selection))?;
                return Ok(Reply { status, ..reply });
            }
            "apps/list-installations-for-authenticated-user" => {
                let grant = self.user_grant(call.credential)?;
                let template = example
                    .get("installations")
                    .and_then(|i| i.get(0))
                    .cloned()
                    .ok_or_else(|| mock_bug("the example lists no installation"))?;
                let st = self.state();
                let items: Vec<Value> = grant
                    .installation_ids
                    .iter()
                    .filter_map(|id| st.installations.get(id).map(|inst| (id, inst)))
                    .map(|(id, inst)| self.patched_installation(&template, *id, inst))
                    .collect();
                let total = items.len();
                let (page, link) = paginate(items, call.params, &self.url, &cx.path);
                headers.extend(link);
                put(&mut example, "total_count", json!(total));
                put(&mut example, "installations", Value::Array(page));
            }
            "apps/list-installation-repos-for-authenticated-user" => {
                let grant = self.user_grant(call.credential)?;
                let id = self.installation_param(cx, call.params)?;
                let st = self.state();
                let inst = st
                    .installations
                    .get(&id)
                    .filter(|_| grant.installation_ids.contains(&id))
                    .ok_or_else(|| {
                        if st.removed_installations.contains(&id) {
                            Reply::error(404, "Not Found")
                        } else {
                            cx.violate(format!("user {} was not granted installation {id}", grant.login));
                            Reply::error(404, "Not Found")
                        }
                    })?;
                let repos: Vec<&TestRepo> = inst.repos.iter().collect();
                let reply = self.repo_list(example, &repos, call.params, &cx.path, None)?;
                return Ok(Reply { status, ..reply });
            }
            "users/get-authenticated" => {
                let grant = self.user_grant(call.credential)?;
                put(&mut example, "login", json!(grant.login));
                put(&mut example, "id", json!(grant.user_id));
                put(&mut example, "node_id", node_id("User", grant.user_id));
                put(&mut example, "html_url", json!(format!("{}/{}", self.url, grant.login)));
                put(
                    &mut example,
                    "url",
                    json!(format!("{}/users/{}", self.url, grant.login)),
                );
            }
            "repos/get" => {
                let full_name = format!("{}/{}", call.params.path("owner"), call.params.path("repo"));
                let st = self.state();
                let repo = st
                    .installations
                    .values()
                    .flat_map(|i| i.repos.iter())
                    .find(|r| r.full_name.eq_ignore_ascii_case(&full_name))
                    .cloned()
                    .ok_or_else(|| Reply::error(404, "Not Found"))?;
                drop(st);
                self.patch_repo(&mut example, &repo);
            }
            "checks/create" | "checks/update" | "checks/get" => {
                example = self.check_run(cx, call, example)?;
            }
            _ => {}
        }
        Ok(Reply {
            status,
            body: ReplyBody::Json(example),
            headers,
        })
    }

    fn not_found(&self, cx: &mut Ctx, id: u64, st: &MockState) -> Reply {
        if !st.removed_installations.contains(&id) {
            cx.violate(format!("installation {id} does not exist"));
        }
        Reply::error(404, "Not Found")
    }

    fn installation_param(&self, cx: &mut Ctx, params: &Params) -> Result<u64, Reply> {
        params.path("installation_id").parse::<u64>().map_err(|_| {
            cx.violate("installation_id is not a number");
            Reply::error(404, "Not Found")
        })
    }

    fn user_grant(&self, credential: &Credential) -> Result<UserGrant, Reply> {
        credential
            .user
            .clone()
            .ok_or_else(|| Reply::error(401, "Requires authentication"))
    }

    fn patch_app(&self, v: &mut Value) {
        let app = &self.app;
        put(v, "id", json!(app.id));
        put(v, "slug", json!(app.slug));
        put(v, "client_id", json!(app.client_id));
        put(v, "node_id", node_id("Integration", app.id));
        put(v, "name", json!(format!("CloudRunr test App {}", app.id)));
        put(v, "html_url", json!(format!("{}/apps/{}", self.url, app.slug)));
    }

    fn patched_installation(&self, template: &Value, id: u64, inst: &Installation) -> Value {
        let mut v = template.clone();
        put(&mut v, "id", json!(id));
        if let Some(account) = v.get_mut("account").filter(|a| a.is_object()) {
            put(account, "login", json!(inst.account));
            put(account, "id", json!(inst.account_id));
            put(account, "node_id", node_id("User", inst.account_id));
            put(account, "html_url", json!(format!("{}/{}", self.url, inst.account)));
            put(account, "url", json!(format!("{}/users/{}", self.url, inst.account)));
        }
        put(&mut v, "app_id", json!(self.app.id));
        put(&mut v, "app_slug", json!(self.app.slug));
        if v.get("client_id").is_some() {
            put(&mut v, "client_id", json!(self.app.client_id));
        }
        put(&mut v, "target_id", json!(inst.account_id));
        put(&mut v, "repository_selection", json!("selected"));
        put(
            &mut v,
            "access_tokens_url",
            json!(format!("{}/app/installations/{id}/access_tokens", self.url)),
        );
        put(
            &mut v,
            "repositories_url",
            json!(format!("{}/installation/repositories", self.url)),
        );
        put(
            &mut v,
            "html_url",
            json!(format!("{}/settings/installations/{id}", self.url)),
        );
        put(&mut v, "suspended_at", Value::Null);
        put(&mut v, "suspended_by", Value::Null);
        v
    }

    fn patch_repo(&self, v: &mut Value, repo: &TestRepo) {
        let html_url = format!("{}/{}", self.url, repo.full_name);
        put(v, "id", json!(repo.id));
        put(v, "node_id", node_id("Repository", repo.id));
        put(v, "name", json!(repo.name()));
        put(v, "full_name", json!(repo.full_name));
        put(v, "private", json!(repo.private));
        if v.get("visibility").is_some() {
            put(v, "visibility", json!(if repo.private { "private" } else { "public" }));
        }
        put(v, "html_url", json!(html_url));
        put(v, "url", json!(format!("{}/repos/{}", self.url, repo.full_name)));
        put(v, "clone_url", json!(repo.clone_url));
        put(v, "default_branch", json!(repo.default_branch));
        if v.get("svn_url").is_some() {
            put(v, "svn_url", json!(html_url));
        }
        if let Some(owner) = v.get_mut("owner").filter(|o| o.is_object()) {
            put(owner, "login", json!(repo.owner()));
            put(owner, "id", json!(stable_id(repo.owner())));
            put(owner, "node_id", node_id("User", stable_id(repo.owner())));
            put(owner, "html_url", json!(format!("{}/{}", self.url, repo.owner())));
            put(owner, "url", json!(format!("{}/users/{}", self.url, repo.owner())));
        }
    }

    /// `{total_count, repositories}` answers.
    fn repo_list(
        &self,
        mut example: Value,
        repos: &[&TestRepo],
        params: &Params,
        path: &str,
        selection: Option<&str>,
    ) -> Result<Reply, Reply> {
        let template = example
            .get("repositories")
            .and_then(|r| r.get(0))
            .cloned()
            .ok_or_else(|| mock_bug("the example lists no repository"))?;
        let items: Vec<Value> = repos
            .iter()
            .map(|repo| {
                let mut v = template.clone();
                self.patch_repo(&mut v, repo);
                v
            })
            .collect();
        let total = items.len();
        let (page, link) = paginate(items, params, &self.url, path);
        put(&mut example, "total_count", json!(total));
        put(&mut example, "repositories", Value::Array(page));
        if let Some(selection) = selection {
            put(&mut example, "repository_selection", json!(selection));
        }
        Ok(Reply {
            status: 200,
            body: ReplyBody::Json(example),
            headers: link.into_iter().collect(),
        })
    }

    fn create_installation_token(
        &self,
        cx: &mut Ctx,
        params: &Params,
        body: &Value,
        mut example: Value,
    ) -> Result<Value, Reply> {
        let id = self.installation_param(cx, params)?;
        let mut st = self.state();
        let Some(inst) = st.installations.get(&id) else {
            return Err(self.not_found(cx, id, &st));
        };
        // Optional restriction to some repos (by name or id); each must be reachable.
        let mut restricted: Option<Vec<&TestRepo>> = None;
        let mut unknown = Vec::new();
        if let Some(names) = body.get("repositories").and_then(Value::as_array) {
            for name in names.iter().filter_map(Value::as_str) {
                match inst.repos.iter().find(|r| r.name().eq_ignore_ascii_case(name)) {
                    Some(r) => restricted.get_or_insert_with(Vec::new).push(r),
                    None => unknown.push(name.to_owned()),
                }
            }
        }
        if let Some(ids) = body.get("repository_ids").and_then(Value::as_array) {
            for rid in ids.iter().filter_map(Value::as_u64) {
                match inst.repos.iter().find(|r| r.id == rid) {
                    Some(r) => restricted.get_or_insert_with(Vec::new).push(r),
                    None => unknown.push(rid.to_string()),
                }
            }
        }
        if !unknown.is_empty() {
            cx.violate(format!(
                "installation {id} cannot reach the requested repositories {unknown:?}"
            ));
            return Err(Reply::invalid(
                "There is at least one repository that does not exist or is not accessible to the parent installation.",
                vec![json!({ "resource": "Installation", "field": "repositories", "code": "invalid" })],
            ));
        }
        let token = loop {
            let candidate = format!("ghs_{}", random_alnum(36));
            if !st.installation_tokens.contains_key(&candidate) {
                break candidate;
            }
        };
        let expires_at = SystemTime::now() + TOKEN_LIFETIME;
        let repo_ids = restricted
            .as_ref()
            .map(|rs| rs.iter().map(|r| r.id).collect::<Vec<_>>());
        let repo_values: Option<Vec<Value>> = restricted.as_ref().map(|rs| {
            let template = example
                .get("repositories")
                .and_then(|r| r.get(0))
                .cloned()
                .unwrap_or_else(|| json!({}));
            rs.iter()
                .map(|repo| {
                    let mut v = template.clone();
                    self.patch_repo(&mut v, repo);
                    v
                })
                .collect()
        });
        st.installation_tokens.insert(
            token.clone(),
            InstallationToken {
                installation_id: id,
                expires_at,
                repo_ids,
            },
        );
        drop(st);
        put(&mut example, "token", json!(token));
        put(&mut example, "expires_at", json!(rfc3339(expires_at)));
        if let Some(permissions) = body.get("permissions").filter(|p| p.is_object()) {
            put(&mut example, "permissions", permissions.clone());
        }
        match repo_values {
            Some(values) => {
                put(&mut example, "repository_selection", json!("selected"));
                put(&mut example, "repositories", Value::Array(values));
            }
            None => {
                put(&mut example, "repository_selection", json!("all"));
                if let Some(map) = example.as_object_mut() {
                    map.remove("repositories");
                }
            }
        }
        Ok(example)
    }

    /// `checks/create`, `checks/update`, `checks/get`: keeps every check run's state and bodies.
    fn check_run(&self, cx: &mut Ctx, call: &Call<'_>, example: Value) -> Result<Value, Reply> {
        let owner = call.params.path("owner");
        let repo_name = call.params.path("repo");
        let full_name = format!("{owner}/{repo_name}");
        let mut st = self.state();
        let canonical = st
            .installations
            .values()
            .flat_map(|i| i.repos.iter())
            .find(|r| r.full_name.eq_ignore_ascii_case(&full_name))
            .map_or(full_name.clone(), |r| r.full_name.clone());

        if call.operation_id == "checks/create" {
            check_run_rules(cx, call.body, true)?;
            let id = st.next_check_run_id;
            st.next_check_run_id += 1;
            let mut run = CheckRunState {
                repo: canonical,
                id,
                bodies: Vec::new(),
                current: Map::new(),
                annotations: 0,
            };
            run.apply(call.body);
            let answer = self.check_run_json(example, &run);
            st.check_runs.push(run);
            return Ok(answer);
        }

        let id = call.params.path("check_run_id").parse::<u64>().unwrap_or(0);
        let Some(run) = st
            .check_runs
            .iter_mut()
            .find(|r| r.id == id && r.repo.eq_ignore_ascii_case(&full_name))
        else {
            cx.violate(format!("no check run {id} in repository {full_name}"));
            return Err(Reply::error(404, "Not Found"));
        };
        if call.operation_id == "checks/update" {
            check_run_rules(cx, call.body, false)?;
            run.apply(call.body);
        }
        Ok(self.check_run_json(example, run))
    }

    fn check_run_json(&self, mut v: Value, run: &CheckRunState) -> Value {
        let c = &run.current;
        let get = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
        let url = format!("{}/repos/{}/check-runs/{}", self.url, run.repo, run.id);
        put(&mut v, "id", json!(run.id));
        put(&mut v, "node_id", node_id("CheckRun", run.id));
        put(&mut v, "name", get("name"));
        put(&mut v, "head_sha", get("head_sha"));
        put(&mut v, "status", get("status"));
        put(&mut v, "conclusion", get("conclusion"));
        put(&mut v, "started_at", get("started_at"));
        put(&mut v, "completed_at", get("completed_at"));
        put(
            &mut v,
            "external_id",
            c.get("external_id").cloned().unwrap_or(json!("")),
        );
        put(
            &mut v,
            "details_url",
            c.get("details_url")
                .cloned()
                .unwrap_or_else(|| json!(format!("{}/apps/{}", self.url, self.app.slug))),
        );
        put(&mut v, "url", json!(url));
        put(
            &mut v,
            "html_url",
            json!(format!("{}/{}/runs/{}", self.url, run.repo, run.id)),
        );
        let output = c.get("output").cloned().unwrap_or_else(|| json!({}));
        put(
            &mut v,
            "output",
            json!({
                "title": output.get("title").cloned().unwrap_or(Value::Null),
                "summary": output.get("summary").cloned().unwrap_or(Value::Null),
                "text": output.get("text").cloned().unwrap_or(Value::Null),
                "annotations_count": run.annotations,
                "annotations_url": format!("{url}/annotations"),
            }),
        );
        let sha = c.get("head_sha").and_then(Value::as_str).unwrap_or("");
        put(
            &mut v,
            "check_suite",
            json!({ "id": stable_id(&format!("{}@{sha}", run.repo)) }),
        );
        put(&mut v, "pull_requests", json!([]));
        if let Some(app) = v.get_mut("app").filter(|a| a.is_object()) {
            self.patch_app(app);
        }
        v
    }

    /// `POST /login/oauth/access_token` (github.com, not in the REST description).
    fn oauth_access_token(&self, cx: &mut Ctx) -> Reply {
        let mut fields: HashMap<String, String> = parse_form(&cx.query).into_iter().collect();
        match body_for_record(&cx.headers, &cx.body) {
            Value::Object(map) => {
                for (k, v) in map {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    fields.insert(k, v);
                }
            }
            Value::Null => {}
            Value::String(raw) => {
                // Form-encoded without the content type.
                fields.extend(parse_form(&raw));
            }
            other => cx.violate(format!("OAuth token request body is not a form or object: {other}")),
        }
        let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
        let wants_json = cx.header("accept").is_some_and(|a| a.contains("application/json"));
        let respond = |pairs: Vec<(&str, String)>| -> Reply {
            if wants_json {
                let map: Map<String, Value> = pairs.into_iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
                Reply::json(200, Value::Object(map))
            } else {
                let text = pairs
                    .into_iter()
                    .map(|(k, v)| format!("{k}={}", percent_encode(&v)))
                    .collect::<Vec<_>>()
                    .join("&");
                Reply {
                    status: 200,
                    body: ReplyBody::Text(text, "application/x-www-form-urlencoded; charset=utf-8"),
                    headers: Vec::new(),
                }
            }
        };
        if field("client_id") != self.app.client_id || field("client_secret") != self.app.client_secret {
            cx.violate("OAuth code exchange with wrong client_id/client_secret");
            return respond(vec![
                ("error", "incorrect_client_credentials".into()),
                (
                    "error_description",
                    "The client_id and/or client_secret passed are incorrect.".into(),
                ),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials".into(),
                ),
            ]);
        }
        let code = field("code").to_owned();
        let mut st = self.state();
        let grant = if st.used_oauth_codes.contains(&code) {
            None
        } else {
            st.oauth_codes.remove(&code)
        };
        let Some(grant) = grant else {
            // Codes come from the browser; a reused or stale one is not the platform's fault.
            return respond(vec![
                ("error", "bad_verification_code".into()),
                ("error_description", "The code passed is incorrect or expired.".into()),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code".into(),
                ),
            ]);
        };
        st.used_oauth_codes.insert(code);
        let token = loop {
            let candidate = format!("ghu_{}", random_alnum(36));
            if !st.user_tokens.contains_key(&candidate) {
                break candidate;
            }
        };
        st.user_tokens.insert(token.clone(), grant);
        respond(vec![
            ("access_token", token),
            ("token_type", "bearer".into()),
            ("scope", String::new()),
        ])
    }
}

impl CheckRunState {
    /// Records an accepted body and folds it into the check run's state, as GitHub does.
    fn apply(&mut self, body: &Value) {
        self.bodies.push(body.clone());
        let Some(fields) = body.as_object() else {
            return;
        };
        for (k, v) in fields {
            if k == "actions" {
                continue;
            }
            if k == "output" {
                if let Some(annotations) = v.get("annotations").and_then(Value::as_array) {
                    self.annotations += annotations.len() as u64;
                }
                let mut out = v.clone();
                if let Some(o) = out.as_object_mut() {
                    o.remove("annotations");
                    o.remove("images");
                }
                self.current.insert(k.clone(), out);
                continue;
            }
            self.current.insert(k.clone(), v.clone());
        }
        let now = json!(rfc3339(SystemTime::now()));
        if fields.contains_key("conclusion") {
            self.current.insert("status".into(), json!("completed"));
        }
        if !self.current.contains_key("status") {
            self.current.insert("status".into(), json!("queued"));
        }
        if !self.current.contains_key("started_at") {
            self.current.insert("started_at".into(), now.clone());
        }
        if self.current["status"] == "completed" && !self.current.contains_key("completed_at") {
            self.current.insert("completed_at".into(), now);
        }
    }
}

/// What the check-run description states only in prose.
fn check_run_rules(cx: &mut Ctx, body: &Value, create: bool) -> Result<(), Reply> {
    let mut problems = Vec::new();
    if create {
        let sha = body.get("head_sha").and_then(Value::as_str).unwrap_or("");
        let hex = sha.bytes().all(|b| b.is_ascii_hexdigit());
        if !(hex && (sha.len() == 40 || sha.len() == 64)) {
            problems.push(("head_sha", format!("No commit found for SHA: {sha}")));
        }
    }
    let completing =
        body.get("status").and_then(Value::as_str) == Some("completed") || body.get("completed_at").is_some();
    if completing && body.get("conclusion").is_none() {
        problems.push((
            "conclusion",
            "conclusion is required with status completed or completed_at".to_owned(),
        ));
    }
    if body.get("conclusion").and_then(Value::as_str) == Some("stale") {
        problems.push(("conclusion", "Only GitHub can set the conclusion to stale".to_owned()));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let errors = problems
        .iter()
        .map(
            |(field, message)| json!({ "resource": "CheckRun", "field": field, "code": "invalid", "message": message }),
        )
        .collect();
    for (_, message) in &problems {
        cx.violate(format!("check run body: {message}"));
    }
    Err(Reply::invalid("Validation Failed", errors))
}

fn mock_bug(message: &str) -> Reply {
    eprintln!("mock GitHub: {message}");
    Reply::error(500, &format!("mock GitHub: {message}"))
}

fn first_item(example: &Value) -> Result<Value, Reply> {
    example
        .get(0)
        .cloned()
        .ok_or_else(|| mock_bug("the example list is empty"))
}

/// Sets `key` on an object (no-op on other values).
fn put(v: &mut Value, key: &str, value: Value) {
    if let Some(map) = v.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
}

/// `per_page` (default 30, at most 100) / `page` (from 1), with a GitHub-style `Link` header.
fn paginate(items: Vec<Value>, params: &Params, base: &str, path: &str) -> (Vec<Value>, Option<(String, String)>) {
    let per_page = params
        .query("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = params
        .query("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let link_to = |p: usize, rel: &str| format!("<{base}{path}?per_page={per_page}&page={p}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    let slice = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let link = (!links.is_empty()).then(|| ("link".to_owned(), links.join(", ")));
    (slice, link)
}

/// Points the description's `https://api.github.com` and `https://github.com` URLs at the mock.
fn rewrite_urls(v: &mut Value, base: &str) {
    match v {
        Value::String(s) => {
            for prefix in ["https://api.github.com", "https://github.com"] {
                if let Some(rest) = s.strip_prefix(prefix)
                    && (rest.is_empty() || rest.starts_with('/'))
                {
                    *s = format!("{base}{rest}");
                    break;
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_urls(i, base)),
        Value::Object(map) => map.values_mut().for_each(|i| rewrite_urls(i, base)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------------
// The description
// ---------------------------------------------------------------------------------------------------

/// The directory `scripts/test-data` installs into.
pub fn test_data_dir() -> PathBuf {
    match std::env::var_os("CLOUDRUNR_TEST_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").expect("HOME is not set (and CLOUDRUNR_TEST_DATA is not either)");
            Path::new(&home).join(".cache/cloudrunr/test-data")
        }
    }
}

/// Checks that the mock can serve every operation of the description (for each accepted API version):
/// every `requestBody` and parameter schema compiles as JSON Schema, every JSON success answer has an
/// example (operations answering only a redirect or a non-JSON body are skipped: the mock cannot serve
/// them). Answers the problems found, so the selftest notices a description the mock does not cope with.
pub fn check_description() -> Vec<String> {
    let mut problems = Vec::new();
    for version in API_VERSIONS {
        let spec = spec(version);
        for routes in spec.routes.values() {
            for route in routes {
                let op = spec.operation(route);
                let at = format!("{version} {} {} ({})", route.method, route.template, route.operation_id);
                if let Some(schema) = op
                    .get("requestBody")
                    .map(|b| spec.resolve(b))
                    .and_then(|b| b.pointer("/content/application~1json/schema"))
                    && let Err(e) = compile_schema(&spec.doc, schema)
                {
                    problems.push(format!("{at}: requestBody schema: {e}"));
                }
                for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
                    let p = spec.resolve(p);
                    if let Err(e) = compile_schema(&spec.doc, &p["schema"]) {
                        problems.push(format!("{at}: parameter {}: {e}", p["name"]));
                    }
                }
                // Downloads answer only a redirect (302) or a non-JSON body; the mock does not serve those.
                let redirect_only = op["responses"].as_object().is_some_and(|r| {
                    r.keys().all(|code| !code.starts_with('2')) && r.keys().any(|c| c.starts_with('3'))
                });
                if let Err(e) = spec.success_example(op)
                    && !e.contains("is not JSON")
                    && !redirect_only
                {
                    problems.push(format!("{at}: {e}"));
                }
            }
        }
    }
    problems.sort();
    problems
}

/// GitHub's REST API description, as one API version sees it, with its routes and compiled validators.
struct Spec {
    doc: Value,
    /// Per upper-case method.
    routes: HashMap<String, Vec<Route>>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

struct Route {
    template: String,
    method: String,
    operation_id: String,
    segments: Vec<Vec<Part>>,
}

/// Path parameter names and values, in template order.
type PathParams = Vec<(String, String)>;

#[derive(Debug)]
enum Part {
    Lit(String),
    Param(String),
}

/// The description for an API version: parsed once per process; `2026-03-10` is the same with that
/// version's `x-github-breaking-changes` applied.
fn spec(version: &str) -> &'static Spec {
    static BASE: OnceLock<Spec> = OnceLock::new();
    static V2026: OnceLock<Spec> = OnceLock::new();
    let base = BASE.get_or_init(|| Spec::new(load_description()));
    if version == API_VERSIONS[0] {
        return base;
    }
    V2026.get_or_init(|| {
        let mut doc = base.doc.clone();
        apply_breaking_changes(&mut doc, API_VERSIONS[1]);
        Spec::new(doc)
    })
}

fn load_description() -> Value {
    let path = test_data_dir().join(SPEC_FILE);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "GitHub's OpenAPI description is missing at {} ({e}): run scripts/test-data",
            path.display()
        )
    });
    let doc: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): run scripts/test-data", path.display()));
    let version = doc.pointer("/info/version").and_then(Value::as_str).unwrap_or("?");
    assert!(
        version == SPEC_VERSION,
        "{} is @octokit/openapi {version}, the mock expects {SPEC_VERSION}: run scripts/test-data",
        path.display()
    );
    doc
}

impl Spec {
    fn new(doc: Value) -> Spec {
        let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
        let paths = doc["paths"].as_object().expect("description has paths");
        for (template, item) in paths {
            let Some(item) = item.as_object() else { continue };
            for (method, op) in item {
                if !["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                    continue;
                }
                let operation_id = op["operationId"].as_str().unwrap_or(template).to_owned();
                let segments = template.split('/').skip(1).map(parse_segment_template).collect();
                routes.entry(method.to_uppercase()).or_default().push(Route {
                    template: template.clone(),
                    method: method.clone(),
                    operation_id,
                    segments,
                });
            }
        }
        Spec {
            doc,
            routes,
            validators: Mutex::new(HashMap::new()),
        }
    }

    fn operation(&self, route: &Route) -> &Value {
        &self.doc["paths"][&route.template][&route.method]
    }

    /// The route for a method and (percent-decoded) path segments, and the path parameters' values.
    /// Literal segments win over parameters; a trailing file-path or git-ref parameter may span several
    /// segments when nothing else matches (`contents/{path}`, `git/ref/{ref}`), as GitHub allows.
    fn find_route(&self, method: &str, segments: &[String]) -> Option<(&Route, PathParams)> {
        let routes = self.routes.get(method)?;
        let mut best: Option<(Vec<u8>, &Route, PathParams)> = None;
        for route in routes.iter().filter(|r| r.segments.len() == segments.len()) {
            let mut score = Vec::with_capacity(segments.len());
            let mut params = Vec::new();
            let matched = route
                .segments
                .iter()
                .zip(segments)
                .all(|(parts, seg)| match_segment(parts, seg, &mut params).map(|s| score.push(s)).is_some());
            if matched && best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                best = Some((score, route, params));
            }
        }
        if best.is_none() {
            for route in routes.iter().filter(|r| r.segments.len() < segments.len()) {
                let Some((Part::Param(last), [])) = route.segments.last().and_then(|p| p.split_first()) else {
                    continue;
                };
                if !MULTI_SEGMENT_PARAMS.contains(&last.as_str()) {
                    continue;
                }
                let n = route.segments.len() - 1;
                let mut score = Vec::new();
                let mut params = Vec::new();
                let matched = route.segments[..n]
                    .iter()
                    .zip(segments)
                    .all(|(parts, seg)| match_segment(parts, seg, &mut params).map(|s| score.push(s)).is_some());
                if matched && best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                    params.push((last.clone(), segments[n..].join("/")));
                    best = Some((score, route, params));
                }
            }
        }
        best.map(|(_, route, params)| (route, params))
    }

    /// Follows `$ref`s (`#/components/...`).
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
                    Some(target) => v = target,
                    None => return v,
                },
                None => return v,
            }
        }
        v
    }

    /// The documented success status and its example (`None` when the answer has no content).
    fn success_example(&self, op: &Value) -> Result<(u16, Option<Value>), String> {
        let responses = op["responses"].as_object().ok_or("the operation has no responses")?;
        let (status, response) = responses
            .iter()
            .filter_map(|(code, r)| code.parse::<u16>().ok().map(|c| (c, r)))
            .filter(|(c, _)| (200..300).contains(c))
            .min_by_key(|(c, _)| *c)
            .ok_or("no 2xx response is documented")?;
        let response = self.resolve(response);
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return Ok((status, None));
        };
        let Some(json) = content.get("application/json") else {
            return Err(format!(
                "the {status} response is not JSON ({:?})",
                content.keys().collect::<Vec<_>>()
            ));
        };
        let examples = json.get("examples").and_then(Value::as_object);
        let example = examples.and_then(|e| e.get("default").or_else(|| e.values().next()));
        match example.map(|e| self.resolve(e)).and_then(|e| e.get("value")) {
            Some(value) => Ok((status, Some(value.clone()))),
            None => Err(format!("the {status} response has a schema but no example")),
        }
    }

    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.validators.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(v.clone());
        }
        let compiled = Arc::new(compile_schema(&self.doc, schema)?);
        self.validators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), compiled.clone());
        Ok(compiled)
    }

    /// Validates a parameter's string value(s) against its schema, coerced to the schema's type.
    fn check_value(&self, key: &str, schema: &Value, values: &[String]) -> Result<(), Vec<String>> {
        let resolved = self.resolve(schema);
        let coerce = |schema: &Value, s: &str| -> Value {
            let schema = self.resolve(schema);
            match schema["type"].as_str() {
                Some("integer") => s.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(s)),
                Some("number") => s.parse::<f64>().map(Value::from).unwrap_or_else(|_| json!(s)),
                Some("boolean") => match s {
                    "true" => json!(true),
                    "false" => json!(false),
                    _ => json!(s),
                },
                _ => json!(s),
            }
        };
        let instance = if resolved["type"] == "array" {
            Value::Array(
                values
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(|v| coerce(&resolved["items"], v))
                    .collect(),
            )
        } else {
            if values.len() > 1 {
                return Err(vec![format!("given {} times", values.len())]);
            }
            coerce(resolved, values.first().map_or("", String::as_str))
        };
        let validator = self.validator(key, schema).map_err(|e| vec![format!("mock: {e}")])?;
        let errors: Vec<String> = validator.iter_errors(&instance).map(|e| e.to_string()).collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

fn parse_segment_template(segment: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = segment;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        parts.push(Part::Param(rest[open + 1..close].to_owned()));
        rest = rest.get(close + 1..).unwrap_or("");
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(Part::Lit(rest.to_owned()));
    }
    parts
}

/// Matches one path segment; the score ranks literal (2) over mixed (1) over parameter (0) segments.
fn match_segment(parts: &[Part], segment: &str, params: &mut Vec<(String, String)>) -> Option<u8> {
    match parts {
        [Part::Lit(l)] => (l == segment).then_some(2),
        [Part::Param(p)] => {
            params.push((p.clone(), segment.to_owned()));
            Some(0)
        }
        _ => {
            let mut rest = segment;
            let mut found = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                match part {
                    Part::Lit(l) => rest = rest.strip_prefix(l.as_str())?,
                    Part::Param(p) => {
                        let end = match parts.get(i + 1) {
                            Some(Part::Lit(next)) => rest.find(next.as_str())?,
                            _ => rest.len(),
                        };
                        found.push((p.clone(), rest[..end].to_owned()));
                        rest = &rest[end..];
                    }
                }
            }
            if !rest.is_empty() {
                return None;
            }
            params.extend(found);
            Some(1)
        }
    }
}

fn split_path(path: &str) -> Vec<String> {
    path.strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect()
}

/// Compiles an OpenAPI 3.0 schema (with `$ref`s into `#/components/schemas`) as JSON Schema draft 4.
fn compile_schema(doc: &Value, schema: &Value) -> Result<jsonschema::Validator, String> {
    let root = translate_schema(schema);
    let mut components = Map::new();
    let mut pending = Vec::new();
    collect_refs(&root, &mut pending);
    while let Some(reference) = pending.pop() {
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| format!("external $ref {reference}"))?;
        let mut tokens = pointer.split('/').skip(1);
        let (Some("components"), Some("schemas"), Some(name)) = (tokens.next(), tokens.next(), tokens.next()) else {
            return Err(format!("$ref outside #/components/schemas: {reference}"));
        };
        let name = name.replace("~1", "/").replace("~0", "~");
        if components.contains_key(&name) {
            continue;
        }
        let target = doc["components"]["schemas"]
            .get(&name)
            .ok_or_else(|| format!("dangling $ref {reference}"))?;
        let translated = translate_schema(target);
        collect_refs(&translated, &mut pending);
        components.insert(name, translated);
    }
    let document = json!({ "allOf": [root], "components": { "schemas": components } });
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&document)
        .map_err(|e| e.to_string())
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// OpenAPI 3.0 schema → JSON Schema draft 4: `nullable` becomes a `null` type (or an `anyOf` with one);
/// annotations and OpenAPI-only keywords (`example`, `x-*`, `discriminator`, `readOnly`, ...) go; `$ref`
/// siblings go (OpenAPI ignores them too); empty `required`/`enum` lists (invalid in draft 4) go.
fn translate_schema(v: &Value) -> Value {
    let Value::Object(map) = v else {
        return v.clone();
    };
    if let Some(r) = map.get("$ref") {
        return json!({ "$ref": r });
    }
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "example" | "examples" | "discriminator" | "readOnly" | "writeOnly" | "xml" | "externalDocs"
            | "deprecated" | "nullable" | "description" | "title" => {}
            k if k.starts_with("x-") => {}
            "properties" | "patternProperties" | "definitions" => {
                let translated: Map<String, Value> = value
                    .as_object()
                    .map(|m| m.iter().map(|(k, s)| (k.clone(), translate_schema(s))).collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(translated));
            }
            "items" | "additionalProperties" | "not" => {
                out.insert(key.clone(), translate_schema(value));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let translated = value
                    .as_array()
                    .map(|a| a.iter().map(translate_schema).collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(translated));
            }
            "required" | "enum" if value.as_array().is_some_and(Vec::is_empty) => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if map.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::Array(values)) = out.get_mut("enum")
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
        match out.get_mut("type") {
            Some(Value::String(t)) => {
                let t = std::mem::take(t);
                out.insert("type".into(), json!([t, "null"]));
            }
            Some(_) => {}
            None => return json!({ "anyOf": [Value::Object(out), { "type": "null" }] }),
        }
    }
    Value::Object(out)
}

/// Applies the description's `x-github-breaking-changes` for API versions up to `version` to operations
/// and components (JSON merge patches, or JSON Patch op lists).
fn apply_breaking_changes(doc: &mut Value, version: &str) {
    let mut targets: Vec<&mut Value> = Vec::new();
    let Value::Object(root) = doc else { return };
    for (key, section) in root.iter_mut() {
        match key.as_str() {
            "paths" => {
                for item in section.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                    targets.extend(item.as_object_mut().into_iter().flat_map(|m| m.values_mut()));
                }
            }
            "components" => {
                for group in section.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                    targets.extend(group.as_object_mut().into_iter().flat_map(|m| m.values_mut()));
                }
            }
            _ => {}
        }
    }
    for target in targets {
        let Some(changes) = target
            .get("x-github-breaking-changes")
            .and_then(Value::as_array)
            .cloned()
        else {
            continue;
        };
        for change in changes {
            if change["version"].as_str().is_none_or(|v| v > version) {
                continue;
            }
            match &change["patch"] {
                Value::Array(ops) => json_patch(target, ops),
                patch @ Value::Object(_) => merge_patch(target, patch),
                _ => {}
            }
        }
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("object");
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn json_patch(target: &mut Value, ops: &[Value]) {
    for op in ops {
        let (Some(kind), Some(path)) = (op["op"].as_str(), op["path"].as_str()) else {
            continue;
        };
        let Some((parent, last)) = path.rsplit_once('/') else {
            continue;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        let Some(parent) = target.pointer_mut(parent) else {
            continue;
        };
        match (kind, parent) {
            ("remove", Value::Object(m)) => {
                m.remove(&last);
            }
            ("remove", Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < a.len()
                {
                    a.remove(i);
                }
            }
            ("add" | "replace", Value::Object(m)) => {
                m.insert(last, op["value"].clone());
            }
            ("add" | "replace", Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>() {
                    if kind == "replace" && i < a.len() {
                        a[i] = op["value"].clone();
                    } else if i <= a.len() {
                        a.insert(i, op["value"].clone());
                    }
                } else if last == "-" {
                    a.push(op["value"].clone());
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Keys, JWTs and small encodings
// ---------------------------------------------------------------------------------------------------

struct AppKeys {
    private_pem: String,
    public_pem: String,
}

/// The test App's RSA key: made with the `openssl` CLI once per process.
fn app_keys() -> &'static AppKeys {
    static KEYS: OnceLock<AppKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let private_pem = run_openssl(&["genrsa", "-traditional", "2048"], b"");
        let public_pem = run_openssl(&["rsa", "-pubout"], private_pem.as_bytes());
        AppKeys {
            private_pem,
            public_pem,
        }
    })
}

fn run_openssl(args: &[&str], stdin: &[u8]) -> String {
    let out = run_openssl_bytes(args, stdin);
    String::from_utf8(out).expect("openssl output is UTF-8")
}

fn run_openssl_bytes(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the GitHub mock needs the openssl CLI: {e}"));
    child
        .stdin
        .take()
        .expect("openssl stdin")
        .write_all(stdin)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("wait for openssl");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Signs `header.claims` with RS256 (`openssl dgst -sha256 -sign`).
fn sign_rs256(private_pem: &str, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(claims.to_string().as_bytes())
    );
    let dir = tempfile::Builder::new()
        .prefix("mock-github-sign-")
        .tempdir()
        .expect("temp dir for signing");
    let key = dir.path().join("key.pem");
    std::fs::File::create(&key)
        .and_then(|mut f| f.write_all(private_pem.as_bytes()))
        .expect("write signing key");
    let key = key.to_str().expect("temp path is UTF-8");
    let signature = run_openssl_bytes(&["dgst", "-sha256", "-sign", key], signing_input.as_bytes());
    format!("{signing_input}.{}", base64url_encode(&signature))
}

/// JWTs whose signature `openssl` already accepted (the key is one per process).
fn verified_jwts() -> &'static Mutex<HashSet<String>> {
    static VERIFIED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    VERIFIED.get_or_init(|| Mutex::new(HashSet::new()))
}

fn numeric_claim(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// `YYYY-MM-DDTHH:MM:SSZ`
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

fn random_from(alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[(random_u64() % alphabet.len() as u64) as usize] as char)
        .collect()
}

fn random_alnum(len: usize) -> String {
    random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", len)
}

fn random_hex(len: usize) -> String {
    random_from(b"0123456789abcdef", len)
}

/// A stable numeric id for a name (account and user ids).
fn stable_id(name: &str) -> u64 {
    // FNV-1a, folded into a plausible GitHub id range.
    let hash = name
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    1_000_000 + hash % 9_000_000
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Unpadded base64url, as JWTs use.
fn base64url_encode(bytes: &[u8]) -> String {
    base64_encode(bytes, true)
}

/// Base64: `url` selects the URL-safe alphabet without padding, else the standard one with padding.
fn base64_encode(bytes: &[u8], url: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let c = B64[(n >> (18 - 6 * i) & 63) as usize];
            out.push(match c {
                b'+' if url => '-',
                b'/' if url => '_',
                c => c as char,
            });
        }
        if !url {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}

/// GitHub's legacy global node id, e.g. `MDg6Q2hlY2tSdW40` for check run 4: base64 of `08:CheckRun4`.
fn node_id(kind: &str, id: u64) -> Value {
    json!(base64_encode(format!("0{}:{kind}{id}", kind.len()).as_bytes(), false))
}

/// Decodes base64 (`url`: the URL-safe alphabet, unpadded, as JWTs use; else standard, padding allowed).
fn base64_decode(s: &str, url: bool) -> Option<Vec<u8>> {
    let s = if url { s } else { s.trim_end_matches('=') };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' if url => 62,
            b'_' if url => 63,
            b'+' if !url => 62,
            b'/' if !url => 63,
            _ => return None,
        };
        buf = buf << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `application/x-www-form-urlencoded` pairs (also query strings).
fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}
