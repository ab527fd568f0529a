//! Decides how to build a project from the files in its repository: the framework, the package
//! manager, the install and build commands, and where the output will be.
//!
//! The repository is untrusted input. A file is only read when it is a regular file (symbolic
//! links are never followed, not even in a race) and at most [`MAX_FILE_BYTES`] long; malformed
//! content gives a [`DetectError`] or a fallback that the build log explains, never a panic.
//! Nothing here runs a command: the [`BuildPlan`] goes to the sandboxed executor, and its
//! `reasons` go to the build log so that users can see why a command was chosen.

use platform::RelPath;
use platform::model::{BuildSettings, Framework};
use platform::names::RelPathError;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Larger manifests are refused: real ones are a few KiB, and the limit bounds memory use.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

const PACKAGE_JSON: &str = "package.json";
const ANGULAR_JSON: &str = "angular.json";

/// Files whose mere presence steers detection. They are never read, so any non-directory entry
/// counts (the package manager, not us, decides what to do with a linked lockfile).
const MARKER_FILES: &[&str] = &[
    "pnpm-lock.yaml",
    "yarn.lock",
    "bun.lockb",
    "bun.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    ".yarnrc.yml",
    ANGULAR_JSON,
];

const NPM_LOCKFILES: &[&str] = &["package-lock.json", "npm-shrinkwrap.json"];
const YARN_LOCKFILES: &[&str] = &["yarn.lock"];
const PNPM_LOCKFILES: &[&str] = &["pnpm-lock.yaml"];
const BUN_LOCKFILES: &[&str] = &["bun.lockb", "bun.lock"];

/// Dependencies that identify a framework, most specific first: the first match wins. Many of
/// these frameworks depend on vite themselves, so vite comes last.
const FRAMEWORK_DEPENDENCIES: &[(&str, Framework)] = &[
    ("next", Framework::Next),
    ("nuxt", Framework::Nuxt),
    ("nuxt3", Framework::Nuxt),
    ("gatsby", Framework::Gatsby),
    ("@docusaurus/core", Framework::Docusaurus),
    ("astro", Framework::Astro),
    ("@sveltejs/kit", Framework::SvelteKit),
    ("@angular/core", Framework::Angular),
    ("@vue/cli-service", Framework::VueCli),
    ("react-scripts", Framework::CreateReactApp),
    ("vite", Framework::Vite),
];

/// Where a build without a build script (`npm run build`) looks when `scripts.build` is missing.
const OTHER_OUTPUT_CANDIDATES: &[&str] = &["dist", "build", "out", "public"];

// ---------------------------------------------------------------------------------------------
// Public API

/// The tool that installs the dependencies and runs the scripts of a `package.json` project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Npm,
    Yarn,
    Pnpm,
    Bun,
}

impl PackageManager {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Npm => "npm",
            Self::Yarn => "yarn",
            Self::Pnpm => "pnpm",
            Self::Bun => "bun",
        }
    }

    /// The name used in the `packageManager` field of package.json.
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "npm" => Some(Self::Npm),
            "yarn" => Some(Self::Yarn),
            "pnpm" => Some(Self::Pnpm),
            "bun" => Some(Self::Bun),
            _ => None,
        }
    }

    /// The command prefix that runs a package.json script. yarn and pnpm go through corepack so
    /// that the version pinned in `packageManager` is the one that runs.
    fn run_prefix(self) -> &'static str {
        match self {
            Self::Npm => "npm run",
            Self::Yarn => "corepack yarn run",
            Self::Pnpm => "corepack pnpm run",
            Self::Bun => "bun run",
        }
    }

    /// The lockfiles this package manager writes; an install is reproducible only with one.
    fn lockfiles(self) -> &'static [&'static str] {
        match self {
            Self::Npm => NPM_LOCKFILES,
            Self::Yarn => YARN_LOCKFILES,
            Self::Pnpm => PNPM_LOCKFILES,
            Self::Bun => BUN_LOCKFILES,
        }
    }
}

impl fmt::Display for PackageManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

// ---------------------------------------------------------------------------------------------
// Reading untrusted files

/// Reads `name` (relative to `root`) if it exists. A symlink, a directory, a FIFO or a file over
/// [`MAX_FILE_BYTES`] is an error: the caller asked for this file, so silently skipping it would
/// make detection guess wrong.
fn read_regular_file(root: &Path, name: &str) -> Result<Option<Vec<u8>>, DetectError> {
    let path = root.join(name);
    let Some(metadata) = symlink_metadata(&path, name)? else {
        return Ok(None);
    };
    check_regular_file(name, &metadata)?;
    let file = open_no_follow(&path, name)?;
    // The path may have been swapped between the check and the open; check what was opened.
    let opened = file.metadata().map_err(|e| DetectError::io(name, e))?;
    check_regular_file(name, &opened)?;
    read_capped(file, name).map(Some)
}

/// `lstat`, with "not there" as `None` rather than an error.
fn symlink_metadata(path: &Path, name: &str) -> Result<Option<Metadata>, DetectError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(DetectError::io(name, e)),
    }
}

fn check_regular_file(name: &str, metadata: &Metadata) -> Result<(), DetectError> {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        Err(DetectError::Symlink { file: name.to_owned() })
    } else if !file_type.is_file() {
        Err(DetectError::NotAFile { file: name.to_owned() })
    } else if metadata.len() > MAX_FILE_BYTES {
        Err(DetectError::too_large(name))
    } else {
        Ok(())
    }
}

/// Opens without following a final symlink, and without blocking should the path have become a
/// FIFO since it was checked.
fn open_no_follow(path: &Path, name: &str) -> Result<File, DetectError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => DetectError::Symlink { file: name.to_owned() },
            _ => DetectError::io(name, e),
        })
}

/// Reads at most one byte past the limit, so that a file growing after the size check is still
/// refused and never read whole.
fn read_capped(file: File, name: &str) -> Result<Vec<u8>, DetectError> {
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DetectError::io(name, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DetectError::too_large(name));
    }
    Ok(bytes)
}

impl DetectError {
    fn io(file: &str, source: io::Error) -> Self {
        Self::Io {
            file: file.to_owned(),
            source,
        }
    }

    fn too_large(file: &str) -> Self {
        Self::TooLarge {
            file: file.to_owned(),
            limit: MAX_FILE_BYTES,
        }
    }

    /// serde_json's message without its " at line L column C" suffix, which we report as fields.
    fn invalid_json(file: &str, err: &serde_json::Error) -> Self {
        let full = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        Self::InvalidJson {
            file: file.to_owned(),
            message,
            line: err.line(),
            column: err.column(),
        }
    }
}

/// Editors on Windows like to start JSON files with a byte order mark, which npm tolerates.
fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A path from a repository file, refused if it would leave the project.
fn safe_path(file: &str, raw: &str) -> Result<RelPath, DetectError> {
    RelPath::parse(raw).map_err(|source| DetectError::UnsafePath {
        file: file.to_owned(),
        path: raw.chars().take(200).collect(),
        source,
    })
}

/// A path this module spells itself.
fn known_path(literal: &'static str) -> RelPath {
    RelPath::parse(literal).expect("path literals in this module are valid relative paths")
}

// ---------------------------------------------------------------------------------------------
// What is in the project directory

/// The fields of package.json that detection uses. Read leniently: a field of the wrong type is
/// ignored with a note in the build log, as npm itself mostly does.
#[derive(Debug, Default)]
struct PackageJson {
    name: Option<String>,
    package_manager: Option<String>,
    dependencies: BTreeSet<String>,
    dev_dependencies: BTreeSet<String>,
    optional_dependencies: BTreeSet<String>,
    /// Scripts with a non-blank command.
    scripts: BTreeSet<String>,
    notes: Vec<String>,
}

impl PackageJson {
    fn parse(bytes: &[u8]) -> Result<Self, DetectError> {
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

    fn has_dependencies(&self) -> bool {
        !(self.dependencies.is_empty() && self.dev_dependencies.is_empty() && self.optional_dependencies.is_empty())
    }

    /// Which section lists `dependency`, for the build log.
    fn dependency_section(&self, dependency: &str) -> Option<&'static str> {
        if self.dependencies.contains(dependency) {
            Some("dependencies")
        } else if self.dev_dependencies.contains(dependency) {
            Some("devDependencies")
        } else {
            None
        }
    }

    fn has_script(&self, name: &str) -> bool {
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

/// Which of the files that steer detection exist, looked up once.
#[derive(Debug, Default)]
struct Markers {
    present: BTreeSet<&'static str>,
    /// `public/index.html` is a regular file in a real `public` directory (not a link to one).
    public_index: bool,
}

impl Markers {
    fn scan(root: &Path) -> Result<Self, DetectError> {
        let mut present = BTreeSet::new();
        for &name in MARKER_FILES {
            if symlink_metadata(&root.join(name), name)?.is_some_and(|m| !m.is_dir()) {
                present.insert(name);
            }
        }
        Ok(Self {
            present,
            public_index: Self::has_public_index(root)?,
        })
    }

    fn has_public_index(root: &Path) -> Result<bool, DetectError> {
        let public = symlink_metadata(&root.join("public"), "public")?;
        if !public.is_some_and(|m| m.file_type().is_dir()) {
            return Ok(false);
        }
        let index = symlink_metadata(&root.join("public").join("index.html"), "public/index.html")?;
        Ok(index.is_some_and(|m| m.file_type().is_file()))
    }

    fn has(&self, name: &str) -> bool {
        self.present.contains(name)
    }

    /// The first of `names` that exists.
    fn first_of(&self, names: &[&'static str]) -> Option<&'static str> {
        names.iter().copied().find(|name| self.has(name))
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions

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

/// The framework's name as people write it, for the build log.
fn display_name(framework: Framework) -> &'static str {
    match framework {
        Framework::Vite => "Vite",
        Framework::CreateReactApp => "Create React App",
        Framework::Angular => "Angular",
        Framework::VueCli => "Vue CLI",
        Framework::SvelteKit => "SvelteKit",
        Framework::Astro => "Astro",
        Framework::Next => "Next.js",
        Framework::Nuxt => "Nuxt",
        Framework::Gatsby => "Gatsby",
        Framework::Docusaurus => "Docusaurus",
        Framework::Other => "Other",
        Framework::Static => "Static",
    }
}

fn detect_framework(package: Option<&PackageJson>, markers: &Markers) -> Decision<Framework> {
    let Some(package) = package else {
        return Decision::new(
            Framework::Static,
            "Framework: Static (no package.json, serving the files as they are)".to_owned(),
        );
    };
    for &(dependency, framework) in FRAMEWORK_DEPENDENCIES {
        if let Some(section) = package.dependency_section(dependency) {
            let reason = format!(
                "Framework: {} (found \"{dependency}\" in {section})",
                display_name(framework)
            );
            return Decision::new(framework, reason);
        }
        // An Angular workspace may pull @angular/core in indirectly; its angular.json is telling.
        if framework == Framework::Angular && markers.has(ANGULAR_JSON) {
            return Decision::new(Framework::Angular, "Framework: Angular (found angular.json)".to_owned());
        }
    }
    if package.has_script("build") {
        Decision::new(
            Framework::Other,
            "Framework: Other (package.json has a build script but no framework the builder recognises)".to_owned(),
        )
    } else {
        Decision::new(
            Framework::Static,
            "Framework: Static (package.json has no build script, serving the files as they are)".to_owned(),
        )
    }
}

/// The chosen package manager, and the major version `packageManager` pinned, if any.
#[derive(Debug, Clone, Copy)]
struct PackageManagerChoice {
    manager: PackageManager,
    pinned_major: Option<u64>,
}

fn detect_package_manager(package: &PackageJson, markers: &Markers) -> Decision<PackageManagerChoice> {
    let mut notes = String::new();
    if let Some(raw) = package.package_manager.as_deref() {
        match parse_package_manager_field(raw) {
            Some((manager, pinned_major)) => {
                let choice = PackageManagerChoice { manager, pinned_major };
                let reason = format!("Package manager: {manager} (\"packageManager\": \"{raw}\" in package.json)");
                return Decision::new(choice, reason);
            }
            None => notes = format!("; ignored unknown \"packageManager\": {raw:?}"),
        }
    }
    let by_lockfile = [
        (PNPM_LOCKFILES, PackageManager::Pnpm),
        (YARN_LOCKFILES, PackageManager::Yarn),
        (BUN_LOCKFILES, PackageManager::Bun),
        (NPM_LOCKFILES, PackageManager::Npm),
    ];
    for (lockfiles, manager) in by_lockfile {
        if let Some(lockfile) = markers.first_of(lockfiles) {
            let choice = PackageManagerChoice {
                manager,
                pinned_major: None,
            };
            return Decision::new(choice, format!("Package manager: {manager} (found {lockfile}{notes})"));
        }
    }
    let choice = PackageManagerChoice {
        manager: PackageManager::Npm,
        pinned_major: None,
    };
    Decision::new(
        choice,
        format!("Package manager: npm (no lockfile, defaulting to npm{notes})"),
    )
}

/// `"pnpm@8.6.0"`, `"yarn@4.1.0+sha224.abc"`, `"npm@10"`: the manager and the major version.
fn parse_package_manager_field(raw: &str) -> Option<(PackageManager, Option<u64>)> {
    let (name, version) = raw.trim().split_once('@').unwrap_or((raw.trim(), ""));
    let manager = PackageManager::from_name(name)?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    Some((manager, digits.parse().ok()))
}

/// Installs reproducibly (from the lockfile, failing if it is out of date) whenever there is a
/// lockfile, and skips the install when there is nothing to install or nothing to build with it.
fn detect_install_command(
    package: &PackageJson,
    choice: PackageManagerChoice,
    markers: &Markers,
    has_build_step: bool,
) -> Decision<Option<String>> {
    if !package.has_dependencies() {
        return Decision::new(None, "Install command: none (no dependencies to install)".to_owned());
    }
    // A static site's package.json often lists only linters; installing them could only fail.
    if !has_build_step {
        return Decision::new(
            None,
            "Install command: none (no build step needs the dependencies)".to_owned(),
        );
    }
    let lockfile = markers.first_of(choice.manager.lockfiles());
    let (command, why) = match choice.manager {
        PackageManager::Npm => npm_install(lockfile),
        PackageManager::Yarn => yarn_install(lockfile, yarn_berry_reason(choice, markers)),
        PackageManager::Pnpm => {
            locked_install("corepack pnpm install", "--frozen-lockfile", lockfile, "pnpm-lock.yaml")
        }
        PackageManager::Bun => locked_install("bun install", "--frozen-lockfile", lockfile, "bun.lockb or bun.lock"),
    };
    Decision::new(Some(command.clone()), format!("Install command: {command} ({why})"))
}

fn npm_install(lockfile: Option<&str>) -> (String, String) {
    match lockfile {
        Some(lockfile) => ("npm ci --no-audit --no-fund".to_owned(), format!("found {lockfile}")),
        None => (
            "npm install --no-audit --no-fund".to_owned(),
            "no package-lock.json or npm-shrinkwrap.json".to_owned(),
        ),
    }
}

/// Yarn 2+ spells "fail if the lockfile is out of date" `--immutable`, and in CI makes it the
/// default, so without a lockfile it must be turned off explicitly.
fn yarn_install(lockfile: Option<&str>, berry: Option<String>) -> (String, String) {
    match (berry, lockfile) {
        (Some(berry), Some(lockfile)) => (
            "corepack yarn install --immutable".to_owned(),
            format!("Yarn 2+: {berry}; found {lockfile}"),
        ),
        (Some(berry), None) => (
            "corepack yarn install --no-immutable".to_owned(),
            format!("Yarn 2+: {berry}; no yarn.lock, so the install is not locked"),
        ),
        (None, Some(lockfile)) => (
            "corepack yarn install --frozen-lockfile".to_owned(),
            format!("Yarn 1: found {lockfile}"),
        ),
        (None, None) => (
            "corepack yarn install".to_owned(),
            "Yarn 1: no yarn.lock, so the install is not locked".to_owned(),
        ),
    }
}

/// Why the project uses Yarn 2+ ("berry"), or `None` for Yarn 1 ("classic").
fn yarn_berry_reason(choice: PackageManagerChoice, markers: &Markers) -> Option<String> {
    if markers.has(".yarnrc.yml") {
        return Some("found .yarnrc.yml".to_owned());
    }
    choice
        .pinned_major
        .filter(|&major| major >= 2)
        .map(|major| format!("packageManager pins yarn@{major}"))
}

/// A frozen install needs the lockfile: pnpm and bun refuse `--frozen-lockfile` without one.
fn locked_install(base: &str, frozen_flag: &str, lockfile: Option<&str>, expected: &str) -> (String, String) {
    match lockfile {
        Some(lockfile) => (format!("{base} {frozen_flag}"), format!("found {lockfile}")),
        None => (base.to_owned(), format!("no {expected}, so the install is not locked")),
    }
}

/// The framework's own build command, for projects without a build script.
fn framework_build_command(framework: Framework) -> Option<&'static str> {
    match framework {
        Framework::Vite | Framework::SvelteKit => Some("npx vite build"),
        Framework::CreateReactApp => Some("npx react-scripts build"),
        Framework::Angular => Some("npx ng build"),
        Framework::VueCli => Some("npx vue-cli-service build"),
        Framework::Astro => Some("npx astro build"),
        Framework::Next => Some("npx next build"),
        Framework::Nuxt => Some("npx nuxt generate"),
        Framework::Gatsby => Some("npx gatsby build"),
        Framework::Docusaurus => Some("npx docusaurus build"),
        Framework::Other | Framework::Static => None,
    }
}

/// The project's own script when it has one (it may do more than the framework's default), else
/// the framework's command. Nuxt is deployed as a static site, which `generate` produces.
fn detect_build_command(
    framework: Framework,
    package: Option<&PackageJson>,
    manager: Option<PackageManager>,
) -> Decision<Option<String>> {
    if framework == Framework::Static {
        return Decision::new(None, "Build command: none (static files, nothing to build)".to_owned());
    }
    let script = if framework == Framework::Nuxt {
        "generate"
    } else {
        "build"
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
    match framework_build_command(framework) {
        Some(command) => Decision::new(
            Some(command.to_owned()),
            format!(
                "Build command: {command} (no {script} script in package.json, using the {} default)",
                display_name(framework)
            ),
        ),
        None => Decision::new(None, "Build command: none (no build script in package.json)".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Output directory

/// Where a framework writes a static build by default.
fn framework_output(framework: Framework) -> Option<&'static str> {
    match framework {
        Framework::Vite | Framework::VueCli | Framework::Astro => Some("dist"),
        Framework::CreateReactApp | Framework::SvelteKit | Framework::Docusaurus => Some("build"),
        Framework::Next => Some("out"),
        Framework::Nuxt => Some(".output/public"),
        Framework::Gatsby => Some("public"),
        Framework::Angular | Framework::Other | Framework::Static => None,
    }
}

fn detect_output(
    framework: Framework,
    root: &Path,
    package: Option<&PackageJson>,
    markers: &Markers,
) -> Result<Decision<Vec<RelPath>>, DetectError> {
    if let Some(dir) = framework_output(framework) {
        let reason = format!("Output directory: {dir} (the {} default)", display_name(framework));
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

/// `.` for the root, which would otherwise print as nothing.
fn show_path(path: &RelPath) -> &str {
    if path.is_root() { "." } else { path.as_str() }
}

fn show_candidates(candidates: &[RelPath]) -> String {
    candidates.iter().map(show_path).collect::<Vec<_>>().join(", else ")
}

// ---------------------------------------------------------------------------------------------
// Angular

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
fn angular_output(root: &Path, package: Option<&PackageJson>) -> Result<Decision<Vec<RelPath>>, DetectError> {
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

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    /// A project directory holding `files` (paths relative to the root, parents created).
    fn project(files: &[(&str, &str)]) -> TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, content) in files {
            let full = dir.path().join(path);
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent).expect("create parent");
            }
            fs::write(full, content).expect("write file");
        }
        dir
    }

    fn detect(dir: &TempDir) -> BuildPlan {
        plan(dir.path(), &BuildSettings::default()).expect("plan succeeds")
    }

    fn detect_err(dir: &TempDir) -> DetectError {
        plan(dir.path(), &BuildSettings::default()).expect_err("plan fails")
    }

    fn outputs(plan: &BuildPlan) -> Vec<&str> {
        plan.output_candidates.iter().map(RelPath::as_str).collect()
    }

    fn has_reason(plan: &BuildPlan, needle: &str) -> bool {
        plan.reasons.iter().any(|r| r.contains(needle))
    }

    fn assert_reason(plan: &BuildPlan, needle: &str) {
        assert!(
            has_reason(plan, needle),
            "no reason containing {needle:?} in {:#?}",
            plan.reasons
        );
    }

    /// package.json with `deps` as devDependencies and the given scripts.
    fn pkg(dev_deps: &[&str], scripts: &[(&str, &str)]) -> String {
        let deps: Map<String, Value> = dev_deps
            .iter()
            .map(|d| ((*d).to_owned(), Value::from("^1.0.0")))
            .collect();
        let scripts: Map<String, Value> = scripts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        serde_json::json!({ "name": "my-app", "devDependencies": deps, "scripts": scripts }).to_string()
    }

    fn settings() -> BuildSettings {
        BuildSettings::default()
    }

    // --- frameworks ---------------------------------------------------------------------------

    #[test]
    fn vite() {
        let dir = project(&[
            ("package.json", &pkg(&["vite"], &[("build", "vite build")])),
            ("package-lock.json", "{}"),
        ]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Vite);
        assert_eq!(plan.package_manager, Some(PackageManager::Npm));
        assert_eq!(plan.install_command.as_deref(), Some("npm ci --no-audit --no-fund"));
        assert_eq!(plan.build_command.as_deref(), Some("npm run build"));
        assert_eq!(outputs(&plan), ["dist"]);
        assert!(plan.spa);
        assert_reason(&plan, "Framework: Vite (found \"vite\" in devDependencies)");
        assert_reason(&plan, "Package manager: npm (found package-lock.json)");
    }

    #[test]
    fn vite_in_dependencies_without_build_script() {
        let dir = project(&[("package.json", r#"{"dependencies": {"vite": "5"}}"#)]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Vite);
        assert_eq!(plan.build_command.as_deref(), Some("npx vite build"));
        assert_reason(&plan, "found \"vite\" in dependencies");
    }

    #[test]
    fn create_react_app() {
        let dir = project(&[(
            "package.json",
            &pkg(&["react", "react-scripts"], &[("build", "react-scripts build")]),
        )]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::CreateReactApp);
        assert_eq!(outputs(&plan), ["build"]);
        assert_eq!(plan.build_command.as_deref(), Some("npm run build"));
        assert!(plan.spa);
    }

    #[test]
    fn vue_cli() {
        let dir = project(&[("package.json", &pkg(&["vue", "@vue/cli-service"], &[]))]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::VueCli);
        assert_eq!(plan.build_command.as_deref(), Some("npx vue-cli-service build"));
        assert_eq!(outputs(&plan), ["dist"]);
        assert!(plan.spa);
    }

    #[test]
    fn sveltekit_wins_over_vite() {
        let dir = project(&[("package.json", &pkg(&["vite", "@sveltejs/kit"], &[]))]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::SvelteKit);
        assert_eq!(plan.build_command.as_deref(), Some("npx vite build"));
        assert_eq!(outputs(&plan), ["build"]);
        assert!(!plan.spa);
    }

    #[test]
    fn astro() {
        let dir = project(&[("package.json", &pkg(&["astro", "vite", "react"], &[]))]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Astro);
        assert_eq!(plan.build_command.as_deref(), Some("npx astro build"));
        assert_eq!(outputs(&plan), ["dist"]);
    }

    #[test]
    fn next() {
        let dir = project(&[("package.json", &pkg(&["next", "react"], &[("build", "next build")]))]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Next);
        assert_eq!(outputs(&plan), ["out"]);
        assert_eq!(plan.build_command.as_deref(), Some("npm run build"));
        assert!(!plan.spa);
    }

    #[test]
    fn next_without_build_script() {
        let dir = project(&[("package.json", &pkg(&["next"], &[]))]);
        assert_eq!(detect(&dir).build_command.as_deref(), Some("npx next build"));
    }

    #[test]
    fn nuxt_uses_generate_script() {
        let dir = project(&[
            (
                "package.json",
                &pkg(
                    &["nuxt", "vite"],
                    &[("build", "nuxt build"), ("generate", "nuxt generate")],
                ),
            ),
            ("pnpm-lock.yaml", ""),
        ]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Nuxt);
        assert_eq!(plan.build_command.as_deref(), Some("corepack pnpm run generate"));
        assert_eq!(outputs(&plan), [".output/public"]);
    }

    #[test]
    fn nuxt_without_generate_script_uses_npx() {
        let dir = project(&[("package.json", &pkg(&["nuxt3"], &[("build", "nuxt build")]))]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Nuxt);
        assert_eq!(plan.build_command.as_deref(), Some("npx nuxt generate"));
    }

    #[test]
    fn gatsby() {
        let dir = project(&[("package.json", &pkg(&["gatsby"], &[]))]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Gatsby);
        assert_eq!(plan.build_command.as_deref(), Some("npx gatsby build"));
        assert_eq!(outputs(&plan), ["public"]);
    }

    #[test]
    fn docusaurus() {
        let dir = project(&[("package.json", &pkg(&["@docusaurus/core", "react"], &[]))]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Docusaurus);
        assert_eq!(plan.build_command.as_deref(), Some("npx docusaurus build"));
        assert_eq!(outputs(&plan), ["build"]);
    }

    #[test]
    fn framework_precedence_follows_the_table() {
        let dir = project(&[("package.json", &pkg(&["vite", "react-scripts", "next", "gatsby"], &[]))]);
        assert_eq!(detect(&dir).framework, Framework::Next);
        let dir = project(&[("package.json", &pkg(&["vite", "@angular/core", "astro"], &[]))]);
        assert_eq!(detect(&dir).framework, Framework::Astro);
    }

    #[test]
    fn other_has_several_output_candidates() {
        let dir = project(&[("package.json", &pkg(&["webpack"], &[("build", "webpack")]))]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Other);
        assert_eq!(plan.build_command.as_deref(), Some("npm run build"));
        assert_eq!(outputs(&plan), ["dist", "build", "out", "public"]);
        assert!(!plan.spa);
    }

    #[test]
    fn blank_build_script_does_not_count() {
        let dir = project(&[("package.json", r#"{"scripts": {"build": "  ", "test": 3}}"#)]);
        assert_eq!(detect(&dir).framework, Framework::Static);
    }

    #[test]
    fn static_without_package_json() {
        let dir = project(&[("index.html", "<h1>hi</h1>")]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Static);
        assert_eq!(plan.package_manager, None);
        assert_eq!(plan.install_command, None);
        assert_eq!(plan.build_command, None);
        assert_eq!(plan.output_candidates, [RelPath::root()]);
        assert!(!plan.spa);
        assert_reason(&plan, "no package.json");
    }

    #[test]
    fn static_prefers_public_index() {
        let dir = project(&[("public/index.html", "<h1>hi</h1>")]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Static);
        assert_eq!(plan.output_candidates, [known_path("public"), RelPath::root()]);
        assert_reason(&plan, "found public/index.html");
    }

    #[test]
    fn static_with_public_dir_but_no_index() {
        let dir = project(&[("public/app.css", "")]);
        assert_eq!(detect(&dir).output_candidates, [RelPath::root()]);
    }

    #[test]
    fn static_ignores_symlinked_public_dir() {
        let outside = project(&[("index.html", "secret")]);
        let dir = project(&[]);
        symlink(outside.path(), dir.path().join("public")).expect("symlink");
        assert_eq!(detect(&dir).output_candidates, [RelPath::root()]);
    }

    #[test]
    fn static_package_json_without_build_script_installs_nothing() {
        let dir = project(&[("package.json", &pkg(&["prettier"], &[("lint", "prettier -c .")]))]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Static);
        assert_eq!(plan.package_manager, Some(PackageManager::Npm));
        assert_eq!(plan.install_command, None);
        assert_eq!(plan.build_command, None);
        assert_reason(&plan, "no build step");
    }

    // --- package managers and install ----------------------------------------------------------

    fn with_manager_field(field: &str, extra: &[(&str, &str)]) -> BuildPlan {
        let json = serde_json::json!({
            "packageManager": field,
            "dependencies": {"vite": "5"},
            "scripts": {"build": "vite build"},
        })
        .to_string();
        let mut files = vec![("package.json", json.as_str())];
        files.extend_from_slice(extra);
        detect(&project(&files))
    }

    #[test]
    fn package_manager_field_wins_over_lockfiles() {
        let plan = with_manager_field("pnpm@8.6.0", &[("yarn.lock", ""), ("pnpm-lock.yaml", "")]);
        assert_eq!(plan.package_manager, Some(PackageManager::Pnpm));
        assert_eq!(
            plan.install_command.as_deref(),
            Some("corepack pnpm install --frozen-lockfile")
        );
        assert_eq!(plan.build_command.as_deref(), Some("corepack pnpm run build"));
        assert_reason(
            &plan,
            "Package manager: pnpm (\"packageManager\": \"pnpm@8.6.0\" in package.json)",
        );

        let plan = with_manager_field("yarn@4.1.0", &[("package-lock.json", ""), ("yarn.lock", "")]);
        assert_eq!(plan.package_manager, Some(PackageManager::Yarn));
        assert_eq!(
            plan.install_command.as_deref(),
            Some("corepack yarn install --immutable")
        );
        assert_eq!(plan.build_command.as_deref(), Some("corepack yarn run build"));
        assert_reason(&plan, "packageManager pins yarn@4");

        let plan = with_manager_field("npm@10", &[("yarn.lock", "")]);
        assert_eq!(plan.package_manager, Some(PackageManager::Npm));
        assert_eq!(
            plan.install_command.as_deref(),
            Some("npm install --no-audit --no-fund")
        );

        let plan = with_manager_field("bun@1", &[("bun.lock", "")]);
        assert_eq!(plan.package_manager, Some(PackageManager::Bun));
        assert_eq!(plan.install_command.as_deref(), Some("bun install --frozen-lockfile"));
        assert_eq!(plan.build_command.as_deref(), Some("bun run build"));
    }

    #[test]
    fn package_manager_field_with_hash() {
        let plan = with_manager_field("yarn@3.6.4+sha224.abcdef", &[("yarn.lock", "")]);
        assert_eq!(
            plan.install_command.as_deref(),
            Some("corepack yarn install --immutable")
        );
    }

    #[test]
    fn unknown_package_manager_field_falls_back_to_lockfiles() {
        let plan = with_manager_field("deno@2", &[("pnpm-lock.yaml", "")]);
        assert_eq!(plan.package_manager, Some(PackageManager::Pnpm));
        assert_reason(&plan, "ignored unknown \"packageManager\": \"deno@2\"");
    }

    #[test]
    fn each_lockfile_selects_its_manager() {
        let cases = [
            (
                "pnpm-lock.yaml",
                PackageManager::Pnpm,
                "corepack pnpm install --frozen-lockfile",
            ),
            (
                "yarn.lock",
                PackageManager::Yarn,
                "corepack yarn install --frozen-lockfile",
            ),
            ("bun.lockb", PackageManager::Bun, "bun install --frozen-lockfile"),
            ("bun.lock", PackageManager::Bun, "bun install --frozen-lockfile"),
            ("package-lock.json", PackageManager::Npm, "npm ci --no-audit --no-fund"),
            (
                "npm-shrinkwrap.json",
                PackageManager::Npm,
                "npm ci --no-audit --no-fund",
            ),
        ];
        for (lockfile, manager, install) in cases {
            let dir = project(&[("package.json", &pkg(&["vite"], &[])), (lockfile, "")]);
            let plan = detect(&dir);
            assert_eq!(plan.package_manager, Some(manager), "{lockfile}");
            assert_eq!(plan.install_command.as_deref(), Some(install), "{lockfile}");
            assert_reason(&plan, &format!("Package manager: {manager} (found {lockfile})"));
        }
    }

    #[test]
    fn pnpm_lockfile_beats_yarn_lockfile() {
        let dir = project(&[
            ("package.json", &pkg(&["vite"], &[])),
            ("yarn.lock", ""),
            ("pnpm-lock.yaml", ""),
        ]);
        assert_eq!(detect(&dir).package_manager, Some(PackageManager::Pnpm));
    }

    #[test]
    fn no_lockfile_defaults_to_npm_install() {
        let dir = project(&[("package.json", &pkg(&["vite"], &[]))]);
        let plan = detect(&dir);
        assert_eq!(plan.package_manager, Some(PackageManager::Npm));
        assert_eq!(
            plan.install_command.as_deref(),
            Some("npm install --no-audit --no-fund")
        );
        assert_reason(&plan, "no lockfile, defaulting to npm");
    }

    #[test]
    fn yarnrc_yml_means_yarn_berry() {
        let dir = project(&[
            ("package.json", &pkg(&["vite"], &[])),
            ("yarn.lock", ""),
            (".yarnrc.yml", ""),
        ]);
        let plan = detect(&dir);
        assert_eq!(
            plan.install_command.as_deref(),
            Some("corepack yarn install --immutable")
        );
        assert_reason(&plan, "found .yarnrc.yml");
    }

    #[test]
    fn yarn_1_pinned_is_classic() {
        let plan = with_manager_field("yarn@1.22.19", &[("yarn.lock", "")]);
        assert_eq!(
            plan.install_command.as_deref(),
            Some("corepack yarn install --frozen-lockfile")
        );
    }

    #[test]
    fn declared_manager_without_its_lockfile_is_not_frozen() {
        let plan = with_manager_field("pnpm@9", &[]);
        assert_eq!(plan.install_command.as_deref(), Some("corepack pnpm install"));
        let plan = with_manager_field("yarn@4", &[]);
        assert_eq!(
            plan.install_command.as_deref(),
            Some("corepack yarn install --no-immutable")
        );
        let plan = with_manager_field("yarn@1", &[]);
        assert_eq!(plan.install_command.as_deref(), Some("corepack yarn install"));
        let plan = with_manager_field("bun@1", &[]);
        assert_eq!(plan.install_command.as_deref(), Some("bun install"));
    }

    #[test]
    fn no_dependencies_means_no_install() {
        let dir = project(&[
            (
                "package.json",
                r#"{"scripts": {"build": "node build.js"}, "dependencies": {}}"#,
            ),
            ("package-lock.json", ""),
        ]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Other);
        assert_eq!(plan.install_command, None);
        assert_eq!(plan.build_command.as_deref(), Some("npm run build"));
        assert_reason(&plan, "no dependencies to install");
    }

    #[test]
    fn optional_dependencies_alone_need_an_install() {
        let dir = project(&[(
            "package.json",
            r#"{"scripts": {"build": "node b.js"}, "optionalDependencies": {"fsevents": "2"}}"#,
        )]);
        assert_eq!(
            detect(&dir).install_command.as_deref(),
            Some("npm install --no-audit --no-fund")
        );
    }

    // --- Angular -------------------------------------------------------------------------------

    fn angular_project(angular_json: &str) -> TempDir {
        project(&[
            (
                "package.json",
                &pkg(&["@angular/core", "@angular/cli"], &[("build", "ng build")]),
            ),
            ("angular.json", angular_json),
        ])
    }

    fn angular_json(builder: &str, output_path: Value) -> String {
        let mut options = Map::new();
        if !output_path.is_null() {
            options.insert("outputPath".to_owned(), output_path);
        }
        serde_json::json!({
            "version": 1,
            "projects": {
                "shop": { "architect": { "build": { "builder": builder, "options": options } } }
            }
        })
        .to_string()
    }

    #[test]
    fn angular_string_output_with_application_builder() {
        for builder in [
            "@angular-devkit/build-angular:application",
            "@angular/build:application",
            "@custom/builder:application",
        ] {
            let dir = angular_project(&angular_json(builder, Value::from("dist/shop")));
            let plan = detect(&dir);
            assert_eq!(plan.framework, Framework::Angular);
            assert_eq!(outputs(&plan), ["dist/shop/browser"], "{builder}");
            assert_eq!(plan.build_command.as_deref(), Some("npm run build"));
            assert!(plan.spa);
        }
    }

    #[test]
    fn angular_string_output_with_browser_builder() {
        for builder in [
            "@angular-devkit/build-angular:browser",
            "@angular-devkit/build-angular:browser-esbuild",
        ] {
            let dir = angular_project(&angular_json(builder, Value::from("./www/")));
            assert_eq!(outputs(&detect(&dir)), ["www"], "{builder}");
        }
    }

    #[test]
    fn angular_string_output_with_unknown_builder_tries_both() {
        let dir = angular_project(&angular_json("@nx/angular:webpack-browser", Value::from("dist/x")));
        assert_eq!(outputs(&detect(&dir)), ["dist/x/browser", "dist/x"]);
    }

    #[test]
    fn angular_object_output() {
        let builder = "@angular/build:application";
        let dir = angular_project(&angular_json(
            builder,
            serde_json::json!({"base": "out/site", "browser": "public"}),
        ));
        assert_eq!(outputs(&detect(&dir)), ["out/site/public"]);

        let dir = angular_project(&angular_json(builder, serde_json::json!({"base": "out/site"})));
        assert_eq!(outputs(&detect(&dir)), ["out/site/browser"]);

        let dir = angular_project(&angular_json(
            builder,
            serde_json::json!({"base": "out/site", "browser": ""}),
        ));
        assert_eq!(outputs(&detect(&dir)), ["out/site"]);

        let dir = angular_project(&angular_json(builder, serde_json::json!({"browser": ""})));
        assert_eq!(outputs(&detect(&dir)), ["dist/shop"]);
    }

    #[test]
    fn angular_missing_output_path() {
        let dir = angular_project(&angular_json("@angular-devkit/build-angular:application", Value::Null));
        let plan = detect(&dir);
        assert_eq!(outputs(&plan), ["dist/shop/browser"]);
        assert_reason(&plan, "project \"shop\"");

        let dir = angular_project(&angular_json("@angular-devkit/build-angular:browser", Value::Null));
        assert_eq!(outputs(&detect(&dir)), ["dist/shop"]);
    }

    #[test]
    fn angular_targets_alias() {
        let json = r#"{"projects": {"a": {"targets": {"build": {"builder": "@angular/build:application",
            "options": {"outputPath": "o"}}}}}}"#;
        assert_eq!(outputs(&detect(&angular_project(json))), ["o/browser"]);
    }

    #[test]
    fn angular_default_project_is_preferred() {
        let json = r#"{
            "defaultProject": "admin",
            "projects": {
                "shop": {"architect": {"build": {"builder": "x:browser", "options": {"outputPath": "dist/shop"}}}},
                "admin": {"architect": {"build": {"builder": "x:browser", "options": {"outputPath": "dist/admin"}}}}
            }
        }"#;
        assert_eq!(outputs(&detect(&angular_project(json))), ["dist/admin"]);
    }

    #[test]
    fn angular_first_project_is_the_first_written() {
        // "zeta" sorts after "alpha" but is written first.
        let json = r#"{
            "defaultProject": "missing",
            "projects": {
                "zeta": {"architect": {"build": {"builder": "x:browser", "options": {"outputPath": "dist/zeta"}}}},
                "alpha": {"architect": {"build": {"builder": "x:browser", "options": {"outputPath": "dist/alpha"}}}}
            }
        }"#;
        assert_eq!(outputs(&detect(&angular_project(json))), ["dist/zeta"]);
    }

    #[test]
    fn angular_detected_from_angular_json_alone() {
        let dir = project(&[
            ("package.json", &pkg(&["@angular/cli"], &[])),
            (
                "angular.json",
                &angular_json("@angular/build:application", Value::from("dist/shop")),
            ),
        ]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Angular);
        assert_eq!(plan.build_command.as_deref(), Some("npx ng build"));
        assert_reason(&plan, "Framework: Angular (found angular.json)");
    }

    #[test]
    fn angular_without_angular_json_uses_package_name() {
        let dir = project(&[("package.json", &pkg(&["@angular/core"], &[("build", "ng build")]))]);
        let plan = detect(&dir);
        assert_eq!(outputs(&plan), ["dist/my-app/browser", "dist/my-app"]);
        assert_reason(&plan, "no angular.json");
    }

    #[test]
    fn angular_fallback_with_unusable_package_name_is_dist() {
        for name in [r#""../../etc""#, r#""""#, "42", r#""/abs""#] {
            let json = format!(r#"{{"name": {name}, "dependencies": {{"@angular/core": "17"}}}}"#);
            let dir = project(&[("package.json", &json)]);
            assert_eq!(outputs(&detect(&dir)), ["dist"], "{name}");
        }
    }

    #[test]
    fn malformed_angular_json_falls_back() {
        let dir = angular_project("{ \"projects\": ");
        let plan = detect(&dir);
        assert_eq!(outputs(&plan), ["dist/my-app/browser", "dist/my-app"]);
        assert_reason(&plan, "angular.json is not valid JSON");

        let dir = angular_project(r#"{"projects": ["not", "an", "object"]}"#);
        assert_eq!(outputs(&detect(&dir)), ["dist/my-app/browser", "dist/my-app"]);

        let dir = angular_project(r#"{"projects": {}}"#);
        let plan = detect(&dir);
        assert_eq!(outputs(&plan), ["dist/my-app/browser", "dist/my-app"]);
        assert_reason(&plan, "lists no projects");

        let dir = angular_project("[1, 2, 3]");
        assert_eq!(outputs(&detect(&dir)), ["dist/my-app/browser", "dist/my-app"]);
    }

    #[test]
    fn hostile_angular_output_paths_are_refused() {
        let builder = "@angular/build:application";
        let hostile = [
            Value::from("../../etc"),
            Value::from("/var/www"),
            Value::from("dist\\..\\..\\x"),
            serde_json::json!({"base": "../outside"}),
            serde_json::json!({"base": "dist", "browser": "../../.."}),
        ];
        for output_path in hostile {
            let dir = angular_project(&angular_json(builder, output_path.clone()));
            let err = detect_err(&dir);
            assert!(matches!(err, DetectError::UnsafePath { .. }), "{output_path}: {err:?}");
            assert!(err.to_string().contains("angular.json"), "{err}");
        }
    }

    #[test]
    fn hostile_angular_project_name_is_refused() {
        let json = r#"{"projects": {"../../../tmp": {"architect": {"build": {"builder": "a:application"}}}}}"#;
        let err = detect_err(&angular_project(json));
        assert!(matches!(err, DetectError::UnsafePath { .. }), "{err:?}");
    }

    #[test]
    fn symlinked_angular_json_is_refused() {
        let outside = project(&[("a.json", &angular_json("x:browser", Value::from("dist")))]);
        let dir = project(&[("package.json", &pkg(&["@angular/core"], &[]))]);
        symlink(outside.path().join("a.json"), dir.path().join("angular.json")).expect("symlink");
        let err = detect_err(&dir);
        assert!(
            matches!(&err, DetectError::Symlink { file } if file == "angular.json"),
            "{err:?}"
        );
    }

    // --- overrides -----------------------------------------------------------------------------

    #[test]
    fn framework_override_drives_build_and_output() {
        let dir = project(&[("package.json", &pkg(&["webpack"], &[]))]);
        let overrides = BuildSettings {
            framework: Some(Framework::Vite),
            ..settings()
        };
        let plan = plan(dir.path(), &overrides).expect("plan");
        assert_eq!(plan.framework, Framework::Vite);
        assert!(plan.spa);
        assert_eq!(plan.build_command.as_deref(), Some("npx vite build"));
        assert_eq!(outputs(&plan), ["dist"]);
        assert_reason(&plan, "Framework: vite (from the project settings)");
    }

    #[test]
    fn framework_override_static_skips_the_build() {
        let dir = project(&[("package.json", &pkg(&["vite"], &[("build", "vite build")]))]);
        let overrides = BuildSettings {
            framework: Some(Framework::Static),
            ..settings()
        };
        let plan = plan(dir.path(), &overrides).expect("plan");
        assert_eq!(plan.framework, Framework::Static);
        assert!(!plan.spa);
        assert_eq!(plan.build_command, None);
        assert_eq!(plan.install_command, None);
        assert_eq!(plan.output_candidates, [RelPath::root()]);
    }

    #[test]
    fn framework_override_without_package_json() {
        let dir = project(&[]);
        let overrides = BuildSettings {
            framework: Some(Framework::Nuxt),
            ..settings()
        };
        let plan = plan(dir.path(), &overrides).expect("plan");
        assert_eq!(plan.package_manager, None);
        assert_eq!(plan.install_command, None);
        assert_eq!(plan.build_command.as_deref(), Some("npx nuxt generate"));
    }

    #[test]
    fn command_overrides_are_verbatim() {
        let dir = project(&[("package.json", &pkg(&["vite"], &[("build", "vite build")]))]);
        let overrides = BuildSettings {
            install_command: Some("pnpm i --prefer-offline".to_owned()),
            build_command: Some("npm run build:prod -- --mode=x".to_owned()),
            ..settings()
        };
        let plan = plan(dir.path(), &overrides).expect("plan");
        assert_eq!(plan.install_command.as_deref(), Some("pnpm i --prefer-offline"));
        assert_eq!(plan.build_command.as_deref(), Some("npm run build:prod -- --mode=x"));
        assert_reason(
            &plan,
            "Install command: pnpm i --prefer-offline (from the project settings)",
        );
        assert_reason(
            &plan,
            "Build command: npm run build:prod -- --mode=x (from the project settings)",
        );
        assert_eq!(plan.framework, Framework::Vite);
    }

    #[test]
    fn blank_command_overrides_skip_the_step() {
        let dir = project(&[("package.json", &pkg(&["vite"], &[("build", "vite build")]))]);
        let overrides = BuildSettings {
            install_command: Some(String::new()),
            build_command: Some("   ".to_owned()),
            ..settings()
        };
        let plan = plan(dir.path(), &overrides).expect("plan");
        assert_eq!(plan.install_command, None);
        assert_eq!(plan.build_command, None);
        assert_reason(&plan, "Install command: none (from the project settings)");
    }

    #[test]
    fn build_override_on_a_static_project_still_installs() {
        let dir = project(&[("package.json", &pkg(&["tailwindcss"], &[]))]);
        let overrides = BuildSettings {
            build_command: Some("npx tailwindcss -o out.css".to_owned()),
            ..settings()
        };
        let plan = plan(dir.path(), &overrides).expect("plan");
        assert_eq!(
            plan.install_command.as_deref(),
            Some("npm install --no-audit --no-fund")
        );
    }

    #[test]
    fn output_override_is_the_only_candidate() {
        let dir = project(&[("package.json", &pkg(&["webpack"], &[("build", "webpack")]))]);
        let overrides = BuildSettings {
            output_dir: Some(RelPath::parse("site/_out").expect("path")),
            ..settings()
        };
        let plan = plan(dir.path(), &overrides).expect("plan");
        assert_eq!(outputs(&plan), ["site/_out"]);
        assert_reason(&plan, "Output directory: site/_out (from the project settings)");
    }

    #[test]
    fn output_override_skips_angular_json() {
        // A hostile angular.json does not matter when the output directory is set.
        let dir = angular_project(&angular_json("a:application", Value::from("../../etc")));
        let overrides = BuildSettings {
            output_dir: Some(RelPath::root()),
            ..settings()
        };
        let plan = plan(dir.path(), &overrides).expect("plan");
        assert_eq!(plan.output_candidates, [RelPath::root()]);
        assert_reason(&plan, "Output directory: . (from the project settings)");
    }

    // --- hostile or malformed files ------------------------------------------------------------

    #[test]
    fn symlinked_package_json_is_refused() {
        let outside = project(&[("secret.json", r#"{"dependencies": {"vite": "1"}}"#)]);
        let dir = project(&[]);
        symlink(outside.path().join("secret.json"), dir.path().join("package.json")).expect("symlink");
        let err = detect_err(&dir);
        assert!(
            matches!(&err, DetectError::Symlink { file } if file == "package.json"),
            "{err:?}"
        );
        assert!(err.to_string().contains("package.json"), "{err}");
    }

    #[test]
    fn dangling_symlinked_package_json_is_refused() {
        let dir = project(&[]);
        symlink("/nonexistent/really", dir.path().join("package.json")).expect("symlink");
        assert!(matches!(detect_err(&dir), DetectError::Symlink { .. }));
    }

    #[test]
    fn package_json_directory_is_refused() {
        let dir = project(&[]);
        fs::create_dir(dir.path().join("package.json")).expect("mkdir");
        let err = detect_err(&dir);
        assert!(
            matches!(&err, DetectError::NotAFile { file } if file == "package.json"),
            "{err:?}"
        );
    }

    #[test]
    fn oversized_package_json_is_refused() {
        let padding = " ".repeat(MAX_FILE_BYTES as usize);
        let dir = project(&[("package.json", &format!("{{}}{padding}"))]);
        let err = detect_err(&dir);
        assert!(
            matches!(&err, DetectError::TooLarge { file, .. } if file == "package.json"),
            "{err:?}"
        );
    }

    #[test]
    fn package_json_at_the_limit_is_read() {
        let padding = " ".repeat(MAX_FILE_BYTES as usize - 2);
        let dir = project(&[("package.json", &format!("{{}}{padding}"))]);
        assert_eq!(detect(&dir).framework, Framework::Static);
    }

    #[test]
    fn malformed_package_json_says_where() {
        let dir = project(&[("package.json", "{\n  \"name\": \"x\",\n  \"scripts\": {,}\n}")]);
        let err = detect_err(&dir);
        let DetectError::InvalidJson { line, column, .. } = &err else {
            panic!("expected InvalidJson, got {err:?}");
        };
        assert_eq!((*line, *column), (3, 15));
        let message = err.to_string();
        assert!(message.contains("package.json"), "{message}");
        assert!(message.contains("line 3, column 15"), "{message}");
        assert!(!message.contains("at line"), "position reported twice: {message}");
    }

    #[test]
    fn package_json_must_be_an_object() {
        for content in ["[]", "\"x\"", "null"] {
            let dir = project(&[("package.json", content)]);
            let err = detect_err(&dir);
            assert!(matches!(err, DetectError::NotAnObject { .. }), "{content}: {err:?}");
            assert!(err.to_string().contains("package.json"));
        }
    }

    #[test]
    fn empty_and_binary_package_json_are_errors() {
        let dir = project(&[("package.json", "")]);
        assert!(matches!(detect_err(&dir), DetectError::InvalidJson { .. }));
        let dir = project(&[]);
        fs::write(dir.path().join("package.json"), b"{\"name\": \"\xff\xfe\"}").expect("write");
        assert!(matches!(detect_err(&dir), DetectError::InvalidJson { .. }));
    }

    #[test]
    fn deeply_nested_package_json_is_an_error_not_a_crash() {
        let nested = format!("{{\"a\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let dir = project(&[("package.json", &nested)]);
        assert!(matches!(detect_err(&dir), DetectError::InvalidJson { .. }));
    }

    #[test]
    fn package_json_with_bom_is_accepted() {
        let dir = project(&[("package.json", "\u{feff}{\"devDependencies\": {\"vite\": \"5\"}}")]);
        assert_eq!(detect(&dir).framework, Framework::Vite);
    }

    #[test]
    fn wrongly_typed_fields_are_ignored_with_a_note() {
        let json = r#"{"name": 7, "packageManager": ["pnpm"], "dependencies": "vite",
            "devDependencies": {"vite": "5"}, "scripts": "build"}"#;
        let dir = project(&[("package.json", json)]);
        let plan = detect(&dir);
        assert_eq!(plan.framework, Framework::Vite);
        assert_eq!(plan.package_manager, Some(PackageManager::Npm));
        assert_eq!(plan.build_command.as_deref(), Some("npx vite build"));
        assert_reason(&plan, "ignoring \"dependencies\", which is not an object");
        assert_reason(&plan, "ignoring \"packageManager\", which is not a string");
    }

    #[test]
    fn package_manager_parsing() {
        assert_eq!(
            parse_package_manager_field("pnpm@8.6.0"),
            Some((PackageManager::Pnpm, Some(8)))
        );
        assert_eq!(parse_package_manager_field("yarn"), Some((PackageManager::Yarn, None)));
        assert_eq!(
            parse_package_manager_field("bun@latest"),
            Some((PackageManager::Bun, None))
        );
        assert_eq!(parse_package_manager_field("@8"), None);
        assert_eq!(
            parse_package_manager_field("npm@99999999999999999999999"),
            Some((PackageManager::Npm, None))
        );
        for manager in [
            PackageManager::Npm,
            PackageManager::Yarn,
            PackageManager::Pnpm,
            PackageManager::Bun,
        ] {
            assert_eq!(PackageManager::from_name(manager.as_str()), Some(manager));
        }
    }

    #[test]
    fn reasons_cover_every_decision() {
        let dir = project(&[
            ("package.json", &pkg(&["vite"], &[("build", "vite build")])),
            ("yarn.lock", ""),
        ]);
        let plan = detect(&dir);
        for label in [
            "Framework: ",
            "Package manager: ",
            "Install command: ",
            "Build command: ",
            "Output directory: ",
        ] {
            assert_eq!(
                plan.reasons.iter().filter(|r| r.starts_with(label)).count(),
                1,
                "{label} in {:#?}",
                plan.reasons
            );
        }
    }
}
