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
//!
//! In the daemon the stamp is not stat'ed on every lookup: a [`StampWatch`] (inotify) says
//! whether it may have changed, and only then is it stat'ed (see `watch.rs` for why that is
//! still "at once").

use std::collections::HashMap;
use std::hash::Hash;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::watch::StampWatch;

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
    /// The watch's generation when `stamp` was last stat'ed.
    seen: Option<u64>,
}

/// A TTL cache invalidated by the directory's change stamp.
pub(crate) struct Cache<K, V> {
    ttl: Duration,
    stamp: PathBuf,
    watch: Option<Arc<StampWatch>>,
    state: Mutex<State<K, V>>,
    /// How many times the stamp was stat'ed.
    #[cfg(test)]
    stats: std::sync::atomic::AtomicU64,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// A cache keeping answers for `ttl` (zero: nothing is kept), invalidated by `stamp`.
    #[cfg(test)]
    pub(crate) fn new(ttl: Duration, stamp: PathBuf) -> Self {
        Self::with_watch(ttl, stamp, None)
    }

    /// [`Cache::new`] that stats the stamp only when `watch` saw it change (`None`: on
    /// every lookup).
    pub(crate) fn with_watch(
        ttl: Duration,
        stamp: PathBuf,
        watch: Option<Arc<StampWatch>>,
    ) -> Self {
        Self {
            ttl,
            stamp,
            watch,
            state: Mutex::new(State {
                stamp: None,
                epoch: 0,
                entries: HashMap::new(),
                seen: None,
            }),
            #[cfg(test)]
            stats: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Brings `s` onto the stamp in force: a changed stamp drops the entries.
    fn refresh(&self, s: &mut State<K, V>) {
        let generation = self.watch.as_ref().and_then(|w| w.generation());
        if generation.is_some() && generation == s.seen {
            return;
        }
        #[cfg(test)]
        self.stats
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The generation is taken before the stat: a change after it bumps it again.
        let now = stamp_id(&self.stamp);
        s.seen = generation;
        if s.stamp != now {
            s.entries.clear();
            s.stamp = now;
            s.epoch += 1;
        }
    }

    /// The cached answer for `key`, or a ticket to store the fetched one with.
    pub(crate) fn get(&self, key: &K) -> Lookup<V> {
        if self.ttl.is_zero() {
            return Lookup::Miss(Ticket(None, u64::MAX));
        }
        let Ok(mut s) = self.state.lock() else {
            return Lookup::Miss(Ticket(None, u64::MAX));
        };
        self.refresh(&mut s);
        if let Some((v, at)) = s.entries.get(key)
            && at.elapsed() < self.ttl
        {
            return Lookup::Hit(v.clone());
        }
        Lookup::Miss(Ticket(s.stamp, s.epoch))
    }

    /// Keeps `value` for `key` if nothing changed since the ticket was handed out.
    pub(crate) fn put(&self, ticket: Ticket, key: K, value: V) {
        if self.ttl.is_zero() || ticket.1 == u64::MAX {
            return;
        }
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        self.refresh(&mut s);
        if s.epoch != ticket.1 || s.stamp != ticket.0 {
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

    /// A request arriving through the event loop, as a session gets it: one byte sent,
    /// awaited until readable and read, then read dry (which clears the readiness, so the
    /// next turn really waits for the next event).
    async fn turn(a: &mut tokio::net::UnixStream, b: &tokio::net::UnixStream) {
        use tokio::io::AsyncWriteExt;
        a.write_all(b"?").await.unwrap();
        let mut buf = [0u8; 8];
        loop {
            b.readable().await.unwrap();
            match b.try_read(&mut buf) {
                Ok(n) => {
                    assert_eq!(n, 1);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let dry = b.try_read(&mut buf).unwrap_err();
        assert_eq!(dry.kind(), std::io::ErrorKind::WouldBlock);
    }

    /// What the daemon sees: a change made before a request was sent is in force when the
    /// event loop hands that request over, and a hit costs no stat.
    #[tokio::test(flavor = "current_thread")]
    async fn a_watched_stamp_is_stated_only_after_a_change() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("directory.stamp");
        bump(&stamp, 1);
        let watch = StampWatch::new(&stamp).map(Arc::new);
        assert!(watch.is_some(), "inotify works here");
        let c = Cache::with_watch(Duration::from_secs(60), stamp.clone(), watch);
        let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
            panic!()
        };
        c.put(t, "a".into(), 1);
        let before = c.stats.load(Relaxed);
        for _ in 0..100 {
            assert_eq!(hit(&c, "a"), Some(1));
        }
        assert_eq!(c.stats.load(Relaxed), before, "hits stat the stamp");
        // Other files beside the stamp (a database, the stamp's temporary) change nothing.
        std::fs::write(dir.path().join("directory.stamp.1"), "x").unwrap();
        std::fs::write(dir.path().join("db"), "x").unwrap();
        let (mut a, b) = tokio::net::UnixStream::pair().unwrap();
        turn(&mut a, &b).await;
        assert_eq!(hit(&c, "a"), Some(1));
        for n in 2..5 {
            // mailctl replaces the stamp, then a request arrives: it is answered fresh.
            bump(&stamp, n);
            turn(&mut a, &b).await;
            assert_eq!(hit(&c, "a"), None, "change {n} not seen");
            let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
                panic!()
            };
            c.put(t, "a".into(), n);
            assert_eq!(hit(&c, "a"), Some(n));
        }
        // Removed, and `touch`ed in place, are changes too.
        std::fs::remove_file(&stamp).unwrap();
        turn(&mut a, &b).await;
        assert_eq!(hit(&c, "a"), None);
        std::fs::write(&stamp, "5").unwrap();
        let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
            panic!()
        };
        c.put(t, "a".into(), 5);
        assert_eq!(hit(&c, "a"), Some(5));
        let f = std::fs::File::options().write(true).open(&stamp).unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        turn(&mut a, &b).await;
        assert_eq!(hit(&c, "a"), None, "touch not seen");
    }
}
