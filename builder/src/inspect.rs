//! Looking at a repository before anything is built: clone the commit (quietly, outside any
//! build) and work out how it would be built. The dashboard shows this when a project is made.

use crate::child::{Interrupt, Stopper};
use crate::detect::{self, BuildPlan};
use crate::git::{Checkout, Git, GitError, Output, Source};
use platform::RelPath;
use platform::model::BuildSettings;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("the root directory {0:?} does not exist in the repository")]
    NoRootDir(String),
    #[error(transparent)]
    Detect(#[from] detect::DetectError),
    #[error("looking at the repository took too long")]
    TimedOut,
}

/// What a repository holds at the commit that would be built.
pub struct Inspection {
    pub checkout: Checkout,
    pub plan: BuildPlan,
}

/// Clones `source` into `dest` (an empty directory the caller removes) and plans its build with
/// `settings` (the user's overrides, if any).
pub async fn inspect(
    git: &Git,
    source: &Source<'_>,
    settings: &BuildSettings,
    dest: &Path,
    timeout: Duration,
) -> Result<Inspection, InspectError> {
    let stopper = Stopper::new(CancellationToken::new(), timeout);
    let checkout = match git.checkout(source, dest, Output::Quiet, &stopper).await {
        Err(GitError::Run(crate::child::RunError::Interrupted(Interrupt::TimedOut))) => {
            return Err(InspectError::TimedOut);
        }
        other => other?,
    };
    if !crate::output::is_real_dir(dest, &settings.root_dir) {
        return Err(InspectError::NoRootDir(display(&settings.root_dir)));
    }
    let plan = detect::plan(&settings.root_dir.under(dest), settings)?;
    Ok(Inspection { checkout, plan })
}

fn display(p: &RelPath) -> String {
    if p.is_root() { ".".into() } else { p.to_string() }
}
