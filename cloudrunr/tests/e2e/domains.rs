//! Custom domains end to end: a real `cloudrunr serve` whose DNS resolver is pebble-challtestsrv
//! on loopback (`scripts/pebble start`). Records are set through challtestsrv's management API,
//! verified through the API, and the site is fetched over plain HTTP with `Host: <custom name>`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use test_support::dns::Challtestsrv;
use test_support::git_server::GitServer;
use test_support::{Platform, fixture};

/// The address apex domains must point at (any loopback address: nothing connects to it).
const PUBLIC_IP: &str = "127.0.0.2";

/// A platform resolving through challtestsrv, with a deployed `static` site owned by Ann.
struct Setup {
    p: Platform,
    dns: Challtestsrv,
    ann: String,
    _git: GitServer,
}

impl Setup {
    async fn start(slug: &str) -> Option<Setup> {
        let dns = Challtestsrv::from_env()?;
        let git = GitServer::start().await;
        git.create_repo("site", &fixture("static"));
        let p = Platform::start_with(&[
            ("CLOUDRUNR_DNS_RESOLVER", &dns.dns),
            ("CLOUDRUNR_PUBLIC_IPS", PUBLIC_IP),
        ])
        .await;
        let ann = p.signup("Ann").await;
        p.create_project(&ann, json!({ "name": slug, "git_url": git.url("site") }))
            .await;
        let id = p.deploy(&ann, slug).await;
        let d = p.wait_final(&ann, &id).await;
        assert_eq!(d["state"], "ready", "{}", p.log_text(&ann, &id).await);
        Some(Setup { p, dns, ann, _git: git })
    }

    async fn add(&self, token: &str, slug: &str, body: Value) -> (StatusCode, Value) {
        self.p.post(&format!("/api/projects/{slug}/domains"), token, body).await
    }

    async fn verify(&self, token: &str, slug: &str, name: &str) -> Value {
        let (status, body) = self
            .p
            .post(&format!("/api/projects/{slug}/domains/{name}/verify"), token, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["domain"].clone()
    }

    /// GET on the platform's port with `Host: <host>:<port>`, redirects not followed.
    async fn fetch(&self, host: &str, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let resp = client
            .request(Method::GET, format!("http://127.0.0.1:{}{path}", self.p.port))
            .header("host", format!("{host}:{}", self.p.port))
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap_or_default())
    }
}

/// The value of the record of `kind` among a domain's `records`.
fn record(domain: &Value, kind: &str) -> String {
    domain["records"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["type"] == kind))
        .and_then(|r| r["value"].as_str())
        .unwrap_or_else(|| panic!("no {kind} record in {domain}"))
        .to_owned()
}

fn is_site(body: &str) -> bool {
    body.contains("Static home")
}

#[tokio::test]
async fn a_proven_domain_serves_the_site_cannot_be_taken_without_proof_and_stops_when_removed() {
    let Some(s) = Setup::start("shop").await else {
        return;
    };
    let zone = Challtestsrv::unique_zone();
    let name = format!("shop.{zone}");
    let proof = format!("_cloudrunr.{name}");

    // Adding says exactly what to set: the TXT proof and a CNAME to the project's site.
    let (status, added) = s.add(&s.ann, "shop", json!({ "name": name.to_uppercase() })).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let domain = &added["domain"];
    assert_eq!(domain["name"], name.as_str());
    assert_eq!(domain["state"], "pending_verification");
    assert_eq!(domain["routed"], false);
    let token = record(domain, "TXT");
    assert_eq!(domain["records"][0]["name"], proof.as_str());
    assert_eq!(record(domain, "CNAME"), "shop.localhost");
    assert!(token.len() >= 32, "{token}");

    // Bob claims the same name first: a pending claim blocks no one.
    let bob = s.p.signup("Bob").await;
    let git_url = s.p.get("/api/projects/shop", &s.ann).await.1["project"]["git_url"].clone();
    s.p.create_project(&bob, json!({ "name": "bobs", "git_url": git_url }))
        .await;
    let (status, bobs) = s.add(&bob, "bobs", json!({ "name": name })).await;
    assert_eq!(status, StatusCode::CREATED, "{bobs}");
    let bob_token = record(&bobs["domain"], "TXT");
    assert_ne!(bob_token, token, "tokens are per claim");
    // …and sees nothing of Ann's.
    let (status, _) = s.p.get(&format!("/api/projects/shop/domains/{name}"), &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.p.get("/api/projects/shop/domains", &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No records yet: the check fails and says what DNS answered.
    let checked = s.verify(&s.ann, "shop", &name).await;
    assert_eq!(checked["state"], "failed", "{checked}");
    let reason = checked["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no TXT record") && reason.contains("no CNAME record"),
        "{reason}"
    );
    let (_, _, body) = s.fetch(&name, "/").await;
    assert!(!is_site(&body), "an unverified domain serves nothing: {body}");

    // A wrong token and a wrong target: both named in the reason.
    s.dns.set_txt(&proof, "not-the-token").await;
    s.dns.set_cname(&name, "elsewhere.example.net").await;
    let checked = s.verify(&s.ann, "shop", &name).await;
    let reason = checked["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("\"not-the-token\"") && reason.contains("found CNAME elsewhere.example.net"),
        "{reason}"
    );

    // Both right: verified, and the site answers at the custom name (any case, any path).
    s.dns.clear_txt(&proof).await;
    s.dns.set_txt(&proof, &token).await;
    s.dns.set_cname(&name, "shop.localhost").await;
    let checked = s.verify(&s.ann, "shop", &name).await;
    assert_eq!(
        (checked["state"].as_str(), checked["routed"].as_bool()),
        (Some("verified"), Some(true)),
        "{checked}"
    );
    assert_eq!(checked["reason"], Value::Null);
    assert!(checked["verified_at"].is_string());
    let (status, _, body) = s.fetch(&name, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(is_site(&body), "{body}");
    let (status, _, _) = s.fetch(&name.to_uppercase(), "/about").await;
    assert_eq!(status, StatusCode::OK);

    // Bob's check fails: the TXT record holds Ann's token, not his. Ann's site is untouched.
    let bobs = s.verify(&bob, "bobs", &name).await;
    assert_eq!(
        (bobs["state"].as_str(), bobs["routed"].as_bool()),
        (Some("failed"), Some(false)),
        "{bobs}"
    );
    assert!(bobs["reason"].as_str().unwrap_or_default().contains(&token), "{bobs}");
    let (_, _, body) = s.fetch(&name, "/").await;
    assert!(is_site(&body), "{body}");

    // The zone changes hands: Bob publishes his proof and routing, and takes the name over.
    s.dns.clear_txt(&proof).await;
    s.dns.set_txt(&proof, &bob_token).await;
    s.dns.set_cname(&name, "bobs.localhost").await;
    let bobs = s.verify(&bob, "bobs", &name).await;
    assert_eq!(bobs["state"], "verified", "{bobs}");
    let (status, _, body) = s.fetch(&name, "/").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "Bob's project has nothing deployed: {body}"
    );
    assert!(!is_site(&body) && body.contains("bobs"), "{body}");
    let (_, anns) = s.p.get(&format!("/api/projects/shop/domains/{name}"), &s.ann).await;
    let anns = &anns["domain"];
    assert_eq!(
        (anns["state"].as_str(), anns["routed"].as_bool()),
        (Some("failed"), Some(false)),
        "{anns}"
    );
    assert!(
        anns["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("another project proved ownership")
    );

    // Removing it stops routing at once: the next request no longer reaches any site.
    let (status, _) =
        s.p.call(
            Method::DELETE,
            &format!("/api/projects/bobs/domains/{name}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, body) = s.fetch(&name, "/").await;
    assert!(!is_site(&body) && !body.contains("bobs"), "{body}");
    let (status, _) = s.p.get(&format!("/api/projects/bobs/domains/{name}"), &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_apex_needs_our_addresses_and_www_redirects_to_it() {
    let Some(s) = Setup::start("home").await else {
        return;
    };
    let apex = Challtestsrv::unique_zone();
    let www = format!("www.{apex}");

    // An apex is routed with A/AAAA records to the public addresses.
    let (status, added) = s.add(&s.ann, "home", json!({ "name": apex })).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(record(&added["domain"], "A"), PUBLIC_IP);
    let token = record(&added["domain"], "TXT");
    s.dns.set_txt(&format!("_cloudrunr.{apex}"), &token).await;
    // challtestsrv answers 127.0.0.1 for a name without an A record: not ours.
    let checked = s.verify(&s.ann, "home", &apex).await;
    let reason = checked["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not ours: 127.0.0.1"), "{reason}");
    assert!(!reason.contains("ownership"), "the TXT proof was right: {reason}");
    s.dns.add_a(&apex, &[PUBLIC_IP]).await;
    assert_eq!(s.verify(&s.ann, "home", &apex).await["state"], "verified");

    // www redirects to the apex: only to the other half of the pair, only once that is added.
    let (status, body) = s
        .add(&s.ann, "home", json!({ "name": www, "redirect_to": "elsewhere.test" }))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_redirect"))
    );
    let (status, added) = s.add(&s.ann, "home", json!({ "name": www, "redirect_to": apex })).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["domain"]["redirect_to"], apex.as_str());
    s.dns
        .set_txt(&format!("_cloudrunr.{www}"), &record(&added["domain"], "TXT"))
        .await;
    s.dns.set_cname(&www, "home.localhost").await;
    assert_eq!(s.verify(&s.ann, "home", &www).await["state"], "verified");

    let (status, headers, _) = s.fetch(&www, "/about?from=www").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        headers["location"],
        format!("//{apex}:{}/about?from=www", s.p.port).as_str()
    );
    let (status, _, body) = s.fetch(&apex, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(is_site(&body), "{body}");

    // Removing the apex drops the redirect to it (www then serves the site itself).
    let (status, _) =
        s.p.call(
            Method::DELETE,
            &format!("/api/projects/home/domains/{apex}"),
            Some(&s.ann),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, body) = s.fetch(&apex, "/").await;
    assert!(!is_site(&body), "{body}");
    let (_, listed) = s.p.get("/api/projects/home/domains", &s.ann).await;
    assert_eq!(listed["domains"][0]["redirect_to"], Value::Null, "{listed}");
    let (status, _, body) = s.fetch(&www, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(is_site(&body), "{body}");

    // Checks ask the operator's resolver: an account gets a bounded number of them.
    let verify = format!("/api/projects/home/domains/{www}/verify");
    let mut refused = None;
    for attempt in 0..40 {
        let (status, body) = s.p.post(&verify, &s.ann, json!({})).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((attempt, body));
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (attempt, body) = refused.expect("checks are limited");
    assert!(attempt < 30, "at most 30 checks in 10 minutes, {attempt} passed");
    assert_eq!(body["error"]["code"], "too_many_checks", "{body}");
    // Bob's budget is his own.
    let bob = s.p.signup("Bob").await;
    let git_url = s.p.get("/api/projects/home", &s.ann).await.1["project"]["git_url"].clone();
    s.p.create_project(&bob, json!({ "name": "bobs", "git_url": git_url }))
        .await;
    let (status, _) = s.add(&bob, "bobs", json!({ "name": www })).await;
    assert_eq!(status, StatusCode::CREATED);
    let bobs = s.verify(&bob, "bobs", &www).await;
    assert_eq!(bobs["state"], "failed", "Ann's proof is not Bob's: {bobs}");
}

/// Names are refused with clear errors, and accepted in their canonical form (no DNS involved).
#[tokio::test]
async fn bad_names_are_refused_with_clear_errors() {
    let git = GitServer::start().await;
    git.create_repo("site", &fixture("static"));
    let p = Platform::start_with(&[("CLOUDRUNR_PUBLIC_URL", "https://deploy.example.com")]).await;
    let ann = p.signup("Ann").await;
    p.create_project(&ann, json!({ "name": "names", "git_url": git.url("site") }))
        .await;
    let path = "/api/projects/names/domains";
    let cases: &[(Value, &str, &str)] = &[
        (json!({ "name": "" }), "invalid_domain", "empty"),
        (json!({ "name": "1.2.3.4" }), "invalid_domain", "IP address"),
        (json!({ "name": "[::1]" }), "invalid_domain", "IP address"),
        (json!({ "name": "a..example.com" }), "invalid_domain", "empty label"),
        (
            json!({ "name": "exa mple.com" }),
            "invalid_domain",
            "letters, digits and hyphens",
        ),
        (
            json!({ "name": "-shop.example.com" }),
            "invalid_domain",
            "letters, digits and hyphens",
        ),
        (
            json!({ "name": "*.example.com" }),
            "invalid_domain",
            "letters, digits and hyphens",
        ),
        (
            json!({ "name": "https://shop.example.com/" }),
            "invalid_domain",
            "letters, digits and hyphens",
        ),
        (
            json!({ "name": format!("{}.example.com", "a".repeat(64)) }),
            "invalid_domain",
            "63",
        ),
        (
            json!({ "name": format!("{}example.com", "abcdefgh.".repeat(30)) }),
            "invalid_domain",
            "253",
        ),
        (json!({ "name": "co.uk" }), "invalid_domain", "public suffix"),
        (
            json!({ "name": "names.localhost" }),
            "invalid_domain",
            "platform's own domain",
        ),
        (
            json!({ "name": "localhost" }),
            "invalid_domain",
            "platform's own domain",
        ),
        (
            json!({ "name": "Deploy.Example.COM." }),
            "invalid_domain",
            "platform's own address",
        ),
        (
            json!({ "name": "example.com" }),
            "apex_needs_public_ips",
            "CLOUDRUNR_PUBLIC_IPS",
        ),
        (json!({ "name": 7 }), "invalid_request", ""),
    ];
    for (body, code, words) in cases {
        let (status, resp) = p.post(path, &ann, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {resp}");
        assert_eq!(resp["error"]["code"], *code, "{body}: {resp}");
        let message = resp["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{body}: {message}");
    }
    // International names are stored in their ASCII form, found by either spelling.
    let (status, resp) = p.post(path, &ann, json!({ "name": "Bücher.Example.com." })).await;
    assert_eq!(status, StatusCode::CREATED, "{resp}");
    assert_eq!(resp["domain"]["name"], "xn--bcher-kva.example.com");
    let (status, _) = p.get(&format!("{path}/bücher.example.com"), &ann).await;
    assert_eq!(status, StatusCode::OK);
    let (status, resp) = p.get(&format!("{path}/not a name"), &ann).await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

/// The project page's Domains section: add, the records to set, a failed and a good Verify, and
/// Remove — through the forms, as a browser sends them.
#[tokio::test]
async fn the_dashboard_adds_verifies_and_removes_a_domain() {
    let Some(dns) = Challtestsrv::from_env() else {
        return;
    };
    let git = GitServer::start().await;
    git.create_repo("site", &fixture("static"));
    let p = Platform::start_with(&[("CLOUDRUNR_DNS_RESOLVER", &dns.dns)]).await;
    let mut c = test_support::Client::new(&p);
    let resp = c.sign_up("Ann", "ann@example.com").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, token) = p
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({ "email": "ann@example.com", "password": "correct horse battery" })),
        )
        .await;
    let token = token["token"].as_str().expect("token").to_owned();
    p.create_project(&token, json!({ "name": "panel", "git_url": git.url("site") }))
        .await;
    let name = format!("app.{}", Challtestsrv::unique_zone());

    let (_, page) = c.get("/projects/panel").await;
    assert!(page.contains("No custom domains yet"), "{page}");
    let csrf = test_support::csrf_of(&page);
    let resp = c
        .post("/projects/panel/domains", &[("csrf", &csrf), ("name", &name)], None)
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, page) = c.get("/projects/panel?done=domain-added").await;
    assert!(page.contains("Set the DNS records below"), "{page}");
    assert!(page.contains("data-domain-state=\"pending_verification\""), "{page}");
    let txt = page
        .split("data-record=\"TXT\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the TXT value on the page")
        .to_owned();
    assert!(page.contains(&format!("_cloudrunr.{name}")));
    assert!(page.contains("data-record=\"CNAME\">panel.localhost<"), "{page}");

    // Verify before the records exist: failed, with what DNS said on the page.
    let verify = format!("/projects/panel/domains/{name}/verify");
    let resp = c.post(&verify, &[("csrf", &csrf)], None).await;
    assert_eq!(resp.headers()["location"], "/projects/panel?done=domain-failed#domains");
    let (_, page) = c.get("/projects/panel").await;
    assert!(page.contains("data-domain-state=\"failed\""), "{page}");
    assert!(page.contains("no TXT record"), "{page}");

    // A forged Verify is refused.
    let resp = c.post(&verify, &[("csrf", "0000")], None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    dns.set_txt(&format!("_cloudrunr.{name}"), &txt).await;
    dns.set_cname(&name, "panel.localhost").await;
    let resp = c.post(&verify, &[("csrf", &csrf)], None).await;
    assert_eq!(
        resp.headers()["location"],
        "/projects/panel?done=domain-verified#domains"
    );
    let (_, page) = c.get("/projects/panel").await;
    assert!(
        page.contains("data-domain-state=\"verified\"") && page.contains("Serves this project"),
        "{page}"
    );
    let routed = p
        .http
        .get(format!("http://127.0.0.1:{}/", p.port))
        .header("host", name.as_str())
        .send()
        .await
        .expect("request");
    assert_eq!(routed.status(), StatusCode::NOT_FOUND, "nothing deployed yet");
    assert!(routed.text().await.unwrap_or_default().contains("panel"));

    let resp = c
        .post(
            &format!("/projects/panel/domains/{name}/delete"),
            &[("csrf", &csrf)],
            None,
        )
        .await;
    assert_eq!(
        resp.headers()["location"],
        "/projects/panel?done=domain-removed#domains"
    );
    let (_, page) = c.get("/projects/panel").await;
    assert!(page.contains("No custom domains yet"), "{page}");
}

/// `cloudrunr router` apart (PostgreSQL, Kafka, S3): it hears of a verified domain and of its
/// removal through `RoutesChanged` on Kafka, and answers the custom host from its own table.
#[tokio::test]
async fn a_separate_router_follows_verification_and_removal() {
    let Some(services) = test_support::cluster::Services::get() else {
        return;
    };
    let Some(dns) = Challtestsrv::from_env() else {
        return;
    };
    let git = GitServer::start().await;
    git.create_repo("site", &fixture("static"));
    let p = test_support::cluster::start(&services, &[("CLOUDRUNR_DNS_RESOLVER", &dns.dns)]).await;
    let ann = p.signup("Ann").await;
    p.create_project(&ann, json!({ "name": "apart", "git_url": git.url("site") }))
        .await;
    let id = p.deploy(&ann, "apart").await;
    assert_eq!(p.wait_final(&ann, &id).await["state"], "ready", "{}", p.server_log());
    p.site_eventually("apart", "/", "Static home").await;

    let name = format!("www.{}", Challtestsrv::unique_zone());
    let (status, added) = p
        .post("/api/projects/apart/domains", &ann, json!({ "name": name }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    dns.set_txt(&format!("_cloudrunr.{name}"), &record(&added["domain"], "TXT"))
        .await;
    dns.set_cname(&name, "apart.localhost").await;
    let (status, verified) = p
        .post(&format!("/api/projects/apart/domains/{name}/verify"), &ann, json!({}))
        .await;
    assert_eq!(
        (status, verified["domain"]["state"].as_str()),
        (StatusCode::OK, Some("verified")),
        "{verified}"
    );

    // The router's answer for the custom host, until it is `want` (it lags by the notice's trip).
    let router = format!("http://127.0.0.1:{}/", p.sites_port);
    let answer_until = |want: bool| {
        let (router, name, http) = (router.clone(), name.clone(), p.http.clone());
        async move {
            let mut last = String::new();
            for _ in 0..100 {
                let resp = http.get(&router).header("host", &name).send().await.expect("request");
                last = resp.text().await.unwrap_or_default();
                if is_site(&last) == want {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!(
                "the router never {} {name}: {last}",
                if want { "served" } else { "stopped serving" }
            );
        }
    };
    answer_until(true).await;
    let (status, _) = p
        .call(
            Method::DELETE,
            &format!("/api/projects/apart/domains/{name}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    answer_until(false).await;
}
