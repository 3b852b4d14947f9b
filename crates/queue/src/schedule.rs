//! An in-memory index of the queue: what is due when, and fast listing with filters.
//!
//! The queue manager loads it from [`Spool::open`](crate::Spool::open)'s envelopes and keeps
//! it in step with what it saves; the spool stays the truth.

use std::collections::{BTreeSet, HashMap};

use crate::envelope::Envelope;
use crate::id::QueueId;

/// Queued envelopes, indexed by next attempt time and by id.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    by_time: BTreeSet<(i64, QueueId)>,
    by_id: HashMap<QueueId, Envelope>,
}

/// Which messages to list: every given field must match (case-insensitive substrings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// A substring of the sender (`<>` is the empty string).
    pub sender: Option<String>,
    /// A substring of some recipient's address.
    pub recipient: Option<String>,
    /// A substring of some recipient's domain.
    pub domain: Option<String>,
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no messages.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds a message, or replaces the one with the same id; returns the replaced envelope.
    pub fn insert(&mut self, env: Envelope) -> Option<Envelope> {
        let old = self.remove(env.id);
        // Held messages are never due: keep them out of the time index, so finding due
        // work stays cheap however many are held.
        if !env.held {
            self.by_time.insert((env.next_attempt, env.id));
        }
        self.by_id.insert(env.id, env);
        old
    }

    /// Replaces a message already scheduled (after a delivery attempt, hold, release); returns
    /// `false`, changing nothing, if its id is unknown (it was removed meanwhile).
    pub fn update(&mut self, env: Envelope) -> bool {
        if !self.by_id.contains_key(&env.id) {
            return false;
        }
        self.insert(env);
        true
    }

    /// Removes a message.
    pub fn remove(&mut self, id: QueueId) -> Option<Envelope> {
        let old = self.by_id.remove(&id)?;
        self.by_time.remove(&(old.next_attempt, id));
        Some(old)
    }

    /// A message by id.
    pub fn get(&self, id: QueueId) -> Option<&Envelope> {
        self.by_id.get(&id)
    }

    /// The messages due at `now` (next attempt not later than `now`, not held), earliest first.
    pub fn due(&self, now: i64) -> Vec<QueueId> {
        self.due_iter(now).collect()
    }

    /// Like [`Schedule::due`], lazily: a caller that can start only a few deliveries stops
    /// early instead of walking everything that is due.
    pub fn due_iter(&self, now: i64) -> impl Iterator<Item = QueueId> + '_ {
        self.by_time
            .range(..=(now, QueueId::max()))
            .map(|&(_, id)| id)
    }

    /// The earliest next attempt of a message that is not held: when the queue manager should
    /// wake up.
    pub fn next_due(&self) -> Option<i64> {
        self.by_time.first().map(|&(t, _)| t)
    }

    /// Every message, earliest next attempt first.
    pub fn iter(&self) -> impl Iterator<Item = &Envelope> {
        let mut all: Vec<&Envelope> = self.by_id.values().collect();
        all.sort_by_key(|e| (e.next_attempt, e.id));
        all.into_iter()
    }

    /// The messages matching `filter`, oldest (by id) first.
    pub fn list(&self, filter: &Filter) -> Vec<&Envelope> {
        let f = filter.lowercase();
        let mut out: Vec<&Envelope> = self
            .by_id
            .values()
            .filter(|e| f.matches_lowercase(e))
            .collect();
        out.sort_unstable_by_key(|e| e.id);
        out
    }
}

impl FromIterator<Envelope> for Schedule {
    fn from_iter<I: IntoIterator<Item = Envelope>>(iter: I) -> Self {
        let mut s = Self::new();
        for env in iter {
            s.insert(env);
        }
        s
    }
}

impl Filter {
    /// Whether `env` matches.
    pub fn matches(&self, env: &Envelope) -> bool {
        self.lowercase().matches_lowercase(env)
    }

    fn lowercase(&self) -> Self {
        let low = |s: &Option<String>| s.as_ref().map(|s| s.to_lowercase());
        Self {
            sender: low(&self.sender),
            recipient: low(&self.recipient),
            domain: low(&self.domain),
        }
    }

    /// `matches`, with the filter's strings already lowercase.
    fn matches_lowercase(&self, env: &Envelope) -> bool {
        let has = |hay: &str, needle: &str| {
            if needle.is_empty() {
                true
            } else if hay.is_ascii() && needle.is_ascii() {
                hay.as_bytes()
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
            } else {
                hay.to_lowercase().contains(needle)
            }
        };
        self.sender
            .as_deref()
            .is_none_or(|s| has(env.sender_str(), s))
            && self
                .recipient
                .as_deref()
                .is_none_or(|r| env.recipients.iter().any(|x| has(&x.address, r)))
            && self
                .domain
                .as_deref()
                .is_none_or(|d| env.recipients.iter().any(|x| has(x.domain(), d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Recipient;
    use crate::id::IdGen;

    fn env(ids: &IdGen, sender: &str, rcpt: &str, next: i64) -> Envelope {
        let sender = (!sender.is_empty()).then(|| sender.to_string());
        let mut e = Envelope::new(sender, vec![Recipient::new(rcpt)]);
        e.id = ids.next();
        e.next_attempt = next;
        e
    }

    #[test]
    fn due_update_remove() {
        let ids = IdGen::default();
        let (a, b, c) = (
            env(&ids, "a@x", "r@one.org", 10),
            env(&ids, "", "s@two.org", 20),
            env(&ids, "c@x", "t@one.org", 30),
        );
        let mut s: Schedule = [c.clone(), a.clone(), b.clone()].into_iter().collect();
        assert_eq!(s.len(), 3);
        assert_eq!(s.due(9), vec![]);
        assert_eq!(s.due(20), vec![a.id, b.id]);
        assert_eq!(s.next_due(), Some(10));
        assert!(s.update(Envelope {
            next_attempt: 40,
            ..a.clone()
        }));
        assert_eq!(s.due(30), vec![b.id, c.id]);
        assert!(s.update(Envelope {
            held: true,
            ..b.clone()
        }));
        assert_eq!(s.due(100), vec![c.id, a.id]);
        assert_eq!(s.next_due(), Some(30));
        assert_eq!(s.remove(c.id).map(|e| e.id), Some(c.id));
        assert!(!s.update(c.clone()));
        assert_eq!(s.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b.id, a.id]);
        assert!(s.get(c.id).is_none());
        assert_eq!(s.get(a.id).map(|e| e.next_attempt), Some(40));
    }

    #[test]
    fn list_with_filters() {
        let ids = IdGen::default();
        let s: Schedule = (0..100_000)
            .map(|i| {
                env(
                    &ids,
                    &format!("User{i}@Sender.example"),
                    &format!("r{i}@dom{}.ORG", i % 10),
                    i,
                )
            })
            .collect();
        assert_eq!(s.list(&Filter::default()).len(), 100_000);
        let by_domain = s.list(&Filter {
            domain: Some("dom3.org".into()),
            ..Filter::default()
        });
        assert_eq!(by_domain.len(), 10_000);
        assert!(by_domain.windows(2).all(|w| w[0].id < w[1].id));
        let one = s.list(&Filter {
            sender: Some("user4242@".into()),
            recipient: Some("R4242@".into()),
            domain: None,
        });
        assert_eq!(one.len(), 1);
        assert!(
            s.list(&Filter {
                sender: Some("nobody".into()),
                ..Filter::default()
            })
            .is_empty()
        );
        let null = env(&ids, "", "x@y", 0);
        assert!(
            Filter {
                sender: Some(String::new()),
                ..Filter::default()
            }
            .matches(&null)
        );
    }
}
