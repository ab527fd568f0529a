//! Issuance against a real ACME server: Pebble and pebble-challtestsrv from `scripts/pebble`
//! (`eval "$(scripts/pebble start)"`), on loopback. Skipped when its variables are unset, unless
//! CI or `CLOUDRUNR_REQUIRE_SERVICES=1` forbids skipping.
//!
//! Pebble validates HTTP-01 at `<the name's A record>:$CLOUDRUNR_TEST_PEBBLE_HTTP_PORT`, for every
//! name. Each test therefore answers on a loopback address of its own (127.x.y.z, all routed to
//! `lo` on Linux) and points its names there in challtestsrv: the tests share one Pebble and run
//! in parallel. Pebble rejects 5% of nonces unless told otherwise (`scripts/pebble` keeps that
//! default), so every test here also goes through instant-acme's badNonce retries.

use crate::policy::Limits;
use crate::{AcmeConfig, AcmeError, CertName, ChallengeAnswers, Issuer, Outcome};
use db::Database;
use platform::crypto::SecretBox;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

struct Pebble {
    directory: String,
    ca: PathBuf,
    http_port: u16,
    challtestsrv: String,
}

fn pebble() -> Option<Pebble> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (Some(directory), Some(ca), Some(port), Some(challtestsrv)) = (
        var("CLOUDRUNR_TEST_PEBBLE_DIRECTORY"),
        var("CLOUDRUNR_TEST_PEBBLE_CA"),
        var("CLOUDRUNR_TEST_PEBBLE_HTTP_PORT"),
        var("CLOUDRUNR_TEST_CHALLTESTSRV"),
    ) else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        let required = std::env::var("CLOUDRUNR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(
            !ci && !required,
            "the ACME tests need Pebble, but CLOUDRUNR_TEST_PEBBLE_* is not set (and CI or \
             CLOUDRUNR_REQUIRE_SERVICES=1 forbids skipping them): run `eval \"$(scripts/pebble start)\"`"
        );
        eprintln!("skipping an ACME test: CLOUDRUNR_TEST_PEBBLE_DIRECTORY is not set (scripts/pebble start)");
        return None;
    };
    Some(Pebble {
        directory,
        ca: PathBuf::from(ca),
        http_port: port.parse().expect("CLOUDRUNR_TEST_PEBBLE_HTTP_PORT is a port"),
        challtestsrv,
    })
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    platform::ids::random_bytes(&mut b);
    hex::encode(b)
}

/// A loopback address no other test picks (with overwhelming likelihood).
fn own_loopback() -> Ipv4Addr {
    let mut b = [0u8; 3];
    platform::ids::random_bytes(&mut b);
    Ipv4Addr::new(127, b[0].max(2), b[1], b[2].clamp(1, 254))
}

impl Pebble {
    fn config(&self) -> AcmeConfig {
        AcmeConfig {
            directory: self.directory.clone(),
            email: Some("ops@example.test".into()),
            ca_roots: Some(self.ca.clone()),
            dns_hook: None,
            dns_propagation: Duration::ZERO,
            profile: None,
            limits: Limits {
                backoff_base: Duration::from_millis(500),
                ..Limits::default()
            },
            order_timeout: Duration::from_secs(60),
        }
    }

    async fn challtestsrv(&self, path: &str, body: serde_json::Value) {
        let rsp = reqwest::Client::new()
            .post(format!("{}{path}", self.challtestsrv))
            .json(&body)
            .send()
            .await
            .expect("challtestsrv answers");
        assert!(rsp.status().is_success(), "challtestsrv {path}: {}", rsp.status());
    }

    async fn point(&self, name: &str, ip: Ipv4Addr) {
        self.challtestsrv(
            "/add-a",
            serde_json::json!({ "host": format!("{name}."), "addresses": [ip.to_string()] }),
        )
        .await;
    }
}

async fn database() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&format!("sqlite://{}", dir.path().join("db.sqlite").display()))
        .await
        .unwrap();
    (dir, db)
}

fn secrets() -> SecretBox {
    SecretBox::new(&SecretBox::generate_key()).unwrap()
}

/// A tiny HTTP-01 responder at `ip:port` answering from the database, as a router process does.
async fn responder(db: Database, ip: Ipv4Addr, port: u16) -> tokio::task::JoinHandle<()> {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    let answers = ChallengeAnswers::new(db);
    let app = axum::Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(
                |State(answers): State<ChallengeAnswers>, Path(token): Path<String>| async move {
                    match answers.key_authorization(&token).await {
                        Some(key_authorization) => (StatusCode::OK, key_authorization),
                        None => (StatusCode::NOT_FOUND, String::new()),
                    }
                },
            ),
        )
        .with_state(answers);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, port)))
        .await
        .expect("binds the loopback address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    })
}

fn issued(outcome: Outcome) -> crate::Issued {
    match outcome {
        Outcome::Issued(i) => i,
        other => panic!("expected a new certificate, got {other:?}"),
    }
}

/// The certificate is valid for exactly the names its name covers (a wildcard: with its base).
fn check_servable(cert: &crate::Issued, name: &str) {
    let key = router::tls::certified_key_from_pem(cert.chain_pem.as_bytes(), cert.key_pem.expose().as_bytes())
        .expect("the chain and key make a servable certificate");
    let mut names = router::tls::dns_names(&key).unwrap();
    names.sort();
    let name = CertName::parse(name).unwrap();
    let mut covered = name.covered();
    covered.sort_unstable();
    assert_eq!(names, covered);
    assert!(cert.not_before <= crate::now_ms() + 60_000 && cert.not_after > cert.not_before);
    assert_eq!(cert.renew_at, crate::policy::renew_at(cert.not_before, cert.not_after));
}

#[tokio::test]
async fn http_01_issues_stores_and_reuses_a_certificate() {
    let Some(pebble) = pebble() else { return };
    let (_dir, db) = database().await;
    let ip = own_loopback();
    let _responder = responder(db.clone(), ip, pebble.http_port).await;
    let name = format!("site-{}.example.test", random_hex(4));
    pebble.point(&name, ip).await;
    let secrets = secrets();
    let issuer = Issuer::new(db.clone(), secrets.clone(), pebble.config());
    let name = CertName::parse(&name).unwrap();

    let cert = issued(issuer.ensure(&name).await.expect("issues"));
    check_servable(&cert, name.as_str());

    // Stored with the key sealed; tokens withdrawn; the account kept for the next order.
    let stored = db.certificate(name.as_str()).await.unwrap().expect("stored");
    assert!(!stored.key_sealed.contains("PRIVATE KEY"));
    assert_eq!(
        secrets.open(&stored.key_sealed).unwrap().expose(),
        cert.key_pem.expose()
    );
    assert!(db.acme_account(&pebble.directory).await.unwrap().is_some());
    let state = db.issuance_state(name.as_str()).await.unwrap();
    assert_eq!((state.failures, state.last_error), (0, None));

    // Not due: the stored one, no new order (a second issuer, as another process, too).
    assert!(matches!(issuer.ensure(&name).await.unwrap(), Outcome::Current(_)));
    let other = Issuer::new(db.clone(), secrets, pebble.config());
    assert!(matches!(other.ensure(&name).await.unwrap(), Outcome::Current(_)));
    let counts = db
        .acme_order_counts(&pebble.directory, 0, name.as_str(), 0)
        .await
        .unwrap();
    assert_eq!(counts.account_orders, 1);
}

#[tokio::test]
async fn a_failed_validation_is_reported_backed_off_and_retried() {
    let Some(pebble) = pebble() else { return };
    let (_dir, db) = database().await;
    let ip = own_loopback();
    let name = format!("fail-{}.example.test", random_hex(4));
    pebble.point(&name, ip).await;
    let issuer = Issuer::new(db.clone(), secrets(), pebble.config());
    let name = CertName::parse(&name).unwrap();

    // Nothing answers at the name's address yet: the CA cannot validate.
    let e = issuer.ensure(&name).await.expect_err("nothing answers the CA");
    assert!(matches!(e, AcmeError::Validation { .. }), "{e}");
    let state = db.issuance_state(name.as_str()).await.unwrap();
    assert_eq!(state.failures, 1);
    let reported = state.last_error.expect("the reason is kept");
    assert!(reported.contains(name.as_str()), "{reported}");
    assert!(
        reported.to_lowercase().contains("connect"),
        "Pebble's reason is kept: {reported}"
    );

    // Right away: backing off, no order.
    match issuer.ensure(&name).await.unwrap() {
        Outcome::Waiting { reason, .. } => assert!(reason.contains("backing off"), "{reason}"),
        other => panic!("expected to wait, got {other:?}"),
    }
    let counts = db
        .acme_order_counts(&pebble.directory, 0, name.as_str(), 0)
        .await
        .unwrap();
    assert_eq!((counts.account_orders, counts.name_failed_validations), (1, 1));

    // Once the backoff ran out and the router answers, the retry succeeds.
    let _responder = responder(db.clone(), ip, pebble.http_port).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let cert = issued(issuer.ensure(&name).await.expect("the retry issues"));
    check_servable(&cert, name.as_str());
    let state = db.issuance_state(name.as_str()).await.unwrap();
    assert_eq!((state.failures, state.last_error), (0, None));
}

#[tokio::test]
async fn a_wildcard_is_issued_over_dns_01_through_the_hook() {
    let Some(pebble) = pebble() else { return };
    let (dir, db) = database().await;
    // The operator's hook: publishes and clears the TXT record in challtestsrv, logging each call.
    let log = dir.path().join("hook.log");
    let hook = dir.path().join("dns-hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\necho \"$1 $2\" >> {log}\ncase \"$1\" in\n\
             set) curl -fsS -X POST {srv}/set-txt -d \"{{\\\"host\\\":\\\"$2\\\",\\\"value\\\":\\\"$3\\\"}}\" ;;\n\
             clear) curl -fsS -X POST {srv}/clear-txt -d \"{{\\\"host\\\":\\\"$2\\\"}}\" ;;\n\
             *) echo \"unknown action $1\" >&2; exit 2 ;;\nesac\n",
            log = log.display(),
            srv = pebble.challtestsrv
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let base = format!("apps-{}.example.test", random_hex(4));
    let name = CertName::parse(&format!("*.{base}")).unwrap();

    // Without a hook a wildcard cannot be proven, and the issuer says so.
    let no_hook = Issuer::new(db.clone(), secrets(), pebble.config());
    let e = no_hook.ensure(&name).await.expect_err("needs the hook");
    assert!(e.to_string().contains("CLOUDRUNR_ACME_DNS_HOOK"), "{e}");

    let (_dir2, db) = database().await;
    let mut config = pebble.config();
    config.dns_hook = Some(hook);
    let issuer = Issuer::new(db.clone(), secrets(), config);
    let cert = issued(issuer.ensure(&name).await.expect("issues over DNS-01"));
    check_servable(&cert, name.as_str());
    // One value for the wildcard, one for its base, at the same record: both set, then cleared.
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        format!(
            "set _acme-challenge.{base}.\nset _acme-challenge.{base}.\n\
             clear _acme-challenge.{base}.\nclear _acme-challenge.{base}.\n"
        ),
        "the record is set, then cleared"
    );
}

#[tokio::test]
async fn one_process_issues_a_name_at_a_time() {
    let Some(pebble) = pebble() else { return };
    let (_dir, db) = database().await;
    let ip = own_loopback();
    let _responder = responder(db.clone(), ip, pebble.http_port).await;
    let name = format!("race-{}.example.test", random_hex(4));
    pebble.point(&name, ip).await;
    let name = CertName::parse(&name).unwrap();
    let secrets = secrets();
    let a = Issuer::new(db.clone(), secrets.clone(), pebble.config());
    let b = Issuer::new(db.clone(), secrets, pebble.config());

    let (ra, rb) = tokio::join!(a.ensure(&name), b.ensure(&name));
    let outcomes = [ra.expect("a"), rb.expect("b")];
    let issued = outcomes.iter().filter(|o| matches!(o, Outcome::Issued(_))).count();
    assert_eq!(issued, 1, "exactly one issues: {outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Busy | Outcome::Current(_))),
        "the other sees the lease or the result: {outcomes:?}"
    );
    let counts = db
        .acme_order_counts(&pebble.directory, 0, name.as_str(), 0)
        .await
        .unwrap();
    assert_eq!(counts.account_orders, 1, "one order for the name");
    assert_eq!(db.certificates().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_at_two_thirds_of_its_lifetime() {
    let Some(pebble) = pebble() else { return };
    let (_dir, db) = database().await;
    let ip = own_loopback();
    let _responder = responder(db.clone(), ip, pebble.http_port).await;
    let name = format!("short-{}.example.test", random_hex(4));
    pebble.point(&name, ip).await;
    let name = CertName::parse(&name).unwrap();
    let mut config = pebble.config();
    // scripts/pebble's profile of a few seconds (CLOUDRUNR_PEBBLE_SHORT_VALIDITY, default 20 s).
    config.profile = Some("short".into());
    let issuer = Issuer::new(db.clone(), secrets(), config);

    let first = issued(issuer.ensure(&name).await.expect("issues"));
    let lifetime = first.not_after - first.not_before;
    assert!(lifetime < 120_000, "the short profile: {lifetime} ms");
    assert!(issuer.renew_due().await.is_empty(), "nothing is due before two thirds");

    let wait = first.renew_at - crate::now_ms() + 200;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait.max(0)).unwrap())).await;
    let renewed = issuer.renew_due().await;
    assert_eq!(renewed.len(), 1, "{renewed:?}");
    let (renamed, result) = renewed.into_iter().next().unwrap();
    assert_eq!(renamed, name.as_str());
    let second = issued(result.expect("renews"));
    assert!(second.not_after > first.not_after);
    assert_ne!(second.chain_pem, first.chain_pem);
    assert_eq!(
        db.certificate(name.as_str()).await.unwrap().unwrap().chain_pem,
        second.chain_pem
    );
}

#[tokio::test]
async fn challenge_answers_refuse_what_cannot_be_a_token() {
    let (_dir, db) = database().await;
    db.put_acme_http_challenge("tok_EN-1", "tok_EN-1.thumb", "a.example.test", crate::now_ms() + 60_000)
        .await
        .unwrap();
    db.put_acme_http_challenge("old", "old.thumb", "a.example.test", crate::now_ms() - 1)
        .await
        .unwrap();
    let answers = ChallengeAnswers::new(db);
    assert_eq!(
        answers.key_authorization("tok_EN-1").await.as_deref(),
        Some("tok_EN-1.thumb")
    );
    assert_eq!(answers.key_authorization("old").await, None, "expired");
    assert_eq!(answers.key_authorization("../etc").await, None);
    assert_eq!(answers.key_authorization("").await, None);
    assert_eq!(answers.key_authorization("unknown").await, None);
}

/// A Pebble of this test's own (`scripts/pebble start` in a temporary run dir), stopped on drop.
struct OwnPebble {
    pebble: Pebble,
    dir: tempfile::TempDir,
}

impl OwnPebble {
    fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pebble");
        let out = std::process::Command::new(&script)
            .arg("start")
            .env("CLOUDRUNR_PEBBLE_DIR", dir.path())
            .envs(env.iter().copied())
            .output()
            .expect("runs scripts/pebble");
        assert!(
            out.status.success(),
            "scripts/pebble start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exports = String::from_utf8(out.stdout).unwrap();
        let var = |name: &str| {
            exports
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} in {exports}"))
                .to_owned()
        };
        Self {
            pebble: Pebble {
                directory: var("CLOUDRUNR_TEST_PEBBLE_DIRECTORY"),
                ca: PathBuf::from(var("CLOUDRUNR_TEST_PEBBLE_CA")),
                http_port: var("CLOUDRUNR_TEST_PEBBLE_HTTP_PORT").parse().unwrap(),
                challtestsrv: var("CLOUDRUNR_TEST_CHALLTESTSRV"),
            },
            dir,
        }
    }
}

impl Drop for OwnPebble {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pebble");
        let _ = std::process::Command::new(script)
            .arg("stop")
            .env("CLOUDRUNR_PEBBLE_DIR", self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn nonce_rejections_are_retried_until_the_certificate_is_issued() {
    // Needs the Pebble binaries scripts/pebble built (the shared instance proves they are there).
    if pebble().is_none() {
        return;
    }
    // 40% of nonces refused (Pebble's default is 5%): every order meets several rejections.
    let own = OwnPebble::start(&[("PEBBLE_WFE_NONCEREJECT", "40")]);
    let pebble = &own.pebble;
    let (_dir, db) = database().await;
    let ip = own_loopback();
    let _responder = responder(db.clone(), ip, pebble.http_port).await;
    let mut config = pebble.config();
    config.limits.backoff_base = Duration::from_millis(50);
    config.limits.backoff_max = Duration::from_millis(50);
    let issuer = Issuer::new(db.clone(), secrets(), config);
    for _ in 0..2 {
        let name = format!("nonce-{}.example.test", random_hex(4));
        pebble.point(&name, ip).await;
        let name = CertName::parse(&name).unwrap();
        // instant-acme retries each refused request; a request refused every time fails the
        // attempt, which the issuer retries after its backoff, as the renewal loop does.
        let mut attempts = 0;
        let cert = loop {
            attempts += 1;
            match issuer.ensure(&name).await {
                Ok(Outcome::Issued(cert)) => break cert,
                Ok(Outcome::Waiting { .. }) | Err(_) if attempts < 12 => {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
                other => panic!("not issued after {attempts} attempts: {other:?}"),
            }
        };
        check_servable(&cert, name.as_str());
    }
    assert!(
        issuer.nonce_rejections() > 0,
        "Pebble refused nonces and the orders went on"
    );
}

/// A fresh database on the test PostgreSQL server (`CLOUDRUNR_TEST_POSTGRES_URL`), its URL, and
/// the server to drop it from; `None` when there is no server and none is required.
async fn postgres_database() -> Option<(String, String, String)> {
    use sqlx::Connection;
    let server = std::env::var("CLOUDRUNR_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let Some(server) = server else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        let required = std::env::var("CLOUDRUNR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(
            !ci && !required,
            "CLOUDRUNR_TEST_POSTGRES_URL is not set (scripts/services start)"
        );
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!("cloudrunr_acme_{}", random_hex(8));
    let mut admin = sqlx::AnyConnection::connect(&server)
        .await
        .expect("connects to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    Some((url.to_string(), server, name))
}

#[tokio::test]
async fn two_processes_on_one_postgres_issue_a_name_once() {
    use sqlx::Connection;
    let Some(pebble) = pebble() else { return };
    let Some((url, server, dbname)) = postgres_database().await else {
        return;
    };
    // Two pools, as two router processes have, on one database.
    let first = Database::connect(&url).await.unwrap();
    let second = Database::connect(&url).await.unwrap();
    let ip = own_loopback();
    // The CA reaches one of them; either answers, from the shared table.
    let _responder = responder(second.clone(), ip, pebble.http_port).await;
    let name = format!("pg-{}.example.test", random_hex(4));
    pebble.point(&name, ip).await;
    let name = CertName::parse(&name).unwrap();
    let secrets = secrets();
    let a = Issuer::new(first.clone(), secrets.clone(), pebble.config());
    let b = Issuer::new(second.clone(), secrets, pebble.config());

    let (ra, rb) = tokio::join!(a.ensure(&name), b.ensure(&name));
    let outcomes = [ra.expect("a"), rb.expect("b")];
    assert_eq!(
        outcomes.iter().filter(|o| matches!(o, Outcome::Issued(_))).count(),
        1,
        "exactly one issues: {outcomes:?}"
    );
    let counts = first
        .acme_order_counts(&pebble.directory, 0, name.as_str(), 0)
        .await
        .unwrap();
    assert_eq!(counts.account_orders, 1, "one order");
    // Both serve the one certificate.
    let from_a = a.stored(&name).await.unwrap().expect("a sees it");
    let from_b = b.stored(&name).await.unwrap().expect("b sees it");
    assert_eq!(from_a.chain_pem, from_b.chain_pem);
    check_servable(&from_b, name.as_str());

    // FORCE ends the pools' connections.
    let mut admin = sqlx::AnyConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("DROP DATABASE \"{dbname}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}
