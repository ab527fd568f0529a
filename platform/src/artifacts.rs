//! Deployment files, stored content-addressed, behind [`ArtifactStore`].
//!
//! A file's bytes are stored once under their SHA-256, whatever deployment or project produced
//! them; a deployment is a [`Manifest`] mapping paths to hashes. Objects and manifests are
//! written once and never changed, so a manifest that can be read is complete.

use crate::{DeploymentId, RelPath};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWriteExt};

/// The SHA-256 of a file's content, as 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash(String);

#[derive(Debug, thiserror::Error)]
#[error("not a SHA-256 hex digest")]
pub struct InvalidHash;

impl ContentHash {
    pub fn parse(raw: &str) -> Result<Self, InvalidHash> {
        if raw.len() == 64 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidHash)
        }
    }

    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    pub fn from_digest(digest: Sha256) -> Self {
        Self(hex::encode(digest.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.0[..12])
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ContentHash {
    type Error = InvalidHash;
    fn try_from(raw: String) -> Result<Self, InvalidHash> {
        Self::parse(&raw)
    }
}

impl From<ContentHash> for String {
    fn from(h: ContentHash) -> String {
        h.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub hash: ContentHash,
    pub size: u64,
    pub content_type: String,
}

/// Everything the router needs to serve one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub deployment_id: DeploymentId,
    /// Unknown non-asset paths answer with `index.html` (single-page apps).
    pub spa: bool,
    pub files: BTreeMap<RelPath, FileEntry>,
}

impl Manifest {
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// An object's bytes, streamed.
pub struct ObjectReader {
    pub len: u64,
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} is not in the store")]
    MissingObject(ContentHash),
    #[error("artifact store I/O: {0}")]
    Io(#[from] io::Error),
    #[error("manifest of deployment {0} is corrupt: {1}")]
    CorruptManifest(DeploymentId, serde_json::Error),
}

/// Where deployment files live: a local directory or an object store.
#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Stores the file at `src` as object `hash` unless it is there already. Returns whether
    /// it was new. The caller computed `hash` from the file's content.
    async fn put_object(&self, hash: &ContentHash, src: &Path) -> Result<bool, StoreError>;

    async fn get_object(&self, hash: &ContentHash) -> Result<ObjectReader, StoreError>;

    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError>;

    /// `None` when no manifest was stored for the deployment.
    async fn get_manifest(&self, id: &DeploymentId) -> Result<Option<Manifest>, StoreError>;

    async fn delete_manifest(&self, id: &DeploymentId) -> Result<(), StoreError>;

    /// How many objects the store holds (for operators and tests).
    async fn object_count(&self) -> Result<u64, StoreError>;
}

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
        self.root.join("objects").join(&hash.as_str()[..2]).join(hash.as_str())
    }

    fn manifest_path(&self, id: &DeploymentId) -> PathBuf {
        self.root.join("manifests").join(format!("{id}.json"))
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = [0u8; 12];
        crate::ids::random_bytes(&mut name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn objects_are_stored_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalArtifactStore::open(dir.path().join("store")).await.unwrap();
        let src = dir.path().join("a.txt");
        std::fs::write(&src, b"hello").unwrap();
        let hash = ContentHash::of(b"hello");
        assert!(store.put_object(&hash, &src).await.unwrap());
        assert!(!store.put_object(&hash, &src).await.unwrap());
        assert_eq!(store.object_count().await.unwrap(), 1);
        let mut obj = store.get_object(&hash).await.unwrap();
        assert_eq!(obj.len, 5);
        let mut buf = String::new();
        obj.reader.read_to_string(&mut buf).await.unwrap();
        assert_eq!(buf, "hello");
        let missing = ContentHash::of(b"nope");
        assert!(matches!(
            store.get_object(&missing).await,
            Err(StoreError::MissingObject(_))
        ));
    }

    #[tokio::test]
    async fn manifests_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalArtifactStore::open(dir.path().to_path_buf()).await.unwrap();
        let id = DeploymentId::generate();
        assert_eq!(store.get_manifest(&id).await.unwrap(), None);
        let mut files = BTreeMap::new();
        files.insert(
            RelPath::parse("index.html").unwrap(),
            FileEntry {
                hash: ContentHash::of(b"x"),
                size: 1,
                content_type: "text/html".into(),
            },
        );
        let m = Manifest {
            deployment_id: id.clone(),
            spa: true,
            files,
        };
        store.put_manifest(&m).await.unwrap();
        assert_eq!(store.get_manifest(&id).await.unwrap(), Some(m));
        store.delete_manifest(&id).await.unwrap();
        assert_eq!(store.get_manifest(&id).await.unwrap(), None);
    }
}
