//! A build away from the platform (a `cloudrunr build` process, an ECS task) talks to the API
//! with its per-deployment token: it reads its job, and reports its events in ordered batches.

use async_trait::async_trait;
use platform::DeploymentId;
use platform::bus::{BuildEvent, BusError, DurableSubscription, LogBus, Notice, Watched};
use platform::executor::BuildJob;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How a remote build reaches the platform.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    deployment: DeploymentId,
    token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the platform refused: {0}")]
    Refused(String),
    #[error("the platform could not be reached: {0}")]
    Unreachable(String),
}

impl ApiClient {
    pub fn new(api_url: &str, deployment: DeploymentId, token: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Self {
            http,
            base: api_url.trim_end_matches('/').to_owned(),
            deployment,
            token,
        }
    }

    /// The job of this build.
    pub async fn job(&self) -> Result<BuildJob, RemoteError> {
        let url = format!("{}/internal/builds/{}/job", self.base, self.deployment);
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=8 {
            match self.http.get(&url).bearer_auth(&self.token).send().await {
                Ok(resp) if resp.status().is_success() => {
                    return resp.json().await.map_err(|e| RemoteError::Unreachable(e.to_string()));
                }
                Ok(resp) if resp.status().is_client_error() => {
                    let status = resp.status();
                    return Err(RemoteError::Refused(format!(
                        "{status}: {}",
                        resp.text().await.unwrap_or_default()
                    )));
                }
                Ok(resp) => tracing::warn!("fetching the job (attempt {attempt}): {}", resp.status()),
                Err(e) => tracing::warn!("fetching the job (attempt {attempt}): {e}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        Err(RemoteError::Unreachable(format!("no answer from {url}")))
    }

    /// Delivers a batch (possibly empty: a heartbeat); returns whether a cancel was asked for.
    async fn post_events(&self, events: &[BuildEvent]) -> Result<bool, RemoteError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            cancel_requested: bool,
        }
        let url = format!("{}/internal/builds/{}/events", self.base, self.deployment);
        let mut delay = Duration::from_millis(250);
        for attempt in 1..=10 {
            match self.http.post(&url).bearer_auth(&self.token).json(events).send().await {
                Ok(resp) if resp.status().is_success() => {
                    return Ok(resp.json::<Answer>().await.is_ok_and(|a| a.cancel_requested));
                }
                Ok(resp) if resp.status().is_client_error() => {
                    return Err(RemoteError::Refused(format!("{}", resp.status())));
                }
                Ok(resp) => tracing::warn!("sending build events (attempt {attempt}): {}", resp.status()),
                Err(e) => tracing::warn!("sending build events (attempt {attempt}): {e}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        Err(RemoteError::Unreachable(
            "the platform did not take the build's events".into(),
        ))
    }
}

enum Outgoing {
    Event(BuildEvent),
    Flush(oneshot::Sender<()>),
}

/// The builder's log bus when it runs away from the platform: events go to the API in order,
/// batched (a busy build prints thousands of lines a second). Only publishing is possible.
pub struct ApiEventSink {
    tx: mpsc::Sender<Outgoing>,
    watchers: broadcast::Sender<Watched>,
    lost: Arc<AtomicU64>,
}

impl ApiEventSink {
    /// Starts delivering; `cancel` is fired when the platform answers that the build is to stop.
    pub fn new(client: ApiClient, cancel: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(64 * 1024);
        let lost = Arc::new(AtomicU64::new(0));
        tokio::spawn(forward(client, rx, lost.clone(), cancel));
        Self {
            tx,
            watchers: broadcast::channel(1).0,
            lost,
        }
    }

    /// Waits until everything published so far has been delivered (or given up on); returns how
    /// many events could not be delivered.
    pub async fn flush(&self) -> u64 {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Outgoing::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
        self.lost.load(Ordering::Relaxed)
    }
}

/// How long a quiet build goes without asking whether it is to stop.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// Sends what arrives, in order, in batches of what is waiting (at most 500 events, at least
/// every 200 ms while lines keep coming); a quiet build sends an empty batch every [`HEARTBEAT`].
async fn forward(client: ApiClient, mut rx: mpsc::Receiver<Outgoing>, lost: Arc<AtomicU64>, cancel: CancellationToken) {
    let mut batch = Vec::new();
    let mut flushes = Vec::new();
    loop {
        let mut next = match tokio::time::timeout(HEARTBEAT, rx.recv()).await {
            Ok(Some(item)) => Some(item),
            Ok(None) => break,
            Err(_) => None,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Event(e) => batch.push(e),
                Outgoing::Flush(done) => {
                    flushes.push(done);
                    break;
                }
            }
            if batch.len() >= 500 {
                break;
            }
            next = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => Some(item),
                _ => None,
            };
        }
        // Nothing waiting and no flush: a heartbeat.
        if !batch.is_empty() || flushes.is_empty() {
            match client.post_events(&batch).await {
                Ok(true) => cancel.cancel(),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!("{} build events were lost: {e}", batch.len());
                    lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

#[async_trait]
impl LogBus for ApiEventSink {
    async fn publish(&self, events: Vec<BuildEvent>) -> Result<(), BusError> {
        for e in events {
            self.tx.send(Outgoing::Event(e)).await.map_err(|_| BusError::Closed)?;
        }
        Ok(())
    }

    async fn subscribe_durable(&self) -> Result<Box<dyn DurableSubscription>, BusError> {
        Err(BusError::Backend("a build's event sink cannot be consumed".into()))
    }

    fn watch(&self) -> broadcast::Receiver<Watched> {
        self.watchers.subscribe()
    }

    async fn notify(&self, _: Notice) -> Result<(), BusError> {
        Err(BusError::Backend("a build sends no notices".into()))
    }
}
