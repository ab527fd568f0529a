//! Test support: bare git repositories served over HTTP on loopback by the real `git http-backend`.
//!
//! [`GitServer`] is a tiny CGI host (axum fallback handler + `tokio::process`) that runs
//! `git http-backend` once per request against a temp directory of bare repositories. [`Repo`] is a
//! work tree whose `origin` is one of those bare repositories; every [`Repo::commit`] is pushed right away.
//!
//! The server runs on its own thread with its own tokio runtime, so it keeps answering even while the
//! test thread blocks (e.g. on a synchronous `git clone`) inside a current-thread `#[tokio::test]`.
//! Pushes from [`Repo`] go to the bare repository's filesystem path, not over HTTP, so they never show up
//! in [`GitServer::request_count`] and never need the server's runtime.
//!
//! Every git command run here is isolated from the machine's git configuration (`GIT_CONFIG_NOSYSTEM=1`,
//! `HOME`/`XDG_CONFIG_HOME` pointing into a temp dir, a cleared environment) and uses a fixed identity,
//! so it works on machines without a global git identity.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// `-c` options given to every git invocation that creates commits or repositories.
const GIT_CONFIG_ARGS: &[&str] = &[
    "-c",
    "user.name=Test",
    "-c",
    "user.email=test@example.com",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
    "-c",
    "core.autocrlf=false",
    "-c",
    "core.symlinks=true",
    "-c",
    "core.fileMode=true",
];

/// Serves bare repositories under a temp dir over HTTP with `git http-backend` on 127.0.0.1:<random port>.
pub struct GitServer {
    addr: SocketAddr,
    /// Directory holding the bare repositories (`GIT_PROJECT_ROOT`); shared with every [`Repo`].
    root: Arc<TempDir>,
    /// Fake `$HOME` for every git process, so the machine's global config is never read.
    home: Arc<TempDir>,
    requests: Arc<AtomicUsize>,
    /// Repositories that need a password (HTTP basic auth), with the check for it.
    private: Private,
    /// Dropping this stops the server thread.
    _shutdown: oneshot::Sender<()>,
}

/// The password check of a private repository.
type PasswordCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;
type Private = Arc<std::sync::Mutex<std::collections::HashMap<String, PasswordCheck>>>;

#[derive(Clone)]
struct CgiState {
    root: PathBuf,
    home: PathBuf,
    requests: Arc<AtomicUsize>,
    private: Private,
}

impl GitServer {
    /// Binds 127.0.0.1:0 and spawns the server (on a dedicated thread with its own runtime).
    pub async fn start() -> GitServer {
        let root = Arc::new(
            tempfile::Builder::new()
                .prefix("git-server-root-")
                .tempdir()
                .expect("create git root dir"),
        );
        let home = Arc::new(
            tempfile::Builder::new()
                .prefix("git-server-home-")
                .tempdir()
                .expect("create git home dir"),
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let private = Private::default();

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind git server to 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("set git server listener non-blocking");
        let addr = listener.local_addr().expect("git server local address");

        let state = CgiState {
            root: root.path().to_path_buf(),
            home: home.path().to_path_buf(),
            requests: requests.clone(),
            private: private.clone(),
        };
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("git-server-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("build git server runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("register git server listener");
                    let app = Router::new().fallback(handle_cgi).with_state(state);
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(err) = result {
                                eprintln!("git server on {addr} stopped: {err}");
                            }
                        }
                        // Resolves (with Err) when the GitServer is dropped.
                        _ = shutdown_rx => {}
                    }
                });
                // Dropping the runtime here cancels in-flight connections.
            })
            .expect("spawn git server thread");

        GitServer {
            addr,
            root,
            home,
            requests,
            private,
            _shutdown: shutdown_tx,
        }
    }

    /// `http://127.0.0.1:PORT/<name>.git`
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    /// Makes `<name>.git` private: every request needs HTTP basic auth whose password passes
    /// `check` (as GitHub wants an installation token, with any user name).
    pub fn require_password(&self, name: &str, check: impl Fn(&str) -> bool + Send + Sync + 'static) {
        self.private
            .lock()
            .expect("private repos lock")
            .insert(format!("{name}.git"), Arc::new(check));
    }

    /// How many HTTP requests the server has answered.
    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Creates bare repo `<name>.git` whose branch `main` holds a copy of the files in `fixture_dir`
    /// (recursively, preserving the executable bit and symlinks), committed as one commit, and returns a
    /// work tree on `main` whose `origin` is that bare repo.
    pub fn create_repo(&self, name: &str, fixture_dir: &Path) -> Repo {
        let bare = self.root.path().join(format!("{name}.git"));
        assert!(!bare.exists(), "git repo {name:?} already exists at {}", bare.display());
        std::fs::create_dir_all(&bare).unwrap_or_else(|e| panic!("create {}: {e}", bare.display()));
        run_git(
            self.home.path(),
            &bare,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        );

        let work = tempfile::Builder::new()
            .prefix(&format!("git-work-{}-", sanitize(name)))
            .tempdir()
            .expect("create work tree dir");
        let repo = Repo {
            work,
            bare,
            home: self.home.clone(),
            _root: self.root.clone(),
        };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        let bare_path = repo.bare.to_str().expect("bare repo path is not UTF-8").to_owned();
        repo.git(&["remote", "add", "origin", &bare_path]);

        copy_tree(fixture_dir, repo.path());
        repo.commit(&format!("Initial commit of {name}"));
        repo
    }
}

/// A work tree whose `origin` is the bare repo; every commit is pushed right away.
pub struct Repo {
    work: TempDir,
    bare: PathBuf,
    home: Arc<TempDir>,
    /// Keeps the server's repository root (and so the bare repo) alive as long as this handle.
    _root: Arc<TempDir>,
}

impl Repo {
    /// The work tree's directory.
    pub fn path(&self) -> &Path {
        self.work.path()
    }

    /// Writes a file (relative to the work tree root), creating parent directories.
    pub fn write(&self, rel_path: &str, contents: impl AsRef<[u8]>) {
        let path = self.path().join(rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        // Don't write through a symlink that is being replaced by a file.
        if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&path).unwrap_or_else(|e| panic!("remove symlink {}: {e}", path.display()));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Commits everything in the work tree on the current branch (even if nothing changed), pushes that
    /// branch to `origin`, and returns the new commit's full sha.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "--no-verify", "-m", message]);
        self.git(&["push", "--quiet", "origin", "HEAD"]);
        self.head()
    }

    /// Creates `branch` at the current HEAD and switches to it; later commits go (and are pushed) to it.
    /// The branch reaches `origin` with the next [`Repo::commit`].
    pub fn checkout_new_branch(&self, branch: &str) {
        self.git(&["checkout", "--quiet", "-b", branch]);
    }

    /// Full sha of HEAD.
    pub fn head(&self) -> String {
        let out = self.git(&["rev-parse", "--verify", "HEAD"]);
        String::from_utf8(out.stdout)
            .expect("git rev-parse output is UTF-8")
            .trim()
            .to_owned()
    }

    fn git(&self, args: &[&str]) -> Output {
        run_git(self.home.path(), self.path(), args)
    }
}

/// Runs git in `dir` with the isolated environment; panics with git's stderr on failure.
fn run_git(home: &Path, dir: &Path, args: &[&str]) -> Output {
    let output = Command::new("git")
        .args(GIT_CONFIG_ARGS)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(isolated_git_env(home))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to run `git {}`: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "`git {}` in {} failed ({}):\nstderr: {}\nstdout: {}",
        args.join(" "),
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout),
    );
    output
}

/// Environment for git processes: nothing from the machine's git config or the caller's `GIT_*` vars.
fn isolated_git_env(home: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
    let mut env = vec![
        ("HOME", home.as_os_str().to_owned()),
        ("XDG_CONFIG_HOME", home.join(".config").into_os_string()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("GIT_TERMINAL_PROMPT", "0".into()),
        ("LC_ALL", "C".into()),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        env.push(("PATH", path));
    }
    env
}

/// Copies `src` into `dst` recursively; `fs::copy` keeps permission bits (so the executable bit) and
/// symlinks are recreated as symlinks.
fn copy_tree(src: &Path, dst: &Path) {
    let entries = std::fs::read_dir(src).unwrap_or_else(|e| panic!("read fixture dir {}: {e}", src.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("read fixture dir {}: {e}", src.display()));
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let file_type = entry
            .file_type()
            .unwrap_or_else(|e| panic!("stat {}: {e}", from.display()));
        if file_type.is_symlink() {
            let target = std::fs::read_link(&from).unwrap_or_else(|e| panic!("readlink {}: {e}", from.display()));
            std::os::unix::fs::symlink(&target, &to).unwrap_or_else(|e| panic!("symlink {}: {e}", to.display()));
        } else if file_type.is_dir() {
            if entry.file_name() == ".git" {
                continue;
            }
            std::fs::create_dir_all(&to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
            copy_tree(&from, &to);
        } else {
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs `git http-backend` as a CGI script for one request.
async fn handle_cgi(State(state): State<CgiState>, request: Request) -> Response {
    let response = match run_cgi(&state, request).await {
        Ok(response) => response,
        Err(message) => {
            eprintln!("git server: {message}");
            let mut response = Response::new(Body::from(message));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    };
    // Counted before the response is handed back, so a client that saw the response sees the count.
    state.requests.fetch_add(1, Ordering::SeqCst);
    response
}

/// Whether a request for a private repository carries an accepted password.
fn authorized(state: &CgiState, parts: &axum::http::request::Parts) -> bool {
    let repo = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let Some(check) = state.private.lock().expect("private repos lock").get(&repo).cloned() else {
        return true;
    };
    use base64::Engine;
    let password = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|userpass| userpass.split_once(':').map(|(_, p)| p.to_owned()));
    password.is_some_and(|p| check(&p))
}

async fn run_cgi(state: &CgiState, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    if !authorized(state, &parts) {
        let mut response = Response::new(Body::from("authentication required"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Basic realm=\"git\""),
        );
        return Ok(response);
    }
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| format!("read request body: {e}"))?;

    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .envs(isolated_git_env(&state.home))
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_SOFTWARE", "cloudrunr-test-git-server")
        .env("SERVER_PROTOCOL", format!("{:?}", parts.version))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REMOTE_ADDR", "127.0.0.1")
        .current_dir(&state.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(content_type) = parts.headers.get("content-type") {
        command.env("CONTENT_TYPE", header_str(content_type)?);
    }
    // The whole body is in memory, so its length is known even for chunked requests.
    if parts.headers.contains_key("content-length") || !body.is_empty() {
        command.env("CONTENT_LENGTH", body.len().to_string());
    }
    for (name, value) in &parts.headers {
        // Content-Type/-Length are passed above; `Proxy` would become HTTP_PROXY ("httpoxy").
        if name == "content-type" || name == "content-length" || name == "proxy" {
            continue;
        }
        let var = format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_"));
        command.env(var, header_str(value)?);
    }

    let mut child = command.spawn().map_err(|e| format!("spawn git http-backend: {e}"))?;
    let mut stdin = child.stdin.take().expect("child stdin is piped");
    // Feed stdin concurrently with draining stdout/stderr so neither side can block the other.
    let writer = tokio::spawn(async move {
        // The backend may exit without reading everything (e.g. on an error); a broken pipe is fine then.
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    });
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("wait for git http-backend: {e}"))?;
    let _ = writer.await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && output.stdout.is_empty() {
        return Err(format!(
            "git http-backend failed ({}) for {} {}: {stderr}",
            output.status, parts.method, parts.uri
        ));
    }
    if !output.status.success() {
        eprintln!(
            "git server: git http-backend exited with {} for {} {}: {stderr}",
            output.status, parts.method, parts.uri
        );
    }
    parse_cgi_response(Bytes::from(output.stdout))
}

fn header_str(value: &HeaderValue) -> Result<&str, String> {
    value
        .to_str()
        .map_err(|e| format!("non-ASCII request header value {value:?}: {e}"))
}

/// Splits CGI output into headers (until the first blank line) and body; `Status: NNN reason` sets the status.
fn parse_cgi_response(stdout: Bytes) -> Result<Response, String> {
    let (head_len, sep_len) = find_header_end(&stdout).ok_or_else(|| {
        format!(
            "CGI response has no header terminator: {:?}",
            String::from_utf8_lossy(&stdout)
        )
    })?;
    let head = std::str::from_utf8(&stdout[..head_len]).map_err(|e| format!("CGI headers are not UTF-8: {e}"))?;
    let body = stdout.slice(head_len + sep_len..);

    let mut response = Response::new(Body::from(body));
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed CGI header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            let code = code
                .parse::<u16>()
                .map_err(|e| format!("bad CGI Status {value:?}: {e}"))?;
            *response.status_mut() =
                StatusCode::from_u16(code).map_err(|e| format!("bad CGI Status {value:?}: {e}"))?;
        } else {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| format!("bad CGI header name {name:?}: {e}"))?;
            let value = HeaderValue::from_str(value).map_err(|e| format!("bad CGI header value {value:?}: {e}"))?;
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}

/// Position of the blank line ending the CGI headers and the length of that separator.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if buf[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else {
            None
        }
    })
}
