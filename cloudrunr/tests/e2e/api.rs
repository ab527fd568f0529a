//! The JSON API through real HTTP: accounts, tokens, validation of every input, tenant
//! isolation, and project settings.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use test_support::git_server::GitServer;
use test_support::{Platform, fixture};

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error envelope: {body}"))
}

#[tokio::test]
async fn signup_login_and_tokens() {
    let p = Platform::start().await;
    let signup = json!({ "name": "Ann", "email": "Ann@Example.com", "password": "correct horse battery" });
    let (status, body) = p
        .call(Method::POST, "/api/auth/signup", None, Some(signup.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert!(body["user"].get("password_hash").is_none());
    let (status, body) = p.call(Method::POST, "/api/auth/signup", None, Some(signup)).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "email_taken"));

    let login = |email: &str, password: &str| json!({ "email": email, "password": password });
    let (status, body) = p
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(login("ann@example.com", "correct horse battery")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = body["token"].as_str().unwrap().to_owned();
    let (status, me) = p.get("/api/me", &session).await;
    assert_eq!((status, me["user"]["name"].as_str()), (StatusCode::OK, Some("Ann")));

    // A wrong password and an unknown email are indistinguishable.
    let (s1, wrong_pw) = p
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(login("ann@example.com", "nope nope nope")),
        )
        .await;
    let (s2, no_user) = p
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(login("bob@example.com", "nope nope nope")),
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(wrong_pw, no_user);

    // Personal API tokens: shown once, listed without the secret, revocable.
    let (status, created) = p.post("/api/tokens", &session, json!({ "name": "ci" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let api_token = created["token"].as_str().unwrap().to_owned();
    assert!(api_token.starts_with("crr_"));
    let (status, me) = p.get("/api/me", &api_token).await;
    assert_eq!(
        (status, me["user"]["email"].as_str()),
        (StatusCode::OK, Some("ann@example.com"))
    );
    let (_, list) = p.get("/api/tokens", &session).await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1);
    assert!(
        !list.to_string().contains(&api_token[4..]),
        "the secret is never listed"
    );
    assert!(list["tokens"][0]["last_used_at"].is_string());

    let bob = p.signup("Bob").await;
    let token_id = created["id"].as_str().unwrap();
    let (status, _) = p
        .call(Method::DELETE, &format!("/api/tokens/{token_id}"), Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "someone else's token");
    let (status, _) = p
        .call(Method::DELETE, &format!("/api/tokens/{token_id}"), Some(&session), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = p.get("/api/me", &api_token).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));

    for bad in [
        None,
        Some("garbage"),
        Some("crr_0000"),
        Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),
    ] {
        let (status, body) = p.call(Method::GET, "/api/me", bad, None).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn signup_validation() {
    let p = Platform::start().await;
    let cases = [
        (
            json!({ "name": "A", "email": "not-an-email", "password": "long enough" }),
            "invalid_email",
        ),
        (
            json!({ "name": "A", "email": "a@example.com", "password": "short" }),
            "weak_password",
        ),
        (
            json!({ "name": "", "email": "a@example.com", "password": "long enough" }),
            "invalid_name",
        ),
        (json!({ "name": "A", "email": "a@example.com" }), "invalid_request"),
        (
            json!({ "name": "A", "email": "a@example.com", "password": "long enough", "admin": true }),
            "invalid_request",
        ),
    ];
    for (body, want) in cases {
        let (status, resp) = p.call(Method::POST, "/api/auth/signup", None, Some(body.clone())).await;
        assert_eq!(code(&resp), want, "{body}");
        assert!(status.is_client_error());
    }
    // Not JSON at all, or not declared as JSON.
    let resp = p
        .http
        .post(format!("{}/api/auth/signup", p.base))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&resp.json().await.unwrap()), "invalid_json");
    let resp = p
        .http
        .post(format!("{}/api/auth/signup", p.base))
        .body("name=a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let token = p.signup("Query").await;
    for query in ["limit=abc", "limit=-1", "bogus=1"] {
        let (status, body) = p
            .get(&format!("/api/deployments/00000000000000000000/logs?{query}"), &token)
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_query"),
            "{query}"
        );
    }
    let (status, body) = p.call(Method::GET, "/api/nope", None, None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = p.call(Method::DELETE, "/api/auth/login", None, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn project_input_is_validated() {
    let git = GitServer::start().await;
    git.create_repo("spa", &fixture("spa"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    let good = || json!({ "name": "ok", "git_url": git.url("spa") });
    let with = |field: &str, value: Value| {
        let mut b = good();
        b[field] = value;
        b
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            with("git_url", json!("ext::sh -c touch% /tmp/pwned")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_git_url",
        ),
        (
            with("git_url", json!("file:///etc")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_git_url",
        ),
        (
            with("git_url", json!("--upload-pack=touch /tmp/pwned")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_git_url",
        ),
        (
            with("git_url", json!("/tmp/repo")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_git_url",
        ),
        (
            with("git_url", json!("ssh://git@github.com/a/b.git")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_git_url",
        ),
        (
            with("git_url", json!("git@github.com:a/b.git")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_git_url",
        ),
        (
            with("git_url", json!("https://user:pw@github.com/a/b.git")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_git_url",
        ),
        (
            with("git_url", json!("http://example.com/a.git")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_git_url",
        ),
        (
            with("slug", json!("Not A Label")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_slug",
        ),
        (
            with("slug", json!("-edge")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_slug",
        ),
        (
            with("slug", json!("a--b")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_slug",
        ),
        (
            with("slug", json!("x".repeat(64))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_slug",
        ),
        (
            with("slug", json!("www")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_slug",
        ),
        (
            with("output_dir", json!("../..")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_path",
        ),
        (
            with("root_dir", json!("/etc")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_path",
        ),
        (
            with("framework", json!("rails")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_framework",
        ),
        (
            with("env", json!({ "1BAD": "x" })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_env",
        ),
        (
            with("env", json!({ "PATH": "/evil" })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_env",
        ),
        (
            with("branch", json!("no-such-branch")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "branch_not_found",
        ),
        (
            with("branch", json!("--upload-pack=x")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_branch",
        ),
        (
            with("git_url", json!(git.url("missing"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "git_unreachable",
        ),
        (
            with("gitUrl", json!("typo")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ];
    for (body, status, want) in cases {
        let (got, resp) = p.post("/api/projects", &token, body.clone()).await;
        assert_eq!((got, code(&resp)), (status, want), "{body} -> {resp}");
        assert!(!resp["error"]["message"].as_str().unwrap().is_empty());
    }
    let (_, list) = p.get("/api/projects", &token).await;
    assert_eq!(list["projects"], json!([]), "nothing was created");

    // Slugs are unique across the platform; a derived slug steps aside, an explicit one is refused.
    let first = p.create_project(&token, with("slug", json!("taken"))).await;
    assert_eq!(first["slug"], "taken");
    let bob = p.signup("Bob").await;
    let (status, resp) = p.post("/api/projects", &bob, with("slug", json!("taken"))).await;
    assert_eq!((status, code(&resp)), (StatusCode::CONFLICT, "slug_taken"));
    let derived = p.create_project(&bob, with("name", json!("Taken"))).await;
    assert!(derived["slug"].as_str().unwrap().starts_with("taken-"), "{derived}");

    let (status, resp) = p
        .post("/api/projects/taken/deployments", &token, json!({ "commit": "abc123" }))
        .await;
    assert_eq!(
        (status, code(&resp)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_commit")
    );
    let (status, resp) = p
        .post("/api/projects/taken/deployments", &token, json!({ "branch": "a b" }))
        .await;
    assert_eq!(
        (status, code(&resp)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_branch")
    );
}

#[tokio::test]
async fn other_users_see_nothing() {
    let git = GitServer::start().await;
    git.create_repo("spa", &fixture("spa"));
    let p = Platform::start().await;
    let ann = p.signup("Ann").await;
    let bob = p.signup("Bob").await;
    p.create_project(
        &ann,
        json!({ "name": "anns", "git_url": git.url("spa"), "framework": "vite" }),
    )
    .await;
    let id = p.deploy(&ann, "anns").await;
    assert_eq!(p.wait_final(&ann, &id).await["state"], "ready");

    let requests: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/projects/anns".into(), None),
        (
            Method::PATCH,
            "/api/projects/anns".into(),
            Some(json!({ "name": "mine now" })),
        ),
        (Method::DELETE, "/api/projects/anns".into(), None),
        (Method::GET, "/api/projects/anns/deployments".into(), None),
        (Method::POST, "/api/projects/anns/deployments".into(), Some(json!({}))),
        (Method::GET, format!("/api/deployments/{id}"), None),
        (Method::GET, format!("/api/deployments/{id}/logs"), None),
        (Method::GET, format!("/api/deployments/{id}/logs/stream"), None),
        (Method::POST, format!("/api/deployments/{id}/cancel"), Some(json!({}))),
        (Method::POST, format!("/api/deployments/{id}/promote"), Some(json!({}))),
    ];
    for (method, path, body) in requests {
        let (status, resp) = p.call(method.clone(), &path, Some(&bob), body).await;
        assert_eq!(
            (status, code(&resp)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path}"
        );
    }
    let (_, list) = p.get("/api/projects", &bob).await;
    assert_eq!(list["projects"], json!([]));
    // Ann still has everything, untouched.
    let (status, project) = p.get("/api/projects/anns", &ann).await;
    assert_eq!(
        (status, project["project"]["name"].as_str()),
        (StatusCode::OK, Some("anns"))
    );
    assert_eq!(p.deployment(&ann, &id).await["state"], "ready");
}

#[tokio::test]
async fn project_settings_env_rename_and_delete() {
    let git = GitServer::start().await;
    git.create_repo("spa", &fixture("spa"));
    let p = Platform::start().await;
    let token = p.signup("Ann").await;
    let project = p
        .create_project(
            &token,
            json!({ "name": "My Site", "git_url": git.url("spa"), "framework": "vite",
                    "env": { "API_URL": "https://api.example.com", "TOKEN": "hunter2hunter2" } }),
        )
        .await;
    assert_eq!(project["slug"], "my-site");
    assert_eq!(project["env_keys"], json!(["API_URL", "TOKEN"]));
    assert!(
        !project.to_string().contains("hunter2hunter2"),
        "env values are write-only"
    );

    let (status, patched) = p
        .call(
            Method::PATCH,
            "/api/projects/my-site",
            Some(&token),
            Some(json!({ "env": { "TOKEN": null, "NEW": "v" }, "output_dir": "dist", "build_command": null })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["project"]["env_keys"], json!(["API_URL", "NEW"]));
    assert_eq!(patched["project"]["output_dir"], "dist");
    let (status, resp) = p
        .call(
            Method::PATCH,
            "/api/projects/my-site",
            Some(&token),
            Some(json!({ "output_dir": "../x" })),
        )
        .await;
    assert_eq!(
        (status, code(&resp)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_path")
    );
    let (_, resp) = p
        .call(
            Method::PATCH,
            "/api/projects/my-site",
            Some(&token),
            Some(json!({ "output_dir": null })),
        )
        .await;
    assert_eq!(resp["project"]["output_dir"], Value::Null, "null resets to detection");

    let id = p.deploy(&token, "my-site").await;
    assert_eq!(p.wait_final(&token, &id).await["state"], "ready");
    assert_eq!(p.site("my-site", "/", &[]).await.status(), StatusCode::OK);

    // Renaming moves the site to the new hostname at once.
    let (status, renamed) = p
        .call(
            Method::PATCH,
            "/api/projects/my-site",
            Some(&token),
            Some(json!({ "slug": "renamed" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        renamed["project"]["production_url"],
        format!("http://renamed.localhost:{}/", p.port)
    );
    assert_eq!(p.site("my-site", "/", &[]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(p.site("renamed", "/", &[]).await.status(), StatusCode::OK);

    let (status, _) = p
        .call(Method::DELETE, "/api/projects/renamed", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(p.site("renamed", "/", &[]).await.status(), StatusCode::NOT_FOUND);
    let (status, _) = p.get(&format!("/api/deployments/{id}"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = p.get("/api/projects/renamed", &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The slug is free again.
    p.create_project(
        &token,
        json!({ "name": "again", "slug": "renamed", "git_url": git.url("spa") }),
    )
    .await;
}
