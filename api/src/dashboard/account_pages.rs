//! The account: API tokens and GitHub; and the administrator's page.

use super::session::Session;
use super::text::when;
use super::{Flash, Nav, PostedForm, api_error_page, error_page, render, see_other};
use crate::AppState;
use crate::extract::ClientAddr;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use platform::TokenId;
use serde::Deserialize;

pub(crate) struct TokenRow {
    id: String,
    name: String,
    created_at: String,
    created_at_iso: String,
    last_used: String,
}

pub(crate) struct InstallationRow {
    account: String,
    repositories: Vec<String>,
}

#[derive(Template)]
#[template(path = "account/settings.html")]
struct SettingsPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    csrf: String,
    user_name: String,
    user_email: String,
    is_admin: bool,
    github_connected: bool,
    github_login: Option<String>,
    installations: Vec<InstallationRow>,
    tokens: Vec<TokenRow>,
    new_token: Option<String>,
}

async fn settings_page(
    state: &AppState,
    session: &Session,
    flash: Option<Flash>,
    new_token: Option<String>,
) -> Response {
    let nav = Nav::new(session, "settings");
    let tokens = match state.db.list_tokens(&session.user.id).await {
        Ok(t) => t,
        Err(e) => return api_error_page(nav, e.into()),
    };
    let mut installations = Vec::new();
    for i in state.db.installations_of(&session.user.id).await.unwrap_or_default() {
        let repos = state.db.repositories_of(i.id).await.unwrap_or_default();
        installations.push(InstallationRow {
            account: i.account_login,
            repositories: repos.into_iter().map(|r| r.full_name).collect(),
        });
    }
    let page = SettingsPage {
        nav,
        flash,
        csrf: session.csrf.clone(),
        user_name: session.user.name.clone(),
        user_email: session.user.email.clone(),
        is_admin: session.user.is_admin,
        github_connected: state.github.app().is_some(),
        github_login: session.user.github_login.clone(),
        installations,
        tokens: tokens
            .iter()
            .map(|t| TokenRow {
                id: t.id.to_string(),
                name: t.name.clone(),
                created_at: when(t.created_at),
                created_at_iso: t.created_at.to_rfc3339(),
                last_used: t.last_used_at.map(when).unwrap_or_else(|| "never".into()),
            })
            .collect(),
        new_token,
    };
    render(StatusCode::OK, page)
}

#[derive(Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

pub(crate) async fn settings(State(state): State<AppState>, session: Session, Query(q): Query<DoneQuery>) -> Response {
    settings_page(&state, &session, Flash::done(q.done.as_deref()), None).await
}

pub(crate) async fn create_token(State(state): State<AppState>, PostedForm { session, form }: PostedForm) -> Response {
    match crate::auth::issue_api_token(&state, &session.user, form.get("name").unwrap_or_default()).await {
        // Shown on this page, once: it is not stored anywhere it could be read back from.
        Ok((_, token)) => settings_page(&state, &session, None, Some(token)).await,
        Err(e) => settings_page(&state, &session, Flash::error(e.message()), None).await,
    }
}

/// Changes the password after checking the current one (throttled like a log-in): every session
/// of the user ends, this browser gets a new one.
pub(crate) async fn change_password(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    PostedForm { session, form }: PostedForm,
) -> Response {
    let current = form.get("current_password").unwrap_or_default().to_owned();
    let new = form.get("new_password").unwrap_or_default().to_owned();
    match crate::auth::change_password(&state, addr, &session.user, current, new).await {
        Ok(token) => {
            let mut resp = see_other("/settings?done=password-changed");
            resp.headers_mut()
                .append(header::SET_COOKIE, super::session::session_cookie(&state, &token));
            resp
        }
        Err(failure) => {
            let (e, retry_after) = failure.into_parts();
            let mut resp = settings_page(&state, &session, Flash::error(e.message()), None).await;
            *resp.status_mut() = e.status();
            crate::auth::with_retry_after(resp, retry_after)
        }
    }
}

pub(crate) async fn delete_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    PostedForm { session, .. }: PostedForm,
) -> Response {
    let nav = Nav::new(&session, "settings");
    let Ok(id) = TokenId::parse(&id) else {
        return super::not_found_page(nav);
    };
    match state.db.delete_token(&session.user.id, &id).await {
        Ok(true) => see_other("/settings?done=token-deleted"),
        Ok(false) => super::not_found_page(nav),
        Err(e) => api_error_page(nav, e.into()),
    }
}

/// Off to GitHub to link the user's GitHub account and installations.
pub(crate) async fn link_github(State(state): State<AppState>, session: Session) -> Response {
    match state.github.authorize_url(&session.user.id) {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => error_page(
            Nav::new(&session, "settings"),
            StatusCode::CONFLICT,
            "GitHub is not connected",
            &e.to_string(),
        ),
    }
}

/// Off to GitHub to install the App on more repositories.
pub(crate) async fn install_github(State(state): State<AppState>, session: Session) -> Response {
    match state.github.install_url(&session.user.id).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => error_page(
            Nav::new(&session, "settings"),
            StatusCode::CONFLICT,
            "GitHub is not connected",
            &e.to_string(),
        ),
    }
}

pub(crate) struct DeliveryRow {
    received_at: String,
    received_at_iso: String,
    event: String,
    repository: String,
    outcome: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "account/admin.html")]
struct AdminPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    csrf: String,
    app_slug: Option<String>,
    by_environment: bool,
    deliveries: Vec<DeliveryRow>,
}

/// Only for the administrator; anyone else finds nothing here.
pub(crate) async fn admin(State(state): State<AppState>, session: Session) -> Response {
    let nav = Nav::new(&session, "admin");
    if !session.user.is_admin {
        return super::not_found_page(nav);
    }
    let app_slug = match state.github.app() {
        Some(app) => Some(app.slug().await.unwrap_or_else(|_| format!("App {}", app.app_id()))),
        None => None,
    };
    let deliveries = match state.db.deliveries(100).await {
        Ok(d) => d,
        Err(e) => return api_error_page(nav, e.into()),
    };
    let rows = deliveries
        .into_iter()
        .map(|d| DeliveryRow {
            received_at: when(d.received_at),
            received_at_iso: d.received_at.to_rfc3339(),
            event: match d.action {
                Some(a) => format!("{} ({a})", d.event),
                None => d.event,
            },
            repository: d.repository.unwrap_or_default(),
            outcome: d.outcome,
            detail: d.detail,
        })
        .collect();
    render(
        StatusCode::OK,
        AdminPage {
            nav,
            flash: None,
            csrf: session.csrf.clone(),
            app_slug,
            by_environment: state.github.configured_by_environment(),
            deliveries: rows,
        },
    )
}

/// Starts the manifest flow in the admin's browser.
pub(crate) async fn connect_github(
    State(state): State<AppState>,
    PostedForm { session, form }: PostedForm,
) -> Response {
    if !session.user.is_admin {
        return super::not_found_page(Nav::new(&session, "admin"));
    }
    let org = form.text("organization");
    if let Some(o) = &org
        && (o.len() > 39 || !o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return error_page(
            Nav::new(&session, "admin"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not a GitHub organization",
            "Check the organization's name.",
        );
    }
    see_other(&state.github.connect_url(&session.user.id, org.as_deref()))
}
