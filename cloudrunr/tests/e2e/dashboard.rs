//! The dashboard in a real headless Chromium, and its safety properties over plain HTTP:
//! anti-forgery, cookie flags, escaping of hostile text, and one user never seeing another's pages.

use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::json;
use test_support::browser::{Browser, output_dir};
use test_support::git_server::{GitServer, Repo};
use test_support::{Client, Platform, csrf_of, fixture};

/// A build that takes a few seconds and says so line by line, so the log can be watched live.
const SLOW_BUILD: &str = r#"
const steps = 6;
let i = 0;
const timer = setInterval(() => {
  i += 1;
  console.log(`step ${i} of ${steps}`);
  if (i === steps) {
    clearInterval(timer);
    require("./real-build.js");
  }
}, 400);
"#;

/// The fixture app, with a build slow enough to watch.
fn slow_repo(git: &GitServer, name: &str) -> Repo {
    let repo = git.create_repo(name, &fixture("spa"));
    let real = std::fs::read_to_string(repo.path().join("build.js")).unwrap();
    repo.write("real-build.js", real);
    repo.write("build.js", SLOW_BUILD);
    repo.commit("Build slowly");
    repo
}

#[tokio::test]
async fn sign_up_create_deploy_watch_and_roll_back_in_a_browser() {
    let git = GitServer::start().await;
    let repo = slow_repo(&git, "web");
    let p = Platform::start().await;
    let b = Browser::start().await;

    // Sign up.
    b.goto(&format!("{}/signup", p.base)).await;
    b.fill("#name", "Ann Example").await;
    b.fill("#email", "ann@example.com").await;
    b.fill("#password", "correct horse battery").await;
    b.submit("form.form").await;
    b.wait_for_text("main h1", "Projects").await;
    assert!(b.text(".empty").await.contains("No projects yet"));

    // A project from a git URL: the detected settings are shown first.
    b.click("a[href='/projects/new']").await;
    b.fill("#git_url", &git.url("web")).await;
    b.submit("form.form").await;
    b.wait_for("#detected").await;
    assert!(
        b.text("#detected").await.contains("Package manager: npm"),
        "{}",
        b.text("#detected").await
    );
    assert_eq!(b.attr("#name", "value").await.as_deref(), Some("web"));
    b.select("#framework", "vite").await;
    b.fill("#env-key-1", "GREETING").await;
    b.fill("#env-value-1", "hello there").await;
    b.submit("form.form").await;

    // The deployment page: lines appear while the build runs, the state turns ready, no reload.
    b.wait_for("main[data-page='deployment']").await;
    let page_url = b.current_url().await;
    b.eval("window.__stillTheSamePage = true; return true").await;
    b.wait_for_text("#log", "step 2 of 6").await;
    let during = b.attr("#deployment-state", "data-state").await.unwrap_or_default();
    assert!(
        ["cloning", "installing", "building"].contains(&during.as_str()),
        "still building: {during}"
    );
    b.wait_until("the deployment is ready", || async {
        b.attr("#deployment-state", "data-state").await.as_deref() == Some("ready")
    })
    .await;
    assert_eq!(b.current_url().await, page_url);
    assert_eq!(
        b.eval("return window.__stillTheSamePage === true").await,
        json!(true),
        "no reload happened"
    );
    assert!(b.text("#log").await.contains("step 6 of 6"));
    assert_eq!(b.text("#deployment-state").await, "Ready");
    b.screenshot(&output_dir().join("deployment-page.png")).await;
    assert!(output_dir().join("deployment-page.png").exists());

    // The site.
    let site = b.attr("#site-url", "href").await.unwrap();
    assert_eq!(site, format!("http://web.localhost:{}/", p.port));
    b.goto(&site).await;
    b.wait_for_text("#message", "Hello from the fixture").await;

    // A second deployment with new content, then a rollback to the first from the project page.
    repo.write("src/message.txt", "Second version\n");
    repo.commit("Second version");
    b.goto(&format!("{}/projects/web", p.base)).await;
    b.submit("form[action='/projects/web/deploy']").await;
    b.wait_for("main[data-page='deployment']").await;
    b.wait_until("the second deployment is ready", || async {
        b.attr("#deployment-state", "data-state").await.as_deref() == Some("ready")
    })
    .await;
    b.goto(&site).await;
    b.wait_for_text("#message", "Second version").await;

    b.goto(&format!("{}/projects/web", p.base)).await;
    assert_eq!(b.texts("#deployments tbody tr").await.len(), 2);
    b.click("#deployments button[data-promote]").await;
    b.wait_for_text(".flash", "now serves").await;
    b.goto(&site).await;
    b.wait_for_text("#message", "Hello from the fixture").await;
    b.close().await;
}

#[tokio::test]
async fn session_cookies_are_http_only_lax_and_host_only() {
    let p = Platform::start().await;
    let mut c = Client::new(&p);
    let resp = c.sign_up("Ann", "ann@example.com").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("cloudrunr_session="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{flag}: {cookie}");
    }
    assert!(
        !cookie.to_lowercase().contains("domain="),
        "host-only, never shared with sites: {cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http here: {cookie}");
    let (status, home) = c.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("No projects yet"));

    // Behind https, the cookie is Secure with the __Host- prefix.
    let https = Platform::start_with(&[("CLOUDRUNR_PUBLIC_URL", "https://deploy.example.com")]).await;
    let resp = Client::new(&https).sign_up("Ann", "ann@example.com").await;
    let cookie = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-cloudrunr_session="))
        .expect("a __Host- session cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn forms_posted_from_elsewhere_are_refused() {
    let git = GitServer::start().await;
    git.create_repo("site", &fixture("spa"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    p.create_project(&token, json!({ "name": "victim", "git_url": git.url("site") }))
        .await;

    let mut c = Client::new(&p);
    let (_, page) = c.get("/login").await;
    let csrf = csrf_of(&page);
    let resp = c
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "ann@example.com"),
                ("password", "correct horse battery"),
            ],
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "logged in");
    let (_, project_page) = c.get("/projects/victim").await;
    let csrf = csrf_of(&project_page);

    // No token, a wrong one, or the right one from another origin: refused, and nothing deleted.
    let evil_origin = format!("http://evil.localhost:{}", p.port);
    type Attempt<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let forged: [Attempt; 3] = [
        (&[("confirm", "victim")], None),
        (
            &[("confirm", "victim"), ("csrf", "00000000000000000000000000000000")],
            None,
        ),
        (&[("confirm", "victim"), ("csrf", &csrf)], Some(&evil_origin)),
    ];
    for (form, origin) in forged {
        let resp = c.post("/projects/victim/delete", form, origin).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{form:?} from {origin:?}");
        assert!(resp.text().await.unwrap().contains("Request refused"));
    }
    let (status, _) = p.get("/api/projects/victim", &token).await;
    assert_eq!(status, StatusCode::OK, "the project survived");
    // A log-in form without the pre-session token is refused too (no log-in forgery).
    let resp = Client::new(&p)
        .post("/login", &[("email", "ann@example.com"), ("password", "x")], None)
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // The real form, from the page, works.
    let resp = c
        .post(
            "/projects/victim/delete",
            &[("confirm", "victim"), ("csrf", &csrf)],
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/?done=deleted");
    let (status, _) = p.get("/api/projects/victim", &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_hostile_site_cannot_drive_the_dashboard() {
    // A deployed site (on *.localhost, another site for the browser) posts a form to the dashboard.
    let git = GitServer::start().await;
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    git.create_repo("victim", &fixture("spa"));
    p.create_project(&token, json!({ "name": "victim", "git_url": git.url("victim") }))
        .await;
    let evil = git.create_repo("evil", &fixture("static"));
    evil.write(
        "index.html",
        format!(
            "<!doctype html><form id=f method=post action=\"{}/projects/victim/delete\">\
             <input name=confirm value=victim></form><script>document.getElementById('f').submit()</script>",
            p.base
        ),
    );
    evil.commit("An attack");
    p.create_project(&token, json!({ "name": "evil", "git_url": git.url("evil") }))
        .await;
    let id = p.deploy(&token, "evil").await;
    assert_eq!(p.wait_final(&token, &id).await["state"], "ready");

    let b = Browser::start().await;
    b.goto(&format!("{}/login", p.base)).await;
    b.fill("#email", "ann@example.com").await;
    b.fill("#password", "correct horse battery").await;
    b.submit("form.form").await;
    b.wait_for_text("main h1", "Projects").await;
    b.goto(&format!("http://evil.localhost:{}/", p.port)).await;
    b.wait_until("the forged form was posted", || async {
        b.current_url().await.starts_with(&p.base)
    })
    .await;
    let (status, _) = p.get("/api/projects/victim", &token).await;
    assert_eq!(status, StatusCode::OK, "the cross-site post deleted nothing");
    b.close().await;
}

#[tokio::test]
async fn hostile_commit_messages_and_log_lines_render_as_text() {
    let git = GitServer::start().await;
    let repo = git.create_repo("site", &fixture("spa"));
    let hostile = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">";
    let build = std::fs::read_to_string(repo.path().join("build.js")).unwrap();
    repo.write(
        "build.js",
        format!("console.log({});\n{build}", serde_json::to_string(hostile).unwrap()),
    );
    repo.commit(hostile);
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    p.create_project(
        &token,
        json!({ "name": "<b>Bold</b> & \"quoted\"", "slug": "site", "git_url": git.url("site") }),
    )
    .await;
    let id = p.deploy(&token, "site").await;
    assert_eq!(p.wait_final(&token, &id).await["state"], "ready");

    let mut c = Client::new(&p);
    let (_, page) = c.get("/login").await;
    let csrf = csrf_of(&page);
    c.post(
        "/login",
        &[
            ("csrf", &csrf),
            ("email", "ann@example.com"),
            ("password", "correct horse battery"),
        ],
        None,
    )
    .await;
    let (status, html) = c.get(&format!("/deployments/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script>window.__pwned"), "raw script in the page");
    assert!(!html.contains("<img src=x"), "raw tag in the page");
    // Both the commit message and the log line are there, as escaped text.
    let escaped = "&#60;script&#62;window.__pwned = 1&#60;/script&#62;";
    assert!(
        html.matches(escaped).count() >= 2,
        "escaped commit message and log line: {html}"
    );
    let (_, project) = c.get("/projects/site").await;
    assert!(
        project.contains("&#60;b&#62;Bold&#60;/b&#62; &#38; &#34;quoted&#34;"),
        "{project}"
    );

    // And in a browser, with the live log rendering the same lines: nothing runs.
    let b = Browser::start().await;
    b.goto(&format!("{}/login", p.base)).await;
    b.fill("#email", "ann@example.com").await;
    b.fill("#password", "correct horse battery").await;
    b.submit("form.form").await;
    b.wait_for_text("main h1", "Projects").await;
    b.goto(&format!("{}/deployments/{id}", p.base)).await;
    b.wait_for_text("#log", "window.__pwned = 1").await;
    b.wait_for_text("#log-status", "Finished").await;
    assert_eq!(b.eval("return window.__pwned === undefined").await, json!(true));
    assert!(b.text("[data-field='commit_message']").await.contains("<script>"));
    b.close().await;
}

#[tokio::test]
async fn another_user_cannot_open_the_pages() {
    let git = GitServer::start().await;
    git.create_repo("site", &fixture("spa"));
    let p = Platform::start().await;
    let ann = p.signup("Ann").await;
    p.create_project(
        &ann,
        json!({ "name": "anns", "git_url": git.url("site"), "framework": "vite" }),
    )
    .await;
    let id = p.deploy(&ann, "anns").await;
    assert_eq!(p.wait_final(&ann, &id).await["state"], "ready");

    let mut bob = Client::new(&p);
    assert_eq!(
        bob.sign_up("Bob", "bob@example.com").await.status(),
        StatusCode::SEE_OTHER
    );
    for path in [
        "/projects/anns".to_owned(),
        format!("/deployments/{id}"),
        format!("/deployments/{id}/log.txt"),
    ] {
        let (status, page) = bob.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.contains("anns") || !page.contains("Deployments"), "{path}");
    }
    let (_, home) = bob.get("/").await;
    let csrf = csrf_of(&home);
    let resp = bob
        .post(&format!("/deployments/{id}/promote"), &[("csrf", &csrf)], None)
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = bob
        .post("/projects/anns/delete", &[("csrf", &csrf), ("confirm", "anns")], None)
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (status, _) = bob.get("/admin").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only the first user administers");
    let (status, _) = p.get("/api/projects/anns", &ann).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn repeated_failed_log_ins_are_slowed_down() {
    let p = Platform::start().await;
    p.signup("Ann").await;
    let mut c = Client::new(&p);
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let (_, page) = c.get("/login").await;
        let csrf = csrf_of(&page);
        let resp = c
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("email", "ann@example.com"),
                    ("password", "wrong password"),
                ],
                None,
            )
            .await;
        statuses.push(resp.status());
    }
    assert!(
        statuses[..10].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    // The right password is refused too while the account is locked: guessing gains nothing.
    let (_, page) = c.get("/login").await;
    let csrf = csrf_of(&page);
    let resp = c
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "ann@example.com"),
                ("password", "correct horse battery"),
            ],
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.text().await.unwrap().contains("try again in"));
}
