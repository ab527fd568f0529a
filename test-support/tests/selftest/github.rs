//! The GitHub mock's own test (`src/github/`): the App flow the platform uses works against it,
//! and every kind of request GitHub would refuse is refused *and* recorded as a violation.
//!
//! Needs the pinned test data: `scripts/test-data`.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use test_support::github::{Auth, MockGitHub, TestRepo};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// A plain reqwest client that behaves like a well-mannered GitHub client.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(gh: &MockGitHub) -> Client {
        Client::with_headers(
            gh,
            &[
                ("user-agent", "cloudrunr-selftest/1"),
                ("accept", "application/vnd.github+json"),
                ("x-github-api-version", "2022-11-28"),
            ],
        )
    }

    fn with_headers(gh: &MockGitHub, headers: &[(&'static str, &str)]) -> Client {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().expect("header value"));
        }
        let http = reqwest::Client::builder().default_headers(map).build().expect("client");
        Client { http, base: gh.url() }
    }

    /// `auth` is the whole Authorization header value.
    async fn call(&self, method: Method, path: &str, auth: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request to the mock");
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A mock with installation 11 on `acme` (acme/site private on `trunk`, acme/docs) and 22 on `other`.
async fn mock() -> MockGitHub {
    let gh = MockGitHub::start().await;
    gh.add_installation(11, "acme");
    gh.add_repo(
        11,
        TestRepo {
            id: 501,
            full_name: "acme/site".into(),
            clone_url: "http://127.0.0.1:9/acme/site.git".into(),
            private: true,
            default_branch: "trunk".into(),
        },
    );
    gh.add_repo(11, TestRepo::new(502, "acme/docs", "http://127.0.0.1:9/acme/docs.git"));
    gh.add_installation(22, "other");
    gh.add_repo(22, TestRepo::new(601, "other/app", "http://127.0.0.1:9/other/app.git"));
    gh
}

async fn installation_token(gh: &MockGitHub, c: &Client, installation: u64, body: Option<Value>) -> String {
    let path = format!("/app/installations/{installation}/access_tokens");
    let (status, b) = c.call(Method::POST, &path, Some(&bearer(&gh.app().jwt())), body).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    b["token"].as_str().expect("token").to_owned()
}

/// Asserts the answer had `want` and that exactly one new violation, mentioning `mentions`, was recorded.
fn assert_rejected(gh: &MockGitHub, seen: &mut usize, got: (StatusCode, Value), want: u16, mentions: &str) {
    let violations = gh.violations();
    assert_eq!(got.0.as_u16(), want, "answer {}; violations: {violations:#?}", got.1);
    assert!(
        got.1["message"].is_string() || got.1["error"].is_string(),
        "GitHub-shaped error: {}",
        got.1
    );
    assert_eq!(
        violations.len(),
        *seen + 1,
        "expected one new violation mentioning {mentions:?}: {violations:#?}"
    );
    let last = violations.last().unwrap();
    assert!(
        last.contains(mentions),
        "violation {last:?} should mention {mentions:?}"
    );
    *seen += 1;
}

#[tokio::test]
async fn app_flow_token_repositories_and_check_runs() {
    let gh = mock().await;
    let app = gh.app();
    assert!(app.private_key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(gh.url().starts_with("http://127.0.0.1:"));
    let c = Client::new(&gh);
    let jwt = bearer(&app.jwt());

    let (status, b) = c.call(Method::GET, "/app", Some(&jwt), None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["id"], app.id);
    assert_eq!(b["slug"], app.slug.as_str());
    assert_eq!(b["client_id"], app.client_id.as_str());

    let (status, b) = c.call(Method::GET, "/app/installations/11", Some(&jwt), None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["id"], 11);
    assert_eq!(b["account"]["login"], "acme");
    assert_eq!(b["app_id"], app.id);
    assert_eq!(
        b["access_tokens_url"],
        format!("{}/app/installations/11/access_tokens", gh.url()).as_str()
    );

    let (status, b) = c
        .call(Method::GET, "/app/installations?per_page=1", Some(&jwt), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b.as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b[0]["id"], 11);

    // An installation token: ghs_ + 36 alphanumerics, unique, an hour ahead.
    let (status, b) = c
        .call(Method::POST, "/app/installations/11/access_tokens", Some(&jwt), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let token = b["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 40, "{token}");
    assert!(token.starts_with("ghs_") && token[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
    let expires_at = b["expires_at"].as_str().expect("expires_at");
    assert!(expires_at.len() == 20 && expires_at.ends_with('Z'), "{expires_at}");
    assert!(expires_at > "2025-01-01T00:00:00Z", "{expires_at}");
    assert_eq!(b["repository_selection"], "all");
    let other = installation_token(&gh, &c, 11, Some(json!({}))).await;
    assert_ne!(token, other);

    // The installation's repositories (with `token X` as octocrab-free clients often send).
    let (status, b) = c
        .call(
            Method::GET,
            "/installation/repositories?per_page=100",
            Some(&format!("token {token}")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["total_count"], 2);
    let site = &b["repositories"][0];
    assert_eq!(site["id"], 501);
    assert_eq!(site["name"], "site");
    assert_eq!(site["full_name"], "acme/site");
    assert_eq!(site["owner"]["login"], "acme");
    assert_eq!(site["private"], true);
    assert_eq!(site["clone_url"], "http://127.0.0.1:9/acme/site.git");
    assert_eq!(site["default_branch"], "trunk");
    assert_eq!(site["html_url"], format!("{}/acme/site", gh.url()).as_str());
    assert_eq!(b["repositories"][1]["full_name"], "acme/docs");

    // Pagination like GitHub's: a Link header to the next page.
    let response = c
        .http
        .get(format!("{}/installation/repositories?per_page=1", gh.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");

    // A check run: queued -> in_progress -> completed.
    let auth = bearer(&token);
    let created_body = json!({
        "name": "CloudRunr",
        "head_sha": SHA,
        "status": "queued",
        "external_id": "dep_42",
        "details_url": "http://127.0.0.1:8080/deployments/dep_42",
    });
    let (status, b) = c
        .call(
            Method::POST,
            "/repos/acme/site/check-runs",
            Some(&auth),
            Some(created_body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_u64().expect("check run id");
    assert_eq!(b["name"], "CloudRunr");
    assert_eq!(b["head_sha"], SHA);
    assert_eq!(b["status"], "queued");
    assert_eq!(b["conclusion"], Value::Null);
    assert_eq!(b["external_id"], "dep_42");
    assert_eq!(b["details_url"], "http://127.0.0.1:8080/deployments/dep_42");
    assert_eq!(b["html_url"], format!("{}/acme/site/runs/{id}", gh.url()).as_str());
    assert_eq!(b["app"]["id"], app.id);
    assert_ne!(b["node_id"], "MDg6Q2hlY2tSdW40", "node_id is the check run's own");

    let in_progress = json!({ "status": "in_progress", "started_at": "2025-06-01T12:00:00Z" });
    let path = format!("/repos/acme/site/check-runs/{id}");
    let (status, b) = c
        .call(Method::PATCH, &path, Some(&auth), Some(in_progress.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["id"], id);
    assert_eq!(b["status"], "in_progress");
    assert_eq!(b["name"], "CloudRunr");

    let completed = json!({
        "status": "completed",
        "conclusion": "success",
        "output": { "title": "Deployed", "summary": "Live at http://site.localhost" },
    });
    let (status, b) = c.call(Method::PATCH, &path, Some(&auth), Some(completed.clone())).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "completed");
    assert_eq!(b["conclusion"], "success");
    assert_eq!(b["output"]["title"], "Deployed");
    assert!(b["completed_at"].is_string());

    let (status, b) = c.call(Method::GET, &path, Some(&auth), None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["conclusion"], "success");
    assert_eq!(b["external_id"], "dep_42");

    let runs = gh.check_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].repo, "acme/site");
    assert_eq!(runs[0].id, id);
    assert_eq!(runs[0].bodies, vec![created_body, in_progress, completed]);

    gh.assert_no_violations();
    let requests = gh.requests();
    let seen: Vec<(&str, Option<&str>, &Auth, u16)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.operation_id.as_deref(), &r.auth, r.status))
        .collect();
    assert_eq!(seen[0], ("GET", Some("apps/get-authenticated"), &Auth::AppJwt, 200));
    assert_eq!(
        seen[3],
        (
            "POST",
            Some("apps/create-installation-access-token"),
            &Auth::AppJwt,
            201
        )
    );
    assert_eq!(
        seen[5],
        (
            "GET",
            Some("apps/list-repos-accessible-to-installation"),
            &Auth::Installation(11),
            200
        )
    );
    assert_eq!(seen[7], ("POST", Some("checks/create"), &Auth::Installation(11), 201));
    assert_eq!(seen[8], ("PATCH", Some("checks/update"), &Auth::Installation(11), 200));
    assert_eq!(requests[8].path, format!("/repos/acme/site/check-runs/{id}"));
    assert_eq!(requests[9].body["conclusion"], "success");
}

#[tokio::test]
async fn requests_github_would_refuse_are_violations() {
    let gh = mock().await;
    let app = gh.app();
    let c = Client::new(&gh);
    let tok11 = installation_token(&gh, &c, 11, None).await;
    let tok22 = installation_token(&gh, &c, 22, None).await;
    let (status, b) = c
        .call(
            Method::POST,
            "/repos/acme/site/check-runs",
            Some(&bearer(&tok11)),
            Some(json!({ "name": "CloudRunr", "head_sha": SHA })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let run = b["id"].as_u64().unwrap();
    let run_path = format!("/repos/acme/site/check-runs/{run}");
    gh.assert_no_violations();
    let mut seen = 0;

    // JWTs: a bad signature, expired, too long-lived, another App's, not a JWT of ours at all.
    let raw_jwt = app.jwt();
    let jwt = bearer(&raw_jwt);
    let (head, rest) = raw_jwt.rsplit_once('.').unwrap();
    let mut signature: Vec<char> = rest.chars().collect();
    signature[20] = if signature[20] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{head}.{}", signature.into_iter().collect::<String>());
    let got = c.call(Method::GET, "/app", Some(&bearer(&tampered)), None).await;
    assert_rejected(&gh, &mut seen, got, 401, "signature");
    let t = now();
    let expired = app.sign_jwt(&json!({ "iat": t - 700, "exp": t - 100, "iss": app.id }));
    let got = c.call(Method::GET, "/app", Some(&bearer(&expired)), None).await;
    assert_rejected(&gh, &mut seen, got, 401, "expired");
    let long_lived = app.sign_jwt(&json!({ "iat": t, "exp": t + 3600, "iss": app.id.to_string() }));
    let got = c.call(Method::GET, "/app", Some(&bearer(&long_lived)), None).await;
    assert_rejected(&gh, &mut seen, got, 401, "after iat");
    let future = app.sign_jwt(&json!({ "iat": t + 300, "exp": t + 600, "iss": app.id }));
    let got = c.call(Method::GET, "/app", Some(&bearer(&future)), None).await;
    assert_rejected(&gh, &mut seen, got, 401, "in the future");
    let other_app = app.sign_jwt(&json!({ "iat": t - 60, "exp": t + 540, "iss": app.id + 1 }));
    let got = c.call(Method::GET, "/app", Some(&bearer(&other_app)), None).await;
    assert_rejected(&gh, &mut seen, got, 401, "iss");
    let got = c.call(Method::GET, "/app", Some("Bearer e30.e30.e30"), None).await;
    assert_rejected(&gh, &mut seen, got, 401, "RS256");
    let got = c.call(Method::GET, "/app", None, None).await;
    assert_rejected(&gh, &mut seen, got, 401, "needs an App JWT");

    // Tokens: unknown, the wrong kind, another installation's.
    let unknown = "ghs_000000000000000000000000000000000000";
    let got = c
        .call(Method::GET, "/installation/repositories", Some(&bearer(unknown)), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 401, "unknown token");
    let got = c.call(Method::GET, "/app", Some(&bearer(&tok11)), None).await;
    assert_rejected(&gh, &mut seen, got, 401, "needs an App JWT");
    let got = c
        .call(Method::GET, "/installation/repositories", Some(&jwt), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 403, "installation access token");
    let got = c
        .call(
            Method::POST,
            "/repos/acme/site/check-runs",
            Some(&bearer(&tok22)),
            Some(json!({ "name": "x", "head_sha": SHA })),
        )
        .await;
    assert_rejected(
        &gh,
        &mut seen,
        got,
        404,
        "installation 22's token does not reach repository acme/site",
    );
    let got = c
        .call(
            Method::PATCH,
            &run_path,
            Some(&bearer(&tok22)),
            Some(json!({ "status": "in_progress" })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 404, "does not reach");
    let got = c
        .call(Method::POST, "/app/installations/99/access_tokens", Some(&jwt), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 404, "installation 99 does not exist");

    // Bodies that do not fit the description (or its prose rules).
    let auth = bearer(&tok11);
    let got = c
        .call(
            Method::PATCH,
            &run_path,
            Some(&auth),
            Some(json!({ "conclusion": "great" })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got.clone(), 422, "great");
    assert!(got.1["errors"].as_array().is_some_and(|e| !e.is_empty()), "{}", got.1);
    let got = c
        .call(
            Method::PATCH,
            &run_path,
            Some(&auth),
            Some(json!({ "status": "completed" })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 422, "body");
    let got = c
        .call(
            Method::PATCH,
            &run_path,
            Some(&auth),
            Some(json!({ "status": "in_progress", "output": { "title": "t" } })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 422, "summary");
    let got = c
        .call(
            Method::POST,
            "/repos/acme/site/check-runs",
            Some(&auth),
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 422, "head_sha");
    let got = c
        .call(
            Method::POST,
            "/repos/acme/site/check-runs",
            Some(&auth),
            Some(json!({ "name": "x", "head_sha": "main" })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 422, "No commit found");
    let got = c
        .call(
            Method::PATCH,
            &run_path,
            Some(&auth),
            Some(json!({ "conclusion": "success", "started_at": "yesterday" })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 422, "started_at");
    let got = c.call(Method::GET, "/app", Some(&jwt), Some(json!({}))).await;
    assert_rejected(&gh, &mut seen, got, 400, "takes no request body");
    let response = c
        .http
        .post(format!("{}/repos/acme/site/check-runs", gh.url()))
        .bearer_auth(&tok11)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let got = (response.status(), response.json::<Value>().await.unwrap());
    assert_rejected(&gh, &mut seen, got, 400, "not JSON");

    // Query parameters: undeclared, or not of the declared type.
    let got = c
        .call(Method::GET, "/installation/repositories?sort=name", Some(&auth), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 422, "\"sort\" is not declared");
    let got = c
        .call(
            Method::GET,
            "/installation/repositories?per_page=lots",
            Some(&auth),
            None,
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 422, "per_page");

    // Paths: not in the description, a bad parameter, an unknown check run.
    let got = c
        .call(Method::GET, "/repos/acme/site/check-run/1", Some(&auth), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 404, "no operation");
    let got = c
        .call(Method::POST, "/app/installations/11/access_token", Some(&jwt), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 404, "no operation");
    let got = c
        .call(Method::DELETE, "/installation/repositories", Some(&auth), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 404, "no operation");
    let got = c.call(Method::GET, "/app/installations/eleven", Some(&jwt), None).await;
    assert_rejected(&gh, &mut seen, got, 404, "installation_id");
    let got = c
        .call(
            Method::PATCH,
            "/repos/acme/site/check-runs/1",
            Some(&auth),
            Some(json!({ "status": "in_progress" })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 404, "no check run 1");

    // Headers: no User-Agent, an API version GitHub does not know, a non-JSON Accept.
    let no_ua = Client::with_headers(&gh, &[("accept", "application/vnd.github+json")]);
    let got = no_ua.call(Method::GET, "/app", Some(&jwt), None).await;
    assert_rejected(&gh, &mut seen, got, 403, "User-Agent");
    let old = Client::with_headers(&gh, &[("user-agent", "x"), ("x-github-api-version", "2021-01-01")]);
    let got = old.call(Method::GET, "/app", Some(&jwt), None).await;
    assert_rejected(&gh, &mut seen, got, 400, "X-GitHub-Api-Version");
    let html = Client::with_headers(&gh, &[("user-agent", "x"), ("accept", "text/html")]);
    let got = html.call(Method::GET, "/app", Some(&jwt), None).await;
    assert_rejected(&gh, &mut seen, got, 415, "Accept");

    // Only accepted bodies count as the check run's history.
    let runs = gh.check_runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].bodies, vec![json!({ "name": "CloudRunr", "head_sha": SHA })]);
    // Every refused request is still in requests(), with the status it got.
    let requests = gh.requests();
    assert!(requests.iter().any(|r| r.status == 415));
    assert!(
        requests
            .iter()
            .any(|r| matches!(&r.auth, Auth::Invalid(why) if why.contains("signature")))
    );
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gh.assert_no_violations())).is_err());
}

#[tokio::test]
async fn restricted_tokens_and_removed_installations() {
    let gh = mock().await;
    let c = Client::new(&gh);
    let mut seen = 0;

    // A token restricted to one repo reaches only that one.
    let (status, b) = c
        .call(
            Method::POST,
            "/app/installations/11/access_tokens",
            Some(&bearer(&gh.app().jwt())),
            Some(json!({ "repositories": ["site"], "permissions": { "checks": "write" } })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!(b["repository_selection"], "selected");
    assert_eq!(b["permissions"], json!({ "checks": "write" }));
    assert_eq!(b["repositories"][0]["full_name"], "acme/site");
    let site_only = bearer(b["token"].as_str().unwrap());
    let (status, b) = c
        .call(Method::GET, "/installation/repositories", Some(&site_only), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["total_count"], 1);
    let got = c
        .call(
            Method::POST,
            "/repos/acme/docs/check-runs",
            Some(&site_only),
            Some(json!({ "name": "x", "head_sha": SHA })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 404, "acme/docs");
    let got = c
        .call(
            Method::POST,
            "/app/installations/11/access_tokens",
            Some(&bearer(&gh.app().jwt())),
            Some(json!({ "repository_ids": [601] })),
        )
        .await;
    assert_rejected(&gh, &mut seen, got, 422, "cannot reach");

    // A revoked token is refused, and using it is the platform's fault.
    let revoked = bearer(&installation_token(&gh, &c, 11, None).await);
    let (status, _) = c
        .call(Method::DELETE, "/installation/token", Some(&revoked), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = c
        .call(Method::GET, "/installation/repositories", Some(&revoked), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 401, "unknown token");

    // Once the installation is gone its tokens are refused, but that is not the platform's fault.
    let token = installation_token(&gh, &c, 11, None).await;
    gh.remove_installation(11);
    let (status, b) = c
        .call(Method::GET, "/installation/repositories", Some(&bearer(&token)), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["message"], "Bad credentials");
    let (status, _) = c
        .call(
            Method::POST,
            "/app/installations/11/access_tokens",
            Some(&bearer(&gh.app().jwt())),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = c
        .call(
            Method::GET,
            "/repos/acme/site/installation",
            Some(&bearer(&gh.app().jwt())),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, b) = c
        .call(
            Method::GET,
            "/repos/other/app/installation",
            Some(&bearer(&gh.app().jwt())),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["id"], 22);
    assert_eq!(gh.violations().len(), seen, "{:#?}", gh.violations());
}

#[tokio::test]
async fn manifest_conversion_works_once() {
    let gh = MockGitHub::start().await;
    gh.expect_manifest_code("manifest-code-1");
    let app = gh.app();
    let c = Client::new(&gh);
    let (status, b) = c
        .call(Method::POST, "/app-manifests/manifest-code-1/conversions", None, None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!(b["id"], app.id);
    assert_eq!(b["slug"], app.slug.as_str());
    assert_eq!(b["client_id"], app.client_id.as_str());
    assert_eq!(b["client_secret"], app.client_secret.as_str());
    assert_eq!(b["webhook_secret"], app.webhook_secret.as_str());
    assert_eq!(b["pem"], app.private_key_pem.as_str());
    let (status, _) = c
        .call(Method::POST, "/app-manifests/manifest-code-1/conversions", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = c
        .call(Method::POST, "/app-manifests/never-issued/conversions", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The App's credentials then work.
    let (status, _) = c.call(Method::GET, "/app", Some(&bearer(&app.jwt())), None).await;
    assert_eq!(status, StatusCode::OK);
    gh.assert_no_violations();
}

#[tokio::test]
async fn oauth_web_flow_and_user_endpoints() {
    let gh = mock().await;
    gh.add_installation(33, "beta");
    gh.authorize_user("code-1", "octo", &[11]);
    let app = gh.app();
    let c = Client::new(&gh);
    let exchange = |code: &str, secret: &str, accept: &str| {
        c.http
            .post(format!("{}/login/oauth/access_token", gh.url()))
            .header("accept", accept)
            .form(&[
                ("client_id", app.client_id.as_str()),
                ("client_secret", secret),
                ("code", code),
                ("redirect_uri", "http://127.0.0.1:8080/github/callback"),
            ])
            .send()
    };

    let response = exchange("code-1", &app.client_secret, "application/json")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let b: Value = response.json().await.unwrap();
    assert_eq!(b["token_type"], "bearer");
    assert_eq!(b["scope"], "");
    let token = b["access_token"].as_str().expect("access_token").to_owned();
    assert!(token.starts_with("ghu_") && token.len() == 40, "{token}");
    let user = bearer(&token);

    let (status, b) = c.call(Method::GET, "/user", Some(&user), None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["login"], "octo");
    let (status, b) = c.call(Method::GET, "/user/installations", Some(&user), None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["total_count"], 1);
    assert_eq!(b["installations"][0]["id"], 11);
    assert_eq!(b["installations"][0]["account"]["login"], "acme");
    let (status, b) = c
        .call(Method::GET, "/user/installations/11/repositories", Some(&user), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["total_count"], 2);
    let (status, b) = c.call(Method::GET, "/repos/acme/site", Some(&user), None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["full_name"], "acme/site");
    gh.assert_no_violations();
    assert!(gh.requests().iter().any(|r| r.auth == Auth::User("octo".into())));

    // A reused code is GitHub's 200 error, not a violation (a browser may replay the callback).
    let b: Value = exchange("code-1", &app.client_secret, "application/json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["error"], "bad_verification_code", "{b}");
    gh.assert_no_violations();

    // Without Accept: application/json GitHub answers form-encoded.
    gh.authorize_user("code-2", "octo", &[11]);
    let text = exchange("code-2", &app.client_secret, "*/*")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with("access_token=ghu_") && text.contains("token_type=bearer"),
        "{text}"
    );

    let mut seen = 0;
    gh.authorize_user("code-3", "octo", &[11]);
    let response = exchange("code-3", "not-the-secret", "application/json").await.unwrap();
    let got = (response.status(), response.json::<Value>().await.unwrap());
    assert_eq!(got.1["error"], "incorrect_client_credentials");
    assert_rejected(&gh, &mut seen, got, 200, "client_secret");

    let got = c
        .call(Method::GET, "/user/installations/33/repositories", Some(&user), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 404, "not granted installation 33");
    let got = c.call(Method::GET, "/repos/beta/x", Some(&user), None).await;
    assert_rejected(&gh, &mut seen, got, 404, "no installation reaching");
    let got = c
        .call(Method::GET, "/installation/repositories", Some(&user), None)
        .await;
    assert_rejected(&gh, &mut seen, got, 403, "installation access token");
    let got = c.call(Method::GET, "/user", Some(&bearer(&app.jwt())), None).await;
    assert_rejected(&gh, &mut seen, got, 403, "user access token");
}

#[tokio::test]
async fn outage_answers_503_without_violations() {
    let gh = mock().await;
    let c = Client::new(&gh);
    let jwt = bearer(&gh.app().jwt());
    gh.set_outage(true);
    let (status, _) = c.call(Method::GET, "/app", Some(&jwt), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = c
        .call(Method::POST, "/app/installations/11/access_tokens", Some(&jwt), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    gh.set_outage(false);
    let (status, _) = c.call(Method::GET, "/app", Some(&jwt), None).await;
    assert_eq!(status, StatusCode::OK);
    let statuses: Vec<u16> = gh.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    gh.assert_no_violations();
}

#[tokio::test]
async fn api_version_2026_03_10_is_accepted() {
    let gh = mock().await;
    let c = Client::with_headers(
        &gh,
        &[
            ("user-agent", "cloudrunr-selftest/1"),
            ("x-github-api-version", "2026-03-10"),
        ],
    );
    let jwt = bearer(&gh.app().jwt());
    let response = c
        .http
        .post(format!("{}/app/installations/22/access_tokens", gh.url()))
        .bearer_auth(gh.app().jwt())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-github-api-version-selected"], "2026-03-10");
    let token = response.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, b) = c
        .call(Method::GET, "/installation/repositories", Some(&bearer(&token)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["repositories"][0]["full_name"], "other/app");
    let (status, _) = c.call(Method::GET, "/app", Some(&jwt), None).await;
    assert_eq!(status, StatusCode::OK);
    gh.assert_no_violations();
}

/// Every operation of the description can be checked and answered: its request schemas compile as JSON
/// Schema and its JSON success answers have examples (guards a future bump of the description).
#[test]
fn the_whole_description_is_usable() {
    // 2026-03-10's breaking change `restrict_repo_fields_in_migration_resource` removes these examples.
    let known = [
        "2026-03-10 get /orgs/{org}/migrations/{migration_id}/repositories (migrations/list-repos-for-org): \
         the 200 response has a schema but no example",
        "2026-03-10 get /user/migrations/{migration_id}/repositories (migrations/list-repos-for-authenticated-user): \
         the 200 response has a schema but no example",
    ];
    let problems = test_support::github::check_description();
    assert_eq!(problems, known, "\n{}", problems.join("\n"));
}
