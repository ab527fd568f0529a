//! Accounts and credentials: sign-up, log-in, session tokens (JWT, HS256) and personal API
//! tokens (random, shown once, stored as SHA-256).

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientAddr, CurrentUser, Json};
use crate::ratelimit::Key;
use crate::views::{TokenView, UserView};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
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

    pub fn issue(&self, user: &UserId) -> ApiResult<String> {
        let now = chrono_now();
        let claims = Claims {
            sub: user.to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + SESSION_TTL_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// The user a valid, unexpired session token from this issuer names.
    pub fn verify(&self, token: &str) -> Option<UserId> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        v.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).ok()?;
        UserId::parse(&data.claims.sub).ok()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
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
    match state.sessions.verify(token) {
        Some(id) => Ok(state.db.user(&id).await?),
        None => Ok(None),
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
    let token = state.sessions.issue(&user.id)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "user": UserView::from(&user), "token": token })),
    ))
}

/// Creates an account (the API and the dashboard both come here).
pub async fn create_account(state: &AppState, name: &str, email: &str, password: String) -> ApiResult<User> {
    let name = clean_name(name, "the name")?;
    let email = normalize_email(email)?;
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(ApiError::invalid(
            "weak_password",
            format!("the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long"),
        ));
    }
    let hash = hash_password(password).await?;
    Ok(state.db.create_user(&name, &email, &hash).await?)
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Json(req): Json<LoginRequest>,
) -> ApiResult<impl IntoResponse> {
    let user = check_login(&state, addr, &req.email, req.password).await?;
    let token = state.sessions.issue(&user.id)?;
    Ok(axum::Json(json!({ "user": UserView::from(&user), "token": token })))
}

/// Checks an email and password (the API and the dashboard both come here), counting failures
/// per account and per address: past the limit, log-in is refused for a while (429).
pub async fn check_login(state: &AppState, addr: Option<IpAddr>, email: &str, password: String) -> ApiResult<User> {
    let wrong = || ApiError::unauthorized("the email or password is incorrect");
    let normalized = normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
    let account = Key::Account(normalized.clone());
    let mut keys = vec![account.clone()];
    keys.extend(addr.map(|a| Key::Address(a.to_string())));
    if let Err(wait) = state.login_limiter.check(&keys) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many failed log-ins; try again in {minutes} minutes"),
        ));
    }
    let found = state.db.user_by_email(&normalized).await?;
    let hash = found
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |(_, h)| h.clone());
    let password_ok = verify_password(password, hash).await;
    match found {
        Some((user, _)) if password_ok => {
            state.login_limiter.succeeded(&account);
            Ok(user)
        }
        _ => {
            state.login_limiter.failed(&keys);
            Err(wrong())
        }
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
        let token = keys.issue(&user).unwrap();
        assert_eq!(keys.verify(&token), Some(user.clone()));
        let other = SessionKeys::new(&Secret::new("x".repeat(32)));
        assert_eq!(other.verify(&token), None, "another secret");
        let now = chrono_now();
        let forge = |iss: &str, exp: i64| {
            let c = Claims {
                sub: user.to_string(),
                iss: iss.into(),
                aud: AUDIENCE.into(),
                iat: now,
                exp,
            };
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &keys.encoding).unwrap()
        };
        assert_eq!(keys.verify(&forge("someone-else", now + 60)), None, "wrong issuer");
        assert_eq!(keys.verify(&forge(ISSUER, now - 3600)), None, "expired");
        assert_eq!(keys.verify(&forge(ISSUER, now + 60)), Some(user.clone()));
        let other_audience = Claims {
            sub: user.to_string(),
            iss: ISSUER.into(),
            aud: "elsewhere".into(),
            iat: now,
            exp: now + 60,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &other_audience, &keys.encoding).unwrap();
        assert_eq!(keys.verify(&t), None, "a token for another audience");
        assert_eq!(keys.verify("not.a.jwt"), None);
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
