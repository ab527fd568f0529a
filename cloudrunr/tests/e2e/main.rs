//! The end-to-end tests: one test binary running the real `cloudrunr` executable (found by
//! `test_support::cloudrunr_bin`) against git servers, a headless Chromium and a GitHub
//! stand-in from the `test-support` crate.

mod acme;
mod api;
mod dashboard;
mod deploy;
mod domains;
mod github;
mod openapi;
mod scale;
mod security_accounts;
mod security_connections;
mod security_egress;
mod security_logs;
mod security_quotas;
mod security_webhook;
mod serving;
mod site_rules;
mod tls;
