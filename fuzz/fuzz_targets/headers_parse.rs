//! `_headers`: whatever the bytes, parsing does not panic, only valid and allowed headers come
//! out, every block prints and parses back to itself, and the manifest form loads back the same
//! (the checks of `platform::site_rules::invariants::headers`).

#![no_main]

use platform::site_rules::invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    invariants::headers(data);
});
