//! What the tests share.
//!
//! For the end-to-end tests (`cloudrunr/tests/e2e`): a real `cloudrunr serve` process on a free
//! port ([`Platform`]) or the components as separate processes on real servers ([`cluster`]), the
//! fixture apps ([`fixture`]), a git server ([`git_server`]), a headless Chromium ([`browser`]),
//! a stand-in for GitHub's API ([`github`]), and small clients for the JSON API, the live log
//! stream ([`read_sse`]) and the dashboard's forms ([`Client`]).
//!
//! For the tests of one component: [`TestApp`], the real SQLite database, local artifact store and
//! in-process bus in a temporary directory, with builders for users, projects and deployments.
//! The `db`, `store`, `bus` and `platform` crates do not use it in their own tests: a
//! dev-dependency back onto the crate under test would build a second copy of its types.

pub mod browser;
pub mod cluster;
pub mod dns;
pub mod git_server;
pub mod github;
pub mod memory;

mod app;
mod client;
mod harness;
mod restart;
mod sse;

pub use app::{DeploymentBuilder, SiteFile, TestApp};
pub use client::{Client, csrf_of};
pub use harness::{Platform, cloudrunr_bin, fixture};
pub use sse::{SseEvent, lines_in_order, read_sse};
