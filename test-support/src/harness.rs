//! A real `cloudrunr serve` process on a free port, with small clients for its JSON API and
//! its sites.

use crate::cluster;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The fixture apps under `test-support/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The `cloudrunr` executable the harness starts.
///
/// `CARGO_BIN_EXE_cloudrunr` exists only while cargo compiles cloudrunr's own integration tests,
/// not this library, and libtest offers a test binary no hook to hand a path over once before its
/// tests start. So the harness finds the binary where cargo puts it: a test executable lives in
/// `<target>/<profile>/deps/`, and the binaries of the same build in `<target>/<profile>/`, which
/// `cargo test -p cloudrunr` builds before it runs the tests. `CLOUDRUNR_TEST_BIN` overrides that,
/// for a test executable run away from its target directory or against another build.
pub fn cloudrunr_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CLOUDRUNR_TEST_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the path of the test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("cloudrunr"))
        .expect("the test executable is in <target>/<profile>/deps/");
    assert!(
        bin.is_file(),
        "no cloudrunr binary at {}: run the tests with `cargo test -p cloudrunr`, or point \
         CLOUDRUNR_TEST_BIN at one",
        bin.display()
    );
    bin
}

/// A running `cloudrunr serve` with its own data directory.
pub struct Platform {
    pub(crate) child: Child,
    pub(crate) env: Vec<(String, String)>,
    pub base: String,
    pub port: u16,
    /// Where sites are served: the same port for `serve`, the router's when components run apart.
    pub sites_port: u16,
    pub data: tempfile::TempDir,
    pub http: reqwest::Client,
    /// Components running apart from the API (see `cluster`).
    pub(crate) parts: Vec<cluster::Part>,
}

impl Platform {
    pub async fn start() -> Platform {
        Self::start_with(&[]).await
    }

    /// Starts the server with extra `CLOUDRUNR_*` variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Platform {
        let data = tempfile::tempdir().expect("temp dir");
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let (child, addr) = spawn(data.path(), &env);
        let port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Platform {
            child,
            env,
            base: format!("http://{addr}"),
            port,
            sites_port: port,
            data,
            http,
            parts: Vec::new(),
        }
    }

    /// Asks the server to stop (SIGTERM) and waits for it to exit; fails if it hangs.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server without warning (as a crash would) and starts it again on the same data.
    pub fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr) = spawn(self.data.path(), &self.env);
        self.child = child;
        self.port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        self.sites_port = self.port;
        self.base = format!("http://{addr}");
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    /// The logs of every process (one for `serve`, one per component otherwise).
    pub fn server_log(&self) -> String {
        let mut logs: Vec<_> = std::fs::read_dir(self.data.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        let mut out = String::new();
        for path in logs {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            out.push_str(&format!("==== {name} ====\n"));
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
        out
    }

    /// A JSON API call; returns the status and the body (`Value::Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Signs up a new user and returns their session token.
    pub async fn signup(&self, name: &str) -> String {
        let email = format!("{}@example.com", name.to_lowercase().replace(' ', "."));
        let (status, body) = self
            .call(
                Method::POST,
                "/api/auth/signup",
                None,
                Some(json!({ "name": name, "email": email, "password": "correct horse battery" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Creates a project and returns its JSON.
    pub async fn create_project(&self, token: &str, body: Value) -> Value {
        let (status, resp) = self.post("/api/projects", token, body).await;
        assert_eq!(status, StatusCode::CREATED, "{resp}");
        resp["project"].clone()
    }

    /// Triggers a deployment and returns its id.
    pub async fn deploy(&self, token: &str, slug: &str) -> String {
        let (status, resp) = self
            .post(&format!("/api/projects/{slug}/deployments"), token, json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{resp}");
        resp["deployment"]["id"].as_str().expect("id").to_owned()
    }

    pub async fn deployment(&self, token: &str, id: &str) -> Value {
        let (status, resp) = self.get(&format!("/api/deployments/{id}"), token).await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        resp["deployment"].clone()
    }

    /// Polls until the deployment reaches a final state; returns it.
    pub async fn wait_final(&self, token: &str, id: &str) -> Value {
        for _ in 0..1200 {
            let d = self.deployment(token, id).await;
            if ["ready", "failed", "canceled", "timed_out"].contains(&d["state"].as_str().unwrap_or_default()) {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("deployment {id} did not finish; server log:\n{}", self.server_log());
    }

    /// All log lines of a deployment stored so far, as text, read page by page as a client does.
    pub async fn log_text(&self, token: &str, id: &str) -> String {
        let mut text: Vec<String> = Vec::new();
        let mut after = 0;
        loop {
            let path = format!("/api/deployments/{id}/logs?limit=5000&after={after}");
            let (status, resp) = self.get(&path, token).await;
            assert_eq!(status, StatusCode::OK, "{resp}");
            let lines = resp["lines"].as_array().expect("lines");
            let Some(last) = lines.last() else {
                return text.join("\n");
            };
            after = last["seq"].as_u64().expect("seq");
            text.extend(lines.iter().map(|l| l["text"].as_str().unwrap_or_default().to_owned()));
        }
    }

    /// GET on a site: the request goes to the platform's port with `Host: <label>.localhost`.
    pub async fn site(&self, label: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.site_request(Method::GET, label, path, headers).await
    }

    pub async fn site_request(
        &self,
        method: Method,
        label: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("http://127.0.0.1:{}{path}", self.sites_port))
            .header("host", format!("{label}.localhost:{}", self.sites_port));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("site request")
    }

    /// Waits until the site's `path` answers 200 with `text` in it; returns the last body. With
    /// the components apart, the router hears of a new production deployment through the bus, a
    /// moment after the API reports it ready.
    pub async fn site_eventually(&self, label: &str, path: &str, text: &str) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            let resp = self.site(label, path, &[]).await;
            let ok = resp.status() == StatusCode::OK;
            last = resp.text().await.unwrap_or_default();
            if ok && last.contains(text) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the site {label} never served {text:?} at {path}; last answer:\n{last}\n{}",
            self.server_log()
        );
    }

    /// A raw request line sent as is (reqwest would normalize `..` away).
    pub async fn raw_site_request(&self, label: &str, target: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.sites_port))
            .await
            .expect("connect");
        let req = format!("GET {target} HTTP/1.1\r\nHost: {label}.localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }
}

/// Starts `cloudrunr serve` on a free port; returns it and its address.
fn spawn(dir: &Path, env: &[(String, String)]) -> (Child, String) {
    let data = dir.join("data");
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("UTF-8 path"),
    ];
    spawn_component(&args, &dir.join("server.log"), env, "cloudrunr listening on http://")
}

/// Starts `cloudrunr <args>` with only the given `CLOUDRUNR_*` variables (and plain http:// git
/// from loopback, and connections to it, allowed), its stderr appended to `log`; waits for the stdout line starting with
/// `ready` and returns the rest of that line.
pub(crate) fn spawn_component(args: &[&str], log: &Path, env: &[(String, String)], ready: &str) -> (Child, String) {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = Command::new(cloudrunr_bin());
    cmd.args(args)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::piped())
        .stderr(log_file);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLOUDRUNR_")) {
        cmd.env_remove(k);
    }
    cmd.env("CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS", "127.0.0.1");
    // The test git servers listen on loopback, which builds and git may not reach by default.
    cmd.env("CLOUDRUNR_BUILD_EGRESS_ALLOW", "127.0.0.1");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().expect("start cloudrunr");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut sent = false;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && let Some(rest) = line.strip_prefix(&ready) {
                let _ = tx.send(rest.trim().to_owned());
                sent = true;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(rest) => (child, rest),
        Err(_) => {
            let _ = child.kill();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("cloudrunr {} did not start:\n{log}", args[0]);
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for part in &mut self.parts {
            part.stop();
        }
        if std::thread::panicking() {
            eprintln!("---- cloudrunr server log ----\n{}", self.server_log());
        }
    }
}
