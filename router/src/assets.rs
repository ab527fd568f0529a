//! Which files may be cached forever.

/// Whether `path`'s file name carries a content hash, so that its bytes can never change under
/// this name and browsers may cache it for a year without asking again.
///
/// Build tools put the hash between the name and the extension: Vite `index-BXq3x8Zl.js`, CRA
/// `main.3f2a1b4c.js`, Angular `chunk-ABCD1234.js`. So: split the file name on `.`, `-` and `_`;
/// some token other than the first and the last must be at least 8 ASCII alphanumerics and contain
/// a digit or mix upper and lower case (`component` in `my-component.js` does neither). A false
/// positive pins a stale file in caches for a year, so the test leans towards "no".
pub fn is_hashed_asset(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    // Runs on every file response: walk the tokens rather than collect them.
    let mut tokens = name.split(['.', '-', '_']).skip(1).peekable();
    while let Some(token) = tokens.next() {
        if tokens.peek().is_some() && looks_like_hash(token) {
            return true;
        }
    }
    false
}

fn looks_like_hash(token: &str) -> bool {
    if token.len() < 8 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let digit = token.bytes().any(|b| b.is_ascii_digit());
    let upper = token.bytes().any(|b| b.is_ascii_uppercase());
    let lower = token.bytes().any(|b| b.is_ascii_lowercase());
    digit || (upper && lower)
}

#[cfg(test)]
mod tests {
    use super::is_hashed_asset;

    #[test]
    fn recognises_bundler_output() {
        for hashed in [
            "assets/index-BXq3x8Zl.js",
            "assets/index-DiwrgTda.css",
            "static/js/main.3f2a1b4c.js",
            "static/js/787.3f2a1b4c.chunk.js",
            "static/css/main.e6c13ad2.css",
            "chunk-ABCD1234.js",
            "main-6ZJ2N4QX.js",
            "polyfills-FFHMD2TL.js",
            "_app/immutable/entry/start.B4sX9Jq2.js",
            "media/logo.6ce24c58023cc2f8fd88fe9d219db6c6.svg",
            "assets/font_a1b2c3d4e5.woff2",
        ] {
            assert!(is_hashed_asset(hashed), "{hashed} should count as hashed");
        }
    }

    #[test]
    fn leaves_ordinary_names_alone() {
        for plain in [
            "index.html",
            "assets/index-BXq3x8Zl.html/../index.html",
            "logo.png",
            "my-component.js",
            "favicon.ico",
            "robots.txt",
            "jquery-3.6.0.min.js",
            "styles.abcdefgh.css",
            "BXq3x8Zl12.js",
            "a3f2a1b4c",
            "vendor-lodash.js",
            "",
            "assets/",
            "main.3f2a1b4c",
            "main.3f2a-1b4c.js",
        ] {
            assert!(!is_hashed_asset(plain), "{plain} should not count as hashed");
        }
    }
}
