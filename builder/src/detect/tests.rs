use super::files::{MAX_FILE_BYTES, known_path};
use super::package_manager::parse_package_manager_field;
use super::*;
use platform::framework::FRAMEWORKS;
use serde_json::{Map, Value};
use std::fs;
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
fn every_marker_dependency_selects_its_framework() {
    for info in FRAMEWORKS {
        for dependency in info.marker_dependencies {
            let plan = detect(&project(&[("package.json", &pkg(&[dependency], &[]))]));
            assert_eq!(plan.framework, info.framework, "{dependency}");
            assert_eq!(plan.build_command.as_deref(), info.build_command, "{dependency}");
            if let Some(dir) = info.output_dir {
                assert_eq!(outputs(&plan), [dir], "{dependency}");
            }
            assert_eq!(plan.spa, info.spa, "{dependency}");
            assert_reason(&plan, &format!("Framework: {} (found \"{dependency}\"", info.label));
        }
    }
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
