//! `_redirects`: whatever the bytes, parsing does not panic, every rule prints and parses back to
//! itself, the manifest form loads back the same, and a local target never leaves the site (the
//! checks of `platform::site_rules::invariants::redirects`).

#![no_main]

use platform::site_rules::invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    invariants::redirects(data);
});
