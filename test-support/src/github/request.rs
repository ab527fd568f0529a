//! Request handling: one request recorded, checked and answered, and the credential kinds.

use super::{
    API_VERSIONS, Auth, Call, DOCS_URL, Inner, Recorded, UserGrant, check_body, check_headers, check_parameters,
    parse_form, random_hex, rewrite_urls, spec, split_path,
};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// What one request carries, plus what the checks found.
pub(super) struct Ctx {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
    pub(super) operation_id: Option<String>,
    pub(super) auth: Auth,
    pub(super) violations: Vec<String>,
}

impl Ctx {
    pub(super) fn violate(&mut self, reason: impl Into<String>) {
        self.violations.push(reason.into());
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An answer before it becomes a response.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: ReplyBody,
    pub(super) headers: Vec<(String, String)>,
}

pub(super) enum ReplyBody {
    Empty,
    Json(Value),
    Text(String, &'static str),
}

impl Reply {
    pub(super) fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: ReplyBody::Json(body),
            headers: Vec::new(),
        }
    }

    /// GitHub's error shape: `{"message", "documentation_url", "status"}`.
    pub(super) fn error(status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            json!({ "message": message, "documentation_url": DOCS_URL, "status": status.to_string() }),
        )
    }

    /// 422 with `errors`, like GitHub's validation failures.
    pub(super) fn invalid(message: &str, errors: Vec<Value>) -> Reply {
        Reply::json(
            422,
            json!({ "message": message, "errors": errors, "documentation_url": DOCS_URL, "status": "422" }),
        )
    }

    fn into_response(self, api_version: Option<&str>) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match self.body {
            ReplyBody::Empty => Response::new(Body::empty()),
            ReplyBody::Json(value) => {
                let mut r = Response::new(Body::from(serde_json::to_vec(&value).expect("serialize JSON answer")));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                r
            }
            ReplyBody::Text(text, content_type) => {
                let mut r = Response::new(Body::from(text));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                r
            }
        };
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if let Some(version) = api_version
            && let Ok(value) = HeaderValue::from_str(version)
        {
            headers.insert("x-github-api-version-selected", value);
        }
        headers.insert(
            "x-github-request-id",
            HeaderValue::from_str(&random_hex(16).to_uppercase()).expect("request id header"),
        );
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
        response
    }
}

pub(super) async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (body, body_error) = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(bytes) => (bytes.to_vec(), None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut cx = Ctx {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body,
        operation_id: None,
        auth: Auth::None,
        violations: Vec::new(),
    };
    let reply = match body_error {
        None => inner.process(&mut cx).await,
        Some(e) => {
            cx.violate(format!("could not read the request body: {e}"));
            Reply::error(400, "Problems parsing JSON")
        }
    };
    let api_version = if cx.path.starts_with("/login/") {
        None
    } else {
        Some(requested_api_version(&cx.headers).unwrap_or(API_VERSIONS[0]).to_owned())
    };
    {
        let mut st = inner.state();
        let target = if cx.query.is_empty() {
            cx.path.clone()
        } else {
            format!("{}?{}", cx.path, cx.query)
        };
        for v in &cx.violations {
            let line = format!("{} {target}: {v}", cx.method);
            eprintln!("mock GitHub: violation: {line}");
            st.violations.push(line);
        }
        st.requests.push(Recorded {
            method: cx.method.clone(),
            path: cx.path.clone(),
            operation_id: cx.operation_id.clone(),
            auth: cx.auth.clone(),
            body: body_for_record(&cx.headers, &cx.body),
            status: reply.status,
        });
    }
    reply.into_response(api_version.as_deref())
}

/// A sent `X-GitHub-Api-Version`, if it is one GitHub accepts.
fn requested_api_version(headers: &HeaderMap) -> Option<&'static str> {
    let sent = headers.get("x-github-api-version")?.to_str().ok()?.trim();
    API_VERSIONS.iter().copied().find(|v| *v == sent)
}

/// How a request body shows in [`Recorded::body`].
pub(super) fn body_for_record(headers: &HeaderMap, body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return v;
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        let map: Map<String, Value> = parse_form(&text)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        return Value::Object(map);
    }
    Value::String(text)
}

/// The credential kind an operation needs.
pub(super) enum Need {
    AppJwt,
    /// An installation token; with `true`, one that reaches `{owner}/{repo}`.
    Installation(bool),
    /// An installation token reaching `{owner}/{repo}`, or a user token whose installations reach it.
    RepoAccess,
    User,
    Basic,
    /// The operation needs no credential.
    Nothing,
    /// Whatever valid credential, or none.
    Any,
}

pub(super) fn need_for(template: &str) -> Need {
    const APP_JWT: &[&str] = &[
        "/repos/{owner}/{repo}/installation",
        "/orgs/{org}/installation",
        "/users/{username}/installation",
    ];
    if template == "/app-manifests/{code}/conversions" {
        Need::Nothing
    } else if template == "/app" || template.starts_with("/app/") || APP_JWT.contains(&template) {
        Need::AppJwt
    } else if template.starts_with("/installation/") {
        Need::Installation(false)
    } else if template.starts_with("/repos/{owner}/{repo}/check-")
        || template.starts_with("/repos/{owner}/{repo}/commits/{ref}/check-")
    {
        Need::Installation(true)
    } else if template == "/repos/{owner}/{repo}" || template.starts_with("/repos/{owner}/{repo}/") {
        Need::RepoAccess
    } else if template == "/user" || template.starts_with("/user/") {
        Need::User
    } else if template.starts_with("/applications/{client_id}/") {
        Need::Basic
    } else {
        Need::Any
    }
}

/// A checked credential: the kind, and for invalid ones whether using it is the platform's fault.
pub(super) struct Credential {
    pub(super) auth: Auth,
    /// For `Auth::Invalid`: true when the platform could have known better (a violation).
    pub(super) fault: bool,
    /// For installation tokens: the repository ids the token was restricted to.
    pub(super) repo_ids: Option<Vec<u64>>,
    /// For user tokens: what the OAuth code granted.
    pub(super) user: Option<UserGrant>,
    /// The bearer token itself (for revocation).
    pub(super) token: Option<String>,
}

impl Inner {
    pub(super) async fn process(&self, cx: &mut Ctx) -> Reply {
        let view = requested_api_version(&cx.headers).unwrap_or(API_VERSIONS[0]);
        let spec = spec(view);
        let segments = split_path(&cx.path);
        let matched = spec.find_route(&cx.method, &segments);
        if let Some((route, _)) = &matched {
            cx.operation_id = Some(route.operation_id.clone());
        }

        if self.state().outage {
            return Reply::error(503, "Service Unavailable");
        }
        if cx.method == "POST" && cx.path == "/login/oauth/access_token" {
            return self.oauth_access_token(cx);
        }
        if let Some(reply) = check_headers(cx) {
            return reply;
        }
        let Some((route, path_params)) = matched else {
            cx.violate("no operation of GitHub's REST API description matches this method and path");
            return Reply::error(404, "Not Found");
        };
        let op = spec.operation(route);

        // Credentials.
        let credential = self.authenticate(cx).await;
        cx.auth = credential.auth.clone();
        if let Auth::Invalid(reason) = &credential.auth {
            if credential.fault {
                cx.violate(format!("bad credentials: {reason}"));
            }
            return Reply::error(401, "Bad credentials");
        }

        // Parameters.
        let params = match check_parameters(spec, route, op, &path_params, &cx.query) {
            Ok(params) => params,
            Err((reply, problems)) => {
                for p in problems {
                    cx.violate(p);
                }
                return reply;
            }
        };

        // Credential kind and reach.
        if let Some(reply) = self.authorize(cx, route, &params, &credential) {
            return reply;
        }

        // Body.
        let body = match check_body(spec, route, op, &cx.body) {
            Ok(body) => body,
            Err((reply, problems)) => {
                for p in problems {
                    cx.violate(p);
                }
                return reply;
            }
        };

        // The answer.
        let (status, example) = match spec.success_example(op) {
            Ok(found) => found,
            Err(problem) => {
                cx.violate(format!(
                    "mock limitation, cannot answer {}: {problem}",
                    route.operation_id
                ));
                return Reply::error(500, &format!("mock GitHub cannot answer this: {problem}"));
            }
        };
        let example = example.map(|mut e| {
            rewrite_urls(&mut e, &self.url);
            e
        });
        let call = Call {
            operation_id: &route.operation_id,
            params: &params,
            body: &body,
            credential: &credential,
            status,
        };
        self.answer(cx, &call, example).unwrap_or_else(|reply| reply)
    }
}
