//! GitHub's OpenAPI description: loaded once, its routes matched, its schemas compiled as JSON Schema.

use super::{API_VERSIONS, MULTI_SEGMENT_PARAMS, SPEC_FILE, SPEC_VERSION, percent_decode};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The directory `scripts/test-data` installs into.
pub fn test_data_dir() -> PathBuf {
    match std::env::var_os("CLOUDRUNR_TEST_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").expect("HOME is not set (and CLOUDRUNR_TEST_DATA is not either)");
            Path::new(&home).join(".cache/cloudrunr/test-data")
        }
    }
}

/// Checks that the mock can serve every operation of the description (for each accepted API version):
/// every `requestBody` and parameter schema compiles as JSON Schema, every JSON success answer has an
/// example (operations answering only a redirect or a non-JSON body are skipped: the mock cannot serve
/// them). Answers the problems found, so its own test (`tests/selftest/github.rs`) notices a description the
/// mock does not cope with.
pub fn check_description() -> Vec<String> {
    let mut problems = Vec::new();
    for version in API_VERSIONS {
        let spec = spec(version);
        for routes in spec.routes.values() {
            for route in routes {
                let op = spec.operation(route);
                let at = format!("{version} {} {} ({})", route.method, route.template, route.operation_id);
                if let Some(schema) = op
                    .get("requestBody")
                    .map(|b| spec.resolve(b))
                    .and_then(|b| b.pointer("/content/application~1json/schema"))
                    && let Err(e) = compile_schema(&spec.doc, schema)
                {
                    problems.push(format!("{at}: requestBody schema: {e}"));
                }
                for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
                    let p = spec.resolve(p);
                    if let Err(e) = compile_schema(&spec.doc, &p["schema"]) {
                        problems.push(format!("{at}: parameter {}: {e}", p["name"]));
                    }
                }
                // Downloads answer only a redirect (302) or a non-JSON body; the mock does not serve those.
                let redirect_only = op["responses"].as_object().is_some_and(|r| {
                    r.keys().all(|code| !code.starts_with('2')) && r.keys().any(|c| c.starts_with('3'))
                });
                if let Err(e) = spec.success_example(op)
                    && !e.contains("is not JSON")
                    && !redirect_only
                {
                    problems.push(format!("{at}: {e}"));
                }
            }
        }
    }
    problems.sort();
    problems
}

/// GitHub's REST API description, as one API version sees it, with its routes and compiled validators.
pub(super) struct Spec {
    pub(super) doc: Value,
    /// Per upper-case method.
    pub(super) routes: HashMap<String, Vec<Route>>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

pub(super) struct Route {
    pub(super) template: String,
    pub(super) method: String,
    pub(super) operation_id: String,
    segments: Vec<Vec<Part>>,
}

/// Path parameter names and values, in template order.
type PathParams = Vec<(String, String)>;

#[derive(Debug)]
enum Part {
    Lit(String),
    Param(String),
}

/// The description for an API version: parsed once per process; `2026-03-10` is the same with that
/// version's `x-github-breaking-changes` applied.
pub(super) fn spec(version: &str) -> &'static Spec {
    static BASE: OnceLock<Spec> = OnceLock::new();
    static V2026: OnceLock<Spec> = OnceLock::new();
    let base = BASE.get_or_init(|| Spec::new(load_description()));
    if version == API_VERSIONS[0] {
        return base;
    }
    V2026.get_or_init(|| {
        let mut doc = base.doc.clone();
        apply_breaking_changes(&mut doc, API_VERSIONS[1]);
        Spec::new(doc)
    })
}

fn load_description() -> Value {
    let path = test_data_dir().join(SPEC_FILE);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "GitHub's OpenAPI description is missing at {} ({e}): run scripts/test-data",
            path.display()
        )
    });
    let doc: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): run scripts/test-data", path.display()));
    let version = doc.pointer("/info/version").and_then(Value::as_str).unwrap_or("?");
    assert!(
        version == SPEC_VERSION,
        "{} is @octokit/openapi {version}, the mock expects {SPEC_VERSION}: run scripts/test-data",
        path.display()
    );
    doc
}

impl Spec {
    pub(super) fn new(doc: Value) -> Spec {
        let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
        let paths = doc["paths"].as_object().expect("description has paths");
        for (template, item) in paths {
            let Some(item) = item.as_object() else { continue };
            for (method, op) in item {
                if !["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                    continue;
                }
                let operation_id = op["operationId"].as_str().unwrap_or(template).to_owned();
                let segments = template.split('/').skip(1).map(parse_segment_template).collect();
                routes.entry(method.to_uppercase()).or_default().push(Route {
                    template: template.clone(),
                    method: method.clone(),
                    operation_id,
                    segments,
                });
            }
        }
        Spec {
            doc,
            routes,
            validators: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn operation(&self, route: &Route) -> &Value {
        &self.doc["paths"][&route.template][&route.method]
    }

    /// The route for a method and (percent-decoded) path segments, and the path parameters' values.
    /// Literal segments win over parameters; a trailing file-path or git-ref parameter may span several
    /// segments when nothing else matches (`contents/{path}`, `git/ref/{ref}`), as GitHub allows.
    pub(super) fn find_route(&self, method: &str, segments: &[String]) -> Option<(&Route, PathParams)> {
        let routes = self.routes.get(method)?;
        let mut best: Option<(Vec<u8>, &Route, PathParams)> = None;
        for route in routes.iter().filter(|r| r.segments.len() == segments.len()) {
            let mut score = Vec::with_capacity(segments.len());
            let mut params = Vec::new();
            let matched = route
                .segments
                .iter()
                .zip(segments)
                .all(|(parts, seg)| match_segment(parts, seg, &mut params).map(|s| score.push(s)).is_some());
            if matched && best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                best = Some((score, route, params));
            }
        }
        if best.is_none() {
            for route in routes.iter().filter(|r| r.segments.len() < segments.len()) {
                let Some((Part::Param(last), [])) = route.segments.last().and_then(|p| p.split_first()) else {
                    continue;
                };
                if !MULTI_SEGMENT_PARAMS.contains(&last.as_str()) {
                    continue;
                }
                let n = route.segments.len() - 1;
                let mut score = Vec::new();
                let mut params = Vec::new();
                let matched = route.segments[..n]
                    .iter()
                    .zip(segments)
                    .all(|(parts, seg)| match_segment(parts, seg, &mut params).map(|s| score.push(s)).is_some());
                if matched && best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                    params.push((last.clone(), segments[n..].join("/")));
                    best = Some((score, route, params));
                }
            }
        }
        best.map(|(_, route, params)| (route, params))
    }

    /// Follows `$ref`s (`#/components/...`).
    pub(super) fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
                    Some(target) => v = target,
                    None => return v,
                },
                None => return v,
            }
        }
        v
    }

    /// The documented success status and its example (`None` when the answer has no content).
    pub(super) fn success_example(&self, op: &Value) -> Result<(u16, Option<Value>), String> {
        let responses = op["responses"].as_object().ok_or("the operation has no responses")?;
        let (status, response) = responses
            .iter()
            .filter_map(|(code, r)| code.parse::<u16>().ok().map(|c| (c, r)))
            .filter(|(c, _)| (200..300).contains(c))
            .min_by_key(|(c, _)| *c)
            .ok_or("no 2xx response is documented")?;
        let response = self.resolve(response);
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return Ok((status, None));
        };
        let Some(json) = content.get("application/json") else {
            return Err(format!(
                "the {status} response is not JSON ({:?})",
                content.keys().collect::<Vec<_>>()
            ));
        };
        let examples = json.get("examples").and_then(Value::as_object);
        let example = examples.and_then(|e| e.get("default").or_else(|| e.values().next()));
        match example.map(|e| self.resolve(e)).and_then(|e| e.get("value")) {
            Some(value) => Ok((status, Some(value.clone()))),
            None => Err(format!("the {status} response has a schema but no example")),
        }
    }

    pub(super) fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.validators.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(v.clone());
        }
        let compiled = Arc::new(compile_schema(&self.doc, schema)?);
        self.validators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), compiled.clone());
        Ok(compiled)
    }

    /// Validates a parameter's string value(s) against its schema, coerced to the schema's type.
    pub(super) fn check_value(&self, key: &str, schema: &Value, values: &[String]) -> Result<(), Vec<String>> {
        let resolved = self.resolve(schema);
        let coerce = |schema: &Value, s: &str| -> Value {
            let schema = self.resolve(schema);
            match schema["type"].as_str() {
                Some("integer") => s.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(s)),
                Some("number") => s.parse::<f64>().map(Value::from).unwrap_or_else(|_| json!(s)),
                Some("boolean") => match s {
                    "true" => json!(true),
                    "false" => json!(false),
                    _ => json!(s),
                },
                _ => json!(s),
            }
        };
        let instance = if resolved["type"] == "array" {
            Value::Array(
                values
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(|v| coerce(&resolved["items"], v))
                    .collect(),
            )
        } else {
            if values.len() > 1 {
                return Err(vec![format!("given {} times", values.len())]);
            }
            coerce(resolved, values.first().map_or("", String::as_str))
        };
        let validator = self.validator(key, schema).map_err(|e| vec![format!("mock: {e}")])?;
        let errors: Vec<String> = validator.iter_errors(&instance).map(|e| e.to_string()).collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

fn parse_segment_template(segment: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = segment;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        parts.push(Part::Param(rest[open + 1..close].to_owned()));
        rest = rest.get(close + 1..).unwrap_or("");
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(Part::Lit(rest.to_owned()));
    }
    parts
}

/// Matches one path segment; the score ranks literal (2) over mixed (1) over parameter (0) segments.
fn match_segment(parts: &[Part], segment: &str, params: &mut Vec<(String, String)>) -> Option<u8> {
    match parts {
        [Part::Lit(l)] => (l == segment).then_some(2),
        [Part::Param(p)] => {
            params.push((p.clone(), segment.to_owned()));
            Some(0)
        }
        _ => {
            let mut rest = segment;
            let mut found = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                match part {
                    Part::Lit(l) => rest = rest.strip_prefix(l.as_str())?,
                    Part::Param(p) => {
                        let end = match parts.get(i + 1) {
                            Some(Part::Lit(next)) => rest.find(next.as_str())?,
                            _ => rest.len(),
                        };
                        found.push((p.clone(), rest[..end].to_owned()));
                        rest = &rest[end..];
                    }
                }
            }
            if !rest.is_empty() {
                return None;
            }
            params.extend(found);
            Some(1)
        }
    }
}

pub(super) fn split_path(path: &str) -> Vec<String> {
    path.strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect()
}

/// Compiles an OpenAPI 3.0 schema (with `$ref`s into `#/components/schemas`) as JSON Schema draft 4.
fn compile_schema(doc: &Value, schema: &Value) -> Result<jsonschema::Validator, String> {
    let root = translate_schema(schema);
    let mut components = Map::new();
    let mut pending = Vec::new();
    collect_refs(&root, &mut pending);
    while let Some(reference) = pending.pop() {
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| format!("external $ref {reference}"))?;
        let mut tokens = pointer.split('/').skip(1);
        let (Some("components"), Some("schemas"), Some(name)) = (tokens.next(), tokens.next(), tokens.next()) else {
            return Err(format!("$ref outside #/components/schemas: {reference}"));
        };
        let name = name.replace("~1", "/").replace("~0", "~");
        if components.contains_key(&name) {
            continue;
        }
        let target = doc["components"]["schemas"]
            .get(&name)
            .ok_or_else(|| format!("dangling $ref {reference}"))?;
        let translated = translate_schema(target);
        collect_refs(&translated, &mut pending);
        components.insert(name, translated);
    }
    let document = json!({ "allOf": [root], "components": { "schemas": components } });
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&document)
        .map_err(|e| e.to_string())
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// OpenAPI 3.0 schema → JSON Schema draft 4: `nullable` becomes a `null` type (or an `anyOf` with one);
/// annotations and OpenAPI-only keywords (`example`, `x-*`, `discriminator`, `readOnly`, ...) go; `$ref`
/// siblings go (OpenAPI ignores them too); empty `required`/`enum` lists (invalid in draft 4) go.
fn translate_schema(v: &Value) -> Value {
    let Value::Object(map) = v else {
        return v.clone();
    };
    if let Some(r) = map.get("$ref") {
        return json!({ "$ref": r });
    }
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "example" | "examples" | "discriminator" | "readOnly" | "writeOnly" | "xml" | "externalDocs"
            | "deprecated" | "nullable" | "description" | "title" => {}
            k if k.starts_with("x-") => {}
            "properties" | "patternProperties" | "definitions" => {
                let translated: Map<String, Value> = value
                    .as_object()
                    .map(|m| m.iter().map(|(k, s)| (k.clone(), translate_schema(s))).collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(translated));
            }
            "items" | "additionalProperties" | "not" => {
                out.insert(key.clone(), translate_schema(value));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let translated = value
                    .as_array()
                    .map(|a| a.iter().map(translate_schema).collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(translated));
            }
            "required" | "enum" if value.as_array().is_some_and(Vec::is_empty) => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if map.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::Array(values)) = out.get_mut("enum")
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
        match out.get_mut("type") {
            Some(Value::String(t)) => {
                let t = std::mem::take(t);
                out.insert("type".into(), json!([t, "null"]));
            }
            Some(_) => {}
            None => return json!({ "anyOf": [Value::Object(out), { "type": "null" }] }),
        }
    }
    Value::Object(out)
}

/// Applies the description's `x-github-breaking-changes` for API versions up to `version` to operations
/// and components (JSON merge patches, or JSON Patch op lists).
fn apply_breaking_changes(doc: &mut Value, version: &str) {
    let mut targets: Vec<&mut Value> = Vec::new();
    let Value::Object(root) = doc else { return };
    for (key, section) in root.iter_mut() {
        match key.as_str() {
            "paths" => {
                for item in section.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                    targets.extend(item.as_object_mut().into_iter().flat_map(|m| m.values_mut()));
                }
            }
            "components" => {
                for group in section.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                    targets.extend(group.as_object_mut().into_iter().flat_map(|m| m.values_mut()));
                }
            }
            _ => {}
        }
    }
    for target in targets {
        let Some(changes) = target
            .get("x-github-breaking-changes")
            .and_then(Value::as_array)
            .cloned()
        else {
            continue;
        };
        for change in changes {
            if change["version"].as_str().is_none_or(|v| v > version) {
                continue;
            }
            match &change["patch"] {
                Value::Array(ops) => json_patch(target, ops),
                patch @ Value::Object(_) => merge_patch(target, patch),
                _ => {}
            }
        }
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("object");
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn json_patch(target: &mut Value, ops: &[Value]) {
    for op in ops {
        let (Some(kind), Some(path)) = (op["op"].as_str(), op["path"].as_str()) else {
            continue;
        };
        let Some((parent, last)) = path.rsplit_once('/') else {
            continue;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        let Some(parent) = target.pointer_mut(parent) else {
            continue;
        };
        match (kind, parent) {
            ("remove", Value::Object(m)) => {
                m.remove(&last);
            }
            ("remove", Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < a.len()
                {
                    a.remove(i);
                }
            }
            ("add" | "replace", Value::Object(m)) => {
                m.insert(last, op["value"].clone());
            }
            ("add" | "replace", Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>() {
                    if kind == "replace" && i < a.len() {
                        a[i] = op["value"].clone();
                    } else if i <= a.len() {
                        a.insert(i, op["value"].clone());
                    }
                } else if last == "-" {
                    a.push(op["value"].clone());
                }
            }
            _ => {}
        }
    }
}
