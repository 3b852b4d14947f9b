//! Queue ids: unique, sortable by time, safe as file names.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A message's queue id: 20 lowercase hex digits, `MMMMMMMMMMMMMMCCCCRR`, where `M` is the
/// creation time in microseconds since the Unix epoch (14 digits), `C` a counter that keeps
/// ids from one spool strictly increasing, and `R` a random byte.
///
/// Ids compare (and their strings sort) in creation order. [`QueueId::default`] is the
/// all-zero id, used for an envelope that has not been committed yet.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId {
    micros: u64,
    counter: u16,
    random: u8,
}

/// The largest time that fits in 14 hex digits.
const MAX_MICROS: u64 = (1 << 56) - 1;

impl QueueId {
    /// Length of the string form.
    pub const LEN: usize = 20;

    /// Creation time, in seconds since the Unix epoch.
    pub fn unix_secs(&self) -> i64 {
        i64::try_from(self.micros / 1_000_000).unwrap_or(i64::MAX)
    }

    /// The greatest possible id (a bound for range queries).
    pub(crate) fn max() -> Self {
        Self {
            micros: MAX_MICROS,
            counter: u16::MAX,
            random: u8::MAX,
        }
    }

    /// Whether this is the unassigned all-zero id.
    pub fn is_unassigned(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:014x}{:04x}{:02x}",
            self.micros, self.counter, self.random
        )
    }
}

/// Why a string is not a [`QueueId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a queue id (want 20 lowercase hex digits)")]
pub struct ParseIdError;

impl FromStr for QueueId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if s.len() != Self::LEN || !s.as_bytes().iter().all(lower_hex) {
            return Err(ParseIdError);
        }
        let num =
            |r: std::ops::Range<usize>| u64::from_str_radix(&s[r], 16).map_err(|_| ParseIdError);
        Ok(Self {
            micros: num(0..14)?,
            counter: u16::try_from(num(14..18)?).map_err(|_| ParseIdError)?,
            random: u8::try_from(num(18..20)?).map_err(|_| ParseIdError)?,
        })
    }
}

impl TryFrom<String> for QueueId {
    type Error = ParseIdError;

    fn try_from(s: String) -> Result<Self, ParseIdError> {
        s.parse()
    }
}

impl From<QueueId> for String {
    fn from(id: QueueId) -> Self {
        id.to_string()
    }
}

/// Hands out strictly increasing ids, even when the clock stands still or goes back.
#[derive(Debug, Default)]
pub(crate) struct IdGen {
    last: Mutex<(u64, u16)>,
}

impl IdGen {
    /// Makes sure every later id is greater than `id` (called with the ids found at open).
    pub(crate) fn observe(&self, id: QueueId) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if (id.micros, id.counter) > *last {
            *last = (id.micros, id.counter);
        }
    }

    /// The next id.
    pub(crate) fn next(&self) -> QueueId {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(MAX_MICROS))
            .unwrap_or(0)
            .min(MAX_MICROS);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = if now > last.0 {
            (now, 0)
        } else if last.1 < u16::MAX {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, 0)
        };
        QueueId {
            micros: last.0,
            counter: last.1,
            random: rand::random(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let id = QueueId {
            micros: 0x0006_1234_5678_9abc,
            counter: 0x0102,
            random: 0xfe,
        };
        let s = id.to_string();
        assert_eq!(s, "06123456789abc0102fe");
        assert_eq!(s.len(), QueueId::LEN);
        assert_eq!(s.parse::<QueueId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<QueueId>(&json).unwrap(), id);
    }

    #[test]
    fn rejects_bad_strings() {
        for s in [
            "",
            "0123",
            "ABCDEF0123456789abcd",
            "0123456789abcdef012g",
            "../../etc/passwd0000",
        ] {
            assert!(s.parse::<QueueId>().is_err(), "{s}");
        }
    }

    #[test]
    fn strictly_increasing() {
        let g = IdGen::default();
        g.observe(QueueId {
            micros: MAX_MICROS - 10,
            counter: 5,
            random: 0,
        });
        let mut prev = g.next();
        for _ in 0..10_000 {
            let id = g.next();
            assert!(id > prev);
            assert!(id.to_string() > prev.to_string());
            prev = id;
        }
    }
}
