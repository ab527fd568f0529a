//! The answer to an ACME server's HTTP-01 check, `GET /.well-known/acme-challenge/{token}`, for
//! any host, on plain HTTP and HTTPS alike. Where key authorizations come from is the issuer's
//! business ([`ChallengeResponder`], e.g. the database every router process shares); the router
//! only asks.

use crate::tls::redirect::ACME_CHALLENGE_PREFIX;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Finds the key authorization of a token while its order runs.
#[async_trait::async_trait]
pub trait ChallengeResponder: Send + Sync {
    async fn key_authorization(&self, token: &str) -> Option<String>;
}

/// axum middleware: answers HTTP-01 checks before anything else sees the request, and passes
/// every other request on.
pub async fn answer_challenges(
    State(responder): State<Arc<dyn ChallengeResponder>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = req.uri().path().strip_prefix(ACME_CHALLENGE_PREFIX) else {
        return next.run(req).await;
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return next.run(req).await;
    }
    match responder.key_authorization(token).await {
        Some(key_authorization) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            key_authorization,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such ACME challenge\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    struct One;

    #[async_trait::async_trait]
    impl ChallengeResponder for One {
        async fn key_authorization(&self, token: &str) -> Option<String> {
            (token == "tok").then(|| "tok.thumbprint".to_owned())
        }
    }

    async fn get(path: &str) -> (StatusCode, String) {
        let responder: Arc<dyn ChallengeResponder> = Arc::new(One);
        let app = axum::Router::new()
            .fallback(|| async { "the site" })
            .layer(axum::middleware::from_fn_with_state(responder, answer_challenges));
        let rsp = app
            .oneshot(
                Request::get(path)
                    .header("host", "shop.example.com")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = rsp.status();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn known_tokens_get_their_key_authorization_and_the_rest_passes_on() {
        assert_eq!(
            get("/.well-known/acme-challenge/tok").await,
            (StatusCode::OK, "tok.thumbprint".into())
        );
        assert_eq!(get("/.well-known/acme-challenge/other").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get("/index.html").await, (StatusCode::OK, "the site".into()));
    }
}
