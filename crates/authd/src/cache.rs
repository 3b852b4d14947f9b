//! A short-lived cache of directory answers for the socketmap and userdb sockets.
//!
//! Every message asks authd the same few questions (is this a domain of ours, is this an
//! alias, is this a mailbox, where does this user live), each one to three SQL queries. The
//! cache keeps each answer for `[authd] cache_ttl_secs` (0 turns it off). Password checks
//! never come from it.
//!
//! Changes are seen at once when they are made through Postern: every directory write
//! (`mailctl user|alias|domain|sender …`) rewrites the directory's change stamp
//! (`<state_dir>/directory.stamp`, see [`postern_directory::Directory::change_stamp`]), and a
//! lookup whose stamp differs from the one the cache was filled under empties the cache
//! first. Changes made behind Postern's back (SQL by hand, another node on a shared
//! database) are seen within the TTL.
//!
//! An answer fetched while the stamp changed is not kept: a lookup notes the stamp before
//! it asks the database, and its answer is stored only if the cache still stands on that
//! stamp. Memory is bounded by [`MAX_ENTRIES`]: when full, the cache starts over.

use std::collections::HashMap;
use std::hash::Hash;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most (per cache); a full cache is emptied.
pub(crate) const MAX_ENTRIES: usize = 20_000;

/// What identifies one version of the stamp file (it is replaced by rename on each change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StampId {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

fn stamp_id(path: &std::path::Path) -> Option<StampId> {
    let m = std::fs::metadata(path).ok()?;
    Some(StampId {
        dev: m.dev(),
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        len: m.len(),
    })
}

/// Handed out on a miss; gives the answer back with the stamp it was asked under.
#[must_use]
pub(crate) struct Ticket(Option<StampId>, u64);

/// The answer to [`Cache::get`].
pub(crate) enum Lookup<V> {
    Hit(V),
    Miss(Ticket),
}

struct State<K, V> {
    /// The stamp the entries were fetched under.
    stamp: Option<StampId>,
    /// Bumped whenever the entries are dropped, so a ticket from before is refused.
    epoch: u64,
    entries: HashMap<K, (V, Instant)>,
}

/// A TTL cache invalidated by the directory's change stamp.
pub(crate) struct Cache<K, V> {
    ttl: Duration,
    stamp: PathBuf,
    state: Mutex<State<K, V>>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// A cache keeping answers for `ttl` (zero: nothing is kept), invalidated by `stamp`.
    pub(crate) fn new(ttl: Duration, stamp: PathBuf) -> Self {
        Self {
            ttl,
            stamp,
            state: Mutex::new(State {
                stamp: None,
                epoch: 0,
                entries: HashMap::new(),
            }),
        }
    }

    /// The cached answer for `key`, or a ticket to store the fetched one with.
    pub(crate) fn get(&self, key: &K) -> Lookup<V> {
        if self.ttl.is_zero() {
            return Lookup::Miss(Ticket(None, u64::MAX));
        }
        let now = stamp_id(&self.stamp);
        let Ok(mut s) = self.state.lock() else {
            return Lookup::Miss(Ticket(None, u64::MAX));
        };
        if s.stamp != now {
            s.entries.clear();
            s.stamp = now;
            s.epoch += 1;
        }
        if let Some((v, at)) = s.entries.get(key)
            && at.elapsed() < self.ttl
        {
            return Lookup::Hit(v.clone());
        }
        Lookup::Miss(Ticket(now, s.epoch))
    }

    /// Keeps `value` for `key` if nothing changed since the ticket was handed out.
    pub(crate) fn put(&self, ticket: Ticket, key: K, value: V) {
        if self.ttl.is_zero() || ticket.1 == u64::MAX {
            return;
        }
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if s.epoch != ticket.1 || s.stamp != ticket.0 || stamp_id(&self.stamp) != ticket.0 {
            return;
        }
        if s.entries.len() >= MAX_ENTRIES {
            s.entries.clear();
        }
        s.entries.insert(key, (value, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bump(path: &std::path::Path, n: u32) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, n.to_string()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn hit(c: &Cache<String, u32>, k: &str) -> Option<u32> {
        match c.get(&k.to_owned()) {
            Lookup::Hit(v) => Some(v),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn keeps_until_the_stamp_changes() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("directory.stamp");
        let c = Cache::new(Duration::from_secs(60), stamp.clone());
        let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
            panic!("empty cache hit")
        };
        c.put(t, "a".into(), 1);
        assert_eq!(hit(&c, "a"), Some(1));
        // The stamp appears (first change ever): the entry is dropped.
        bump(&stamp, 1);
        assert_eq!(hit(&c, "a"), None);
        let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
            panic!()
        };
        c.put(t, "a".into(), 2);
        assert_eq!(hit(&c, "a"), Some(2));
        bump(&stamp, 2);
        assert_eq!(hit(&c, "a"), None);
        // Removing the stamp is a change too.
        let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
            panic!()
        };
        c.put(t, "a".into(), 3);
        std::fs::remove_file(&stamp).unwrap();
        assert_eq!(hit(&c, "a"), None);
    }

    #[test]
    fn an_answer_fetched_across_a_change_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("directory.stamp");
        bump(&stamp, 1);
        let c = Cache::new(Duration::from_secs(60), stamp.clone());
        let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
            panic!()
        };
        // mailctl changes the directory while the lookup is at the database.
        bump(&stamp, 2);
        c.put(t, "a".into(), 1);
        assert_eq!(hit(&c, "a"), None);
        // The same when another lookup noticed the change first.
        let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
            panic!()
        };
        bump(&stamp, 3);
        assert_eq!(hit(&c, "b"), None);
        c.put(t, "a".into(), 1);
        assert_eq!(hit(&c, "a"), None);
    }

    #[test]
    fn expires_and_can_be_off() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("directory.stamp");
        let c = Cache::new(Duration::from_millis(1), stamp.clone());
        let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
            panic!()
        };
        c.put(t, "a".into(), 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(hit(&c, "a"), None);
        let off = Cache::new(Duration::ZERO, stamp);
        let Lookup::Miss(t) = off.get(&"a".to_owned()) else {
            panic!()
        };
        off.put(t, "a".into(), 1);
        assert_eq!(hit(&off, "a"), None);
    }

    #[test]
    fn bounded() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(Duration::from_secs(60), dir.path().join("s"));
        for i in 0..(MAX_ENTRIES + 10) {
            let Lookup::Miss(t) = c.get(&i.to_string()) else {
                panic!()
            };
            c.put(t, i.to_string(), 0);
        }
        assert!(c.state.lock().unwrap().entries.len() <= MAX_ENTRIES);
    }
}
