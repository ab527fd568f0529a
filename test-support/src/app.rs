//! Builders over the real backends, for the tests of one component: an SQLite [`Database`], a
//! [`LocalArtifactStore`] and an [`InProcessBus`] in a temporary directory, and the users,
//! projects and stored deployments a test starts from.

use bus::InProcessBus;
use db::{Database, NewDeployment, NewProject};
use platform::artifacts::{ArtifactStore, ContentHash, Encodings, FileEntry, Manifest, Variant};
use platform::bus::StateChange;
use platform::model::{BuildSettings, DeploymentState, DeploymentTarget, DeploymentTrigger, Project, User};
use platform::site_rules::SiteRules;
use platform::{BranchName, DeploymentId, GitUrl, ProjectSlug, RelPath};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use store::LocalArtifactStore;
use tempfile::TempDir;

/// The backends of one test, in a temporary directory removed when it drops, and one user who
/// owns every project made here.
pub struct TestApp {
    dir: TempDir,
    pub db: Database,
    pub store: Arc<LocalArtifactStore>,
    pub bus: Arc<InProcessBus>,
    user: User,
}

impl TestApp {
    pub async fn new() -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::connect(&format!("sqlite://{}", dir.path().join("test.db").display()))
            .await
            .expect("SQLite database");
        let store = LocalArtifactStore::open(dir.path().join("artifacts"))
            .await
            .expect("artifact store");
        let user = db.create_user("Ann", "ann@example.com", "hash").await.expect("user");
        TestApp {
            dir,
            db,
            store: Arc::new(store),
            bus: Arc::new(InProcessBus::new()),
            user,
        }
    }

    /// Where the artifact store keeps its files (objects under `objects/`).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    /// A project of the user, on branch `main` of a repository nothing clones.
    pub async fn project(&self, slug: &str) -> Project {
        self.db
            .create_project(NewProject {
                owner: self.user.id.clone(),
                github: None,
                slug: ProjectSlug::parse(slug).expect("slug"),
                name: slug.to_owned(),
                git_url: GitUrl::parse("https://example.com/a/b.git").expect("git URL"),
                branch: BranchName::parse("main").expect("branch"),
                build: BuildSettings::default(),
                env: vec![],
            })
            .await
            .expect("project")
    }

    /// A deployment of `project` to be described, then made with [`DeploymentBuilder::create`].
    pub fn deployment<'a>(&'a self, project: &'a Project) -> DeploymentBuilder<'a> {
        DeploymentBuilder {
            app: self,
            project,
            target: DeploymentTarget::Production,
            branch: project.branch.clone(),
            spa: false,
            files: Vec::new(),
            rules: SiteRules::default(),
            ready: false,
            production: false,
        }
    }

    /// A production deployment of `project` serving `files` (path, text), stored but neither
    /// ready nor promoted.
    pub async fn deploy_files(&self, project: &Project, files: &[(&str, &str)]) -> DeploymentId {
        self.deployment(project).files(files).create().await
    }

    /// Stores `bytes` as an object.
    async fn put_object(&self, bytes: &[u8]) -> Variant {
        let hash = ContentHash::of(bytes);
        let tmp = self.dir.path().join("upload.tmp");
        std::fs::write(&tmp, bytes).expect("write the upload");
        self.store.put_object(&hash, &tmp).await.expect("store the object");
        Variant {
            hash,
            size: bytes.len() as u64,
        }
    }
}

/// A deployment being described: production of the project's branch, no files, not ready, not
/// promoted, until told otherwise.
pub struct DeploymentBuilder<'a> {
    app: &'a TestApp,
    project: &'a Project,
    target: DeploymentTarget,
    branch: BranchName,
    spa: bool,
    files: Vec<SiteFile>,
    rules: SiteRules,
    ready: bool,
    production: bool,
}

impl DeploymentBuilder<'_> {
    /// A preview of `branch` instead of production.
    pub fn preview(mut self, branch: &str) -> Self {
        self.target = DeploymentTarget::Preview;
        self.branch = BranchName::parse(branch).expect("branch");
        self
    }

    /// Whether unknown routes answer with `index.html`.
    pub fn spa(mut self, spa: bool) -> Self {
        self.spa = spa;
        self
    }

    /// Adds files: `(path, text)` pairs (typed by their extension) or [`SiteFile`]s.
    pub fn files<F: Into<SiteFile>>(mut self, files: impl IntoIterator<Item = F>) -> Self {
        self.files.extend(files.into_iter().map(Into::into));
        self
    }

    /// The site's `_redirects` and `_headers`, as the builder parsed them.
    pub fn rules(mut self, rules: SiteRules) -> Self {
        self.rules = rules;
        self
    }

    /// Marks it built (`ready`), which also gives it its own hostname.
    pub fn ready(mut self) -> Self {
        self.ready = true;
        self
    }

    /// Makes it the project's production deployment.
    pub fn production(mut self) -> Self {
        self.production = true;
        self
    }

    /// Records the deployment, stores its objects and its manifest, and marks it as asked.
    pub async fn create(self) -> DeploymentId {
        let app = self.app;
        let deployment = app
            .db
            .create_deployment(NewDeployment {
                project: self.project.id.clone(),
                target: self.target,
                branch: self.branch,
                commit: None,
                commit_message: None,
                commit_author: None,
                trigger: DeploymentTrigger::Api,
            })
            .await
            .expect("deployment");
        let mut files = BTreeMap::new();
        for file in &self.files {
            let identity = app.put_object(&file.bytes).await;
            let encodings = Encodings {
                br: match &file.br {
                    Some(bytes) => Some(app.put_object(bytes).await),
                    None => None,
                },
                gzip: match &file.gzip {
                    Some(bytes) => Some(app.put_object(bytes).await),
                    None => None,
                },
            };
            files.insert(
                RelPath::parse(&file.path).expect("path"),
                FileEntry {
                    hash: identity.hash,
                    size: identity.size,
                    content_type: file.content_type.clone(),
                    encodings,
                },
            );
        }
        app.store
            .put_manifest(&Manifest {
                deployment_id: deployment.id.clone(),
                spa: self.spa,
                files,
                rules: self.rules,
            })
            .await
            .expect("manifest");
        if self.ready {
            app.db
                .apply_state(&deployment.id, &StateChange::new(DeploymentState::Ready))
                .await
                .expect("ready");
        }
        if self.production {
            app.db
                .set_production(&self.project.id, &deployment.id)
                .await
                .expect("promote");
        }
        deployment.id
    }
}

/// One file of a deployment: its bytes, its type, and the bytes of its compressed variants. The
/// router serves variants as stored, so they need not really be compressed.
#[derive(Debug, Clone)]
pub struct SiteFile {
    pub path: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub br: Option<Vec<u8>>,
    pub gzip: Option<Vec<u8>>,
}

impl SiteFile {
    pub fn new(path: &str, content_type: &str, bytes: impl Into<Vec<u8>>) -> SiteFile {
        SiteFile {
            path: path.to_owned(),
            content_type: content_type.to_owned(),
            bytes: bytes.into(),
            br: None,
            gzip: None,
        }
    }

    pub fn br(mut self, bytes: impl Into<Vec<u8>>) -> SiteFile {
        self.br = Some(bytes.into());
        self
    }

    pub fn gzip(mut self, bytes: impl Into<Vec<u8>>) -> SiteFile {
        self.gzip = Some(bytes.into());
        self
    }
}

/// A text file, typed by its extension as the builder would for the few kinds tests use.
impl From<&(&str, &str)> for SiteFile {
    fn from(&(path, text): &(&str, &str)) -> SiteFile {
        let content_type = match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("png") => "image/png",
            _ => "application/octet-stream",
        };
        SiteFile::new(path, content_type, text)
    }
}

impl From<&SiteFile> for SiteFile {
    fn from(file: &SiteFile) -> SiteFile {
        file.clone()
    }
}
