//! Keeping the routing table current from the bus.
//!
//! Watching is best-effort (a lagging receiver loses notices), so a lag triggers a full reload from
//! the database, which is the truth. A reload that fails is retried with backoff rather than left
//! stale until the project happens to change again.

use crate::{RouterError, Sites};
use platform::ProjectId;
use platform::bus::{LogBus, Notice, Watched};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);

/// Work that failed and waits for its next attempt.
#[derive(Default)]
struct Pending {
    all: bool,
    projects: HashSet<ProjectId>,
    due: Option<Instant>,
    delay: Option<Duration>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.all && self.projects.is_empty()
    }

    /// Schedules the next attempt, backing off while failures continue.
    fn failed(&mut self) {
        let delay = self.delay.map_or(FIRST_RETRY, |d| (d * 2).min(MAX_RETRY));
        self.delay = Some(delay);
        self.due = Some(Instant::now() + delay);
    }

    fn settle(&mut self) {
        if self.is_empty() {
            self.due = None;
            self.delay = None;
        }
    }
}

/// `bus` is held only to keep the bus alive as long as the watcher runs.
pub(crate) async fn run(sites: Sites, bus: Arc<dyn LogBus>, mut notices: broadcast::Receiver<Watched>) {
    let _bus = bus;
    let mut pending = Pending::default();
    loop {
        let due = pending.due;
        tokio::select! {
            received = notices.recv() => match received {
                Ok(Watched::Notice(Notice::RoutesChanged { project_id })) => {
                    reload_one(&sites, project_id, &mut pending).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "router fell behind the bus; reloading every site");
                    reload_all(&sites, &mut pending).await;
                }
                Err(RecvError::Closed) => {
                    tracing::info!("the bus closed; router watcher stops");
                    return;
                }
            },
            () = sleep_until(due), if due.is_some() => {
                retry(&sites, &mut pending).await;
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(at) = due {
        tokio::time::sleep_until(at).await;
    }
}

async fn reload_one(sites: &Sites, project: ProjectId, pending: &mut Pending) {
    match sites.reload_project(&project).await {
        Ok(()) => {
            pending.projects.remove(&project);
            pending.settle();
        }
        Err(e) => {
            tracing::error!(project = %project, error = %e, "cannot reload a site; keeping what it served");
            pending.projects.insert(project);
            pending.failed();
        }
    }
}

async fn reload_all(sites: &Sites, pending: &mut Pending) {
    match sites.load().await {
        Ok(()) => {
            pending.all = false;
            pending.projects.clear();
            pending.settle();
        }
        Err(RouterError::Incomplete(failed)) => {
            // The table was installed; only these projects need another try.
            tracing::error!(failed = failed.len(), "some sites could not be reloaded");
            pending.all = false;
            pending.projects = failed.into_iter().collect();
            pending.failed();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot reload the routing table; keeping the current one");
            pending.all = true;
            pending.failed();
        }
    }
}

async fn retry(sites: &Sites, pending: &mut Pending) {
    pending.due = None;
    if pending.all {
        reload_all(sites, pending).await;
        return;
    }
    let projects: Vec<ProjectId> = pending.projects.drain().collect();
    let mut still_failing = false;
    for project in projects {
        if let Err(e) = sites.reload_project(&project).await {
            tracing::error!(project = %project, error = %e, "retry failed: cannot reload a site");
            pending.projects.insert(project);
            still_failing = true;
        }
    }
    if still_failing {
        pending.failed();
    } else {
        pending.settle();
    }
}
