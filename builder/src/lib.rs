//! The builder: turns one [`BuildJob`](platform::executor::BuildJob) into a deployment.
//!
//! It clones the exact commit ([`git`]), works out how to build it ([`detect`]), runs the
//! install and build commands in a [`sandbox`], and stores the output content-addressed. It
//! reports everything — log lines and state changes — on the log bus, and never touches the
//! database: the same code runs inside the platform's process ([`LocalExecutor`]) or on a remote
//! worker.

pub mod compress;
pub mod detect;
pub mod ecs;
pub mod git;
pub mod inspect;
mod local;
mod logs;
mod output;
mod process;
pub mod remote;
pub mod remote_executor;
mod run;
pub mod sandbox;
mod site_rules;

pub use local::{LocalExecutor, LocalExecutorConfig};
pub use run::{BuildContext, run_build};
