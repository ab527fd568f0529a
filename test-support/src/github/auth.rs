//! Credentials: App JWTs verified with `openssl`, tokens looked up, and what each may reach.

use super::{
    Auth, Credential, Ctx, Inner, JWT_MAX_LIFETIME_SECS, JWT_SKEW_SECS, Need, Params, Reply, Route, base64_decode,
    need_for, numeric_claim, random_hex, unix_now, verified_jwts,
};
use axum::http::header;
use serde_json::Value;
use std::process::Stdio;
use std::time::SystemTime;
use tokio::io::AsyncWriteExt as _;

impl Inner {
    /// Classifies the `Authorization` header, verifying JWTs and looking tokens up.
    pub(super) async fn authenticate(&self, cx: &Ctx) -> Credential {
        let ok = |auth| Credential {
            auth,
            fault: false,
            repo_ids: None,
            user: None,
            token: None,
        };
        let bad = |reason: &str| Credential {
            auth: Auth::Invalid(reason.to_owned()),
            fault: true,
            repo_ids: None,
            user: None,
            token: None,
        };
        let Some(value) = cx.headers.get(header::AUTHORIZATION) else {
            return ok(Auth::None);
        };
        let Ok(value) = value.to_str() else {
            return bad("Authorization header is not ASCII");
        };
        let (scheme, credential) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64_decode(credential, false).and_then(|b| String::from_utf8(b).ok());
            return match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((id, secret)) if id == self.app.client_id && secret == self.app.client_secret => ok(Auth::Basic),
                Some(_) => bad("Basic credentials are not the App's client id and secret"),
                None => bad("malformed Basic credentials"),
            };
        }
        if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("token") {
            return bad(&format!("unsupported Authorization scheme {scheme:?}"));
        }
        if credential.is_empty() {
            return bad("empty token");
        }
        if credential.matches('.').count() == 2 {
            return match self.verify_app_jwt(credential).await {
                Ok(()) => ok(Auth::AppJwt),
                Err(reason) => bad(&format!("App JWT rejected: {reason}")),
            };
        }
        let st = self.state();
        if let Some(token) = st.installation_tokens.get(credential) {
            if st.removed_installations.contains(&token.installation_id)
                && !st.installations.contains_key(&token.installation_id)
            {
                return Credential {
                    auth: Auth::Invalid(format!(
                        "token of installation {} which was removed",
                        token.installation_id
                    )),
                    fault: false,
                    repo_ids: None,
                    user: None,
                    token: None,
                };
            }
            if !st.installations.contains_key(&token.installation_id) {
                return bad(&format!("token of unknown installation {}", token.installation_id));
            }
            if SystemTime::now() >= token.expires_at {
                return bad("installation token expired");
            }
            return Credential {
                auth: Auth::Installation(token.installation_id),
                fault: false,
                repo_ids: token.repo_ids.clone(),
                user: None,
                token: Some(credential.to_owned()),
            };
        }
        if let Some(grant) = st.user_tokens.get(credential) {
            return Credential {
                auth: Auth::User(grant.login.clone()),
                fault: false,
                repo_ids: None,
                user: Some(grant.clone()),
                token: Some(credential.to_owned()),
            };
        }
        bad("unknown token (not one this mock issued)")
    }

    /// Checks an App JWT: RS256 signature by the App's key; `iss` the App id (or client id); `iat` not in
    /// the future (60 s skew); `exp` in the future and at most 10 minutes after `iat`.
    async fn verify_app_jwt(&self, jwt: &str) -> Result<(), String> {
        let mut parts = jwt.split('.');
        let (Some(h), Some(c), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("not three dot-separated parts".into());
        };
        let decode_json = |part: &str, what: &str| -> Result<Value, String> {
            let bytes = base64_decode(part, true).ok_or_else(|| format!("{what} is not unpadded base64url"))?;
            serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("{what} is not JSON: {e}"))
        };
        let head = decode_json(h, "header")?;
        if head.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(format!("header alg must be RS256, got {}", head["alg"]));
        }
        let claims = decode_json(c, "claims")?;
        let signature = base64_decode(s, true).ok_or("signature is not unpadded base64url")?;

        let verified = verified_jwts().lock().unwrap_or_else(|e| e.into_inner()).contains(jwt);
        if !verified {
            self.verify_signature(&format!("{h}.{c}"), &signature).await?;
            verified_jwts()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(jwt.to_owned());
        }

        let iss_ok = match &claims["iss"] {
            Value::String(s) => *s == self.app.id.to_string() || *s == self.app.client_id,
            Value::Number(n) => n.as_u64() == Some(self.app.id),
            _ => false,
        };
        if !iss_ok {
            return Err(format!(
                "iss {} is not the App id {} (or client id)",
                claims["iss"], self.app.id
            ));
        }
        let (Some(iat), Some(exp)) = (numeric_claim(&claims["iat"]), numeric_claim(&claims["exp"])) else {
            return Err("iat and exp must be numeric".into());
        };
        let now = unix_now();
        if exp <= now {
            return Err(format!("expired: exp {exp} is {} s in the past", now - exp));
        }
        if iat > now + JWT_SKEW_SECS {
            return Err(format!("iat {iat} is {} s in the future", iat - now));
        }
        if exp <= iat {
            return Err("exp is not after iat".into());
        }
        if exp - iat > JWT_MAX_LIFETIME_SECS {
            return Err(format!("exp is {} s after iat (at most 600)", exp - iat));
        }
        Ok(())
    }

    async fn verify_signature(&self, signing_input: &str, signature: &[u8]) -> Result<(), String> {
        let sig_path = self.key_dir.path().join(format!("sig-{}", random_hex(16)));
        tokio::fs::write(&sig_path, signature)
            .await
            .map_err(|e| format!("mock: write signature file: {e}"))?;
        let result = async {
            let mut child = tokio::process::Command::new("openssl")
                .arg("dgst")
                .arg("-sha256")
                .arg("-verify")
                .arg(self.key_dir.path().join("app.pub.pem"))
                .arg("-signature")
                .arg(&sig_path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("mock: run openssl: {e}"))?;
            let mut stdin = child.stdin.take().expect("openssl stdin");
            stdin
                .write_all(signing_input.as_bytes())
                .await
                .map_err(|e| format!("mock: write to openssl: {e}"))?;
            drop(stdin);
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| format!("mock: wait for openssl: {e}"))?;
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK") {
                Ok(())
            } else {
                Err("the signature is not the test App's (RS256 with its private key)".to_owned())
            }
        }
        .await;
        let _ = tokio::fs::remove_file(&sig_path).await;
        result
    }

    /// Checks the credential kind the operation needs and, for repo operations, that it reaches the repo.
    pub(super) fn authorize(
        &self,
        cx: &mut Ctx,
        route: &Route,
        params: &Params,
        credential: &Credential,
    ) -> Option<Reply> {
        let auth = &credential.auth;
        let need = need_for(&route.template);
        let st = self.state();
        let repo = || format!("{}/{}", params.path("owner"), params.path("repo"));
        let reaches_installation = |id: u64| -> bool {
            let Some(installation) = st.installations.get(&id) else {
                return false;
            };
            let full_name = repo();
            installation.repos.iter().any(|r| {
                r.full_name.eq_ignore_ascii_case(&full_name)
                    && credential.repo_ids.as_ref().is_none_or(|ids| ids.contains(&r.id))
            })
        };
        let problem: Option<(u16, &str, String)> = match (need, auth) {
            (Need::Nothing | Need::Any, _) => None,
            (Need::AppJwt, Auth::AppJwt) => None,
            (Need::AppJwt, _) => Some((
                401,
                "A JSON web token could not be decoded",
                format!("{} needs an App JWT, got {auth:?}", route.operation_id),
            )),
            (Need::Installation(false), Auth::Installation(_)) => None,
            (Need::Installation(true) | Need::RepoAccess, Auth::Installation(id)) => {
                if reaches_installation(*id) {
                    None
                } else {
                    Some((
                        404,
                        "Not Found",
                        format!("installation {id}'s token does not reach repository {}", repo()),
                    ))
                }
            }
            (Need::RepoAccess, Auth::User(login)) => {
                let reaches = credential
                    .user
                    .as_ref()
                    .is_some_and(|g| g.installation_ids.iter().any(|id| reaches_installation(*id)));
                if reaches {
                    None
                } else {
                    Some((
                        404,
                        "Not Found",
                        format!("user {login} has no installation reaching repository {}", repo()),
                    ))
                }
            }
            (Need::Installation(_) | Need::RepoAccess, Auth::None) => Some((
                401,
                "Requires authentication",
                format!("{} needs an installation access token, got none", route.operation_id),
            )),
            (Need::Installation(_) | Need::RepoAccess, _) => Some((
                403,
                "Resource not accessible by integration",
                format!(
                    "{} needs an installation access token, got {auth:?}",
                    route.operation_id
                ),
            )),
            (Need::User, Auth::User(_)) => None,
            (Need::User, Auth::None) => Some((
                401,
                "Requires authentication",
                format!("{} needs a user access token, got none", route.operation_id),
            )),
            (Need::User, _) => Some((
                403,
                "Resource not accessible by integration",
                format!("{} needs a user access token, got {auth:?}", route.operation_id),
            )),
            (Need::Basic, Auth::Basic) => {
                if params.path("client_id") == self.app.client_id {
                    None
                } else {
                    Some((404, "Not Found", "client_id in the path is not the App's".to_owned()))
                }
            }
            (Need::Basic, _) => Some((
                401,
                "Requires authentication",
                format!(
                    "{} needs Basic client id:secret credentials, got {auth:?}",
                    route.operation_id
                ),
            )),
        };
        drop(st);
        problem.map(|(status, message, reason)| {
            cx.violate(reason);
            Reply::error(status, message)
        })
    }
}
