//! Request extractors whose rejections are [`ApiError`]s: JSON bodies and the signed-in user.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use platform::model::User;
use serde::de::DeserializeOwned;

/// A JSON body. Syntax errors are 400, values that do not fit are 422, a body that is not JSON
/// is 415, and everything says what was wrong.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

/// Like [`Json`], but an empty body means `T::default()` (for endpoints whose body is optional).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let declared_empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let untyped = !req.headers().contains_key(header::CONTENT_TYPE);
        if declared_empty || untyped {
            let bytes = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e| ApiError::new(e.status(), "invalid_body", e.body_text()))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(T::default()));
            }
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        Json::<T>::from_request(req, state).await.map(|Json(v)| OptionalJson(v))
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("invalid_json", e.body_text()),
        JsonRejection::JsonDataError(e) => ApiError::invalid("invalid_request", e.body_text()),
        other => ApiError::new(other.status(), "invalid_body", other.body_text()),
    }
}

/// A query string. A parameter that does not parse, or one the operation does not take, is 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// The user a request is made for: `Authorization: Bearer <session JWT | personal API token>`.
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(header::AUTHORIZATION) else {
            // The dashboard's own scripts (the live log) read with the browser's session; only
            // safe methods, so a page elsewhere can never make a browser change anything here.
            if matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD)
                && let Some(session) = crate::dashboard::session::current(state, &parts.headers).await
            {
                return Ok(CurrentUser(session.user));
            }
            return Err(ApiError::unauthorized(
                "sign in first: send Authorization: Bearer <token>",
            ));
        };
        let token = bearer_value(header)?;
        crate::auth::authenticate(state, token)
            .await?
            .map(CurrentUser)
            .ok_or_else(|| ApiError::unauthorized("the token is invalid or expired; sign in again"))
    }
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    headers.get(header::AUTHORIZATION).map(bearer_value).transpose()
}

fn bearer_value(header: &axum::http::HeaderValue) -> Result<&str, ApiError> {
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

/// The client's address, when the server knows it (it is served with connection info): the
/// peer, or — when the peer is one of the trusted proxies — the right-most address of
/// `X-Forwarded-For` that is not (see `platform::proxies`). From any other peer the header is
/// ignored, since a client can write anything there.
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(info) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        else {
            return Ok(ClientAddr(None));
        };
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientAddr(Some(
            state.trusted_proxies.client_address(info.0.ip(), forwarded),
        )))
    }
}
