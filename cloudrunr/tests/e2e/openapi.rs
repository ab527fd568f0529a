//! Keeps `api/openapi.json` honest against the real server: the document lists exactly the routes
//! the router registers (read from its source, `api/src/lib.rs`), every documented operation is
//! really routed, and what the server answers (status, body shape, error codes) is what the
//! document promises.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use test_support::git_server::GitServer;
use test_support::{Platform, fixture};

/// The source of `api::router`: the routes the test expects are read from it, so a route added
/// there fails the test until it is documented, and a documented route that is not there fails too.
const ROUTER_SOURCE: &str = include_str!("../../../api/src/lib.rs");

/// The `axum::routing` functions a route's method router is made of (`get(a).post(b)`).
const ROUTE_METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// A well-formed id that names nothing, and a valid slug that names no project.
const NO_ID: &str = "00000000000000000000";
const NO_SLUG: &str = "no-such-project";

/// A small body for each operation that takes one: valid enough to reach the handler, and never
/// one that would start a build or contact a git server.
fn minimal_body(method: &str, template: &str) -> Option<Value> {
    match (method, template) {
        // Fails validation (password too short) before anything is stored.
        ("POST", "/api/auth/signup") => Some(json!({ "name": "Eve", "email": "eve@example.com", "password": "short" })),
        ("POST", "/api/auth/login") => Some(json!({ "email": "nobody@example.com", "password": "not the password" })),
        // A wrong current password: refused, nothing changes.
        ("POST", "/api/auth/password") => {
            Some(json!({ "current_password": "not it", "new_password": "long enough now" }))
        }
        ("POST", "/api/tokens") => Some(json!({ "name": "openapi check" })),
        // An ftp:// URL is refused before any repository is contacted.
        ("POST", "/api/projects") => Some(json!({ "name": "Spec Check", "git_url": "ftp://example.com/repo.git" })),
        ("PATCH", "/api/projects/{slug}") => Some(json!({ "name": "Renamed" })),
        ("POST", "/api/projects/{slug}/deployments") => Some(json!({})),
        ("POST", "/api/projects/{slug}/domains") => Some(json!({ "name": "shop.example.com" })),
        // Answers a link; GitHub is not contacted.
        ("POST", "/api/admin/github/connect") => Some(json!({ "organization": "spec-check" })),
        _ => None,
    }
}

/// The parsed document, with the lookups and the (small) JSON Schema check the test needs.
struct Spec(Value);

impl Spec {
    /// Every (METHOD, path template) the document describes.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in self.0["paths"].as_object().expect("paths is an object") {
            for method in METHODS {
                if item.get(*method).is_some() {
                    ops.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        ops
    }

    fn operation(&self, method: &str, template: &str) -> &Value {
        let op = &self.0["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        op
    }

    /// Follows `$ref`s inside the document.
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
            v = self
                .0
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {r} points at nothing"));
        }
        v
    }

    /// The path parameters an operation declares (on the path item or the operation).
    fn path_params(&self, method: &str, template: &str) -> BTreeSet<String> {
        let item = &self.0["paths"][template];
        let op = self.operation(method, template);
        [&item["parameters"], &op["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| self.resolve(p))
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().expect("parameter name").to_owned())
            .collect()
    }

    /// The documented response for a status.
    fn response(&self, method: &str, template: &str, status: u16) -> Option<&Value> {
        self.operation(method, template)["responses"]
            .get(status.to_string())
            .map(|r| self.resolve(r))
    }

    /// The error codes an operation documents, per status.
    fn error_codes(&self, method: &str, template: &str) -> BTreeMap<u16, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        let responses = self.operation(method, template)["responses"]
            .as_object()
            .expect("responses");
        for (status, resp) in responses {
            let status: u16 = status.parse().expect("numeric status");
            if let Some(schema) = self.resolve(resp).pointer("/content/application~1json/schema") {
                let mut codes = BTreeSet::new();
                collect_codes(schema, &mut codes);
                if !codes.is_empty() {
                    out.insert(status, codes);
                }
            }
        }
        out
    }

    /// Checks one answer of the server against the document; returns what does not match.
    fn check(&self, method: &str, template: &str, status: StatusCode, body: &Value) -> Vec<String> {
        let what = format!("{method} {template} -> {status} {body}");
        let Some(resp) = self.response(method, template, status.as_u16()) else {
            return vec![format!("{what}: status {} is not documented", status.as_u16())];
        };
        let mut errs = Vec::new();
        match resp.get("content").and_then(Value::as_object) {
            None => {
                if !body.is_null() {
                    errs.push(format!("{what}: documented without a body, but one came"));
                }
            }
            Some(content) => {
                if let Some(schema) = content.get("application/json").map(|m| &m["schema"]) {
                    self.validate(body, schema, true, true, "$", &mut errs);
                    errs = errs.into_iter().map(|e| format!("{what}: {e}")).collect();
                } else if content.contains_key("text/plain") {
                    if !body.is_string() {
                        errs.push(format!("{what}: documented as plain text"));
                    }
                } else {
                    errs.push(format!("{what}: no checkable media type documented"));
                }
            }
        }
        if status.is_client_error() || status.is_server_error() {
            let code = body.pointer("/error/code").and_then(Value::as_str);
            let message = body.pointer("/error/message").and_then(Value::as_str);
            match (code, message) {
                (Some(code), Some(_)) => {
                    let codes = self.error_codes(method, template);
                    if !codes.get(&status.as_u16()).is_some_and(|c| c.contains(code)) {
                        errs.push(format!("{what}: code {code:?} is not documented for this status"));
                    }
                }
                _ => errs.push(format!("{what}: not the error envelope")),
            }
        }
        errs
    }

    /// A subset of JSON Schema: `$ref`, `type`, `const`, `enum`, `required`, `properties`,
    /// `additionalProperties`, `items`, `allOf`, `anyOf`. Stricter than the document on purpose:
    /// an object may only carry the properties its schema declares (`closed_here` for this level,
    /// `closed` for nested ones), so a field the server adds without documenting it fails. The
    /// inline branches of an `allOf` only narrow (e.g. the error codes of one response) and are
    /// checked open; the keys they declare still count as declared.
    fn validate(&self, v: &Value, schema: &Value, closed: bool, closed_here: bool, at: &str, errs: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(c) = schema.get("const")
            && v != c
        {
            errs.push(format!("{at}: {v} is not {c}"));
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            errs.push(format!("{at}: {v} is not one of {}", Value::Array(e.clone())));
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => panic!("bad type {t}"),
            };
            if !types.iter().any(|t| type_matches(v, t)) {
                errs.push(format!("{at}: {v} is not of type {t}"));
                return;
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for branch in all {
                let by_ref = branch.get("$ref").is_some();
                self.validate(v, branch, closed && by_ref, false, at, errs);
            }
        }
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            let mut first = None;
            let passes = any.iter().any(|branch| {
                let mut e = Vec::new();
                self.validate(v, branch, closed, closed_here, at, &mut e);
                let ok = e.is_empty();
                first.get_or_insert(e);
                ok
            });
            if !passes {
                errs.push(format!(
                    "{at}: {v} matches no anyOf branch ({:?})",
                    first.unwrap_or_default()
                ));
            }
        }
        if let Value::Array(items) = v
            && let Some(item_schema) = schema.get("items")
        {
            for (i, item) in items.iter().enumerate() {
                self.validate(item, item_schema, closed, closed, &format!("{at}[{i}]"), errs);
            }
        }
        let Value::Object(obj) = v else { return };
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().expect("required names");
            if !obj.contains_key(r) {
                errs.push(format!("{at}: missing required {r:?}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, x) in obj {
            let here = format!("{at}.{k}");
            if let Some(s) = props.and_then(|p| p.get(k)) {
                self.validate(x, s, closed, closed, &here, errs);
                continue;
            }
            match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => errs.push(format!("{here}: not allowed")),
                Some(s @ Value::Object(_)) => self.validate(x, s, closed, closed, &here, errs),
                _ => {
                    if closed_here && self.declared(schema).is_some_and(|d| !d.contains(k)) {
                        errs.push(format!("{here}: not documented"));
                    }
                }
            }
        }
    }

    /// The property names a schema declares, through `$ref`s and `allOf`s; `None` when it says
    /// nothing about properties.
    fn declared(&self, schema: &Value) -> Option<BTreeSet<String>> {
        let schema = self.resolve(schema);
        let mut keys: Option<BTreeSet<String>> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect());
        for branch in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            if let Some(k) = self.declared(branch) {
                keys.get_or_insert_default().extend(k);
            }
        }
        keys
    }
}

/// The `error.code` enums in a (narrowed) error schema.
fn collect_codes(schema: &Value, out: &mut BTreeSet<String>) {
    if let Some(e) = schema
        .pointer("/properties/error/properties/code/enum")
        .and_then(Value::as_array)
    {
        out.extend(e.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for branch in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
            collect_codes(branch, out);
        }
    }
}

fn type_matches(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown type {other}"),
    }
}

/// Fetches the document the server serves and checks its envelope.
async fn served_spec(p: &Platform) -> Spec {
    let resp = p
        .http
        .get(format!("{}/api/openapi.json", p.base))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let text = resp.text().await.expect("body");
    let doc: Value = serde_json::from_str(&text).expect("the document is JSON");
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1"), "OpenAPI {version}");
    Spec(doc)
}

fn fill(template: &str) -> String {
    template
        .replace("{id}", NO_ID)
        .replace("{slug}", NO_SLUG)
        .replace("{name}", "no-such.example.com")
}

/// Every (METHOD, path template) `api::router` registers: the `.route(…)` calls in the body of
/// `fn router`, under `/api`.
fn router_routes() -> BTreeSet<(String, String)> {
    let code: Vec<char> = without_comments(ROUTER_SOURCE).chars().collect();
    let signature: Vec<char> = "fn router(".chars().collect();
    let at = code
        .windows(signature.len())
        .position(|w| w == signature.as_slice())
        .expect("api/src/lib.rs has no fn router(");
    let open = (at..code.len())
        .find(|&i| code[i] == '{')
        .expect("fn router has a body");
    let body: String = code[open + 1..closing(&code, open + 1)].iter().collect();
    assert!(
        body.contains(".nest(\"/api\", api)"),
        "api::router no longer nests its routes under /api: update router_routes"
    );
    let list = routes_in(&body, "/api");
    let routes: BTreeSet<(String, String)> = list.iter().cloned().collect();
    assert_eq!(routes.len(), list.len(), "a route is registered twice: {list:?}");
    assert!(
        routes.contains(&("GET".to_owned(), "/api/openapi.json".to_owned())),
        "the route reader missed GET /api/openapi.json; it read {routes:?}"
    );
    routes
}

/// The (METHOD, `prefix` + path) of every `.route("<path>", <method router>)` call in Rust
/// `source`, where the method router chains `get(…)`, `post(…)`, `patch(…)`, `put(…)` and
/// `delete(…)` (possibly as `axum::routing::delete(…)`, and spread over lines). Comments are
/// skipped. A route whose methods cannot be read fails, rather than being left out.
fn routes_in(source: &str, prefix: &str) -> Vec<(String, String)> {
    let code: Vec<char> = without_comments(source).chars().collect();
    let needle: Vec<char> = ".route(".chars().collect();
    let mut routes = Vec::new();
    let mut i = 0;
    while i + needle.len() <= code.len() {
        if code[i] == '"' {
            i = skip_string(&code, i);
            continue;
        }
        if code[i..i + needle.len()] != needle[..] {
            i += 1;
            continue;
        }
        let start = i + needle.len();
        let end = closing(&code, start);
        let args: String = code[start..end].iter().collect();
        let (path, router) = route_arguments(&args);
        let mut methods = Vec::new();
        for call in top_level_calls(router) {
            if ROUTE_METHODS.contains(&call.as_str()) {
                methods.push(call.to_uppercase());
            } else if call == "any" || call == "on" || call.ends_with("_service") {
                panic!("route {path:?} uses {call}(…), whose methods this test cannot read: teach routes_in");
            }
        }
        assert!(
            !methods.is_empty(),
            "no method found for the route {path:?} in {router:?}"
        );
        routes.extend(methods.into_iter().map(|m| (m, format!("{prefix}{path}"))));
        i = end + 1;
    }
    routes
}

/// `source` with its `//` and `/* */` comments and its char literals blanked out (string literals
/// kept as they are).
fn without_comments(source: &str) -> String {
    let c: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < c.len() {
        match (c[i], c.get(i + 1)) {
            ('"', _) => {
                let end = skip_string(&c, i);
                out.extend(&c[i..end]);
                i = end;
            }
            // A char literal such as '"' or '\'' (not a lifetime such as 'a): blanked out too, so
            // that a quote in it does not look like a string to the readers after this.
            ('\'', Some('\\')) => {
                i = (i + 3..c.len()).find(|&j| c[j] == '\'').map_or(c.len(), |j| j + 1);
                out.push_str("' '");
            }
            ('\'', Some(_)) if c.get(i + 2) == Some(&'\'') => {
                i += 3;
                out.push_str("' '");
            }
            ('/', Some('/')) => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                let end = (i + 2..c.len().saturating_sub(1))
                    .find(|&j| c[j] == '*' && c[j + 1] == '/')
                    .map_or(c.len(), |j| j + 2);
                out.push(' ');
                i = end;
            }
            (ch, _) => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// The index just past the string literal that starts at `c[start]` (a `"`).
fn skip_string(c: &[char], start: usize) -> usize {
    let mut i = start + 1;
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    c.len()
}

/// The index of the `)`, `]` or `}` that closes the bracket opened just before `c[start]`.
fn closing(c: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < c.len() {
        match c[i] {
            '"' => {
                i = skip_string(c, i);
                continue;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth > 0 => depth -= 1,
            ')' | ']' | '}' => return i,
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced brackets in the router's source");
}

/// Splits the arguments of a `.route(` call into the path literal and the method router.
fn route_arguments(args: &str) -> (&str, &str) {
    let rest = args
        .trim_start()
        .strip_prefix('"')
        .unwrap_or_else(|| panic!("a .route( call whose path is not a string literal: {args:?}"));
    let (path, rest) = rest.split_once('"').expect("the path literal ends");
    let router = rest
        .trim_start()
        .strip_prefix(',')
        .unwrap_or_else(|| panic!("a .route( call without a method router: {args:?}"));
    (path, router)
}

/// The names of the functions and methods called at the top level of `expr` (not inside another
/// call's arguments): for `axum::routing::get(a::get).post(b)`, `get` and `post`.
fn top_level_calls(expr: &str) -> Vec<String> {
    let c: Vec<char> = expr.chars().collect();
    let mut calls = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '"' => {
                i = skip_string(&c, i);
                continue;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ch if depth == 0 && (ch.is_alphabetic() || ch == '_') => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == ':') {
                    i += 1;
                }
                let name: String = c[start..i].iter().collect();
                let next = c[i..].iter().find(|ch| !ch.is_whitespace());
                if next == Some(&'(') {
                    calls.push(name.rsplit("::").next().unwrap_or_default().to_owned());
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    calls
}

#[test]
fn the_route_reader_reads_every_layout_rustfmt_produces() {
    let source = r#"
        let api = Router::new()
            .route("/a", get(a::get)) // .route("/commented", get(x))
            // .route("/commented/too", post(x))
            .route(
                "/b/{id}",
                get(b::get)
                    .patch(b::patch)
                    .delete(b::delete),
            )
            .route("/c", axum::routing::delete(c::delete).post(c::post)) /* .route("/d", get(d)) */
            .route("/e", post(e::receive).layer(DefaultBodyLimit::max(get_limit('"'))))
            .route_layer(layer)
            .with_state(state);
        let msg = "a string with .route(\"/not\", get(x)) in it";
    "#;
    let found: BTreeSet<(String, String)> = routes_in(source, "/api").into_iter().collect();
    let want: BTreeSet<(String, String)> = [
        ("GET", "/api/a"),
        ("GET", "/api/b/{id}"),
        ("PATCH", "/api/b/{id}"),
        ("DELETE", "/api/b/{id}"),
        ("DELETE", "/api/c"),
        ("POST", "/api/c"),
        ("POST", "/api/e"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(found, want);
}

#[tokio::test]
async fn the_document_lists_every_route_and_each_is_routed() {
    let p = Platform::start().await;
    // The first account: the administrator, so that the admin operations answer, not refuse.
    let token = p.signup("Spec Reader").await;

    // GET /api/openapi.json, through the support client too (no credentials needed).
    let (status, doc) = p.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{doc}");
    let spec = served_spec(&p).await;
    assert!(spec.0["components"]["securitySchemes"]["bearer"].is_object());
    for schema in [
        "User",
        "Token",
        "Project",
        "Deployment",
        "LogLine",
        "ArtifactSummary",
        "Error",
        "DeploymentState",
        "Framework",
        "LogStream",
        "DeploymentTarget",
        "DeploymentTrigger",
        "GithubStatus",
        "GithubApp",
        "GithubInstallation",
        "GithubRepository",
        "GithubAppManifest",
        "WebhookDelivery",
    ] {
        assert!(
            spec.0["components"]["schemas"][schema].is_object(),
            "no schema {schema}"
        );
    }

    // Exactly the router's operations, as its source registers them.
    let routes = router_routes();
    let documented = spec.operations();
    let missing: Vec<_> = routes.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes not documented: {missing:?}; documented but not routed: {extra:?}"
    );

    let mut failures = Vec::new();
    let mut operation_ids = BTreeSet::new();
    for (method, template) in &documented {
        let op = spec.operation(method, template);
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(
            !id.is_empty() && operation_ids.insert(id.to_owned()),
            "{method} {template}: missing or duplicate operationId {id:?}"
        );
        let wanted: BTreeSet<String> = template
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            spec.path_params(method, template),
            wanted,
            "{method} {template}: path parameters"
        );

        let body = minimal_body(method, template);
        assert!(
            body.is_some() || op["requestBody"]["required"] != true,
            "{method} {template} requires a body: give it one in minimal_body"
        );
        let path = fill(template);
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        // Log-out ends the session it is sent with: it gets a session of its own, so that the
        // operations after it still run signed in.
        let own_session;
        let token = if template == "/api/auth/logout" {
            let (_, session) = p
                .call(
                    Method::POST,
                    "/api/auth/login",
                    None,
                    Some(json!({ "email": "spec.reader@example.com", "password": "correct horse battery" })),
                )
                .await;
            own_session = session["token"].as_str().expect("a session token").to_owned();
            &own_session
        } else {
            &token
        };
        let (status, resp) = p.call(m, &path, Some(token), body).await;
        assert_ne!(
            resp,
            json!({ "error": { "code": "not_found", "message": "no such route" } }),
            "{method} {path} fell through to the router's fallback"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {resp}");
        failures.extend(spec.check(method, template, status, &resp));
    }
    assert!(
        failures.is_empty(),
        "answers that contradict the document:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn answers_on_real_objects_match_the_documented_schemas() {
    let git = GitServer::start().await;
    let _repo = git.create_repo("docs", &fixture("static"));
    let p = Platform::start().await;
    let spec = served_spec(&p).await;
    let mut failures = Vec::new();

    // Runs one call and checks the answer against the document; returns the body.
    macro_rules! call {
        ($method:ident, $template:expr, $path:expr, $token:expr, $body:expr, $want:expr) => {{
            let (status, body) = p.call(Method::$method, &$path, $token, $body).await;
            assert_eq!(status, $want, "{} {}: {body}", stringify!($method), $path);
            failures.extend(spec.check(stringify!($method), $template, status, &body));
            body
        }};
    }
    let code = |body: &Value| body["error"]["code"].as_str().unwrap_or_default().to_owned();

    // Accounts and tokens.
    let signup = json!({ "name": "Ann", "email": "ann@example.com", "password": "correct horse battery" });
    let session = call!(
        POST,
        "/api/auth/signup",
        "/api/auth/signup",
        None,
        Some(signup),
        StatusCode::CREATED
    );
    let login = json!({ "email": "ann@example.com", "password": "correct horse battery" });
    call!(
        POST,
        "/api/auth/login",
        "/api/auth/login",
        None,
        Some(login),
        StatusCode::OK
    );
    let token = session["token"].as_str().expect("token").to_owned();
    let t = Some(token.as_str());
    call!(GET, "/api/me", "/api/me", None, None, StatusCode::UNAUTHORIZED);
    call!(GET, "/api/me", "/api/me", t, None, StatusCode::OK);
    let created = call!(
        POST,
        "/api/tokens",
        "/api/tokens",
        t,
        Some(json!({ "name": "ci" })),
        StatusCode::CREATED
    );
    let api_token = created["token"].as_str().expect("secret").to_owned();
    call!(
        GET,
        "/api/me",
        "/api/me",
        Some(api_token.as_str()),
        None,
        StatusCode::OK
    );
    let listed = call!(GET, "/api/tokens", "/api/tokens", t, None, StatusCode::OK);
    assert!(listed["tokens"][0]["last_used_at"].is_string(), "{listed}");
    let path = format!("/api/tokens/{}", created["id"].as_str().expect("id"));
    call!(DELETE, "/api/tokens/{id}", path, t, None, StatusCode::NO_CONTENT);
    call!(DELETE, "/api/tokens/{id}", path, t, None, StatusCode::NOT_FOUND);

    // GitHub, with no App connected (the server's GitHub API URL is left at its default: nothing
    // here contacts GitHub).
    let status = call!(GET, "/api/github", "/api/github", t, None, StatusCode::OK);
    assert_eq!(status, json!({ "connected": false, "app": null, "installations": [] }));
    for template in ["/api/github/install-url", "/api/github/authorize-url"] {
        let body = call!(GET, template, template, t, None, StatusCode::CONFLICT);
        assert_eq!(code(&body), "github_not_connected", "{body}");
    }

    // Ann signed up first: she is the administrator.
    let deliveries = "/api/admin/webhook-deliveries";
    let list = call!(GET, deliveries, deliveries, t, None, StatusCode::OK);
    assert_eq!(list, json!({ "deliveries": [] }));
    let limited = format!("{deliveries}?limit=5");
    call!(GET, deliveries, limited, t, None, StatusCode::OK);
    let malformed = format!("{deliveries}?limit=many");
    let body = call!(GET, deliveries, malformed, t, None, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "invalid_query");
    let connect = "/api/admin/github/connect";
    let started = call!(POST, connect, connect, t, None, StatusCode::OK);
    let link = started["url"].as_str().unwrap_or_default();
    assert!(
        link.starts_with(&format!("{}/github/connect?state=", p.base)),
        "{started}"
    );
    assert_eq!(
        started["manifest"]["hook_attributes"]["url"],
        format!("{}/webhooks/github", p.base)
    );
    let org = Some(json!({ "organization": "acme-web" }));
    call!(POST, connect, connect, t, org, StatusCode::OK);
    for (request, want) in [
        (json!({ "organization": "not an org" }), "invalid_organization"),
        (json!({ "organization": "" }), "invalid_organization"),
        (json!({ "org": "acme" }), "invalid_request"),
    ] {
        let body = call!(
            POST,
            connect,
            connect,
            t,
            Some(request),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(code(&body), want, "{body}");
    }

    // Anyone else is refused the admin operations, but sees GitHub's status.
    let bob = p.signup("Bob").await;
    let b = Some(bob.as_str());
    let status = call!(GET, "/api/github", "/api/github", b, None, StatusCode::OK);
    assert_eq!(status["connected"], false);
    let body = call!(POST, connect, connect, b, None, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "forbidden");
    let body = call!(GET, deliveries, deliveries, b, None, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "forbidden");

    // A project on a local repository. Its one deployment fails while cloning: nothing is built.
    let new = json!({
        "name": "Docs Site",
        "git_url": git.url("docs"),
        "framework": "static",
        "root_dir": "./",
        "env": { "GREETING": "hello there" },
    });
    let project = call!(
        POST,
        "/api/projects",
        "/api/projects",
        t,
        Some(new),
        StatusCode::CREATED
    );
    let project = &project["project"];
    assert_eq!(project["slug"], "docs-site");
    assert_eq!(project["branch"], "main", "the repository's default branch");
    assert_eq!(project["env_keys"], json!(["GREETING"]));
    assert_eq!(project["github_repository"], Value::Null);
    assert!(
        !project.to_string().contains("hello there"),
        "env values are write-only"
    );
    let taken = json!({ "name": "Other", "slug": "docs-site", "git_url": git.url("docs") });
    let body = call!(
        POST,
        "/api/projects",
        "/api/projects",
        t,
        Some(taken),
        StatusCode::CONFLICT
    );
    assert_eq!(code(&body), "slug_taken");
    // A GitHub repository instead of a git URL: exactly one of the two.
    for (request, want) in [
        (
            json!({ "name": "Gh", "github_repository": "octo/site" }),
            "repository_not_found",
        ),
        (
            json!({ "name": "Gh", "github_repository": "octo/site", "git_url": git.url("docs") }),
            "invalid_request",
        ),
        (json!({ "name": "Gh", "git_url": null }), "invalid_request"),
    ] {
        let body = call!(
            POST,
            "/api/projects",
            "/api/projects",
            t,
            Some(request),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(code(&body), want, "{body}");
    }
    let blog = json!({ "name": "Blog", "git_url": git.url("docs") });
    call!(
        POST,
        "/api/projects",
        "/api/projects",
        t,
        Some(blog),
        StatusCode::CREATED
    );
    let rename = Some(json!({ "slug": "docs-site" }));
    let body = call!(
        PATCH,
        "/api/projects/{slug}",
        "/api/projects/blog",
        t,
        rename,
        StatusCode::CONFLICT
    );
    assert_eq!(code(&body), "slug_taken");
    call!(GET, "/api/projects", "/api/projects", t, None, StatusCode::OK);
    let slug_path = "/api/projects/docs-site";
    call!(GET, "/api/projects/{slug}", slug_path, t, None, StatusCode::OK);

    // PATCH: `null` resets a build setting, env is merged and `null` deletes a variable.
    let patch = json!({ "framework": null, "build_command": "true", "env": { "GREETING": null, "API_URL": "x" } });
    let patched = call!(PATCH, "/api/projects/{slug}", slug_path, t, Some(patch), StatusCode::OK);
    assert_eq!(patched["project"]["framework"], Value::Null);
    assert_eq!(patched["project"]["build_command"], "true");
    assert_eq!(patched["project"]["env_keys"], json!(["API_URL"]));
    let invalid = [
        (json!({ "name": " " }), "invalid_name"),
        (json!({ "slug": "api" }), "invalid_slug"),
        (json!({ "git_url": "ssh://example.com/x.git" }), "invalid_git_url"),
        (json!({ "branch": "a..b" }), "invalid_branch"),
        (json!({ "branch": "no-such-branch" }), "branch_not_found"),
        (json!({ "root_dir": "../up" }), "invalid_path"),
        (json!({ "framework": "rails" }), "invalid_framework"),
        (json!({ "install_command": "a\u{0}b" }), "invalid_command"),
        (json!({ "env": { "PATH": "/x" } }), "invalid_env"),
        (json!({ "bogus": 1 }), "invalid_request"),
        (json!({ "framework": 7 }), "invalid_request"),
    ];
    for (patch, want) in invalid {
        let body = call!(
            PATCH,
            "/api/projects/{slug}",
            slug_path,
            t,
            Some(patch),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(code(&body), want, "{body}");
    }

    // Custom domains (no verification here: it would ask the system's resolver).
    let domains = "/api/projects/{slug}/domains";
    let domains_path = format!("{slug_path}/domains");
    let added = call!(
        POST,
        domains,
        domains_path,
        t,
        Some(json!({ "name": "Shop.Example.COM" })),
        StatusCode::CREATED
    );
    assert_eq!(added["domain"]["name"], "shop.example.com");
    assert_eq!(added["domain"]["state"], "pending_verification");
    assert_eq!(added["domain"]["records"][1]["value"], "docs-site.localhost");
    let body = call!(
        POST,
        domains,
        domains_path,
        t,
        Some(json!({ "name": "shop.example.com" })),
        StatusCode::CONFLICT
    );
    assert_eq!(code(&body), "domain_exists");
    for (request, want) in [
        (json!({ "name": "1.2.3.4" }), "invalid_domain"),
        (json!({ "name": "x.docs-site.localhost" }), "invalid_domain"),
        (json!({ "name": "example.com" }), "apex_needs_public_ips"),
        (
            json!({ "name": "www.example.com", "redirect_to": "example.com" }),
            "invalid_redirect",
        ),
        (json!({ "domain": "x.example.com" }), "invalid_request"),
    ] {
        let body = call!(
            POST,
            domains,
            domains_path,
            t,
            Some(request),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(code(&body), want, "{body}");
    }
    call!(GET, domains, domains_path, t, None, StatusCode::OK);
    let one = "/api/projects/{slug}/domains/{name}";
    let one_path = format!("{domains_path}/shop.example.com");
    call!(GET, one, one_path, t, None, StatusCode::OK);
    call!(DELETE, one, one_path, t, None, StatusCode::NO_CONTENT);
    call!(GET, one, one_path, t, None, StatusCode::NOT_FOUND);

    // Body problems, sent raw: not JSON, and JSON that does not parse.
    for (content_type, raw, want, code_want) in [
        (
            None,
            "name=x",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (Some("application/json"), "{", StatusCode::BAD_REQUEST, "invalid_json"),
    ] {
        let mut req = p
            .http
            .post(format!("{}/api/tokens", p.base))
            .bearer_auth(&token)
            .body(raw);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("a JSON error");
        assert_eq!((status, code(&body).as_str()), (want, code_want), "{body}");
        failures.extend(spec.check("POST", "/api/tokens", status, &body));
    }

    // Deployments: refused ones, and one of a branch the repository lacks, which fails while
    // cloning: nothing is built.
    let deploys = "/api/projects/docs-site/deployments";
    for (request, want) in [
        (json!({ "commit": "abc123" }), "invalid_commit"),
        (json!({ "branch": "-x" }), "invalid_branch"),
        (json!({ "target": "production" }), "invalid_request"),
    ] {
        let body = call!(
            POST,
            "/api/projects/{slug}/deployments",
            deploys,
            t,
            Some(request),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(code(&body), want, "{body}");
    }
    let preview = Some(json!({ "branch": "Feature/Login_Page" }));
    let created = call!(
        POST,
        "/api/projects/{slug}/deployments",
        deploys,
        t,
        preview,
        StatusCode::ACCEPTED
    );
    let d = &created["deployment"];
    assert_eq!(
        (d["target"].as_str(), d["trigger"].as_str(), &d["commit_author"]),
        (Some("preview"), Some("api"), &Value::Null),
        "{d}"
    );
    assert_eq!(
        d["url"],
        format!("http://feature-login-page--docs-site.localhost:{}/", p.port)
    );
    let id = d["id"].as_str().expect("id").to_owned();
    let failed = p.wait_final(&token, &id).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let path = format!("/api/deployments/{id}");
    call!(GET, "/api/deployments/{id}", path, t, None, StatusCode::OK);
    let logs = format!("/api/deployments/{id}/logs");
    call!(GET, "/api/deployments/{id}/logs", logs, t, None, StatusCode::OK);
    let cancel = format!("/api/deployments/{id}/cancel");
    let body = call!(
        POST,
        "/api/deployments/{id}/cancel",
        cancel,
        t,
        None,
        StatusCode::CONFLICT
    );
    assert_eq!(code(&body), "not_cancelable");
    let promote = format!("/api/deployments/{id}/promote");
    let body = call!(
        POST,
        "/api/deployments/{id}/promote",
        promote,
        t,
        None,
        StatusCode::CONFLICT
    );
    assert_eq!(code(&body), "not_ready");
    let list = call!(
        GET,
        "/api/projects/{slug}/deployments",
        deploys,
        t,
        None,
        StatusCode::OK
    );
    assert_eq!(list["deployments"].as_array().map(Vec::len), Some(1), "{list}");

    call!(
        DELETE,
        "/api/projects/{slug}",
        slug_path,
        t,
        None,
        StatusCode::NO_CONTENT
    );
    call!(GET, "/api/projects/{slug}", slug_path, t, None, StatusCode::NOT_FOUND);

    assert!(
        failures.is_empty(),
        "answers that contradict the document:\n{}",
        failures.join("\n")
    );
}
