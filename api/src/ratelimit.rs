//! Slowing down password guessing without locking real users out.
//!
//! Failures are counted per (account, client address) pair, in the database (a restart or
//! another api process sees the same counts). After `free_attempts` failures of a pair, each
//! further attempt of that pair must wait: 2 s, 4 s, 8 s … at most 15 minutes; a success clears
//! the pair, and a day without failures forgets it. An attempt is counted before its password is
//! checked, so attempts sent at once cannot all slip through before the first of them sets the
//! wait. Someone guessing from one address therefore never delays the account's owner at
//! another address.
//!
//! Credential stuffing (one guess for each of many accounts, from one address) is slowed by a
//! ceiling per address: past `address_ceiling` failures within an hour over all accounts, the
//! address's pairs get no free attempts, so each further account it gets wrong waits at once.
//! A correct password for an account the address has not failed on still passes: the ceiling
//! never refuses a log-in it cannot tell from the owner's.

use db::{Database, DbError, LoginAttempt};
use platform::Timestamp;
use platform::settings::AccountLimits;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The longest a pair waits between attempts.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// The window of the per-address ceiling.
const CEILING_WINDOW: Duration = Duration::from_secs(3600);
/// How long a pair's failures are remembered after its last one.
const MEMORY: Duration = Duration::from_secs(24 * 3600);
/// How often forgotten pairs are deleted (at most; on the next failure after that).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The wait a pair has been given (the attempt was not counted and its password not checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl Throttled {
    /// Whole seconds, rounded up, for `Retry-After` and the message.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }

    pub fn message(&self) -> String {
        let secs = self.retry_after_secs();
        let wait = if secs < 120 {
            format!("{secs} seconds")
        } else {
            format!("{} minutes", secs.div_ceil(60))
        };
        format!("too many failed log-ins for this account from your address; try again in {wait}")
    }
}

/// What identifies a pair: the account (by a hash of its normalized email, so that mistyped
/// emails are not stored) and the client address (empty when the server does not know it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    account: String,
    address: String,
}

impl Pair {
    pub fn new(normalized_email: &str, address: Option<IpAddr>) -> Self {
        use sha2::{Digest, Sha256};
        Self {
            account: hex::encode(Sha256::digest(normalized_email.as_bytes())),
            address: address.map(|a| a.to_string()).unwrap_or_default(),
        }
    }
}

/// The log-in throttle: its policy, applied to counts kept in the database.
pub struct LoginLimiter {
    free_attempts: u32,
    address_ceiling: u32,
    last_prune: AtomicI64,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(&AccountLimits::default())
    }
}

impl LoginLimiter {
    pub fn new(limits: &AccountLimits) -> Self {
        Self {
            free_attempts: limits.login_free_attempts,
            address_ceiling: limits.login_address_ceiling,
            last_prune: AtomicI64::new(0),
        }
    }

    /// How long the pair must wait after its `failures`-th counted attempt: nothing within the
    /// free attempts, then 2 s, 4 s, 8 s … up to [`MAX_DELAY`]. An address past the ceiling has
    /// no free attempts.
    pub fn delay_after(&self, failures: u32, over_ceiling: bool) -> Option<Duration> {
        let free = if over_ceiling { 0 } else { self.free_attempts };
        if failures == 0 || failures < free {
            return None;
        }
        let exponent = (failures - free + 1).min(20);
        Some(Duration::from_secs(1u64 << exponent).min(MAX_DELAY))
    }

    /// Whether `failures` from one address within the ceiling's window pass the ceiling
    /// (0 turns the ceiling off).
    pub fn over_ceiling(&self, failures: u64) -> bool {
        self.address_ceiling > 0 && failures >= u64::from(self.address_ceiling)
    }

    /// Counts an attempt of the pair before its password is checked, or refuses it while the
    /// pair must wait.
    pub async fn begin(&self, db: &Database, pair: &Pair) -> Result<Result<(), Throttled>, DbError> {
        let now = Timestamp::now().millis();
        self.prune(db, now).await;
        let recent = if pair.address.is_empty() {
            0
        } else {
            db.login_failures_from(&pair.address, now - millis(CEILING_WINDOW))
                .await?
        };
        let over = self.over_ceiling(recent);
        match db
            .begin_login_attempt(&pair.account, &pair.address, now, now - millis(MEMORY))
            .await?
        {
            LoginAttempt::Blocked { until } => Ok(Err(Throttled {
                retry_after: Duration::from_millis(u64::try_from(until - now).unwrap_or(0)),
            })),
            LoginAttempt::Counted { failures } => {
                if let Some(delay) = self.delay_after(failures, over) {
                    if over && failures == 1 {
                        tracing::warn!(
                            address = %pair.address,
                            "log-ins from this address failed {recent} times within an hour; it gets no free attempts"
                        );
                    }
                    db.block_login(&pair.account, &pair.address, now + millis(delay))
                        .await?;
                }
                Ok(Ok(()))
            }
        }
    }

    /// The password was right: the pair starts over.
    pub async fn succeeded(&self, db: &Database, pair: &Pair) -> Result<(), DbError> {
        db.clear_login_failures(&pair.account, &pair.address).await
    }

    /// Deletes forgotten pairs, at most once every [`PRUNE_EVERY`] per process.
    async fn prune(&self, db: &Database, now: i64) {
        let last = self.last_prune.load(Ordering::Relaxed);
        if now - last < millis(PRUNE_EVERY)
            || self
                .last_prune
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        match db.prune_login_failures(now - millis(MEMORY), now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!("forgot {n} log-in failure records"),
            Err(e) => tracing::warn!("cannot prune log-in failures: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(free: u32, ceiling: u32) -> LoginLimiter {
        LoginLimiter::new(&AccountLimits {
            login_free_attempts: free,
            login_address_ceiling: ceiling,
            ..AccountLimits::default()
        })
    }

    #[test]
    fn delays_start_after_the_free_attempts_and_double_up_to_the_cap() {
        let l = limiter(5, 100);
        for n in 1..5 {
            assert_eq!(l.delay_after(n, false), None, "{n}");
        }
        assert_eq!(l.delay_after(5, false), Some(Duration::from_secs(2)));
        assert_eq!(l.delay_after(6, false), Some(Duration::from_secs(4)));
        assert_eq!(l.delay_after(8, false), Some(Duration::from_secs(16)));
        assert_eq!(l.delay_after(13, false), Some(Duration::from_secs(512)));
        assert_eq!(l.delay_after(14, false), Some(MAX_DELAY));
        assert_eq!(l.delay_after(u32::MAX, false), Some(MAX_DELAY), "no overflow");
    }

    #[test]
    fn past_the_ceiling_there_are_no_free_attempts() {
        let l = limiter(5, 3);
        assert!(!l.over_ceiling(2));
        assert!(l.over_ceiling(3));
        assert_eq!(l.delay_after(1, true), Some(Duration::from_secs(4)));
        assert!(!limiter(5, 0).over_ceiling(1_000_000), "0 turns it off");
    }

    #[test]
    fn pairs_hash_the_account_and_keep_the_address() {
        let a = Pair::new("ann@example.com", Some("203.0.113.9".parse().unwrap()));
        assert_eq!(a.account.len(), 64);
        assert!(!a.account.contains("ann"));
        assert_eq!(a.address, "203.0.113.9");
        assert_eq!(Pair::new("ann@example.com", None).address, "");
        assert_ne!(a, Pair::new("ann@example.com", Some("203.0.113.10".parse().unwrap())));
    }

    #[test]
    fn messages_say_how_long() {
        let t = Throttled {
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(t.retry_after_secs(), 2);
        assert!(t.message().ends_with("try again in 2 seconds"), "{}", t.message());
        let t = Throttled { retry_after: MAX_DELAY };
        assert!(t.message().ends_with("try again in 15 minutes"), "{}", t.message());
    }
}
