//! Build logs through the real binary: a flooding build is cut at the log's cap and still
//! deploys, a large log downloads in bounded memory, a flooding build does not hold up another
//! one, and only values long enough to be secrets are masked.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use test_support::cluster::{self, Services};
use test_support::git_server::GitServer;
use test_support::memory::rss_bytes;
use test_support::{Client, Platform, csrf_of, fixture};

const NOTICE: &str = "log truncated: ";
const DEPLOY: &str = "mkdir -p dist && echo '<h1>ok</h1>' > dist/index.html";

struct Env {
    git: GitServer,
    p: Platform,
    token: String,
}

impl Env {
    async fn start(env: &[(&str, &str)]) -> Env {
        let git = GitServer::start().await;
        git.create_repo("site", &fixture("static"));
        let p = Platform::start_with(env).await;
        Env::on(git, p).await
    }

    async fn on(git: GitServer, p: Platform) -> Env {
        let token = p.signup("Ann").await;
        Env { git, p, token }
    }

    /// A project building the static fixture with `command` (and `env`); returns its slug.
    async fn project(&self, name: &str, command: &str, env: Value) -> String {
        let project = self
            .p
            .create_project(
                &self.token,
                json!({
                    "name": name,
                    "git_url": self.git.url("site"),
                    "framework": "static",
                    "build_command": command,
                    "output_dir": "dist",
                    "env": env,
                }),
            )
            .await;
        project["slug"].as_str().unwrap().to_owned()
    }

    /// Deploys `slug` and waits for the end; returns the deployment and how long it took.
    async fn build(&self, slug: &str) -> (Value, Duration) {
        let started = Instant::now();
        let id = self.p.deploy(&self.token, slug).await;
        let d = self.p.wait_final(&self.token, &id).await;
        (d, started.elapsed())
    }

    /// Every stored line of deployment `id`, read page by page through the JSON API.
    async fn lines(&self, id: &str) -> Vec<Value> {
        let mut lines: Vec<Value> = Vec::new();
        let mut after = 0;
        loop {
            let (status, page) = self
                .p
                .get(
                    &format!("/api/deployments/{id}/logs?after={after}&limit=5000"),
                    &self.token,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let got = page["lines"].as_array().unwrap();
            if let Some(last) = got.last() {
                after = last["seq"].as_u64().unwrap();
            }
            lines.extend(got.iter().cloned());
            if page["finished"] == true {
                return lines;
            }
            assert!(!got.is_empty(), "an unfinished page has lines");
        }
    }
}

fn text(line: &Value) -> &str {
    line["text"].as_str().unwrap()
}

/// The log of a build cut at its cap: one notice naming `limit`, the build's output before it
/// only, the platform's own lines after it, and everything within the cap.
fn assert_cut(lines: &[Value], limit: &str, max_bytes: usize, max_lines: usize) {
    let all: Vec<&str> = lines.iter().map(text).collect();
    let notices: Vec<usize> = (0..lines.len()).filter(|&i| all[i].starts_with(NOTICE)).collect();
    assert_eq!(
        notices.len(),
        1,
        "one notice: {:?}",
        &all[all.len().saturating_sub(12)..]
    );
    let at = notices[0];
    let notice = &lines[at];
    assert_eq!(notice["stream"], "system");
    assert!(all[at].contains(&format!("limit of {limit}")), "{}", all[at]);
    assert!(all[at].contains("the build goes on"), "{}", all[at]);
    assert!(
        lines[..at].iter().filter(|l| l["stream"] == "stdout").count() > 3,
        "the output before the cap is kept"
    );
    let after: Vec<&str> = lines[at + 1..]
        .iter()
        .inspect(|l| {
            assert_eq!(
                l["stream"], "system",
                "only the platform's lines follow the notice: {l}"
            )
        })
        .map(text)
        .collect();
    assert!(
        after.last().is_some_and(|l| l.starts_with("Deployed ")),
        "the build went on to deploy: {after:?}"
    );
    let bytes: usize = all.iter().map(|t| t.len()).sum();
    assert!(bytes <= max_bytes, "{bytes} bytes stored");
    assert!(lines.len() <= max_lines, "{} lines stored", lines.len());
}

#[tokio::test]
async fn a_flooding_build_is_cut_at_the_cap_and_deploys() {
    let env = Env::start(&[
        ("CLOUDRUNR_BUILD_LOG_MAX_BYTES", "100000"),
        ("CLOUDRUNR_BUILD_LOG_MAX_LINES", "1000"),
    ])
    .await;
    // Many short lines reach the line cap; a few very long ones the byte cap.
    let many = env
        .project(
            "many",
            &format!("yes 'flood line' | head -n 200000; {DEPLOY}"),
            json!({}),
        )
        .await;
    let long = env
        .project(
            "long",
            &format!(
                "i=0; while [ $i -lt 40 ]; do head -c 20000 /dev/zero | tr '\\0' x; echo; i=$((i+1)); done; {DEPLOY}"
            ),
            json!({}),
        )
        .await;

    let (d, _) = env.build(&many).await;
    assert_eq!(d["state"], "ready", "{d}");
    let lines = env.lines(d["id"].as_str().unwrap()).await;
    assert_cut(&lines, "1000 lines", 100_000, 1000);
    assert!(lines.iter().any(|l| text(l) == "flood line"));

    let (d, _) = env.build(&long).await;
    assert_eq!(d["state"], "ready", "{d}");
    let lines = env.lines(d["id"].as_str().unwrap()).await;
    assert_cut(&lines, "100000 bytes", 100_000, 1000);
    for l in lines.iter().filter(|l| l["stream"] == "stdout") {
        assert!(text(l).starts_with("xxxx"), "{l}");
        assert!(
            text(l).ends_with(" … [3616 more bytes dropped]"),
            "one line is cut at 16 KiB"
        );
        assert!(text(l).len() < 16 * 1024 + 64);
    }
}

#[tokio::test]
async fn the_cap_holds_for_builds_in_their_own_process() {
    // The components apart: builds are `cloudrunr build` children of the api, which report
    // through its internal routes and Kafka; the api hands them its limits.
    let Some(services) = Services::get() else { return };
    let git = GitServer::start().await;
    git.create_repo("site", &fixture("static"));
    let p = cluster::start(&services, &[("CLOUDRUNR_BUILD_LOG_MAX_LINES", "200")]).await;
    let env = Env::on(git, p).await;
    let slug = env
        .project(
            "apart",
            &format!("yes 'flood line' | head -n 100000; {DEPLOY}"),
            json!({}),
        )
        .await;
    let (d, _) = env.build(&slug).await;
    assert_eq!(d["state"], "ready", "{d}\n{}", env.p.server_log());
    let lines = env.lines(d["id"].as_str().unwrap()).await;
    assert_cut(&lines, "200 lines", 50_000_000, 200);
}

#[tokio::test]
async fn short_env_values_stay_visible_and_long_ones_are_masked() {
    let env = Env::start(&[]).await;
    let slug = env
        .project(
            "masks",
            &format!("echo \"port=$PORT five=$FIVE six=$SIX secret=$API_SECRET\"; {DEPLOY}"),
            json!({ "PORT": "3000", "FIVE": "abcde", "SIX": "bcdefg", "API_SECRET": "longsecretvalue42" }),
        )
        .await;
    let (d, _) = env.build(&slug).await;
    assert_eq!(d["state"], "ready", "{d}");
    let log = env.p.log_text(&env.token, d["id"].as_str().unwrap()).await;
    assert!(
        log.lines().any(|l| l == "port=3000 five=abcde six=*** secret=***"),
        "{log}"
    );
    assert!(!log.contains("longsecretvalue42") && !log.contains("bcdefg"), "{log}");
}

/// A dashboard session of the user `env` signed up.
async fn dashboard(p: &Platform) -> Client {
    let mut c = Client::new(p);
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
    c
}

/// Downloads `url` (a `log.txt`) with the session `cookie`; returns its bytes and lines.
async fn download(http: reqwest::Client, url: String, cookie: String) -> (u64, u64) {
    let mut resp = http
        .request(Method::GET, url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let (mut bytes, mut lines) = (0, 0);
    while let Some(chunk) = resp.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    (bytes, lines)
}

#[tokio::test]
async fn a_large_log_downloads_in_bounded_memory() {
    // Limits out of the way: this build writes a log of about 100 MB.
    let env = Env::start(&[
        ("CLOUDRUNR_BUILD_LOG_MAX_BYTES", "1000000000"),
        ("CLOUDRUNR_BUILD_LOG_MAX_LINES", "10000000"),
        ("CLOUDRUNR_BUILD_LOG_BYTES_PER_SEC", "1000000000"),
        ("CLOUDRUNR_BUILD_LOG_LINES_PER_SEC", "10000000"),
    ])
    .await;
    const LINES: u64 = 100_000;
    let slug = env
        .project(
            "big",
            &format!("L=$(head -c 1000 /dev/zero | tr '\\0' y); yes \"$L\" | head -n {LINES}; {DEPLOY}"),
            json!({}),
        )
        .await;
    let (d, took) = env.build(&slug).await;
    assert_eq!(d["state"], "ready", "{d}");
    eprintln!("a build writing {LINES} lines of 1000 bytes took {took:?}");
    let id = d["id"].as_str().unwrap().to_owned();
    let c = dashboard(&env.p).await;

    // One JSON page holds about 1 MiB of text, whatever limit it asks for.
    let (status, page) = env
        .p
        .get(&format!("/api/deployments/{id}/logs?limit=5000"), &env.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = page["lines"].as_array().unwrap();
    let bytes: usize = got.iter().map(|l| text(l).len()).sum();
    assert!(
        got.len() < 5000 && bytes <= (1 << 20) + 16 * 1024,
        "{} lines, {bytes} bytes",
        got.len()
    );
    assert_eq!(page["finished"], false);

    // Four downloads at once, the server's memory sampled all along.
    let pid = env.p.server_pid();
    let before = rss_bytes(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (peak, done) = (peak.clone(), done.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let url = format!("{}/deployments/{id}/log.txt", c.base);
    let downloads: Vec<_> = (0..4)
        .map(|_| tokio::spawn(download(c.http.clone(), url.clone(), c.cookie_header())))
        .collect();
    let mut sizes = Vec::new();
    for d in downloads {
        sizes.push(d.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    for (bytes, lines) in sizes {
        assert!(bytes > LINES * 1000, "{bytes} bytes");
        assert!(lines > LINES, "every line, and the platform's: {lines}");
    }
    eprintln!(
        "four downloads of a {} MB log: the server grew by {} MB (from {} MB)",
        LINES / 1000,
        grew >> 20,
        before >> 20
    );
    assert!(
        grew < 48 << 20,
        "the server grew by {} MB while sending 4 x {} MB",
        grew >> 20,
        LINES / 1000
    );
}

/// The highest sequence number stored for deployment `id`, looking from `from` on.
async fn last_seq(env: &Env, id: &str, mut from: u64) -> u64 {
    loop {
        let (status, page) = env
            .p
            .get(
                &format!("/api/deployments/{id}/logs?after={from}&limit=5000"),
                &env.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        match page["lines"].as_array().unwrap().last() {
            Some(last) => from = last["seq"].as_u64().unwrap(),
            None => return from,
        }
    }
}

#[tokio::test]
async fn a_flooding_build_is_slowed_not_the_others() {
    const PACE: u64 = 5000;
    let env = Env::start(&[("CLOUDRUNR_BUILD_LOG_LINES_PER_SEC", "5000")]).await;
    let quiet = env
        .project(
            "quiet",
            &format!("i=0; while [ $i -lt 2000 ]; do echo \"quiet line $i\"; i=$((i+1)); done; {DEPLOY}"),
            json!({}),
        )
        .await;
    // As fast as it can, for longer than the test runs.
    let flood = env
        .project(
            "flood",
            &format!("yes 'flood flood flood flood' | head -n 2000000; {DEPLOY}"),
            json!({}),
        )
        .await;

    // Once first: the quiet build's time includes its first clone, the next ones not.
    env.build(&quiet).await;
    let (d, alone) = env.build(&quiet).await;
    assert_eq!(d["state"], "ready");

    let flooding = env.p.deploy(&env.token, &flood).await;
    // Wait until the flood has used up its burst.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < 2 * PACE {
        assert!(Instant::now() < deadline, "the flood never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = last_seq(&env, &flooding, seen).await;
    }
    let (t0, s0) = (Instant::now(), seen);
    let (d, beside) = env.build(&quiet).await;
    assert_eq!(d["state"], "ready");
    tokio::time::sleep_until((t0 + Duration::from_secs(2)).into()).await;
    let s1 = last_seq(&env, &flooding, s0).await;
    let rate = (s1 - s0) as f64 / t0.elapsed().as_secs_f64();
    let f = env.p.deployment(&env.token, &flooding).await;
    eprintln!(
        "the quiet build took {alone:?} alone, {beside:?} beside the flood; the flood wrote {rate:.0} lines/s \
         (paced at {PACE})"
    );
    assert_eq!(f["state"], "building", "the flood was still going");
    // The flood is held to its pace (it would write well over 100,000 lines a second)…
    assert!(rate < PACE as f64 * 1.25, "{rate:.0} lines/s");
    // …and the other build goes on as it would alone (within what a busy 2-core machine varies).
    assert!(
        beside < alone * 3 + Duration::from_secs(1),
        "{beside:?} beside the flood, {alone:?} alone"
    );
    let (status, _) = env
        .p
        .call(
            Method::POST,
            &format!("/api/deployments/{flooding}/cancel"),
            Some(&env.token),
            None,
        )
        .await;
    assert!(status.is_success());
}
