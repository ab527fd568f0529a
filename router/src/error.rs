//! What can go wrong while (re)building the routing table. Serving a request never fails: every
//! problem there becomes an HTTP status.

use db::DbError;
use platform::artifacts::StoreError;
use platform::{DeploymentId, ProjectId};

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("router: database: {0}")]
    Db(#[from] DbError),
    #[error("router: artifact store: {0}")]
    Store(#[from] StoreError),
    /// The project's production pointer names a deployment the store has no manifest for.
    #[error("router: deployment {0} is production but has no manifest in the artifact store")]
    MissingManifest(DeploymentId),
    /// The store answered with the manifest of another deployment than the one asked for.
    #[error("router: the manifest stored for deployment {asked} belongs to deployment {found}")]
    WrongManifest { asked: DeploymentId, found: DeploymentId },
    /// A full load installed the new table, but these projects' new production manifests could not
    /// be read: they keep serving what they served before (or answer 502 if they served nothing).
    #[error("router: {} site(s) could not be loaded and keep their previous content", .0.len())]
    Incomplete(Vec<ProjectId>),
}
