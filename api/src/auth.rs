//! Accounts and credentials: sign-up, log-in, log-out, password changes, session tokens and
//! personal API tokens (random, shown once, stored as SHA-256).
//!
//! A session token is a JWT (HS256) naming the user and a random session id; the session is live
//! only while the database holds that id's row (stored as its SHA-256). Log-out deletes the row and
//! a password change deletes all of the user's rows, so a copied token dies with its session.
//! Server-side ids rather than a per-user token version, so that logging out of one browser
//! does not sign the user out everywhere; the cost is one indexed lookup per request, which the
//! user lookup it replaces cost already.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientAddr, CurrentUser, Json};
use crate::ratelimit::{Pair, Throttled};
use crate::views::{TokenView, UserView};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use db::TokenRecord;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use platform::model::User;
use platform::settings::Secret;
use platform::{TokenId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::OnceLock;

const ISSUER: &str = "cloudrunr";
/// Session tokens name this audience; tokens signed with the same key for other purposes (the
/// `state` of GitHub redirects) name theirs, so neither passes for the other.
const AUDIENCE: &str = "cloudrunr-session";
/// How long a session token from sign-up or log-in is valid.
pub const SESSION_TTL_SECS: i64 = 7 * 24 * 3600;
/// Personal API tokens start with this, which tells them apart from session tokens.
const API_TOKEN_PREFIX: &str = "crr_";

/// The keys session tokens are signed and checked with.
#[derive(Clone)]
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Derives the CSRF token of a browser session.
    csrf_key: Secret,
}

impl SessionKeys {
    pub fn new(secret: &Secret) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            csrf_key: Secret::new(format!("csrf:{}", secret.expose())),
        }
    }

    /// The anti-forgery token for forms of the browser session (or pre-session) `binding`: a MAC
    /// of it, so a page from another site cannot know it.
    pub fn csrf_token(&self, binding: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<Sha256>::new_from_slice(self.csrf_key.expose().as_bytes()).expect("HMAC takes any key");
        mac.update(binding.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Whether `token` is the anti-forgery token of `binding` (constant time).
    pub fn csrf_ok(&self, binding: &str, token: &str) -> bool {
        use hmac::{Hmac, Mac};
        let Ok(given) = hex::decode(token) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(self.csrf_key.expose().as_bytes()).expect("HMAC takes any key");
        mac.update(binding.as_bytes());
        given.len() == 16 && mac.verify_truncated_left(&given).is_ok()
    }

    /// A token for session `sid` of `user` (the session must also be recorded: see
    /// [`start_session`]).
    pub fn issue(&self, user: &UserId, sid: &str) -> ApiResult<String> {
        let now = chrono_now();
        let claims = Claims {
            sub: user.to_string(),
            sid: sid.to_owned(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + SESSION_TTL_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// The user and session id a validly signed, unexpired session token from this issuer names
    /// (whether the session is still live is the database's to say).
    pub fn verify(&self, token: &str) -> Option<(UserId, String)> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        v.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).ok()?;
        let sid = data.claims.sid;
        if sid.is_empty() {
            return None;
        }
        Some((UserId::parse(&data.claims.sub).ok()?, sid))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// The session's id; tokens from before sessions were recorded have none and are refused.
    #[serde(default)]
    sid: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

fn chrono_now() -> i64 {
    platform::Timestamp::now().millis() / 1000
}

/// Resolves a bearer token (session or personal API token) to its user.
pub async fn authenticate(state: &AppState, token: &str) -> ApiResult<Option<User>> {
    if token.starts_with(API_TOKEN_PREFIX) {
        return Ok(state.db.user_by_token_hash(&sha256_hex(token)).await?);
    }
    session_user(state, token).await
}

/// The user of a session token whose session is live (not logged out, not ended by a password
/// change, not expired). Personal API tokens are never sessions.
pub async fn session_user(state: &AppState, token: &str) -> ApiResult<Option<User>> {
    match state.sessions.verify(token) {
        Some((user, sid)) => Ok(state.db.session_user(&sha256_hex(&sid), &user).await?),
        None => Ok(None),
    }
}

/// Records a new session of `user` and returns its token.
pub async fn start_session(state: &AppState, user: &UserId) -> ApiResult<String> {
    let mut bytes = [0u8; 16];
    platform::ids::random_bytes(&mut bytes);
    let sid = hex::encode(bytes);
    let expires_at = (chrono_now() + SESSION_TTL_SECS) * 1000;
    state.db.create_session(&sha256_hex(&sid), user, expires_at).await?;
    state.sessions.issue(user, &sid)
}

/// Ends the session of a session token (log-out); `false` if it was not a live session.
pub async fn end_session(state: &AppState, token: &str) -> ApiResult<bool> {
    match state.sessions.verify(token) {
        Some((_, sid)) => Ok(state.db.delete_session(&sha256_hex(&sid)).await?),
        None => Ok(false),
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Passwords

const MIN_PASSWORD: usize = 8;
/// Hashing is deliberately slow; an unbounded input would make it a denial-of-service lever.
const MAX_PASSWORD: usize = 1024;

async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A real hash to check against when the email is unknown, so both failures take as long.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"decoy password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

// ---------------------------------------------------------------------------------------------
// Handlers

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    name: String,
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

pub fn normalize_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(email)
    } else {
        Err(ApiError::invalid("invalid_email", "enter a valid email address"))
    }
}

pub fn clean_name(raw: &str, what: &str) -> ApiResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_name",
            format!("{what} must be 1 to 100 printable characters"),
        ));
    }
    Ok(name.to_owned())
}

pub async fn signup(State(state): State<AppState>, Json(req): Json<SignupRequest>) -> ApiResult<impl IntoResponse> {
    let user = create_account(&state, &req.name, &req.email, req.password).await?;
    let token = start_session(&state, &user.id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "user": UserView::from(&user), "token": token })),
    ))
}

/// Creates an account (the API and the dashboard both come here).
pub async fn create_account(state: &AppState, name: &str, email: &str, password: String) -> ApiResult<User> {
    let name = clean_name(name, "the name")?;
    let email = normalize_email(email)?;
    check_password_length(&password)?;
    let hash = hash_password(password).await?;
    Ok(state.db.create_user(&name, &email, &hash).await?)
}

fn check_password_length(password: &str) -> ApiResult<()> {
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(ApiError::invalid(
            "weak_password",
            format!("the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long"),
        ));
    }
    Ok(())
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Json(req): Json<LoginRequest>,
) -> Result<Response, LoginFailure> {
    let user = check_login(&state, addr, &req.email, req.password).await?;
    let token = start_session(&state, &user.id).await?;
    Ok(axum::Json(json!({ "user": UserView::from(&user), "token": token })).into_response())
}

/// Why a password was not accepted: wrong (or another error), or the (account, address) pair
/// must wait first.
#[derive(Debug)]
pub enum LoginFailure {
    Refused(ApiError),
    Throttled(Throttled),
}

impl From<ApiError> for LoginFailure {
    fn from(e: ApiError) -> Self {
        LoginFailure::Refused(e)
    }
}

impl LoginFailure {
    /// The error to show, and for a throttled attempt the seconds to send as `Retry-After`.
    pub fn into_parts(self) -> (ApiError, Option<u64>) {
        match self {
            LoginFailure::Refused(e) => (e, None),
            LoginFailure::Throttled(t) => (
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", t.message()),
                Some(t.retry_after_secs()),
            ),
        }
    }
}

/// Adds `Retry-After` to a response when there is a wait to announce.
pub fn with_retry_after(mut resp: Response, retry_after: Option<u64>) -> Response {
    if let Some(secs) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl IntoResponse for LoginFailure {
    fn into_response(self) -> Response {
        let (error, retry_after) = self.into_parts();
        with_retry_after(error.into_response(), retry_after)
    }
}

/// Checks an email and password (the API's and the dashboard's log-in, and password changes
/// come here), counted per (account, client address) pair: past the free attempts, the pair
/// waits (429).
pub async fn check_login(
    state: &AppState,
    addr: Option<IpAddr>,
    email: &str,
    password: String,
) -> Result<User, LoginFailure> {
    let normalized = normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
    let pair = Pair::new(&normalized, addr);
    state
        .login_limiter
        .begin(&state.db, &pair)
        .await
        .map_err(ApiError::from)?
        .map_err(LoginFailure::Throttled)?;
    let found = state.db.user_by_email(&normalized).await.map_err(ApiError::from)?;
    let hash = found
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |(_, h)| h.clone());
    let password_ok = verify_password(password, hash).await;
    match found {
        Some((user, _)) if password_ok => {
            state
                .login_limiter
                .succeeded(&state.db, &pair)
                .await
                .map_err(ApiError::from)?;
            Ok(user)
        }
        _ => Err(LoginFailure::Refused(ApiError::unauthorized(
            "the email or password is incorrect",
        ))),
    }
}

/// Changes the user's password after checking the current one (throttled like a log-in), ends
/// every session of theirs, and opens a new one for the caller, whose token is returned.
pub async fn change_password(
    state: &AppState,
    addr: Option<IpAddr>,
    user: &User,
    current: String,
    new: String,
) -> Result<String, LoginFailure> {
    check_password_length(&new)?;
    match check_login(state, addr, &user.email, current).await {
        Ok(_) => {}
        Err(LoginFailure::Refused(e)) if e.status() == StatusCode::UNAUTHORIZED => {
            return Err(LoginFailure::Refused(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_password",
                "the current password is incorrect",
            )));
        }
        Err(other) => return Err(other),
    }
    let hash = hash_password(new).await?;
    state
        .db
        .change_password(&user.id, &hash)
        .await
        .map_err(ApiError::from)?;
    Ok(start_session(state, &user.id).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// `POST /api/auth/password`: every session of the user (this one included) ends; the answer
/// carries a new session token. Personal API tokens stay valid.
pub async fn password(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    CurrentUser(user): CurrentUser,
    Json(req): Json<ChangePasswordRequest>,
) -> Result<Response, LoginFailure> {
    let token = change_password(&state, addr, &user, req.current_password, req.new_password).await?;
    Ok(axum::Json(json!({ "user": UserView::from(&user), "token": token })).into_response())
}

/// `POST /api/auth/logout`: ends the session whose token authorizes the request. A personal API
/// token is not a session; it is revoked with `DELETE /api/tokens/{id}`.
pub async fn logout(State(state): State<AppState>, headers: axum::http::HeaderMap) -> ApiResult<StatusCode> {
    let token = crate::extract::bearer(&headers)?
        .ok_or_else(|| ApiError::unauthorized("sign in first: send Authorization: Bearer <token>"))?;
    if token.starts_with(API_TOKEN_PREFIX) {
        return Err(ApiError::bad_request(
            "not_a_session",
            "an API token is not a session; revoke it with DELETE /api/tokens/{id}",
        ));
    }
    if end_session(&state, token).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::unauthorized("the token is invalid or expired; sign in again"))
    }
}

pub async fn me(CurrentUser(user): CurrentUser) -> impl IntoResponse {
    axum::Json(json!({ "user": UserView::from(&user) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    name: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(req): Json<CreateTokenRequest>,
) -> ApiResult<impl IntoResponse> {
    let (record, token) = issue_api_token(&state, &user, &req.name).await?;
    let mut body = serde_json::to_value(TokenView::from(&record)).map_err(ApiError::internal)?;
    body["token"] = token.into();
    Ok((StatusCode::CREATED, axum::Json(body)))
}

/// Creates a personal API token; the secret is returned here only, and stored hashed.
pub async fn issue_api_token(state: &AppState, user: &User, name: &str) -> ApiResult<(TokenRecord, String)> {
    let name = clean_name(name, "the token name")?;
    let mut secret = [0u8; 32];
    platform::ids::random_bytes(&mut secret);
    let token = format!("{API_TOKEN_PREFIX}{}", hex::encode(secret));
    let record = state.db.create_token(&user.id, &name, &sha256_hex(&token)).await?;
    Ok((record, token))
}

pub async fn list_tokens(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<impl IntoResponse> {
    let records = state.db.list_tokens(&user.id).await?;
    let tokens: Vec<TokenView> = records.iter().map(TokenView::from).collect();
    Ok(axum::Json(json!({ "tokens": tokens })))
}

pub async fn delete_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = TokenId::parse(&id).map_err(|_| ApiError::not_found("token"))?;
    if state.db.delete_token(&user.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_check_signature_issuer_and_expiry() {
        let keys = SessionKeys::new(&Secret::new("k".repeat(32)));
        let user = UserId::generate();
        let token = keys.issue(&user, "s1").unwrap();
        assert_eq!(keys.verify(&token), Some((user.clone(), "s1".to_owned())));
        let other = SessionKeys::new(&Secret::new("x".repeat(32)));
        assert_eq!(other.verify(&token), None, "another secret");
        let now = chrono_now();
        let forge = |iss: &str, exp: i64| {
            let c = Claims {
                sub: user.to_string(),
                sid: "s1".into(),
                iss: iss.into(),
                aud: AUDIENCE.into(),
                iat: now,
                exp,
            };
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &keys.encoding).unwrap()
        };
        assert_eq!(keys.verify(&forge("someone-else", now + 60)), None, "wrong issuer");
        assert_eq!(keys.verify(&forge(ISSUER, now - 3600)), None, "expired");
        assert_eq!(
            keys.verify(&forge(ISSUER, now + 60)),
            Some((user.clone(), "s1".to_owned()))
        );
        let other_audience = Claims {
            sub: user.to_string(),
            sid: "s1".into(),
            iss: ISSUER.into(),
            aud: "elsewhere".into(),
            iat: now,
            exp: now + 60,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &other_audience, &keys.encoding).unwrap();
        assert_eq!(keys.verify(&t), None, "a token for another audience");
        assert_eq!(keys.verify("not.a.jwt"), None);
        let sessionless = Claims {
            sub: user.to_string(),
            sid: String::new(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + 60,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &sessionless, &keys.encoding).unwrap();
        assert_eq!(
            keys.verify(&t),
            None,
            "a token without a session id (from before sessions were kept)"
        );
        // alg=none must never pass
        let none = format!("eyJhbGciOiJub25lIn0.{}.", token.split('.').nth(1).unwrap());
        assert_eq!(keys.verify(&none), None);
    }

    #[test]
    fn emails() {
        assert_eq!(normalize_email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in ["", "ann", "@x", "a@", "a b@x.com", "a@b@c"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
