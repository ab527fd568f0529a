//! The log bus: how build events travel from a builder to the platform, behind [`LogBus`].
//!
//! A builder publishes [`BuildEvent`]s — log lines and state changes — in order per deployment.
//! Exactly one durable consumer (the log consumer) writes them to the database and acknowledges
//! them. Any number of watchers (live log streams, the scheduler, the router) see events and
//! [`Notice`]s as they happen; watching is best-effort, and a watcher that falls behind catches up
//! from the database.
//!
//! Two implementations (crate `bus`): `InProcessBus`, a channel inside one process (`cloudrunr
//! serve`), and `KafkaBus`, for a platform spread over several processes. Both let a watcher see an event only
//! once the durable consumer has acknowledged it, so anything a watcher sees is in the database.

use crate::model::{ArtifactSummary, DeploymentState, Framework, LogLine};
use crate::{CommitSha, DeploymentId, ProjectId, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildEvent {
    pub deployment_id: DeploymentId,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    Log(LogLine),
    State(StateChange),
}

/// A deployment moved to `state`. Carries whatever became known on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub state: DeploymentState,
    pub at: Timestamp,
    /// Milliseconds spent in each finished phase so far.
    #[serde(default)]
    pub phases: BTreeMap<String, u64>,
    #[serde(default)]
    pub commit_sha: Option<CommitSha>,
    #[serde(default)]
    pub commit_message: Option<String>,
    #[serde(default)]
    pub commit_author: Option<String>,
    #[serde(default)]
    pub framework: Option<Framework>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub artifact: Option<ArtifactSummary>,
}

impl StateChange {
    pub fn new(state: DeploymentState) -> Self {
        Self {
            state,
            at: Timestamp::now(),
            phases: BTreeMap::new(),
            commit_sha: None,
            commit_message: None,
            commit_author: None,
            framework: None,
            error: None,
            artifact: None,
        }
    }
}

/// Control-plane news that is not part of any build's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// The project's hostnames or production deployment changed (or it was deleted).
    RoutesChanged { project_id: ProjectId },
    /// A deployment was queued or a build slot was freed: time to look for work.
    WorkAvailable,
}

/// Something in this process that must have seen a notice before `notify` returns — the embedded
/// router, so that a promote or a new production deployment is live by the time anyone hears of it.
#[async_trait]
pub trait NoticeListener: Send + Sync + 'static {
    async fn on_notice(&self, notice: &Notice);
}

/// What watchers receive.
#[derive(Debug, Clone)]
pub enum Watched {
    Event(Arc<BuildEvent>),
    Notice(Notice),
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the log bus is closed")]
    Closed,
    #[error("the in-process log bus has a single durable consumer, and it is taken")]
    ConsumerTaken,
    #[error("log bus: {0}")]
    Backend(String),
}

#[async_trait]
pub trait LogBus: Send + Sync + 'static {
    /// Publishes events; order is kept per deployment.
    async fn publish(&self, events: Vec<BuildEvent>) -> Result<(), BusError>;

    /// The durable consumer's subscription: every published event, at least once.
    async fn subscribe_durable(&self) -> Result<Box<dyn DurableSubscription>, BusError>;

    /// Events and notices as they happen. A receiver that lags gets `RecvError::Lagged` and must
    /// catch up from the database.
    fn watch(&self) -> broadcast::Receiver<Watched>;

    async fn notify(&self, notice: Notice) -> Result<(), BusError>;
}

#[async_trait]
pub trait DurableSubscription: Send {
    /// Waits for at least one event and returns up to `max`.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<BuildEvent>, BusError>;

    /// Declares every event returned so far durably written.
    async fn ack(&mut self) -> Result<(), BusError>;
}
