//! Decides how to build a project from the files in its repository: the framework, the package
//! manager, the install and build commands, and where the output will be.
//!
//! The repository is untrusted input. A file is only read when it is a regular file (symbolic
//! links are never followed, not even in a race) and at most [`MAX_FILE_BYTES`] long; malformed
//! content gives a [`DetectError`] or a fallback that the build log explains, never a panic.
//! Nothing here runs a command: the [`BuildPlan`] goes to the sandboxed executor, and its
//! `reasons` go to the build log so that users can see why a command was chosen.
//!
//! [`plan`] reads the checkout (`files`, `package_json`), then decides each part of the plan: the
//! framework, its build command and its output (`frameworks`, from the table in
//! [`platform::framework`]; `angular` reads angular.json), and the package manager and install
//! command (`package_manager`).
//!
//! [`MAX_FILE_BYTES`]: files::MAX_FILE_BYTES

mod angular;
mod files;
mod frameworks;
mod package_json;
mod package_manager;
#[cfg(test)]
mod tests;

pub use package_manager::PackageManager;

use files::{Markers, read_regular_file};
use frameworks::{detect_build_command, detect_framework, detect_output};
use package_json::{PACKAGE_JSON, PackageJson};
use package_manager::{detect_install_command, detect_package_manager};
use platform::RelPath;
use platform::model::{BuildSettings, Framework};
use platform::names::RelPathError;
use std::io;
use std::path::Path;

/// How to build one project: the project's settings applied over what its files suggest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    pub framework: Framework,
    /// `None` when there is no package.json.
    pub package_manager: Option<PackageManager>,
    /// `None` = nothing to install.
    pub install_command: Option<String>,
    /// `None` = no build step.
    pub build_command: Option<String>,
    /// Where the output is expected, in order of preference (relative to the project root). The
    /// builder takes the first that exists after the build. One entry when known for sure.
    pub output_candidates: Vec<RelPath>,
    /// Whether unknown paths fall back to `index.html`; always `framework.is_spa()`.
    pub spa: bool,
    /// Human-readable lines for the build log: what was detected and why, and which values came
    /// from the project's settings instead. E.g. "Framework: Vite (found \"vite\" in devDependencies)",
    /// "Package manager: pnpm (found pnpm-lock.yaml)", "Build command: npm run build (from the project settings)".
    pub reasons: Vec<String>,
}

/// Why a repository's files could not be used. Every message names the file, for the build log.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{file} is a symbolic link; links in the repository are not followed, commit a regular file instead")]
    Symlink { file: String },
    #[error("{file} is not a regular file")]
    NotAFile { file: String },
    #[error("{file} is larger than {limit} bytes")]
    TooLarge { file: String, limit: u64 },
    #[error("{file} is not valid JSON: {message} (line {line}, column {column})")]
    InvalidJson {
        file: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{file} must contain a JSON object")]
    NotAnObject { file: String },
    /// A path taken from a repository file would leave the project (`..`, absolute, ...).
    #[error("{file}: {path:?} is not a path inside the project: {source}")]
    UnsafePath {
        file: String,
        path: String,
        source: RelPathError,
    },
    #[error("could not read {file}: {source}")]
    Io { file: String, source: io::Error },
}

/// Plans the build of the project whose root directory is `root`.
///
/// `root` is the project's root directory on disk (already checked by the caller to be a real
/// directory inside the checkout). Reads package.json, lockfiles, angular.json etc. from it.
/// Every field of `overrides` that is set wins over detection; an install or build command that
/// is set but blank means "no such step". Paths read from angular.json that would leave the
/// project are refused with [`DetectError::UnsafePath`] rather than ignored, so that the user
/// learns why instead of getting an "output not found" later.
pub fn plan(root: &Path, overrides: &BuildSettings) -> Result<BuildPlan, DetectError> {
    let package = read_regular_file(root, PACKAGE_JSON)?
        .map(|bytes| PackageJson::parse(&bytes))
        .transpose()?;
    let markers = Markers::scan(root)?;
    let package = package.as_ref();
    let mut reasons: Vec<String> = package.map(|p| p.notes.clone()).unwrap_or_default();

    let framework = match overrides.framework {
        Some(framework) => Decision::new(framework, format!("Framework: {framework} (from the project settings)")),
        None => detect_framework(package, &markers),
    };
    let package_manager = package.map(|p| detect_package_manager(p, &markers));
    let build = match &overrides.build_command {
        Some(command) => command_from_settings("Build command", command),
        None => detect_build_command(
            framework.value,
            package,
            package_manager.as_ref().map(|d| d.value.manager),
        ),
    };
    let install = match (&overrides.install_command, package, &package_manager) {
        (Some(command), _, _) => command_from_settings("Install command", command),
        (None, Some(package), Some(manager)) => {
            detect_install_command(package, manager.value, &markers, build.value.is_some())
        }
        (None, _, _) => Decision::new(None, "Install command: none (no package.json)".to_owned()),
    };
    let output = match &overrides.output_dir {
        Some(dir) => Decision::new(
            vec![dir.clone()],
            format!("Output directory: {} (from the project settings)", show_path(dir)),
        ),
        None => detect_output(framework.value, root, package, &markers)?,
    };

    reasons.push(framework.reason);
    reasons.push(match &package_manager {
        Some(manager) => manager.reason.clone(),
        None => "Package manager: none (no package.json)".to_owned(),
    });
    reasons.push(install.reason);
    reasons.push(build.reason);
    reasons.push(output.reason);

    Ok(BuildPlan {
        framework: framework.value,
        package_manager: package_manager.map(|d| d.value.manager),
        install_command: install.value,
        build_command: build.value,
        output_candidates: output.value,
        spa: framework.value.is_spa(),
        reasons,
    })
}

/// A detected or configured value, with the build-log line that explains it.
#[derive(Debug)]
struct Decision<T> {
    value: T,
    reason: String,
}

impl<T> Decision<T> {
    fn new(value: T, reason: String) -> Self {
        Self { value, reason }
    }
}

/// A command from the project settings, used verbatim; a blank one means "skip this step".
fn command_from_settings(label: &str, command: &str) -> Decision<Option<String>> {
    if command.trim().is_empty() {
        Decision::new(None, format!("{label}: none (from the project settings)"))
    } else {
        Decision::new(
            Some(command.to_owned()),
            format!("{label}: {command} (from the project settings)"),
        )
    }
}

/// `.` for the root, which would otherwise print as nothing.
fn show_path(path: &RelPath) -> &str {
    if path.is_root() { "." } else { path.as_str() }
}

fn show_candidates(candidates: &[RelPath]) -> String {
    candidates.iter().map(show_path).collect::<Vec<_>>().join(", else ")
}
