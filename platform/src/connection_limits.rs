//! How long, how slowly and how many: every limit on the server's connections, in one place.
//!
//! A connection costs a file descriptor and some memory for as long as it is open, whatever the
//! client does with it, so a client that opens connections and then says nothing, says it a byte
//! at a time, or never reads the answer, could hold them for ever and take the server's every
//! descriptor. Each phase of a connection is therefore bounded in time, and their number is
//! capped, on both of the server's paths: the site fast path (`router::wire`) and the general
//! hyper/axum path it hands connections over to (and which the components that have no sites use
//! alone).
//!
//! The defaults are nginx's or tighter (nginx: `client_header_timeout 60s`,
//! `client_body_timeout 60s`, `keepalive_timeout 75s`, `send_timeout 60s`,
//! `large_client_header_buffers 4 8k`, `http2_max_concurrent_streams 128`); every one can be
//! changed with a `CLOUDRUNR_*` variable (named on each field).

use std::time::Duration;

/// The limits on every connection the server accepts. [`Default`] holds the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once (`CLOUDRUNR_MAX_CONNECTIONS`, default 4096). At the cap a new
    /// connection is still accepted: the one idle the longest (no request in flight) is closed to
    /// make room. When none is idle, the new connection is closed at once. The cap is lowered at
    /// start to three quarters of the process's open-file limit (`ulimit -n`) when that is lower,
    /// so that the database, builds and artifact files always find a descriptor.
    pub max_connections: usize,
    /// How long a request head may take to arrive, from its first byte to its blank line
    /// (`CLOUDRUNR_HEADER_TIMEOUT_SECS`, default 30 s; nginx's `client_header_timeout` is 60 s).
    /// A head sent a byte at a time is cut off when it runs out, however steadily the bytes come.
    pub header_timeout: Duration,
    /// How long a connection with no request in flight stays open: a kept-alive HTTP/1.1
    /// connection waiting for its next request, an HTTP/2 connection with no open stream, a
    /// connection that never sent anything (`CLOUDRUNR_IDLE_TIMEOUT_SECS`, default 60 s; nginx's
    /// `keepalive_timeout` is 75 s).
    pub idle_timeout: Duration,
    /// How long a request body may go without a byte arriving (`CLOUDRUNR_BODY_TIMEOUT_SECS`,
    /// default 60 s, nginx's `client_body_timeout`); past it the request is answered
    /// `408 Request Timeout` and the connection closed.
    pub body_timeout: Duration,
    /// The slowest a request body may arrive on average, in bytes a second, after its first
    /// [`body_timeout`](Self::body_timeout) (`CLOUDRUNR_MIN_BODY_RATE`, default 1024): a body may
    /// take `body_timeout + received / min_body_rate` in all, so that a trickle just fast enough to
    /// beat the per-read timeout still ends (Apache's `mod_reqtimeout` `MinRate`). 0 turns it off.
    pub min_body_rate: u64,
    /// How long a response may wait for the client to take more of it
    /// (`CLOUDRUNR_SEND_TIMEOUT_SECS`, default 60 s, nginx's `send_timeout`).
    pub send_timeout: Duration,
    /// The largest request head, in bytes: request line and headers (`CLOUDRUNR_MAX_HEADER_BYTES`,
    /// default 32 KiB, as nginx's `large_client_header_buffers 4 8k`). HTTP/1 answers a longer
    /// one `431 Request Header Fields Too Large`; for HTTP/2 it is the advertised
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`.
    pub max_header_bytes: usize,
    /// How often an HTTP/2 connection is pinged (`CLOUDRUNR_H2_KEEPALIVE_SECS`, default 20 s); a
    /// peer that does not answer within the same time is disconnected.
    pub h2_keepalive: Duration,
    /// Streams one HTTP/2 connection may have open at once (`CLOUDRUNR_H2_MAX_STREAMS`, default
    /// 100; nginx's `http2_max_concurrent_streams` is 128).
    pub h2_max_streams: u32,
}

impl ConnectionLimits {
    /// The smallest head hyper accepts as a limit (its minimum read buffer); a smaller setting is
    /// raised to it.
    pub const MIN_HEADER_BYTES: usize = 8 * 1024;

    /// The cap actually applied, given the process's soft open-file limit (`None` when unknown):
    /// three quarters of it at most, and never less than one.
    pub fn effective_max_connections(&self, open_files: Option<u64>) -> usize {
        let fd_share = open_files.map_or(usize::MAX, |n| usize::try_from(n / 4 * 3).unwrap_or(usize::MAX));
        self.max_connections.min(fd_share).max(1)
    }

    /// How long after its start a request body is cut off, given that its last read came
    /// `last_read` after the start and `received` bytes have come: a
    /// [`body_timeout`](Self::body_timeout) after the last read, or earlier when it falls behind
    /// [`min_body_rate`](Self::min_body_rate).
    pub fn body_allowance(&self, last_read: Duration, received: u64) -> Duration {
        let idle = last_read.saturating_add(self.body_timeout);
        if self.min_body_rate == 0 {
            return idle;
        }
        // Whole seconds are enough, and keep the sum from overflowing whatever the rate.
        let earned = Duration::from_secs(received / self.min_body_rate);
        idle.min(self.body_timeout.saturating_add(earned))
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            min_body_rate: 1024,
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            h2_keepalive: Duration::from_secs(20),
            h2_max_streams: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest() {
        let limits = ConnectionLimits::default();
        assert_eq!(limits.effective_max_connections(None), 4096);
        assert_eq!(limits.effective_max_connections(Some(1_048_576)), 4096);
        assert_eq!(limits.effective_max_connections(Some(1024)), 768);
        assert_eq!(limits.effective_max_connections(Some(0)), 1);
        let small = ConnectionLimits {
            max_connections: 3,
            ..ConnectionLimits::default()
        };
        assert_eq!(small.effective_max_connections(Some(1024)), 3);
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_stalled_body_is_cut_a_body_timeout_after_its_last_byte() {
        let limits = ConnectionLimits::default();
        // Fast enough for the rate: only the per-read timeout counts.
        assert_eq!(limits.body_allowance(secs(5), 1 << 20), secs(65));
        let no_rate = ConnectionLimits {
            min_body_rate: 0,
            ..limits
        };
        assert_eq!(no_rate.body_allowance(secs(500), 1), secs(560));
    }

    #[test]
    fn a_trickle_is_cut_when_it_falls_behind_the_minimum_rate() {
        let limits = ConnectionLimits::default();
        // One byte every 59 s never trips the per-read timeout, but earns no time either.
        assert_eq!(limits.body_allowance(secs(59), 1), secs(60));
        assert_eq!(limits.body_allowance(secs(0), 0), secs(60));
        // 10 KiB earned 10 s beyond the first body_timeout.
        assert_eq!(limits.body_allowance(secs(69), 10 * 1024), secs(70));
        // Huge counts do not overflow.
        let fast = ConnectionLimits {
            min_body_rate: 1,
            ..ConnectionLimits::default()
        };
        assert_eq!(fast.body_allowance(secs(1), u64::MAX), secs(61));
    }
}
