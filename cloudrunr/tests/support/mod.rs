//! What the end-to-end tests share: a real `cloudrunr serve` process on a free port, a git
//! server, and small clients for the JSON API, the live log stream and the sites.

#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod git_server;
pub mod github;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The fixture apps under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A running `cloudrunr serve` with its own data directory.
pub struct Platform {
    child: Child,
    env: Vec<(String, String)>,
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

    /// All log lines of a deployment, as text.
    pub async fn log_text(&self, token: &str, id: &str) -> String {
        let (status, resp) = self.get(&format!("/api/deployments/{id}/logs?limit=5000"), token).await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        resp["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["text"].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
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
/// from loopback allowed), its stderr appended to `log`; waits for the stdout line starting with
/// `ready` and returns the rest of that line.
pub fn spawn_component(args: &[&str], log: &Path, env: &[(String, String)], ready: &str) -> (Child, String) {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudrunr"));
    cmd.args(args)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::piped())
        .stderr(log_file);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLOUDRUNR_")) {
        cmd.env_remove(k);
    }
    cmd.env("CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS", "127.0.0.1");
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

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// The log lines among `events`, asserting that each line came once and in order (numbered
/// 1, 2, 3, …): what every follower of a log must see.
pub fn lines_in_order(events: &[SseEvent]) -> Vec<Value> {
    let lines: Vec<Value> = events
        .iter()
        .filter(|e| e.event == "message")
        .map(|e| e.json())
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every line once, in order"
    );
    lines
}

/// Opens the live log stream and collects events until `stop` says so (or the stream ends).
pub async fn read_sse(
    platform: &Platform,
    token: &str,
    id: &str,
    last_event_id: Option<&str>,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut req = platform
        .http
        .get(format!("{}/api/deployments/{id}/logs/stream", platform.base))
        .bearer_auth(token);
    if let Some(l) = last_event_id {
        req = req.header("last-event-id", l);
    }
    let resp = req.send().await.expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(c))) => c,
            Ok(_) => return events,
            Err(_) => panic!("the log stream did not finish; events so far: {events:?}"),
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut ev = SseEvent {
                event: "message".into(),
                id: None,
                data: String::new(),
            };
            let mut any = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    ev.event = v.trim().to_owned();
                    any = true;
                } else if let Some(v) = line.strip_prefix("id:") {
                    ev.id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    any = true;
                }
            }
            if any {
                let done = stop(&ev);
                events.push(ev);
                if done {
                    return events;
                }
            }
        }
    }
}

/// A plain HTTP client that keeps cookies and does not follow redirects, like a minimal browser.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: std::collections::HashMap<String, String>,
}

impl Client {
    pub fn new(p: &Platform) -> Client {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Client {
            http,
            base: p.base.clone(),
            cookies: std::collections::HashMap::new(),
        }
    }

    pub fn keep(&mut self, headers: &reqwest::header::HeaderMap) {
        for c in headers.get_all(reqwest::header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.insert(k.to_owned(), v.to_owned());
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, path: &str) -> (reqwest::StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(resp.headers());
        (resp.status(), resp.text().await.unwrap())
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        self.keep(resp.headers());
        resp
    }

    /// Signs up through the form, as a browser would.
    pub async fn sign_up(&mut self, name: &str, email: &str) -> reqwest::Response {
        let (_, page) = self.get("/signup").await;
        let csrf = csrf_of(&page);
        self.post(
            "/signup",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("email", email),
                ("password", "correct horse battery"),
            ],
            None,
        )
        .await
    }
}

/// The anti-forgery token in a page's first form.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a csrf token");
    page[at + 19..].split('"').next().unwrap().to_owned()
}
