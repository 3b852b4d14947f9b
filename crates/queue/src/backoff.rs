//! Retry timing: exponential backoff with jitter, message lifetime, delay warnings.

use std::time::Duration;

use rand::Rng;

use crate::envelope::{Envelope, Recipient};

/// When to retry, when to give up, when to warn the sender.
///
/// Retries double from `min` up to `max` (Postfix's `minimal_backoff_time` and
/// `maximal_backoff_time`), each with ±10% jitter so that messages failing together do not
/// retry together. A message older than `lifetime` is bounced (`maximal_queue_lifetime`); a
/// sender who asked for delay notices gets one after `delay_warning` (`delay_warning_time`;
/// zero disables them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First retry delay (default 300 s).
    pub min: Duration,
    /// Longest retry delay (default 3600 s).
    pub max: Duration,
    /// How long a message may stay queued (default 5 days).
    pub lifetime: Duration,
    /// Age at which a delay notice is sent (default 4 hours; zero: never).
    pub delay_warning: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(300),
            max: Duration::from_secs(3600),
            lifetime: Duration::from_secs(5 * 24 * 3600),
            delay_warning: Duration::from_secs(4 * 3600),
        }
    }
}

impl Backoff {
    /// The delay after `attempts` failed attempts, without jitter: `min`, `2·min`, `4·min`, …
    /// up to `max`.
    pub fn delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        let cap = self.max.max(self.min);
        self.min.saturating_mul(1 << doublings).min(cap)
    }

    /// When to try again (Unix seconds) after `attempts` failed attempts, counted from `now`:
    /// [`Backoff::delay`] with ±10% jitter, at least one second.
    pub fn next_attempt(&self, attempts: u32, now: i64) -> i64 {
        let base = self.delay(attempts).as_secs_f64();
        let jittered = base * rand::rng().random_range(0.9..=1.1);
        // Delays are at most a few days; the cast cannot overflow for sane configurations and
        // saturates otherwise.
        now.saturating_add((jittered.round() as i64).max(1))
    }

    /// Whether the message has been queued longer than `lifetime` (its pending recipients are
    /// to be bounced).
    pub fn expired(&self, env: &Envelope, now: i64) -> bool {
        age(env, now) >= secs(self.lifetime)
    }

    /// Whether a delay notice is due for this recipient: still pending, not warned yet, the
    /// sender is not `<>` and asked for delay notices, the message is older than
    /// `delay_warning` and not expired.
    pub fn should_warn(&self, env: &Envelope, rcpt: &Recipient, now: i64) -> bool {
        !self.delay_warning.is_zero()
            && env.sender.is_some()
            && rcpt.is_pending()
            && rcpt.notify.delay
            && !rcpt.delay_warned
            && age(env, now) >= secs(self.delay_warning)
            && !self.expired(env, now)
    }
}

fn age(env: &Envelope, now: i64) -> i64 {
    now.saturating_sub(env.arrival)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Notify, RcptStatus};

    #[test]
    fn doubling_sequence() {
        let b = Backoff::default();
        let seq: Vec<u64> = (0..8).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(seq, [300, 300, 600, 1200, 2400, 3600, 3600, 3600]);
        assert_eq!(b.delay(u32::MAX).as_secs(), 3600);
        for attempts in 1..10 {
            let base = b.delay(attempts).as_secs() as i64;
            for _ in 0..100 {
                let wait = b.next_attempt(attempts, 1000) - 1000;
                assert!(
                    wait >= base * 9 / 10 && wait <= base * 11 / 10,
                    "{attempts}: {wait}"
                );
            }
        }
        let zero = Backoff {
            min: Duration::ZERO,
            ..b
        };
        assert_eq!(zero.next_attempt(1, 10), 11);
    }

    #[test]
    fn expiry_and_warnings() {
        let b = Backoff::default();
        let mut env = Envelope::new(Some("s@x".into()), vec![Recipient::new("r@y")]);
        env.arrival = 0;
        let r = env.recipients[0].clone();
        let h4 = 4 * 3600;
        assert!(!b.should_warn(&env, &r, h4 - 1));
        assert!(b.should_warn(&env, &r, h4));
        assert!(!b.expired(&env, 5 * 86400 - 1));
        assert!(b.expired(&env, 5 * 86400));
        assert!(!b.should_warn(&env, &r, 5 * 86400));

        let warned = Recipient {
            delay_warned: true,
            ..r.clone()
        };
        let never = Recipient {
            notify: Notify::NEVER,
            ..r.clone()
        };
        let done = Recipient {
            status: RcptStatus::Delivered,
            ..r.clone()
        };
        for x in [warned, never, done] {
            assert!(!b.should_warn(&env, &x, h4));
        }
        env.sender = None;
        assert!(!b.should_warn(&env, &r, h4));
        env.sender = Some("s@x".into());
        let off = Backoff {
            delay_warning: Duration::ZERO,
            ..b
        };
        assert!(!off.should_warn(&env, &r, h4));
    }
}
