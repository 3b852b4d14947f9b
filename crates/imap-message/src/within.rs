//! The WITHIN search keys (RFC 5032): `OLDER n` and `YOUNGER n`, intervals in seconds.
//!
//! RFC 5032 §2: the server subtracts the interval from its current date and time to get a
//! target time; OLDER matches when the INTERNALDATE "is less recent than or equal to" the
//! target, YOUNGER when it "is more recent than or equal to" it, exactly, to the second.

use imap_codec::imap_types::search::SearchKey;

/// Whether a message with `internal_date` (Unix seconds) matches `key` at `now` (Unix
/// seconds); `None` when `key` is not a WITHIN key.
pub(crate) fn matches(key: &SearchKey<'_>, internal_date: i64, now: i64) -> Option<bool> {
    match key {
        SearchKey::Older(n) => Some(internal_date <= now.saturating_sub(i64::from(n.get()))),
        SearchKey::Younger(n) => Some(internal_date >= now.saturating_sub(i64::from(n.get()))),
        _ => None,
    }
}

/// The server's current time in Unix seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn older(n: u32) -> SearchKey<'static> {
        SearchKey::Older(NonZeroU32::new(n).unwrap())
    }

    fn younger(n: u32) -> SearchKey<'static> {
        SearchKey::Younger(NonZeroU32::new(n).unwrap())
    }

    #[test]
    fn boundaries_are_inclusive_to_the_second() {
        let now = 1_800_000_000;
        // A message exactly `n` seconds old is both OLDER n and YOUNGER n (§2: "or equal").
        assert_eq!(matches(&older(60), now - 60, now), Some(true));
        assert_eq!(matches(&younger(60), now - 60, now), Some(true));
        assert_eq!(matches(&older(60), now - 59, now), Some(false));
        assert_eq!(matches(&younger(60), now - 59, now), Some(true));
        assert_eq!(matches(&older(60), now - 61, now), Some(true));
        assert_eq!(matches(&younger(60), now - 61, now), Some(false));
        // §4's example: YOUNGER 259200 is the last three days.
        assert_eq!(
            matches(&younger(259_200), now - 3 * 86_400, now),
            Some(true)
        );
        assert_eq!(
            matches(&younger(259_200), now - 3 * 86_400 - 1, now),
            Some(false)
        );
        // A date in the future (clock skew) is younger than anything, older than nothing.
        assert_eq!(matches(&younger(1), now + 3600, now), Some(true));
        assert_eq!(matches(&older(1), now + 3600, now), Some(false));
        // The largest interval does not overflow.
        assert_eq!(matches(&older(u32::MAX), 0, now), Some(false));
        assert_eq!(matches(&older(u32::MAX), i64::MIN, now), Some(true));
        assert_eq!(matches(&SearchKey::All, 0, now), None);
        assert!(super::now() > 1_700_000_000);
    }
}
