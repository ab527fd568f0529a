//! The web dashboard: server-rendered pages (askama templates in `templates/`) for signing in,
//! projects, deployments with their live log, settings and administration.
//!
//! Pages work without JavaScript; `templates/static/app.js` only adds live updates. Every value
//! from users, repositories or build logs goes through askama's HTML escaping. Every form that
//! changes something carries an anti-forgery token and is refused from another site.

mod account_pages;
mod auth_pages;
mod deployment_pages;
mod domain_pages;
mod project_pages;
pub(crate) mod session;
mod text;

use crate::AppState;
use crate::error::ApiError;
use askama::Template;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use session::Session;

/// The dashboard's routes (at the root of the platform's main host).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(project_pages::list))
        .route("/login", get(auth_pages::login_page).post(auth_pages::login))
        .route("/signup", get(auth_pages::signup_page).post(auth_pages::signup))
        .route("/logout", post(auth_pages::logout))
        .route("/login/github", get(auth_pages::login_with_github))
        .route("/github/callback", get(auth_pages::github_callback))
        .route(
            "/projects/new",
            get(project_pages::new_page).post(project_pages::detect),
        )
        .route("/projects", post(project_pages::create))
        .route("/projects/{slug}", get(project_pages::show))
        .route("/projects/{slug}/deploy", post(project_pages::deploy))
        .route("/projects/{slug}/settings", post(project_pages::settings))
        .route("/projects/{slug}/delete", post(project_pages::delete))
        .route("/projects/{slug}/domains", post(domain_pages::add))
        .route("/projects/{slug}/domains/{name}/verify", post(domain_pages::verify))
        .route("/projects/{slug}/domains/{name}/delete", post(domain_pages::remove))
        .route("/deployments/{id}", get(deployment_pages::show))
        .route("/deployments/{id}/cancel", post(deployment_pages::cancel))
        .route("/deployments/{id}/promote", post(deployment_pages::promote))
        .route("/deployments/{id}/log.txt", get(deployment_pages::log_text))
        .route("/settings", get(account_pages::settings))
        .route("/settings/tokens", post(account_pages::create_token))
        .route("/settings/password", post(account_pages::change_password))
        .route("/settings/tokens/{id}/delete", post(account_pages::delete_token))
        .route("/settings/github/link", get(account_pages::link_github))
        .route("/settings/github/install", get(account_pages::install_github))
        .route("/admin", get(account_pages::admin))
        .route("/admin/github/connect", post(account_pages::connect_github))
        .route("/static/{file}", get(static_file))
        .with_state(state)
}

/// The header's navigation, for a signed-in user.
pub(crate) struct Nav {
    pub section: &'static str,
    pub is_admin: bool,
    pub csrf: String,
    pub user_name: String,
}

impl Nav {
    pub(crate) fn new(session: &Session, section: &'static str) -> Option<Nav> {
        Some(Nav {
            section,
            is_admin: session.user.is_admin,
            csrf: session.csrf.clone(),
            user_name: session.user.name.clone(),
        })
    }
}

/// A message at the top of a page.
pub(crate) struct Flash {
    pub kind: &'static str,
    pub text: String,
}

impl Flash {
    pub(crate) fn error(text: impl Into<String>) -> Option<Flash> {
        Some(Flash {
            kind: "error",
            text: text.into(),
        })
    }

    /// The message a redirect asked for with `?done=…` (a fixed set: nothing from the URL is
    /// shown as is).
    pub(crate) fn done(code: Option<&str>) -> Option<Flash> {
        let code = code?;
        if let Some((kind, text)) = domain_pages::done_text(code) {
            return Some(Flash {
                kind,
                text: text.into(),
            });
        }
        let text = match code {
            "saved" => "Settings saved.",
            "promoted" => "The site now serves this deployment.",
            "canceled" => "The build is being canceled.",
            "deleted" => "The project was deleted.",
            "token-deleted" => "The token was deleted.",
            "password-changed" => "Password changed. Every other session was signed out.",
            _ => return None,
        };
        Some(Flash {
            kind: "success",
            text: text.into(),
        })
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    title: String,
    message: String,
}

/// Headers every dashboard page carries: a strict content security policy (scripts and styles
/// from this origin only), no framing, no caching of pages with private data.
fn harden(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A rendered page.
pub(crate) fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let mut resp = (status, axum::response::Html(html)).into_response();
            harden(&mut resp);
            resp
        }
        Err(e) => {
            tracing::error!("cannot render a page: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// A page saying what went wrong and what to do.
pub(crate) fn error_page(nav: Option<Nav>, status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        ErrorPage {
            nav,
            flash: None,
            title: title.into(),
            message: message.into(),
        },
    )
}

/// An API error as a page: 404s look like any missing page; the rest say what failed.
pub(crate) fn api_error_page(nav: Option<Nav>, e: ApiError) -> Response {
    match e.status() {
        StatusCode::NOT_FOUND => not_found_page(nav),
        status => error_page(nav, status, "That did not work", e.message()),
    }
}

/// Any other path of the dashboard's host.
pub(crate) async fn not_found() -> Response {
    not_found_page(None)
}

pub(crate) fn not_found_page(nav: Option<Nav>) -> Response {
    error_page(
        nav,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing here, or it is not yours.",
    )
}

/// The answer to a form post that failed the anti-forgery checks.
pub(crate) fn forbidden_form() -> Response {
    error_page(
        None,
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form was not sent from this CloudRunr page (or the page is too old). Reload the page and try again.",
    )
}

/// See other: where a successful form post goes next.
pub(crate) fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A form posted by a signed-in user, past the anti-forgery checks: sent from this site, with
/// this session's token. Handlers of such forms take this instead of `Session` and `Form`, so
/// none can forget the check. Without a session: off to log in; a forged post: 403.
pub(crate) struct PostedForm {
    pub(crate) session: Session,
    pub(crate) form: Form,
}

impl axum::extract::FromRequest<AppState> for PostedForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        use axum::extract::FromRequestParts;
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let same_origin = session::same_origin(&parts.headers);
        let form = Form::from_request(axum::extract::Request::from_parts(parts, body), state).await?;
        if same_origin && session.csrf_ok(state, form.get("csrf").unwrap_or_default()) {
            Ok(Self { session, form })
        } else {
            Err(forbidden_form())
        }
    }
}

/// A form body: every field, repeated names kept in order.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The field trimmed, `None` when absent or empty.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Fields named `<prefix><rest>`, as (rest, value).
    pub(crate) fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.0
            .iter()
            .filter_map(move |(k, v)| k.strip_prefix(prefix).map(|rest| (rest, v.as_str())))
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<Vec<(String, String)>>::from_request(req, state).await {
            Ok(axum::Form(pairs)) => Ok(Form(pairs)),
            Err(e) => Err(error_page(None, StatusCode::BAD_REQUEST, "Bad form", &e.body_text())),
        }
    }
}

/// The stylesheet and scripts, compiled into the binary.
async fn static_file(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static str, &'static str) = match file.as_str() {
        "app.css" => (
            include_str!("../../../templates/static/app.css"),
            "text/css; charset=utf-8",
        ),
        "app.js" => (
            include_str!("../../../templates/static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "ansi.js" => (
            include_str!("../../../templates/static/ansi.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return not_found_page(None),
    };
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp.headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}
