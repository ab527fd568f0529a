//! Accounts under attack, against the real binary: log-in throttling per (account, address)
//! pair that survives restarts and never locks the owner out from elsewhere, trusted proxies,
//! sessions that log-out and password changes end, per-account build caps and fairness, and
//! error messages that show values as users wrote them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use test_support::git_server::GitServer;
use test_support::{Client, Platform, csrf_of, fixture};

const PASSWORD: &str = "correct horse battery";

/// One log-in through the JSON API, presenting `forwarded_for` as `X-Forwarded-For`.
struct LoginAnswer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

async fn login(p: &Platform, email: &str, password: &str, forwarded_for: Option<&str>) -> LoginAnswer {
    let mut req = p
        .http
        .post(format!("{}/api/auth/login", p.base))
        .json(&json!({ "email": email, "password": password }));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let resp = req.send().await.expect("log-in request");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.json().await.unwrap_or(Value::Null);
    LoginAnswer {
        status,
        retry_after,
        body,
    }
}

/// Waits out a pair's block, then fails once more (a 401): returns that attempt's answer.
async fn fail_once_after_waiting(p: &Platform, email: &str, xff: &str) -> LoginAnswer {
    for _ in 0..10 {
        let a = login(p, email, "wrong password", Some(xff)).await;
        match a.status {
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = a.retry_after.expect("a 429 says how long to wait");
                tokio::time::sleep(Duration::from_millis(wait * 1000 + 100)).await;
            }
            _ => return a,
        }
    }
    panic!("the pair stayed blocked");
}

#[tokio::test]
async fn guessing_from_one_address_never_locks_the_owner_out_and_survives_restarts() {
    let mut p = Platform::start_with(&[
        ("CLOUDRUNR_TRUSTED_PROXIES", "127.0.0.1"),
        ("CLOUDRUNR_LOGIN_FREE_ATTEMPTS", "3"),
    ])
    .await;
    p.signup("Ann").await;
    let ann = "ann@example.com";
    let attacker = "203.0.113.66";
    let owner = "198.51.100.7";

    // 60 guesses from one address: three are checked, then the pair waits, growing.
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let a = login(&p, ann, "wrong password", Some(attacker)).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(a.body["error"]["code"], "too_many_attempts", "{}", a.body);
            assert!(
                a.retry_after.is_some_and(|s| (1..=2).contains(&s)),
                "{:?}",
                a.retry_after
            );
        }
        statuses.push(a.status);
    }
    let refused = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((refused, throttled), (3, 57), "{statuses:?}");

    // The owner, elsewhere, is not delayed by any of it.
    let a = login(&p, ann, PASSWORD, Some(owner)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body["token"].is_string());
    // The attacker's pair waits even with the right password: guessing gains nothing there.
    let a = login(&p, ann, PASSWORD, Some(attacker)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(a.retry_after.is_some());
    assert!(
        a.body["error"]["message"].as_str().unwrap().contains("try again in"),
        "{}",
        a.body
    );

    // The fourth failure: the pair now waits 4 s.
    let a = fail_once_after_waiting(&p, ann, attacker).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);

    // A crash forgets nothing: once the wait is over, the fifth failure makes the pair wait 8 s,
    // where a fresh count (one failure, within the free attempts) would not wait at all.
    p.crash_and_restart();
    let a = fail_once_after_waiting(&p, ann, attacker).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    let a = login(&p, ann, "wrong password", Some(attacker)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    let wait = a.retry_after.unwrap();
    assert!(
        (6..=8).contains(&wait),
        "the count survived the restart: waits {wait} s"
    );
    // And the owner still logs in from elsewhere.
    assert_eq!(login(&p, ann, PASSWORD, Some(owner)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    // Loopback is not trusted here: whatever X-Forwarded-For says, the client is 127.0.0.1.
    let p = Platform::start_with(&[
        ("CLOUDRUNR_TRUSTED_PROXIES", "10.0.0.0/8"),
        ("CLOUDRUNR_LOGIN_FREE_ATTEMPTS", "2"),
    ])
    .await;
    p.signup("Ann").await;
    let ann = "ann@example.com";
    for xff in ["203.0.113.1", "203.0.113.2"] {
        let a = login(&p, ann, "wrong password", Some(xff)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    // A third "address" is the same client: its pair is the one that must wait.
    let a = login(&p, ann, "wrong password", Some("203.0.113.3")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    let a = login(&p, ann, PASSWORD, Some("198.51.100.9")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "a forged header opens nothing");
}

#[tokio::test]
async fn credential_stuffing_past_the_ceiling_never_blocks_a_correct_password() {
    let p = Platform::start_with(&[
        ("CLOUDRUNR_TRUSTED_PROXIES", "127.0.0.1"),
        ("CLOUDRUNR_LOGIN_FREE_ATTEMPTS", "3"),
        ("CLOUDRUNR_LOGIN_ADDRESS_CEILING", "5"),
    ])
    .await;
    p.signup("Ann").await;
    p.signup("Bob").await;
    let stuffer = "203.0.113.77";
    // One guess at each of six accounts: none of them waits (one failure each).
    for i in 0..6 {
        let a = login(&p, &format!("user{i}@example.com"), "leaked password", Some(stuffer)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    // Past the ceiling, a correct password for an account the address has not failed on passes…
    let a = login(&p, "bob@example.com", PASSWORD, Some(stuffer)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // …but a wrong one waits at once, with no free attempts.
    let a = login(&p, "ann@example.com", "leaked password", Some(stuffer)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    let a = login(&p, "ann@example.com", "another guess", Some(stuffer)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    // Ann herself, elsewhere, is not affected.
    let a = login(&p, "ann@example.com", PASSWORD, Some("198.51.100.8")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

/// The dashboard's session cookie of a client (its value is the session token).
fn session_of(c: &Client) -> String {
    c.cookies.get("cloudrunr_session").cloned().expect("a session cookie")
}

async fn me(p: &Platform, token: &str) -> StatusCode {
    p.call(Method::GET, "/api/me", Some(token), None).await.0
}

#[tokio::test]
async fn log_out_ends_the_session_for_every_copy_of_its_token() {
    let p = Platform::start().await;
    let mut browser = Client::new(&p);
    let resp = browser.sign_up("Ann", "ann@example.com").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = session_of(&browser);
    assert_eq!(me(&p, &cookie).await, StatusCode::OK, "the cookie is a session token");
    let other = login(&p, "ann@example.com", PASSWORD, None).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (_, page) = browser.get("/settings").await;
    let csrf = csrf_of(&page);
    let resp = browser.post("/logout", &[("csrf", &csrf)], None).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    // A copy of the old cookie (stolen, or kept by a shared computer) opens nothing.
    assert_eq!(me(&p, &cookie).await, StatusCode::UNAUTHORIZED);
    let mut thief = Client::new(&p);
    thief.cookies.insert("cloudrunr_session".into(), cookie.clone());
    let resp = thief
        .http
        .get(format!("{}/settings", p.base))
        .header("cookie", thief.cookie_header())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/login"), "{location}");
    // Another session of the same user is another session…
    assert_eq!(me(&p, &other).await, StatusCode::OK);
    // …which the API ends the same way.
    let (status, body) = p.call(Method::POST, "/api/auth/logout", Some(&other), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(me(&p, &other).await, StatusCode::UNAUTHORIZED);
    let (status, _) = p.call(Method::POST, "/api/auth/logout", Some(&other), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an ended session cannot end again");
}

#[tokio::test]
async fn the_api_changes_passwords_and_ends_sessions_too() {
    let p = Platform::start().await;
    let first = p.signup("Ann").await;
    let second = login(&p, "ann@example.com", PASSWORD, None).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, created) = p.post("/api/tokens", &first, json!({ "name": "ci" })).await;
    let api_token = created["token"].as_str().unwrap().to_owned();

    let change = |current: &str| json!({ "current_password": current, "new_password": "a brand new passphrase" });
    let (status, body) = p.post("/api/auth/password", &first, change("not it")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "wrong_password");
    assert_eq!(me(&p, &second).await, StatusCode::OK, "a refused change ends nothing");
    let (status, body) = p
        .post(
            "/api/auth/password",
            &first,
            json!({ "current_password": PASSWORD, "new_password": "short" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "weak_password");

    let (status, body) = p.post("/api/auth/password", &first, change(PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fresh = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        me(&p, &first).await,
        StatusCode::UNAUTHORIZED,
        "the session it was sent with ended too"
    );
    assert_eq!(me(&p, &second).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&p, &fresh).await, StatusCode::OK);
    assert_eq!(me(&p, &api_token).await, StatusCode::OK);
    // An API token is no session: log-out does not apply to it.
    let (status, body) = p.call(Method::POST, "/api/auth/logout", Some(&api_token), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "not_a_session");
    assert_eq!(me(&p, &api_token).await, StatusCode::OK);
}

#[tokio::test]
async fn a_password_change_ends_every_session_but_keeps_api_tokens() {
    let p = Platform::start().await;
    let mut browser = Client::new(&p);
    browser.sign_up("Ann", "ann@example.com").await;
    let old_cookie = session_of(&browser);
    let api_session = login(&p, "ann@example.com", PASSWORD, None).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, created) = p.post("/api/tokens", &api_session, json!({ "name": "ci" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let api_token = created["token"].as_str().unwrap().to_owned();

    // A wrong current password changes nothing.
    let (_, page) = browser.get("/settings").await;
    let csrf = csrf_of(&page);
    let resp = browser
        .post(
            "/settings/password",
            &[
                ("csrf", &csrf),
                ("current_password", "not it"),
                ("new_password", "a brand new passphrase"),
            ],
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("current password is incorrect"));
    assert_eq!(me(&p, &api_session).await, StatusCode::OK);

    let resp = browser
        .post(
            "/settings/password",
            &[
                ("csrf", &csrf),
                ("current_password", PASSWORD),
                ("new_password", "a brand new passphrase"),
            ],
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    // This browser carries on with a new session; every other one has ended.
    let (status, page) = browser.get("/settings?done=password-changed").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Password changed"), "{page}");
    assert_ne!(session_of(&browser), old_cookie);
    assert_eq!(me(&p, &old_cookie).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&p, &api_session).await, StatusCode::UNAUTHORIZED);
    // Personal API tokens are revoked one by one, not by a password change.
    assert_eq!(me(&p, &api_token).await, StatusCode::OK);
    // And the old password is gone.
    assert_eq!(
        login(&p, "ann@example.com", PASSWORD, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&p, "ann@example.com", "a brand new passphrase", None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_taken_slug_is_named_as_written() {
    let git = GitServer::start().await;
    git.create_repo("site", &fixture("static"));
    let p = Platform::start().await;
    let victim = p.signup("Victor").await;
    let other = p.signup("Olga").await;
    p.create_project(&victim, json!({ "name": "victim", "git_url": git.url("site") }))
        .await;
    let (status, body) = p
        .post(
            "/api/projects",
            &other,
            json!({ "name": "mine", "slug": "victim", "git_url": git.url("site") }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(message, "the slug \"victim\" is taken; choose another");
    let (status, body) = p
        .call(
            Method::PATCH,
            "/api/projects/victim",
            Some(&victim),
            Some(json!({ "slug": "victim" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "renaming to itself is no conflict: {body}");
    p.create_project(&other, json!({ "name": "other", "git_url": git.url("site") }))
        .await;
    let (status, body) = p
        .call(
            Method::PATCH,
            "/api/projects/other",
            Some(&other),
            Some(json!({ "slug": "victim" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(!body.to_string().contains("ProjectSlug("), "{body}");
}

#[tokio::test]
async fn an_account_may_queue_only_so_many_deployments() {
    let git = GitServer::start().await;
    git.create_repo("slow", &fixture("slow"));
    let p = Platform::start_with(&[
        ("CLOUDRUNR_MAX_QUEUED_BUILDS_PER_ACCOUNT", "3"),
        ("CLOUDRUNR_BUILD_TIMEOUT", "30s"),
    ])
    .await;
    let ann = p.signup("Ann").await;
    p.create_project(&ann, json!({ "name": "slow", "git_url": git.url("slow") }))
        .await;
    // One build of the project runs at a time; the rest wait. The first may be dispatched
    // before the others are created, so the cap bites at the fourth or the fifth.
    let mut accepted = Vec::new();
    let refusal = loop {
        let (status, body) = p.post("/api/projects/slow/deployments", &ann, json!({})).await;
        if status == StatusCode::ACCEPTED {
            accepted.push(body["deployment"]["id"].as_str().unwrap().to_owned());
            assert!(accepted.len() <= 4, "more than the cap was accepted");
            continue;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        break body;
    };
    assert!(accepted.len() >= 3, "{accepted:?}");
    assert_eq!(refusal["error"]["code"], "too_many_queued_builds", "{refusal}");
    assert!(
        refusal["error"]["message"].as_str().unwrap().contains("at most 3"),
        "{refusal}"
    );
    let (_, list) = p.get("/api/projects/slow/deployments", &ann).await;
    assert_eq!(
        list["deployments"].as_array().unwrap().len(),
        accepted.len(),
        "a refused deployment is not created: {list}"
    );
    // Another account is not affected by Ann's queue.
    let bob = p.signup("Bob").await;
    p.create_project(&bob, json!({ "name": "bobs", "git_url": git.url("slow") }))
        .await;
    let (status, body) = p.post("/api/projects/bobs/deployments", &bob, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for id in accepted {
        p.post(&format!("/api/deployments/{id}/cancel"), &ann, json!({})).await;
    }
}

/// When a deployment's build started (RFC 3339 with milliseconds, in UTC: comparable as text),
/// empty while it has not.
fn started(d: &Value) -> String {
    d["started_at"].as_str().map(str::to_owned).unwrap_or_default()
}

#[tokio::test]
async fn another_accounts_build_goes_next_rather_than_after_the_whole_queue() {
    let git = GitServer::start().await;
    git.create_repo("slow", &fixture("slow"));
    git.create_repo("site", &fixture("static"));
    // One build at a time in all; each slow build takes the whole time limit.
    let p = Platform::start_with(&[
        ("CLOUDRUNR_MAX_CONCURRENT_BUILDS", "1"),
        ("CLOUDRUNR_BUILD_TIMEOUT", "3s"),
    ])
    .await;
    let ann = p.signup("Ann").await;
    let bob = p.signup("Bob").await;
    for name in ["slow-a", "slow-b"] {
        p.create_project(&ann, json!({ "name": name, "git_url": git.url("slow") }))
            .await;
    }
    p.create_project(&bob, json!({ "name": "bobs", "git_url": git.url("site") }))
        .await;
    let mut anns = Vec::new();
    for _ in 0..3 {
        for slug in ["slow-a", "slow-b"] {
            anns.push(p.deploy(&ann, slug).await);
        }
    }
    let asked = Instant::now();
    let bobs = p.deploy(&bob, "bobs").await;
    let done = p.wait_final(&bob, &bobs).await;
    let waited = asked.elapsed();
    assert_eq!(done["state"], "ready", "{done}");
    println!("Bob's 1-file build waited behind 6 queued slow builds of Ann's: ready after {waited:?}");

    // Bob's build ran right after Ann's first, before any other of hers.
    let mut started_before_bob = 0;
    for id in &anns {
        let d = p.deployment(&ann, id).await;
        if !started(&d).is_empty() && started(&d) < started(&done) {
            started_before_bob += 1;
        }
    }
    assert_eq!(started_before_bob, 1, "Ann's builds that started before Bob's");
    // Six slow builds first would take 18 s.
    assert!(waited < Duration::from_secs(12), "{waited:?}");
    for id in anns {
        p.post(&format!("/api/deployments/{id}/cancel"), &ann, json!({})).await;
    }
}

#[tokio::test]
async fn an_account_runs_at_most_its_share_of_builds_at_once() {
    let git = GitServer::start().await;
    git.create_repo("slow", &fixture("slow"));
    git.create_repo("site", &fixture("static"));
    let p = Platform::start_with(&[
        ("CLOUDRUNR_MAX_CONCURRENT_BUILDS", "2"),
        ("CLOUDRUNR_MAX_RUNNING_BUILDS_PER_ACCOUNT", "1"),
        ("CLOUDRUNR_BUILD_TIMEOUT", "20s"),
    ])
    .await;
    let ann = p.signup("Ann").await;
    let bob = p.signup("Bob").await;
    for name in ["slow-a", "slow-b"] {
        p.create_project(&ann, json!({ "name": name, "git_url": git.url("slow") }))
            .await;
    }
    p.create_project(&bob, json!({ "name": "bobs", "git_url": git.url("site") }))
        .await;
    let a = p.deploy(&ann, "slow-a").await;
    let b = p.deploy(&ann, "slow-b").await;
    let asked = Instant::now();
    let bobs = p.deploy(&bob, "bobs").await;
    let done = p.wait_final(&bob, &bobs).await;
    let waited = asked.elapsed();
    assert_eq!(done["state"], "ready", "{done}");
    println!("Bob's build beside Ann's running one: ready after {waited:?}");
    assert!(
        waited < Duration::from_secs(15),
        "Bob did not wait for Ann's 20 s build: {waited:?}"
    );
    // Ann's second project waits for her first: one build of hers at a time.
    let first = p.deployment(&ann, &a).await;
    let second = p.deployment(&ann, &b).await;
    let running = [&first, &second].iter().filter(|d| d["state"] != "queued").count();
    assert_eq!(running, 1, "{first}\n{second}");
    for id in [a, b] {
        p.post(&format!("/api/deployments/{id}/cancel"), &ann, json!({})).await;
    }
}
