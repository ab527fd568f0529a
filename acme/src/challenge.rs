//! HTTP-01 answers from the database, for the router: whichever process the CA reaches finds the
//! key authorization its issuer (maybe another process) stored.

use db::Database;

/// Looks tokens up in the database (see `router::acme_challenge`).
#[derive(Clone)]
pub struct ChallengeAnswers {
    db: Database,
}

impl ChallengeAnswers {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The key authorization for `token`, while its order runs.
    pub async fn key_authorization(&self, token: &str) -> Option<String> {
        // Tokens are base64url; anything else cannot be one and needs no query.
        if token.is_empty()
            || token.len() > 256
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        match self.db.acme_http_challenge(token, crate::now_ms()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "looking up an ACME HTTP-01 token failed");
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl router::acme_challenge::ChallengeResponder for ChallengeAnswers {
    async fn key_authorization(&self, token: &str) -> Option<String> {
        ChallengeAnswers::key_authorization(self, token).await
    }
}
