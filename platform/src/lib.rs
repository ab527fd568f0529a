//! Shared vocabulary of CloudRunr.
//!
//! Everything that more than one component needs lives here: the domain types (parsed once at the
//! edge, see [`names`]), the typed [`settings`], a site's rules, and the interfaces of the
//! swappable backends — [`artifacts::ArtifactStore`], [`bus::LogBus`] and [`executor::Executor`].
//! No I/O: the implementations live in the crates `db`, `store`, `bus` and `builder`, so a crate
//! that needs the vocabulary compiles no database driver, AWS SDK or librdkafka.

pub mod artifacts;
pub mod build_token;
pub mod bus;
pub mod byte_size;
pub mod connection_limits;
pub mod crypto;
pub mod domain;
pub mod egress;
pub mod executor;
pub mod framework;
pub mod ids;
pub mod model;
pub mod names;
pub mod proxies;
pub mod settings;
pub mod site_rules;
pub mod time;

pub use ids::{DeploymentId, ProjectId, TokenId, UserId};
pub use names::{BranchName, CommitSha, EnvKey, GitHostPolicy, GitUrl, ProjectSlug, RelPath, preview_label};
pub use time::Timestamp;
