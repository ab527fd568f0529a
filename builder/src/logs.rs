//! A build's log: numbered lines and state changes, published in order on the log bus.

use platform::bus::{BuildEvent, EventBody, LogBus, StateChange};
use platform::model::{LogLine, LogStream};
use platform::{DeploymentId, Timestamp};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::Mutex;

/// Longest line kept; the rest of a longer line is dropped with a marker.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Secret values shorter than this are not masked: masking `1` or `on` would garble every line.
const MIN_MASK_LEN: usize = 4;

pub struct BuildLog {
    deployment: DeploymentId,
    bus: Arc<dyn LogBus>,
    next_seq: Mutex<u64>,
    /// Values to hide from the log, longest first.
    masks: Vec<String>,
}

impl BuildLog {
    pub fn new(deployment: DeploymentId, bus: Arc<dyn LogBus>, first_seq: u64, secrets: &[&str]) -> Self {
        let mut masks: Vec<String> = secrets
            .iter()
            .filter(|s| s.len() >= MIN_MASK_LEN)
            .map(|s| (*s).to_owned())
            .collect();
        masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
        masks.dedup();
        Self {
            deployment,
            bus,
            next_seq: Mutex::new(first_seq.max(1)),
            masks,
        }
    }

    pub async fn system(&self, text: impl AsRef<str>) {
        self.line(LogStream::System, text.as_ref()).await;
    }

    pub async fn line(&self, stream: LogStream, text: &str) {
        let text = self.mask(text);
        let mut seq = self.next_seq.lock().await;
        let event = BuildEvent {
            deployment_id: self.deployment.clone(),
            body: EventBody::Log(LogLine {
                seq: *seq,
                ts: Timestamp::now(),
                stream,
                text,
            }),
        };
        *seq += 1;
        self.publish(event).await;
    }

    pub async fn state(&self, change: StateChange) {
        // Hold the sequence lock so a state change lands between the lines around it.
        let _order = self.next_seq.lock().await;
        let event = BuildEvent {
            deployment_id: self.deployment.clone(),
            body: EventBody::State(change),
        };
        self.publish(event).await;
    }

    async fn publish(&self, event: BuildEvent) {
        if let Err(e) = self.bus.publish(vec![event]).await {
            tracing::error!(deployment = %self.deployment, "cannot publish build event: {e}");
        }
    }

    fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for m in &self.masks {
            if out.contains(m.as_str()) {
                out = out.replace(m.as_str(), "***");
            }
        }
        out
    }

    /// Logs everything `reader` produces, line by line, until it closes.
    pub async fn follow(&self, stream: LogStream, reader: impl AsyncRead + Unpin) {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_line_capped(&mut reader, &mut line).await {
                Ok(0) => break,
                Ok(_) => self.line(stream, &display_line(&line)).await,
                Err(e) => {
                    self.system(format!("(output unreadable: {e})")).await;
                    break;
                }
            }
        }
    }
}

/// Reads one line (through `\n` or to EOF) into `buf`, keeping at most [`MAX_LINE_BYTES`] of it
/// and noting how much was dropped. Returns the number of bytes consumed.
async fn read_line_capped(reader: &mut (impl AsyncBufReadExt + Unpin), buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut consumed = 0;
    let mut ended = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            break;
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        reader.consume(take);
        consumed += take;
        if done {
            ended = true;
            break;
        }
    }
    let content = consumed - usize::from(ended);
    if content > MAX_LINE_BYTES {
        buf.truncate(MAX_LINE_BYTES);
        buf.extend_from_slice(format!(" … [{} more bytes dropped]", content - MAX_LINE_BYTES).as_bytes());
    }
    Ok(consumed)
}

/// What a terminal would show for one line of output: without the line ending, and for
/// carriage-return progress updates only the last one.
fn display_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let last = text.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("");
    last.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::InProcessBus;
    use platform::bus::Watched;

    #[test]
    fn display_lines() {
        assert_eq!(display_line(b"hello\n"), "hello");
        assert_eq!(display_line(b"crlf\r\n"), "crlf");
        assert_eq!(display_line(b"10%\r50%\r100%\n"), "100%");
        assert_eq!(display_line(b"no newline"), "no newline");
        assert_eq!(display_line(b"bad \xff utf8\n"), "bad \u{fffd} utf8");
    }

    #[tokio::test]
    async fn long_lines_are_capped_not_split() {
        let input = format!("{}\nnext\n", "x".repeat(MAX_LINE_BYTES * 3));
        let mut r = BufReader::with_capacity(1024, input.as_bytes());
        let mut buf = Vec::new();
        read_line_capped(&mut r, &mut buf).await.unwrap();
        let line = String::from_utf8(buf.clone()).unwrap();
        assert!(line.starts_with(&"x".repeat(MAX_LINE_BYTES)));
        assert!(
            line.ends_with(&format!("[{} more bytes dropped]", MAX_LINE_BYTES * 2)),
            "{}",
            &line[MAX_LINE_BYTES..]
        );
        buf.clear();
        read_line_capped(&mut r, &mut buf).await.unwrap();
        assert_eq!(buf, b"next\n");
    }

    #[tokio::test]
    async fn lines_are_numbered_and_masked() {
        let bus = Arc::new(InProcessBus::new());
        let mut sub = bus.subscribe_durable().await.unwrap();
        let id = DeploymentId::generate();
        let log = BuildLog::new(id, bus.clone(), 5, &["hunter2secret", "on"]);
        log.follow(LogStream::Stdout, &b"token=hunter2secret\nturn it on\n"[..])
            .await;
        let batch = sub.next_batch(10).await.unwrap();
        let lines: Vec<(u64, String)> = batch
            .into_iter()
            .map(|e| match e.body {
                EventBody::Log(l) => (l.seq, l.text),
                EventBody::State(_) => panic!("no state expected"),
            })
            .collect();
        assert_eq!(lines, vec![(5, "token=***".to_string()), (6, "turn it on".to_string())]);
        sub.ack().await.unwrap();
        let _: Option<Watched> = None;
    }
}
