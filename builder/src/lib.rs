//! The builder: turns one [`BuildJob`](platform::executor::BuildJob) into a deployment.
//!
//! It clones the exact commit ([`git`]), works out how to build it ([`detect`]), runs the
//! install and build commands in a [`sandbox`], and stores the output content-addressed. It
//! reports everything — log lines and state changes — on the log bus, and never touches the
//! database: the same code runs inside the platform's process
//! ([`LocalExecutor`](executor::LocalExecutor)) or away from it, as `cloudrunr build` started by
//! one of the other [`executor`]s, which fetches its job and reports its events through the API
//! ([`api_client`]).

pub mod api_client;
mod child;
pub mod compress;
pub mod detect;
pub mod egress;
pub mod executor;
pub mod git;
pub mod inspect;
mod logs;
mod output;
pub mod quota;
mod run;
pub mod sandbox;
mod site_rules;

pub use run::{BuildContext, run_build};
