//! The browser harness's own test (`src/browser.rs`): a real headless Chromium fills,
//! selects, clicks and submits on a tiny page served here (scripts from a file, under a strict CSP,
//! as the dashboard does), and reads back texts, attributes, script values, cookies (HttpOnly and
//! SameSite included), a screenshot, and a page on a `*.localhost` name.
//!
//! Needs Chromium and chromedriver: `scripts/test` installs them.

use std::collections::HashMap;

use axum::Router;
use axum::extract::Form;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use serde_json::json;
use test_support::browser::{Browser, output_dir};

const PAGE: &str = r#"<!doctype html>
<html><head><title>Selftest</title><script src="/app.js" defer></script></head>
<body>
  <h1>Browser selftest</h1>
  <form id="greet">
    <input id="name" name="name" value="placeholder">
    <select id="color" name="color">
      <option value="red">Red</option>
      <option value="green">Green</option>
      <option value="blue &quot;sky&quot;">Blue</option>
    </select>
    <button id="go" type="button">Greet</button>
  </form>
  <p id="out"></p>
  <ul><li>one</li><li> two </li></ul>
  <a id="link" href="/cookie" data-kind="plain">set a cookie</a>
  <form id="post" method="post" action="/echo">
    <textarea id="msg" name="msg"></textarea>
    <button>Send</button>
  </form>
</body></html>"#;

/// Writes the greeting into `#out` a little later, so the harness has to wait for it.
const SCRIPT: &str = r#"document.getElementById('go').addEventListener('click', () => {
  const name = document.getElementById('name').value;
  const color = document.getElementById('color').value;
  setTimeout(() => { document.getElementById('out').textContent = `Hello, ${name} (${color})`; }, 300);
});"#;

async fn serve() -> u16 {
    let app = Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_SECURITY_POLICY, "default-src 'self'")], Html(PAGE)) }),
        )
        .route(
            "/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }),
        )
        .route(
            "/cookie",
            get(|| async {
                (
                    [(header::SET_COOKIE, "sid=abc123; HttpOnly; SameSite=Lax; Path=/")],
                    Html("<!doctype html><title>Cookie</title><h1 id=\"done\">cookie set</h1>"),
                )
            }),
        )
        .route(
            "/echo",
            post(|Form(form): Form<HashMap<String, String>>| async move {
                let msg = form.get("msg").cloned().unwrap_or_default();
                Html(format!(
                    "<!doctype html><title>Echo</title><p id=\"echo\">posted: {msg}</p>"
                ))
                .into_response()
            }),
        )
        .route(
            "/host",
            get(|headers: HeaderMap| async move {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                Html(format!(
                    "<!doctype html><title>Host</title><p id=\"host\">host: {host}</p>"
                ))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    port
}

#[tokio::test]
async fn drives_a_real_headless_chromium() {
    let port = serve().await;
    let base = format!("http://127.0.0.1:{port}");
    let b = Browser::start().await;

    b.goto(&format!("{base}/")).await;
    assert_eq!(b.current_url().await, format!("{base}/"));
    b.wait_for("#name").await;

    // fill replaces what was there; select picks by value (quotes included); the click runs the
    // page's script, whose output appears later.
    b.fill("#name", "Ada").await;
    b.select("#color", "green").await;
    b.click("#go").await;
    b.wait_for_text("#out", "Hello, Ada (green)").await;
    assert_eq!(b.text("#out").await, "Hello, Ada (green)");
    b.fill("#name", "Grace").await;
    b.select("#color", "blue \"sky\"").await;
    b.click("#go").await;
    b.wait_for_text("#out", "Grace").await;
    assert_eq!(b.text("#out").await, "Hello, Grace (blue \"sky\")");

    assert_eq!(b.texts("li").await, ["one", "two"]);
    assert!(b.texts("#missing").await.is_empty());
    assert_eq!(b.attr("#link", "data-kind").await.as_deref(), Some("plain"));
    assert_eq!(b.attr("#link", "data-nope").await, None);
    assert!(b.exists("#out").await);
    assert!(!b.exists("#missing").await);

    // Scripts run despite the page's CSP, and their values come back as JSON.
    assert_eq!(b.eval("return document.title").await, json!("Selftest"));
    assert_eq!(
        b.eval("return [1 + 2, document.querySelectorAll('li').length]").await,
        json!([3, 2])
    );
    assert_eq!(
        b.eval("return Promise.resolve({ ok: true })").await,
        json!({ "ok": true })
    );

    // A real form submission (clicking the form's button, which has no type).
    b.fill("#msg", "hi there").await;
    b.submit("#post").await;
    b.wait_for_text("#echo", "posted: hi there").await;
    assert_eq!(b.current_url().await, format!("{base}/echo"));

    // Cookies: flags read back through WebDriver; the page's script cannot see the HttpOnly one.
    b.goto(&format!("{base}/cookie")).await;
    b.wait_until("the cookie page has loaded", async || b.exists("#done").await)
        .await;
    let cookies = b.cookies().await;
    let sid = cookies
        .iter()
        .find(|c| c.name == "sid")
        .unwrap_or_else(|| panic!("no sid cookie in {cookies:?}"));
    assert_eq!(sid.value, "abc123");
    assert!(sid.http_only, "{sid:?}");
    assert!(!sid.secure, "{sid:?}");
    assert_eq!(sid.same_site.as_deref(), Some("Lax"), "{sid:?}");
    assert_eq!(sid.path.as_deref(), Some("/"), "{sid:?}");
    assert_eq!(sid.domain.as_deref(), Some("127.0.0.1"), "{sid:?}");
    let visible = b.eval("return document.cookie").await;
    assert!(!visible.as_str().unwrap_or_default().contains("sid"), "{visible}");

    // Chromium resolves *.localhost to loopback by itself.
    b.goto(&format!("http://something.localhost:{port}/host")).await;
    b.wait_for_text("#host", &format!("host: something.localhost:{port}"))
        .await;
    assert!(b.page_source().await.contains("something.localhost"));

    let shot = output_dir().join("browser-selftest.png");
    let _ = std::fs::remove_file(&shot);
    b.screenshot(&shot).await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {} bytes", png.len());
    assert!(png.len() > 1000, "suspiciously small PNG: {} bytes", png.len());

    b.close().await;
}

/// The harness's futures can be spawned onto a multi-threaded runtime (checked at compile time).
#[allow(dead_code)]
fn futures_are_send(b: Browser) {
    fn send<T: Send>(_: T) {}
    send(Browser::start());
    send(b.goto("/"));
    send(b.current_url());
    send(b.fill("#a", "x"));
    send(b.select("#a", "x"));
    send(b.click("#a"));
    send(b.submit("#a"));
    send(b.text("#a"));
    send(b.texts("#a"));
    send(b.attr("#a", "x"));
    send(b.exists("#a"));
    send(b.wait_for("#a"));
    send(b.wait_for_text("#a", "x"));
    send(b.wait_until("never", async || false));
    send(b.eval("return 1"));
    send(b.screenshot(std::path::Path::new("x.png")));
    send(b.cookies());
    send(b.page_source());
    send(b.close());
}
