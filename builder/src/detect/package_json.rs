//! package.json, read for the few fields that detection uses.

use super::DetectError;
use super::files::strip_bom;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

pub(super) const PACKAGE_JSON: &str = "package.json";

/// The fields of package.json that detection uses. Read leniently: a field of the wrong type is
/// ignored with a note in the build log, as npm itself mostly does.
#[derive(Debug, Default)]
pub(super) struct PackageJson {
    pub(super) name: Option<String>,
    pub(super) package_manager: Option<String>,
    dependencies: BTreeSet<String>,
    dev_dependencies: BTreeSet<String>,
    optional_dependencies: BTreeSet<String>,
    /// Scripts with a non-blank command.
    scripts: BTreeSet<String>,
    pub(super) notes: Vec<String>,
}

impl PackageJson {
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, DetectError> {
        let value: Value =
            serde_json::from_slice(strip_bom(bytes)).map_err(|e| DetectError::invalid_json(PACKAGE_JSON, &e))?;
        let Value::Object(fields) = value else {
            return Err(DetectError::NotAnObject {
                file: PACKAGE_JSON.to_owned(),
            });
        };
        let mut notes = Vec::new();
        let scripts = object_field(&fields, "scripts", &mut notes)
            .map(|scripts| {
                scripts
                    .iter()
                    .filter(|(_, command)| command.as_str().is_some_and(|c| !c.trim().is_empty()))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            name: string_field(&fields, "name", &mut notes),
            package_manager: string_field(&fields, "packageManager", &mut notes),
            dependencies: object_keys(&fields, "dependencies", &mut notes),
            dev_dependencies: object_keys(&fields, "devDependencies", &mut notes),
            optional_dependencies: object_keys(&fields, "optionalDependencies", &mut notes),
            scripts,
            notes,
        })
    }

    pub(super) fn has_dependencies(&self) -> bool {
        !(self.dependencies.is_empty() && self.dev_dependencies.is_empty() && self.optional_dependencies.is_empty())
    }

    /// Which section lists `dependency`, for the build log.
    pub(super) fn dependency_section(&self, dependency: &str) -> Option<&'static str> {
        if self.dependencies.contains(dependency) {
            Some("dependencies")
        } else if self.dev_dependencies.contains(dependency) {
            Some("devDependencies")
        } else {
            None
        }
    }

    pub(super) fn has_script(&self, name: &str) -> bool {
        self.scripts.contains(name)
    }
}

/// The field when it is an object; absent and `null` are normal, anything else is noted.
fn object_field<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
    notes: &mut Vec<String>,
) -> Option<&'a Map<String, Value>> {
    match fields.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(object)) => Some(object),
        Some(_) => {
            notes.push(format!("package.json: ignoring \"{key}\", which is not an object"));
            None
        }
    }
}

fn object_keys(fields: &Map<String, Value>, key: &str, notes: &mut Vec<String>) -> BTreeSet<String> {
    object_field(fields, key, notes)
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default()
}

fn string_field(fields: &Map<String, Value>, key: &str, notes: &mut Vec<String>) -> Option<String> {
    match fields.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            notes.push(format!("package.json: ignoring \"{key}\", which is not a string"));
            None
        }
    }
}
