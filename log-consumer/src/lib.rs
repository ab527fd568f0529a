//! The log consumer: the one writer of build events into the database.
//!
//! It takes batches from the log bus's durable subscription, stores log lines (idempotently:
//! a replayed line is ignored), applies state changes (forward only), moves a project's
//! production pointer when a production deployment becomes ready, and only then acknowledges the
//! batch. A database error is retried, never skipped: nothing a build reported is lost.

use db::{Database, DbError};
use platform::DeploymentId;
use platform::bus::{BuildEvent, BusError, EventBody, LogBus, Notice};
use platform::model::{DeploymentState, DeploymentTarget, LogLine};
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 500;

/// Consumes the bus until it closes.
pub async fn run(db: Database, bus: Arc<dyn LogBus>) -> Result<(), BusError> {
    let mut sub = bus.subscribe_durable().await?;
    loop {
        let batch = match sub.next_batch(BATCH).await {
            Ok(b) => b,
            Err(BusError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut delay = Duration::from_millis(100);
        while let Err(e) = apply(&db, &*bus, &batch).await {
            tracing::error!("cannot store build events (retrying in {delay:?}): {e}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        sub.ack().await?;
    }
}

/// Stores one batch: lines in bulk, each state change after the lines before it.
pub async fn apply(db: &Database, bus: &dyn LogBus, batch: &[BuildEvent]) -> Result<(), DbError> {
    let mut lines: Vec<(DeploymentId, LogLine)> = Vec::new();
    for event in batch {
        match &event.body {
            EventBody::Log(line) => lines.push((event.deployment_id.clone(), line.clone())),
            EventBody::State(change) => {
                db.insert_log_lines(&lines).await?;
                lines.clear();
                let Some(deployment) = db.apply_state(&event.deployment_id, change).await? else {
                    continue;
                };
                if deployment.state == DeploymentState::Ready {
                    // A new production deployment moves the site (if it is the newest); a preview
                    // becomes its branch's preview host.
                    if deployment.target == DeploymentTarget::Production {
                        db.advance_production(&deployment.project_id, &deployment.id).await?;
                    }
                    notify(
                        bus,
                        Notice::RoutesChanged {
                            project_id: deployment.project_id.clone(),
                        },
                    )
                    .await;
                }
                if deployment.state.is_terminal() {
                    notify(bus, Notice::WorkAvailable).await;
                }
            }
        }
    }
    db.insert_log_lines(&lines).await
}

async fn notify(bus: &dyn LogBus, notice: Notice) {
    if let Err(e) = bus.notify(notice).await {
        tracing::warn!("cannot send a notice: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::Timestamp;
    use platform::bus::{StateChange, Watched};
    use platform::model::LogStream;
    use test_support::TestApp;

    #[tokio::test]
    async fn stores_lines_applies_states_and_moves_production() {
        let app = TestApp::new().await;
        let db = app.db.clone();
        let project = app.project("site").await;
        let d = app.deployment(&project).create().await;
        let bus: Arc<dyn LogBus> = app.bus.clone();
        let mut watch = bus.watch();
        let consumer = tokio::spawn(run(db.clone(), bus.clone()));
        let line = |seq| BuildEvent {
            deployment_id: d.clone(),
            body: EventBody::Log(LogLine {
                seq,
                ts: Timestamp::now(),
                stream: LogStream::Stdout,
                text: format!("{seq}"),
            }),
        };
        let state = |s| BuildEvent {
            deployment_id: d.clone(),
            body: EventBody::State(StateChange::new(s)),
        };
        bus.publish(vec![
            state(DeploymentState::Cloning),
            line(1),
            line(2),
            line(2),
            state(DeploymentState::Ready),
        ])
        .await
        .unwrap();
        let mut saw_routes = false;
        let mut events = 0;
        while events < 5 || !saw_routes {
            match tokio::time::timeout(Duration::from_secs(5), watch.recv())
                .await
                .unwrap()
                .unwrap()
            {
                Watched::Event(_) => events += 1,
                Watched::Notice(Notice::RoutesChanged { project_id }) => saw_routes = project_id == project.id,
                Watched::Notice(_) => {}
            }
        }
        let texts: Vec<_> = db
            .log_lines(&d, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(texts, ["1", "2"]);
        assert_eq!(db.deployment(&d).await.unwrap().unwrap().state, DeploymentState::Ready);
        assert_eq!(db.route(&project.id).await.unwrap().unwrap().production, Some(d));
        consumer.abort();
    }
}
