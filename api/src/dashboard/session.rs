//! Browser sessions: a cookie holding the session token, and the anti-forgery checks every
//! state-changing form goes through.
//!
//! The cookie holds a session token whose session is recorded server-side (see `crate::auth`):
//! log-out and password changes end it, whatever copies of the cookie exist.
//!
//! The cookie is `HttpOnly`, `SameSite=Lax`, host-only (no `Domain`, so deployed sites on
//! `*.<domain>` never receive it), and `Secure` with the `__Host-` prefix when the dashboard is
//! served over https. Every form carries a token that is a MAC of the session (or, before
//! log-in, of a random pre-session cookie), and a form posted from another site is refused.

use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use platform::model::User;

const SESSION: &str = "cloudrunr_session";
const PRESESSION: &str = "cloudrunr_presession";
const OAUTH: &str = "cloudrunr_oauth";
/// As long as the session token itself is valid.
const SESSION_MAX_AGE: i64 = crate::auth::SESSION_TTL_SECS;

/// Whether the dashboard is served over https (then cookies are `Secure` and `__Host-`).
fn secure(state: &AppState) -> bool {
    state.github.public_url().starts_with("https://")
}

fn name(state: &AppState, base: &str) -> String {
    if secure(state) {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(state: &AppState, base: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(state) { "; Secure" } else { "" };
    let line = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        name(state, base)
    );
    HeaderValue::from_str(&line).expect("cookie values are token characters")
}

pub(crate) fn session_cookie(state: &AppState, token: &str) -> HeaderValue {
    set_cookie(state, SESSION, token, SESSION_MAX_AGE)
}

pub(crate) fn clear_session_cookie(state: &AppState) -> HeaderValue {
    set_cookie(state, SESSION, "", 0)
}

/// A random value for a browser that has none yet, as cookie `base`.
fn random_cookie(state: &AppState, base: &str, max_age: i64) -> (String, HeaderValue) {
    let mut bytes = [0u8; 16];
    platform::ids::random_bytes(&mut bytes);
    let value = hex::encode(bytes);
    let header = set_cookie(state, base, &value, max_age);
    (value, header)
}

/// The pre-session value forms before log-in are bound to; a new one (with its cookie) when the
/// browser has none.
pub(crate) fn presession(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, &name(state, PRESESSION)).filter(|v| v.len() == 32) {
        Some(v) => (v.to_owned(), None),
        None => {
            let (v, h) = random_cookie(state, PRESESSION, 3600);
            (v, Some(h))
        }
    }
}

/// The browser's pre-session value, if it has one.
pub(crate) fn presession_cookie<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    cookie(headers, &name(state, PRESESSION))
}

/// A nonce for "Sign in with GitHub", kept in the browser for the round trip.
pub(crate) fn oauth_nonce(state: &AppState) -> (String, HeaderValue) {
    random_cookie(state, OAUTH, 600)
}

pub(crate) fn oauth_cookie<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    cookie(headers, &name(state, OAUTH))
}

/// A signed-in browser.
pub(crate) struct Session {
    pub user: User,
    /// The anti-forgery token for this session's forms.
    pub csrf: String,
    token: String,
}

impl Session {
    /// Whether a form's token belongs to this session.
    pub(crate) fn csrf_ok(&self, state: &AppState, given: &str) -> bool {
        state.sessions.csrf_ok(&self.token, given)
    }

    /// The session token, to end this session.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

/// The session of the request, if it has a live one. Only session tokens count here:
/// personal API tokens are for `Authorization` headers, never cookies.
pub(crate) async fn current(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let token = cookie(headers, &name(state, SESSION))?;
    let user = crate::auth::session_user(state, token).await.ok()??;
    Some(Session {
        csrf: state.sessions.csrf_token(token),
        token: token.to_owned(),
        user,
    })
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    /// Without a session, the browser is sent to log in and come back.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match current(state, &parts.headers).await {
            Some(s) => Ok(s),
            None => {
                let back = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let next = if parts.method == axum::http::Method::GET {
                    back
                } else {
                    "/"
                };
                Err(Redirect::to(&format!("/login?next={}", webhook::connection::encode_query(next))).into_response())
            }
        }
    }
}

/// Whether a form post comes from this site: its `Origin` (when sent) names the host the
/// request was made to, and the browser does not call it cross-site.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// Where to go after log-in: a path on this site only.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.contains("://") => {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; cloudrunr_session=tok; b=2"),
        );
        assert_eq!(cookie(&h, "cloudrunr_session"), Some("tok"));
        assert_eq!(cookie(&h, "session"), None);
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(
            same_origin(&h),
            "no Origin: a same-origin navigation or a non-browser client"
        );
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.localhost:8080"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/projects/x")), "/projects/x");
        for bad in ["https://evil.example", "//evil.example", "/\\evil", "evil"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
    }
}
