//! What every request path the router accepts satisfies: checked on generated inputs by the unit
//! tests (`path.rs`) and on arbitrary ones by the `path_normalize` fuzz target, which includes
//! this file as it is.

use crate::path::{self, RequestPath};

/// Parsing `raw` does not panic; an accepted path has no empty, `.` or `..` segment, no NUL or
/// backslash, and comes back the same from its own URL form (the form used in `Location`).
pub(crate) fn check(raw: &str) {
    let Ok(p) = RequestPath::parse(raw) else {
        return;
    };
    assert!(!p.path.starts_with('/') && !p.path.ends_with('/'), "{raw:?}: {p:?}");
    assert!(!p.path.contains("//"), "{raw:?}: {p:?}");
    assert!(!p.path.contains(['\\', '\0']), "{raw:?}: {p:?}");
    assert!(p.path.split('/').all(|s| s != ".." && s != "."), "{raw:?}: {p:?}");
    assert!(!p.path.is_empty() || p.dir, "{raw:?}: the root is a directory");
    let url = path::url_path(&p.path, p.dir);
    assert!(url.starts_with('/') && !url.starts_with("//"), "{raw:?}: {url}");
    assert!(url.bytes().all(|b| b.is_ascii_graphic()), "{raw:?}: {url}");
    assert_eq!(RequestPath::parse(&url).as_ref(), Ok(&p), "{raw:?} -> {url}");
    let _ = p.file_name().map(path::extension);
}
