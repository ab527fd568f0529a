//! The log bus: how build events travel from a builder to the platform, behind [`LogBus`].
//!
//! A builder publishes [`BuildEvent`]s — log lines and state changes — in order per deployment.
//! Exactly one durable consumer (the log consumer) writes them to the database and acknowledges
//! them. Any number of watchers (live log streams, the scheduler, the router) see events and
//! [`Notice`]s as they happen; watching is best-effort, and a watcher that falls behind catches up
//! from the database.

use crate::model::{ArtifactSummary, DeploymentState, Framework, LogLine};
use crate::{CommitSha, DeploymentId, ProjectId, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

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

/// The embedded bus: a channel inside the process.
///
/// Watchers see an event only once the consumer has acknowledged it, so anything a watcher sees
/// is already in the database: a live log stream never finds a gap it cannot fill.
pub struct InProcessBus {
    tx: mpsc::Sender<BuildEvent>,
    rx: Mutex<Option<mpsc::Receiver<BuildEvent>>>,
    watchers: broadcast::Sender<Watched>,
    listeners: Mutex<Vec<Arc<dyn NoticeListener>>>,
}

impl InProcessBus {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(16 * 1024);
        let (watchers, _) = broadcast::channel(8 * 1024);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            watchers,
            listeners: Mutex::default(),
        }
    }

    /// Registers a listener that every `notify` awaits before it returns.
    pub fn add_listener(&self, listener: Arc<dyn NoticeListener>) {
        self.listeners.lock().expect("bus lock").push(listener);
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl LogBus for InProcessBus {
    async fn publish(&self, events: Vec<BuildEvent>) -> Result<(), BusError> {
        for event in events {
            self.tx.send(event).await.map_err(|_| BusError::Closed)?;
        }
        Ok(())
    }

    async fn subscribe_durable(&self) -> Result<Box<dyn DurableSubscription>, BusError> {
        let rx = self
            .rx
            .lock()
            .expect("bus lock")
            .take()
            .ok_or(BusError::ConsumerTaken)?;
        Ok(Box::new(InProcessSubscription {
            rx,
            pending: Vec::new(),
            watchers: self.watchers.clone(),
        }))
    }

    fn watch(&self) -> broadcast::Receiver<Watched> {
        self.watchers.subscribe()
    }

    async fn notify(&self, notice: Notice) -> Result<(), BusError> {
        let listeners = self.listeners.lock().expect("bus lock").clone();
        for l in listeners {
            l.on_notice(&notice).await;
        }
        // No watcher is not an error: nobody needed to know.
        let _ = self.watchers.send(Watched::Notice(notice));
        Ok(())
    }
}

struct InProcessSubscription {
    rx: mpsc::Receiver<BuildEvent>,
    pending: Vec<Arc<BuildEvent>>,
    watchers: broadcast::Sender<Watched>,
}

#[async_trait]
impl DurableSubscription for InProcessSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<BuildEvent>, BusError> {
        let first = self.rx.recv().await.ok_or(BusError::Closed)?;
        let mut batch = vec![first];
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        self.pending.extend(batch.iter().cloned().map(Arc::new));
        Ok(batch)
    }

    async fn ack(&mut self) -> Result<(), BusError> {
        for event in self.pending.drain(..) {
            let _ = self.watchers.send(Watched::Event(event));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogStream;

    fn line(id: &DeploymentId, seq: u64) -> BuildEvent {
        BuildEvent {
            deployment_id: id.clone(),
            body: EventBody::Log(LogLine {
                seq,
                ts: Timestamp::now(),
                stream: LogStream::Stdout,
                text: format!("line {seq}"),
            }),
        }
    }

    #[tokio::test]
    async fn watchers_see_events_only_after_ack() {
        let bus = InProcessBus::new();
        let mut sub = bus.subscribe_durable().await.unwrap();
        assert!(matches!(bus.subscribe_durable().await, Err(BusError::ConsumerTaken)));
        let mut watch = bus.watch();
        let id = DeploymentId::generate();
        bus.publish(vec![line(&id, 1), line(&id, 2)]).await.unwrap();
        let batch = sub.next_batch(10).await.unwrap();
        assert_eq!(batch.len(), 2);
        assert!(watch.try_recv().is_err());
        sub.ack().await.unwrap();
        for seq in 1..=2 {
            match watch.recv().await.unwrap() {
                Watched::Event(e) => assert_eq!(*e, line(&id, seq).with_ts_of(&e)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    impl BuildEvent {
        fn with_ts_of(mut self, other: &BuildEvent) -> BuildEvent {
            if let (EventBody::Log(a), EventBody::Log(b)) = (&mut self.body, &other.body) {
                a.ts = b.ts;
            }
            self
        }
    }

    #[test]
    fn events_serialize_flat() {
        let id = DeploymentId::generate();
        let json = serde_json::to_value(line(&id, 7)).unwrap();
        assert_eq!(json["kind"], "log");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["deployment_id"], id.as_str());
        let back: BuildEvent = serde_json::from_value(json).unwrap();
        assert!(matches!(back.body, EventBody::Log(LogLine { seq: 7, .. })));
    }
}
