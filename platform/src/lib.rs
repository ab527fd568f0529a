//! Shared vocabulary of CloudRunr.
//!
//! Everything that more than one component needs lives here: the domain types (parsed once at the
//! edge, see [`names`]), the typed [`settings`], and the interfaces of the swappable backends —
//! [`db::Database`], [`artifacts::ArtifactStore`], [`bus::LogBus`] and [`executor::Executor`] —
//! together with their embedded implementations.

pub mod artifacts;
pub mod build_token;
pub mod bus;
pub mod crypto;
pub mod db;
pub mod executor;
pub mod ids;
pub mod model;
pub mod names;
pub mod settings;
pub mod site_rules;
pub mod time;

pub use ids::{DeploymentId, ProjectId, TokenId, UserId};
pub use names::{BranchName, CommitSha, EnvKey, GitHostPolicy, GitUrl, ProjectSlug, RelPath, preview_label};
pub use time::Timestamp;
