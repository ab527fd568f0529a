//! The decisions of issuance, apart from I/O: when a certificate is renewed, how long a failing
//! name waits, and whether the CA's rate limits allow another order now.

use std::time::Duration;

/// The CA's limits we stay under, and our own backoff. The defaults are Let's Encrypt's:
/// 5 failed validations per host name per hour, 300 new orders per account per 3 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub failed_validations_per_name: u32,
    pub failed_validations_window: Duration,
    pub orders_per_account: u32,
    pub orders_window: Duration,
    /// The wait after the first failure; it doubles with every failure in a row.
    pub backoff_base: Duration,
    /// The longest wait between two attempts.
    pub backoff_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            failed_validations_per_name: 5,
            failed_validations_window: Duration::from_secs(3600),
            orders_per_account: 300,
            orders_window: Duration::from_secs(3 * 3600),
            backoff_base: Duration::from_secs(60),
            backoff_max: Duration::from_secs(6 * 3600),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at two thirds of its
/// lifetime, which leaves a third (a month of Let's Encrypt's 90 days) to retry in.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    let lifetime = not_after.saturating_sub(not_before).max(0);
    not_before.saturating_add(lifetime / 3 * 2 + lifetime % 3 * 2 / 3)
}

/// When the next attempt may start after `failures` failures in a row (at least 1), the latest
/// at `now`: `backoff_base` doubled per earlier failure, at most `backoff_max`.
pub fn next_attempt_after_failure(now: i64, failures: u32, limits: &Limits) -> i64 {
    let doublings = failures.saturating_sub(1).min(30);
    let wait = limits
        .backoff_base
        .saturating_mul(1u32 << doublings)
        .min(limits.backoff_max);
    now.saturating_add(ms(wait))
}

/// What the gate says about starting an order now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// Not before this time (Unix milliseconds), and why.
    Wait {
        until: i64,
        reason: String,
    },
}

/// The orders and failures seen in the limits' windows (see `db::OrderCounts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recent {
    pub account_orders: u32,
    pub oldest_account_order: Option<i64>,
    pub name_failed_validations: u32,
    pub oldest_name_failure: Option<i64>,
}

/// Whether an order for a name may start at `now`, given the name's backoff (`next_attempt_at`)
/// and the recent orders: the latest of the three waits wins.
pub fn gate(now: i64, next_attempt_at: i64, recent: Recent, limits: &Limits) -> Gate {
    let mut wait: Option<(i64, String)> = None;
    let mut consider = |until: i64, reason: String| {
        if until > now && wait.as_ref().is_none_or(|(t, _)| until > *t) {
            wait = Some((until, reason));
        }
    };
    consider(next_attempt_at, "backing off after failed attempts".into());
    if recent.name_failed_validations >= limits.failed_validations_per_name {
        let oldest = recent.oldest_name_failure.unwrap_or(now);
        consider(
            oldest.saturating_add(ms(limits.failed_validations_window)),
            format!(
                "{} failed validations of this name within {} minutes (the CA allows {})",
                recent.name_failed_validations,
                limits.failed_validations_window.as_secs() / 60,
                limits.failed_validations_per_name
            ),
        );
    }
    if recent.account_orders >= limits.orders_per_account {
        let oldest = recent.oldest_account_order.unwrap_or(now);
        consider(
            oldest.saturating_add(ms(limits.orders_window)),
            format!(
                "{} new orders within {} hours (the CA allows {} per account)",
                recent.account_orders,
                limits.orders_window.as_secs() / 3600,
                limits.orders_per_account
            ),
        );
    }
    match wait {
        None => Gate::Go,
        Some((until, reason)) => Gate::Wait { until, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime() {
        assert_eq!(renew_at(0, 90 * 24 * H), 60 * 24 * H);
        assert_eq!(renew_at(1_000, 1_000 + 30_000), 21_000);
        // A lifetime not divisible by three still lands within a millisecond of two thirds.
        assert_eq!(renew_at(0, 10), 6);
        assert_eq!(renew_at(0, 11), 7);
        // A backwards validity renews at once rather than never.
        assert_eq!(renew_at(500, 100), 500);
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_the_maximum() {
        let limits = Limits {
            backoff_base: Duration::from_secs(60),
            backoff_max: Duration::from_secs(3600),
            ..Limits::default()
        };
        assert_eq!(next_attempt_after_failure(0, 1, &limits), 60_000);
        assert_eq!(next_attempt_after_failure(0, 2, &limits), 120_000);
        assert_eq!(next_attempt_after_failure(0, 4, &limits), 480_000);
        assert_eq!(next_attempt_after_failure(0, 7, &limits), H);
        assert_eq!(next_attempt_after_failure(0, u32::MAX, &limits), H);
    }

    #[test]
    fn the_gate_opens_when_nothing_holds_it() {
        assert_eq!(gate(1_000, 0, Recent::default(), &Limits::default()), Gate::Go);
        assert_eq!(gate(1_000, 1_000, Recent::default(), &Limits::default()), Gate::Go);
    }

    #[test]
    fn the_gate_waits_for_the_backoff() {
        let g = gate(1_000, 5_000, Recent::default(), &Limits::default());
        assert!(matches!(g, Gate::Wait { until: 5_000, .. }), "{g:?}");
    }

    #[test]
    fn five_failed_validations_in_an_hour_close_the_name_until_the_oldest_leaves_the_window() {
        let limits = Limits::default();
        let recent = Recent {
            name_failed_validations: 4,
            oldest_name_failure: Some(10 * H),
            ..Recent::default()
        };
        assert_eq!(gate(10 * H + 1, 0, recent, &limits), Gate::Go);
        let recent = Recent {
            name_failed_validations: 5,
            ..recent
        };
        match gate(10 * H + 1, 0, recent, &limits) {
            Gate::Wait { until, reason } => {
                assert_eq!(until, 11 * H);
                assert!(reason.contains("5 failed validations"), "{reason}");
            }
            Gate::Go => panic!("five failures must close the gate"),
        }
    }

    #[test]
    fn three_hundred_orders_in_three_hours_close_the_account() {
        let recent = Recent {
            account_orders: 300,
            oldest_account_order: Some(H),
            ..Recent::default()
        };
        match gate(2 * H, 0, recent, &Limits::default()) {
            Gate::Wait { until, reason } => {
                assert_eq!(until, 4 * H);
                assert!(reason.contains("300 new orders"), "{reason}");
            }
            Gate::Go => panic!("300 orders must close the gate"),
        }
    }

    #[test]
    fn the_latest_wait_wins() {
        let recent = Recent {
            account_orders: 300,
            oldest_account_order: Some(0),
            ..Recent::default()
        };
        let g = gate(H, 10 * H, recent, &Limits::default());
        assert!(matches!(g, Gate::Wait { until, .. } if until == 10 * H), "{g:?}");
    }
}
