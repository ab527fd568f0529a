//! Certificates from a real ACME server, end to end: a `cloudrunr serve` with TLS on and ACME
//! pointed at Pebble (`scripts/pebble start`), resolving through pebble-challtestsrv. A custom
//! domain is added and proven through the API, Pebble validates it over HTTP-01 against the
//! platform's own router, and curl fetches the site over HTTPS trusting only Pebble's root.
//!
//! Pebble checks HTTP-01 at `<the name's A record>:$CLOUDRUNR_TEST_PEBBLE_HTTP_PORT` for every
//! name. Each test gives its domain a loopback address of its own (127.x.y.z, routed to `lo` on
//! Linux) and forwards that address's HTTP-01 port to the platform's plain port, as a host maps
//! port 80: tests share one Pebble and run in parallel.

use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use test_support::dns::Challtestsrv;
use test_support::git_server::GitServer;
use test_support::{Platform, fixture};
use tokio::process::Command;

const DOMAIN: &str = "example.test";

struct Pebble {
    directory: String,
    /// The CA of Pebble's own HTTPS (what the platform trusts to talk to it).
    ca: String,
    /// Pebble's issuing root (and the listener CA): what curl trusts.
    roots: String,
    http_port: u16,
}

impl Pebble {
    fn from_env() -> Option<Pebble> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (Some(directory), Some(ca), Some(roots), Some(port)) = (
            var("CLOUDRUNR_TEST_PEBBLE_DIRECTORY"),
            var("CLOUDRUNR_TEST_PEBBLE_CA"),
            var("CLOUDRUNR_TEST_PEBBLE_ROOTS"),
            var("CLOUDRUNR_TEST_PEBBLE_HTTP_PORT"),
        ) else {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            let required = std::env::var("CLOUDRUNR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !ci && !required,
                "the ACME tests need Pebble (CLOUDRUNR_TEST_PEBBLE_*), and CI or CLOUDRUNR_REQUIRE_SERVICES=1 \
                 forbids skipping: run `eval \"$(scripts/pebble start)\"`"
            );
            eprintln!("skipping an ACME test: CLOUDRUNR_TEST_PEBBLE_DIRECTORY is not set (scripts/pebble start)");
            return None;
        };
        Some(Pebble {
            directory,
            ca,
            roots,
            http_port: port.parse().expect("CLOUDRUNR_TEST_PEBBLE_HTTP_PORT is a port"),
        })
    }
}

/// A loopback address of its own for each call: the high bits vary by process and time, the low
/// ones by a counter.
fn own_loopback() -> Ipv4Addr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = nanos
        ^ std::process::id().wrapping_mul(0x9e37_79b9)
        ^ NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x85eb_ca6b);
    let [_, a, b, c] = seed.to_be_bytes();
    Ipv4Addr::new(127, a.max(3), b, c.clamp(1, 254))
}

/// A port of a loopback address of its own, forwarded to the platform's plain port once that is
/// known (the host's port mapping), until dropped.
struct Forward(tokio::task::JoinHandle<()>);

impl Forward {
    /// Binds `port` on a loopback address no other test holds; returns the listener and address.
    async fn bind(port: u16) -> (tokio::net::TcpListener, Ipv4Addr) {
        let mut tries = 0;
        loop {
            let ip = own_loopback();
            match tokio::net::TcpListener::bind(SocketAddr::from((ip, port))).await {
                Ok(listener) => return (listener, ip),
                // Taken by another test (or run) at the same time: another address.
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("{ip}:{port}: {e}; trying another address");
                }
                Err(e) => panic!("cannot bind a loopback address for HTTP-01: {e}"),
            }
        }
    }

    /// Forwards every connection `listener` accepts to `to`.
    fn run(listener: tokio::net::TcpListener, to: SocketAddr) -> Forward {
        Forward(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }))
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A platform with TLS and ACME on, a deployed `shop` site, and a custom apex domain pointed at
/// this test's own loopback address (added, not yet verified).
struct Setup {
    p: Platform,
    dns: Challtestsrv,
    pebble: Pebble,
    ann: String,
    tls_port: u16,
    zone: String,
    proof: String,
    _forward: Forward,
    _git: GitServer,
}

impl Setup {
    async fn start(check_secs: &str) -> Option<Setup> {
        Self::start_with(check_secs, &[]).await
    }

    async fn start_with(check_secs: &str, extra: &[(&str, &str)]) -> Option<Setup> {
        let pebble = Pebble::from_env()?;
        let dns = Challtestsrv::from_env()?;
        let git = GitServer::start().await;
        git.create_repo("site", &fixture("static"));
        let (listener, ip) = Forward::bind(pebble.http_port).await;
        let ip_text = ip.to_string();
        let mut env = vec![
            ("CLOUDRUNR_DOMAIN", DOMAIN),
            ("CLOUDRUNR_TLS_LISTEN", "127.0.0.1:0"),
            ("CLOUDRUNR_DNS_RESOLVER", dns.dns.as_str()),
            ("CLOUDRUNR_PUBLIC_IPS", ip_text.as_str()),
            ("CLOUDRUNR_ACME_DIRECTORY", pebble.directory.as_str()),
            ("CLOUDRUNR_ACME_CA_ROOTS", pebble.ca.as_str()),
            ("CLOUDRUNR_ACME_EMAIL", "ops@example.test"),
            ("CLOUDRUNR_ACME_CHECK_SECS", check_secs),
            ("CLOUDRUNR_ACME_RETRY_SECS", "1"),
        ];
        env.extend_from_slice(extra);
        let p = Platform::start_with(&env).await;
        let forward = Forward::run(listener, SocketAddr::from(([127, 0, 0, 1], p.port)));
        let ann = p.signup("Ann").await;
        let project = p
            .create_project(&ann, json!({ "name": "shop", "git_url": git.url("site") }))
            .await;
        let url = project["production_url"].as_str().expect("production_url").to_owned();
        let tls_port = url
            .strip_prefix(&format!("https://shop.{DOMAIN}:"))
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("site URLs are https on the TLS port: {url}"));
        let id = p.deploy(&ann, "shop").await;
        let d = p.wait_final(&ann, &id).await;
        assert_eq!(d["state"], "ready", "{}", p.log_text(&ann, &id).await);

        // The apex domain, routed by its A record to this test's address; its ownership proof.
        let zone = Challtestsrv::unique_zone();
        let (status, added) = p
            .post("/api/projects/shop/domains", &ann, json!({ "name": zone }))
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{added}");
        let token = added["domain"]["records"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["type"] == "TXT"))
            .and_then(|r| r["value"].as_str())
            .unwrap_or_else(|| panic!("a TXT record to set: {added}"))
            .to_owned();
        let proof = format!("_cloudrunr.{zone}");
        dns.add_a(&zone, &[&ip.to_string()]).await;
        dns.set_txt(&proof, &token).await;
        Some(Setup {
            p,
            dns,
            pebble,
            ann,
            tls_port,
            zone,
            proof,
            _forward: forward,
            _git: git,
        })
    }

    async fn verify(&self) {
        let (status, body) = self
            .p
            .post(
                &format!("/api/projects/shop/domains/{}/verify", self.zone),
                &self.ann,
                json!({}),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        assert_eq!(body["domain"]["state"], "verified", "{body}");
    }

    async fn domain_state(&self) -> serde_json::Value {
        let (_, body) = self
            .p
            .get(&format!("/api/projects/shop/domains/{}", self.zone), &self.ann)
            .await;
        body["domain"].clone()
    }

    /// curl over HTTPS to `name`, trusting only Pebble's roots; stdout ends with
    /// `<http version> <status>`.
    async fn curl(&self, name: &str, extra: &[&str]) -> (bool, String, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--noproxy", "*", "--resolve"])
            .arg(format!("{name}:{}:127.0.0.1", self.tls_port))
            .arg("--cacert")
            .arg(&self.pebble.roots)
            .args(extra)
            .args(["-w", "\n%{http_version} %{http_code}\n"])
            .arg(format!("https://{name}:{}/", self.tls_port))
            .output()
            .await
            .expect("run curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The site over HTTPS with the issued chain, over h2 and HTTP/1.1.
    async fn assert_served_over_https(&self) {
        for (flag, version) in [("--http2", "2 200"), ("--http1.1", "1.1 200")] {
            let (ok, out, err) = self.curl(&self.zone, &[flag]).await;
            assert!(ok, "curl {flag}: {err}\n{}", self.p.server_log());
            assert!(out.contains("<h1>Static home</h1>"), "the site: {out}");
            assert!(out.trim_end().ends_with(version), "{flag}: {out}");
        }
    }
}

#[tokio::test]
async fn a_verified_domain_gets_a_certificate_from_pebble_over_http_01_and_serves_https() {
    // Pebble picks a random profile for an order that names none: "default" is 90 days.
    let Some(s) = Setup::start_with("0.3", &[("CLOUDRUNR_ACME_PROFILE", "default")]).await else {
        return;
    };
    // Before verification nothing is ordered, and HTTPS for the name has no certificate.
    let (ok, _, _) = s.curl(&s.zone, &[]).await;
    assert!(!ok, "no certificate before the domain is verified");
    let pending = s.domain_state().await;
    assert!(
        pending["certificate_expires_at"].is_null(),
        "no expiry before issuance: {pending}"
    );

    s.verify().await;
    // The background round orders once the domain is verified; the state says when it is done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let domain = s.domain_state().await;
        if domain["state"] == "certificate_issued" {
            assert!(domain["reason"].is_null(), "{domain}");
            // The view shows when the issued certificate expires: an RFC 3339 instant ahead.
            let expires: platform::Timestamp = serde_json::from_value(domain["certificate_expires_at"].clone())
                .unwrap_or_else(|e| panic!("an RFC 3339 expiry once issued ({e}): {domain}"));
            let a_day = 24 * 3600 * 1000;
            assert!(
                expires.millis() > platform::Timestamp::now().millis() + a_day,
                "{domain}"
            );
            let (_, listed) = s.p.get("/api/projects/shop/domains", &s.ann).await;
            assert_eq!(
                listed["domains"][0]["certificate_expires_at"], domain["certificate_expires_at"],
                "{listed}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no certificate within 60 s: {domain}\n{}",
            s.p.server_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.assert_served_over_https().await;
    // The dashboard's Domains section shows the same expiry.
    let expires = s.domain_state().await["certificate_expires_at"]
        .as_str()
        .expect("an expiry")
        .to_owned();
    let mut c = test_support::Client::new(&s.p);
    let (_, page) = c.get("/login").await;
    let csrf = test_support::csrf_of(&page);
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
    assert_eq!(resp.status(), reqwest::StatusCode::SEE_OTHER);
    let (_, page) = c.get("/projects/shop").await;
    assert!(
        page.contains(&format!("data-certificate-expires=\"{expires}\"")),
        "the dashboard shows the expiry {expires}: {page}"
    );
    let log = s.p.server_log();
    assert_eq!(
        log.matches("ordering a certificate").count(),
        1,
        "one order for one domain: {log}"
    );
    // Done with the proof: the domain keeps its certificate.
    s.dns.clear_txt(&s.proof).await;
}

#[tokio::test]
async fn the_first_handshake_orders_for_a_verified_domain_and_never_for_an_unknown_name() {
    // No background round after the first one: only a handshake can start the order.
    let Some(s) = Setup::start("3600").await else {
        return;
    };
    // A name that is no verified domain (unknown, or only pending): no certificate, no order.
    let unknown = Challtestsrv::unique_zone();
    let (ok, _, _) = s.curl(&unknown, &[]).await;
    assert!(!ok, "an unknown name gets no certificate");
    let (ok, _, _) = s.curl(&s.zone, &[]).await;
    assert!(!ok, "a pending domain gets no certificate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !s.p.server_log().contains("ordering a certificate"),
        "no order for names that are not verified domains: {}",
        s.p.server_log()
    );

    s.verify().await;
    // The handshake waits while the order runs, and is served the new certificate.
    s.assert_served_over_https().await;
    let log = s.p.server_log();
    assert_eq!(log.matches("ordering a certificate").count(), 1, "{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("ordering a certificate"))
            .all(|l| l.contains(s.zone.as_str()) && !l.contains(unknown.as_str())),
        "the one order is the verified domain's: {log}"
    );
    let domain = s.domain_state().await;
    assert_eq!(domain["state"], "certificate_issued", "{domain}");
}

#[tokio::test]
async fn the_platform_wildcard_is_issued_over_dns_01_through_the_hook() {
    let (Some(pebble), Some(dns)) = (Pebble::from_env(), Challtestsrv::from_env()) else {
        return;
    };
    let management = std::env::var("CLOUDRUNR_TEST_CHALLTESTSRV").expect("challtestsrv");
    // The operator's hook (lego's exec convention): publishes and clears the TXT record in
    // challtestsrv, and logs each call.
    let dir = tempfile::tempdir().expect("dir");
    let calls = dir.path().join("calls");
    let hook = dir.path().join("dns-hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\necho \"$1 $2 $3\" >> '{calls}'\ncase \"$1\" in\n\
             set) curl -fsS -X POST '{management}/set-txt' -d \"{{\\\"host\\\":\\\"$2\\\",\\\"value\\\":\\\"$3\\\"}}\" ;;\n\
             clear) curl -fsS -X POST '{management}/clear-txt' -d \"{{\\\"host\\\":\\\"$2\\\"}}\" ;;\n\
             *) echo \"unknown action $1\" >&2; exit 2 ;;\nesac\n",
            calls = calls.display(),
        ),
    )
    .expect("write the hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let domain = Challtestsrv::unique_zone();
    let git = GitServer::start().await;
    git.create_repo("site", &fixture("static"));
    let p = Platform::start_with(&[
        ("CLOUDRUNR_DOMAIN", &domain),
        ("CLOUDRUNR_TLS_LISTEN", "127.0.0.1:0"),
        ("CLOUDRUNR_DNS_RESOLVER", &dns.dns),
        ("CLOUDRUNR_ACME_DIRECTORY", &pebble.directory),
        ("CLOUDRUNR_ACME_CA_ROOTS", &pebble.ca),
        ("CLOUDRUNR_ACME_DNS_HOOK", hook.to_str().expect("path")),
        ("CLOUDRUNR_ACME_DNS_WAIT_SECS", "0"),
        ("CLOUDRUNR_ACME_CHECK_SECS", "0.3"),
        ("CLOUDRUNR_ACME_RETRY_SECS", "1"),
    ])
    .await;
    let ann = p.signup("Ann").await;
    let project = p
        .create_project(&ann, json!({ "name": "blog", "git_url": git.url("site") }))
        .await;
    let url = project["production_url"].as_str().expect("production_url").to_owned();
    let tls_port: u16 = url
        .strip_prefix(&format!("https://blog.{domain}:"))
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("site URLs are https on the TLS port: {url}"));
    let id = p.deploy(&ann, "blog").await;
    let d = p.wait_final(&ann, &id).await;
    assert_eq!(d["state"], "ready", "{}", p.log_text(&ann, &id).await);

    // One certificate serves every site host: production and previews alike.
    let host = format!("blog.{domain}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--noproxy", "*", "--http2", "--resolve"])
            .arg(format!("{host}:{tls_port}:127.0.0.1"))
            .arg("--cacert")
            .arg(&pebble.roots)
            .args(["-w", "\n%{http_version} %{http_code}\n"])
            .arg(format!("https://{host}:{tls_port}/"))
            .output()
            .await
            .expect("run curl");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no wildcard certificate within 60 s: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            p.server_log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        out.contains("<h1>Static home</h1>") && out.trim_end().ends_with("2 200"),
        "{out}"
    );
    // The same certificate serves the platform's own host (the dashboard), the apex.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--noproxy", "*", "--resolve"])
        .arg(format!("{domain}:{tls_port}:127.0.0.1"))
        .arg("--cacert")
        .arg(&pebble.roots)
        .args(["-w", "\n%{http_code}\n"])
        .arg(format!("https://{domain}:{tls_port}/login"))
        .output()
        .await
        .expect("run curl");
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && page.trim_end().ends_with("200") && page.contains("name=\"password\""),
        "the dashboard over HTTPS on {domain}: {page}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One order for both names: the record `_acme-challenge.<domain>.` gets one value for the
    // wildcard and one for the apex, both set before the CA looks, and both cleared after.
    let calls = std::fs::read_to_string(&calls).expect("the hook ran");
    let calls: Vec<Vec<&str>> = calls.lines().map(|l| l.split(' ').collect()).collect();
    let fqdn = format!("_acme-challenge.{domain}.");
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(
        calls.iter().all(|c| c.len() == 3 && c[1] == fqdn && !c[2].is_empty()),
        "{calls:?}"
    );
    let actions: Vec<&str> = calls.iter().map(|c| c[0]).collect();
    assert_eq!(actions, ["set", "set", "clear", "clear"], "{calls:?}");
    let mut set: Vec<&str> = calls[..2].iter().map(|c| c[2]).collect();
    let mut cleared: Vec<&str> = calls[2..].iter().map(|c| c[2]).collect();
    set.sort_unstable();
    cleared.sort_unstable();
    assert_ne!(set[0], set[1], "two values, one per name: {calls:?}");
    assert_eq!(set, cleared, "each value set is cleared: {calls:?}");
    let log = p.server_log();
    assert_eq!(log.matches("ordering a certificate").count(), 1, "one order: {log}");
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_without_a_dropped_request() {
    // scripts/pebble's "short" profile: valid for CLOUDRUNR_PEBBLE_SHORT_VALIDITY (20 s), renewed
    // at two thirds of that.
    let Some(s) = Setup::start_with("0.3", &[("CLOUDRUNR_ACME_PROFILE", "short")]).await else {
        return;
    };
    s.verify().await;
    // A new connection (a full handshake) every quarter second; every one must succeed, and the
    // certificate served changes once, from the first to the renewed one.
    let mut expiries: Vec<String> = Vec::new();
    let mut first_ok = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not renewed within 60 s: {expiries:?}\n{}",
            s.p.server_log()
        );
        let (ok, out, err) = s.curl(&s.zone, &["-v"]).await;
        if first_ok.is_none() {
            if !ok {
                // Not issued yet: the first certificate is on its way.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            first_ok = Some(tokio::time::Instant::now());
        }
        assert!(ok, "a request failed during renewal: {err}\n{}", s.p.server_log());
        assert!(out.trim_end().ends_with(" 200"), "{out}");
        let expiry = err
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("*  expire date: ")
                    .or_else(|| l.trim().strip_prefix("* expire date: "))
            })
            .unwrap_or_else(|| panic!("curl -v names the expiry: {err}"))
            .to_owned();
        if expiries.last() != Some(&expiry) {
            expiries.push(expiry);
        }
        if expiries.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(expiries.len(), 2, "renewed once: {expiries:?}");
    let log = s.p.server_log();
    assert!(log.matches("certificate issued").count() >= 2, "{log}");
}

/// A port free a moment ago, for a listener whose address the test must know before it starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn two_routers_on_one_postgres_issue_once_and_both_serve_the_certificate() {
    let (Some(pebble), Some(dns)) = (Pebble::from_env(), Challtestsrv::from_env()) else {
        return;
    };
    let Some(services) = test_support::cluster::Services::get() else {
        return;
    };
    let git = GitServer::start().await;
    git.create_repo("site", &fixture("static"));
    let (listener, ip) = Forward::bind(pebble.http_port).await;
    let ip_text = ip.to_string();
    let (tls_a, tls_b) = (free_port(), free_port());
    let listen_a = format!("127.0.0.1:{tls_a}");
    let listen_b = format!("127.0.0.1:{tls_b}");
    // Both routers look for verified domains without a certificate every 0.3 s: they race.
    let mut p = test_support::cluster::start(
        &services,
        &[
            ("CLOUDRUNR_DOMAIN", DOMAIN),
            ("CLOUDRUNR_TLS_LISTEN", &listen_a),
            ("CLOUDRUNR_DNS_RESOLVER", &dns.dns),
            ("CLOUDRUNR_PUBLIC_IPS", &ip_text),
            ("CLOUDRUNR_ACME_DIRECTORY", &pebble.directory),
            ("CLOUDRUNR_ACME_CA_ROOTS", &pebble.ca),
            ("CLOUDRUNR_ACME_EMAIL", "ops@example.test"),
            ("CLOUDRUNR_ACME_CHECK_SECS", "0.3"),
            ("CLOUDRUNR_ACME_RETRY_SECS", "1"),
            ("CLOUDRUNR_ACME_PROFILE", "default"),
        ],
    )
    .await;
    p.start_router("router-b", &[("CLOUDRUNR_TLS_LISTEN", &listen_b)]);
    // Pebble's HTTP-01 checks reach the first router; the second answers from the same table.
    let _forward = Forward::run(listener, SocketAddr::from(([127, 0, 0, 1], p.sites_port)));
    let ann = p.signup("Ann").await;
    p.create_project(&ann, json!({ "name": "shop", "git_url": git.url("site") }))
        .await;
    let id = p.deploy(&ann, "shop").await;
    assert_eq!(p.wait_final(&ann, &id).await["state"], "ready", "{}", p.server_log());

    let zone = Challtestsrv::unique_zone();
    let (status, added) = p
        .post("/api/projects/shop/domains", &ann, json!({ "name": zone }))
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{added}");
    let token = added["domain"]["records"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["type"] == "TXT"))
        .and_then(|r| r["value"].as_str())
        .unwrap_or_else(|| panic!("a TXT record to set: {added}"))
        .to_owned();
    dns.add_a(&zone, &[&ip_text]).await;
    dns.set_txt(&format!("_cloudrunr.{zone}"), &token).await;
    let (status, body) = p
        .post(&format!("/api/projects/shop/domains/{zone}/verify"), &ann, json!({}))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["domain"]["state"], "verified", "{body}");

    // Each router serves the site over HTTPS with the issued chain.
    for port in [tls_a, tls_b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "20", "--noproxy", "*", "--resolve"])
                .arg(format!("{zone}:{port}:127.0.0.1"))
                .arg("--cacert")
                .arg(&pebble.roots)
                .args(["-w", "\n%{http_code}\n"])
                .arg(format!("https://{zone}:{port}/"))
                .output()
                .await
                .expect("run curl");
            let page = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && page.contains("<h1>Static home</h1>") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the router on {port} never served {zone} over HTTPS: {page}\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                p.server_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // One order in all: the lease kept the other router from ordering too.
    let orders = p.part_log("router").matches("ordering a certificate").count()
        + p.part_log("router-b").matches("ordering a certificate").count();
    assert_eq!(orders, 1, "{}", p.server_log());
    let (_, domain) = p.get(&format!("/api/projects/shop/domains/{zone}"), &ann).await;
    assert_eq!(domain["domain"]["state"], "certificate_issued", "{domain}");
}
