//! The framework of a project, and its build command and output directory. The facts about each
//! framework are data in [`FRAMEWORKS`]; the rules that are not (a static site's `public`
//! directory, Angular's angular.json) are code here, keyed by the framework.

use super::angular::angular_output;
use super::files::{Markers, known_path};
use super::package_json::PackageJson;
use super::package_manager::PackageManager;
use super::{Decision, DetectError};
use platform::RelPath;
use platform::framework::FRAMEWORKS;
use platform::model::Framework;
use std::path::Path;

/// Where a build without a build script (`npm run build`) looks when `scripts.build` is missing.
const OTHER_OUTPUT_CANDIDATES: &[&str] = &["dist", "build", "out", "public"];

/// The first framework in [`FRAMEWORKS`] whose marker dependency or marker file the project has;
/// without one, `Other` when package.json has a build script, else `Static`.
pub(super) fn detect_framework(package: Option<&PackageJson>, markers: &Markers) -> Decision<Framework> {
    let Some(package) = package else {
        return Decision::new(
            Framework::Static,
            format!(
                "Framework: {} (no package.json, serving the files as they are)",
                Framework::Static.label()
            ),
        );
    };
    for info in FRAMEWORKS {
        for &dependency in info.marker_dependencies {
            if let Some(section) = package.dependency_section(dependency) {
                let reason = format!("Framework: {} (found \"{dependency}\" in {section})", info.label);
                return Decision::new(info.framework, reason);
            }
        }
        // A workspace may pull the framework in indirectly (Angular's @angular/core); its
        // configuration file is telling.
        if let Some(file) = markers.first_of(info.marker_files) {
            return Decision::new(info.framework, format!("Framework: {} (found {file})", info.label));
        }
    }
    if package.has_script("build") {
        Decision::new(
            Framework::Other,
            format!(
                "Framework: {} (package.json has a build script but no framework the builder recognises)",
                Framework::Other.label()
            ),
        )
    } else {
        Decision::new(
            Framework::Static,
            format!(
                "Framework: {} (package.json has no build script, serving the files as they are)",
                Framework::Static.label()
            ),
        )
    }
}

/// The project's own script when it has one (it may do more than the framework's default), else
/// the framework's command.
pub(super) fn detect_build_command(
    framework: Framework,
    package: Option<&PackageJson>,
    manager: Option<PackageManager>,
) -> Decision<Option<String>> {
    let info = framework.info();
    let Some(script) = info.build_script else {
        return Decision::new(None, "Build command: none (static files, nothing to build)".to_owned());
    };
    if let (Some(package), Some(manager)) = (package, manager)
        && package.has_script(script)
    {
        let command = format!("{} {script}", manager.run_prefix());
        return Decision::new(
            Some(command.clone()),
            format!("Build command: {command} (found scripts.{script} in package.json)"),
        );
    }
    match info.build_command {
        Some(command) => Decision::new(
            Some(command.to_owned()),
            format!(
                "Build command: {command} (no {script} script in package.json, using the {} default)",
                info.label
            ),
        ),
        None => Decision::new(None, "Build command: none (no build script in package.json)".to_owned()),
    }
}

pub(super) fn detect_output(
    framework: Framework,
    root: &Path,
    package: Option<&PackageJson>,
    markers: &Markers,
) -> Result<Decision<Vec<RelPath>>, DetectError> {
    let info = framework.info();
    if let Some(dir) = info.output_dir {
        let reason = format!("Output directory: {dir} (the {} default)", info.label);
        return Ok(Decision::new(vec![known_path(dir)], reason));
    }
    Ok(match framework {
        Framework::Angular => angular_output(root, package)?,
        Framework::Static if markers.public_index => Decision::new(
            vec![known_path("public"), RelPath::root()],
            "Output directory: public (found public/index.html), else the project root".to_owned(),
        ),
        Framework::Static => Decision::new(
            vec![RelPath::root()],
            "Output directory: the project root (static files, no public/index.html)".to_owned(),
        ),
        _ => {
            let candidates: Vec<RelPath> = OTHER_OUTPUT_CANDIDATES.iter().map(|dir| known_path(dir)).collect();
            let reason = format!(
                "Output directory: the first of {} that exists after the build (no known framework)",
                OTHER_OUTPUT_CANDIDATES.join(", ")
            );
            Decision::new(candidates, reason)
        }
    })
}
