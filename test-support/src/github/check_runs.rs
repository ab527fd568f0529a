//! Check runs: their state as GitHub would show it, and the rules the description states in prose.

use super::{Call, CheckRunState, Ctx, Inner, Reply, node_id, put, rfc3339, stable_id};
use serde_json::{Map, Value, json};
use std::time::SystemTime;

impl Inner {
    /// `checks/create`, `checks/update`, `checks/get`: keeps every check run's state and bodies.
    pub(super) fn check_run(&self, cx: &mut Ctx, call: &Call<'_>, example: Value) -> Result<Value, Reply> {
        let owner = call.params.path("owner");
        let repo_name = call.params.path("repo");
        let full_name = format!("{owner}/{repo_name}");
        let mut st = self.state();
        let canonical = st
            .installations
            .values()
            .flat_map(|i| i.repos.iter())
            .find(|r| r.full_name.eq_ignore_ascii_case(&full_name))
            .map_or(full_name.clone(), |r| r.full_name.clone());

        if call.operation_id == "checks/create" {
            check_run_rules(cx, call.body, true)?;
            let id = st.next_check_run_id;
            st.next_check_run_id += 1;
            let mut run = CheckRunState {
                repo: canonical,
                id,
                bodies: Vec::new(),
                current: Map::new(),
                annotations: 0,
            };
            run.apply(call.body);
            let answer = self.check_run_json(example, &run);
            st.check_runs.push(run);
            return Ok(answer);
        }

        let id = call.params.path("check_run_id").parse::<u64>().unwrap_or(0);
        let Some(run) = st
            .check_runs
            .iter_mut()
            .find(|r| r.id == id && r.repo.eq_ignore_ascii_case(&full_name))
        else {
            cx.violate(format!("no check run {id} in repository {full_name}"));
            return Err(Reply::error(404, "Not Found"));
        };
        if call.operation_id == "checks/update" {
            check_run_rules(cx, call.body, false)?;
            run.apply(call.body);
        }
        Ok(self.check_run_json(example, run))
    }

    fn check_run_json(&self, mut v: Value, run: &CheckRunState) -> Value {
        let c = &run.current;
        let get = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
        let url = format!("{}/repos/{}/check-runs/{}", self.url, run.repo, run.id);
        put(&mut v, "id", json!(run.id));
        put(&mut v, "node_id", node_id("CheckRun", run.id));
        put(&mut v, "name", get("name"));
        put(&mut v, "head_sha", get("head_sha"));
        put(&mut v, "status", get("status"));
        put(&mut v, "conclusion", get("conclusion"));
        put(&mut v, "started_at", get("started_at"));
        put(&mut v, "completed_at", get("completed_at"));
        put(
            &mut v,
            "external_id",
            c.get("external_id").cloned().unwrap_or(json!("")),
        );
        put(
            &mut v,
            "details_url",
            c.get("details_url")
                .cloned()
                .unwrap_or_else(|| json!(format!("{}/apps/{}", self.url, self.app.slug))),
        );
        put(&mut v, "url", json!(url));
        put(
            &mut v,
            "html_url",
            json!(format!("{}/{}/runs/{}", self.url, run.repo, run.id)),
        );
        let output = c.get("output").cloned().unwrap_or_else(|| json!({}));
        put(
            &mut v,
            "output",
            json!({
                "title": output.get("title").cloned().unwrap_or(Value::Null),
                "summary": output.get("summary").cloned().unwrap_or(Value::Null),
                "text": output.get("text").cloned().unwrap_or(Value::Null),
                "annotations_count": run.annotations,
                "annotations_url": format!("{url}/annotations"),
            }),
        );
        let sha = c.get("head_sha").and_then(Value::as_str).unwrap_or("");
        put(
            &mut v,
            "check_suite",
            json!({ "id": stable_id(&format!("{}@{sha}", run.repo)) }),
        );
        put(&mut v, "pull_requests", json!([]));
        if let Some(app) = v.get_mut("app").filter(|a| a.is_object()) {
            self.patch_app(app);
        }
        v
    }
}

impl CheckRunState {
    /// Records an accepted body and folds it into the check run's state, as GitHub does.
    fn apply(&mut self, body: &Value) {
        self.bodies.push(body.clone());
        let Some(fields) = body.as_object() else {
            return;
        };
        for (k, v) in fields {
            if k == "actions" {
                continue;
            }
            if k == "output" {
                if let Some(annotations) = v.get("annotations").and_then(Value::as_array) {
                    self.annotations += annotations.len() as u64;
                }
                let mut out = v.clone();
                if let Some(o) = out.as_object_mut() {
                    o.remove("annotations");
                    o.remove("images");
                }
                self.current.insert(k.clone(), out);
                continue;
            }
            self.current.insert(k.clone(), v.clone());
        }
        let now = json!(rfc3339(SystemTime::now()));
        if fields.contains_key("conclusion") {
            self.current.insert("status".into(), json!("completed"));
        }
        if !self.current.contains_key("status") {
            self.current.insert("status".into(), json!("queued"));
        }
        if !self.current.contains_key("started_at") {
            self.current.insert("started_at".into(), now.clone());
        }
        if self.current["status"] == "completed" && !self.current.contains_key("completed_at") {
            self.current.insert("completed_at".into(), now);
        }
    }
}

/// What the check-run description states only in prose.
fn check_run_rules(cx: &mut Ctx, body: &Value, create: bool) -> Result<(), Reply> {
    let mut problems = Vec::new();
    if create {
        let sha = body.get("head_sha").and_then(Value::as_str).unwrap_or("");
        let hex = sha.bytes().all(|b| b.is_ascii_hexdigit());
        if !(hex && (sha.len() == 40 || sha.len() == 64)) {
            problems.push(("head_sha", format!("No commit found for SHA: {sha}")));
        }
    }
    let completing =
        body.get("status").and_then(Value::as_str) == Some("completed") || body.get("completed_at").is_some();
    if completing && body.get("conclusion").is_none() {
        problems.push((
            "conclusion",
            "conclusion is required with status completed or completed_at".to_owned(),
        ));
    }
    if body.get("conclusion").and_then(Value::as_str) == Some("stale") {
        problems.push(("conclusion", "Only GitHub can set the conclusion to stale".to_owned()));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let errors = problems
        .iter()
        .map(
            |(field, message)| json!({ "resource": "CheckRun", "field": field, "code": "invalid", "message": message }),
        )
        .collect();
    for (_, message) in &problems {
        cx.violate(format!("check run body: {message}"));
    }
    Err(Reply::invalid("Validation Failed", errors))
}
