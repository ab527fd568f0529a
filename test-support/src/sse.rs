//! The live log stream of a deployment, read as Server-Sent Events.

use crate::Platform;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// The log lines among `events`, asserting that each line came once and in order (numbered
/// 1, 2, 3, …): what every follower of a log must see.
pub fn lines_in_order(events: &[SseEvent]) -> Vec<Value> {
    let lines: Vec<Value> = events
        .iter()
        .filter(|e| e.event == "message")
        .map(|e| e.json())
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every line once, in order"
    );
    lines
}

/// Opens the live log stream and collects events until `stop` says so (or the stream ends).
pub async fn read_sse(
    platform: &Platform,
    token: &str,
    id: &str,
    last_event_id: Option<&str>,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut req = platform
        .http
        .get(format!("{}/api/deployments/{id}/logs/stream", platform.base))
        .bearer_auth(token);
    if let Some(l) = last_event_id {
        req = req.header("last-event-id", l);
    }
    let resp = req.send().await.expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(c))) => c,
            Ok(_) => return events,
            Err(_) => panic!("the log stream did not finish; events so far: {events:?}"),
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut ev = SseEvent {
                event: "message".into(),
                id: None,
                data: String::new(),
            };
            let mut any = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    ev.event = v.trim().to_owned();
                    any = true;
                } else if let Some(v) = line.strip_prefix("id:") {
                    ev.id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    any = true;
                }
            }
            if any {
                let done = stop(&ev);
                events.push(ev);
                if done {
                    return events;
                }
            }
        }
    }
}
