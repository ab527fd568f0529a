//! The web conventions sites ship with, end to end: `_redirects` and `_headers` read at upload
//! time and applied by the router, clean URLs, `404.html`, the single-page-app fallback, and
//! `noindex` on preview and per-deployment hostnames — through a real `cloudrunr serve`, a git
//! server and real builds.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;
use test_support::git_server::GitServer;
use test_support::{Platform, fixture};

/// One answer of a site, redirects not followed.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn location(&self) -> &str {
        self.header("location")
    }
}

/// Asks the site at `label` for `path` (with its query) without following redirects.
async fn ask(p: &Platform, method: Method, label: &str, path: &str) -> Answer {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = client
        .request(method, format!("http://127.0.0.1:{}{path}", p.sites_port))
        .header("host", format!("{label}.localhost:{}", p.sites_port))
        .send()
        .await
        .expect("site request");
    Answer {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

async fn get(p: &Platform, label: &str, path: &str) -> Answer {
    ask(p, Method::GET, label, path).await
}

/// Asserts a redirect: its status and `Location`.
async fn redirects(p: &Platform, label: &str, path: &str, status: u16, location: &str) -> Answer {
    let a = get(p, label, path).await;
    assert_eq!(
        (a.status.as_u16(), a.location()),
        (status, location),
        "{label}{path}: {}",
        a.body
    );
    a
}

/// Asserts a page: its status and a text in its body.
async fn serves(p: &Platform, label: &str, path: &str, status: u16, text: &str) -> Answer {
    let a = get(p, label, path).await;
    assert_eq!(a.status.as_u16(), status, "{label}{path}: {}", a.body);
    assert!(
        a.body.contains(text),
        "{label}{path} should contain {text:?}: {}",
        a.body
    );
    a
}

async fn deploy_ready(p: &Platform, token: &str, slug: &str, body: serde_json::Value) -> (String, String) {
    let (status, created) = p.post(&format!("/api/projects/{slug}/deployments"), token, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["deployment"]["id"].as_str().expect("id").to_owned();
    let d = p.wait_final(token, &id).await;
    let log = p.log_text(token, &id).await;
    assert_eq!(d["state"], "ready", "{log}");
    (id, log)
}

#[tokio::test]
async fn redirects_headers_and_clean_urls() {
    let git = GitServer::start().await;
    let repo = git.create_repo("rules", &fixture("rules"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    p.create_project(&token, json!({ "name": "rules", "git_url": git.url("rules") }))
        .await;
    let (first, log) = deploy_ready(&p, &token, "rules", json!({})).await;

    // The build log names each line it could not use, and goes on.
    for expected in [
        "_redirects:9: \"this\" is not a path",
        "_redirects:10: serving another site's content (status 200 to an external URL) is not supported",
        "Redirects: 7 rules from _redirects (2 problems reported above)",
        "_headers:11: Content-Length cannot be set",
        "Headers: 3 paths from _headers (1 problem reported above)",
    ] {
        assert!(log.contains(expected), "{expected:?} in:\n{log}");
    }
    let d = p.deployment(&token, &first).await;
    assert_eq!(d["artifact"]["files"], 12, "the rules files are not deployed: {d}");
    let site = "rules";

    // The files themselves are not served.
    for path in ["/_redirects", "/_headers"] {
        let a = serves(&p, site, path, 404, "Rules 404").await;
        assert!(!a.body.contains("/old-blog"), "{path}");
    }

    // Redirects: splat, placeholder with the target's own query, the request's query kept.
    redirects(&p, site, "/old-blog/post", 301, "/blog/post").await;
    redirects(&p, site, "/old-blog/post?utm=x", 301, "/blog/post?utm=x").await;
    redirects(&p, site, "/posts/2024/post?utm=x", 302, "/blog/post?year=2024").await;
    serves(&p, site, "/blog/post", 200, "Blog post").await;
    // An external redirect.
    redirects(&p, site, "/shop?ref=a", 301, "https://shop.example.com/?ref=a").await;
    // A 200 rewrite serves the target under the requested path.
    serves(&p, site, "/app/settings/profile", 200, "App shell").await;
    serves(&p, site, "/app/", 200, "App shell").await;
    // A 404 rule serves its page with 404.
    serves(&p, site, "/en/missing", 404, "English 404").await;
    // A file shadows a rule that is not forced; a forced one wins.
    serves(&p, site, "/shadowed", 200, "Shadowed file").await;
    redirects(&p, site, "/forced", 302, "/about").await;
    // The skipped rules do nothing.
    serves(&p, site, "/proxy/x", 404, "Rules 404").await;

    // Headers: every matching block, repeated names joined, the site's Cache-Control winning.
    let home = serves(&p, site, "/", 200, "Rules home").await;
    assert_eq!(home.header("x-frame-options"), "DENY");
    assert_eq!(home.header("x-site"), "rules-fixture");
    assert_eq!(home.header("x-content-type-options"), "nosniff");
    assert_eq!(home.header("referrer-policy"), "strict-origin-when-cross-origin");
    assert!(home.headers.get("x-robots-tag").is_none(), "production is indexed");
    let css = serves(&p, site, "/assets/site.css", 200, "sans-serif").await;
    assert_eq!(css.header("cache-control"), "public, max-age=3600");
    assert_eq!(css.header("x-site"), "rules-fixture, assets");
    let about = serves(&p, site, "/about", 200, "About page").await;
    assert_eq!(about.header("x-about"), "yes");
    assert_eq!(
        about.header("content-length"),
        about.body.len().to_string(),
        "the refused header is not sent"
    );
    // ... on 404 pages and redirects too.
    let missing = serves(&p, site, "/no/such/page", 404, "Rules 404").await;
    assert_eq!(missing.header("x-frame-options"), "DENY");
    let forced = redirects(&p, site, "/forced", 302, "/about").await;
    assert_eq!(forced.header("x-frame-options"), "DENY");

    // Clean URLs: one URL per page, the query string kept.
    redirects(&p, site, "/about.html", 301, "/about").await;
    redirects(&p, site, "/about/", 301, "/about").await;
    redirects(&p, site, "/docs", 301, "/docs/").await;
    redirects(&p, site, "/docs?page=2", 301, "/docs/?page=2").await;
    redirects(&p, site, "/docs/index.html", 301, "/docs/").await;
    redirects(&p, site, "/index.html", 301, "/").await;
    redirects(&p, site, "/docs/intro.html", 301, "/docs/intro").await;
    serves(&p, site, "/docs/", 200, "Docs index").await;
    serves(&p, site, "/docs/intro", 200, "Docs intro").await;
    let head = ask(&p, Method::HEAD, site, "/docs").await;
    assert_eq!((head.status.as_u16(), head.location()), (301, "/docs/"));
    // A file is not a directory.
    serves(&p, site, "/assets/site.css/", 404, "Rules 404").await;

    // The deployment's own hostname: the same rules, never indexed.
    let own = format!("{}--rules", &first[..9]);
    let a = serves(&p, &own, "/", 200, "Rules home").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");
    assert_eq!(a.header("x-frame-options"), "DENY");
    let a = redirects(&p, &own, "/docs", 301, "/docs/").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");
    let a = redirects(&p, &own, "/forced", 302, "/about").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");
    let a = serves(&p, &own, "/nope", 404, "Rules 404").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");
    let a = get(&p, "zzzzzzzzz--rules", "/").await;
    assert_eq!((a.status, a.header("x-robots-tag")), (StatusCode::NOT_FOUND, "noindex"));

    // A new production deployment: each deployment's own hostname keeps serving what it was.
    repo.write("about.html", "<!doctype html><h1>About, second version</h1>\n");
    repo.write("_redirects", "/forced /docs/ 301!\n");
    let second_sha = repo.commit("second version");
    let (second, _) = deploy_ready(&p, &token, "rules", json!({})).await;
    assert_eq!(p.deployment(&token, &second).await["commit_sha"], second_sha);
    serves(&p, site, "/about", 200, "About, second version").await;
    redirects(&p, site, "/forced", 301, "/docs/").await;
    serves(&p, &own, "/about", 200, "About page").await;
    redirects(&p, &own, "/forced", 302, "/about").await;
    let d = p.deployment(&token, &first).await;
    assert_eq!(
        d["deployment_url"],
        format!("http://{own}.localhost:{}/", p.port),
        "{d}"
    );
    let a = serves(&p, &format!("{}--rules", &second[..9]), "/about", 200, "second version").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");

    // A preview: its own content and the same conventions, never indexed.
    repo.checkout_new_branch("feature");
    repo.write("index.html", "<!doctype html><h1>Preview home</h1>\n");
    repo.commit("preview");
    let (preview, _) = deploy_ready(&p, &token, "rules", json!({ "branch": "feature" })).await;
    let a = serves(&p, "feature--rules", "/", 200, "Preview home").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");
    let a = redirects(&p, "feature--rules", "/about.html", 301, "/about").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");
    let a = redirects(&p, "feature--rules", "/forced", 301, "/docs/").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");
    let a = serves(&p, "feature--rules", "/nope", 404, "Rules 404").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");
    assert_eq!(a.header("x-frame-options"), "DENY");
    let a = serves(&p, &format!("{}--rules", &preview[..9]), "/", 200, "Preview home").await;
    assert_eq!(a.header("x-robots-tag"), "noindex");
    serves(&p, site, "/", 200, "Rules home").await;
}

#[tokio::test]
async fn single_page_apps_fall_back_for_routes_not_assets() {
    let git = GitServer::start().await;
    git.create_repo("spa", &fixture("spa"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    p.create_project(
        &token,
        json!({ "name": "spa", "git_url": git.url("spa"), "framework": "vite" }),
    )
    .await;
    deploy_ready(&p, &token, "spa", json!({})).await;
    let app = "Hello from the fixture";
    serves(&p, "spa", "/", 200, app).await;
    serves(&p, "spa", "/dashboard/settings", 200, app).await;
    serves(&p, "spa", "/dashboard/", 200, app).await;
    serves(&p, "spa", "/old-page.html", 200, app).await;
    redirects(&p, "spa", "/index.html", 301, "/").await;
    for asset in ["/assets/missing.js", "/missing.css", "/img/logo.png"] {
        let a = get(&p, "spa", asset).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{asset}");
        assert!(!a.body.contains(app), "{asset}: no index.html for a missing asset");
    }
}
