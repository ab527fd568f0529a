//! The browser side of GitHub's flows: where GitHub sends people back to.
//!
//! - `/github/connect` posts the App manifest to GitHub (for an admin, by signed state);
//! - `/github/app-created` trades the manifest code for the new App's keys;
//! - `/github/setup` follows an installation on to GitHub's authorization;
//! - [`link_installations`] is what `/github/callback` (in the dashboard, which owns sessions)
//!   does once GitHub says who the user is.

use crate::app::{GithubError, convert_manifest};
use crate::connection::{Github, Purpose, encode_query};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use platform::UserId;
use serde::Deserialize;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small page; `body` is HTML the caller escaped.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>{t} · CloudRunr</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem\">\
         <h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut resp = (status, Html(html)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

fn failure(status: StatusCode, what: &str, why: &str) -> Response {
    page(status, what, &format!("<p>{}</p>", escape(why)))
}

/// The admin (and organization) a manifest-flow state was signed for.
async fn admin_state(github: &Github, state: Option<&str>) -> Result<(UserId, Option<String>), Response> {
    let Some((user, org)) = state.and_then(|s| github.verify_state(Purpose::Manifest, s)) else {
        return Err(failure(
            StatusCode::FORBIDDEN,
            "Link expired",
            "Start connecting GitHub again from CloudRunr.",
        ));
    };
    if !github.db().user(&user).await.ok().flatten().is_some_and(|u| u.is_admin) {
        return Err(failure(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only an administrator can connect GitHub.",
        ));
    }
    Ok((user, org))
}

#[derive(Deserialize)]
pub struct StateQuery {
    state: Option<String>,
}

/// Sends the admin's browser to GitHub with the manifest (GitHub only takes it as a form post).
pub async fn connect(State(github): State<Github>, Query(q): Query<StateQuery>) -> Response {
    let (_admin, org) = match admin_state(&github, q.state.as_deref()).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if github.configured_by_environment() {
        return failure(
            StatusCode::CONFLICT,
            "Already configured",
            "The GitHub App is set by the server's environment.",
        );
    }
    let manifest = github.manifest().to_string();
    let action = github.manifest_post_url(org.as_deref());
    let state = q.state.unwrap_or_default();
    let body = format!(
        "<p>Taking you to GitHub to create the CloudRunr App…</p>\
         <form id=\"f\" method=\"post\" action=\"{a}?state={s}\">\
         <input type=\"hidden\" name=\"manifest\" value=\"{m}\">\
         <button type=\"submit\">Continue to GitHub</button></form>\
         <script>document.getElementById('f').submit()</script>",
        a = escape(&action),
        s = escape(&encode_query(&state)),
        m = escape(&manifest),
    );
    page(StatusCode::OK, "Connect GitHub", &body)
}

#[derive(Deserialize)]
pub struct CodeQuery {
    code: Option<String>,
    state: Option<String>,
}

/// GitHub created the App: trade the code for its credentials and keep them.
pub async fn app_created(State(github): State<Github>, Query(q): Query<CodeQuery>) -> Response {
    let user = match admin_state(&github, q.state.as_deref()).await {
        Ok((user, _)) => user,
        Err(refused) => return refused,
    };
    let Some(code) = q.code.as_deref() else {
        return failure(
            StatusCode::BAD_REQUEST,
            "Missing code",
            "GitHub did not say which App it created.",
        );
    };
    let created = match convert_manifest(&github.settings().api_url, code).await {
        Ok(c) => c,
        Err(e) => return failure(StatusCode::BAD_GATEWAY, "GitHub refused", &e.to_string()),
    };
    let slug = created.credentials.slug.clone().unwrap_or_default();
    if let Err(e) = github.connect(created).await {
        tracing::error!("cannot store the GitHub App: {e}");
        return failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Not saved",
            "The App could not be stored; try again.",
        );
    }
    let install = github.install_url(&user).await.unwrap_or_default();
    page(
        StatusCode::OK,
        "GitHub connected",
        &format!(
            "<p>CloudRunr now acts as the GitHub App <strong>{}</strong>.</p>\
             <p><a href=\"{}\">Install it on your repositories</a> to deploy them.</p>",
            escape(&slug),
            escape(&install)
        ),
    )
}

/// After an installation: on to GitHub's authorization, which proves who installed it.
pub async fn setup(State(github): State<Github>, Query(q): Query<CodeQuery>) -> Response {
    let user = q
        .state
        .as_deref()
        .and_then(|s| github.verify_state(Purpose::Install, s))
        .map(|(u, _)| u);
    match (user, github.app()) {
        (Some(user), Some(_)) => match github.authorize_url(&user) {
            Ok(url) => Redirect::to(&url).into_response(),
            Err(e) => failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "GitHub is not connected",
                &e.to_string(),
            ),
        },
        _ => page(
            StatusCode::OK,
            "Installed",
            "<p>The App is installed. To deploy its repositories, link the installation from your CloudRunr \
             account (GitHub settings, “Link installations”).</p>",
        ),
    }
}

/// Links to `user` the installations of the App that the GitHub account behind `token`
/// (`login`) can reach: a personal account's only to its owner, an organization's to the first
/// member who links it. Returns a line per installation, for the page that says so.
pub async fn link_installations(
    github: &Github,
    app: &crate::app::GithubApp,
    user: &platform::UserId,
    token: &platform::settings::Secret,
    login: &str,
) -> Result<Vec<String>, GithubError> {
    let installations = app.user_installations(token).await?;
    let db = github.db();
    let mut linked = Vec::new();
    for i in installations {
        // A personal account's installation is its owner's alone; an organization's goes to the
        // first of its members who links it.
        if i.account_type == "User" && !i.account_login.eq_ignore_ascii_case(login) {
            continue;
        }
        let stored = async {
            db.upsert_installation(i.id, &i.account_login, &i.account_type, i.suspended)
                .await?;
            db.claim_installation(i.id, user).await
        };
        match stored.await {
            Ok(true) => {}
            Ok(false) => {
                linked.push(format!(
                    "{} (already linked to another CloudRunr account)",
                    i.account_login
                ));
                continue;
            }
            Err(e) => {
                tracing::error!(installation = i.id, "cannot link an installation: {e}");
                continue;
            }
        }
        match app.installation_repositories(i.id).await {
            Ok(repos) => {
                if let Err(e) = db.replace_repositories(i.id, &repos).await {
                    tracing::error!(installation = i.id, "cannot store repositories: {e}");
                }
                linked.push(format!("{} ({} repositories)", i.account_login, repos.len()));
            }
            Err(e) => {
                tracing::warn!(installation = i.id, "cannot list repositories yet: {e}");
                linked.push(i.account_login.clone());
            }
        }
    }
    Ok(linked)
}
