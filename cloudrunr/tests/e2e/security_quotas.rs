//! Build quotas through the real binary and real bubblewrap: a fork bomb, a memory hog, a /tmp
//! filler, a workspace filler and a cache filler each end their own build, with a message
//! naming the limit, while the server and a well-behaved build beside them go on.
//!
//! The limits are small so that each build is stopped within seconds; the fork bomb is bounded
//! by its own depth too (about 2,000 processes at most), so that a broken quota cannot take the
//! machine down with it.

use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use test_support::git_server::GitServer;
use test_support::{Platform, fixture};

const LIMITS: &[(&str, &str)] = &[
    ("CLOUDRUNR_BUILD_PIDS_MAX", "64"),
    ("CLOUDRUNR_BUILD_MEMORY_MAX", "64MiB"),
    ("CLOUDRUNR_BUILD_TMP_MAX", "16MiB"),
    ("CLOUDRUNR_BUILD_WORKSPACE_MAX", "32MiB"),
    ("CLOUDRUNR_BUILD_CACHE_MAX", "16MiB"),
    // A quota, not the time limit, must be what stops each hog.
    ("CLOUDRUNR_BUILD_TIMEOUT", "120s"),
];

/// Each process forks two more, nine levels deep, and sleeps.
const FORK_BOMB: &str =
    "bomb() { if [ \"$1\" -gt 0 ]; then bomb $(($1 - 1)) & bomb $(($1 - 1)) & fi; sleep 20; }; bomb 9; wait";
/// `tail` keeps the one (endless) line in memory: 200 MB of it.
const MEMORY_HOG: &str = "head -c 200000000 /dev/zero | tail -n 1 > /dev/null";
const TMP_FILLER: &str = "head -c 64000000 /dev/zero > /tmp/fill";
/// Grows by about 20 MB a second, forever: only the quota's watcher can stop it.
const WORKSPACE_FILLER: &str = "while true; do head -c 1000000 /dev/zero >> fill; sleep 0.05; done";
const CACHE_FILLER: &str = "while true; do head -c 1000000 /dev/zero >> /cache/fill; sleep 0.05; done";
/// Well-behaved, using a little of everything.
const GOOD: &str =
    "head -c 4000000 /dev/zero > /tmp/scratch && mkdir -p dist && echo '<h1>fine</h1>' > dist/index.html";

struct Env {
    git: GitServer,
    p: Platform,
}

impl Env {
    async fn start() -> Env {
        let git = GitServer::start().await;
        git.create_repo("site", &fixture("static"));
        let p = Platform::start_with(LIMITS).await;
        Env { git, p }
    }

    /// A project of `token`'s building the static fixture with `command`; returns its JSON.
    async fn project(&self, token: &str, name: &str, command: &str) -> Value {
        self.p
            .create_project(
                token,
                json!({
                    "name": name,
                    "git_url": self.git.url("site"),
                    "framework": "static",
                    "build_command": command,
                    "output_dir": "dist",
                }),
            )
            .await
    }

    /// Deploys `slug` and waits for the end: the deployment, its log and how long it took.
    async fn build(&self, token: &str, slug: &str) -> (Value, String, Duration) {
        let started = Instant::now();
        let id = self.p.deploy(token, slug).await;
        let d = self.p.wait_final(token, &id).await;
        let took = started.elapsed();
        (d, self.p.log_text(token, &id).await, took)
    }
}

/// The build failed with `message` (in its error and its log) and its cgroup is gone.
fn assert_stopped(d: &Value, log: &str, message: &str) {
    assert_eq!(d["state"], "failed", "{d}\n{log}");
    assert!(d["error"].as_str().unwrap_or_default().contains(message), "{d}\n{log}");
    assert!(
        log.contains(&format!("Error: {}", d["error"].as_str().unwrap_or_default())),
        "{log}"
    );
    let id = d["id"].as_str().unwrap();
    assert_eq!(
        leftover_cgroups(id),
        Vec::<PathBuf>::new(),
        "the build's cgroup is removed"
    );
}

/// Cgroup directories of deployment `id` still present (looked for a few levels deep).
fn leftover_cgroups(id: &str) -> Vec<PathBuf> {
    let suffix = format!("-{id}");
    let mut found = Vec::new();
    let mut dirs = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("cloudrunr-") && name.ends_with(&suffix) {
                found.push(e.path());
            } else if depth < 4 {
                dirs.push((e.path(), depth + 1));
            }
        }
    }
    found
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_process_limit() {
    let env = Env::start().await;
    let token = env.p.signup("Ann").await;
    env.project(&token, "bomb", FORK_BOMB).await;
    let (d, log, took) = env.build(&token, "bomb").await;
    assert_stopped(
        &d,
        &log,
        "build stopped: it ran more than 64 processes and threads at once (CLOUDRUNR_BUILD_PIDS_MAX)",
    );
    assert!(
        took < Duration::from_secs(60),
        "stopped by the quota, not the time limit: {took:?}"
    );
}

#[tokio::test]
async fn a_memory_hog_stops_at_the_memory_limit() {
    let env = Env::start().await;
    let token = env.p.signup("Ann").await;
    env.project(&token, "hog", MEMORY_HOG).await;
    let (d, log, _) = env.build(&token, "hog").await;
    assert_stopped(
        &d,
        &log,
        "build stopped: it used more than 64 MiB of memory (CLOUDRUNR_BUILD_MEMORY_MAX)",
    );
}

#[tokio::test]
async fn filling_tmp_fails_with_the_tmp_limit() {
    let env = Env::start().await;
    let token = env.p.signup("Ann").await;
    env.project(&token, "tmp", TMP_FILLER).await;
    let (d, log, _) = env.build(&token, "tmp").await;
    assert_stopped(&d, &log, "/tmp holds at most 16 MiB (CLOUDRUNR_BUILD_TMP_MAX)");
    assert!(
        log.contains("No space left on device"),
        "the tmpfs, not the disk, is full: {log}"
    );
}

#[tokio::test]
async fn filling_the_workspace_stops_at_the_workspace_limit() {
    let env = Env::start().await;
    let token = env.p.signup("Ann").await;
    env.project(&token, "fill", WORKSPACE_FILLER).await;
    let (d, log, took) = env.build(&token, "fill").await;
    assert_stopped(
        &d,
        &log,
        "build stopped: it put more than 32 MiB in its workspace (CLOUDRUNR_BUILD_WORKSPACE_MAX)",
    );
    assert!(
        took < Duration::from_secs(60),
        "stopped by the quota, not the time limit: {took:?}"
    );
}

#[tokio::test]
async fn the_cache_is_kept_within_its_cap_and_emptied_past_it() {
    let env = Env::start().await;
    let token = env.p.signup("Ann").await;
    let project = env
        .project(
            &token,
            "cached",
            "head -c 1000000 /dev/zero > /cache/kept && mkdir -p dist && echo ok > dist/index.html",
        )
        .await;
    let cache = env.p.data_dir().join("cache").join(project["id"].as_str().unwrap());
    let (d, log, _) = env.build(&token, "cached").await;
    assert_eq!(d["state"], "ready", "{log}");
    assert!(cache.join("kept").is_file(), "a cache within its cap is kept");

    let (status, body) = env
        .p
        .call(
            Method::PATCH,
            "/api/projects/cached",
            Some(&token),
            Some(json!({ "build_command": CACHE_FILLER })),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (d, log, took) = env.build(&token, "cached").await;
    assert_stopped(
        &d,
        &log,
        "build stopped: it put more than 16 MiB in the project's dependency cache (CLOUDRUNR_BUILD_CACHE_MAX); \
         the cache is emptied",
    );
    assert!(
        took < Duration::from_secs(60),
        "stopped by the quota, not the time limit: {took:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the cache past its cap is emptied: {left:?}");
}

/// Each hog beside a well-behaved build of another account: the hog fails with its quota's
/// message, the other build ends ready in about the time it takes alone (printed for the
/// record: `cargo test --workspace --test e2e -- security_quotas::hogs --nocapture`).
#[tokio::test]
async fn hogs_leave_a_concurrent_build_alone() {
    let env = Env::start().await;
    let tenant = env.p.signup("Ann").await;
    let neighbour = env.p.signup("Bob").await;
    env.project(&neighbour, "good", GOOD).await;

    let mut alone = Vec::new();
    for _ in 0..3 {
        let (d, log, took) = env.build(&neighbour, "good").await;
        assert_eq!(d["state"], "ready", "{log}");
        alone.push(took);
    }
    alone.sort();
    let alone = alone[1];

    let hogs = [
        ("bomb", FORK_BOMB, "CLOUDRUNR_BUILD_PIDS_MAX"),
        ("hog", MEMORY_HOG, "CLOUDRUNR_BUILD_MEMORY_MAX"),
        ("tmp", TMP_FILLER, "CLOUDRUNR_BUILD_TMP_MAX"),
        ("fill", WORKSPACE_FILLER, "CLOUDRUNR_BUILD_WORKSPACE_MAX"),
        ("cache", CACHE_FILLER, "CLOUDRUNR_BUILD_CACHE_MAX"),
    ];
    let mut report = vec![format!("good build alone (median of 3): {alone:?}")];
    for (name, command, variable) in hogs {
        env.project(&tenant, name, command).await;
        let hog = env.p.deploy(&tenant, name).await;
        // The hog is running (its command has started) when the other build starts.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = env.p.deployment(&tenant, &hog).await["state"].clone();
            if state == "building" || state == "failed" || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (d, log, beside) = env.build(&neighbour, "good").await;
        assert_eq!(d["state"], "ready", "beside {name}: {log}");
        let h = env.p.wait_final(&tenant, &hog).await;
        assert_eq!(h["state"], "failed", "{h}");
        assert!(h["error"].as_str().unwrap_or_default().contains(variable), "{h}");
        report.push(format!("good build beside {name}: {beside:?}"));
        assert!(
            beside < alone * 5 + Duration::from_secs(10),
            "the build beside {name} took {beside:?} against {alone:?} alone"
        );
    }
    // The server still answers, quickly.
    let asked = Instant::now();
    let (status, _) = env.p.get("/api/projects", &neighbour).await;
    assert!(status.is_success());
    report.push(format!("GET /api/projects afterwards: {:?}", asked.elapsed()));
    eprintln!("{}", report.join("\n"));
}
