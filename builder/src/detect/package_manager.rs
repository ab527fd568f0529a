//! The package manager of a package.json project, and the install command that goes with it.

use super::Decision;
use super::files::Markers;
use super::package_json::PackageJson;
use std::fmt;

const NPM_LOCKFILES: &[&str] = &["package-lock.json", "npm-shrinkwrap.json"];
const YARN_LOCKFILES: &[&str] = &["yarn.lock"];
const PNPM_LOCKFILES: &[&str] = &["pnpm-lock.yaml"];
const BUN_LOCKFILES: &[&str] = &["bun.lockb", "bun.lock"];

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
    pub(super) fn from_name(name: &str) -> Option<Self> {
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
    pub(super) fn run_prefix(self) -> &'static str {
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

/// The chosen package manager, and the major version `packageManager` pinned, if any.
#[derive(Debug, Clone, Copy)]
pub(super) struct PackageManagerChoice {
    pub(super) manager: PackageManager,
    pinned_major: Option<u64>,
}

pub(super) fn detect_package_manager(package: &PackageJson, markers: &Markers) -> Decision<PackageManagerChoice> {
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
pub(super) fn parse_package_manager_field(raw: &str) -> Option<(PackageManager, Option<u64>)> {
    let (name, version) = raw.trim().split_once('@').unwrap_or((raw.trim(), ""));
    let manager = PackageManager::from_name(name)?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    Some((manager, digits.parse().ok()))
}

/// Installs reproducibly (from the lockfile, failing if it is out of date) whenever there is a
/// lockfile, and skips the install when there is nothing to install or nothing to build with it.
pub(super) fn detect_install_command(
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
