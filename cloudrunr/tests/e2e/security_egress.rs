//! Builds and git reach only what the egress policy allows (issue 13, findings 3 and 6).
//!
//! Everything here talks to loopback only: a "tenant service" on the host's loopback that builds
//! try to reach, and the test git servers. The other address ranges are proven by the policy's
//! unit tests (`platform::egress`), without a packet.

use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use test_support::Platform;
use test_support::git_server::GitServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the build's probe does: reach the service directly, then through the proxy named by
/// `HTTPS_PROXY`, printing what happened each time.
const PROBE: &str = r#"
const net = require('net');
const fs = require('fs');
const port = Number(process.env.SERVICE_PORT);
fs.mkdirSync('dist', { recursive: true });
fs.writeFileSync('dist/index.html', '<h1>probe</h1>');
const oneLine = (s) => s.replace(/\r?\n/g, ' | ').trim();

function direct() {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.setTimeout(5000, () => { s.destroy(); resolve('timeout'); });
    s.on('data', (d) => { got += d; });
    s.on('close', () => resolve(got ? 'reached ' + oneLine(got) : 'closed'));
    s.on('error', (e) => { resolve('error ' + e.code); s.destroy(); });
  });
}

function viaProxy() {
  const proxy = new URL(process.env.HTTPS_PROXY);
  return new Promise((resolve) => {
    const s = net.connect(Number(proxy.port), proxy.hostname);
    let buf = '';
    let tunnel = false;
    s.setTimeout(10000, () => { s.destroy(); resolve('timeout'); });
    s.on('connect', () => s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`));
    s.on('data', (d) => {
      buf += d;
      const end = buf.indexOf('\r\n\r\n');
      if (!tunnel && end >= 0 && buf.startsWith('HTTP/1.1 200')) {
        tunnel = true;
        buf = buf.slice(end + 4);
        s.write('GET / HTTP/1.0\r\n\r\n');
      }
    });
    s.on('close', () => resolve((tunnel ? 'tunnel ' : 'answer ') + oneLine(buf)));
    s.on('error', (e) => resolve('error ' + e.code));
  });
}

(async () => {
  console.log('probe: direct ' + await direct());
  console.log('probe: proxy ' + await viaProxy());
  console.log('probe: HTTPS_PROXY=' + process.env.HTTPS_PROXY);
})();
"#;

/// A service on the host's loopback holding another tenant's secret; counts its connections.
async fn tenant_service(secret: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // The request first, so that the answer is not cut short by an unread one.
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{secret}", secret.len());
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, count)
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .parse()
        .unwrap()
}

/// A port on loopback where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Builds the probe on a platform whose builds may reach the test git server, and the tenant's
/// service too when `allow_service`; returns the build's log and how many connections the
/// service saw.
async fn probe_build(allow_service: bool) -> (String, usize) {
    const SECRET: &str = "tenant-b-secret-7f3a9c";
    let (service, connections) = tenant_service(SECRET).await;
    let git = GitServer::start().await;
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("probe.js"), PROBE).unwrap();
    git.create_repo("probe", src.path());
    let mut allow = format!("127.0.0.1:{}", port_of(&git.url("probe")));
    if allow_service {
        allow.push_str(&format!(",127.0.0.1:{service}"));
    }
    let p = Platform::start_with(&[("CLOUDRUNR_BUILD_EGRESS_ALLOW", &allow)]).await;
    let token = p.signup("Ann").await;
    p.create_project(
        &token,
        json!({
            "name": "probe",
            "git_url": git.url("probe"),
            "build_command": "node probe.js",
            "output_dir": "dist",
            "env": { "SERVICE_PORT": service.to_string() }
        }),
    )
    .await;
    let id = p.deploy(&token, "probe").await;
    let d = p.wait_final(&token, &id).await;
    let log = p.log_text(&token, &id).await;
    assert_eq!(d["state"], "ready", "{log}");
    assert_eq!(log.contains(SECRET), allow_service, "{log}");
    (log, connections.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_build_reaches_host_loopback_neither_directly_nor_through_the_proxy() {
    let (log, connections) = probe_build(false).await;
    // Directly: the build's own namespace has its own loopback, where nothing listens.
    assert!(log.contains("probe: direct error ECONNREFUSED"), "{log}");
    // Through the proxy: refused with the reason, both in the answer and in the build's log.
    assert!(log.contains("probe: proxy answer HTTP/1.1 403 Forbidden"), "{log}");
    assert!(log.contains("127.0.0.1 is a loopback address (this machine)"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("Network: CloudRunr refused a connection to 127.0.0.1:")),
        "{log}"
    );
    assert!(log.contains("probe: HTTPS_PROXY=http://127.0.0.1:3128"), "{log}");
    assert_eq!(connections, 0, "no connection reached the tenant's service");
}

#[tokio::test]
async fn an_allow_listed_port_is_reached_through_the_proxy_only() {
    let (log, connections) = probe_build(true).await;
    assert!(log.contains("probe: direct error ECONNREFUSED"), "{log}");
    assert!(
        log.contains("probe: proxy tunnel HTTP/1.0 200 OK | Content-Length: 22 |  | tenant-b-secret-7f3a9c"),
        "{log}"
    );
    assert_eq!(connections, 1);
}

/// The status, code and message of a project creation from `git_url`.
async fn refused(p: &Platform, token: &str, git_url: &str) -> (StatusCode, String, String) {
    let (status, resp) = p
        .post("/api/projects", token, json!({ "name": "x", "git_url": git_url }))
        .await;
    let code = resp["error"]["code"].as_str().unwrap_or_default().to_owned();
    let message = resp["error"]["message"].as_str().unwrap_or_default().to_owned();
    (status, code, message)
}

#[tokio::test]
async fn git_urls_cannot_probe_the_servers_network() {
    let git = GitServer::start().await;
    git.create_repo("site", &test_support::fixture("static"));
    let git_port = port_of(&git.url("site"));
    let closed = closed_port();
    let allow = format!("127.0.0.1:{git_port},127.0.0.1:{closed}");
    let p = Platform::start_with(&[
        ("CLOUDRUNR_BUILD_EGRESS_ALLOW", &allow),
        ("CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS", "127.0.0.1,localhost"),
    ])
    .await;
    let token = p.signup("Ann").await;

    // An address in a denied range is refused as such, before anything is sent.
    for url in [
        "http://127.0.0.1:9/x.git".to_owned(),
        "https://[::1]/x.git".to_owned(),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "https://0xa9.0xfe.0xa9.0xfe/x.git".to_owned(),
        "https://[::ffff:169.254.170.2]/x.git".to_owned(),
        "https://10.0.0.1/x.git".to_owned(),
    ] {
        let (status, code, message) = refused(&p, &token, &url).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_git_url"),
            "{url}"
        );
        assert!(message.contains("does not fetch from"), "{url}: {message}");
    }

    // A name that resolves to a denied address, a closed port, a missing repository: one
    // answer, whatever happened.
    let generic = builder::git::UNREACHABLE;
    for url in [
        format!("https://localhost:{git_port}/site.git"),
        "http://localhost:9/site.git".to_owned(),
        format!("http://127.0.0.1:{closed}/site.git"),
        git.url("missing"),
    ] {
        let (status, code, message) = refused(&p, &token, &url).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "git_unreachable"),
            "{url}"
        );
        assert_eq!(message, generic, "{url}");
    }
    // The allowed repository is fine, by address and by name.
    for (name, url) in [
        ("by-ip", git.url("site")),
        ("by-name", format!("http://localhost:{git_port}/site.git")),
    ] {
        let project = p.create_project(&token, json!({ "name": name, "git_url": url })).await;
        assert_eq!(project["branch"], "main");
    }
    let log = p.server_log();
    assert!(
        log.contains("refused by the egress policy"),
        "git's reasons are in the server's log"
    );
}

#[tokio::test]
async fn a_refused_and_an_unreachable_repository_fail_a_build_alike() {
    let reachable = GitServer::start().await;
    reachable.create_repo("site", &test_support::fixture("static"));
    let doomed = GitServer::start().await;
    doomed.create_repo("site", &test_support::fixture("static"));
    let (port, doomed_port) = (port_of(&reachable.url("site")), port_of(&doomed.url("site")));
    let http_hosts = ("CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS", "127.0.0.1,localhost");
    let mut p = Platform::start_with(&[http_hosts]).await;
    let token = p.signup("Ann").await;
    p.create_project(
        &token,
        json!({ "name": "refused", "git_url": format!("http://localhost:{port}/site.git") }),
    )
    .await;
    p.create_project(&token, json!({ "name": "gone", "git_url": doomed.url("site") }))
        .await;

    // Later the operator narrows the policy to the second server, which then goes away.
    let allow = format!("127.0.0.1:{doomed_port}");
    p.restart_with(&[http_hosts, ("CLOUDRUNR_BUILD_EGRESS_ALLOW", &allow)]);
    drop(doomed);
    let served = reachable.request_count();
    let mut errors = Vec::new();
    for slug in ["refused", "gone"] {
        let id = p.deploy(&token, slug).await;
        let d = p.wait_final(&token, &id).await;
        let log = p.log_text(&token, &id).await;
        assert_eq!(d["state"], "failed", "{log}");
        assert_eq!(d["error"], builder::git::UNREACHABLE, "{log}");
        for git_words in [
            "fatal",
            "Couldn't connect",
            "refused",
            "loopback",
            "Failed to connect",
            "unable to access",
        ] {
            assert!(!log.contains(git_words), "{slug}: {git_words}: {log}");
        }
        errors.push(d["error"].clone());
    }
    assert_eq!(errors[0], errors[1]);
    assert_eq!(reachable.request_count(), served, "the refused server saw no request");
}
