//! Spans of time and limits as the config file writes them, checked once at load.
//!
//! A time key keeps its unit in its name and its value is a plain integer
//! (`idle_timeout_secs = 300`, `dns_budget_ms = 2000`). [`Seconds`] and [`Millis`] read
//! exactly those integers and hand out a [`Duration`]. Their `MIN` parameter is the floor a
//! key has always had (a zero idle timeout has always meant one second, not "time out
//! at once"): a smaller value is raised to it when the file is read, so the daemons use the
//! value as it is. A value longer than [`MAX_SPAN`] is refused, with the key in the error:
//! no timeout needs a century, and such values overflowed deadline arithmetic.
//!
//! Counts that must be at least one (connection limits, concurrency) are `NonZero`
//! integers read with [`at_least_one_usize`]/[`at_least_one_u32`]: 0 becomes 1, as it
//! always has.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest span any time key may have: 100 years of 365 days.
pub const MAX_SPAN: Duration = Duration::from_secs(100 * 365 * 86_400);

macro_rules! span_type {
    ($name:ident, $unit:literal, $per_sec:literal, $from:ident) => {
        #[doc = concat!("A span of time written in the config as whole ", $unit, ", never below `MIN`.")]
        ///
        /// Reads the plain integer the key has always taken; see the [module docs](self).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name<const MIN: u64 = 0>(u64);

        impl<const MIN: u64> $name<MIN> {
            #[doc = concat!("The largest value, in ", $unit, " ([`MAX_SPAN`]).")]
            pub const MAX: u64 = MAX_SPAN.as_secs() * $per_sec;

            #[doc = concat!("`n` ", $unit, ", raised to `MIN` and capped at [`Self::MAX`].")]
            pub const fn new(n: u64) -> Self {
                let n = if n < MIN { MIN } else { n };
                Self(if n > Self::MAX { Self::MAX } else { n })
            }

            #[doc = concat!("The value in ", $unit, ", as written (after the floor).")]
            pub const fn get(self) -> u64 {
                self.0
            }

            /// The span.
            pub const fn duration(self) -> Duration {
                Duration::$from(self.0)
            }

            /// True for a zero span (only possible when `MIN` is 0; such keys use 0 for "off").
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }
        }

        impl<const MIN: u64> Default for $name<MIN> {
            /// `MIN` (zero for keys where zero means "off").
            fn default() -> Self {
                Self::new(0)
            }
        }

        impl<const MIN: u64> From<$name<MIN>> for Duration {
            fn from(s: $name<MIN>) -> Duration {
                s.duration()
            }
        }

        impl<const MIN: u64> fmt::Display for $name<MIN> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl<const MIN: u64> Serialize for $name<MIN> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(self.0)
            }
        }

        impl<'de, const MIN: u64> Deserialize<'de> for $name<MIN> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = u64::deserialize(d)?;
                if n > Self::MAX {
                    return Err(serde::de::Error::custom(format!(
                        concat!("{} ", $unit, " is too long: at most {} (100 years)"),
                        n,
                        Self::MAX
                    )));
                }
                Ok(Self::new(n))
            }
        }
    };
}

span_type!(Seconds, "seconds", 1, from_secs);
span_type!(Millis, "milliseconds", 1000, from_millis);

/// `NonZeroUsize` from a config integer: 0 means 1, as it always has.
pub(crate) fn at_least_one_usize<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<NonZeroUsize, D::Error> {
    Ok(NonZeroUsize::new(usize::deserialize(d)?).unwrap_or(NonZeroUsize::MIN))
}

/// `NonZeroU32` from a config integer: 0 means 1, as it always has.
pub(crate) fn at_least_one_u32<'de, D: Deserializer<'de>>(d: D) -> Result<NonZeroU32, D::Error> {
    Ok(NonZeroU32::new(u32::deserialize(d)?).unwrap_or(NonZeroU32::MIN))
}

/// `n` as a `NonZeroUsize` (for defaults); 0 gives 1.
pub(crate) const fn count(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => NonZeroUsize::MIN,
    }
}

/// `n` as a `NonZeroU32` (for defaults); 0 gives 1.
pub(crate) const fn count_u32(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{Config, ConfigError};

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("hostname = \"m.example\"\n{extra}"),
            Path::new("/"),
        )
    }

    #[test]
    fn plain_integers_in_the_keys_unit() {
        let c = parse(concat!(
            "[smtpd]\nidle_timeout_secs = 7\noutbound_connection_cache_secs = 0\n",
            "[authd]\nhash_queue_timeout_ms = 250\nfailure_delay_ms = 0\n",
            "[checks]\ndns_budget_ms = 1500\n",
        ))
        .unwrap();
        assert_eq!(c.smtpd.idle_timeout_secs.duration(), Duration::from_secs(7));
        assert_eq!(c.smtpd.idle_timeout_secs.get(), 7);
        assert!(c.smtpd.outbound_connection_cache_secs.is_zero());
        assert_eq!(
            c.authd.hash_queue_timeout_ms.duration(),
            Duration::from_millis(250)
        );
        assert_eq!(c.authd.failure_delay_ms.duration(), Duration::ZERO);
        assert_eq!(
            Duration::from(c.checks.dns_budget_ms),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse("").unwrap();
        assert_eq!(c.smtpd.idle_timeout_secs.get(), 300);
        assert_eq!(c.smtpd.outbound_final_timeout_secs.get(), 600);
        assert_eq!(c.imapd.idle_timeout_secs.get(), 30 * 60);
        assert_eq!(c.dns.check_timeout_ms.get(), 500);
        assert_eq!(c.checks.greet_pause_ms.get(), 0);
        assert_eq!(c.smtpd.max_connections.get(), 500);
        assert_eq!(c.imapd.max_auth_failures.get(), 3);
        assert_eq!(c.database.max_connections.get(), 8);
    }

    /// Zero (or less than a key's floor) is raised to the floor the daemons have always
    /// applied, so an existing file means what it meant.
    #[test]
    fn values_below_the_floor_are_raised_as_before() {
        let c = parse(concat!(
            "[smtpd]\nidle_timeout_secs = 0\nsession_timeout_secs = 0\n",
            "outbound_connect_timeout_secs = 0\nmax_connections = 0\ndelivery_concurrency = 0\n",
            "min_backoff_secs = 0\n",
            "[imapd]\nidle_timeout_secs = 5\nlogin_timeout_secs = 0\nmax_auth_failures = 0\n",
            "[authd]\nidle_timeout_secs = 0\nhash_queue_timeout_ms = 0\n",
            "[dns]\ntimeout_secs = 0\ncheck_timeout_ms = 20\nattempts = 0\n",
            "[lmtp]\nsession_timeout_secs = 0\nmax_connections = 0\n",
            "[database]\nmax_connections = 0\n",
        ))
        .unwrap();
        let one = Duration::from_secs(1);
        assert_eq!(c.smtpd.idle_timeout_secs.duration(), one);
        assert_eq!(c.smtpd.session_timeout_secs.duration(), one);
        assert_eq!(c.smtpd.outbound_connect_timeout_secs.duration(), one);
        assert_eq!(c.smtpd.max_connections.get(), 1);
        assert_eq!(c.smtpd.delivery_concurrency.get(), 1);
        // No floor: zero stays zero.
        assert!(c.smtpd.min_backoff_secs.is_zero());
        assert_eq!(
            c.imapd.idle_timeout_secs.duration(),
            Duration::from_secs(60)
        );
        assert_eq!(c.imapd.login_timeout_secs.duration(), one);
        assert_eq!(c.imapd.max_auth_failures.get(), 1);
        assert_eq!(c.authd.idle_timeout_secs.duration(), one);
        assert_eq!(
            c.authd.hash_queue_timeout_ms.duration(),
            Duration::from_millis(1)
        );
        assert_eq!(c.dns.timeout_secs.duration(), one);
        assert_eq!(
            c.dns.check_timeout_ms.duration(),
            Duration::from_millis(100)
        );
        assert_eq!(c.dns.attempts.get(), 1);
        assert_eq!(c.lmtp.session_timeout_secs.duration(), one);
        assert_eq!(c.lmtp.max_connections.get(), 1);
        assert_eq!(c.database.max_connections.get(), 1);
    }

    /// A span past 100 years is refused at load, and the error names the key: such
    /// values used to overflow `Instant + Duration` when the first session started.
    #[test]
    fn spans_past_a_century_are_refused_naming_the_key() {
        let e = parse("[lmtp]\nsession_timeout_secs = 9223372036854775807\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("session_timeout_secs"), "{msg}");
        assert!(msg.contains("lmtp"), "{msg}");
        assert!(msg.contains("at most 3153600000"), "{msg}");
        let e = parse("[checks]\ndns_budget_ms = 3153600000001\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("checks.dns_budget_ms"), "{msg}");
        // The ceiling itself is fine.
        let c = parse("[smtpd]\nmax_queue_lifetime_secs = 3153600000\n").unwrap();
        assert_eq!(c.smtpd.max_queue_lifetime_secs.get(), Seconds::<0>::MAX);
        // Negative values were never accepted, and still are not.
        assert!(parse("[smtpd]\nidle_timeout_secs = -1\n").is_err());
        assert!(parse("[smtpd]\nmax_connections = -1\n").is_err());
    }

    #[test]
    fn serializes_back_to_the_same_integers() {
        let c = parse("[smtpd]\nidle_timeout_secs = 42\nmax_connections = 9\n").unwrap();
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("idle_timeout_secs = 42"), "{text}");
        assert!(text.contains("max_connections = 9"), "{text}");
        let again = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(again.smtpd.idle_timeout_secs, c.smtpd.idle_timeout_secs);
    }

    #[test]
    fn new_clamps_into_range() {
        assert_eq!(Seconds::<1>::new(0).get(), 1);
        assert_eq!(Seconds::<0>::new(0).get(), 0);
        assert_eq!(Millis::<100>::new(5).get(), 100);
        assert_eq!(Seconds::<0>::new(u64::MAX).get(), Seconds::<0>::MAX);
        assert_eq!(Millis::<0>::MAX, Seconds::<0>::MAX * 1000);
        assert_eq!(Seconds::<60>::default().get(), 60);
    }
}
