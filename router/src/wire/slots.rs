//! The server's open connections: how many there are, and which are idle, so that at the cap the
//! one idle the longest makes room for a new one.
//!
//! A connection is *busy* while a request is in flight on it (from its head to the end of its
//! answer) and *idle* otherwise: waiting for its first or next request, or for the rest of a
//! head. Idle connections are what an attacker holds cheaply (open a socket, send nothing or a
//! byte at a time), and what a client loses least by: it opens another. So at the cap the
//! longest idle one is closed and the new connection served; only when every connection is busy
//! is the new one turned away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The registry of open connections, capped. Cheap to clone (shared).
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Registry>,
}

struct Registry {
    cap: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
}

/// One open connection's state, as the registry and the connection's own task see it.
pub struct Slot {
    epoch: Instant,
    /// Requests in flight.
    busy: AtomicU32,
    /// Milliseconds after `epoch` when the connection last became idle (or was accepted).
    idle_since: AtomicU64,
    /// Cancelled when the registry wants the connection closed to make room.
    shed: CancellationToken,
}

/// A connection's place in the registry, given up when dropped.
pub struct Admitted {
    registry: Arc<Registry>,
    id: u64,
    slot: Arc<Slot>,
}

impl Connections {
    /// A registry of at most `cap` connections (at least one).
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Registry {
                cap: cap.max(1),
                epoch: Instant::now(),
                next_id: AtomicU64::new(0),
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes a place for a new connection. At the cap, the connection idle the longest is told to
    /// close (its task ends it at once) and the new one admitted all the same; `None` when every
    /// connection is busy and the new one must be closed instead.
    pub fn admit(&self) -> Option<Admitted> {
        let registry = &self.inner;
        let slot = Arc::new(Slot {
            epoch: registry.epoch,
            busy: AtomicU32::new(0),
            idle_since: AtomicU64::new(millis_since(registry.epoch)),
            shed: CancellationToken::new(),
        });
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
        let mut open = registry.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= registry.cap {
            // Those already told to close are on their way out and do not count.
            let leaving = open.values().filter(|s| s.shed.is_cancelled()).count();
            if open.len() - leaving >= registry.cap {
                let states = open.iter().map(|(id, s)| (*id, s.state()));
                let victim = longest_idle(states)?;
                if let Some(slot) = open.get(&victim) {
                    slot.shed.cancel();
                }
            }
        }
        open.insert(id, slot.clone());
        drop(open);
        Some(Admitted {
            registry: registry.clone(),
            id,
            slot,
        })
    }

    /// Connections open now (including those told to close that have not yet).
    pub fn open(&self) -> usize {
        self.inner.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.remove(&self.id);
    }
}

impl std::ops::Deref for Admitted {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        &self.slot
    }
}

impl Admitted {
    /// The slot, to be held by what outlives this borrow (a request's answer).
    pub fn slot(&self) -> Arc<Slot> {
        self.slot.clone()
    }
}

/// What the choice of a connection to close looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    /// Requests in flight.
    pub busy: u32,
    /// Since when it is idle (milliseconds on the registry's clock).
    pub idle_since: u64,
    /// Already told to close.
    pub leaving: bool,
}

/// The connection to close for a new one: of those idle and not already leaving, the one idle the
/// longest; `None` when there is none.
pub fn longest_idle(slots: impl Iterator<Item = (u64, SlotState)>) -> Option<u64> {
    slots
        .filter(|(_, s)| s.busy == 0 && !s.leaving)
        .min_by_key(|(id, s)| (s.idle_since, *id))
        .map(|(id, _)| id)
}

impl Slot {
    fn state(&self) -> SlotState {
        SlotState {
            busy: self.busy.load(Ordering::Acquire),
            idle_since: self.idle_since.load(Ordering::Acquire),
            leaving: self.shed.is_cancelled(),
        }
    }

    /// A request is in flight (until the matching [`Slot::end`]).
    pub fn begin(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
    }

    /// A request's answer is done (or abandoned); the last one makes the connection idle.
    pub fn end(&self) {
        // The time first, so that a connection seen idle is never seen with an old time; while
        // other requests are in flight it is not read, and the last of them writes it again.
        self.idle_since.store(millis_since(self.epoch), Ordering::Release);
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }

    /// When the connection has been idle for `timeout`; `None` while a request is in flight.
    pub fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        let state = self.state();
        (state.busy == 0).then(|| self.epoch + Duration::from_millis(state.idle_since) + timeout)
    }

    /// Completes when the registry wants this connection closed to make room.
    pub async fn shed(&self) {
        self.shed.cancelled().await;
    }

    /// Whether the registry wants this connection closed.
    pub fn is_shed(&self) -> bool {
        self.shed.is_cancelled()
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(busy: u32, idle_since: u64, leaving: bool) -> SlotState {
        SlotState {
            busy,
            idle_since,
            leaving,
        }
    }

    #[test]
    fn the_longest_idle_goes_first() {
        let slots = [
            (1, state(0, 50, false)),
            (2, state(0, 10, false)),
            (3, state(1, 0, false)),
            (4, state(0, 5, true)),
        ];
        assert_eq!(longest_idle(slots.into_iter()), Some(2));
    }

    #[test]
    fn busy_and_leaving_connections_are_never_chosen() {
        let slots = [(1, state(2, 0, false)), (2, state(0, 0, true))];
        assert_eq!(longest_idle(slots.into_iter()), None);
        assert_eq!(longest_idle(std::iter::empty()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let connections = Connections::new(2);
        let first = connections.admit().unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = connections.admit().unwrap();
        let third = connections.admit().expect("an idle one makes room");
        assert!(first.is_shed(), "the oldest idle is told to close");
        assert!(!second.is_shed());
        drop(first);
        assert_eq!(connections.open(), 2);
        // Both busy now: a newcomer is turned away.
        second.begin();
        third.begin();
        assert!(connections.admit().is_none());
        assert_eq!(connections.open(), 2);
        // The one whose request ended first is idle the longest.
        tokio::time::advance(Duration::from_secs(1)).await;
        third.end();
        tokio::time::advance(Duration::from_secs(1)).await;
        second.end();
        let _fourth = connections.admit().unwrap();
        assert!(third.is_shed() && !second.is_shed());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_deadlines_run_from_the_end_of_the_last_request() {
        let connections = Connections::new(8);
        let slot = connections.admit().unwrap();
        let timeout = Duration::from_secs(10);
        let accepted = Instant::now();
        assert_eq!(slot.idle_deadline(timeout), Some(accepted + timeout));
        slot.begin();
        slot.begin();
        assert_eq!(slot.idle_deadline(timeout), None);
        tokio::time::advance(Duration::from_secs(3)).await;
        slot.end();
        assert_eq!(slot.idle_deadline(timeout), None, "one request is still in flight");
        tokio::time::advance(Duration::from_secs(2)).await;
        slot.end();
        assert_eq!(
            slot.idle_deadline(timeout),
            Some(accepted + Duration::from_secs(5) + timeout)
        );
    }
}
