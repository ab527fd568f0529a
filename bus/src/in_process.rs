//! The embedded log bus.

use async_trait::async_trait;
use platform::bus::{BuildEvent, BusError, DurableSubscription, LogBus, Notice, NoticeListener, Watched};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

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
