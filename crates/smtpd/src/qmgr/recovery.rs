//! Quick recovery, as Postfix does it: a destination that could not be reached is not
//! left to the minimum backoff once it works again.
//!
//! - [`Refusals`]: an LMTP server (the local delivery agent, or an `lmtp:` transport) that
//!   refused the connection (`ECONNREFUSED`, or `ENOENT` for its Unix socket: typically the
//!   agent is being restarted) is tried again within seconds: after as long as it has been
//!   refusing, at least [`QUICK_MIN`] and at most [`QUICK_MAX`] (1, 2, 4, 8, 16, 30, 30 … s
//!   after the first refusal). The delay is per server, not per message, so a broken one
//!   costs one refused connection per waiting message every 30 s, never a spin; and only
//!   for [`QUICK_WINDOW`]: a server down longer than that is left to the usual backoff
//!   (a large queue is not read every 30 s through a long outage), and its mail moves
//!   forward with the first delivery once it is back (below).
//! - [`Waiting`]: messages deferred because a destination could not be reached (no
//!   connection, or the transaction broke) are remembered by destination; the first
//!   successful delivery there makes them due at once ("destination is back"). A recipient
//!   the server itself deferred (`452` mailbox full, greylisting) is not remembered: other
//!   messages getting through says nothing about it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postern_queue::QueueId;

/// The shortest wait before retrying an LMTP server that refused the connection.
pub(crate) const QUICK_MIN: Duration = Duration::from_secs(1);
/// The longest wait before retrying an LMTP server that keeps refusing.
pub(crate) const QUICK_MAX: Duration = Duration::from_secs(30);
/// How long a refusing server gets quick retries; after that, the usual backoff.
pub(crate) const QUICK_WINDOW: Duration = Duration::from_secs(600);

/// The wait before the next try of a server that has refused connections for `down_for`;
/// `None` past [`QUICK_WINDOW`].
pub(crate) fn quick_delay(down_for: Duration) -> Option<Duration> {
    (down_for < QUICK_WINDOW).then(|| down_for.clamp(QUICK_MIN, QUICK_MAX))
}

/// Since when each LMTP server (by its target's name) has been refusing connections.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    since: Mutex<HashMap<String, Instant>>,
}

impl Refusals {
    /// `target` refused a connection at `now`: how long to wait before the next try
    /// (`None`: the usual backoff).
    pub(crate) fn refused(&self, target: &str, now: Instant) -> Option<Duration> {
        let mut m = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let since = *m.entry(target.to_owned()).or_insert(now);
        quick_delay(now.saturating_duration_since(since))
    }

    /// `target` took a connection: it is up again.
    pub(crate) fn reached(&self, target: &str) {
        let mut m = self.since.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(target);
    }
}

/// Deferred messages by the destination they wait for (the queue manager's, not shared).
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    by_destination: HashMap<String, HashSet<QueueId>>,
    /// When each destination last took mail ([`Waiting::back`]).
    back_at: HashMap<String, Instant>,
}

/// How long [`Waiting`] remembers when a destination last took mail.
const BACK_MEMORY: Duration = Duration::from_secs(600);

impl Waiting {
    /// Message `id` was deferred because `destination` could not be reached.
    pub(crate) fn wait(&mut self, destination: &str, id: QueueId) {
        self.by_destination
            .entry(destination.to_owned())
            .or_default()
            .insert(id);
    }

    /// A delivery to `destination` succeeded: the messages that waited for it (forgotten
    /// here; one that fails again is remembered again by its attempt).
    pub(crate) fn back(&mut self, destination: &str) -> Vec<QueueId> {
        self.back_at.insert(destination.to_owned(), Instant::now());
        let mut ids: Vec<QueueId> = self
            .by_destination
            .remove(destination)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// True when `destination` took mail at or after `since`: an attempt begun then that
    /// could not reach it met a destination that is back by now.
    pub(crate) fn back_since(&self, destination: &str, since: Instant) -> bool {
        self.back_at.get(destination).is_some_and(|&t| t >= since)
    }

    /// Forgets messages that are no longer queued (bounded by the queue, then), and old
    /// successes.
    pub(crate) fn retain(&mut self, queued: impl Fn(QueueId) -> bool) {
        self.back_at.retain(|_, t| t.elapsed() < BACK_MEMORY);
        for ids in self.by_destination.values_mut() {
            ids.retain(|&id| queued(id));
        }
        self.by_destination.retain(|_, ids| !ids.is_empty());
    }

    /// How many (destination, message) pairs are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_destination.values().map(HashSet::len).sum()
    }
}

/// What one attempt learnt about its destinations, for [`Waiting`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reach {
    /// Destinations that accepted at least one recipient.
    pub(crate) delivered: Vec<String>,
    /// Destinations that could not be reached (or whose transaction broke).
    pub(crate) unreached: Vec<String>,
}

impl Reach {
    pub(crate) fn delivered(&mut self, destination: String) {
        if !self.delivered.contains(&destination) {
            self.delivered.push(destination);
        }
    }

    pub(crate) fn unreached(&mut self, destination: String) {
        if !self.unreached.contains(&destination) {
            self.unreached.push(destination);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_delays_double_and_are_capped() {
        let r = Refusals::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // First refusal: one second; then as long as it has been down.
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(r.refused("lmtp", at(0)), secs(1));
        assert_eq!(r.refused("lmtp", at(1)), secs(1));
        assert_eq!(r.refused("lmtp", at(2)), secs(2));
        assert_eq!(r.refused("lmtp", at(4)), secs(4));
        assert_eq!(r.refused("lmtp", at(8)), secs(8));
        assert_eq!(r.refused("lmtp", at(16)), secs(16));
        assert_eq!(r.refused("lmtp", at(32)), Some(QUICK_MAX));
        assert_eq!(r.refused("lmtp", at(599)), Some(QUICK_MAX));
        // Down for longer than the window: the usual backoff.
        assert_eq!(r.refused("lmtp", at(600)), None);
        assert_eq!(r.refused("lmtp", at(3600)), None);
        // Many messages refused at once do not push the delay up (per server, not message).
        for _ in 0..500 {
            assert_eq!(r.refused("other", at(100)), Some(QUICK_MIN));
        }
        // Back up: the next refusal starts again at one second.
        r.reached("lmtp");
        assert_eq!(r.refused("lmtp", at(4000)), Some(QUICK_MIN));
    }

    #[test]
    fn a_destination_back_releases_only_its_own_waiting_messages() {
        let mut w = Waiting::default();
        let id = |n: u8| -> QueueId { format!("{:020x}", u64::from(n) << 8).parse().unwrap() };
        let (a, b, c) = (id(1), id(2), id(3));
        w.wait("lmtp:local", a);
        w.wait("lmtp:local", a);
        w.wait("lmtp:local", b);
        w.wait("mx:remote.test", c);
        assert_eq!(w.len(), 3);
        let mut back = w.back("lmtp:local");
        back.sort_unstable();
        let mut want = vec![a, b];
        want.sort_unstable();
        assert_eq!(back, want);
        // Forgotten once released: a second success releases nothing.
        assert!(w.back("lmtp:local").is_empty());
        assert_eq!(w.back("mx:other.test"), Vec::<QueueId>::new());
        w.wait("mx:remote.test", a);
        w.retain(|id| id != c);
        assert_eq!(w.back("mx:remote.test"), vec![a]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_destination_back_during_an_attempt_is_seen() {
        let mut w = Waiting::default();
        let before = Instant::now();
        assert!(!w.back_since("lmtp:local", before));
        w.back("lmtp:local");
        assert!(w.back_since("lmtp:local", before));
        assert!(!w.back_since("mx:other.test", before));
        let after = Instant::now() + Duration::from_millis(1);
        assert!(!w.back_since("lmtp:local", after));
    }

    #[test]
    fn reach_keeps_each_destination_once() {
        let mut r = Reach::default();
        r.delivered("a".into());
        r.delivered("a".into());
        r.unreached("b".into());
        r.unreached("b".into());
        assert_eq!(r.delivered, ["a"]);
        assert_eq!(r.unreached, ["b"]);
    }
}
