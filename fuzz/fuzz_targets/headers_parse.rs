//! `_headers`: whatever the bytes, parsing does not panic, only valid and allowed headers come
//! out, every block prints and parses back to itself, and the manifest form loads back the same
//! (see `platform/src/site_rules/invariants.rs`).

#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../platform/src/site_rules/mod.rs"]
mod site_rules;

#[path = "../../platform/src/site_rules/invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    invariants::headers(data);
});
