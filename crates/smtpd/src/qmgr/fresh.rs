//! Messages just committed, kept in memory for their first delivery attempt so that the
//! queue manager need not read back from disk what intake wrote a moment ago (one trip to
//! the blocking pool and an open/read/close per message fewer).
//!
//! Only a copy: the queue file stays the truth. Held messages are not kept (they wait for a
//! release), the memory is bounded ([`BUDGET`] bytes in all) and an entry not taken within
//! [`MAX_AGE`] is dropped; whatever is not here is read from the spool as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postern_queue::QueueId;

/// Bytes kept at most, over all messages.
pub(crate) const BUDGET: usize = 16 << 20;
/// A message larger than this is not kept.
pub(crate) const MAX_ONE: usize = 256 << 10;
/// An entry older than this is dropped at the next insert.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Inner {
    bytes: usize,
    entries: HashMap<QueueId, (Vec<u8>, Instant)>,
}

/// The messages kept; shared by intake (puts) and the queue manager (takes).
#[derive(Default)]
pub(crate) struct Fresh(Mutex<Inner>);

impl Fresh {
    /// Keeps `message` (exactly what the spool holds for `id`) if it fits.
    pub(crate) fn put(&self, id: QueueId, message: Vec<u8>) {
        if message.len() > MAX_ONE {
            return;
        }
        let Ok(mut s) = self.0.lock() else {
            return;
        };
        if s.bytes + message.len() > BUDGET {
            let now = Instant::now();
            let mut freed = 0;
            s.entries.retain(|_, (m, at)| {
                let keep = now.duration_since(*at) < MAX_AGE;
                if !keep {
                    freed += m.len();
                }
                keep
            });
            s.bytes -= freed;
            if s.bytes + message.len() > BUDGET {
                return;
            }
        }
        s.bytes += message.len();
        if let Some((old, _)) = s.entries.insert(id, (message, Instant::now())) {
            s.bytes -= old.len();
        }
    }

    /// The kept copy of `id`, if any (it is forgotten).
    pub(crate) fn take(&self, id: QueueId) -> Option<Vec<u8>> {
        let mut s = self.0.lock().ok()?;
        let (m, _) = s.entries.remove(&id)?;
        s.bytes -= m.len();
        Some(m)
    }

    /// Forgets `id` (deleted from the queue before its first attempt).
    pub(crate) fn forget(&self, id: QueueId) {
        drop(self.take(id));
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.0.lock().map(|s| s.bytes).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> QueueId {
        format!("{:014x}000000", 1_700_000_000_000_000 + n)
            .parse()
            .expect("id")
    }

    #[test]
    fn put_take_forget() {
        let f = Fresh::default();
        f.put(id(1), b"one".to_vec());
        f.put(id(2), b"two!".to_vec());
        assert_eq!(f.bytes(), 7);
        assert_eq!(f.take(id(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(f.take(id(1)), None, "taken once");
        f.forget(id(2));
        assert_eq!(f.take(id(2)), None);
        assert_eq!(f.bytes(), 0);
    }

    #[test]
    fn bounded() {
        let f = Fresh::default();
        f.put(id(0), vec![0; MAX_ONE + 1]);
        assert_eq!(f.bytes(), 0, "too large to keep");
        let n = BUDGET / MAX_ONE;
        for i in 0..(n as u64 + 5) {
            f.put(id(i + 1), vec![0; MAX_ONE]);
        }
        assert!(f.bytes() <= BUDGET);
        assert_eq!(f.take(id(n as u64 + 3)), None, "over budget: not kept");
        assert!(f.take(id(1)).is_some());
    }
}
