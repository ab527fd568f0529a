//! The records the platform keeps: users, projects, deployments and their build logs.

pub use crate::framework::Framework;
use crate::{BranchName, CommitSha, DeploymentId, GitUrl, ProjectId, ProjectSlug, RelPath, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Implements `as_str`, `parse`, `Display` and serde (as the string) for a fieldless enum.
macro_rules! string_enum {
    ($name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).ok_or_else(|| {
                    let all: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    serde::de::Error::custom(format!("unknown value {raw:?}, expected one of {}", all.join(", ")))
                })
            }
        }
    };
}

/// Where a deployment is in its life. The happy path runs top to bottom; the last four are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentState {
    Queued,
    Cloning,
    Installing,
    Building,
    Uploading,
    Ready,
    Failed,
    Canceled,
    TimedOut,
}

string_enum!(DeploymentState {
    Queued => "queued",
    Cloning => "cloning",
    Installing => "installing",
    Building => "building",
    Uploading => "uploading",
    Ready => "ready",
    Failed => "failed",
    Canceled => "canceled",
    TimedOut => "timed_out",
});

impl DeploymentState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ready | Self::Failed | Self::Canceled | Self::TimedOut)
    }

    /// Position on the happy path; every final state ranks last.
    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Cloning => 1,
            Self::Installing => 2,
            Self::Building => 3,
            Self::Uploading => 4,
            Self::Ready | Self::Failed | Self::Canceled | Self::TimedOut => 5,
        }
    }

    /// Whether a deployment in `self` may move to `next`: only forward, never out of a final state.
    pub fn may_become(self, next: DeploymentState) -> bool {
        !self.is_terminal() && next.rank() > self.rank()
    }
}

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Written by the platform itself: phases, timings, detection results, errors.
    System,
}

string_enum!(LogStream {
    Stdout => "stdout",
    Stderr => "stderr",
    System => "system",
});

/// Production deployments move the project's site; previews never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentTarget {
    Production,
    Preview,
}

string_enum!(DeploymentTarget {
    Production => "production",
    Preview => "preview",
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub email: String,
    /// Administers the platform: connects the GitHub App, sees webhook deliveries.
    pub is_admin: bool,
    /// The GitHub account linked for "Sign in with GitHub".
    pub github_login: Option<String>,
    pub created_at: Timestamp,
}

/// How a project is built. `None` fields are detected from the repository at build time.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BuildSettings {
    pub root_dir: RelPath,
    pub framework: Option<Framework>,
    pub install_command: Option<String>,
    pub build_command: Option<String>,
    pub output_dir: Option<RelPath>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub owner_id: UserId,
    pub slug: ProjectSlug,
    pub name: String,
    pub git_url: GitUrl,
    pub branch: BranchName,
    pub build: BuildSettings,
    /// Names of the project's environment variables; the values never leave the database except
    /// into a build.
    pub env_keys: Vec<String>,
    /// The GitHub repository the project deploys from, when it is linked to one.
    pub github: Option<GithubLink>,
    pub production_deployment_id: Option<DeploymentId>,
    /// HTTPS answers for the project's hosts carry `Strict-Transport-Security` (opt-in: once a
    /// browser has seen it, the hosts are unreachable over plain HTTP for a year).
    pub hsts: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A project's GitHub repository, reached through the App's installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubLink {
    pub repo_id: u64,
    /// `owner/name`.
    pub full_name: String,
}

/// What started a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentTrigger {
    /// `POST /api/projects/{slug}/deployments` (or the dashboard).
    Api,
    /// A push to the repository.
    Push,
    /// A pull request was opened, reopened or updated.
    PullRequest,
    /// "Re-run" on the commit's check run in GitHub.
    Rerequest,
}

string_enum!(DeploymentTrigger {
    Api => "api",
    Push => "push",
    PullRequest => "pull_request",
    Rerequest => "rerequest",
});

/// What a ready deployment stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactSummary {
    /// Files in the deployment.
    pub files: u64,
    pub bytes: u64,
    /// Of those, files whose content was not in the store yet.
    pub new_files: u64,
    pub new_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: DeploymentId,
    pub project_id: ProjectId,
    pub project_slug: ProjectSlug,
    pub state: DeploymentState,
    pub target: DeploymentTarget,
    pub branch: BranchName,
    /// The commit asked for, or once cloned, the commit that was built.
    pub commit_sha: Option<CommitSha>,
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    pub trigger: DeploymentTrigger,
    /// The check run reporting this deployment on GitHub, once created.
    pub check_run_id: Option<u64>,
    pub framework: Option<Framework>,
    pub phases: BTreeMap<String, u64>,
    pub error: Option<String>,
    pub artifact: Option<ArtifactSummary>,
    pub cancel_requested: bool,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

/// One line of a build's output, numbered from 1 within its deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub ts: Timestamp,
    pub stream: LogStream,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        use DeploymentState::*;
        assert!(Queued.may_become(Cloning));
        assert!(Queued.may_become(Canceled));
        assert!(Building.may_become(Failed));
        assert!(!Building.may_become(Cloning));
        assert!(!Ready.may_become(Failed));
        assert!(!Canceled.may_become(Ready));
        assert!(!Cloning.may_become(Cloning));
    }

    #[test]
    fn enums_round_trip_as_strings() {
        for s in DeploymentState::ALL {
            assert_eq!(DeploymentState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(
            serde_json::to_string(&DeploymentState::TimedOut).unwrap(),
            "\"timed_out\""
        );
        let err = serde_json::from_str::<Framework>("\"rails\"").unwrap_err().to_string();
        assert!(err.contains("vite"), "{err}");
    }
}
