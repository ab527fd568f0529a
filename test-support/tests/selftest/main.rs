//! The test harness's own tests, in one executable: the browser driver against a real headless
//! Chromium, and the GitHub stand-in against the App flow the platform uses.

mod browser;
mod github;
