//! Angular: the output directory is whatever the build target in angular.json says, in the
//! layout of the builder it names.

use super::files::{known_path, read_regular_file, safe_path, strip_bom};
use super::package_json::PackageJson;
use super::{Decision, DetectError, show_candidates};
use platform::RelPath;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::path::Path;

const ANGULAR_JSON: &str = "angular.json";

/// The parts of angular.json that locate the build output.
#[derive(Debug, Deserialize)]
struct AngularWorkspace {
    #[serde(rename = "defaultProject", default)]
    default_project: Option<Value>,
    #[serde(default)]
    projects: Option<OrderedObject>,
}

/// A JSON object's entries in file order: "the first project" means the first one written, and
/// serde_json's own map (without the `preserve_order` feature) sorts its keys.
#[derive(Debug, Default)]
struct OrderedObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;

        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = OrderedObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    entries.push((key, map.next_value::<Value>()?));
                }
                Ok(OrderedObject(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor)
    }
}

impl AngularWorkspace {
    /// `defaultProject` when it names a listed project, else the first project listed.
    fn selected_project(&self) -> Option<(&str, &Value)> {
        let projects = &self.projects.as_ref()?.0;
        let default = self.default_project.as_ref().and_then(Value::as_str);
        projects
            .iter()
            .find(|(name, _)| Some(name.as_str()) == default)
            .or_else(|| projects.first())
            .map(|(name, config)| (name.as_str(), config))
    }
}

/// What an Angular builder does with a string `outputPath`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AngularBuilder {
    /// The esbuild `application` builder (Angular 17+) writes into `<outputPath>/browser`.
    Application,
    /// The older `browser` builders write into `<outputPath>` itself.
    Browser,
    /// A third-party builder: try both layouts.
    Unknown,
}

impl AngularBuilder {
    fn of(builder: Option<&str>) -> Self {
        match builder {
            Some(b) if b.ends_with(":application") => Self::Application,
            Some(b) if b.ends_with(":browser") || b.ends_with(":browser-esbuild") => Self::Browser,
            _ => Self::Unknown,
        }
    }

    /// Where this builder puts the browser files when its `outputPath` is `out`.
    fn candidates(self, out: RelPath) -> Vec<RelPath> {
        let browser = out.join(&known_path("browser"));
        match self {
            Self::Application => vec![browser],
            Self::Browser => vec![out],
            Self::Unknown => vec![browser, out],
        }
    }
}

/// Reads the build target's `outputPath` from angular.json. A missing or unparsable angular.json
/// falls back to the Angular 17+ layout named after the package; an outputPath (or project name)
/// that would leave the project is an error.
pub(super) fn angular_output(
    root: &Path,
    package: Option<&PackageJson>,
) -> Result<Decision<Vec<RelPath>>, DetectError> {
    let Some(bytes) = read_regular_file(root, ANGULAR_JSON)? else {
        return Ok(angular_fallback(package, "no angular.json"));
    };
    let workspace: AngularWorkspace = match serde_json::from_slice(strip_bom(&bytes)) {
        Ok(workspace) => workspace,
        Err(e) => {
            let why = DetectError::invalid_json(ANGULAR_JSON, &e).to_string();
            return Ok(angular_fallback(package, &why));
        }
    };
    let Some((project, config)) = workspace.selected_project() else {
        return Ok(angular_fallback(package, "angular.json lists no projects"));
    };
    let target = config
        .pointer("/architect/build")
        .or_else(|| config.pointer("/targets/build"));
    let builder_name = target.and_then(|t| t.get("builder")).and_then(Value::as_str);
    let builder = AngularBuilder::of(builder_name);
    let default_out = || safe_path(ANGULAR_JSON, &format!("dist/{project}"));

    let (candidates, source) = match target.and_then(|t| t.pointer("/options/outputPath")) {
        Some(Value::Object(output)) => (vec![angular_object_output(output, default_out)?], "outputPath"),
        Some(Value::String(output)) => (builder.candidates(safe_path(ANGULAR_JSON, output)?), "outputPath"),
        _ => (builder.candidates(default_out()?), "no outputPath, the default"),
    };
    let builder_shown = builder_name.unwrap_or("no builder");
    let reason = format!(
        "Output directory: {} (angular.json project \"{project}\", {source}, {builder_shown})",
        show_candidates(&candidates)
    );
    Ok(Decision::new(candidates, reason))
}

/// `outputPath: { base, browser }` → `<base>/<browser>`; `browser` defaults to `"browser"`, and
/// `""` puts the files in `base` itself.
fn angular_object_output(
    output: &Map<String, Value>,
    default_base: impl FnOnce() -> Result<RelPath, DetectError>,
) -> Result<RelPath, DetectError> {
    let base = match output.get("base").and_then(Value::as_str) {
        Some(base) => safe_path(ANGULAR_JSON, base)?,
        None => default_base()?,
    };
    let browser = output.get("browser").and_then(Value::as_str).unwrap_or("browser");
    Ok(base.join(&safe_path(ANGULAR_JSON, browser)?))
}

/// Without a usable angular.json, guess the Angular 17+ default `dist/<package name>/browser`,
/// then the older `dist/<package name>`. A name that is not a plain relative path gives `dist`.
fn angular_fallback(package: Option<&PackageJson>, why: &str) -> Decision<Vec<RelPath>> {
    let name = package
        .and_then(|p| p.name.as_deref())
        .and_then(|name| RelPath::parse(name).ok())
        .filter(|name| !name.is_root());
    let candidates = match &name {
        Some(name) => {
            let out = known_path("dist").join(name);
            vec![out.join(&known_path("browser")), out]
        }
        None => vec![known_path("dist")],
    };
    let guess = match &name {
        Some(name) => format!("the Angular default for package \"{name}\""),
        None => "no usable package name".to_owned(),
    };
    let reason = format!("Output directory: {} ({why}; {guess})", show_candidates(&candidates));
    Decision::new(candidates, reason)
}
