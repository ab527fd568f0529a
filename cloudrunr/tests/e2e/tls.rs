//! HTTPS at the edge, end to end: a real `cloudrunr serve` with a TLS listener and certificates
//! from files (made here by a throwaway CA), reached with curl — HTTP/2 and HTTP/1.1 on a site,
//! the API and the webhook; SNI choosing between two certificates; the default certificate for
//! unknown names; files replaced on disk while requests keep flowing; plain HTTP's 308.

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use test_support::git_server::GitServer;
use test_support::{Platform, fixture};
use tokio::process::Command;

const DOMAIN: &str = "example.test";

/// A certificate authority of the test's own.
struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// Its certificate, PEM, where curl can read it.
    pem: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).expect("write CA");
        Ca { cert, key, pem }
    }

    /// A leaf for `names`, with `cn` as its subject, written to `<file>.pem` and `<file>.key`.
    fn issue(&self, dir: &Path, file: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        let (cert_path, key_path) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}.key")));
        // Written beside and renamed into place, as renewal tools do.
        let tmp = dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, cert.pem()).expect("write cert");
        std::fs::rename(&tmp, &cert_path).expect("rename cert");
        std::fs::write(&tmp, key.serialize_pem()).expect("write key");
        std::fs::rename(&tmp, &key_path).expect("rename key");
        (cert_path, key_path)
    }
}

/// What curl saw.
#[derive(Debug)]
struct Fetched {
    ok: bool,
    /// `<http version> <status>` per URL, then the body, as curl printed them.
    out: String,
    err: String,
}

/// curl over HTTPS to `name` on the TLS port, trusting only `ca`; `extra` flags go first.
async fn curl(port: u16, name: &str, ca: &Path, extra: &[&str], paths: &[&str]) -> Fetched {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--noproxy", "*", "--resolve"])
        .arg(format!("{name}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(ca)
        .args(extra)
        .args(["-w", "\n%{http_version} %{http_code}\n"]);
    for path in paths {
        cmd.arg(format!("https://{name}:{port}{path}"));
    }
    let out = cmd.output().await.expect("run curl");
    Fetched {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The subject of the certificate served to a client naming `name` (openssl: curl would not
/// show an untrusted one).
async fn served_subject(port: u16, name: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", name])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_default()
        .to_owned()
}

/// A platform with TLS on, its sites under [`DOMAIN`], a deployed site `blog`, and its TLS port.
struct Tls {
    p: Platform,
    _git: GitServer,
    dir: tempfile::TempDir,
    token: String,
    port: u16,
    platform_ca: Ca,
    shop_ca: Ca,
}

impl Tls {
    async fn start() -> Tls {
        Tls::start_with(&fixture("static")).await
    }

    /// [`Tls::start`] with the site `blog` built from `site` (a directory of static files).
    async fn start_with(site: &Path) -> Tls {
        let dir = tempfile::tempdir().expect("dir");
        let platform_ca = Ca::new(dir.path(), "platform-ca");
        let shop_ca = Ca::new(dir.path(), "shop-ca");
        let (wild_cert, wild_key) =
            platform_ca.issue(dir.path(), "wildcard", "platform wildcard", &["*.example.test", DOMAIN]);
        let (shop_cert, shop_key) = shop_ca.issue(dir.path(), "shop", "shop only", &["shop.example.test"]);
        let certs = format!("{},{}", wild_cert.display(), shop_cert.display());
        let keys = format!("{},{}", wild_key.display(), shop_key.display());
        let git = GitServer::start().await;
        git.create_repo("static", site);
        let p = Platform::start_with(&[
            ("CLOUDRUNR_DOMAIN", DOMAIN),
            ("CLOUDRUNR_TLS_LISTEN", "127.0.0.1:0"),
            ("CLOUDRUNR_TLS_CERT", &certs),
            ("CLOUDRUNR_TLS_KEY", &keys),
            ("CLOUDRUNR_TLS_RELOAD_SECS", "0.2"),
        ])
        .await;
        let token = p.signup("Ann").await;
        let project = p
            .create_project(&token, json!({ "name": "blog", "git_url": git.url("static") }))
            .await;
        // Site URLs name HTTPS and its port.
        let url = project["production_url"].as_str().expect("production_url").to_owned();
        let port = url
            .strip_prefix("https://blog.example.test:")
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("site URLs are https on the TLS port: {url}"));
        let id = p.deploy(&token, "blog").await;
        let d = p.wait_final(&token, &id).await;
        assert_eq!(d["state"], "ready", "{}", p.log_text(&token, &id).await);
        Tls {
            p,
            _git: git,
            dir,
            token,
            port,
            platform_ca,
            shop_ca,
        }
    }
}

#[tokio::test]
async fn sites_api_and_webhook_over_https_with_h2_and_http1() {
    let t = Tls::start().await;
    let ca = &t.platform_ca.pem;
    // HTTP/1.1: two requests on one connection, the second from the kept answers.
    let h1 = curl(t.port, "blog.example.test", ca, &["--http1.1"], &["/", "/"]).await;
    assert!(h1.ok, "{h1:?}\n{}", t.p.server_log());
    assert_eq!(h1.out.matches("Static home").count(), 2, "{h1:?}");
    assert_eq!(h1.out.matches("\n1.1 200\n").count(), 2, "{h1:?}");
    assert!(h1.err.is_empty(), "{h1:?}");

    let h2 = curl(t.port, "blog.example.test", ca, &["--http2"], &["/about", "/missing"]).await;
    assert!(h2.ok, "{h2:?}");
    assert!(h2.out.contains("About page") && h2.out.contains("\n2 200\n"), "{h2:?}");
    assert!(h2.out.contains("Custom 404") && h2.out.contains("\n2 404\n"), "{h2:?}");

    // The API and the dashboard on the platform's own host, both protocols.
    let auth = format!("authorization: Bearer {}", t.token);
    for proto in ["--http2", "--http1.1"] {
        let api = curl(t.port, DOMAIN, ca, &[proto, "-H", &auth], &["/api/projects/blog"]).await;
        assert!(api.ok && api.out.contains("\"slug\":\"blog\""), "{proto}: {api:?}");
        assert!(api.out.contains("https://blog.example.test:"), "{api:?}");
        let page = curl(t.port, DOMAIN, ca, &[proto], &["/login"]).await;
        assert!(page.ok && page.out.contains(" 200\n"), "{proto}: {page:?}");
    }
    // A POST with a body over HTTP/2 reaches the API, which reads it.
    let login = curl(
        t.port,
        DOMAIN,
        ca,
        &[
            "--http2",
            "-H",
            "content-type: application/json",
            "--data",
            r#"{"email":"ann@example.com","password":"not the password"}"#,
        ],
        &["/api/auth/login"],
    )
    .await;
    assert!(login.ok && login.out.contains("\n2 401\n"), "{login:?}");
    // The webhook over HTTPS (which says no App is connected). It answers before reading the
    // body; over HTTP/2 hyper then resets the stream, which curl may report as an error.
    let hook = curl(
        t.port,
        DOMAIN,
        ca,
        &["--http1.1", "-X", "POST", "-H", "x-github-event: ping", "--data", "{}"],
        &["/webhooks/github"],
    )
    .await;
    assert!(
        hook.ok && hook.out.contains("github_not_connected") && hook.out.contains("\n1.1 503\n"),
        "{hook:?}"
    );

    // The dashboard over HTTP/2, as a browser: its log-in form (anti-forgery token, pre-session
    // cookie), posted with an Origin — checked against the host, which HTTP/2 sends as
    // `:authority` — then the session cookie (`Secure`, `__Host-`) opens the project page.
    let jar = t.dir.path().join("cookies.txt");
    let jar_s = jar.to_str().expect("path");
    let login_page = curl(t.port, DOMAIN, ca, &["--http2", "-c", jar_s, "-b", jar_s], &["/login"]).await;
    assert!(login_page.ok, "{login_page:?}");
    let csrf = test_support::csrf_of(&login_page.out);
    let origin = format!("origin: https://{DOMAIN}:{}", t.port);
    let form = format!("csrf={csrf}&email=ann%40example.com&password=correct+horse+battery");
    let logged_in = curl(
        t.port,
        DOMAIN,
        ca,
        &[
            "--http2", "-c", jar_s, "-b", jar_s, "-H", &origin, "--data", &form, "-D", "-",
        ],
        &["/login"],
    )
    .await;
    assert!(logged_in.ok && logged_in.out.contains("\n2 303\n"), "{logged_in:?}");
    assert!(
        logged_in.out.contains("__Host-") && logged_in.out.contains("Secure"),
        "{logged_in:?}"
    );
    let page = curl(t.port, DOMAIN, ca, &["--http2", "-b", jar_s], &["/projects/blog"]).await;
    assert!(
        page.ok && page.out.contains("\n2 200\n") && page.out.contains("https://blog.example.test:"),
        "{page:?}"
    );

    // Session resumption: a second connection resumes the first one's session.
    let sess = t.dir.path().join("session.pem");
    let first = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", t.port),
            "-servername",
            "blog.example.test",
        ])
        .args(["-tls1_2", "-sess_out"])
        .arg(&sess)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", t.port),
            "-servername",
            "blog.example.test",
        ])
        .args(["-tls1_2", "-sess_in"])
        .arg(&sess)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl");
    let text = String::from_utf8_lossy(&second.stdout);
    assert!(text.contains("Reused, TLSv1.2"), "{text}");
}

#[tokio::test]
async fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let t = Tls::start().await;
    // shop.example.test has a certificate of its own, from another CA; its neighbours the wildcard.
    let shop = curl(t.port, "shop.example.test", &t.shop_ca.pem, &[], &["/"]).await;
    assert!(shop.ok, "{shop:?}");
    let shop_with_platform_ca = curl(t.port, "shop.example.test", &t.platform_ca.pem, &[], &["/"]).await;
    assert!(!shop_with_platform_ca.ok, "{shop_with_platform_ca:?}");
    let blog = curl(t.port, "blog.example.test", &t.platform_ca.pem, &[], &["/"]).await;
    assert!(blog.ok && blog.out.contains("Static home"), "{blog:?}");
    assert!(served_subject(t.port, "shop.example.test").await.contains("shop only"));
    assert!(
        served_subject(t.port, "Blog.Example.Test")
            .await
            .contains("platform wildcard")
    );

    // A name no certificate covers gets the default (the first configured), and is logged.
    assert!(
        served_subject(t.port, "unknown.invalid")
            .await
            .contains("platform wildcard")
    );
    let unknown = curl(t.port, "unknown.invalid", &t.platform_ca.pem, &[], &["/"]).await;
    assert!(!unknown.ok, "the default certificate does not name it: {unknown:?}");
    // Two labels under the wildcard are not covered either.
    assert!(
        served_subject(t.port, "a.b.example.test")
            .await
            .contains("platform wildcard")
    );
    let log = t.p.server_log();
    assert!(log.contains("named a host no certificate covers"), "{log}");
}

#[tokio::test]
async fn tls_without_any_certificate_refuses_handshakes_and_bad_files_refuse_to_start() {
    let git = GitServer::start().await;
    git.create_repo("static", &fixture("static"));
    let p = Platform::start_with(&[("CLOUDRUNR_DOMAIN", DOMAIN), ("CLOUDRUNR_TLS_LISTEN", "127.0.0.1:0")]).await;
    let token = p.signup("Bo").await;
    let project = p
        .create_project(&token, json!({ "name": "blog", "git_url": git.url("static") }))
        .await;
    let url = project["production_url"].as_str().expect("url").to_owned();
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("{url}"));
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "ca");
    let refused = curl(port, "blog.example.test", &ca.pem, &["-k"], &["/"]).await;
    assert!(!refused.ok, "{refused:?}");
    // Plain HTTP goes on for every host: none has a certificate.
    let plain = p
        .http
        .get(format!("{}/api/openapi.json", p.base))
        .send()
        .await
        .expect("plain");
    assert_eq!(plain.status(), 200);

    // A key that is not the certificate's: the server says so and does not start.
    let (cert, _) = ca.issue(dir.path(), "a", "a", &["a.test"]);
    let (_, other_key) = ca.issue(dir.path(), "b", "b", &["b.test"]);
    let out = std::process::Command::new(test_support::cloudrunr_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("CLOUDRUNR_TLS_LISTEN", "127.0.0.1:0")
        .env("CLOUDRUNR_TLS_CERT", &cert)
        .env("CLOUDRUNR_TLS_KEY", &other_key)
        .output()
        .expect("run cloudrunr");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not fit"), "{err}");
}

#[tokio::test]
async fn replaced_files_are_served_without_a_restart_or_a_dropped_request() {
    let t = Tls::start().await;
    let renewed_ca = Ca::new(t.dir.path(), "renewed-ca");
    // Trusts both the old and the new issuer, so that every request must succeed.
    let both = t.dir.path().join("both.pem");
    let mut bundle = std::fs::read_to_string(&t.platform_ca.pem).expect("read");
    bundle.push_str(&std::fs::read_to_string(&renewed_ca.pem).expect("read"));
    std::fs::write(&both, bundle).expect("write");

    // Requests flow on new connections the whole time.
    let (port, both_for_load) = (t.port, both.clone());
    let load = tokio::spawn(async move {
        let mut results = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < until {
            results.push(curl(port, "blog.example.test", &both_for_load, &[], &["/"]).await);
        }
        results
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.renew(&renewed_ca, "renewed wildcard");
    let results = load.await.expect("load");
    assert!(results.len() >= 5, "{}", results.len());
    for r in &results {
        assert!(r.ok && r.out.contains("Static home"), "{r:?}\n{}", t.p.server_log());
    }
    t.eventually_subject("blog.example.test", "renewed wildcard").await;
    let new_only = curl(t.port, "blog.example.test", &renewed_ca.pem, &["--http2"], &["/"]).await;
    assert!(new_only.ok && new_only.out.contains("Static home"), "{new_only:?}");

    // A broken replacement keeps the certificate served, and the log says why. (The renewal
    // itself may have been seen half done — new certificate, old key — and said so too.)
    let kept = || t.p.server_log().matches("keeping the one loaded before").count();
    let before = kept();
    std::fs::write(
        t.dir.path().join("wildcard.key"),
        "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let log_has = || kept() > before;
    for _ in 0..100 {
        if log_has() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log_has(), "{}", t.p.server_log());
    assert!(
        served_subject(t.port, "blog.example.test")
            .await
            .contains("renewed wildcard")
    );
    let still = curl(t.port, "blog.example.test", &renewed_ca.pem, &[], &["/"]).await;
    assert!(still.ok, "{still:?}");
}

impl Tls {
    /// Replaces the platform's certificate files with a new leaf from `ca`.
    fn renew(&self, ca: &Ca, cn: &str) {
        ca.issue(self.dir.path(), "wildcard", cn, &["*.example.test", DOMAIN]);
    }

    async fn eventually_subject(&self, name: &str, subject: &str) {
        let mut last = String::new();
        for _ in 0..100 {
            last = served_subject(self.port, name).await;
            if last.contains(subject) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name} never got {subject:?}; last {last:?}\n{}", self.p.server_log());
    }
}

#[tokio::test]
async fn plain_http_redirects_hosts_with_a_certificate_but_not_challenges() {
    let t = Tls::start().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let get = |host: &str, path: &str| {
        plain
            .get(format!("http://127.0.0.1:{}{path}", t.p.port))
            .header("host", host)
            .send()
    };
    // A site (the fast path's host) and the platform's host.
    for (host, path) in [("blog.example.test", "/about?x=1"), (DOMAIN, "/login")] {
        let resp = get(host, path).await.expect("request");
        assert_eq!(resp.status(), 308, "{host}");
        assert_eq!(
            resp.headers()["location"],
            format!("https://{host}:{}{path}", t.port).as_str(),
            "{host}"
        );
    }
    // HTTP-01 challenges are answered over plain HTTP.
    let challenge = get("blog.example.test", "/.well-known/acme-challenge/some-token")
        .await
        .expect("request");
    assert_ne!(challenge.status(), 308);
    // Hosts without a certificate stay: the server by address, `*.localhost`.
    let by_address = plain
        .get(format!("{}/api/openapi.json", t.p.base))
        .send()
        .await
        .expect("request");
    assert_eq!(by_address.status(), 200);
    let local = get("blog.localhost", "/").await.expect("request");
    assert_ne!(local.status(), 308);
    // Raw HTTP/1.1 on the fast path's shape, twice on one connection: both redirected.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", t.p.port))
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: blog.example.test\r\n\r\nGET /a HTTP/1.1\r\nHost: blog.example.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert_eq!(out.matches("HTTP/1.1 308").count(), 2, "{out}");
}

/// The `Strict-Transport-Security` values in curl's dumped headers (`-D -`).
fn sts_headers(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case("strict-transport-security"))
        .map(|(_, value)| value.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn hsts_only_on_https_answers_of_projects_that_opt_in() {
    use test_support::{Client, csrf_of};
    let t = Tls::start().await;
    let ca = &t.platform_ca.pem;
    let site = |proto: &'static str| async move {
        curl(t.port, "blog.example.test", ca, &[proto, "-D", "-"], &["/", "/about"]).await
    };

    // Off by default.
    for proto in ["--http1.1", "--http2"] {
        let off = site(proto).await;
        assert!(off.ok && off.out.contains("Static home"), "{off:?}");
        assert!(sts_headers(&off.out).is_empty(), "{proto}: {off:?}");
    }
    let (_, project) = t.p.get("/api/projects/blog", &t.token).await;
    assert_eq!(project["project"]["hsts"], false, "{project}");
    let branch = project["project"]["branch"].as_str().expect("branch").to_owned();

    // Turned on through the dashboard's settings form.
    let mut browser = Client::new(&t.p);
    let (_, login) = browser.get("/login").await;
    let csrf = csrf_of(&login);
    let resp = browser
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
    assert_eq!(resp.status(), 303, "{:?}", resp.text().await);
    let (_, page) = browser.get("/projects/blog").await;
    assert!(page.contains(r#"name="hsts" value="1">"#), "unchecked at first");
    let csrf = csrf_of(&page);
    let saved = browser
        .post(
            "/projects/blog/settings",
            &[("csrf", &csrf), ("name", "blog"), ("branch", &branch), ("hsts", "1")],
            None,
        )
        .await;
    assert_eq!(saved.status(), 303, "{:?}", saved.text().await);
    let (_, page) = browser.get("/projects/blog").await;
    assert!(page.contains(r#"name="hsts" value="1" checked>"#), "checked once saved");
    let (_, project) = t.p.get("/api/projects/blog", &t.token).await;
    assert_eq!(project["project"]["hsts"], true, "{project}");

    // Every HTTPS answer of the project's hosts carries it, on both protocols, the fast path's
    // kept answers (the second `/` of the first run) included; other hosts' answers do not.
    for proto in ["--http1.1", "--http2", "--http1.1"] {
        let on = site(proto).await;
        assert!(on.ok, "{on:?}");
        assert_eq!(
            sts_headers(&on.out),
            ["max-age=31536000", "max-age=31536000"],
            "{proto}: {on:?}"
        );
    }
    let api = curl(t.port, DOMAIN, ca, &["-D", "-"], &["/api/openapi.json"]).await;
    assert!(api.ok && sts_headers(&api.out).is_empty(), "{api:?}");
    let other = curl(t.port, "nobody.example.test", ca, &["-D", "-"], &["/"]).await;
    assert!(other.ok && sts_headers(&other.out).is_empty(), "{other:?}");
    // Never over plain HTTP (there, the host is redirected to HTTPS).
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{}/", t.p.port))
        .header("host", "blog.example.test")
        .send()
        .await
        .expect("plain");
    assert_eq!(plain.status(), 308);
    assert!(plain.headers().get("strict-transport-security").is_none());

    // Off again through the API; a value that is not a boolean is refused.
    let (status, body) =
        t.p.call(
            reqwest::Method::PATCH,
            "/api/projects/blog",
            Some(&t.token),
            Some(json!({ "hsts": "yes" })),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, body) =
        t.p.call(
            reqwest::Method::PATCH,
            "/api/projects/blog",
            Some(&t.token),
            Some(json!({ "hsts": false })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["project"]["hsts"], false, "{body}");
    let off = site("--http1.1").await;
    assert!(off.ok && sts_headers(&off.out).is_empty(), "{off:?}");
}

#[tokio::test]
async fn tls_connections_are_bounded_like_plain_ones() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.issue(dir.path(), "wildcard", "platform wildcard", &["*.example.test", DOMAIN]);
    let p = Platform::start_with(&[
        ("CLOUDRUNR_DOMAIN", DOMAIN),
        ("CLOUDRUNR_TLS_LISTEN", "127.0.0.1:0"),
        ("CLOUDRUNR_TLS_CERT", cert.to_str().expect("path")),
        ("CLOUDRUNR_TLS_KEY", key.to_str().expect("path")),
        ("CLOUDRUNR_TLS_HANDSHAKE_TIMEOUT_SECS", "1"),
        ("CLOUDRUNR_MAX_CONNECTIONS", "3"),
    ])
    .await;
    let log = p.server_log();
    let port: u16 = log
        .split("listening for HTTPS on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));

    // A client that connects and never says hello is let go at the handshake timeout.
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Handshakes in progress count against the cap and are idle: at the cap, a new connection
    // takes the place of one that has not finished its handshake.
    let connected = std::time::Instant::now();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served = curl(port, "blog.example.test", &ca.pem, &[], &["/"]).await;
    assert!(served.ok && served.out.contains(" 404\n"), "{served:?}");
    // The oldest was closed to make room — well before its handshake timeout would have.
    let oldest = tokio::time::timeout(Duration::from_millis(300), held[0].read(&mut buf)).await;
    assert!(matches!(oldest, Ok(Ok(0)) | Ok(Err(_))), "{oldest:?}");
    assert!(
        connected.elapsed() < Duration::from_millis(900),
        "{:?}",
        connected.elapsed()
    );
}

#[tokio::test]
async fn the_router_apart_terminates_tls_too() {
    use test_support::cluster::{self, Services};
    let Some(services) = Services::get() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.issue(dir.path(), "wildcard", "platform wildcard", &["*.example.test", DOMAIN]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let git = GitServer::start().await;
    git.create_repo("static", &fixture("static"));
    let p = cluster::start(
        &services,
        &[
            ("CLOUDRUNR_DOMAIN", DOMAIN),
            ("CLOUDRUNR_TLS_LISTEN", &listen),
            ("CLOUDRUNR_TLS_CERT", cert.to_str().expect("path")),
            ("CLOUDRUNR_TLS_KEY", key.to_str().expect("path")),
        ],
    )
    .await;
    let token = p.signup("Ann").await;
    p.create_project(&token, json!({ "name": "apart", "git_url": git.url("static") }))
        .await;
    let id = p.deploy(&token, "apart").await;
    let d = p.wait_final(&token, &id).await;
    assert_eq!(d["state"], "ready", "{}", p.server_log());
    // The router hears of the deployment through Kafka, a moment later.
    let mut last = None;
    for _ in 0..100 {
        let got = curl(port, "apart.example.test", &ca.pem, &["--http2"], &["/"]).await;
        if got.ok && got.out.contains("Static home") && got.out.contains("\n2 200\n") {
            last = None;
            break;
        }
        last = Some(got);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.is_none(), "{last:?}\n{}", p.server_log());
    let h1 = curl(port, "apart.example.test", &ca.pem, &["--http1.1"], &["/about"]).await;
    assert!(h1.ok && h1.out.contains("About page"), "{h1:?}");
    // Its plain listener sends covered hosts to HTTPS.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{}/about", p.sites_port))
        .header("host", "apart.example.test")
        .send()
        .await
        .expect("plain");
    assert_eq!(plain.status(), 308);
    // (On the port site URLs name: the cluster sets CLOUDRUNR_SITES_PORT, which wins.)
    let location = plain.headers()["location"].to_str().expect("location").to_owned();
    assert!(
        location.starts_with("https://apart.example.test:") && location.ends_with("/about"),
        "{location}"
    );
}

#[tokio::test]
async fn long_bodies_arrive_whole_over_tls_on_the_fast_path() {
    // Long enough to go out behind its head in pieces (first answer), then from a kept file
    // (later answers: `sendfile` over plain TCP, read and encrypted over TLS); and one longer than
    // any kept answer, streamed.
    let site = tempfile::tempdir().expect("dir");
    let line = |i: usize| format!("line {i:06} of a long file that no compression is asked for\n");
    let long: String = (0..4000).map(line).collect();
    let longer: String = (0..40_000).map(line).collect();
    std::fs::write(site.path().join("index.html"), "<h1>Static home</h1>").expect("write");
    std::fs::write(site.path().join("long.txt"), &long).expect("write");
    std::fs::write(site.path().join("longer.txt"), &longer).expect("write");
    assert!(long.len() > 200_000 && longer.len() > 2_000_000);
    let t = Tls::start_with(site.path()).await;
    let ca = &t.platform_ca.pem;
    for proto in ["--http1.1", "--http2"] {
        let got = curl(
            t.port,
            "blog.example.test",
            ca,
            &[proto],
            &["/long.txt", "/long.txt", "/long.txt"],
        )
        .await;
        assert!(got.ok, "{proto}: {}", got.err);
        assert_eq!(got.out.matches(long.as_str()).count(), 3, "{proto}");
        let got = curl(
            t.port,
            "blog.example.test",
            ca,
            &[proto],
            &["/longer.txt", "/longer.txt"],
        )
        .await;
        assert!(got.ok, "{proto}: {}", got.err);
        assert_eq!(got.out.matches(longer.as_str()).count(), 2, "{proto}");
    }
}
