//! Turning a build's output directory into a stored deployment.
//!
//! The directory is walked without following symlinks (a symlink is reported and skipped, so a
//! build cannot publish `/etc/passwd`), within limits on file count and size. Every file is
//! stored under its SHA-256, so unchanged files cost nothing on the next deployment, and the
//! manifest is written last: once it exists, the deployment is complete.

use crate::compress::{self, Compression};
use crate::logs::BuildLog;
use futures::{StreamExt, TryStreamExt};
use platform::artifacts::{ArtifactStore, ContentHash, FileEntry, Manifest, StoreError};
use platform::model::ArtifactSummary;
use platform::{DeploymentId, RelPath};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("the output has more than {0} files")]
    TooManyFiles(u64),
    #[error("the output is larger than {0} bytes")]
    TooLarge(u64),
    #[error("cannot read the output: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_files: u64,
    pub max_bytes: u64,
}

/// A file found in the output.
#[derive(Debug)]
struct Found {
    rel: RelPath,
    path: PathBuf,
    size: u64,
}

/// Whether `rel` (relative to `root`) is a real directory reached without passing through a
/// symlink. The build has finished and its processes are gone, so nothing changes underneath.
pub fn is_real_dir(root: &Path, rel: &RelPath) -> bool {
    let mut path = root.to_path_buf();
    for part in rel.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            _ => return false,
        }
    }
    std::fs::symlink_metadata(&path)
        .map(|m| m.file_type().is_dir())
        .unwrap_or(false)
}

/// Walks `dir`, returning regular files and the notes on what was skipped.
fn walk(dir: &Path, limits: Limits) -> Result<(Vec<Found>, Vec<String>), OutputError> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                skipped.push(format!("{prefix}{} (file name is not UTF-8)", name.to_string_lossy()));
                continue;
            };
            let shown = format!("{prefix}{name}");
            if name == ".git" {
                continue;
            }
            let Ok(rel) = RelPath::parse(&shown) else {
                skipped.push(format!("{shown} (name cannot be served)"));
                continue;
            };
            // DirEntry::file_type does not follow symlinks.
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                let target = std::fs::read_link(entry.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                skipped.push(format!("{shown} -> {target} (symlinks are not deployed)"));
            } else if kind.is_dir() {
                stack.push((entry.path(), format!("{shown}/")));
            } else if kind.is_file() {
                let size = entry.metadata()?.len();
                total += size;
                if found.len() as u64 >= limits.max_files {
                    return Err(OutputError::TooManyFiles(limits.max_files));
                }
                if total > limits.max_bytes {
                    return Err(OutputError::TooLarge(limits.max_bytes));
                }
                found.push(Found {
                    rel,
                    path: entry.path(),
                    size,
                });
            } else {
                skipped.push(format!("{shown} (not a regular file)"));
            }
        }
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok((found, skipped))
}

fn hash_file(path: &Path) -> std::io::Result<ContentHash> {
    let mut file = std::fs::File::open(path)?;
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    Ok(ContentHash::from_digest(digest))
}

/// The `Content-Type` a file is served with.
pub fn content_type(rel: &RelPath) -> String {
    let ext = rel.extension().unwrap_or_default();
    let mime = match ext.as_str() {
        "js" | "mjs" | "cjs" => "text/javascript".to_owned(),
        "map" => "application/json".to_owned(),
        "webmanifest" => "application/manifest+json".to_owned(),
        "wasm" => "application/wasm".to_owned(),
        _ => mime_guess::from_ext(&ext)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
    };
    let textual = mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json" | "application/manifest+json" | "image/svg+xml" | "application/xml"
        );
    if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime
    }
}

/// One file stored (its variants come later).
struct Stored {
    rel: RelPath,
    path: PathBuf,
    entry: FileEntry,
    /// The file's content was not in the store yet.
    new: bool,
}

impl Stored {
    /// Whether the file is worth compressing (see [`compress`]).
    fn compressible(&self) -> bool {
        self.entry.size >= compress::MIN_COMPRESS_BYTES && compress::is_compressible(&self.entry.content_type)
    }
}

/// Hashes one file and stores it.
async fn store_file(f: Found, store: &dyn ArtifactStore) -> Result<Stored, OutputError> {
    let path = f.path.clone();
    let hash = tokio::task::spawn_blocking(move || hash_file(&path))
        .await
        .map_err(|e| OutputError::Io(std::io::Error::other(e)))??;
    let new = store.put_object(&hash, &f.path).await?;
    let content_type = content_type(&f.rel);
    Ok(Stored {
        rel: f.rel,
        path: f.path,
        entry: FileEntry {
            hash,
            size: f.size,
            content_type,
            encodings: Default::default(),
        },
        new,
    })
}

/// Makes the variants of the compressible files among `stored`, stores them and records them in
/// the entries. Compression only makes serving faster: if it fails, the build log says so and
/// the files are served as they are.
async fn store_variants(
    stored: &mut [Stored],
    compression: &Compression,
    store: &dyn ArtifactStore,
    log: &BuildLog,
) -> Result<VariantSummary, OutputError> {
    let mut summary = VariantSummary::default();
    let chosen: Vec<usize> = (0..stored.len()).filter(|&i| stored[i].compressible()).collect();
    if chosen.is_empty() {
        return Ok(summary);
    }
    // Written here before they are stored; removed when this returns.
    let scratch = tempfile::Builder::new().prefix("cloudrunr-variants-").tempdir()?;
    let jobs = chosen
        .iter()
        .map(|&i| compress::Job {
            src: stored[i].path.clone(),
            size: stored[i].entry.size,
        })
        .collect();
    let encoded = match compress::compress_all(compression, jobs, scratch.path(), upload_concurrency()).await {
        Ok(encoded) => encoded,
        Err(e) => {
            log.system(format!(
                "Cannot precompress the files, they are served as they are: {e}"
            ))
            .await;
            return Ok(summary);
        }
    };
    // Owned, so that the uploads' futures borrow nothing but the store.
    let uploads: Vec<(ContentHash, PathBuf)> = encoded
        .iter()
        .flatten()
        .map(|e| (e.variant.hash.clone(), e.path.clone()))
        .collect();
    let new: Vec<bool> = futures::stream::iter(uploads)
        .map(|(hash, path)| async move { store.put_object(&hash, &path).await })
        .buffer_unordered(upload_concurrency())
        .try_collect()
        .await?;
    summary.new = new.iter().filter(|&&n| n).count() as u64;
    for (&i, variants) in chosen.iter().zip(&encoded) {
        let entry = &mut stored[i].entry;
        entry.encodings = compress::Encoded::encodings(variants);
        summary.add(entry);
    }
    Ok(summary)
}

/// How many files are hashed, compressed and stored at once: compression is CPU-bound, so about
/// one per core, but a few at least so that uploads to a remote store overlap.
fn upload_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8)
}

/// What compression added to an upload, for the build log.
#[derive(Debug, Default)]
struct VariantSummary {
    /// Files with at least one variant.
    files: u64,
    bytes: u64,
    br: u64,
    br_bytes: u64,
    gzip: u64,
    new: u64,
}

impl VariantSummary {
    fn add(&mut self, entry: &FileEntry) {
        let encodings = &entry.encodings;
        if encodings.is_empty() {
            return;
        }
        self.files += 1;
        self.bytes += entry.size;
        if let Some(br) = &encodings.br {
            self.br += 1;
            self.br_bytes += br.size;
        }
        self.gzip += u64::from(encodings.gzip.is_some());
    }
}

impl std::fmt::Display for VariantSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Precompressed {} files: {} brotli and {} gzip variants ({} new)",
            self.files, self.br, self.gzip, self.new
        )?;
        if self.br == self.files && self.bytes > 0 {
            write!(f, "; brotli saves {}%", 100 - self.br_bytes * 100 / self.bytes)?;
        }
        Ok(())
    }
}

/// Stores every file of `dir`, then the compressed variants of those worth it (made as
/// `compression` says), then the manifest of `deployment`.
pub async fn store_output(
    dir: &Path,
    deployment: &DeploymentId,
    spa: bool,
    limits: Limits,
    store: &dyn ArtifactStore,
    compression: &Compression,
    log: &BuildLog,
) -> Result<ArtifactSummary, OutputError> {
    let walk_dir = dir.to_path_buf();
    let (found, skipped) = tokio::task::spawn_blocking(move || walk(&walk_dir, limits))
        .await
        .map_err(|e| OutputError::Io(std::io::Error::other(e)))??;
    for note in &skipped {
        log.system(format!("Skipped {note}")).await;
    }
    // `_redirects` and `_headers` configure the site: parsed into the manifest, not served.
    let rules = crate::site_rules::read(dir, log).await;
    let found: Vec<_> = found
        .into_iter()
        .filter(|f| !crate::site_rules::is_rules_file(&f.rel))
        .collect();
    let mut summary = ArtifactSummary {
        files: 0,
        bytes: 0,
        new_files: 0,
        new_bytes: 0,
    };
    let mut stored: Vec<Stored> = futures::stream::iter(found)
        .map(|f| store_file(f, store))
        .buffer_unordered(upload_concurrency())
        .try_collect()
        .await?;
    let variants = store_variants(&mut stored, compression, store, log).await?;
    if variants.files > 0 {
        log.system(variants.to_string()).await;
    }
    let mut files = BTreeMap::new();
    for file in stored {
        if file.new {
            summary.new_files += 1;
            summary.new_bytes += file.entry.size;
        }
        summary.files += 1;
        summary.bytes += file.entry.size;
        files.insert(file.rel, file.entry);
    }
    store
        .put_manifest(&Manifest {
            deployment_id: deployment.clone(),
            spa,
            files,
            rules,
        })
        .await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use store::LocalArtifactStore;

    const LIMITS: Limits = Limits {
        max_files: 100,
        max_bytes: 1 << 20,
    };

    #[test]
    fn walks_files_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("assets/img")).unwrap();
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::write(d.join(".git/config"), "x").unwrap();
        std::fs::write(d.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(d.join("assets/app.js"), "1").unwrap();
        std::fs::write(d.join("assets/img/a.png"), "png").unwrap();
        symlink("/etc/passwd", d.join("passwd")).unwrap();
        symlink("/etc", d.join("assets/etc")).unwrap();
        let (found, skipped) = walk(d, LIMITS).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(names, ["assets/app.js", "assets/img/a.png", "index.html"]);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped.iter().any(|s| s.starts_with("passwd -> /etc/passwd")));
    }

    #[test]
    fn limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("f{i}")), "0123456789").unwrap();
        }
        assert!(matches!(
            walk(
                dir.path(),
                Limits {
                    max_files: 4,
                    max_bytes: 1000
                }
            ),
            Err(OutputError::TooManyFiles(4))
        ));
        assert!(matches!(
            walk(
                dir.path(),
                Limits {
                    max_files: 10,
                    max_bytes: 45
                }
            ),
            Err(OutputError::TooLarge(45))
        ));
    }

    #[test]
    fn real_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/dist")).unwrap();
        symlink("/", dir.path().join("root")).unwrap();
        symlink(dir.path().join("a"), dir.path().join("b")).unwrap();
        let ok = |p: &str| is_real_dir(dir.path(), &RelPath::parse(p).unwrap());
        assert!(ok("a/dist"));
        assert!(ok(""));
        assert!(!ok("root"));
        assert!(!ok("root/etc"));
        assert!(!ok("b/dist"));
        assert!(!ok("missing"));
    }

    #[tokio::test]
    async fn uploads_store_compressed_variants_of_compressible_files_only() {
        use bus::InProcessBus;
        use platform::bus::LogBus;
        use std::io::Read;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dist");
        std::fs::create_dir_all(out.join("assets")).unwrap();
        let script: String = (0..400)
            .map(|i| format!("export const value{i} = compute({i}, \"item-{}\");\n", i % 17))
            .collect();
        let mut x = 0x2545f4914f6cdd1du64;
        let noise: Vec<u8> = (0..8000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        std::fs::write(out.join("assets/app.js"), &script).unwrap();
        std::fs::write(out.join("small.css"), "body{margin:0}").unwrap();
        std::fs::write(out.join("noise.txt"), &noise).unwrap();
        // Compressible bytes, but an image type: left alone.
        let image = format!("\u{89}PNG{script}");
        std::fs::write(out.join("logo.png"), &image).unwrap();

        let store = LocalArtifactStore::open(dir.path().join("store")).await.unwrap();
        let bus: Arc<dyn LogBus> = Arc::new(InProcessBus::new());
        let deployment = DeploymentId::generate();
        let log = BuildLog::new(deployment.clone(), bus, 1, &[]);
        let summary = store_output(&out, &deployment, false, LIMITS, &store, &Compression::InProcess, &log)
            .await
            .unwrap();
        assert_eq!(
            (summary.files, summary.new_files),
            (4, 4),
            "variants are not deployment files"
        );
        assert_eq!(summary.bytes, (script.len() + image.len() + 14 + noise.len()) as u64);
        assert_eq!(store.object_count().await.unwrap(), 4 + 2);

        let manifest = store.get_manifest(&deployment).await.unwrap().unwrap();
        let entry = |p: &str| manifest.files[&RelPath::parse(p).unwrap()].clone();
        let read = |hash: &ContentHash| {
            let store = store.clone();
            let hash = hash.clone();
            async move {
                let mut object = store.get_object(&hash).await.unwrap();
                let mut bytes = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut object.reader, &mut bytes)
                    .await
                    .unwrap();
                bytes
            }
        };
        let js = entry("assets/app.js");
        let br = js.encodings.br.clone().expect("a brotli variant");
        let gzip = js.encodings.gzip.clone().expect("a gzip variant");
        assert!(br.size < gzip.size && gzip.size < js.size, "{js:?}");
        let mut decoded = Vec::new();
        brotli::Decompressor::new(&read(&br.hash).await[..], 4096)
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, script.as_bytes());
        decoded.clear();
        flate2::read::GzDecoder::new(&read(&gzip.hash).await[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, script.as_bytes());
        assert_eq!(read(&js.hash).await, script.as_bytes(), "the original is stored as is");
        // Too small, incompressible, or an image: served as they are.
        for plain in ["small.css", "noise.txt", "logo.png"] {
            assert!(entry(plain).encodings.is_empty(), "{plain}");
        }

        // The same files again: nothing new, the same variants.
        let again = DeploymentId::generate();
        let summary = store_output(&out, &again, false, LIMITS, &store, &Compression::InProcess, &log)
            .await
            .unwrap();
        assert_eq!(summary.new_files, 0);
        assert_eq!(store.object_count().await.unwrap(), 6);
        let second = store.get_manifest(&again).await.unwrap().unwrap();
        assert_eq!(second.files, manifest.files);
    }

    #[test]
    fn content_types() {
        let ct = |p: &str| content_type(&RelPath::parse(p).unwrap());
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("assets/index-BXq3x8Zl.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("a.css"), "text/css; charset=utf-8");
        assert_eq!(ct("logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(ct("logo.png"), "image/png");
        assert_eq!(ct("app.wasm"), "application/wasm");
        assert_eq!(ct("LICENSE"), "application/octet-stream");
    }
}
