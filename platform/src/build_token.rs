//! Per-deployment build credentials.
//!
//! A build running away from the platform (a `cloudrunr build` process, an ECS task) holds no
//! long-lived secret of the platform. It gets a token that names its one deployment and expires
//! with its time limit; with it, it may read its own job and report its own events — nothing
//! else. The token is a MAC (HMAC-SHA256 under a key derived from the platform's secret) over
//! `<deployment id>.<expiry>`.

use crate::settings::Secret;
use crate::{DeploymentId, Timestamp};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

#[derive(Clone)]
pub struct BuildTokens {
    key: Secret,
}

impl std::fmt::Debug for BuildTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BuildTokens([redacted])")
    }
}

impl BuildTokens {
    /// From the platform's signing secret (a separate key is derived from it).
    pub fn new(secret: &Secret) -> Self {
        Self {
            key: Secret::new(format!("build-token:{}", secret.expose())),
        }
    }

    fn mac(&self, message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes()).expect("HMAC takes any key");
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A token for `deployment`, valid for `ttl`.
    pub fn mint(&self, deployment: &DeploymentId, ttl: Duration) -> String {
        let expires = Timestamp::now().millis() / 1000 + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let message = format!("{deployment}.{expires}");
        format!("{message}.{}", self.mac(&message))
    }

    /// The deployment a genuine, unexpired token was made for.
    pub fn verify(&self, token: &str) -> Option<DeploymentId> {
        let (message, mac) = token.rsplit_once('.')?;
        let (id, expires) = message.split_once('.')?;
        let expected = self.mac(message);
        // Constant-time comparison of the MACs.
        let same = expected.len() == mac.len()
            && expected.bytes().zip(mac.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same || expires.parse::<i64>().ok()? < Timestamp::now().millis() / 1000 {
            return None;
        }
        DeploymentId::parse(id).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_one_deployment_and_expire() {
        let tokens = BuildTokens::new(&Secret::new("s".repeat(32)));
        let id = DeploymentId::generate();
        let t = tokens.mint(&id, Duration::from_secs(60));
        assert_eq!(tokens.verify(&t), Some(id.clone()));
        assert_eq!(
            BuildTokens::new(&Secret::new("x".repeat(32))).verify(&t),
            None,
            "another key"
        );
        let other = DeploymentId::generate();
        let forged = t.replacen(id.as_str(), other.as_str(), 1);
        assert_eq!(tokens.verify(&forged), None, "the id is under the MAC");
        let expired = tokens.mint(&id, Duration::ZERO);
        let (msg, _) = expired.rsplit_once('.').unwrap();
        let (_, exp) = msg.split_once('.').unwrap();
        let past = format!("{id}.{}", exp.parse::<i64>().unwrap() - 10);
        let stale = format!("{past}.{}", tokens.mac(&past));
        assert_eq!(tokens.verify(&stale), None, "expired");
        assert_eq!(tokens.verify("garbage"), None);
    }
}
