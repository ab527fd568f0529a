//! Answers: the description's examples, patched with the mock's state.

use super::{
    Auth, Credential, Ctx, Inner, Installation, InstallationToken, MockState, Params, Reply, ReplyBody, TOKEN_LIFETIME,
    TestRepo, UserGrant, body_for_record, node_id, parse_form, percent_encode, random_alnum, rfc3339, stable_id,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::SystemTime;

/// An operation call that passed the checks.
pub(super) struct Call<'a> {
    pub(super) operation_id: &'a str,
    pub(super) params: &'a Params,
    pub(super) body: &'a Value,
    pub(super) credential: &'a Credential,
    /// The documented success status.
    pub(super) status: u16,
}

impl Inner {
    /// The documented example (URLs already pointing at the mock; `None` for no-content answers) patched
    /// with the mock's state; `Err` carries an error answer (already a violation when it is the
    /// platform's fault).
    pub(super) fn answer(&self, cx: &mut Ctx, call: &Call<'_>, example: Option<Value>) -> Result<Reply, Reply> {
        let status = call.status;
        let Some(mut example) = example else {
            if call.operation_id == "apps/revoke-installation-access-token"
                && let Some(token) = &call.credential.token
            {
                self.state().installation_tokens.remove(token);
            }
            if call.operation_id == "apps/delete-installation" {
                let id = self.installation_param(cx, call.params)?;
                let mut st = self.state();
                st.installations.remove(&id);
                st.removed_installations.insert(id);
            }
            return Ok(Reply {
                status,
                body: ReplyBody::Empty,
                headers: Vec::new(),
            });
        };
        let mut headers = Vec::new();
        match call.operation_id {
            "apps/get-authenticated" => self.patch_app(&mut example),
            "apps/create-from-manifest" => {
                let code = call.params.path("code").to_owned();
                if !self.state().manifest_codes.remove(&code) {
                    // Codes come from the browser redirect; a reload reuses one. Not the platform's fault.
                    return Err(Reply::error(404, "Not Found"));
                }
                self.patch_app(&mut example);
                let app = &self.app;
                put(&mut example, "client_secret", json!(app.client_secret));
                put(&mut example, "webhook_secret", json!(app.webhook_secret));
                put(&mut example, "pem", json!(app.private_key_pem));
            }
            "apps/list-installations" => {
                let template = first_item(&example)?;
                let st = self.state();
                let items: Vec<Value> = st
                    .installations
                    .iter()
                    .map(|(id, inst)| self.patched_installation(&template, *id, inst))
                    .collect();
                let (page, link) = paginate(items, call.params, &self.url, &cx.path);
                headers.extend(link);
                example = Value::Array(page);
            }
            "apps/get-installation" => {
                let id = self.installation_param(cx, call.params)?;
                let st = self.state();
                let inst = st.installations.get(&id).ok_or_else(|| self.not_found(cx, id, &st))?;
                example = self.patched_installation(&example, id, inst);
            }
            "apps/get-repo-installation" => {
                let full_name = format!("{}/{}", call.params.path("owner"), call.params.path("repo"));
                let st = self.state();
                let found = st
                    .installations
                    .iter()
                    .find(|(_, inst)| inst.repos.iter().any(|r| r.full_name.eq_ignore_ascii_case(&full_name)));
                // Asking whether the App is installed on a repo is legitimate; a 404 is an answer.
                let (id, inst) = found.ok_or_else(|| Reply::error(404, "Not Found"))?;
                example = self.patched_installation(&example, *id, inst);
            }
            "apps/create-installation-access-token" => {
                example = self.create_installation_token(cx, call.params, call.body, example)?;
            }
            "apps/list-repos-accessible-to-installation" => {
                let Auth::Installation(id) = call.credential.auth else {
                    return Err(Reply::error(403, "Resource not accessible by integration"));
                };
                let st = self.state();
                let repos: Vec<&TestRepo> = st.installations.get(&id).map_or(Vec::new(), |inst| {
                    inst.repos
                        .iter()
                        .filter(|r| call.credential.repo_ids.as_ref().is_none_or(|ids| ids.contains(&r.id)))
                        .collect()
                });
                let selection = if call.credential.repo_ids.is_some() {
                    "selected"
                } else {
                    "all"
                };
                let reply = self.repo_list(example, &repos, call.params, &cx.path, Some(selection))?;
                return Ok(Reply { status, ..reply });
            }
            "apps/list-installations-for-authenticated-user" => {
                let grant = self.user_grant(call.credential)?;
                let template = example
                    .get("installations")
                    .and_then(|i| i.get(0))
                    .cloned()
                    .ok_or_else(|| mock_bug("the example lists no installation"))?;
                let st = self.state();
                let items: Vec<Value> = grant
                    .installation_ids
                    .iter()
                    .filter_map(|id| st.installations.get(id).map(|inst| (id, inst)))
                    .map(|(id, inst)| self.patched_installation(&template, *id, inst))
                    .collect();
                let total = items.len();
                let (page, link) = paginate(items, call.params, &self.url, &cx.path);
                headers.extend(link);
                put(&mut example, "total_count", json!(total));
                put(&mut example, "installations", Value::Array(page));
            }
            "apps/list-installation-repos-for-authenticated-user" => {
                let grant = self.user_grant(call.credential)?;
                let id = self.installation_param(cx, call.params)?;
                let st = self.state();
                let inst = st
                    .installations
                    .get(&id)
                    .filter(|_| grant.installation_ids.contains(&id))
                    .ok_or_else(|| {
                        if st.removed_installations.contains(&id) {
                            Reply::error(404, "Not Found")
                        } else {
                            cx.violate(format!("user {} was not granted installation {id}", grant.login));
                            Reply::error(404, "Not Found")
                        }
                    })?;
                let repos: Vec<&TestRepo> = inst.repos.iter().collect();
                let reply = self.repo_list(example, &repos, call.params, &cx.path, None)?;
                return Ok(Reply { status, ..reply });
            }
            "users/get-authenticated" => {
                let grant = self.user_grant(call.credential)?;
                put(&mut example, "login", json!(grant.login));
                put(&mut example, "id", json!(grant.user_id));
                put(&mut example, "node_id", node_id("User", grant.user_id));
                put(&mut example, "html_url", json!(format!("{}/{}", self.url, grant.login)));
                put(
                    &mut example,
                    "url",
                    json!(format!("{}/users/{}", self.url, grant.login)),
                );
            }
            "repos/get" => {
                let full_name = format!("{}/{}", call.params.path("owner"), call.params.path("repo"));
                let st = self.state();
                let repo = st
                    .installations
                    .values()
                    .flat_map(|i| i.repos.iter())
                    .find(|r| r.full_name.eq_ignore_ascii_case(&full_name))
                    .cloned()
                    .ok_or_else(|| Reply::error(404, "Not Found"))?;
                drop(st);
                self.patch_repo(&mut example, &repo);
            }
            "checks/create" | "checks/update" | "checks/get" => {
                example = self.check_run(cx, call, example)?;
            }
            _ => {}
        }
        Ok(Reply {
            status,
            body: ReplyBody::Json(example),
            headers,
        })
    }

    pub(super) fn not_found(&self, cx: &mut Ctx, id: u64, st: &MockState) -> Reply {
        if !st.removed_installations.contains(&id) {
            cx.violate(format!("installation {id} does not exist"));
        }
        Reply::error(404, "Not Found")
    }

    fn installation_param(&self, cx: &mut Ctx, params: &Params) -> Result<u64, Reply> {
        params.path("installation_id").parse::<u64>().map_err(|_| {
            cx.violate("installation_id is not a number");
            Reply::error(404, "Not Found")
        })
    }

    fn user_grant(&self, credential: &Credential) -> Result<UserGrant, Reply> {
        credential
            .user
            .clone()
            .ok_or_else(|| Reply::error(401, "Requires authentication"))
    }

    pub(super) fn patch_app(&self, v: &mut Value) {
        let app = &self.app;
        put(v, "id", json!(app.id));
        put(v, "slug", json!(app.slug));
        put(v, "client_id", json!(app.client_id));
        put(v, "node_id", node_id("Integration", app.id));
        put(v, "name", json!(format!("CloudRunr test App {}", app.id)));
        put(v, "html_url", json!(format!("{}/apps/{}", self.url, app.slug)));
    }

    fn patched_installation(&self, template: &Value, id: u64, inst: &Installation) -> Value {
        let mut v = template.clone();
        put(&mut v, "id", json!(id));
        if let Some(account) = v.get_mut("account").filter(|a| a.is_object()) {
            put(account, "login", json!(inst.account));
            put(account, "id", json!(inst.account_id));
            put(account, "node_id", node_id("User", inst.account_id));
            put(account, "html_url", json!(format!("{}/{}", self.url, inst.account)));
            put(account, "url", json!(format!("{}/users/{}", self.url, inst.account)));
        }
        put(&mut v, "app_id", json!(self.app.id));
        put(&mut v, "app_slug", json!(self.app.slug));
        if v.get("client_id").is_some() {
            put(&mut v, "client_id", json!(self.app.client_id));
        }
        put(&mut v, "target_id", json!(inst.account_id));
        put(&mut v, "repository_selection", json!("selected"));
        put(
            &mut v,
            "access_tokens_url",
            json!(format!("{}/app/installations/{id}/access_tokens", self.url)),
        );
        put(
            &mut v,
            "repositories_url",
            json!(format!("{}/installation/repositories", self.url)),
        );
        put(
            &mut v,
            "html_url",
            json!(format!("{}/settings/installations/{id}", self.url)),
        );
        put(&mut v, "suspended_at", Value::Null);
        put(&mut v, "suspended_by", Value::Null);
        v
    }

    fn patch_repo(&self, v: &mut Value, repo: &TestRepo) {
        let html_url = format!("{}/{}", self.url, repo.full_name);
        put(v, "id", json!(repo.id));
        put(v, "node_id", node_id("Repository", repo.id));
        put(v, "name", json!(repo.name()));
        put(v, "full_name", json!(repo.full_name));
        put(v, "private", json!(repo.private));
        if v.get("visibility").is_some() {
            put(v, "visibility", json!(if repo.private { "private" } else { "public" }));
        }
        put(v, "html_url", json!(html_url));
        put(v, "url", json!(format!("{}/repos/{}", self.url, repo.full_name)));
        put(v, "clone_url", json!(repo.clone_url));
        put(v, "default_branch", json!(repo.default_branch));
        if v.get("svn_url").is_some() {
            put(v, "svn_url", json!(html_url));
        }
        if let Some(owner) = v.get_mut("owner").filter(|o| o.is_object()) {
            put(owner, "login", json!(repo.owner()));
            put(owner, "id", json!(stable_id(repo.owner())));
            put(owner, "node_id", node_id("User", stable_id(repo.owner())));
            put(owner, "html_url", json!(format!("{}/{}", self.url, repo.owner())));
            put(owner, "url", json!(format!("{}/users/{}", self.url, repo.owner())));
        }
    }

    /// `{total_count, repositories}` answers.
    fn repo_list(
        &self,
        mut example: Value,
        repos: &[&TestRepo],
        params: &Params,
        path: &str,
        selection: Option<&str>,
    ) -> Result<Reply, Reply> {
        let template = example
            .get("repositories")
            .and_then(|r| r.get(0))
            .cloned()
            .ok_or_else(|| mock_bug("the example lists no repository"))?;
        let items: Vec<Value> = repos
            .iter()
            .map(|repo| {
                let mut v = template.clone();
                self.patch_repo(&mut v, repo);
                v
            })
            .collect();
        let total = items.len();
        let (page, link) = paginate(items, params, &self.url, path);
        put(&mut example, "total_count", json!(total));
        put(&mut example, "repositories", Value::Array(page));
        if let Some(selection) = selection {
            put(&mut example, "repository_selection", json!(selection));
        }
        Ok(Reply {
            status: 200,
            body: ReplyBody::Json(example),
            headers: link.into_iter().collect(),
        })
    }

    fn create_installation_token(
        &self,
        cx: &mut Ctx,
        params: &Params,
        body: &Value,
        mut example: Value,
    ) -> Result<Value, Reply> {
        let id = self.installation_param(cx, params)?;
        let mut st = self.state();
        let Some(inst) = st.installations.get(&id) else {
            return Err(self.not_found(cx, id, &st));
        };
        // Optional restriction to some repos (by name or id); each must be reachable.
        let mut restricted: Option<Vec<&TestRepo>> = None;
        let mut unknown = Vec::new();
        if let Some(names) = body.get("repositories").and_then(Value::as_array) {
            for name in names.iter().filter_map(Value::as_str) {
                match inst.repos.iter().find(|r| r.name().eq_ignore_ascii_case(name)) {
                    Some(r) => restricted.get_or_insert_with(Vec::new).push(r),
                    None => unknown.push(name.to_owned()),
                }
            }
        }
        if let Some(ids) = body.get("repository_ids").and_then(Value::as_array) {
            for rid in ids.iter().filter_map(Value::as_u64) {
                match inst.repos.iter().find(|r| r.id == rid) {
                    Some(r) => restricted.get_or_insert_with(Vec::new).push(r),
                    None => unknown.push(rid.to_string()),
                }
            }
        }
        if !unknown.is_empty() {
            cx.violate(format!(
                "installation {id} cannot reach the requested repositories {unknown:?}"
            ));
            return Err(Reply::invalid(
                "There is at least one repository that does not exist or is not accessible to the parent installation.",
                vec![json!({ "resource": "Installation", "field": "repositories", "code": "invalid" })],
            ));
        }
        let token = loop {
            let candidate = format!("ghs_{}", random_alnum(36));
            if !st.installation_tokens.contains_key(&candidate) {
                break candidate;
            }
        };
        let expires_at = SystemTime::now() + TOKEN_LIFETIME;
        let repo_ids = restricted
            .as_ref()
            .map(|rs| rs.iter().map(|r| r.id).collect::<Vec<_>>());
        let repo_values: Option<Vec<Value>> = restricted.as_ref().map(|rs| {
            let template = example
                .get("repositories")
                .and_then(|r| r.get(0))
                .cloned()
                .unwrap_or_else(|| json!({}));
            rs.iter()
                .map(|repo| {
                    let mut v = template.clone();
                    self.patch_repo(&mut v, repo);
                    v
                })
                .collect()
        });
        st.installation_tokens.insert(
            token.clone(),
            InstallationToken {
                installation_id: id,
                expires_at,
                repo_ids,
            },
        );
        drop(st);
        put(&mut example, "token", json!(token));
        put(&mut example, "expires_at", json!(rfc3339(expires_at)));
        if let Some(permissions) = body.get("permissions").filter(|p| p.is_object()) {
            put(&mut example, "permissions", permissions.clone());
        }
        match repo_values {
            Some(values) => {
                put(&mut example, "repository_selection", json!("selected"));
                put(&mut example, "repositories", Value::Array(values));
            }
            None => {
                put(&mut example, "repository_selection", json!("all"));
                if let Some(map) = example.as_object_mut() {
                    map.remove("repositories");
                }
            }
        }
        Ok(example)
    }
}

impl Inner {
    /// `POST /login/oauth/access_token` (github.com, not in the REST description).
    pub(super) fn oauth_access_token(&self, cx: &mut Ctx) -> Reply {
        let mut fields: HashMap<String, String> = parse_form(&cx.query).into_iter().collect();
        match body_for_record(&cx.headers, &cx.body) {
            Value::Object(map) => {
                for (k, v) in map {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    fields.insert(k, v);
                }
            }
            Value::Null => {}
            Value::String(raw) => {
                // Form-encoded without the content type.
                fields.extend(parse_form(&raw));
            }
            other => cx.violate(format!("OAuth token request body is not a form or object: {other}")),
        }
        let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
        let wants_json = cx.header("accept").is_some_and(|a| a.contains("application/json"));
        let respond = |pairs: Vec<(&str, String)>| -> Reply {
            if wants_json {
                let map: Map<String, Value> = pairs.into_iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
                Reply::json(200, Value::Object(map))
            } else {
                let text = pairs
                    .into_iter()
                    .map(|(k, v)| format!("{k}={}", percent_encode(&v)))
                    .collect::<Vec<_>>()
                    .join("&");
                Reply {
                    status: 200,
                    body: ReplyBody::Text(text, "application/x-www-form-urlencoded; charset=utf-8"),
                    headers: Vec::new(),
                }
            }
        };
        if field("client_id") != self.app.client_id || field("client_secret") != self.app.client_secret {
            cx.violate("OAuth code exchange with wrong client_id/client_secret");
            return respond(vec![
                ("error", "incorrect_client_credentials".into()),
                (
                    "error_description",
                    "The client_id and/or client_secret passed are incorrect.".into(),
                ),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials".into(),
                ),
            ]);
        }
        let code = field("code").to_owned();
        let mut st = self.state();
        let grant = if st.used_oauth_codes.contains(&code) {
            None
        } else {
            st.oauth_codes.remove(&code)
        };
        let Some(grant) = grant else {
            // Codes come from the browser; a reused or stale one is not the platform's fault.
            return respond(vec![
                ("error", "bad_verification_code".into()),
                ("error_description", "The code passed is incorrect or expired.".into()),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code".into(),
                ),
            ]);
        };
        st.used_oauth_codes.insert(code);
        let token = loop {
            let candidate = format!("ghu_{}", random_alnum(36));
            if !st.user_tokens.contains_key(&candidate) {
                break candidate;
            }
        };
        st.user_tokens.insert(token.clone(), grant);
        respond(vec![
            ("access_token", token),
            ("token_type", "bearer".into()),
            ("scope", String::new()),
        ])
    }
}

fn mock_bug(message: &str) -> Reply {
    eprintln!("mock GitHub: {message}");
    Reply::error(500, &format!("mock GitHub: {message}"))
}

fn first_item(example: &Value) -> Result<Value, Reply> {
    example
        .get(0)
        .cloned()
        .ok_or_else(|| mock_bug("the example list is empty"))
}

/// Sets `key` on an object (no-op on other values).
pub(super) fn put(v: &mut Value, key: &str, value: Value) {
    if let Some(map) = v.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
}

/// `per_page` (default 30, at most 100) / `page` (from 1), with a GitHub-style `Link` header.
fn paginate(items: Vec<Value>, params: &Params, base: &str, path: &str) -> (Vec<Value>, Option<(String, String)>) {
    let per_page = params
        .query("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = params
        .query("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let link_to = |p: usize, rel: &str| format!("<{base}{path}?per_page={per_page}&page={p}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    let slice = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let link = (!links.is_empty()).then(|| ("link".to_owned(), links.join(", ")));
    (slice, link)
}

/// Points the description's `https://api.github.com` and `https://github.com` URLs at the mock.
pub(super) fn rewrite_urls(v: &mut Value, base: &str) {
    match v {
        Value::String(s) => {
            for prefix in ["https://api.github.com", "https://github.com"] {
                if let Some(rest) = s.strip_prefix(prefix)
                    && (rest.is_empty() || rest.starts_with('/'))
                {
                    *s = format!("{base}{rest}");
                    break;
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_urls(i, base)),
        Value::Object(map) => map.values_mut().for_each(|i| rewrite_urls(i, base)),
        _ => {}
    }
}
