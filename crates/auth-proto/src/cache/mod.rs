//! A short-lived cache of directory answers, emptied at once by the directory's change stamp.
//!
//! Every message asks the same few questions (is this a domain of ours, is this an alias, is
//! this a mailbox, where does this user live). authd keeps its SQL answers here (socketmap and
//! userdb sockets), and smtpd and lmtp-deliver keep authd's answers here too, so that a
//! message whose recipient was seen a moment ago costs no round trip to authd at all. Each
//! answer is kept for a time to live ([`layer_ttl`] of `[authd] cache_ttl_secs`; 0 turns it
//! off). Password checks never come from it.
//!
//! Changes are seen at once when they are made through Postern: every directory write
//! (`mailctl user|alias|domain|sender …`) replaces the directory's change stamp
//! (`<state_dir>/directory.stamp`, `postern_config::DIRECTORY_STAMP`), and a lookup whose
//! stamp differs from the one the cache was filled under empties the cache first. Right after
//! it, a public copy is replaced in the run directory (`<run_dir>/directory.stamp`, 0644):
//! smtpd and lmtp-deliver watch that one when their user cannot read the state directory
//! ([`Cache::for_client_on_first`]); authd always watches the state one, which changes
//! first, so a client re-asking authd on the public change finds authd's cache emptied
//! already. Changes made behind Postern's back (SQL by hand, another node on a shared database) are seen
//! within the TTL.
//!
//! An answer fetched while the stamp changed is not kept: a lookup notes the stamp before
//! it asks, and its answer is stored only if the cache still stands on that stamp. Memory is
//! bounded by [`MAX_ENTRIES`]: when full, the cache starts over. A stamp that cannot be
//! looked at (a permission refused, an I/O error; not its absence) keeps nothing.
//!
//! The stamp is not stat'ed on every lookup: a [`StampWatch`] (inotify) says whether it may
//! have changed, and only then is it stat'ed (see `watch.rs` for why that is "at once").

use std::collections::HashMap;
use std::hash::Hash;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod watch;

pub use watch::StampWatch;

/// Entries kept at most (per cache); a full cache is emptied.
pub const MAX_ENTRIES: usize = 20_000;

/// Keys longer than this are not worth keeping (an address is at most 254 bytes): a client
/// caches no answer for a longer one, so strangers cannot fill memory with long keys.
pub const MAX_KEY_LEN: usize = 320;

/// How long each of the two caches an answer passes through keeps it, from the configured
/// total (`[authd] cache_ttl_secs`): half. An answer smtpd or lmtp-deliver got from authd's
/// cache may already be that old, so no answer anywhere is older than `total` (what
/// `mailctl user move` waits out).
pub fn layer_ttl(total: Duration) -> Duration {
    total / 2
}

/// What identifies one version of the stamp file (it is replaced by rename on each change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StampId {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

/// The stamp as last looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stamp {
    /// There is no stamp file (no change was ever made through Postern).
    Absent,
    Present(StampId),
    /// It could not be looked at: nothing is served or kept until it can.
    Unknown,
}

fn stamp_of(path: &Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(m) => Stamp::Present(StampId {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            len: m.len(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stamp::Absent,
        Err(_) => Stamp::Unknown,
    }
}

/// Handed out on a miss; gives the answer back with the stamp it was asked under.
#[must_use]
#[derive(Debug)]
pub struct Ticket(Stamp, u64);

impl Ticket {
    /// A ticket that stores nothing.
    const VOID: Self = Self(Stamp::Unknown, u64::MAX);
}

/// The answer to [`Cache::get`].
#[derive(Debug)]
pub enum Lookup<V> {
    /// A fresh answer.
    Hit(V),
    /// Not here: ask, then give the answer to [`Cache::put`] with this ticket.
    Miss(Ticket),
}

struct State<K, V> {
    /// The stamp the entries were fetched under.
    stamp: Stamp,
    /// Bumped whenever the entries are dropped, so a ticket from before is refused.
    epoch: u64,
    entries: HashMap<K, (V, Instant)>,
    /// The watch's generation when `stamp` was last stat'ed.
    seen: Option<u64>,
}

/// A TTL cache invalidated by the directory's change stamp.
pub struct Cache<K, V> {
    ttl: Duration,
    stamp: PathBuf,
    watch: Option<Arc<StampWatch>>,
    state: Mutex<State<K, V>>,
    /// How many times the stamp was stat'ed.
    #[cfg(test)]
    stats: std::sync::atomic::AtomicU64,
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("ttl", &self.ttl)
            .field("stamp", &self.stamp)
            .field("watched", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// A cache keeping answers for `ttl` (zero: nothing is kept), invalidated by `stamp`,
    /// which is stat'ed on every lookup.
    pub fn new(ttl: Duration, stamp: PathBuf) -> Self {
        Self::with_watch(ttl, stamp, None)
    }

    /// [`Cache::new`] that stats the stamp only when `watch` saw it change (`None`: on
    /// every lookup).
    pub fn with_watch(ttl: Duration, stamp: PathBuf, watch: Option<Arc<StampWatch>>) -> Self {
        Self {
            ttl,
            stamp,
            watch,
            state: Mutex::new(State {
                stamp: Stamp::Unknown,
                epoch: 0,
                entries: HashMap::new(),
                seen: None,
            }),
            #[cfg(test)]
            stats: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// For a client of authd (smtpd, lmtp-deliver): a cache keeping answers for `ttl`,
    /// watched through [`StampWatch::direct`], so a change is seen by the very next lookup
    /// whatever the event loop does. `Err(why)` when it must not be used: `ttl` is zero, or
    /// the stamp cannot be watched or looked at (its directory unreadable by this user, no
    /// inotify), so a change could go unseen.
    pub fn for_client(ttl: Duration, stamp: PathBuf) -> Result<Self, String> {
        if ttl.is_zero() {
            return Err("cache_ttl_secs is 0".into());
        }
        let watch = StampWatch::direct(&stamp)
            .map_err(|e| format!("cannot watch {}: {e}", stamp.display()))?;
        if stamp_of(&stamp) == Stamp::Unknown {
            return Err(format!("cannot look at {}", stamp.display()));
        }
        Ok(Self::with_watch(ttl, stamp, Some(Arc::new(watch))))
    }

    /// [`Cache::for_client`] on the first of `stamps` this process can watch, in order; the
    /// reasons of all when none can be. smtpd and lmtp-deliver pass the state directory's
    /// stamp (what authd watches), then its public copy in the run directory
    /// (`postern_config::Config::public_directory_stamp`), replaced right after it by every
    /// change: the package's lmtp-deliver runs as `vmail`, which cannot read the state
    /// directory. A public stamp that does not exist yet (the run directory is a tmpfs,
    /// emptied at boot) is fine: its creation is a change.
    pub fn for_client_on_first(
        ttl: Duration,
        stamps: impl IntoIterator<Item = PathBuf>,
    ) -> Result<Self, String> {
        if ttl.is_zero() {
            return Err("cache_ttl_secs is 0".into());
        }
        let mut why = Vec::new();
        for stamp in stamps {
            match Self::for_client(ttl, stamp) {
                Ok(c) => return Ok(c),
                Err(e) => why.push(e),
            }
        }
        if why.is_empty() {
            why.push("no stamp to watch".into());
        }
        Err(why.join("; "))
    }

    /// The stamp file this cache is invalidated by.
    pub fn stamp(&self) -> &Path {
        &self.stamp
    }

    /// Brings `s` onto the stamp in force: a changed stamp drops the entries.
    fn refresh(&self, s: &mut State<K, V>) {
        let generation = self.watch.as_ref().and_then(|w| w.generation());
        if generation.is_some() && generation == s.seen && s.stamp != Stamp::Unknown {
            return;
        }
        #[cfg(test)]
        self.stats
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The generation is taken before the stat: a change after it bumps it again.
        let now = stamp_of(&self.stamp);
        s.seen = generation;
        if s.stamp != now || now == Stamp::Unknown {
            s.entries.clear();
            s.stamp = now;
            s.epoch += 1;
        }
    }

    /// The cached answer for `key`, or a ticket to store the fetched one with.
    pub fn get(&self, key: &K) -> Lookup<V> {
        if self.ttl.is_zero() {
            return Lookup::Miss(Ticket::VOID);
        }
        let Ok(mut s) = self.state.lock() else {
            return Lookup::Miss(Ticket::VOID);
        };
        self.refresh(&mut s);
        if s.stamp == Stamp::Unknown {
            return Lookup::Miss(Ticket::VOID);
        }
        if let Some((v, at)) = s.entries.get(key)
            && at.elapsed() < self.ttl
        {
            return Lookup::Hit(v.clone());
        }
        Lookup::Miss(Ticket(s.stamp, s.epoch))
    }

    /// Keeps `value` for `key` if nothing changed since the ticket was handed out.
    pub fn put(&self, ticket: Ticket, key: K, value: V) {
        if self.ttl.is_zero() || ticket.1 == u64::MAX || ticket.0 == Stamp::Unknown {
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

    /// The answer for `key`: cached, or fetched by `fetch`. A definite answer (`Ok`) is kept;
    /// a temporary failure (`Err`) is handed back and not kept.
    pub async fn through<E>(
        &self,
        key: K,
        fetch: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        let ticket = match self.get(&key) {
            Lookup::Hit(v) => return Ok(v),
            Lookup::Miss(t) => t,
        };
        let answer = fetch.await?;
        self.put(ticket, key, answer.clone());
        Ok(answer)
    }

    /// How many answers are kept now.
    pub fn len(&self) -> usize {
        self.state.lock().map_or(0, |s| s.entries.len())
    }

    /// Whether no answer is kept now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bump(path: &Path, n: u32) {
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

    /// A stamp that cannot be looked at (here: its "directory" is a file, so the stat
    /// fails with ENOTDIR, as it would with EACCES for another user) keeps nothing: an
    /// answer stored before is not served, and none is stored.
    #[test]
    fn an_unreadable_stamp_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("directory.stamp");
        let c = Cache::new(Duration::from_secs(60), stamp.clone());
        let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
            panic!()
        };
        c.put(t, "a".into(), 1);
        assert_eq!(hit(&c, "a"), Some(1));
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "x").unwrap();
        let c = Cache::new(Duration::from_secs(60), blocked.join("directory.stamp"));
        for _ in 0..3 {
            let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
                panic!("served without a stamp")
            };
            c.put(t, "a".into(), 1);
            assert_eq!(hit(&c, "a"), None);
        }
        assert!(c.is_empty());
        // A client refuses to cache at all there, and where the directory is missing.
        assert!(
            Cache::<String, u32>::for_client(Duration::from_secs(60), blocked.join("s")).is_err()
        );
        assert!(
            Cache::<String, u32>::for_client(Duration::from_secs(60), dir.path().join("none/s"))
                .is_err()
        );
        assert!(Cache::<String, u32>::for_client(Duration::ZERO, stamp).is_err());
    }

    /// `through`: a definite answer is kept, a temporary failure is not, and an answer
    /// fetched while the stamp changed is not.
    #[tokio::test(flavor = "current_thread")]
    async fn through_keeps_answers_not_failures() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("directory.stamp");
        let c: Cache<String, Option<u32>> =
            Cache::for_client(Duration::from_secs(60), stamp.clone()).unwrap();
        let asked = std::cell::Cell::new(0);
        // Counts the fetches that really ran (a hit never awaits its fetch).
        let ask = |v: Result<Option<u32>, &'static str>| {
            let asked = &asked;
            async move {
                asked.set(asked.get() + 1);
                v
            }
        };
        // A temporary failure goes back to the caller and is asked again next time.
        assert_eq!(
            c.through("a".into(), ask(Err("db down"))).await,
            Err("db down")
        );
        assert_eq!(c.through("a".into(), ask(Ok(Some(1)))).await, Ok(Some(1)));
        assert_eq!(asked.get(), 2);
        // Found and not found are both kept.
        assert_eq!(c.through("a".into(), ask(Ok(Some(9)))).await, Ok(Some(1)));
        assert_eq!(c.through("b".into(), ask(Ok(None))).await, Ok(None));
        assert_eq!(c.through("b".into(), ask(Ok(Some(9)))).await, Ok(None));
        assert_eq!(asked.get(), 3);
        // A change made while an answer is being fetched: that answer is not kept.
        let fetch = async {
            bump(&stamp, 1);
            Ok::<_, &str>(Some(5))
        };
        assert_eq!(c.through("c".into(), fetch).await, Ok(Some(5)));
        assert_eq!(c.through("c".into(), ask(Ok(Some(6)))).await, Ok(Some(6)));
        // And the change emptied the rest.
        assert_eq!(c.through("a".into(), ask(Ok(None))).await, Ok(None));
        assert_eq!(asked.get(), 5);
    }

    /// A client's cache sees a change at the very next lookup with no event loop at all
    /// (the direct watch reads inotify itself), and stats the stamp only after a change.
    #[test]
    fn a_clients_cache_sees_a_change_at_the_next_lookup() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("directory.stamp");
        let c = Cache::for_client(Duration::from_secs(60), stamp.clone()).unwrap();
        for n in 1..20 {
            let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
                panic!("change {n} not seen")
            };
            c.put(t, "a".into(), n);
            let before = c.stats.load(Relaxed);
            for _ in 0..10 {
                assert_eq!(hit(&c, "a"), Some(n));
            }
            assert_eq!(c.stats.load(Relaxed), before, "hits stat the stamp");
            // Unrelated files in the directory change nothing.
            std::fs::write(dir.path().join("queue.state"), "x").unwrap();
            assert_eq!(hit(&c, "a"), Some(n));
            match n % 3 {
                0 => bump(&stamp, n),
                // Removed, and made anew (what a hand-made stamp does).
                1 if stamp.exists() => std::fs::remove_file(&stamp).unwrap(),
                _ if !stamp.exists() => std::fs::write(&stamp, n.to_string()).unwrap(),
                _ => bump(&stamp, n),
            }
        }
    }

    /// A client that cannot watch the state directory's stamp (here: its "directory" is a
    /// file, ENOTDIR; in the package, EACCES for lmtp-deliver's `vmail` on the `0700` state
    /// directory) watches the public copy in the run directory instead, which may not exist
    /// yet: its creation and every replacement empty the cache at the next lookup. One it
    /// can watch is preferred.
    #[test]
    fn a_client_falls_back_on_the_public_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("state");
        std::fs::write(&blocked, "x").unwrap();
        let state = blocked.join("directory.stamp");
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let public = run.join("directory.stamp");
        let ttl = Duration::from_secs(60);
        let c = Cache::for_client_on_first(ttl, [state.clone(), public.clone()]).unwrap();
        assert_eq!(c.stamp(), public);
        for n in 1..6 {
            let Lookup::Miss(t) = c.get(&"a".to_owned()) else {
                panic!("change {n} not seen")
            };
            c.put(t, "a".into(), n);
            assert_eq!(hit(&c, "a"), Some(n));
            // The state stamp cannot change here; the public one is what mailctl replaces.
            bump(&public, n);
        }
        // Neither can be watched: no cache, and both reasons are told.
        let why = Cache::<String, u32>::for_client_on_first(
            ttl,
            [state.clone(), dir.path().join("none/directory.stamp")],
        )
        .unwrap_err();
        assert!(why.contains("state") && why.contains("none"), "{why}");
        assert!(Cache::<String, u32>::for_client_on_first(ttl, []).is_err());
        assert!(
            Cache::<String, u32>::for_client_on_first(Duration::ZERO, [public.clone()]).is_err()
        );
        // A state directory the client can watch is preferred.
        let readable = dir.path().join("state2");
        std::fs::create_dir(&readable).unwrap();
        let c = Cache::<String, u32>::for_client_on_first(
            ttl,
            [readable.join("directory.stamp"), public],
        )
        .unwrap();
        assert_eq!(c.stamp(), readable.join("directory.stamp"));
    }

    /// Bounded for a client too, and a full cache starts over rather than growing.
    #[test]
    fn a_clients_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::for_client(Duration::from_secs(60), dir.path().join("s")).unwrap();
        for i in 0..(2 * MAX_ENTRIES + 3) {
            let Lookup::Miss(t) = c.get(&i) else { panic!() };
            c.put(t, i, [0u8; 8]);
            assert!(c.len() <= MAX_ENTRIES);
        }
        assert!(matches!(c.get(&(2 * MAX_ENTRIES + 2)), Lookup::Hit(_)));
    }

    #[test]
    fn the_ttl_is_halved_per_layer() {
        assert_eq!(layer_ttl(Duration::from_secs(10)), Duration::from_secs(5));
        assert_eq!(
            layer_ttl(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(layer_ttl(Duration::ZERO), Duration::ZERO);
    }
}
