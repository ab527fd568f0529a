//! The browser side of GitHub's flows: where GitHub sends people back to.
//!
//! - `/github/connect` posts the App manifest to GitHub (for an admin, by signed state);
//! - `/github/app-created` trades the manifest code for the new App's keys;
//! - `/github/setup` follows an installation on to GitHub's authorization;
//! - [`link_installations`] is what `/github/callback` (in the dashboard, which owns sessions)
//!   does once GitHub says who the user is.

use crate::app::{GithubError, convert_manifest};
use crate::connection::{Github, Purpose, encode_query};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use platform::UserId;
use serde::Deserialize;

/// `github/failure.html`: what went wrong (`title`) and what to do (`why`).
#[derive(Template)]
#[template(path = "github/failure.html")]
struct Failure<'a> {
    title: &'a str,
    why: &'a str,
}

/// `github/connect.html`: the manifest, posted to GitHub by the browser (GitHub only takes it as
/// a form post).
#[derive(Template)]
#[template(path = "github/connect.html")]
struct Connect<'a> {
    title: &'a str,
    /// GitHub's "new App" URL, without the query.
    action: &'a str,
    /// The signed state, already percent-encoded for the query.
    state: &'a str,
    /// The manifest's JSON.
    manifest: &'a str,
}

/// `github/connected.html`: the App is created and stored.
#[derive(Template)]
#[template(path = "github/connected.html")]
struct Connected<'a> {
    title: &'a str,
    slug: &'a str,
    /// Where to install the App; empty when it cannot be said.
    install: &'a str,
}

/// `github/installed.html`: the App is installed; linking the installation is the user's next step.
#[derive(Template)]
#[template(path = "github/installed.html")]
struct Installed<'a> {
    title: &'a str,
}

/// A page rendered from its template (every value escaped there), never cached.
fn page(status: StatusCode, template: impl Template) -> Response {
    let mut resp = match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("cannot render a page: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

fn failure(status: StatusCode, title: &str, why: &str) -> Response {
    page(status, Failure { title, why })
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
    let state = encode_query(&q.state.unwrap_or_default());
    page(
        StatusCode::OK,
        Connect {
            title: "Connect GitHub",
            action: &action,
            state: &state,
            manifest: &manifest,
        },
    )
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
        Connected {
            title: "GitHub connected",
            slug: &slug,
            install: &install,
        },
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
        _ => page(StatusCode::OK, Installed { title: "Installed" }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_by_the_templates() {
        let html = Connected {
            title: "GitHub <connected>",
            slug: "<b>\"app\"</b>",
            install: "https://github.example/apps/x/installations/new?a=1&b='2'",
        }
        .render()
        .unwrap();
        assert!(
            html.contains("<title>GitHub &#60;connected&#62; · CloudRunr</title>"),
            "{html}"
        );
        assert!(
            html.contains("<strong>&#60;b&#62;&#34;app&#34;&#60;/b&#62;</strong>"),
            "{html}"
        );
        assert!(
            html.contains("href=\"https://github.example/apps/x/installations/new?a=1&#38;b=&#39;2&#39;\""),
            "{html}"
        );
        let html = Connect {
            title: "Connect GitHub",
            action: "https://github.example/settings/apps/new",
            state: "s%2Bt",
            manifest: r#"{"name":"a<b"}"#,
        }
        .render()
        .unwrap();
        assert!(
            html.contains("action=\"https://github.example/settings/apps/new?state=s%2Bt\""),
            "{html}"
        );
        assert!(
            html.contains("name=\"manifest\" value=\"{&#34;name&#34;:&#34;a&#60;b&#34;}\""),
            "{html}"
        );
    }
}
