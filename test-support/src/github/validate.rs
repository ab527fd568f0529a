//! Requests held to the description: headers, parameters and the JSON body.

use super::{API_VERSIONS, Ctx, Reply, Route, Spec, parse_form};
use axum::http::header;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// `User-Agent`, `X-GitHub-Api-Version` and `Accept`.
pub(super) fn check_headers(cx: &mut Ctx) -> Option<Reply> {
    if cx.header("user-agent").is_none_or(|ua| ua.trim().is_empty()) {
        cx.violate("no User-Agent header (GitHub rejects such requests)");
        return Some(Reply::error(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        ));
    }
    if let Some(version) = cx.headers.get("x-github-api-version") {
        let version = version.to_str().unwrap_or("<non-ASCII>").to_owned();
        if !API_VERSIONS.contains(&version.trim()) {
            cx.violate(format!(
                "X-GitHub-Api-Version {version:?} is not one GitHub accepts ({API_VERSIONS:?})"
            ));
            return Some(Reply::error(400, &format!("API version '{version}' is not supported.")));
        }
    }
    if let Some(accept) = cx.headers.get(header::ACCEPT) {
        let accept = accept.to_str().unwrap_or("").to_owned();
        if !accept_is_json(&accept) {
            cx.violate(format!("Accept {accept:?} is not JSON-compatible"));
            return Some(Reply::error(415, "Unsupported 'Accept' header"));
        }
    }
    None
}

fn accept_is_json(accept: &str) -> bool {
    accept.split(',').any(|item| {
        let media = item.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(media.as_str(), "*/*" | "application/*" | "application/json")
            || (media.starts_with("application/vnd.github") && media.ends_with("json"))
    })
}

/// The values of a request's parameters.
#[derive(Default)]
pub(super) struct Params {
    pub(super) path: HashMap<String, String>,
    pub(super) query: Vec<(String, String)>,
}

impl Params {
    pub(super) fn path(&self, name: &str) -> &str {
        self.path.get(name).map_or("", String::as_str)
    }

    pub(super) fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

type Rejection = (Reply, Vec<String>);

/// Path parameters non-empty and fitting their schema; query parameters declared, fitting, present when
/// required.
pub(super) fn check_parameters(
    spec: &Spec,
    route: &Route,
    op: &Value,
    path_params: &[(String, String)],
    query: &str,
) -> Result<Params, Rejection> {
    let declared: Vec<&Value> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|p| spec.resolve(p)).collect())
        .unwrap_or_default();
    let params = Params {
        path: path_params.iter().cloned().collect(),
        query: parse_form(query),
    };

    let mut not_found = Vec::new();
    for (name, value) in path_params {
        if value.is_empty() {
            not_found.push(format!("path parameter {{{name}}} is empty"));
            continue;
        }
        let declaration = declared
            .iter()
            .find(|p| p["in"] == "path" && p["name"] == name.as_str());
        if let Some(p) = declaration
            && let Err(errors) = spec.check_value(
                &format!("{}:path:{name}", route.operation_id),
                &p["schema"],
                std::slice::from_ref(value),
            )
        {
            not_found.push(format!("path parameter {{{name}}} = {value:?}: {}", errors.join("; ")));
        }
    }
    if !not_found.is_empty() {
        return Err((Reply::error(404, "Not Found"), not_found));
    }

    let mut problems = Vec::new();
    let mut errors = Vec::new();
    let mut names: Vec<&str> = params.query.iter().map(|(k, _)| k.as_str()).collect();
    names.dedup();
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            continue;
        }
        let declaration = declared.iter().find(|p| p["in"] == "query" && p["name"] == name);
        let Some(p) = declaration else {
            problems.push(format!(
                "query parameter {name:?} is not declared by {}",
                route.operation_id
            ));
            errors.push(
                json!({ "resource": "Query", "field": name, "code": "invalid", "message": "unknown query parameter" }),
            );
            continue;
        };
        let values: Vec<String> = params
            .query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect();
        if let Err(e) = spec.check_value(&format!("{}:query:{name}", route.operation_id), &p["schema"], &values) {
            problems.push(format!("query parameter {name} = {values:?}: {}", e.join("; ")));
            errors.push(json!({ "resource": "Query", "field": name, "code": "invalid", "message": e.join("; ") }));
        }
    }
    for p in &declared {
        if p["in"] == "query" && p["required"] == true {
            let name = p["name"].as_str().unwrap_or_default();
            if params.query(name).is_none() {
                problems.push(format!("required query parameter {name:?} is missing"));
                errors.push(json!({ "resource": "Query", "field": name, "code": "missing_field" }));
            }
        }
    }
    if problems.is_empty() {
        Ok(params)
    } else {
        Err((Reply::invalid("Validation Failed", errors), problems))
    }
}

/// The request body: JSON validating against the operation's `requestBody` schema, or nothing where the
/// operation takes none. Answers `Null` for an empty body.
pub(super) fn check_body(spec: &Spec, route: &Route, op: &Value, body: &[u8]) -> Result<Value, Rejection> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    let Some(request_body) = op.get("requestBody").map(|b| spec.resolve(b)) else {
        if empty {
            return Ok(Value::Null);
        }
        return Err((
            Reply::error(400, "This endpoint does not take a request body"),
            vec![format!(
                "{} takes no request body, but one was sent",
                route.operation_id
            )],
        ));
    };
    let Some(schema) = request_body.pointer("/content/application~1json/schema") else {
        // Not a JSON body (e.g. text/plain markdown, octet-stream uploads): accepted as is.
        return Ok(Value::Null);
    };
    if empty {
        if request_body["required"] == true {
            return Err((
                Reply::invalid("Invalid request.\n\nA request body is required.", Vec::new()),
                vec![format!(
                    "{} requires a JSON request body, none was sent",
                    route.operation_id
                )],
            ));
        }
        return Ok(Value::Null);
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err((
                Reply::error(400, "Problems parsing JSON"),
                vec![format!("the body is not JSON: {e}")],
            ));
        }
    };
    let key = format!("{}:body", route.operation_id);
    let validator = match spec.validator(&key, schema) {
        Ok(v) => v,
        Err(e) => {
            return Err((
                Reply::error(500, "mock GitHub could not compile the request schema"),
                vec![format!("mock limitation: the requestBody schema does not compile: {e}")],
            ));
        }
    };
    let mut problems = Vec::new();
    let mut errors = Vec::new();
    for error in validator.iter_errors(&value) {
        let at = error.instance_path().to_string();
        problems.push(format!("body {}: {error}", if at.is_empty() { "/" } else { &at }));
        errors.push(json!({ "resource": "Request", "field": at, "code": "invalid", "message": error.to_string() }));
    }
    if problems.is_empty() {
        Ok(value)
    } else {
        let message = format!(
            "Invalid request.\n\n{}",
            errors
                .iter()
                .map(|e| format!(
                    "For '{}', {}",
                    e["field"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Err((Reply::invalid(&message, errors), problems))
    }
}
