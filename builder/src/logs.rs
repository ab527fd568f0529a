//! A build's log: numbered lines and state changes, published in order on the log bus.
//!
//! Every executor's builds (in-process, `cloudrunr build` children, ECS tasks) write their log
//! through here, so the bounds on a log are enforced where its lines are produced, before
//! anything reaches the bus or the database:
//! - a per-deployment cap on bytes and lines ([`Budget`]): past it, one "log truncated: …" line
//!   says which limit was reached, further output is read and dropped, and the build goes on;
//! - a per-build pace ([`Pace`]): output is read no faster than the configured bytes and lines
//!   per second (after a one-second burst), so a flooding build waits on its own pipe instead of
//!   filling the shared bus and the log consumer ahead of every other build;
//! - a longest line ([`MAX_LINE_BYTES`]): the rest of a longer line is dropped with a marker.

use platform::bus::{BuildEvent, EventBody, LogBus, StateChange};
use platform::model::{LogLine, LogStream};
use platform::settings::LogLimits;
use platform::{DeploymentId, Timestamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Longest line kept; the rest of a longer line is dropped with a marker.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Secret values shorter than this are not masked. Short values are rarely secrets (ports such
/// as `3000`, `true`, `prod`, `en-US`) and occur in ordinary output, so masking them garbles
/// every line they appear in — and shows the value anyway, wherever `***` stands in for `3000`.
/// A value this short that is meant to be secret is guessable whatever the log shows.
pub const MIN_MASK_LEN: usize = 6;

/// What stands in for a masked value.
const MASK: &str = "***";

/// Output read past this much debt against the pace waits; shorter waits are left to accumulate
/// (a timer cannot sleep for the microseconds one line costs).
const MIN_WAIT: Duration = Duration::from_millis(5);

/// How far ahead of its pace a build may run: it may write a second's worth at once.
const BURST: Duration = Duration::from_secs(1);

/// Room kept for the truncation notice in the log's cap.
const NOTICE_ROOM: u64 = 256;

pub struct BuildLog {
    deployment: DeploymentId,
    bus: Arc<dyn LogBus>,
    /// Held while a line is numbered and published, so that lines and state changes keep the
    /// order they were written in.
    state: Mutex<LogState>,
    /// The output budget is spent: output is read and dropped without being masked or numbered.
    full: AtomicBool,
    /// Values to hide from the log, longest first.
    masks: Vec<String>,
}

struct LogState {
    next_seq: u64,
    budget: Budget,
    pace: Pace,
}

impl BuildLog {
    /// A log with the default [`LogLimits`]; see [`BuildLog::with_limits`].
    pub fn new(deployment: DeploymentId, bus: Arc<dyn LogBus>, first_seq: u64, secrets: &[&str]) -> Self {
        let mut masks: Vec<String> = secrets
            .iter()
            .filter(|s| s.len() >= MIN_MASK_LEN)
            .map(|s| (*s).to_owned())
            .collect();
        masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
        masks.dedup();
        let limits = LogLimits::default();
        Self {
            deployment,
            bus,
            state: Mutex::new(LogState {
                next_seq: first_seq.max(1),
                budget: Budget::new(&limits),
                pace: Pace::new(&limits),
            }),
            full: AtomicBool::new(false),
            masks,
        }
    }

    /// The same log under `limits` (the cap and the pace of this build).
    pub fn with_limits(mut self, limits: LogLimits) -> Self {
        let state = self.state.get_mut();
        state.budget = Budget::new(&limits);
        state.pace = Pace::new(&limits);
        self
    }

    /// A line of the platform's own (what it does, and why).
    pub async fn system(&self, text: impl AsRef<str>) {
        let text = cut_line(self.mask(text.as_ref()));
        self.write(LogStream::System, text, 0).await;
    }

    /// A line of the build's output. It counts against the log's cap and the build's pace:
    /// a build ahead of its pace waits here.
    pub async fn line(&self, stream: LogStream, text: &str) {
        let text = cut_line(self.mask(text));
        let bytes = text.len() as u64;
        let wait = self.write(stream, text, bytes).await;
        if wait >= MIN_WAIT {
            tokio::time::sleep(wait).await;
        }
    }

    pub async fn state(&self, change: StateChange) {
        // Hold the sequence lock so a state change lands between the lines around it.
        let _order = self.state.lock().await;
        let event = BuildEvent {
            deployment_id: self.deployment.clone(),
            body: EventBody::State(change),
        };
        self.publish(event).await;
    }

    /// Numbers and publishes `text` if the budget admits it; charges `paced` bytes (and a line,
    /// for output) to the pace. Returns how long the reader should wait.
    async fn write(&self, stream: LogStream, text: String, paced: u64) -> Duration {
        let mut state = self.state.lock().await;
        let wait = match stream {
            LogStream::System => Duration::ZERO,
            _ => state.pace.take(Instant::now(), paced, 1),
        };
        let (stream, text) = match state.budget.admit(stream, text.len() as u64) {
            Admit::Keep => (stream, text),
            Admit::Truncate(notice) => {
                self.full.store(true, Ordering::Relaxed);
                tracing::info!(deployment = %self.deployment, "build log truncated");
                (LogStream::System, notice)
            }
            Admit::Drop => return wait,
        };
        let event = BuildEvent {
            deployment_id: self.deployment.clone(),
            body: EventBody::Log(LogLine {
                seq: state.next_seq,
                ts: Timestamp::now(),
                stream,
                text,
            }),
        };
        state.next_seq += 1;
        self.publish(event).await;
        wait
    }

    /// Charges output that is dropped (the cap is reached) to the pace: its bytes only, since
    /// reading is all a dropped line costs.
    async fn drop_output(&self, bytes: u64) -> Duration {
        self.state.lock().await.pace.take(Instant::now(), bytes, 0)
    }

    async fn publish(&self, event: BuildEvent) {
        if let Err(e) = self.bus.publish(vec![event]).await {
            tracing::error!(deployment = %self.deployment, "cannot publish build event: {e}");
        }
    }

    fn mask(&self, text: &str) -> String {
        mask(text, &self.masks)
    }

    /// Logs everything `reader` produces, line by line, until it closes. Reading keeps the
    /// build's pace: a build printing faster waits, blocked on its own full pipe.
    pub async fn follow(&self, stream: LogStream, reader: impl AsyncRead + Unpin) {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        // Enough beyond the longest line to see a secret that straddles the cut whole.
        let keep = MAX_LINE_BYTES + self.masks.first().map_or(0, String::len);
        loop {
            line.clear();
            let read = match read_line_capped(&mut reader, &mut line, keep).await {
                Ok(read) if read.consumed == 0 => break,
                Ok(read) => read,
                Err(e) => {
                    self.system(format!("(output unreadable: {e})")).await;
                    break;
                }
            };
            let wait = if self.full.load(Ordering::Relaxed) {
                self.drop_output(read.consumed as u64).await
            } else {
                let text = self.display(&line, read.content);
                // The pace counts what was read, not what is kept of it.
                self.write(stream, text, read.consumed as u64).await
            };
            if wait >= MIN_WAIT {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// The line as stored: masked, then cut to [`MAX_LINE_BYTES`] with a note of what was
    /// dropped (`content` is the line's whole length as printed).
    fn display(&self, raw: &[u8], content: usize) -> String {
        let masked = self.mask(&display_line(raw));
        if content <= MAX_LINE_BYTES {
            return masked;
        }
        let mut kept = masked[..floor_char_boundary(&masked, MAX_LINE_BYTES)].to_owned();
        mask_cut_tail(&mut kept, &self.masks);
        kept.push_str(&format!(" … [{} more bytes dropped]", content - MAX_LINE_BYTES));
        kept
    }
}

/// `text` with every mask replaced by [`MASK`], longest masks first.
fn mask(text: &str, masks: &[String]) -> String {
    let mut out = text.to_owned();
    for m in masks {
        if out.contains(m.as_str()) {
            out = out.replace(m.as_str(), MASK);
        }
    }
    out
}

/// Hides the start of a secret that a cut line ends with: the rest of it was dropped, so a
/// plain search cannot find it.
fn mask_cut_tail(text: &mut String, masks: &[String]) {
    for m in masks {
        let partial = (1..m.len())
            .rev()
            .filter(|&k| m.is_char_boundary(k))
            .find(|&k| text.ends_with(&m[..k]));
        if let Some(k) = partial {
            text.truncate(text.len() - k);
            text.push_str(MASK);
            return;
        }
    }
}

/// Any line (the platform's too) cut to [`MAX_LINE_BYTES`].
fn cut_line(mut text: String) -> String {
    if text.len() > MAX_LINE_BYTES {
        let at = floor_char_boundary(&text, MAX_LINE_BYTES);
        let dropped = text.len() - at;
        text.truncate(at);
        text.push_str(&format!(" … [{dropped} more bytes dropped]"));
    }
    text
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// What the log of one build may still take: the per-deployment cap.
///
/// Output lines may fill the cap less a reserve; the reserve keeps room for the platform's own
/// lines after the output is cut off (the truncation notice, an error, the summary), so that a
/// flooding build still ends with a readable log. Whatever happens, the log stays within
/// `max_bytes` bytes of text and `max_lines` lines.
#[derive(Debug)]
pub(crate) struct Budget {
    max_bytes: u64,
    max_lines: u64,
    output_bytes: u64,
    output_lines: u64,
    bytes: u64,
    lines: u64,
    truncated: bool,
}

/// What becomes of a line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    Keep,
    /// The line is dropped and the log is full from now on: this notice takes its place.
    Truncate(String),
    Drop,
}

impl Budget {
    pub(crate) fn new(limits: &LogLimits) -> Self {
        let (max_bytes, max_lines) = (limits.max_bytes(), limits.max_lines());
        let reserve_bytes = (max_bytes / 8).clamp(2 * NOTICE_ROOM, 64 * 1024);
        let reserve_lines = (max_lines / 10).clamp(2, 200);
        Self {
            max_bytes,
            max_lines,
            output_bytes: max_bytes.saturating_sub(reserve_bytes),
            output_lines: max_lines.saturating_sub(reserve_lines),
            bytes: 0,
            lines: 0,
            truncated: false,
        }
    }

    /// Whether a line of `len` bytes on `stream` is kept, and counts it if so.
    pub(crate) fn admit(&mut self, stream: LogStream, len: u64) -> Admit {
        let output = stream != LogStream::System;
        let (max_lines, max_bytes) = match (self.truncated, output) {
            (true, true) => return Admit::Drop,
            (true, false) => (self.max_lines, self.max_bytes),
            (false, true) => (self.output_lines, self.output_bytes),
            (false, false) => (self.max_lines - 1, self.max_bytes - NOTICE_ROOM),
        };
        let lines_full = self.lines + 1 > max_lines;
        if !lines_full && self.bytes + len <= max_bytes {
            self.lines += 1;
            self.bytes += len;
            return Admit::Keep;
        }
        if self.truncated {
            return Admit::Drop;
        }
        self.truncated = true;
        let limit = if lines_full {
            format!("{} lines", self.max_lines)
        } else {
            format!("{} bytes", self.max_bytes)
        };
        let mut notice = format!(
            "log truncated: this deployment's log reached its limit of {limit}; the rest of the build's \
             output is not kept, and the build goes on"
        );
        notice.truncate(floor_char_boundary(&notice, NOTICE_ROOM as usize));
        self.lines += 1;
        self.bytes += notice.len() as u64;
        Admit::Truncate(notice)
    }
}

/// How fast one build's output is read: a leaky bucket (GCRA) over bytes and lines, with a
/// burst of [`BURST`].
#[derive(Debug)]
pub(crate) struct Pace {
    bytes_per_sec: f64,
    lines_per_sec: f64,
    /// When the output read so far would have been read at exactly the pace.
    due: Option<Instant>,
}

impl Pace {
    pub(crate) fn new(limits: &LogLimits) -> Self {
        Self {
            bytes_per_sec: limits.bytes_per_sec() as f64,
            lines_per_sec: limits.lines_per_sec() as f64,
            due: None,
        }
    }

    /// Charges `bytes` and `lines` read at `now`; returns how long the reader should wait.
    pub(crate) fn take(&mut self, now: Instant, bytes: u64, lines: u64) -> Duration {
        let cost = (bytes as f64 / self.bytes_per_sec).max(lines as f64 / self.lines_per_sec);
        let due = self.due.map_or(now, |d| d.max(now)) + Duration::from_secs_f64(cost);
        self.due = Some(due);
        due.saturating_duration_since(now).saturating_sub(BURST)
    }
}

/// How much of one line [`read_line_capped`] read.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    /// Bytes consumed from the reader, line ending included (0 at the end).
    consumed: usize,
    /// The line's length without its ending.
    content: usize,
}

/// Reads one line (through `\n` or to EOF), keeping at most `keep` bytes of it in `buf`.
async fn read_line_capped(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    buf: &mut Vec<u8>,
    keep: usize,
) -> std::io::Result<Read> {
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
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        reader.consume(take);
        consumed += take;
        if done {
            ended = true;
            break;
        }
    }
    Ok(Read {
        consumed,
        content: consumed - usize::from(ended),
    })
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

    fn limits(max_bytes: u64, max_lines: u64) -> LogLimits {
        LogLimits::new(max_bytes, max_lines, u64::MAX, u64::MAX)
    }

    /// Follows `input` as stdout and returns the stored lines: (seq, stream, text).
    async fn follow(input: &[u8], secrets: &[&str], limits: LogLimits) -> Vec<(u64, LogStream, String)> {
        let bus = Arc::new(InProcessBus::new());
        let mut sub = bus.subscribe_durable().await.unwrap();
        let log = BuildLog::new(DeploymentId::generate(), bus.clone(), 5, secrets).with_limits(limits);
        log.follow(LogStream::Stdout, input).await;
        log.system("end").await;
        let mut lines = Vec::new();
        loop {
            let batch = sub.next_batch(10_000).await.unwrap();
            sub.ack().await.unwrap();
            for e in batch {
                match e.body {
                    EventBody::Log(l) => lines.push((l.seq, l.stream, l.text)),
                    EventBody::State(_) => panic!("no state expected"),
                }
            }
            if lines.last().is_some_and(|l| l.2 == "end") {
                return lines;
            }
        }
    }

    fn texts(lines: &[(u64, LogStream, String)]) -> Vec<&str> {
        lines.iter().map(|l| l.2.as_str()).collect()
    }

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
        let lines = follow(input.as_bytes(), &[], LogLimits::default()).await;
        let texts = texts(&lines);
        assert_eq!(
            texts.len(),
            3,
            "{:?}",
            lines.iter().map(|l| l.2.len()).collect::<Vec<_>>()
        );
        assert!(texts[0].starts_with(&"x".repeat(MAX_LINE_BYTES)));
        assert!(
            texts[0].ends_with(&format!("x … [{} more bytes dropped]", MAX_LINE_BYTES * 2)),
            "{}",
            &texts[0][MAX_LINE_BYTES - 10..]
        );
        assert_eq!(texts[1], "next");
        // The platform's own lines are cut too.
        assert_eq!(
            cut_line("é".repeat(MAX_LINE_BYTES)).len(),
            MAX_LINE_BYTES + " … [16384 more bytes dropped]".len()
        );
    }

    #[tokio::test]
    async fn lines_are_numbered_and_long_values_masked() {
        let lines = follow(
            b"token=hunter2secret\nlistening on 3000, debug=on\nkey=abcdef\n",
            &["hunter2secret", "3000", "on", "abcdef"],
            LogLimits::default(),
        )
        .await;
        let got: Vec<(u64, &str)> = lines.iter().map(|l| (l.0, l.2.as_str())).collect();
        assert_eq!(
            got,
            [
                (5, "token=***"),
                (6, "listening on 3000, debug=on"),
                (7, "key=***"),
                (8, "end")
            ]
        );
    }

    #[tokio::test]
    async fn a_secret_cut_with_its_line_is_masked() {
        let secret = "s3cr3t-value-XYZ";
        let kept = |lines: &[(u64, LogStream, String)]| {
            let text = &lines[0].2;
            assert!(text.ends_with("more bytes dropped]"), "the line was cut");
            text.split(" … [").next().unwrap().to_owned()
        };
        // Straddling the cut: the whole secret is in the overlap kept beyond it.
        for offset in [1, 5, secret.len() - 1] {
            let input = format!("{}{secret}tail\n", "y".repeat(MAX_LINE_BYTES - offset));
            let text = kept(&follow(input.as_bytes(), &[secret], LogLimits::default()).await);
            assert!(
                !text.ends_with('s') && !text.contains("s3"),
                "offset {offset}: {}",
                &text[text.len() - 20..]
            );
        }
        // Masking shortens the line, so a secret cut where reading stopped moves before the cut:
        // its start is masked as well.
        let input = format!(
            "{secret}{}{secret}tail\n",
            "y".repeat(MAX_LINE_BYTES + 5 - secret.len())
        );
        let text = kept(&follow(input.as_bytes(), &[secret], LogLimits::default()).await);
        assert!(text.starts_with("***y"));
        assert!(!text.contains("s3cr"), "{}", &text[text.len() - 20..]);
        assert!(text.ends_with("y***"), "{}", &text[text.len() - 20..]);
    }

    #[test]
    fn output_is_cut_once_with_room_left_for_the_platform() {
        let mut b = Budget::new(&limits(10_000, 1000));
        // 100-byte output lines: the output share is 10_000 - 1250 bytes.
        let mut kept = 0;
        let notice = loop {
            match b.admit(LogStream::Stdout, 100) {
                Admit::Keep => kept += 1,
                Admit::Truncate(n) => break n,
                Admit::Drop => panic!("dropped before the notice"),
            }
        };
        assert_eq!(kept, 87);
        assert!(notice.starts_with("log truncated: "), "{notice}");
        assert!(notice.contains("limit of 10000 bytes"), "{notice}");
        assert!(notice.contains("the build goes on"), "{notice}");
        assert_eq!(b.admit(LogStream::Stderr, 1), Admit::Drop);
        // The platform's lines still fit, up to the cap and no further.
        assert_eq!(b.admit(LogStream::System, 500), Admit::Keep);
        assert_eq!(b.admit(LogStream::System, 500), Admit::Keep);
        assert_eq!(b.admit(LogStream::System, 5000), Admit::Drop);
        assert!(b.bytes <= b.max_bytes && b.lines <= b.max_lines, "{b:?}");
        assert_eq!(b.admit(LogStream::Stdout, 1), Admit::Drop);
    }

    #[test]
    fn the_line_cap_names_lines() {
        let mut b = Budget::new(&limits(1 << 30, 100));
        let kept = std::iter::repeat_with(|| b.admit(LogStream::Stdout, 1))
            .take_while(|a| *a == Admit::Keep)
            .count();
        assert_eq!(kept, 90);
        assert!(b.truncated);
        assert_eq!(b.lines, 91, "the notice counts");
        let system = std::iter::repeat_with(|| b.admit(LogStream::System, 1))
            .take(100)
            .filter(|a| *a == Admit::Keep)
            .count();
        assert_eq!(system, 9);
        assert_eq!(b.lines, 100);
    }

    #[test]
    fn platform_lines_alone_cannot_pass_the_cap() {
        let mut b = Budget::new(&limits(4096, 20));
        let mut notices = Vec::new();
        for _ in 0..1000 {
            if let Admit::Truncate(n) = b.admit(LogStream::System, 300) {
                notices.push(n);
            }
        }
        assert_eq!(notices.len(), 1);
        assert!(notices[0].len() as u64 <= NOTICE_ROOM);
        assert!(b.bytes <= 4096 && b.lines <= 20, "{b:?}");
    }

    #[tokio::test]
    async fn a_flood_keeps_within_the_cap_and_is_read_to_its_end() {
        let input: String = (0..5000).map(|i| format!("line {i:05} {}\n", "z".repeat(50))).collect();
        let lines = follow(input.as_bytes(), &[], limits(20_000, 200)).await;
        let notice = lines
            .iter()
            .position(|l| l.2.starts_with("log truncated: "))
            .expect("a notice");
        assert_eq!(lines[notice].1, LogStream::System);
        assert!(lines[..notice].iter().all(|l| l.1 == LogStream::Stdout));
        assert_eq!(
            texts(&lines[notice + 1..]),
            ["end"],
            "nothing of the output after the notice"
        );
        let bytes: usize = lines.iter().map(|l| l.2.len()).sum();
        assert!(
            bytes <= 20_000 && lines.len() <= 200,
            "{bytes} bytes, {} lines",
            lines.len()
        );
        let seqs: Vec<u64> = lines.iter().map(|l| l.0).collect();
        assert_eq!(
            seqs,
            (5..5 + lines.len() as u64).collect::<Vec<_>>(),
            "numbered without gaps"
        );
    }

    #[test]
    fn the_pace_allows_a_burst_then_waits() {
        let mut p = Pace::new(&LogLimits::new(1 << 30, 1 << 30, 1000 * 1024, 100));
        let t0 = Instant::now();
        // A second's worth of lines is free…
        for _ in 0..100 {
            assert_eq!(p.take(t0, 10, 1), Duration::ZERO);
        }
        // …then each line costs 10 ms.
        let near = |d: Duration, ms: f64| (d.as_secs_f64() * 1000.0 - ms).abs() < 0.01;
        assert!(near(p.take(t0, 10, 1), 10.0));
        assert!(near(p.take(t0, 10, 1), 20.0));
        // Time paid off the debt.
        assert_eq!(p.take(t0 + Duration::from_millis(30), 0, 0), Duration::ZERO);
        // Bytes cost time too: 2 MiB at 1000 KiB/s take 2.048 s, 1.048 s beyond the burst.
        let mut p = Pace::new(&LogLimits::new(1 << 30, 1 << 30, 1000 * 1024, 1_000_000));
        let wait = p.take(t0, 2 << 20, 1);
        assert!(
            wait > Duration::from_millis(1040) && wait < Duration::from_millis(1060),
            "{wait:?}"
        );
    }

    #[tokio::test]
    async fn a_fast_build_is_read_at_its_pace() {
        let bus = Arc::new(InProcessBus::new());
        let _sub = bus.subscribe_durable().await.unwrap();
        let log = BuildLog::new(DeploymentId::generate(), bus.clone(), 1, &[]).with_limits(LogLimits::new(
            1 << 30,
            1 << 30,
            1 << 30,
            200,
        ));
        let input = "x\n".repeat(300);
        let started = std::time::Instant::now();
        log.follow(LogStream::Stdout, input.as_bytes()).await;
        // 200 lines of burst, then 100 at 200 per second.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
    }
}
