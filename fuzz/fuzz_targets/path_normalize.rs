//! Request path normalization (`platform::site_rules::path`): whatever the path, parsing does not
//! panic, and an accepted path has no empty, `.` or `..` segment, no NUL or backslash, and comes
//! back the same from its own URL form (the form used in `Location` headers): the checks of
//! `platform::site_rules::invariants::request_path`, which the unit tests run on generated paths.

#![no_main]

use platform::site_rules::invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(raw) => invariants::request_path(raw),
        Err(_) => invariants::request_path(&String::from_utf8_lossy(data)),
    }
});
