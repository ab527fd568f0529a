//! Text helpers for pages: labels, durations, times, and build-log lines without escapes.

use platform::Timestamp;
use platform::model::DeploymentState;

pub(crate) fn state_label(s: DeploymentState) -> &'static str {
    match s {
        DeploymentState::Queued => "Queued",
        DeploymentState::Cloning => "Cloning",
        DeploymentState::Installing => "Installing",
        DeploymentState::Building => "Building",
        DeploymentState::Uploading => "Uploading",
        DeploymentState::Ready => "Ready",
        DeploymentState::Failed => "Failed",
        DeploymentState::Canceled => "Canceled",
        DeploymentState::TimedOut => "Timed out",
    }
}

/// "850ms", "42s", "3m 12s".
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0).replace(".0s", "s"),
        ms => format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A time as the page shows it without JavaScript (UTC, minutes).
pub(crate) fn when(t: Timestamp) -> String {
    let iso = t.to_rfc3339();
    format!("{} {} UTC", &iso[..10], &iso[11..16])
}

/// A build-log line as text: terminal escape sequences (colours, cursor moves, OSC links)
/// removed. The live log renders colours in the browser instead.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            if !c.is_control() || c == '\t' {
                out.push(c);
            }
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte in @..~
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escapes() {
        assert_eq!(strip_ansi("\u{1b}[32m✓ built\u{1b}[39m in 1s"), "✓ built in 1s");
        assert_eq!(strip_ansi("\u{1b}]8;;https://x\u{1b}\\link\u{1b}]8;;\u{1b}\\"), "link");
        assert_eq!(strip_ansi("a\u{1b}[2Kb\u{7}c"), "abc");
        assert_eq!(strip_ansi("<script>alert(1)</script>"), "<script>alert(1)</script>");
        assert_eq!(strip_ansi("unterminated \u{1b}[31"), "unterminated ");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(1_250), "1.2s");
        assert_eq!(duration(192_000), "3m 12s");
    }
}
