//! [`ArtifactStore`] in a local directory.

use async_trait::async_trait;
use platform::DeploymentId;
use platform::artifacts::{
    ArtifactStore, ContentHash, Manifest, ObjectReader, StoreError, check_range, manifest_key, object_key,
};
use std::io::{self, Seek};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Objects and manifests in a directory: `objects/ab/abcdef…`, `manifests/<id>.json`.
#[derive(Debug, Clone)]
pub struct LocalArtifactStore {
    root: PathBuf,
}

impl LocalArtifactStore {
    pub async fn open(root: PathBuf) -> io::Result<Self> {
        for sub in ["objects", "manifests", "tmp"] {
            tokio::fs::create_dir_all(root.join(sub)).await?;
        }
        Ok(Self { root })
    }

    fn object_path(&self, hash: &ContentHash) -> PathBuf {
        self.root.join(object_key(hash))
    }

    fn manifest_path(&self, id: &DeploymentId) -> PathBuf {
        self.root.join(manifest_key(id))
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = [0u8; 12];
        platform::ids::random_bytes(&mut name);
        self.root.join("tmp").join(hex::encode(name))
    }

    /// Writes through a temporary file and a rename, so readers never see a partial file.
    async fn write_atomically(&self, dest: &Path, write: WriteSource<'_>) -> io::Result<()> {
        let tmp = self.temp_path();
        let result = async {
            match write {
                WriteSource::Copy(src) => {
                    tokio::fs::copy(src, &tmp).await?;
                }
                WriteSource::Bytes(bytes) => {
                    let mut f = tokio::fs::File::create(&tmp).await?;
                    f.write_all(bytes).await?;
                    f.sync_all().await?;
                }
            }
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&tmp, dest).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

enum WriteSource<'a> {
    Copy(&'a Path),
    Bytes(&'a [u8]),
}

#[async_trait]
impl ArtifactStore for LocalArtifactStore {
    async fn put_object(&self, hash: &ContentHash, src: &Path) -> Result<bool, StoreError> {
        let dest = self.object_path(hash);
        if tokio::fs::try_exists(&dest).await? {
            return Ok(false);
        }
        self.write_atomically(&dest, WriteSource::Copy(src)).await?;
        Ok(true)
    }

    async fn get_object(&self, hash: &ContentHash) -> Result<ObjectReader, StoreError> {
        let file = match tokio::fs::File::open(self.object_path(hash)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingObject(hash.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata().await?.len();
        Ok(ObjectReader {
            len,
            reader: Box::pin(file),
        })
    }

    async fn get_object_range(&self, hash: &ContentHash, start: u64, len: u64) -> Result<ObjectReader, StoreError> {
        // Open, measure and seek in one blocking call rather than in three round trips of tokio's.
        let path = self.object_path(hash);
        let opened = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, u64)> {
            let mut file = std::fs::File::open(path)?;
            let size = file.metadata()?.len();
            if start <= size {
                file.seek(io::SeekFrom::Start(start))?;
            }
            Ok((file, size))
        })
        .await
        .map_err(io::Error::other)?;
        let (file, size) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingObject(hash.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        check_range(hash, start, len, size)?;
        Ok(ObjectReader {
            len,
            reader: Box::pin(tokio::fs::File::from_std(file).take(len)),
        })
    }

    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let json = serde_json::to_vec(manifest).expect("manifests always serialize");
        let dest = self.manifest_path(&manifest.deployment_id);
        self.write_atomically(&dest, WriteSource::Bytes(&json)).await?;
        Ok(())
    }

    async fn get_manifest(&self, id: &DeploymentId) -> Result<Option<Manifest>, StoreError> {
        match tokio::fs::read(self.manifest_path(id)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::CorruptManifest(id.clone(), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_manifest(&self, id: &DeploymentId) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.manifest_path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn object_count(&self) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut shards = tokio::fs::read_dir(self.root.join("objects")).await?;
        while let Some(shard) = shards.next_entry().await? {
            let mut objects = tokio::fs::read_dir(shard.path()).await?;
            while objects.next_entry().await?.is_some() {
                count += 1;
            }
        }
        Ok(count)
    }
}
