//! Deployment files, stored content-addressed, behind [`ArtifactStore`].
//!
//! A file's bytes are stored once under their SHA-256, whatever deployment or project produced
//! them; a deployment is a [`Manifest`] mapping paths to hashes. Objects and manifests are
//! written once and never changed, so a manifest that can be read is complete.
//!
//! The implementations (crate `store`: a local directory and S3) share one layout —
//! [`object_key`] and [`manifest_key`]. [`ArtifactLocation`] parses the configured `file:///dir`
//! or `s3://bucket/prefix`.

/// Re-exported so that crates wrapping an [`ArtifactStore`] need not depend on `async-trait`.
pub use async_trait::async_trait;

use crate::site_rules::SiteRules;
use crate::{DeploymentId, RelPath};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncReadExt};

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
    /// Compressed copies made at upload time, so that serving never compresses. Absent from
    /// manifests written before they existed, and from files not worth compressing.
    #[serde(default, skip_serializing_if = "Encodings::is_empty")]
    pub encodings: Encodings,
}

/// The content-coded variants of a file (RFC 9110 `Content-Encoding`), each an ordinary object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encodings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub br: Option<Variant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip: Option<Variant>,
}

impl Encodings {
    pub fn is_empty(&self) -> bool {
        self.br.is_none() && self.gzip.is_none()
    }

    /// How many variants there are.
    pub fn count(&self) -> u64 {
        u64::from(self.br.is_some()) + u64::from(self.gzip.is_some())
    }
}

/// One encoded copy of a file: the object holding it, and its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub hash: ContentHash,
    pub size: u64,
}

/// Everything the router needs to serve one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub deployment_id: DeploymentId,
    /// Unknown non-asset paths answer with `index.html` (single-page apps).
    pub spa: bool,
    pub files: BTreeMap<RelPath, FileEntry>,
    /// The site's `_redirects` and `_headers`, parsed at upload time. Absent from manifests
    /// written before they existed, and from sites without them.
    #[serde(default, skip_serializing_if = "SiteRules::is_empty")]
    pub rules: SiteRules,
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
    /// The object store refused or failed a request (the message names the operation and key;
    /// it never contains credentials).
    #[error("artifact store backend: {0}")]
    Backend(String),
    /// A ranged read asked for bytes past the end of the object.
    #[error("object {hash}: bytes {start}..{end} are not within its {size} bytes")]
    RangeNotSatisfiable {
        hash: ContentHash,
        start: u64,
        end: u64,
        size: u64,
    },
}

/// Where deployment files live: a local directory or an object store.
#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Stores the file at `src` as object `hash` unless it is there already. Returns whether
    /// it was new. The caller computed `hash` from the file's content.
    async fn put_object(&self, hash: &ContentHash, src: &Path) -> Result<bool, StoreError>;

    async fn get_object(&self, hash: &ContentHash) -> Result<ObjectReader, StoreError>;

    /// The `len` bytes of object `hash` from offset `start`, streamed (an HTTP `Range` request).
    /// The range must lie within the object ([`StoreError::RangeNotSatisfiable`] otherwise); the
    /// reader's `len` is `len`.
    ///
    /// The default reads the object from its start and skips to `start`; stores that can seek
    /// (a file, an S3 ranged GET) do better.
    async fn get_object_range(&self, hash: &ContentHash, start: u64, len: u64) -> Result<ObjectReader, StoreError> {
        let mut object = self.get_object(hash).await?;
        let end = check_range(hash, start, len, object.len)?;
        let skipped = tokio::io::copy(&mut (&mut object.reader).take(start), &mut tokio::io::sink()).await?;
        if skipped != start {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("object {hash} ended before byte {start}"),
            )));
        }
        debug_assert_eq!(end - start, len);
        Ok(ObjectReader {
            len,
            reader: Box::pin(object.reader.take(len)),
        })
    }

    /// The object's bytes if this store holds them in memory, without waiting: the router's
    /// fast path for hot files (no future, no reader, no copy). Stores without a memory cache
    /// answer `None`, and the caller falls back to [`ArtifactStore::get_object`].
    fn cached_object(&self, _hash: &ContentHash) -> Option<Bytes> {
        None
    }

    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError>;

    /// `None` when no manifest was stored for the deployment.
    async fn get_manifest(&self, id: &DeploymentId) -> Result<Option<Manifest>, StoreError>;

    async fn delete_manifest(&self, id: &DeploymentId) -> Result<(), StoreError>;

    /// How many objects the store holds (for operators and tests).
    async fn object_count(&self) -> Result<u64, StoreError>;
}

/// Checks that `len` bytes from `start` lie within an object of `size` bytes; returns the end
/// (exclusive).
pub fn check_range(hash: &ContentHash, start: u64, len: u64, size: u64) -> Result<u64, StoreError> {
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(end),
        _ => Err(StoreError::RangeNotSatisfiable {
            hash: hash.clone(),
            start,
            end: start.saturating_add(len),
            size,
        }),
    }
}

/// The relative key of an object: `objects/ab/abcdef…` (both backends).
pub fn object_key(hash: &ContentHash) -> String {
    format!("objects/{}/{}", &hash.as_str()[..2], hash.as_str())
}

/// The relative key of a manifest: `manifests/<id>.json` (both backends).
pub fn manifest_key(id: &DeploymentId) -> String {
    format!("manifests/{id}.json")
}

/// Where the artifact store is, as configured (`CLOUDRUNR_ARTIFACT_STORE`):
/// `file:///absolute/dir` or `s3://bucket[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactLocation {
    Local(PathBuf),
    S3(S3Location),
}

/// A bucket and a key prefix inside it. The prefix has no leading or trailing `/` and is empty
/// for the whole bucket; keys are `<prefix>/objects/…` and `<prefix>/manifests/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

/// A `CLOUDRUNR_ARTIFACT_STORE` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid artifact store location {location:?}: {reason}")]
pub struct InvalidLocation {
    pub location: String,
    pub reason: String,
}

impl ArtifactLocation {
    /// Parses `file:///absolute/dir` or `s3://bucket[/prefix]`.
    ///
    /// Buckets follow S3's naming rules (3–63 characters of `a-z 0-9 . -`, starting and ending
    /// with a letter or digit, no `..`, not an IP address, none of the reserved prefixes and
    /// suffixes). A prefix is `/`-separated segments of S3's safe characters
    /// (`A-Z a-z 0-9 ! - _ . * ' ( )`), none of them empty or `.`, and no `..` anywhere.
    pub fn parse(raw: &str) -> Result<Self, InvalidLocation> {
        let invalid = |reason: &str| InvalidLocation {
            location: raw.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = raw.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid("a file location needs an absolute path: file:///dir"));
            }
            if path.chars().any(char::is_control) {
                return Err(invalid("the path contains a control character"));
            }
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if let Some(rest) = raw.strip_prefix("s3://") {
            if let Some((_, after)) = rest.rsplit_once('@') {
                // Never repeat what may be a secret: credentials come from the AWS chain.
                return Err(InvalidLocation {
                    location: format!("s3://[redacted]@{after}"),
                    reason: "credentials do not belong in the location: use the AWS configuration chain".into(),
                });
            }
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return S3Location::new(bucket, prefix)
                .map(Self::S3)
                .map_err(|reason| invalid(&reason));
        }
        Err(invalid("expected file:///dir or s3://bucket/prefix"))
    }
}

impl fmt::Display for ArtifactLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "file://{}", dir.display()),
            Self::S3(location) => location.fmt(f),
        }
    }
}

impl S3Location {
    /// Validates a bucket name and a prefix; surrounding `/` of the prefix are dropped. The error
    /// says what is wrong.
    pub fn new(bucket: &str, prefix: &str) -> Result<Self, String> {
        check_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            check_prefix(prefix)?;
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// S3's bucket naming rules for general purpose buckets.
fn check_bucket(bucket: &str) -> Result<(), String> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("a bucket name has 3 to 63 characters".into());
    }
    if !bucket
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'))
    {
        return Err("a bucket name has only lowercase letters, digits, dots and hyphens".into());
    }
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge_ok(bucket.as_bytes()[0]) || !edge_ok(bucket.as_bytes()[bucket.len() - 1]) {
        return Err("a bucket name starts and ends with a letter or digit".into());
    }
    if bucket.contains("..") {
        return Err("a bucket name has no two adjacent dots".into());
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("a bucket name is not an IP address".into());
    }
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    if RESERVED_PREFIXES.iter().any(|p| bucket.starts_with(p)) || RESERVED_SUFFIXES.iter().any(|s| bucket.ends_with(s))
    {
        return Err("the bucket name uses a prefix or suffix reserved by S3".into());
    }
    Ok(())
}

/// A key prefix: `/`-separated segments of S3's safe characters, no empty or `.` segment, no `..`.
fn check_prefix(prefix: &str) -> Result<(), String> {
    // Keys are at most 1024 bytes; leave room for `/manifests/<id>.json` and `/objects/ab/<hash>`.
    if prefix.len() > 512 {
        return Err("the prefix is longer than 512 bytes".into());
    }
    if prefix.contains("..") {
        return Err("the prefix contains `..`".into());
    }
    for segment in prefix.split('/') {
        match segment {
            "" => return Err("the prefix has an empty segment (`//`)".into()),
            "." => return Err("the prefix has a `.` segment".into()),
            _ => {}
        }
        let safe = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
        if !segment.chars().all(safe) {
            return Err("the prefix has characters other than A-Z a-z 0-9 ! - _ . * ' ( ) and /".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
