//! A real headless Chromium for the dashboard tests, driven over the W3C WebDriver protocol.
//!
//! Every [`Browser`] runs its own `chromedriver` (on a free loopback port, in its own process
//! group) with its own throw-away Chromium profile, so tests can run in parallel. Dropping the
//! `Browser` kills chromedriver and every Chromium process it started.
//!
//! The WebDriver client is a small JSON-over-HTTP layer on `reqwest` (already a dev-dependency):
//! it needs no TLS stack of its own, only loopback HTTP to chromedriver.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `chromium`, `chromium-driver`;
//! `scripts/test` installs them). `CLOUDRUNR_CHROMIUM` / `CLOUDRUNR_CHROMEDRIVER` override the paths.
//!
//! Chromium resolves every `*.localhost` name to loopback by itself, so sites can be opened as
//! `http://<label>.localhost:<port>/`.
//!
//! Reads (`text`, `texts`, `attr`, `exists`, the waits) run one `querySelector` script each, so
//! they never see a stale element; actions (`fill`, `select`, `click`, `submit`) wait for the element
//! and retry while it is missing, stale, covered or not yet interactable. Every wait is bounded
//! ([`WAIT`]); a failure panics with the current URL, a page-source excerpt, a screenshot path
//! (under [`output_dir`]) and the tail of chromedriver's log.

use std::fmt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

/// How long waits (for elements, texts, conditions, interactable elements) last before panicking.
pub const WAIT: Duration = Duration::from_secs(60);
/// How often waits poll.
const POLL: Duration = Duration::from_millis(100);
/// Timeout of one WebDriver HTTP request (page loads are bounded at 60 s by chromedriver itself).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Timeout of the requests made while collecting diagnostics for a panic message.
const DIAGNOSTIC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long chromedriver may take to answer `/status` with `ready: true`.
const DRIVER_READY: Duration = Duration::from_secs(20);
/// The W3C key of a web element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// What `submit` clicks inside the form.
const SUBMIT_BUTTON: &str = "button[type=submit], input[type=submit], input[type=image], button:not([type])";

/// A cookie as WebDriver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub http_only: bool,
    pub secure: bool,
    /// `"Lax"`, `"Strict"` or `"None"`, as Chromium reports it.
    pub same_site: Option<String>,
    pub domain: Option<String>,
    pub path: Option<String>,
}

/// Where tests write screenshots: `<workspace>/test-output/` (created; git-ignored).
pub fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .join("test-output");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// A headless Chromium session (its own chromedriver on a free loopback port, its own profile dir).
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. Panics with a clear message if either is
    /// missing (run `scripts/test`, which installs them) or does not start (three attempts).
    pub async fn start() -> Browser {
        let chromium = tool("CLOUDRUNR_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("CLOUDRUNR_CHROMEDRIVER", "/usr/bin/chromedriver");
        for path in [&chromium, &chromedriver] {
            assert!(
                path.is_file(),
                "{} is missing: the browser tests need Chromium and chromedriver \
                 (Debian packages `chromium` and `chromium-driver`). Run scripts/test, which installs them.",
                path.display()
            );
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("HTTP client");

        let mut failures = Vec::new();
        for attempt in 1..=3 {
            let driver = match Driver::spawn(&http, &chromedriver).await {
                Ok(driver) => driver,
                Err(e) => {
                    failures.push(format!("attempt {attempt}: chromedriver did not start: {e}"));
                    continue;
                }
            };
            match new_session(&http, &driver, &chromium).await {
                Ok(id) => {
                    let session = format!("{}/session/{id}", driver.base());
                    return Browser { http, session, driver };
                }
                Err(e) => failures.push(format!(
                    "attempt {attempt}: no Chromium session: {e}\n--- chromedriver log (tail) ---\n{}",
                    driver.log_tail()
                )),
            }
        }
        panic!("could not start headless Chromium:\n{}", failures.join("\n"));
    }

    /// Opens `url` and waits for its load event (at most 60 s).
    pub async fn goto(&self, url: &str) {
        let r = self.cmd(Method::POST, "url", Some(json!({ "url": url }))).await;
        self.check(&format!("goto {url}"), r).await;
        // A page that could not be loaded at all (DNS, refused connection, …) may still "navigate",
        // to Chromium's error page. (Empty-bodied HTTP errors show one too, "HTTP ERROR 404": left
        // for the test to look at.)
        let script = "if (!location.href.startsWith('chrome-error:')) return null; \
                      const code = document.querySelector('.error-code'); \
                      const text = code ? code.textContent : document.body.innerText; \
                      return text.trim().startsWith('HTTP ERROR') ? null : text;";
        let error = self.read(&format!("goto {url}"), script, &[]).await;
        if let Some(error) = error.as_str() {
            self.fail(format!(
                "goto {url}: Chromium could not load it: {}",
                excerpt(error.trim(), 300)
            ))
            .await
        }
    }

    pub async fn current_url(&self) -> String {
        let r = self.cmd(Method::GET, "url", None).await;
        let v = self.check("current_url", r).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Clears the input/textarea matching `css`, then types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        self.on_element(css, Action::Fill(text)).await
    }

    /// Chooses the `<option value="…">` of the `<select>` matching `css` (by clicking it).
    pub async fn select(&self, css: &str, value: &str) {
        self.on_element(css, Action::Select(value)).await
    }

    pub async fn click(&self, css: &str) {
        self.on_element(css, Action::Click).await
    }

    /// Clicks the submit button of the form matching `form_css` (`button[type=submit]`,
    /// `input[type=submit]`, `input[type=image]` or a `button` without a type).
    pub async fn submit(&self, form_css: &str) {
        self.on_element(form_css, Action::Submit).await
    }

    /// The `textContent` of the first match, trimmed; waits (bounded) for a match to exist.
    pub async fn text(&self, css: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); return e === null ? null : e.textContent;";
        self.poll_script(&format!("an element matching `{css}`"), script, &[css], |v| {
            v.as_str().map(|s| s.trim().to_owned())
        })
        .await
    }

    /// The trimmed `textContent` of every match, in document order; does not wait.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let script = "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent);";
        let v = self.read(&format!("texts `{css}`"), script, &[css]).await;
        strings(&v).into_iter().map(|s| s.trim().to_owned()).collect()
    }

    /// The attribute `name` of the first match (`None` if it has no such attribute); waits
    /// (bounded) for a match to exist.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let script = "const e = document.querySelector(arguments[0]); \
                      return e === null ? null : [e.getAttribute(arguments[1])];";
        self.poll_script(&format!("an element matching `{css}`"), script, &[css, name], |v| {
            v.as_array()
                .map(|a| a.first().and_then(Value::as_str).map(str::to_owned))
        })
        .await
    }

    /// Whether something matches `css` right now; does not wait.
    pub async fn exists(&self, css: &str) -> bool {
        let script = "return document.querySelector(arguments[0]) !== null;";
        let v = self.read(&format!("exists `{css}`"), script, &[css]).await;
        v.as_bool() == Some(true)
    }

    /// Waits (bounded) until something matches `css`.
    pub async fn wait_for(&self, css: &str) {
        let script = "return document.querySelector(arguments[0]) !== null;";
        self.poll_script(&format!("an element matching `{css}`"), script, &[css], |v| {
            (v.as_bool() == Some(true)).then_some(())
        })
        .await
    }

    /// Waits (bounded) until the `textContent` of some match of `css` contains `needle`.
    pub async fn wait_for_text(&self, css: &str, needle: &str) {
        let script = "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent);";
        let found = self
            .poll_script_quietly(script, &[css], |v| {
                strings(v).iter().any(|t| t.contains(needle)).then_some(())
            })
            .await;
        if let Err((e, last)) = found {
            let shown: Vec<String> = strings(&last).iter().map(|t| excerpt(t.trim(), 200)).collect();
            self.fail(format!(
                "{e} waiting for an element matching `{css}` to contain {needle:?}; the matches' texts were {shown:?}"
            ))
            .await
        }
    }

    /// Polls `f` (every 100 ms, at most [`WAIT`]) until it returns true; panics naming `what`.
    pub async fn wait_until<F>(&self, what: &str, f: F)
    where
        F: AsyncFn() -> bool,
    {
        let deadline = Instant::now() + WAIT;
        while !f().await {
            if Instant::now() >= deadline {
                self.fail(format!("timed out after {WAIT:?} waiting until {what}"))
                    .await
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `js` as the body of a function (so use `return …` to get a value back; a returned
    /// promise is awaited) and returns its value.
    pub async fn eval(&self, js: &str) -> Value {
        let r = self.script(js, Vec::new()).await;
        self.check(&format!("eval {:?}", excerpt(js, 200)), r).await
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating its parent directories.
    pub async fn screenshot(&self, path: &Path) {
        let r = self.png().await;
        let png = self.check("screenshot", r).await;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Every cookie visible to the current page (HttpOnly ones included), read through WebDriver.
    pub async fn cookies(&self) -> Vec<Cookie> {
        let r = self.cmd(Method::GET, "cookie", None).await;
        let v = self.check("cookies", r).await;
        let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
        v.as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| Cookie {
                name: text(c, "name").unwrap_or_default(),
                value: text(c, "value").unwrap_or_default(),
                http_only: c.get("httpOnly").and_then(Value::as_bool).unwrap_or(false),
                secure: c.get("secure").and_then(Value::as_bool).unwrap_or(false),
                same_site: text(c, "sameSite"),
                domain: text(c, "domain"),
                path: text(c, "path"),
            })
            .collect()
    }

    pub async fn page_source(&self) -> String {
        let r = self.cmd(Method::GET, "source", None).await;
        let v = self.check("page_source", r).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Ends the WebDriver session (Chromium quits); dropping the `Browser` then stops chromedriver.
    pub async fn close(self) {
        let _ = self.http.delete(&self.session).timeout(DIAGNOSTIC_TIMEOUT).send().await;
    }

    // ---- internals ----

    /// One WebDriver command on this session; `path` is relative to `/session/<id>/`.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let url = format!("{}/{path}", self.session);
        request(&self.http, method, &url, body, REQUEST_TIMEOUT).await
    }

    async fn script(&self, js: &str, args: Vec<Value>) -> Result<Value, WdError> {
        self.cmd(
            Method::POST,
            "execute/sync",
            Some(json!({ "script": js, "args": args })),
        )
        .await
    }

    async fn png(&self) -> Result<Vec<u8>, WdError> {
        let v = self.cmd(Method::GET, "screenshot", None).await?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| WdError::new("invalid screenshot", e.to_string()))
    }

    /// A one-shot read script, retried briefly if a navigation is in progress.
    async fn read(&self, what: &str, js: &str, args: &[&str]) -> Value {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.script(js, args_json(args)).await {
                Err(e) if tries < 20 && e.transient_script_error() => tokio::time::sleep(POLL).await,
                r => return self.check(what, r).await,
            }
        }
    }

    /// Finds the first element matching `css` and does `action` on it, retrying both (bounded)
    /// while the element is missing, stale, covered or not interactable yet.
    async fn on_element(&self, css: &str, action: Action<'_>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let find = Some(json!({ "using": "css selector", "value": css }));
            let result = match self.cmd(Method::POST, "element", find).await {
                Ok(found) => match element_id(&found) {
                    Ok(id) => self.act(&id, action).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return,
                Err(e) if e.retryable() && Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Err(e) => {
                    let waited = if e.retryable() {
                        format!(" (after retrying for {WAIT:?})")
                    } else {
                        String::new()
                    };
                    self.fail(format!("{} `{css}` failed{waited}: {e}", action.name()))
                        .await
                }
            }
        }
    }

    async fn act(&self, id: &str, action: Action<'_>) -> Result<(), WdError> {
        match action {
            Action::Fill(text) => {
                self.cmd(Method::POST, &format!("element/{id}/clear"), None).await?;
                let keys = Some(json!({ "text": text }));
                self.cmd(Method::POST, &format!("element/{id}/value"), keys).await?;
            }
            Action::Select(value) => {
                let option = format!("option[value=\"{}\"]", css_string(value));
                let find = Some(json!({ "using": "css selector", "value": option }));
                let found = self.cmd(Method::POST, &format!("element/{id}/element"), find).await?;
                let option = element_id(&found)?;
                self.cmd(Method::POST, &format!("element/{option}/click"), None).await?;
                let now = self
                    .cmd(Method::GET, &format!("element/{id}/property/value"), None)
                    .await?;
                if now.as_str() != Some(value) {
                    let message = format!("the select's value is {now} after choosing {value:?}");
                    return Err(WdError::new("select failed", message));
                }
            }
            Action::Click => {
                self.cmd(Method::POST, &format!("element/{id}/click"), None).await?;
            }
            Action::Submit => {
                let find = Some(json!({ "using": "css selector", "value": SUBMIT_BUTTON }));
                let found = self.cmd(Method::POST, &format!("element/{id}/element"), find).await?;
                let button = element_id(&found)?;
                self.cmd(Method::POST, &format!("element/{button}/click"), None).await?;
            }
        }
        Ok(())
    }

    /// Runs `js` until `accept` takes its value; panics (naming `what`) when [`WAIT`] is over or
    /// the script fails with an error that waiting cannot fix.
    async fn poll_script<T>(&self, what: &str, js: &str, args: &[&str], accept: impl Fn(&Value) -> Option<T>) -> T {
        match self.poll_script_quietly(js, args, accept).await {
            Ok(v) => v,
            Err((e, _)) => self.fail(format!("{e} waiting for {what}")).await,
        }
    }

    /// Runs `js` (every [`POLL`], at most [`WAIT`]) until `accept` takes its value, retrying the
    /// script errors a navigation causes. On failure, also returns the last value the script gave.
    async fn poll_script_quietly<T>(
        &self,
        js: &str,
        args: &[&str],
        accept: impl Fn(&Value) -> Option<T>,
    ) -> Result<T, (PollError, Value)> {
        let deadline = Instant::now() + WAIT;
        let mut last_value = Value::Null;
        loop {
            let last_error = match self.script(js, args_json(args)).await {
                Ok(v) => match accept(&v) {
                    Some(t) => return Ok(t),
                    None => {
                        last_value = v;
                        None
                    }
                },
                Err(e) if e.transient_script_error() => Some(e),
                Err(e) => return Err((PollError::Failed(e), last_value)),
            };
            if Instant::now() >= deadline {
                return Err((PollError::TimedOut(last_error), last_value));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Unwraps `r`, or panics with `what`, the error and diagnostics.
    async fn check<T>(&self, what: &str, r: Result<T, WdError>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => self.fail(format!("{what} failed: {e}")).await,
        }
    }

    /// Panics with `msg` and what can be learned about the browser's state.
    async fn fail<T>(&self, msg: String) -> T {
        let url = request(
            &self.http,
            Method::GET,
            &format!("{}/url", self.session),
            None,
            DIAGNOSTIC_TIMEOUT,
        )
        .await;
        let url = match url {
            Ok(v) => v.as_str().unwrap_or_default().to_owned(),
            Err(e) => format!("(unknown: {e})"),
        };
        let source = request(
            &self.http,
            Method::GET,
            &format!("{}/source", self.session),
            None,
            DIAGNOSTIC_TIMEOUT,
        )
        .await;
        let source = match source {
            Ok(v) => {
                let html = v.as_str().unwrap_or_default();
                excerpt(html.find("<body").map_or(html, |i| &html[i..]), 3000)
            }
            Err(e) => format!("(unavailable: {e})"),
        };
        static FAILURES: AtomicUsize = AtomicUsize::new(0);
        let n = FAILURES.fetch_add(1, Ordering::Relaxed);
        let shot = output_dir().join(format!("browser-failure-{}-{n}.png", std::process::id()));
        let shot = match self.png().await {
            Ok(png) => match std::fs::write(&shot, png) {
                Ok(()) => shot.display().to_string(),
                Err(e) => format!("(not saved: {e})"),
            },
            Err(e) => format!("(none: {e})"),
        };
        panic!(
            "browser: {msg}\n--- current URL: {url}\n--- screenshot: {shot}\n--- page source (excerpt) ---\n{source}\n\
             --- chromedriver log (tail) ---\n{}",
            self.driver.log_tail()
        )
    }
}

/// A chromedriver process (leading its own process group) and its scratch directory (log files,
/// Chromium profiles).
struct Driver {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Driver {
    async fn spawn(http: &reqwest::Client, chromedriver: &Path) -> Result<Driver, String> {
        let dir = tempfile::Builder::new()
            .prefix("cloudrunr-browser-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let file = |name: &str| std::fs::File::create(dir.path().join(name)).map_err(|e| format!("{name}: {e}"));
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", dir.path().join("chromedriver.log").display()))
            .arg("--readable-timestamp")
            .stdin(Stdio::null())
            .stdout(file("chromedriver.out")?)
            .stderr(file("chromedriver.err")?)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", chromedriver.display()))?;
        let mut driver = Driver { child, port, dir };
        driver.wait_ready(http).await?;
        Ok(driver)
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until this chromedriver (not another one that happens to hold the port) says it is
    /// ready.
    async fn wait_ready(&mut self, http: &reqwest::Client) -> Result<(), String> {
        let deadline = Instant::now() + DRIVER_READY;
        let started = format!("started successfully on port {}", self.port);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited ({status}):\n{}", self.log_tail()));
            }
            let ours = std::fs::read_to_string(self.dir.path().join("chromedriver.out"))
                .is_ok_and(|out| out.contains(&started));
            if ours {
                let url = format!("{}/status", self.base());
                if let Ok(v) = request(http, Method::GET, &url, None, DIAGNOSTIC_TIMEOUT).await
                    && v.get("ready").and_then(Value::as_bool) == Some(true)
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {DRIVER_READY:?}:\n{}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The last lines of chromedriver's log, stdout and stderr (which has Chromium's stderr).
    fn log_tail(&self) -> String {
        ["chromedriver.log", "chromedriver.out", "chromedriver.err"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("[{name}]\n{}", excerpt_end(&tail, 6000))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Driver {
    /// Kills chromedriver's whole process group (chromedriver and the Chromium processes it started).
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Give the group's other processes a moment to go before their profile is deleted.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && group_alive(&group) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether any process of the group still runs (zombies don't count).
fn group_alive(group: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let pgid = group.trim_start_matches('-');
    entries.flatten().any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp …; comm may contain spaces, so parse after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        fields.len() > 2 && fields[2] == pgid && fields[0] != "Z" && fields[0] != "X"
    })
}

async fn new_session(http: &reqwest::Client, driver: &Driver, chromium: &Path) -> Result<String, WdError> {
    static PROFILES: AtomicUsize = AtomicUsize::new(0);
    let profile = driver
        .dir
        .path()
        .join(format!("profile-{}", PROFILES.fetch_add(1, Ordering::Relaxed)));
    let args = vec![
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--no-default-browser-check".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-extensions".to_owned(),
        "--no-proxy-server".to_owned(),
        "--password-store=basic".to_owned(),
        "--hide-scrollbars".to_owned(),
        "--mute-audio".to_owned(),
        "--window-size=1280,1024".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "normal",
                // confirm()/alert() dialogs are accepted, so "Delete?" confirmations go through.
                "unhandledPromptBehavior": "accept",
                "timeouts": { "implicit": 0, "pageLoad": 60_000, "script": 30_000 },
                "goog:chromeOptions": { "binary": chromium, "args": args },
            }
        }
    });
    let url = format!("{}/session", driver.base());
    let v = request(http, Method::POST, &url, Some(capabilities), REQUEST_TIMEOUT).await?;
    v.get("sessionId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| WdError::new("invalid response", format!("no sessionId in {v}")))
}

/// One WebDriver HTTP request; returns the response's `value`.
async fn request(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
    timeout: Duration,
) -> Result<Value, WdError> {
    let mut req = http.request(method.clone(), url).timeout(timeout);
    if method == Method::POST {
        // chromedriver wants a JSON object on every POST, even an empty one.
        req = req.json(&body.unwrap_or_else(|| json!({})));
    }
    let transport = |e: reqwest::Error| WdError::new("transport", format!("{method} {url}: {e}"));
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let text = resp.text().await.map_err(transport)?;
    let parsed: Value = serde_json::from_str(&text).map_err(|_| {
        WdError::new(
            "invalid response",
            format!("{method} {url}: HTTP {status}: {}", excerpt(&text, 500)),
        )
    })?;
    let value = parsed.get("value").cloned().unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let error = field("error");
    Err(WdError::new(
        if error.is_empty() {
            format!("HTTP {status}")
        } else {
            error
        },
        field("message"),
    ))
}

/// A WebDriver error: its code (`"no such element"`, …) and message.
#[derive(Debug, Clone)]
struct WdError {
    error: String,
    message: String,
}

impl WdError {
    fn new(error: impl Into<String>, message: impl Into<String>) -> WdError {
        WdError {
            error: error.into(),
            message: message.into(),
        }
    }

    /// Errors that waiting (and finding the element again) can fix.
    fn retryable(&self) -> bool {
        matches!(
            self.error.as_str(),
            "no such element"
                | "stale element reference"
                | "element not interactable"
                | "element click intercepted"
                | "invalid element state"
        ) || self.transient_script_error()
    }

    /// A script that failed because the page was being replaced (navigation in progress).
    fn transient_script_error(&self) -> bool {
        let m = self.message.as_str();
        (self.error == "javascript error" || self.error == "unknown error")
            && !m.contains("not a valid selector")
            && (m.contains("context") || m.contains("navigat") || m.contains("detached"))
    }
}

impl fmt::Display for WdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // chromedriver's messages end in a long "Stacktrace:" section of native frames.
        let message = self.message.split("\nStacktrace:").next().unwrap_or_default().trim();
        let message = message.strip_prefix(&format!("{}: ", self.error)).unwrap_or(message);
        write!(f, "{}: {message}", self.error)
    }
}

/// What `on_element` does to the element it found.
#[derive(Clone, Copy)]
enum Action<'a> {
    Fill(&'a str),
    Select(&'a str),
    Click,
    Submit,
}

impl Action<'_> {
    fn name(&self) -> &'static str {
        match self {
            Action::Fill(_) => "fill",
            Action::Select(_) => "select",
            Action::Click => "click",
            Action::Submit => "submit (click the form's submit button)",
        }
    }
}

/// Why a poll ended without success.
enum PollError {
    /// An error waiting cannot fix (an invalid selector, a script error, a closed session).
    Failed(WdError),
    /// [`WAIT`] is over; with the last (transient) error, if the last try failed.
    TimedOut(Option<WdError>),
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::Failed(e) => write!(f, "failed ({e})"),
            PollError::TimedOut(None) => write!(f, "timed out after {WAIT:?}"),
            PollError::TimedOut(Some(e)) => write!(f, "timed out after {WAIT:?} (last error: {e})"),
        }
    }
}

fn tool(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn args_json(args: &[&str]) -> Vec<Value> {
    args.iter().map(|a| json!(a)).collect()
}

fn element_id(found: &Value) -> Result<String, WdError> {
    found
        .get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| WdError::new("invalid response", format!("not an element reference: {found}")))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `s` escaped for use inside a double-quoted CSS string.
fn css_string(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => format!("\\{c}"),
            '\n' => "\\a ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// At most the first `max` characters of `s`.
fn excerpt(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// At most the last `max` characters of `s`.
fn excerpt_end(s: &str, max: usize) -> String {
    let count = s.chars().count();
    if count <= max {
        return s.to_owned();
    }
    let start = s.char_indices().nth(count - max).map_or(0, |(i, _)| i);
    format!("…{}", &s[start..])
}
