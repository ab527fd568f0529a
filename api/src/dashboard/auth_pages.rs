//! Signing up, logging in (with a password or with GitHub) and out.

use super::session;
use super::{Flash, Form, Nav, error_page, render, see_other};
use crate::AppState;
use crate::auth;
use crate::extract::ClientAddr;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use webhook::connection::Purpose;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    csrf: String,
    next: String,
    email: String,
    github_enabled: bool,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    csrf: String,
    name: String,
    email: String,
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// Adds the pre-session cookie to a response, when one was just made.
fn with_cookie(mut resp: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// Signed in: a new session, its cookie, and on to `next`.
async fn signed_in(state: &AppState, user: &platform::UserId, next: &str) -> Response {
    match auth::start_session(state, user).await {
        Ok(token) => {
            let mut resp = see_other(next);
            resp.headers_mut()
                .append(header::SET_COOKIE, session::session_cookie(state, &token));
            resp
        }
        Err(e) => super::api_error_page(None, e),
    }
}

pub(crate) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    if session::current(&state, &headers).await.is_some() {
        return Redirect::to("/").into_response();
    }
    let (pre, cookie) = session::presession(&state, &headers);
    let page = LoginPage {
        nav: None,
        flash: None,
        csrf: state.sessions.csrf_token(&pre),
        next: session::safe_next(q.next.as_deref()),
        email: String::new(),
        github_enabled: state.github.app().is_some(),
    };
    with_cookie(render(StatusCode::OK, page), cookie)
}

/// Whether a form sent before log-in passes the anti-forgery checks.
fn presession_form_ok(state: &AppState, headers: &HeaderMap, form: &Form) -> bool {
    let Some(pre) = session::presession_cookie(state, headers) else {
        return false;
    };
    session::same_origin(headers) && state.sessions.csrf_ok(pre, form.get("csrf").unwrap_or_default())
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    form: Form,
) -> Response {
    if !presession_form_ok(&state, &headers, &form) {
        return super::forbidden_form();
    }
    let email = form.get("email").unwrap_or_default().to_owned();
    let next = session::safe_next(form.get("next"));
    let password = form.get("password").unwrap_or_default().to_owned();
    match auth::check_login(&state, addr, &email, password).await {
        Ok(user) => signed_in(&state, &user.id, &next).await,
        Err(failure) => {
            let (e, retry_after) = failure.into_parts();
            let (pre, cookie) = session::presession(&state, &headers);
            let page = LoginPage {
                nav: None,
                flash: Flash::error(e.message()),
                csrf: state.sessions.csrf_token(&pre),
                next,
                email,
                github_enabled: state.github.app().is_some(),
            };
            auth::with_retry_after(with_cookie(render(e.status(), page), cookie), retry_after)
        }
    }
}

pub(crate) async fn signup_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (pre, cookie) = session::presession(&state, &headers);
    let page = SignupPage {
        nav: None,
        flash: None,
        csrf: state.sessions.csrf_token(&pre),
        name: String::new(),
        email: String::new(),
    };
    with_cookie(render(StatusCode::OK, page), cookie)
}

pub(crate) async fn signup(State(state): State<AppState>, headers: HeaderMap, form: Form) -> Response {
    if !presession_form_ok(&state, &headers, &form) {
        return super::forbidden_form();
    }
    let name = form.get("name").unwrap_or_default().to_owned();
    let email = form.get("email").unwrap_or_default().to_owned();
    let password = form.get("password").unwrap_or_default().to_owned();
    match auth::create_account(&state, &name, &email, password).await {
        Ok(user) => signed_in(&state, &user.id, "/").await,
        Err(e) => {
            let (pre, cookie) = session::presession(&state, &headers);
            let page = SignupPage {
                nav: None,
                flash: Flash::error(e.message()),
                csrf: state.sessions.csrf_token(&pre),
                name,
                email,
            };
            with_cookie(render(e.status(), page), cookie)
        }
    }
}

/// Ends the session (its token stops working everywhere, not only in this browser) and clears
/// the cookie.
pub(crate) async fn logout(State(state): State<AppState>, posted: super::PostedForm) -> Response {
    if let Err(e) = auth::end_session(&state, posted.session.token()).await {
        return super::api_error_page(Nav::new(&posted.session, ""), e);
    }
    let mut resp = see_other("/login");
    resp.headers_mut()
        .append(header::SET_COOKIE, session::clear_session_cookie(&state));
    resp
}

/// "Sign in with GitHub": off to GitHub's authorization, with a nonce the browser keeps.
pub(crate) async fn login_with_github(State(state): State<AppState>) -> Response {
    let (nonce, cookie) = session::oauth_nonce(&state);
    match state.github.login_url(&nonce) {
        Ok(url) => with_cookie(Redirect::to(&url).into_response(), Some(cookie)),
        Err(_) => error_page(
            None,
            StatusCode::CONFLICT,
            "GitHub is not connected",
            "Log in with your email and password.",
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    title: String,
    message: String,
    items: Vec<String>,
    next: String,
    next_label: String,
}

/// Where GitHub sends people back after authorizing the App: either to link their GitHub
/// account and installations (a signed state names the user), or to sign in (a signed state
/// names the nonce their browser holds).
pub(crate) async fn github_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let expired = || {
        error_page(
            None,
            StatusCode::FORBIDDEN,
            "Link expired",
            "Start again from CloudRunr.",
        )
    };
    let Some(signed) = q.state.as_deref() else {
        return expired();
    };
    let Some(app) = state.github.app() else {
        return error_page(
            None,
            StatusCode::CONFLICT,
            "GitHub is not connected",
            "Ask an administrator.",
        );
    };
    let Some(code) = q.code.as_deref() else {
        return error_page(
            None,
            StatusCode::BAD_REQUEST,
            "Not authorized",
            "GitHub did not authorize CloudRunr.",
        );
    };
    let github_failed =
        |e: webhook::app::GithubError| error_page(None, StatusCode::BAD_GATEWAY, "GitHub refused", &e.to_string());

    if let Some((user, _)) = state.github.verify_state(Purpose::Install, signed) {
        let token = match app.exchange_code(code, &state.github.callback_url()).await {
            Ok(t) => t,
            Err(e) => return github_failed(e),
        };
        let (github_id, login) = match app.github_user(&token).await {
            Ok(u) => u,
            Err(e) => return github_failed(e),
        };
        let mut items = Vec::new();
        match state.db.link_github_account(&user, github_id, &login).await {
            Ok(()) => items.push(format!("You can now sign in with GitHub as {login}.")),
            Err(_) => items.push(format!(
                "GitHub account {login} is already linked to another CloudRunr account."
            )),
        }
        match webhook::pages::link_installations(&state.github, &app, &user, &token, &login).await {
            Ok(linked) => items.extend(linked.into_iter().map(|l| format!("Installation: {l}"))),
            Err(e) => return github_failed(e),
        }
        let nav = session::current(&state, &headers)
            .await
            .and_then(|s| Nav::new(&s, "settings"));
        return render(
            StatusCode::OK,
            NoticePage {
                nav,
                flash: None,
                title: "GitHub linked".into(),
                message: format!("Linked to your CloudRunr account as {login}:"),
                items,
                next: "/projects/new".into(),
                next_label: "Create a project".into(),
            },
        );
    }
    if let Some(nonce) = state.github.verify_login_state(signed) {
        if session::oauth_cookie(&state, &headers) != Some(nonce.as_str()) {
            return expired();
        }
        let token = match app.exchange_code(code, &state.github.callback_url()).await {
            Ok(t) => t,
            Err(e) => return github_failed(e),
        };
        let (github_id, login) = match app.github_user(&token).await {
            Ok(u) => u,
            Err(e) => return github_failed(e),
        };
        return match state.db.user_by_github_id(github_id).await {
            Ok(Some(user)) => signed_in(&state, &user.id, "/").await,
            Ok(None) => render(
                StatusCode::OK,
                NoticePage {
                    nav: None,
                    flash: None,
                    title: "No account for this GitHub user".into(),
                    message: format!(
                        "No CloudRunr account is linked to GitHub user {login}. Log in with your email and password, \
                         then link GitHub from Settings."
                    ),
                    items: Vec::new(),
                    next: "/login".into(),
                    next_label: "Log in".into(),
                },
            ),
            Err(e) => super::api_error_page(None, e.into()),
        };
    }
    expired()
}
