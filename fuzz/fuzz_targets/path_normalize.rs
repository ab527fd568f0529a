//! Request path normalization (`router/src/path.rs`): whatever the path, parsing does not panic,
//! and an accepted path has no empty, `.` or `..` segment, no NUL or backslash, and comes back
//! the same from its own URL form (the form used in `Location` headers): the checks of
//! `router/src/path_invariants.rs`, which the unit tests run on generated paths.

#![no_main]
#![allow(dead_code, unused_imports)]

// `path.rs` reads its percent-encoding set from `platform::site_rules`: this crate stands in for
// `platform`, with the same file.
extern crate self as platform;

#[path = "../../platform/src/site_rules/mod.rs"]
mod site_rules;

#[path = "../../router/src/path.rs"]
mod path;

#[path = "../../router/src/path_invariants.rs"]
mod path_invariants;

use path_invariants::check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(raw) => check(raw),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});
