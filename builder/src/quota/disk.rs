//! How much disk a directory tree takes, measured the way `du` does and safely on a tree the
//! build controls.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes of disk the tree at `root` takes: allocated blocks (a sparse file counts what it
/// really uses), each hard-linked file once. Symbolic links are not followed and other file
/// systems are not entered, so the build cannot make the walk measure anything outside its
/// tree. The walk stops as soon as the total passes `stop_above`: past it, the exact number
/// does not matter. A missing tree takes nothing.
pub fn usage(root: &Path, stop_above: u64) -> u64 {
    let mut total: u64 = 0;
    let mut seen = HashSet::new();
    let walk = walkdir::WalkDir::new(root).follow_links(false).same_file_system(true);
    // Entries that vanish or cannot be read while the build runs are skipped.
    for entry in walk.into_iter().filter_map(Result::ok) {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if total > stop_above {
            break;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_once_and_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        let empty = usage(&tree, u64::MAX);
        std::fs::write(tree.join("a/b/one"), vec![1u8; 1 << 20]).unwrap();
        std::fs::hard_link(tree.join("a/b/one"), tree.join("a/two")).unwrap();
        // Outside the tree: a link to it must not count.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, vec![1u8; 4 << 20]).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), tree.join("up")).unwrap();
        let used = usage(&tree, u64::MAX) - empty;
        assert!((1 << 20..(1 << 20) + 64 * 1024).contains(&used), "{used}");
    }

    #[test]
    fn sparse_files_count_what_they_use() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("sparse")).unwrap();
        f.set_len(1 << 30).unwrap();
        assert!(usage(dir.path(), u64::MAX) < 1 << 20);
    }

    #[test]
    fn stops_early_past_the_limit_and_knows_nothing_of_missing_trees() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..50 {
            std::fs::write(dir.path().join(i.to_string()), vec![1u8; 64 * 1024]).unwrap();
        }
        let partial = usage(dir.path(), 256 * 1024);
        assert!((256 * 1024..1 << 20).contains(&partial), "{partial}");
        assert_eq!(usage(&dir.path().join("missing"), 0), 0);
    }
}
