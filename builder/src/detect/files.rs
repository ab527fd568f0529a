//! Reading the checkout. Every file is untrusted: it is read only when it is a regular file (a
//! symbolic link is refused, even one swapped in after the check) and at most [`MAX_FILE_BYTES`]
//! long, and a path taken from one is refused when it would leave the project.

use super::DetectError;
use platform::RelPath;
use platform::framework::FRAMEWORKS;
use std::collections::BTreeSet;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Larger manifests are refused: real ones are a few KiB, and the limit bounds memory use.
pub(super) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Files whose mere presence steers the choice of package manager and install command; the
/// frameworks' marker files are looked up too. They are never read, so any non-directory entry
/// counts (the package manager, not us, decides what to do with a linked lockfile).
const MARKER_FILES: &[&str] = &[
    "pnpm-lock.yaml",
    "yarn.lock",
    "bun.lockb",
    "bun.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    ".yarnrc.yml",
];

/// Reads `name` (relative to `root`) if it exists. A symlink, a directory, a FIFO or a file over
/// [`MAX_FILE_BYTES`] is an error: the caller asked for this file, so silently skipping it would
/// make detection guess wrong.
pub(super) fn read_regular_file(root: &Path, name: &str) -> Result<Option<Vec<u8>>, DetectError> {
    let path = root.join(name);
    let Some(metadata) = symlink_metadata(&path, name)? else {
        return Ok(None);
    };
    check_regular_file(name, &metadata)?;
    let file = open_no_follow(&path, name)?;
    // The path may have been swapped between the check and the open; check what was opened.
    let opened = file.metadata().map_err(|e| DetectError::io(name, e))?;
    check_regular_file(name, &opened)?;
    read_capped(file, name).map(Some)
}

/// `lstat`, with "not there" as `None` rather than an error.
fn symlink_metadata(path: &Path, name: &str) -> Result<Option<Metadata>, DetectError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(DetectError::io(name, e)),
    }
}

fn check_regular_file(name: &str, metadata: &Metadata) -> Result<(), DetectError> {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        Err(DetectError::Symlink { file: name.to_owned() })
    } else if !file_type.is_file() {
        Err(DetectError::NotAFile { file: name.to_owned() })
    } else if metadata.len() > MAX_FILE_BYTES {
        Err(DetectError::too_large(name))
    } else {
        Ok(())
    }
}

/// Opens without following a final symlink, and without blocking should the path have become a
/// FIFO since it was checked.
fn open_no_follow(path: &Path, name: &str) -> Result<File, DetectError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => DetectError::Symlink { file: name.to_owned() },
            _ => DetectError::io(name, e),
        })
}

/// Reads at most one byte past the limit, so that a file growing after the size check is still
/// refused and never read whole.
fn read_capped(file: File, name: &str) -> Result<Vec<u8>, DetectError> {
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DetectError::io(name, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DetectError::too_large(name));
    }
    Ok(bytes)
}

impl DetectError {
    fn io(file: &str, source: io::Error) -> Self {
        Self::Io {
            file: file.to_owned(),
            source,
        }
    }

    fn too_large(file: &str) -> Self {
        Self::TooLarge {
            file: file.to_owned(),
            limit: MAX_FILE_BYTES,
        }
    }

    /// serde_json's message without its " at line L column C" suffix, which we report as fields.
    pub(super) fn invalid_json(file: &str, err: &serde_json::Error) -> Self {
        let full = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        Self::InvalidJson {
            file: file.to_owned(),
            message,
            line: err.line(),
            column: err.column(),
        }
    }
}

/// Editors on Windows like to start JSON files with a byte order mark, which npm tolerates.
pub(super) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A path from a repository file, refused if it would leave the project.
pub(super) fn safe_path(file: &str, raw: &str) -> Result<RelPath, DetectError> {
    RelPath::parse(raw).map_err(|source| DetectError::UnsafePath {
        file: file.to_owned(),
        path: raw.chars().take(200).collect(),
        source,
    })
}

/// A path spelled in the builder or in the framework table, never one from the repository.
pub(super) fn known_path(literal: &'static str) -> RelPath {
    RelPath::parse(literal).expect("the path literals of detection are valid relative paths")
}

/// Which of the files that steer detection exist, looked up once.
#[derive(Debug, Default)]
pub(super) struct Markers {
    present: BTreeSet<&'static str>,
    /// `public/index.html` is a regular file in a real `public` directory (not a link to one).
    pub(super) public_index: bool,
}

impl Markers {
    pub(super) fn scan(root: &Path) -> Result<Self, DetectError> {
        let mut present = BTreeSet::new();
        let framework_files = FRAMEWORKS.iter().flat_map(|info| info.marker_files);
        for &name in MARKER_FILES.iter().chain(framework_files) {
            if symlink_metadata(&root.join(name), name)?.is_some_and(|m| !m.is_dir()) {
                present.insert(name);
            }
        }
        Ok(Self {
            present,
            public_index: Self::has_public_index(root)?,
        })
    }

    fn has_public_index(root: &Path) -> Result<bool, DetectError> {
        let public = symlink_metadata(&root.join("public"), "public")?;
        if !public.is_some_and(|m| m.file_type().is_dir()) {
            return Ok(false);
        }
        let index = symlink_metadata(&root.join("public").join("index.html"), "public/index.html")?;
        Ok(index.is_some_and(|m| m.file_type().is_file()))
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.present.contains(name)
    }

    /// The first of `names` that exists.
    pub(super) fn first_of(&self, names: &[&'static str]) -> Option<&'static str> {
        names.iter().copied().find(|name| self.has(name))
    }
}
