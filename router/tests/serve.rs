//! End-to-end behaviour of `Sites`: a real SQLite database and a local artifact store in a
//! temporary directory, requests handed straight to `Sites::serve`.

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use db::ProjectUpdate;
use platform::DeploymentId;
use platform::artifacts::{ArtifactStore, ContentHash, FileEntry};
use platform::bus::{LogBus, Notice};
use platform::model::Project;
use platform::{ProjectSlug, RelPath};
use router::{RouterError, Sites};
use std::time::Duration;
use test_support::TestApp;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "public, max-age=0, must-revalidate";

struct Fixture {
    app: TestApp,
    sites: Sites,
}

impl Fixture {
    async fn new() -> Self {
        let app = TestApp::new().await;
        let sites = Sites::new(app.db.clone(), app.store.clone());
        Self { app, sites }
    }

    /// A project with one deployment in production, loaded into the table.
    async fn site(&self, slug: &str, spa: bool, files: &[(&str, &str)]) -> (Project, DeploymentId) {
        let project = self.app.project(slug).await;
        let deployment = self
            .app
            .deployment(&project)
            .spa(spa)
            .files(files)
            .production()
            .create()
            .await;
        self.sites.load().await.unwrap();
        (project, deployment)
    }

    async fn rename(&self, project: &Project, slug: &str) {
        self.app
            .db
            .update_project(
                &project.id,
                ProjectUpdate {
                    slug: ProjectSlug::parse(slug).unwrap(),
                    name: project.name.clone(),
                    git_url: project.git_url.clone(),
                    branch: project.branch.clone(),
                    build: project.build.clone(),
                    env: vec![],
                },
            )
            .await
            .unwrap();
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(&name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn send(sites: &Sites, label: &str, req: Request<Body>) -> Answer {
    let response = sites.serve(label, req).await;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(sites: &Sites, label: &str, path: &str) -> Answer {
    send(sites, label, Request::get(path).body(Body::empty()).unwrap()).await
}

const STATIC_SITE: &[(&str, &str)] = &[
    ("index.html", "<h1>home</h1>"),
    ("about.html", "<h1>about page</h1>"),
    ("docs/index.html", "<h1>docs</h1>"),
    ("assets/index-BXq3x8Zl.js", "console.log('app')"),
    ("assets/logo.png", "PNG"),
    ("404.html", "<h1>custom 404</h1>"),
];

const SPA: &[(&str, &str)] = &[
    ("index.html", "<div id=app></div>"),
    ("assets/index-BXq3x8Zl.js", "render()"),
];

#[tokio::test]
async fn serves_index_pages_and_pretty_urls() {
    let f = Fixture::new().await;
    f.site("blog", false, STATIC_SITE).await;

    let home = get(&f.sites, "blog", "/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.body, "<h1>home</h1>");
    assert_eq!(home.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(home.header(header::CONTENT_LENGTH), "13");
    assert_eq!(home.header(header::CACHE_CONTROL), REVALIDATE);
    assert_eq!(home.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(home.header(header::REFERRER_POLICY), "strict-origin-when-cross-origin");
    let hash = ContentHash::of(b"<h1>home</h1>");
    assert_eq!(home.header(header::ETAG), format!("\"{}\"", &hash.as_str()[..32]));

    assert_eq!(get(&f.sites, "blog", "/about").await.body, "<h1>about page</h1>");
    assert_eq!(get(&f.sites, "blog", "/docs/").await.body, "<h1>docs</h1>");
    // Host labels are case-insensitive; the query string is not part of the path.
    assert_eq!(get(&f.sites, "BLOG", "/about?x=1").await.body, "<h1>about page</h1>");

    // One URL per page: the other spellings move there, with the query string.
    for (path, location) in [
        ("/docs", "/docs/"),
        ("/docs?a=1&b", "/docs/?a=1&b"),
        ("/docs/index.html", "/docs/"),
        ("/index.html", "/"),
        ("/about.html", "/about"),
        ("/about/?x=1", "/about?x=1"),
    ] {
        let moved = get(&f.sites, "blog", path).await;
        assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY, "{path}");
        assert_eq!(moved.header(header::LOCATION), location, "{path}");
        assert_eq!(moved.header(header::CONTENT_LENGTH), "0", "{path}");
        assert_eq!(moved.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{path}");
        assert_eq!(moved.header(header::CACHE_CONTROL), REVALIDATE, "{path}");
        assert!(moved.body.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn about_directory_request_uses_its_index() {
    let f = Fixture::new().await;
    f.site(
        "site",
        false,
        &[("index.html", "home"), ("about/index.html", "about index")],
    )
    .await;
    let dir = get(&f.sites, "site", "/about/").await;
    assert_eq!((dir.status, dir.body.as_str()), (StatusCode::OK, "about index"));
    // Without the slash, relative links would resolve one level up: move to the directory.
    let bare = get(&f.sites, "site", "/about").await;
    assert_eq!(
        (bare.status, bare.header(header::LOCATION)),
        (StatusCode::MOVED_PERMANENTLY, "/about/")
    );
}

#[tokio::test]
async fn hashed_assets_are_immutable_others_revalidate() {
    let f = Fixture::new().await;
    f.site("blog", false, STATIC_SITE).await;
    let js = get(&f.sites, "blog", "/assets/index-BXq3x8Zl.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.body, "console.log('app')");
    assert_eq!(js.header(header::CONTENT_TYPE), "text/javascript; charset=utf-8");
    assert_eq!(js.header(header::CACHE_CONTROL), IMMUTABLE);
    let png = get(&f.sites, "blog", "/assets/logo.png").await;
    assert_eq!(png.header(header::CONTENT_TYPE), "image/png");
    assert_eq!(png.header(header::CACHE_CONTROL), REVALIDATE);
}

#[tokio::test]
async fn spa_routes_fall_back_to_index_but_assets_do_not() {
    let f = Fixture::new().await;
    f.site("shop", true, SPA).await;
    let deep = get(&f.sites, "shop", "/dashboard/settings/42").await;
    assert_eq!(deep.status, StatusCode::OK);
    assert_eq!(deep.body, "<div id=app></div>");
    assert_eq!(deep.header(header::CACHE_CONTROL), REVALIDATE);
    for missing in ["/assets/index-OLDHASH1.js", "/styles.css", "/img/logo.png"] {
        let r = get(&f.sites, "shop", missing).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{missing}");
        assert_ne!(r.body, "<div id=app></div>", "{missing}");
        assert_eq!(r.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
    }
}

#[tokio::test]
async fn custom_404_page_and_plain_404() {
    let f = Fixture::new().await;
    f.site("blog", false, STATIC_SITE).await;
    let custom = get(&f.sites, "blog", "/no/such/page").await;
    assert_eq!(custom.status, StatusCode::NOT_FOUND);
    assert_eq!(custom.body, "<h1>custom 404</h1>");
    // The 404 page is not the resource asked for: never a 304.
    let etag = custom.header(header::ETAG).to_owned();
    let again = send(
        &f.sites,
        "blog",
        Request::get("/no/such/page")
            .header(header::IF_NONE_MATCH, etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body, "<h1>custom 404</h1>");

    f.site("bare", false, &[("index.html", "hi")]).await;
    let plain = get(&f.sites, "bare", "/nope").await;
    assert_eq!(plain.status, StatusCode::NOT_FOUND);
    assert_eq!(plain.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert!(plain.body.contains("does not exist"), "{}", plain.body);
}

#[tokio::test]
async fn if_none_match_gives_304() {
    let f = Fixture::new().await;
    f.site("blog", false, STATIC_SITE).await;
    let first = get(&f.sites, "blog", "/assets/index-BXq3x8Zl.js").await;
    let etag = first.header(header::ETAG).to_owned();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    for condition in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        format!("\"a\",W/{etag} , \"b\""),
        "*".to_owned(),
    ] {
        let r = send(
            &f.sites,
            "blog",
            Request::get("/assets/index-BXq3x8Zl.js")
                .header(header::IF_NONE_MATCH, &condition)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{condition}");
        assert_eq!(r.body, "", "{condition}");
        assert_eq!(r.header(header::ETAG), etag);
        assert_eq!(r.header(header::CACHE_CONTROL), IMMUTABLE);
    }
    let stale = send(
        &f.sites,
        "blog",
        Request::get("/assets/index-BXq3x8Zl.js")
            .header(header::IF_NONE_MATCH, "\"0000\", W/\"1111\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body, "console.log('app')");
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let f = Fixture::new().await;
    f.site("blog", false, STATIC_SITE).await;
    let get_answer = get(&f.sites, "blog", "/about").await;
    let head = send(&f.sites, "blog", Request::head("/about").body(Body::empty()).unwrap()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body, "");
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::ETAG,
        header::CACHE_CONTROL,
        header::X_CONTENT_TYPE_OPTIONS,
    ] {
        assert_eq!(head.header(name.clone()), get_answer.header(name.clone()), "{name}");
    }
    assert_eq!(head.header(header::CONTENT_LENGTH), "19");
}

#[tokio::test]
async fn head_does_not_open_the_object() {
    let f = Fixture::new().await;
    let project = f.app.project("gone").await;
    // The manifest names a file whose object was never stored.
    let deployment = f.app.deployment(&project).create().await;
    let mut manifest = f.app.store.get_manifest(&deployment).await.unwrap().unwrap();
    manifest.files.insert(
        RelPath::parse("index.html").unwrap(),
        FileEntry {
            hash: ContentHash::of(b"never stored"),
            size: 12,
            content_type: "text/html".into(),
            encodings: Default::default(),
        },
    );
    f.app.store.put_manifest(&manifest).await.unwrap();
    f.app.db.set_production(&project.id, &deployment).await.unwrap();
    f.sites.load().await.unwrap();

    let head = send(&f.sites, "gone", Request::head("/").body(Body::empty()).unwrap()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header(header::CONTENT_LENGTH), "12");
    // GET must open it, finds it missing, and says so without panicking.
    let got = get(&f.sites, "gone", "/").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(got.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
}

#[tokio::test]
async fn only_get_and_head() {
    let f = Fixture::new().await;
    f.site("blog", false, STATIC_SITE).await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let r = send(
            &f.sites,
            "blog",
            Request::builder().method(method).uri("/").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(r.header(header::ALLOW), "GET, HEAD", "{method}");
    }
}

#[tokio::test]
async fn traversal_and_bad_bytes_are_400() {
    let f = Fixture::new().await;
    f.site("blog", true, STATIC_SITE).await;
    for bad in [
        "/../etc/passwd",
        "/%2e%2e/x",
        "/%2E%2e%2fetc",
        "/docs/../../x",
        "/a%00b",
        "/a%5cb",
        "/%ff",
    ] {
        let r = get(&f.sites, "blog", bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.header(header::CONTENT_TYPE), "text/html; charset=utf-8", "{bad}");
    }
    // Harmless oddities normalize and are served.
    assert_eq!(get(&f.sites, "blog", "//docs/./").await.body, "<h1>docs</h1>");
    let moved = get(&f.sites, "blog", "//docs/./index.html").await;
    assert_eq!(moved.header(header::LOCATION), "/docs/");
    assert_eq!(get(&f.sites, "blog", "/%61bout").await.body, "<h1>about page</h1>");
}

#[tokio::test]
async fn unknown_labels_and_undeployed_projects_are_404() {
    let f = Fixture::new().await;
    f.app.project("fresh").await;
    f.sites.load().await.unwrap();
    let unknown = get(&f.sites, "nobody", "/").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert!(unknown.body.contains("No site here"), "{}", unknown.body);
    let fresh = get(&f.sites, "fresh", "/").await;
    assert_eq!(fresh.status, StatusCode::NOT_FOUND);
    assert!(fresh.body.contains("Nothing deployed yet"), "{}", fresh.body);
    assert!(fresh.body.contains("fresh"), "{}", fresh.body);
}

#[tokio::test]
async fn a_new_table_is_empty_until_loaded() {
    let f = Fixture::new().await;
    let project = f.app.project("blog").await;
    f.app
        .deployment(&project)
        .files(STATIC_SITE)
        .production()
        .create()
        .await;
    assert_eq!(get(&f.sites, "blog", "/").await.status, StatusCode::NOT_FOUND);
    f.sites.load().await.unwrap();
    assert_eq!(get(&f.sites, "blog", "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn reload_follows_promotion_and_rollback() {
    let f = Fixture::new().await;
    let (project, v1) = f.site("blog", false, &[("index.html", "v1")]).await;
    let v2 = f.app.deploy_files(&project, &[("index.html", "v2")]).await;
    f.app.db.set_production(&project.id, &v2).await.unwrap();
    // Nothing changes until the table is told.
    assert_eq!(get(&f.sites, "blog", "/").await.body, "v1");
    f.sites.reload_project(&project.id).await.unwrap();
    assert_eq!(get(&f.sites, "blog", "/").await.body, "v2");
    f.app.db.set_production(&project.id, &v1).await.unwrap();
    f.sites.reload_project(&project.id).await.unwrap();
    assert_eq!(get(&f.sites, "blog", "/").await.body, "v1");
}

#[tokio::test]
async fn a_missing_manifest_keeps_the_old_content() {
    let f = Fixture::new().await;
    let (project, _v1) = f.site("blog", false, &[("index.html", "v1")]).await;
    let v2 = f.app.deploy_files(&project, &[("index.html", "v2")]).await;
    f.app.store.delete_manifest(&v2).await.unwrap();
    f.app.db.set_production(&project.id, &v2).await.unwrap();
    let err = f.sites.reload_project(&project.id).await.unwrap_err();
    assert!(matches!(err, RouterError::MissingManifest(ref d) if *d == v2), "{err}");
    assert_eq!(get(&f.sites, "blog", "/").await.body, "v1");
    // A full load installs everything else, keeps the old content, and names the failure.
    f.app.project("other").await;
    match f.sites.load().await {
        Err(RouterError::Incomplete(failed)) => assert_eq!(failed, vec![project.id.clone()]),
        other => panic!("expected Incomplete, got {other:?}"),
    }
    assert_eq!(get(&f.sites, "blog", "/").await.body, "v1");
    assert!(get(&f.sites, "other", "/").await.body.contains("Nothing deployed yet"));
    // With no earlier content to fall back on, the site says it is broken rather than absent.
    let cold = Sites::new(f.app.db.clone(), f.app.store.clone());
    assert!(matches!(cold.load().await, Err(RouterError::Incomplete(_))));
    assert_eq!(get(&cold, "blog", "/").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(get(&cold, "other", "/").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleted_projects_disappear() {
    let f = Fixture::new().await;
    let (project, _) = f.site("blog", false, STATIC_SITE).await;
    f.app.db.delete_project(&project.id).await.unwrap();
    assert_eq!(get(&f.sites, "blog", "/").await.status, StatusCode::OK);
    f.sites.reload_project(&project.id).await.unwrap();
    let r = get(&f.sites, "blog", "/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("No site here"), "{}", r.body);
}

#[tokio::test]
async fn renamed_projects_move_to_their_new_label() {
    let f = Fixture::new().await;
    let (project, _) = f.site("old-name", false, STATIC_SITE).await;
    f.rename(&project, "new-name").await;
    f.sites.reload_project(&project.id).await.unwrap();
    let old = get(&f.sites, "old-name", "/").await;
    assert_eq!(old.status, StatusCode::NOT_FOUND);
    assert!(old.body.contains("No site here"), "{}", old.body);
    assert_eq!(get(&f.sites, "new-name", "/").await.body, "<h1>home</h1>");
}

/// Polls until `label` + `/` answers `body`, failing after a few seconds.
async fn eventually_serves(sites: &Sites, label: &str, body: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(sites, label, "/").await;
        if r.status == StatusCode::OK && r.body == body {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{label} still answers {} {:?}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn watcher_reloads_on_routes_changed() {
    let f = Fixture::new().await;
    let (project, _) = f.site("blog", false, &[("index.html", "v1")]).await;
    let bus = f.app.bus.clone();
    let watcher = f.sites.spawn_watcher(bus.clone());

    let v2 = f.app.deploy_files(&project, &[("index.html", "v2")]).await;
    f.app.db.set_production(&project.id, &v2).await.unwrap();
    bus.notify(Notice::WorkAvailable).await.unwrap();
    bus.notify(Notice::RoutesChanged {
        project_id: project.id.clone(),
    })
    .await
    .unwrap();
    eventually_serves(&f.sites, "blog", "v2").await;

    // A brand-new project appears too.
    let fresh = f.app.project("fresh").await;
    f.app
        .deployment(&fresh)
        .files(&[("index.html", "fresh")])
        .production()
        .create()
        .await;
    bus.notify(Notice::RoutesChanged { project_id: fresh.id })
        .await
        .unwrap();
    eventually_serves(&f.sites, "fresh", "fresh").await;
    watcher.abort();
}

#[tokio::test]
async fn watcher_reloads_everything_after_lagging() {
    let f = Fixture::new().await;
    let (project, _) = f.site("blog", false, &[("index.html", "v1")]).await;
    let bus = f.app.bus.clone();
    let watcher = f.sites.spawn_watcher(bus.clone());
    let v2 = f.app.deploy_files(&project, &[("index.html", "v2")]).await;
    f.app.db.set_production(&project.id, &v2).await.unwrap();
    // Overflow the watcher's buffer without yielding (single-threaded test runtime): it misses
    // everything, including any RoutesChanged, and must reload from the database.
    for _ in 0..20_000 {
        bus.notify(Notice::WorkAvailable).await.unwrap();
    }
    eventually_serves(&f.sites, "blog", "v2").await;
    watcher.abort();
}

#[tokio::test]
async fn clones_share_one_table() {
    let f = Fixture::new().await;
    let copy = f.sites.clone();
    f.site("blog", false, STATIC_SITE).await;
    assert_eq!(get(&copy, "blog", "/").await.body, "<h1>home</h1>");
}

#[tokio::test]
async fn previews_are_served_at_branch_labels_and_not_indexed() {
    let f = Fixture::new().await;
    let (project, _) = f.site("shop", false, &[("index.html", "production")]).await;
    f.app
        .deployment(&project)
        .preview("Feature/New-Cart")
        .files(&[("index.html", "preview")])
        .ready()
        .create()
        .await;
    f.sites.reload_project(&project.id).await.unwrap();

    let answer = get(&f.sites, "feature-new-cart--shop", "/").await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "preview"));
    assert_eq!(
        answer.header(header::HeaderName::from_static("x-robots-tag")),
        "noindex"
    );
    let upper = get(&f.sites, "FEATURE-NEW-CART--SHOP", "/").await;
    assert_eq!(upper.body, "preview", "labels are case-insensitive");
    let production = get(&f.sites, "shop", "/").await;
    assert_eq!(production.body, "production", "a preview never touches production");
    assert_eq!(
        get(&f.sites, "other-branch--shop", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&f.sites, "feature-new-cart--nope", "/").await.status,
        StatusCode::NOT_FOUND
    );
}

/// A production deployment of `files` with `_redirects` and `_headers` as the builder would have
/// parsed them, ready (so it also has its own hostname), loaded into the table.
async fn site_with_rules(
    f: &Fixture,
    slug: &str,
    files: &[(&str, &str)],
    redirects: &str,
    headers: &str,
) -> DeploymentId {
    use platform::site_rules::{SiteRules, parse_headers, parse_redirects};
    let (r, h) = (parse_redirects(redirects.as_bytes()), parse_headers(headers.as_bytes()));
    assert!(r.warnings.is_empty() && h.warnings.is_empty(), "{r:?} {h:?}");
    let rules = SiteRules {
        redirects: r.rules,
        headers: h.rules,
    };
    let project = f.app.project(slug).await;
    let deployment = f
        .app
        .deployment(&project)
        .files(files)
        .rules(rules)
        .ready()
        .production()
        .create()
        .await;
    f.sites.load().await.unwrap();
    deployment
}

#[tokio::test]
async fn redirects_and_headers_apply_to_every_answer() {
    let f = Fixture::new().await;
    let deployment = site_with_rules(
        &f,
        "rules",
        STATIC_SITE,
        "/old/*  /docs/:splat  301\n/app/*  /index.html  200\n/about  /elsewhere  302\n/about.html  /docs/  302!\n",
        "/*\n  X-Frame-Options: DENY\n  Cache-Control: no-cache\n/assets/*\n  Cache-Control: public, max-age=60\n",
    )
    .await;
    let own = format!("{}--rules", deployment.short());
    for label in ["rules", own.as_str()] {
        let noindex = if label == "rules" { "" } else { "noindex" };
        let robots = |a: &Answer| a.header(header::HeaderName::from_static("x-robots-tag")).to_owned();
        let frame = |a: &Answer| a.header(header::HeaderName::from_static("x-frame-options")).to_owned();

        let moved = get(&f.sites, label, "/old/intro?q=1").await;
        assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY, "{label}");
        assert_eq!(moved.header(header::LOCATION), "/docs/intro?q=1");
        assert_eq!(
            (frame(&moved), robots(&moved)),
            ("DENY".into(), noindex.into()),
            "{label}"
        );

        let rewritten = get(&f.sites, label, "/app/x/y").await;
        assert_eq!(
            (rewritten.status, rewritten.body.as_str()),
            (StatusCode::OK, "<h1>home</h1>")
        );
        assert_eq!(
            rewritten.header(header::CACHE_CONTROL),
            "no-cache",
            "the site's value wins"
        );

        let shadowed = get(&f.sites, label, "/about").await;
        assert_eq!(
            shadowed.body, "<h1>about page</h1>",
            "{label}: the file shadows the rule"
        );
        let forced = get(&f.sites, label, "/about.html").await;
        assert_eq!(
            (forced.status, forced.header(header::LOCATION)),
            (StatusCode::FOUND, "/docs/"),
            "{label}: a forced rule beats the file"
        );

        let png = get(&f.sites, label, "/assets/logo.png").await;
        assert_eq!(
            png.header(header::CACHE_CONTROL),
            "no-cache, public, max-age=60",
            "blocks join"
        );

        let missing = get(&f.sites, label, "/nope").await;
        assert_eq!(
            (missing.status, missing.body.as_str()),
            (StatusCode::NOT_FOUND, "<h1>custom 404</h1>")
        );
        assert_eq!(
            (frame(&missing), robots(&missing)),
            ("DENY".into(), noindex.into()),
            "{label}"
        );

        let pretty = get(&f.sites, label, "/docs").await;
        assert_eq!(pretty.header(header::LOCATION), "/docs/");
        assert_eq!(robots(&pretty), noindex, "{label}");
    }
    let unknown = get(&f.sites, "zzzzzzzzz--rules", "/").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.header(header::HeaderName::from_static("x-robots-tag")),
        "noindex"
    );
}
