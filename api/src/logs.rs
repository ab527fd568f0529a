//! Build logs: pages of lines as JSON, and a live Server-Sent Events stream.

use crate::AppState;
use crate::deployments::owned_deployment;
use crate::error::{ApiError, ApiResult};
use crate::extract::{CurrentUser, Query};
use crate::views::DeploymentView;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use db::{Database, DbError};
use platform::DeploymentId;
use platform::bus::{EventBody, Watched};
use platform::model::{DeploymentState, LogLine};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 5000;
/// Text in one JSON page, beyond its first line: a page of long lines ends early (`finished`
/// stays false and the reader asks for the next), so no answer holds more than about this much.
const PAGE_BYTES: usize = 1 << 20;
/// Lines read from the database at once: with lines of at most 16 KiB, a read holds at most
/// 4 MiB, whatever the log's size.
pub(crate) const READ_CHUNK: u32 = 256;
const CATCH_UP_PAGE: u32 = READ_CHUNK;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    after: Option<u64>,
    limit: Option<u32>,
}

pub async fn page(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<impl IntoResponse> {
    let (d, _) = owned_deployment(&state, &user, &id).await?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let (lines, more) = read_page(&state.db, &d.id, q.after.unwrap_or(0), limit, PAGE_BYTES).await?;
    // A final state is applied after every line before it, so once the deployment is final and
    // no line is left, the log is complete.
    let finished = d.state.is_terminal() && !more;
    Ok(axum::Json(
        json!({ "lines": lines, "finished": finished, "state": d.state }),
    ))
}

/// The lines after `after`, at most `max_lines` of them and about `max_bytes` of text (at least
/// one line, so that a reader always gets on), read [`READ_CHUNK`] at a time by sequence number;
/// and whether more lines follow.
pub(crate) async fn read_page(
    db: &Database,
    id: &DeploymentId,
    mut after: u64,
    max_lines: u32,
    max_bytes: usize,
) -> Result<(Vec<LogLine>, bool), DbError> {
    let mut lines: Vec<LogLine> = Vec::new();
    let mut bytes = 0;
    loop {
        let want = (max_lines as usize - lines.len()).min(READ_CHUNK as usize);
        // One more than wanted tells whether anything follows.
        let chunk = db.log_lines(id, after, want as u32 + 1).await?;
        let more = chunk.len() > want;
        for line in chunk.into_iter().take(want) {
            if !lines.is_empty() && bytes + line.text.len() > max_bytes {
                return Ok((lines, true));
            }
            bytes += line.text.len();
            after = line.seq;
            lines.push(line);
        }
        if !more || lines.len() >= max_lines as usize {
            return Ok((lines, more));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    after: Option<u64>,
}

/// `id:` is the line's sequence number, so a reconnecting `EventSource` resumes after the last
/// line it saw (`Last-Event-ID`). Lines are `message` events, state changes `state` events, and
/// the stream closes with an `end` event carrying the final deployment.
pub async fn stream(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    // Watch first, then read the database: whatever happens in between is seen at least once.
    let watch = state.bus.watch();
    let (d, _) = owned_deployment(&state, &user, &id).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.after)
        .unwrap_or(0);
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(follow(state, d.id, resume, watch, tx));
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

type Tx = mpsc::Sender<Result<Event, Infallible>>;

/// Feeds one SSE client until the deployment is final or the client goes away.
async fn follow(state: AppState, id: DeploymentId, after: u64, mut watch: broadcast::Receiver<Watched>, tx: Tx) {
    let mut last = after;
    // The state last told to the client: each state is sent once, and only forward.
    let mut told: Option<DeploymentState> = None;
    let finished = async {
        if !catch_up(&state, &id, &mut last, &tx).await? {
            return None;
        }
        if is_final(&state, &id).await? {
            return Some(());
        }
        // Where the deployment is now, whatever the client missed before it connected.
        let now = state.db.deployment(&id).await.ok()??.state;
        let data = deployment_data(&state, &id, Some(now)).await?;
        tx.send(Ok(Event::default().event("state").data(data))).await.ok()?;
        told = Some(now);
        loop {
            match watch.recv().await {
                Ok(Watched::Event(e)) if e.deployment_id == id => match &e.body {
                    EventBody::Log(line) if line.seq <= last => {}
                    EventBody::Log(line) if line.seq == last + 1 => {
                        send_line(&tx, line).await?;
                        last = line.seq;
                    }
                    EventBody::Log(_) => {
                        if !catch_up(&state, &id, &mut last, &tx).await? {
                            return None;
                        }
                    }
                    EventBody::State(change) if told.is_some_and(|t| !t.may_become(change.state)) => {}
                    EventBody::State(change) => {
                        let data = deployment_data(&state, &id, Some(change.state)).await?;
                        tx.send(Ok(Event::default().event("state").data(data))).await.ok()?;
                        told = Some(change.state);
                        if change.state.is_terminal() {
                            return Some(());
                        }
                    }
                },
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if !catch_up(&state, &id, &mut last, &tx).await? || is_final(&state, &id).await? {
                        return Some(());
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    if finished.await.is_some() {
        // Lines written before the final state are in the database now: send any not yet sent.
        let _ = catch_up(&state, &id, &mut last, &tx).await;
        if let Some(data) = deployment_data(&state, &id, None).await {
            let _ = tx.send(Ok(Event::default().event("end").data(data))).await;
        }
    }
}

/// The data of `state` and `end` events: the state the deployment moved to (`reached`, or its
/// current state) and the deployment as it is now (which may be further along already).
async fn deployment_data(state: &AppState, id: &DeploymentId, reached: Option<DeploymentState>) -> Option<String> {
    let d = state.db.deployment(id).await.ok()??;
    let production = state.production_of(&d.project_id).await.ok()?;
    let view = DeploymentView::new(&d, production.as_ref(), &state.sites);
    Some(json!({ "state": reached.unwrap_or(d.state), "deployment": view }).to_string())
}

/// Sends every stored line after `last`. `Some(false)` if the deployment disappeared, `None`
/// if the client is gone.
async fn catch_up(state: &AppState, id: &DeploymentId, last: &mut u64, tx: &Tx) -> Option<bool> {
    loop {
        let lines = match state.db.log_lines(id, *last, CATCH_UP_PAGE).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(deployment = %id, "cannot read log lines: {e}");
                return Some(false);
            }
        };
        for line in &lines {
            send_line(tx, line).await?;
            *last = line.seq;
        }
        if lines.len() < CATCH_UP_PAGE as usize {
            return Some(true);
        }
    }
}

async fn is_final(state: &AppState, id: &DeploymentId) -> Option<bool> {
    match state.db.deployment(id).await {
        Ok(Some(d)) => Some(d.state.is_terminal()),
        _ => Some(true),
    }
}

async fn send_line(tx: &Tx, line: &LogLine) -> Option<()> {
    let data = serde_json::to_string(line).ok()?;
    tx.send(Ok(Event::default().id(line.seq.to_string()).data(data)))
        .await
        .ok()
}
