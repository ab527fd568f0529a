//! End to end through the real interfaces: a `cloudrunr serve` process, repositories served by
//! `git http-backend`, builds in bubblewrap, sites fetched by Host header.

use reqwest::{Method, StatusCode};
use serde_json::json;
use test_support::git_server::GitServer;
use test_support::{Platform, fixture, read_sse};

const FINAL: &[&str] = &["ready", "failed", "canceled", "timed_out"];

async fn objects_in_store(p: &Platform) -> usize {
    let root = p.data_dir().join("artifacts/objects");
    let mut n = 0;
    for shard in std::fs::read_dir(root).unwrap() {
        n += std::fs::read_dir(shard.unwrap().path()).unwrap().count();
    }
    n
}

#[tokio::test]
async fn push_build_stream_and_serve() {
    let git = GitServer::start().await;
    let repo = git.create_repo("spa", &fixture("spa"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    let project = p
        .create_project(
            &token,
            json!({ "name": "Fixture SPA", "git_url": git.url("spa"), "framework": "vite" }),
        )
        .await;
    assert_eq!(project["slug"], "fixture-spa");
    assert_eq!(project["branch"], "main", "the repository's default branch");
    assert_eq!(
        project["production_url"],
        format!("http://fixture-spa.localhost:{}/", p.port)
    );

    let (status, created) = p.post("/api/projects/fixture-spa/deployments", &token, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(created["deployment"]["state"], "queued");
    let id = created["deployment"]["id"].as_str().unwrap().to_owned();

    // Follow the live log from the start until the end event.
    let events = read_sse(&p, &token, &id, None, |e| e.event == "end").await;
    let lines = test_support::lines_in_order(&events);
    for (e, l) in events.iter().filter(|e| e.event == "message").zip(&lines) {
        assert_eq!(
            e.id.as_deref(),
            Some(l["seq"].to_string().as_str()),
            "event id is the sequence number"
        );
    }
    let find = |text: &str| {
        lines
            .iter()
            .find(|l| l["text"].as_str().unwrap().contains(text))
            .cloned()
    };
    assert!(
        find("built assets/app-").is_some_and(|l| l["stream"] == "stdout"),
        "{lines:#?}"
    );
    assert!(find("a warning on stderr").is_some_and(|l| l["stream"] == "stderr"));
    assert!(
        find("last line without a newline").is_some(),
        "the last line survives the exit"
    );
    assert!(find("Cloning").is_some_and(|l| l["stream"] == "system"));
    assert!(find("Framework: vite").is_some());
    // Every state change once, in order: from where the build was when the stream opened (it may
    // already be running) to ready.
    let states: Vec<String> = events
        .iter()
        .filter(|e| e.event == "state")
        .map(|e| e.json()["state"].as_str().unwrap().to_owned())
        .collect();
    let order = ["queued", "cloning", "installing", "building", "uploading", "ready"];
    let ranks: Vec<usize> = states
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{states:?}");
    assert!(ranks[0] <= 2, "the stream opened early in the build: {states:?}");
    assert_eq!(&states[states.len() - 3..], ["building", "uploading", "ready"]);
    let end = events.last().unwrap();
    assert_eq!(end.event, "end");
    assert_eq!(end.json()["state"], "ready");

    let d = p.deployment(&token, &id).await;
    assert_eq!(d["state"], "ready");
    assert_eq!(d["commit_sha"], repo.head());
    assert_eq!(d["framework"], "vite");
    assert_eq!(d["is_production"], true);
    assert_eq!(d["url"], format!("http://fixture-spa.localhost:{}/", p.port));
    assert_eq!(d["artifact"]["files"], 4, "{d}");
    for phase in ["cloning", "building", "uploading"] {
        assert!(d["phases"][phase].is_u64(), "phase {phase} timed: {d}");
    }
    assert!(d["finished_at"].is_string());

    // The site, by Host header.
    let index = p.site("fixture-spa", "/", &[]).await;
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        index.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("must-revalidate")
    );
    let etag = index.headers()["etag"].to_str().unwrap().to_owned();
    let html = index.text().await.unwrap();
    assert!(html.contains("Hello from the fixture"), "{html}");
    let script = html
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();

    let js = p.site("fixture-spa", &script, &[]).await;
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(js.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    let css = p.site("fixture-spa", "/style.css", &[]).await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");

    let route = p.site("fixture-spa", "/dashboard/settings", &[]).await;
    assert_eq!(route.status(), StatusCode::OK, "SPA fallback");
    assert!(route.text().await.unwrap().contains("Hello from the fixture"));
    assert_eq!(
        p.site("fixture-spa", "/assets/missing.js", &[]).await.status(),
        StatusCode::NOT_FOUND
    );

    let again = p.site("fixture-spa", "/", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let head = p.site_request(Method::HEAD, "fixture-spa", "/", &[]).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(p.site("nothing-here", "/", &[]).await.status(), StatusCode::NOT_FOUND);

    // The finished log, as JSON pages.
    let (status, page) = p.get(&format!("/api/deployments/{id}/logs?limit=3"), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["lines"].as_array().unwrap().len(), 3);
    assert_eq!(page["finished"], false);
    let (_, rest) = p.get(&format!("/api/deployments/{id}/logs?after=3"), &token).await;
    assert_eq!(rest["lines"][0]["seq"], 4);
    assert_eq!(rest["finished"], true);

    // Reconnecting with Last-Event-ID resumes after that line.
    let resumed = read_sse(&p, &token, &id, Some("3"), |e| e.event == "end").await;
    assert_eq!(resumed[0].id.as_deref(), Some("4"));
    assert_eq!(resumed.iter().filter(|e| e.event == "message").count(), lines.len() - 3);
    assert_eq!(resumed.last().unwrap().event, "end");
}

#[tokio::test]
async fn redeploys_store_only_what_changed_and_promote_rolls_back() {
    let git = GitServer::start().await;
    let repo = git.create_repo("site", &fixture("spa"));
    let first_sha = repo.head();
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    p.create_project(
        &token,
        json!({ "name": "site", "git_url": git.url("site"), "framework": "vite" }),
    )
    .await;

    let d1 = p.deploy(&token, "site").await;
    assert_eq!(p.wait_final(&token, &d1).await["state"], "ready");
    let objects_before = objects_in_store(&p).await;
    assert_eq!(
        p.site("site", "/about.txt", &[]).await.text().await.unwrap(),
        "about: version 1\n"
    );

    repo.write("public/about.txt", "about: version 2\n");
    let second_sha = repo.commit("about: version 2");
    let d2 = p.deploy(&token, "site").await;
    let second = p.wait_final(&token, &d2).await;
    assert_eq!(second["state"], "ready", "{}", p.log_text(&token, &d2).await);
    assert_eq!(second["commit_sha"], second_sha);
    assert_eq!(second["commit_message"], "about: version 2");
    assert_eq!(second["artifact"]["files"], 4);
    assert_eq!(
        second["artifact"]["new_files"], 1,
        "only the changed file is stored anew: {second}"
    );
    assert_eq!(objects_in_store(&p).await, objects_before + 1);
    assert_eq!(
        p.site("site", "/about.txt", &[]).await.text().await.unwrap(),
        "about: version 2\n"
    );

    let (_, list) = p.get("/api/projects/site/deployments", &token).await;
    let ids: Vec<&str> = list["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [d2.as_str(), d1.as_str()], "newest first");

    // Each deployment keeps its own URL, whatever production does.
    let first = p.deployment(&token, &d1).await;
    let own = first["deployment_url"].as_str().unwrap().to_owned();
    let label = format!("{}--site", &d1[..9]);
    assert_eq!(own, format!("http://{label}.localhost:{}/", p.port));
    let old = p.site(&label, "/about.txt", &[]).await;
    assert_eq!(old.headers()["x-robots-tag"], "noindex");
    assert_eq!(old.text().await.unwrap(), "about: version 1\n");

    // Roll back: the old files are served as soon as promote answers.
    let (status, promoted) = p
        .post(&format!("/api/deployments/{d1}/promote"), &token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["deployment"]["is_production"], true);
    assert_eq!(
        p.site("site", "/about.txt", &[]).await.text().await.unwrap(),
        "about: version 1\n"
    );
    let (_, project) = p.get("/api/projects/site", &token).await;
    assert_eq!(project["project"]["production_deployment_id"], d1);
    assert_eq!(p.deployment(&token, &d2).await["is_production"], false);

    // Build an exact earlier commit.
    let (status, pinned) = p
        .post(
            "/api/projects/site/deployments",
            &token,
            json!({ "commit": first_sha.to_uppercase() }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pinned}");
    let d3 = pinned["deployment"]["id"].as_str().unwrap();
    let third = p.wait_final(&token, d3).await;
    assert_eq!(third["state"], "ready", "{}", p.log_text(&token, d3).await);
    assert_eq!(third["commit_sha"], first_sha);
    assert_eq!(
        third["artifact"]["new_files"], 0,
        "every file of that commit is stored already"
    );
    assert_eq!(
        p.site("site", "/about.txt", &[]).await.text().await.unwrap(),
        "about: version 1\n"
    );
}

#[tokio::test]
async fn failing_build_is_failed_with_its_errors_in_the_log() {
    let git = GitServer::start().await;
    git.create_repo("broken", &fixture("failing"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    p.create_project(&token, json!({ "name": "broken", "git_url": git.url("broken") }))
        .await;
    let id = p.deploy(&token, "broken").await;
    let d = p.wait_final(&token, &id).await;
    assert_eq!(d["state"], "failed");
    assert!(d["error"].as_str().unwrap().contains("exited with code 2"), "{d}");
    let (_, page) = p.get(&format!("/api/deployments/{id}/logs"), &token).await;
    let lines = page["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stderr" && l["text"].as_str().unwrap().contains("error TS2322"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "system" && l["text"].as_str().unwrap().starts_with("Error:"))
    );
    assert_eq!(page["finished"], true);
    let (status, body) = p
        .post(&format!("/api/deployments/{id}/promote"), &token, json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_ready"))
    );
    let (status, body) = p
        .post(&format!("/api/deployments/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_cancelable"))
    );
    assert_eq!(
        p.site("broken", "/", &[]).await.status(),
        StatusCode::NOT_FOUND,
        "nothing deployed"
    );
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

async fn wait_no_processes(marker: &str) {
    for _ in 0..100 {
        if processes_with(marker).is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("processes survived the build: {:?}", processes_with(marker));
}

#[tokio::test]
async fn timeout_kills_the_build() {
    let git = GitServer::start().await;
    git.create_repo("slow", &fixture("slow"));
    let p = Platform::start_with(&[("CLOUDRUNR_BUILD_TIMEOUT", "4s")]).await;
    let token = p.signup("Ann").await;
    let marker = "4243.25";
    p.create_project(
        &token,
        json!({ "name": "slow", "git_url": git.url("slow"), "env": { "SLOW_MARKER": marker } }),
    )
    .await;
    let id = p.deploy(&token, "slow").await;
    let d = p.wait_final(&token, &id).await;
    assert_eq!(d["state"], "timed_out", "{d}");
    assert!(d["error"].as_str().unwrap().contains("time limit"), "{d}");
    assert!(p.log_text(&token, &id).await.contains("still building"));
    wait_no_processes(&format!("sleep {marker}")).await;
}

#[tokio::test]
async fn cancel_stops_the_build_and_the_queue_moves_on() {
    let git = GitServer::start().await;
    git.create_repo("slow", &fixture("slow"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    let marker = "4244.75";
    p.create_project(
        &token,
        json!({ "name": "slow", "git_url": git.url("slow"), "env": { "SLOW_MARKER": marker } }),
    )
    .await;
    let first = p.deploy(&token, "slow").await;
    let second = p.deploy(&token, "slow").await;
    let third = p.deploy(&token, "slow").await;

    // Wait until the first build runs; the others wait their turn behind it.
    let mut seen = false;
    for _ in 0..600 {
        if p.log_text(&token, &first).await.contains("still building") {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the first build did not start: {}", p.server_log());
    assert!(
        !processes_with(&format!("sleep {marker}")).is_empty(),
        "the helper process runs"
    );
    assert_eq!(
        p.deployment(&token, &second).await["state"],
        "queued",
        "one build at a time per project"
    );

    // A queued deployment is canceled at once.
    let (status, body) = p
        .post(&format!("/api/deployments/{third}/cancel"), &token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deployment"]["state"], "canceled");

    // A running one is stopped, with every process it started.
    let (status, body) = p
        .post(&format!("/api/deployments/{first}/cancel"), &token, json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let d = p.wait_final(&token, &first).await;
    assert_eq!(d["state"], "canceled");
    wait_no_processes(&format!("sleep {marker}")).await;

    // The queue moves on to the next deployment.
    for _ in 0..600 {
        let state = p.deployment(&token, &second).await["state"]
            .as_str()
            .unwrap()
            .to_owned();
        if state != "queued" {
            assert!(!FINAL.contains(&state.as_str()) || state == "canceled", "{state}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, _) = p
        .post(&format!("/api/deployments/{second}/cancel"), &token, json!({}))
        .await;
    assert!(status == StatusCode::ACCEPTED || status == StatusCode::OK);
    assert_eq!(p.wait_final(&token, &second).await["state"], "canceled");
    wait_no_processes(&format!("sleep {marker}")).await;
}

#[tokio::test]
async fn static_site_without_package_json() {
    let git = GitServer::start().await;
    git.create_repo("plain", &fixture("static"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    p.create_project(&token, json!({ "name": "plain", "git_url": git.url("plain") }))
        .await;
    let id = p.deploy(&token, "plain").await;
    let d = p.wait_final(&token, &id).await;
    assert_eq!(d["state"], "ready", "{}", p.log_text(&token, &id).await);
    assert_eq!(d["framework"], "static");
    assert!(
        p.site("plain", "/", &[])
            .await
            .text()
            .await
            .unwrap()
            .contains("Static home")
    );
    assert!(
        p.site("plain", "/about", &[])
            .await
            .text()
            .await
            .unwrap()
            .contains("About page")
    );
    let missing = p.site("plain", "/no/such/page", &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(
        missing.text().await.unwrap().contains("Custom 404"),
        "the site's own 404.html"
    );
}

#[tokio::test]
async fn hostile_build_cannot_reach_secrets_or_escape() {
    let git = GitServer::start().await;
    git.create_repo("hostile", &fixture("hostile"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    let data_dir = p.data_dir().display().to_string();
    p.create_project(
        &token,
        json!({
            "name": "hostile",
            "git_url": git.url("hostile"),
            "env": { "PROBE_DATA_DIR": data_dir, "API_SECRET": "supersecretvalue123" }
        }),
    )
    .await;
    let id = p.deploy(&token, "hostile").await;
    let d = p.wait_final(&token, &id).await;
    let log = p.log_text(&token, &id).await;
    assert_eq!(d["state"], "ready", "{log}");

    let jwt_secret = std::fs::read_to_string(p.data_dir().join("jwt-secret")).unwrap();
    assert!(!log.contains(jwt_secret.trim()), "the JWT secret never reaches a build");
    assert!(!log.contains("supersecretvalue123"), "env values are masked in logs");
    assert!(log.contains("API_SECRET=***"), "{log}");
    assert!(!log.contains("READABLE"), "{log}");
    assert!(p.data_dir().join("jwt-secret").exists() && p.data_dir().join("cloudrunr.db").exists());
    for hidden in ["data-dir", "jwt-secret", "database", "root", "shadow"] {
        assert!(log.contains(&format!("probe: hidden {hidden}")), "{hidden}: {log}");
    }
    assert!(log.contains("probe: /usr read-only"));
    assert!(log.contains("probe: whoami=1000"));
    assert!(
        !log.lines()
            .any(|l| l.starts_with("CLOUDRUNR_JWT") || l.starts_with("CLOUDRUNR_DATABASE")),
        "{log}"
    );
    assert!(log.contains("Skipped passwd.txt -> /etc/passwd"), "{log}");

    // The symlinks were neither stored nor served.
    assert_eq!(d["artifact"]["files"], 1, "{d}");
    for path in ["/passwd.txt", "/etc/passwd", "/etc/hostname"] {
        let resp = p.site("hostile", path, &[]).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!resp.text().await.unwrap().contains("root:"), "{path}");
    }
    let objects = p.data_dir().join("artifacts/objects");
    for shard in std::fs::read_dir(objects).unwrap().flatten() {
        for obj in std::fs::read_dir(shard.path()).unwrap().flatten() {
            assert!(
                !std::fs::read_to_string(obj.path())
                    .unwrap_or_default()
                    .contains("root:x:0:0")
            );
        }
    }

    // Request paths cannot leave the deployment.
    for target in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2Fetc%2Fpasswd",
        "/index.html%00.js",
    ] {
        let raw = p.raw_site_request("hostile", target).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{target}: {raw}");
        assert!(!raw.contains("root:"));
    }
}

#[tokio::test]
async fn builds_are_refused_without_the_sandbox_unless_asked() {
    let git = GitServer::start().await;
    git.create_repo("spa", &fixture("spa"));
    let p = Platform::start_with(&[("CLOUDRUNR_BWRAP", "/nonexistent/bwrap")]).await;
    let token = p.signup("Ann").await;
    p.create_project(
        &token,
        json!({ "name": "spa", "git_url": git.url("spa"), "framework": "vite" }),
    )
    .await;
    let id = p.deploy(&token, "spa").await;
    let d = p.wait_final(&token, &id).await;
    assert_eq!(d["state"], "failed");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.contains("bubblewrap") && error.contains("CLOUDRUNR_UNSAFE_NO_SANDBOX"),
        "{error}"
    );
    assert_eq!(
        git.request_count(),
        2,
        "nothing was cloned (only the branch lookup at creation)"
    );

    let unsafe_p = Platform::start_with(&[
        ("CLOUDRUNR_BWRAP", "/nonexistent/bwrap"),
        ("CLOUDRUNR_UNSAFE_NO_SANDBOX", "1"),
    ])
    .await;
    let token = unsafe_p.signup("Ann").await;
    unsafe_p
        .create_project(
            &token,
            json!({ "name": "spa", "git_url": git.url("spa"), "framework": "vite" }),
        )
        .await;
    let id = unsafe_p.deploy(&token, "spa").await;
    let d = unsafe_p.wait_final(&token, &id).await;
    assert_eq!(d["state"], "ready", "{}", unsafe_p.log_text(&token, &id).await);
    assert!(
        unsafe_p
            .site("spa", "/", &[])
            .await
            .text()
            .await
            .unwrap()
            .contains("Hello from the fixture")
    );
}

#[tokio::test]
async fn a_crash_mid_build_requeues_the_build() {
    let git = GitServer::start().await;
    git.create_repo("slow", &fixture("slow"));
    let mut p = Platform::start_with(&[("CLOUDRUNR_BUILD_TIMEOUT", "5s")]).await;
    let token = p.signup("Ann").await;
    let marker = "4245.5";
    p.create_project(
        &token,
        json!({ "name": "slow", "git_url": git.url("slow"), "env": { "SLOW_MARKER": marker } }),
    )
    .await;
    let id = p.deploy(&token, "slow").await;
    for _ in 0..600 {
        if p.log_text(&token, &id).await.contains("still building") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    p.crash_and_restart();
    wait_no_processes(&format!("sleep {marker}")).await;
    let d = p.wait_final(&token, &id).await;
    assert_eq!(
        d["state"], "timed_out",
        "built again after the restart, until its time limit: {d}"
    );
    let (_, page) = p.get(&format!("/api/deployments/{id}/logs?limit=5000"), &token).await;
    let lines = page["lines"].as_array().unwrap();
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "the second attempt continues the numbering"
    );
    let text: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(text.iter().filter(|t| t.starts_with("Cloning")).count(), 2, "{text:#?}");
    assert!(text.iter().any(|t| t.contains("interrupted")));
    wait_no_processes(&format!("sleep {marker}")).await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_live_log_streams() {
    let git = GitServer::start().await;
    git.create_repo("slow", &fixture("slow"));
    let mut p = Platform::start().await;
    let token = p.signup("Ann").await;
    let marker = "4246.5";
    p.create_project(
        &token,
        json!({ "name": "slow", "git_url": git.url("slow"), "env": { "SLOW_MARKER": marker } }),
    )
    .await;
    let id = p.deploy(&token, "slow").await;
    // A follower that would wait forever for the endless build.
    let stream = p
        .http
        .get(format!("{}/api/deployments/{id}/logs/stream", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    for _ in 0..600 {
        if p.log_text(&token, &id).await.contains("still building") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Without a bound on the grace period the server would wait for the stream forever.
    p.terminate();
    drop(stream);
    wait_no_processes(&format!("sleep {marker}")).await;
}
