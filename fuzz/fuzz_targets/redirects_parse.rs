//! `_redirects`: whatever the bytes, parsing does not panic, every rule prints and parses back to
//! itself, the manifest form loads back the same, and a local target never leaves the site
//! (see `platform/src/site_rules/invariants.rs`).

#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../platform/src/site_rules/mod.rs"]
mod site_rules;

#[path = "../../platform/src/site_rules/invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    invariants::redirects(data);
});
