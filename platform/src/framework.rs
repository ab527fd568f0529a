//! The frameworks the builder knows how to build without being told, and what the platform knows
//! about each: one [`FrameworkInfo`] per framework in [`FRAMEWORKS`].
//!
//! Detection (in the builder), the records ([`model`](crate::model)) and the dashboard all read
//! this table, so adding a framework is a variant of [`Framework`] and its entry here. What cannot
//! be said as data (reading angular.json, say) is code in the builder, keyed by the framework.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A way of building a site. Stored and sent as its [`slug`](FrameworkInfo::slug).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framework {
    Vite,
    CreateReactApp,
    Angular,
    VueCli,
    SvelteKit,
    Astro,
    Next,
    Nuxt,
    Gatsby,
    Docusaurus,
    /// A `package.json` with a build script and no framework the builder recognises.
    Other,
    /// Files served as they are in the repository; no build.
    Static,
}

/// Everything the platform knows about one framework.
#[derive(Debug)]
pub struct FrameworkInfo {
    pub framework: Framework,
    /// The name in the API, the database and the build settings; a stored slug must keep parsing.
    pub slug: &'static str,
    /// The name as people write it, for the build log and the dashboard.
    pub label: &'static str,
    /// Dependencies in package.json (`dependencies` or `devDependencies`) that identify the
    /// framework, checked in this order.
    pub marker_dependencies: &'static [&'static str],
    /// Files in the project's root directory that identify the framework even when its
    /// dependency comes in indirectly; checked after this entry's dependencies.
    pub marker_files: &'static [&'static str],
    /// The package.json script that builds the site, or `None` when there is nothing to build.
    pub build_script: Option<&'static str>,
    /// The framework's own build command, for a package.json without that script.
    pub build_command: Option<&'static str>,
    /// Where a build writes the site, when that is always the same directory.
    pub output_dir: Option<&'static str>,
    /// A single-page app routes in the browser: unknown paths fall back to `index.html`.
    pub spa: bool,
}

/// One entry per framework, in detection order: the first entry whose marker dependency or
/// marker file a project has is its framework. Many frameworks depend on vite themselves, so
/// Vite comes after them; `Other` and `Static` have no markers and are chosen in code.
pub static FRAMEWORKS: &[FrameworkInfo] = &[
    FrameworkInfo {
        framework: Framework::Next,
        slug: "nextjs",
        label: "Next.js",
        marker_dependencies: &["next"],
        marker_files: &[],
        build_script: Some("build"),
        build_command: Some("npx next build"),
        output_dir: Some("out"),
        spa: false,
    },
    // Nuxt is deployed as a static site, which `generate` produces.
    FrameworkInfo {
        framework: Framework::Nuxt,
        slug: "nuxt",
        label: "Nuxt",
        marker_dependencies: &["nuxt", "nuxt3"],
        marker_files: &[],
        build_script: Some("generate"),
        build_command: Some("npx nuxt generate"),
        output_dir: Some(".output/public"),
        spa: false,
    },
    FrameworkInfo {
        framework: Framework::Gatsby,
        slug: "gatsby",
        label: "Gatsby",
        marker_dependencies: &["gatsby"],
        marker_files: &[],
        build_script: Some("build"),
        build_command: Some("npx gatsby build"),
        output_dir: Some("public"),
        spa: false,
    },
    FrameworkInfo {
        framework: Framework::Docusaurus,
        slug: "docusaurus",
        label: "Docusaurus",
        marker_dependencies: &["@docusaurus/core"],
        marker_files: &[],
        build_script: Some("build"),
        build_command: Some("npx docusaurus build"),
        output_dir: Some("build"),
        spa: false,
    },
    FrameworkInfo {
        framework: Framework::Astro,
        slug: "astro",
        label: "Astro",
        marker_dependencies: &["astro"],
        marker_files: &[],
        build_script: Some("build"),
        build_command: Some("npx astro build"),
        output_dir: Some("dist"),
        spa: false,
    },
    FrameworkInfo {
        framework: Framework::SvelteKit,
        slug: "sveltekit",
        label: "SvelteKit",
        marker_dependencies: &["@sveltejs/kit"],
        marker_files: &[],
        build_script: Some("build"),
        build_command: Some("npx vite build"),
        output_dir: Some("build"),
        spa: false,
    },
    // The output directory comes from angular.json.
    FrameworkInfo {
        framework: Framework::Angular,
        slug: "angular",
        label: "Angular",
        marker_dependencies: &["@angular/core"],
        marker_files: &["angular.json"],
        build_script: Some("build"),
        build_command: Some("npx ng build"),
        output_dir: None,
        spa: true,
    },
    FrameworkInfo {
        framework: Framework::VueCli,
        slug: "vue-cli",
        label: "Vue CLI",
        marker_dependencies: &["@vue/cli-service"],
        marker_files: &[],
        build_script: Some("build"),
        build_command: Some("npx vue-cli-service build"),
        output_dir: Some("dist"),
        spa: true,
    },
    FrameworkInfo {
        framework: Framework::CreateReactApp,
        slug: "create-react-app",
        label: "Create React App",
        marker_dependencies: &["react-scripts"],
        marker_files: &[],
        build_script: Some("build"),
        build_command: Some("npx react-scripts build"),
        output_dir: Some("build"),
        spa: true,
    },
    FrameworkInfo {
        framework: Framework::Vite,
        slug: "vite",
        label: "Vite",
        marker_dependencies: &["vite"],
        marker_files: &[],
        build_script: Some("build"),
        build_command: Some("npx vite build"),
        output_dir: Some("dist"),
        spa: true,
    },
    // The output is wherever the project's own build script writes it.
    FrameworkInfo {
        framework: Framework::Other,
        slug: "other",
        label: "Other",
        marker_dependencies: &[],
        marker_files: &[],
        build_script: Some("build"),
        build_command: None,
        output_dir: None,
        spa: false,
    },
    // The output is `public` when it holds an index.html, else the project's root.
    FrameworkInfo {
        framework: Framework::Static,
        slug: "static",
        label: "Static files",
        marker_dependencies: &[],
        marker_files: &[],
        build_script: None,
        build_command: None,
        output_dir: None,
        spa: false,
    },
];

impl Framework {
    /// Every framework, in the order people are offered them (the dashboard, API errors).
    pub const ALL: &'static [Framework] = &[
        Self::Vite,
        Self::CreateReactApp,
        Self::Angular,
        Self::VueCli,
        Self::SvelteKit,
        Self::Astro,
        Self::Next,
        Self::Nuxt,
        Self::Gatsby,
        Self::Docusaurus,
        Self::Other,
        Self::Static,
    ];

    /// The framework's entry in [`FRAMEWORKS`].
    pub fn info(self) -> &'static FrameworkInfo {
        FRAMEWORKS
            .iter()
            .find(|info| info.framework == self)
            .expect("every framework has an entry in FRAMEWORKS")
    }

    pub fn as_str(self) -> &'static str {
        self.info().slug
    }

    pub fn label(self) -> &'static str {
        self.info().label
    }

    pub fn parse(raw: &str) -> Option<Self> {
        FRAMEWORKS
            .iter()
            .find(|info| info.slug == raw)
            .map(|info| info.framework)
    }

    /// Single-page apps route in the browser: unknown paths fall back to `index.html`.
    pub fn is_spa(self) -> bool {
        self.info().spa
    }
}

impl fmt::Display for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Framework {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Framework {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).ok_or_else(|| {
            let all: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
            serde::de::Error::custom(format!("unknown value {raw:?}, expected one of {}", all.join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_framework_has_one_entry() {
        assert_eq!(FRAMEWORKS.len(), Framework::ALL.len());
        for &framework in Framework::ALL {
            let entries = FRAMEWORKS.iter().filter(|info| info.framework == framework).count();
            assert_eq!(entries, 1, "{framework:?}");
        }
    }

    #[test]
    fn slugs_are_the_stored_names() {
        // Databases and API clients hold these: a change here breaks them.
        let slugs: Vec<&str> = Framework::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            slugs,
            [
                "vite",
                "create-react-app",
                "angular",
                "vue-cli",
                "sveltekit",
                "astro",
                "nextjs",
                "nuxt",
                "gatsby",
                "docusaurus",
                "other",
                "static",
            ]
        );
        for &framework in Framework::ALL {
            assert_eq!(Framework::parse(framework.as_str()), Some(framework));
            let json = serde_json::to_string(&framework).unwrap();
            assert_eq!(json, format!("\"{}\"", framework.as_str()));
            assert_eq!(serde_json::from_str::<Framework>(&json).unwrap(), framework);
        }
    }

    #[test]
    fn output_dirs_are_relative_paths() {
        for info in FRAMEWORKS {
            if let Some(dir) = info.output_dir {
                let path = crate::RelPath::parse(dir).expect(dir);
                assert!(!path.is_root(), "{dir}");
            }
        }
    }

    #[test]
    fn labels_and_markers_are_unambiguous() {
        let labels: BTreeSet<&str> = FRAMEWORKS.iter().map(|info| info.label).collect();
        assert_eq!(labels.len(), FRAMEWORKS.len());
        let mut markers = BTreeSet::new();
        for info in FRAMEWORKS {
            for marker in info.marker_dependencies.iter().chain(info.marker_files) {
                assert!(markers.insert(*marker), "{marker} marks two frameworks");
            }
        }
    }
}
