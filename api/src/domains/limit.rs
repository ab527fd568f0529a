//! A per-account budget of DNS checks: each Verify costs four queries to the operator's
//! resolver, so one tenant pressing it in a loop must not turn the platform into a DNS pump.
//! Kept in the process (several api processes each allow the budget): a bound, not an account.

use platform::UserId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Checks one account may run per window.
pub const MAX_CHECKS: u32 = 30;
pub const WINDOW: Duration = Duration::from_secs(600);
/// Accounts remembered before expired windows are swept.
const SWEEP_AT: usize = 10_000;

/// Fixed windows of [`WINDOW`] per account, [`MAX_CHECKS`] checks each.
#[derive(Default)]
pub struct CheckLimiter {
    windows: Mutex<HashMap<UserId, (Instant, u32)>>,
}

impl CheckLimiter {
    /// Takes one check from `account`'s budget at `now`; when it is spent, how long until the
    /// window ends.
    pub fn take(&self, account: &UserId, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
        }
        let (start, used) = windows.entry(account.clone()).or_insert((now, 0));
        let elapsed = now.saturating_duration_since(*start);
        if elapsed >= WINDOW {
            (*start, *used) = (now, 0);
        }
        if *used >= MAX_CHECKS {
            return Err(WINDOW - now.saturating_duration_since(*start));
        }
        *used += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_account_has_its_own_budget_per_window() {
        let limiter = CheckLimiter::default();
        let (ann, bob) = (UserId::generate(), UserId::generate());
        let t0 = Instant::now();
        for _ in 0..MAX_CHECKS {
            assert_eq!(limiter.take(&ann, t0), Ok(()));
        }
        let later = t0 + Duration::from_secs(60);
        assert_eq!(limiter.take(&ann, later), Err(WINDOW - Duration::from_secs(60)));
        assert_eq!(limiter.take(&bob, later), Ok(()), "another account is not held up");
        assert_eq!(limiter.take(&ann, t0 + WINDOW), Ok(()), "a new window, a new budget");
    }
}
