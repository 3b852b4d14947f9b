//! Submission limits, so that a stolen password cannot turn the server into a spam cannon:
//! messages per hour per authenticated user (a sliding window), recipients per message for
//! authenticated users, and a cap on the queue's length.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postern_smtp_session::Reply;

const HOUR: Duration = Duration::from_secs(3600);

/// Messages accepted per user in the last hour.
#[derive(Default)]
pub(crate) struct Limits {
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limits {
    /// At MAIL: the refusal when `user` has used up this hour's messages.
    pub(crate) fn check_hourly(&self, user: &str, limit: u32) -> Option<Reply> {
        if limit == 0 {
            return None;
        }
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let q = sent.entry(user.to_ascii_lowercase()).or_default();
        while q.front().is_some_and(|t| t.elapsed() >= HOUR) {
            q.pop_front();
        }
        if q.len() < limit as usize {
            return None;
        }
        let wait = q.front().map_or(HOUR, |t| HOUR.saturating_sub(t.elapsed()));
        Some(Reply::new(
            450,
            (4, 7, 1),
            format!(
                "Sending limit reached: {limit} messages per hour for {user}; try again in {} minutes",
                wait.as_secs().div_ceil(60).max(1)
            ),
        ))
    }

    /// After a message from `user` was queued.
    pub(crate) fn record(&self, user: &str) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        if sent.len() > 100_000 {
            sent.retain(|_, q| q.back().is_some_and(|t| t.elapsed() < HOUR));
        }
        sent.entry(user.to_ascii_lowercase())
            .or_default()
            .push_back(Instant::now());
    }
}

/// At RCPT, for an authenticated user who already has `accepted` recipients.
pub(crate) fn check_recipients(accepted: usize, limit: usize) -> Option<Reply> {
    (limit > 0 && accepted >= limit).then(|| {
        Reply::new(
            452,
            (4, 5, 3),
            format!(
                "Too many recipients: at most {limit} per message; send the rest in another message"
            ),
        )
    })
}

/// The refusal when the file system of `dir` (the queue) has less than `need` bytes free
/// for unprivileged users; `None` when there is room or it cannot be told.
pub(crate) fn check_disk(dir: &std::path::Path, need: u64) -> Option<Reply> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()));
    (free < need).then(|| {
        Reply::new(
            452,
            (4, 3, 1),
            "Insufficient system storage, try again later",
        )
    })
}

/// At MAIL: the refusal when the queue holds `len` messages of at most `max`.
pub(crate) fn check_queue(len: usize, max: usize) -> Option<Reply> {
    (max > 0 && len >= max).then(|| Reply::new(452, (4, 3, 1), "Mail queue full, try again later"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_window_per_user() {
        let l = Limits::default();
        for _ in 0..3 {
            assert!(l.check_hourly("Alice@example.org", 3).is_none());
            l.record("alice@example.org");
        }
        let r = l.check_hourly("alice@example.org", 3).unwrap();
        assert_eq!(r.code(), 450);
        assert!(
            r.lines()[0].contains("3 messages per hour"),
            "{:?}",
            r.lines()
        );
        assert!(l.check_hourly("bob@example.org", 3).is_none());
        assert!(
            l.check_hourly("alice@example.org", 0).is_none(),
            "0 = no limit"
        );
        assert_eq!(check_recipients(2, 2).unwrap().code(), 452);
        assert!(check_recipients(1, 2).is_none());
        assert!(check_recipients(5000, 0).is_none());
        assert_eq!(check_queue(10, 10).unwrap().code(), 452);
        assert!(check_queue(9, 10).is_none());
    }

    /// Messages stream to disk now: a queue that cannot hold another message refuses MAIL
    /// with 452 4.3.1 (as Postfix wants 1.5 x message_size_limit free), and spooling stops.
    #[test]
    fn disk_space_for_another_message() {
        let dir = tempfile::tempdir().unwrap();
        let r = check_disk(dir.path(), u64::MAX / 4).unwrap();
        assert_eq!((r.code(), r.enhanced()), (452, Some((4, 3, 1).into())));
        assert!(r.lines()[0].contains("Insufficient system storage"));
        assert!(check_disk(dir.path(), 1 << 20).is_none());
        assert!(
            check_disk(&dir.path().join("missing"), 1).is_none(),
            "unknown: no refusal"
        );
    }
}
