//! Slowing down password guessing: failed log-ins are counted per account and per client
//! address in a sliding window; past the limit, log-in is refused until the window moves on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed attempts on one account within the window.
const PER_ACCOUNT: usize = 10;
/// Failed attempts from one address within the window (over any accounts).
const PER_ADDRESS: usize = 50;

/// What is counted: an account (by normalized email) or a client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Account(String),
    Address(String),
}

impl Key {
    fn limit(&self) -> usize {
        match self {
            Key::Account(_) => PER_ACCOUNT,
            Key::Address(_) => PER_ADDRESS,
        }
    }
}

#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<Key, Vec<Instant>>>,
}

impl LoginLimiter {
    /// `Err(wait)` when any key is over its limit: the time until its oldest failure leaves the
    /// window.
    pub fn check(&self, keys: &[Key]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("limiter lock");
        let mut wait = None::<Duration>;
        for key in keys {
            let Some(times) = failures.get_mut(key) else { continue };
            times.retain(|t| now.duration_since(*t) < WINDOW);
            if times.len() >= key.limit() {
                let until = WINDOW.saturating_sub(now.duration_since(times[0]));
                wait = Some(wait.map_or(until, |w| w.max(until)));
            }
        }
        match wait {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }

    pub fn failed(&self, keys: &[Key]) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("limiter lock");
        // Bound memory under a flood of distinct keys: forget windows that have passed.
        if failures.len() > 100_000 {
            failures.retain(|_, times| times.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for key in keys {
            failures.entry(key.clone()).or_default().push(now);
        }
    }

    /// A successful log-in clears the account's failures (not the address's).
    pub fn succeeded(&self, account: &Key) {
        self.failures.lock().expect("limiter lock").remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_lock_after_repeated_failures() {
        let limiter = LoginLimiter::default();
        let account = Key::Account("ann@example.com".into());
        let address = Key::Address("10.0.0.1".into());
        let keys = [account.clone(), address.clone()];
        for _ in 0..PER_ACCOUNT {
            assert!(limiter.check(&keys).is_ok());
            limiter.failed(&keys);
        }
        let wait = limiter.check(&keys).unwrap_err();
        assert!(wait > Duration::from_secs(14 * 60) && wait <= WINDOW);
        assert!(
            limiter
                .check(&[Key::Account("bob@example.com".into()), address.clone()])
                .is_ok()
        );
        limiter.succeeded(&account);
        assert!(limiter.check(&keys).is_ok());
    }

    #[test]
    fn addresses_lock_across_accounts() {
        let limiter = LoginLimiter::default();
        let address = Key::Address("10.0.0.2".into());
        for i in 0..PER_ADDRESS {
            limiter.failed(&[Key::Account(format!("u{i}@example.com")), address.clone()]);
        }
        assert!(
            limiter
                .check(&[Key::Account("new@example.com".into()), address])
                .is_err()
        );
    }
}
