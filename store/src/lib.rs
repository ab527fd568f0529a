//! The artifact stores behind [`platform::artifacts::ArtifactStore`]: [`LocalArtifactStore`] in a
//! directory (the embedded default) and [`S3ArtifactStore`] under a prefix of an S3 bucket. Both
//! keep the layout of [`platform::artifacts::object_key`] and
//! [`platform::artifacts::manifest_key`], so a directory synced to a bucket is a valid store.
//!
//! Its own crate so that only the components that open a store compile the AWS SDK.

mod local;
mod s3;
#[cfg(test)]
mod tests;

pub use local::LocalArtifactStore;
pub use platform::settings::S3Options;
pub use s3::S3ArtifactStore;

use platform::artifacts::{ArtifactLocation, ArtifactStore, StoreError};
use std::sync::Arc;

/// Opens the configured store: creates the directory, or connects to the bucket (see
/// [`S3ArtifactStore::connect`]; `s3` is ignored for a local directory).
pub async fn open(location: &ArtifactLocation, s3: S3Options) -> Result<Arc<dyn ArtifactStore>, StoreError> {
    Ok(match location {
        ArtifactLocation::Local(dir) => Arc::new(LocalArtifactStore::open(dir.clone()).await?),
        ArtifactLocation::S3(location) => Arc::new(S3ArtifactStore::connect(location.clone(), s3).await?),
    })
}
