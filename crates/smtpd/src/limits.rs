//! Submission limits, so that a stolen password cannot turn the server into a spam cannon:
//! messages per hour per authenticated user (a sliding window), recipients per message for
//! authenticated users, and a cap on the queue's length.
//!
//! The hourly count lives in this smtpd's memory (`[smtpd] shared_policy = "local"`, and a
//! single node under `auto`), or, on a cluster member, in the shared directory database
//! (`directory`): at MAIL, authd's `sendlimit` map reserves the message for the whole
//! cluster in one transaction, so N fronts cannot send N times the limit. There a message
//! counts from its accepted MAIL (a transaction abandoned later still counts).
//!
//! When the directory cannot answer (authd unreachable, the database down), the front's own
//! count decides: the same window, of what this front queued (it records every message in
//! either mode). A database outage then neither turns into unlimited sending (each front
//! still stops a user at the limit) nor blocks submission for everyone; for the outage
//! only, a user could send up to the limit at each front. (With the database down, new
//! logins fail anyway, as passwords are never cached; the fallback serves sessions logged
//! in before, an authd restarting, and an authd of an older release that answers `PERM`
//! for the unknown map during a rolling upgrade.)

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postern_config::{Config, SharedPolicyStore};
use postern_smtp_session::Reply;
use tracing::warn;

use crate::policy::Lookups;

const HOUR: Duration = Duration::from_secs(3600);

/// Whether the sending counts and greylist live in the directory (`[smtpd] shared_policy`;
/// `auto`: on a cluster member, `[proxy] self` set).
pub(crate) fn in_directory(config: &Config) -> bool {
    match config.smtpd.shared_policy {
        SharedPolicyStore::Local => false,
        SharedPolicyStore::Directory => true,
        SharedPolicyStore::Auto => !config.proxy.self_name.trim().is_empty(),
    }
}

/// Messages accepted per user in the last hour.
#[derive(Default)]
pub(crate) struct Limits {
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// Ask the directory first (a cluster member).
    shared: bool,
}

fn limit_reached(limit: u32, user: &str, wait: Duration) -> Reply {
    Reply::new(
        450,
        (4, 7, 1),
        format!(
            "Sending limit reached: {limit} messages per hour for {user}; try again in {} minutes",
            wait.as_secs().div_ceil(60).max(1)
        ),
    )
}

impl Limits {
    /// Counts in the directory when `shared` (see [`in_directory`]), else here.
    pub(crate) fn new(shared: bool) -> Self {
        Self {
            shared,
            ..Self::default()
        }
    }

    /// At MAIL: the refusal when `user` has used up this hour's messages. In the directory
    /// when shared (a message allowed there is counted there at once), else, or when the
    /// directory cannot answer, by this front's own count.
    pub(crate) async fn check(
        &self,
        lookups: &mut Lookups,
        user: &str,
        limit: u32,
    ) -> Option<Reply> {
        if limit == 0 {
            return None;
        }
        if self.shared {
            let key = format!("{limit} {}", user.to_lowercase());
            match lookups
                .policy_map("sendlimit", &key)
                .await
                .map(|v| parse_sendlimit(&v))
            {
                Ok(Some(None)) => return None,
                Ok(Some(Some(wait))) => return Some(limit_reached(limit, user, wait)),
                Ok(None) => {
                    warn!(
                        user,
                        "sendlimit: unexpected answer from authd; this front's count decides"
                    );
                }
                Err(why) => {
                    warn!(user, reason = %why, "sendlimit: directory unavailable; this front's count decides");
                }
            }
        }
        self.check_hourly(user, limit)
    }

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
        Some(limit_reached(limit, user, wait))
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

/// authd's `sendlimit` answer: `Some(None)` counted (`ok N`), `Some(Some(wait))` full
/// (`full N SECS`), `None` not understood.
fn parse_sendlimit(v: &str) -> Option<Option<Duration>> {
    let mut f = v.split_ascii_whitespace();
    match (f.next()?, f.next()?.parse::<u32>().ok()?, f.next()) {
        ("ok", _, None) => Some(None),
        ("full", _, Some(secs)) => Some(Some(Duration::from_secs(secs.parse().ok()?))),
        _ => None,
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
    (free_bytes(dir)? < need).then(disk_full)
}

/// The free space of the queue's file system as MAIL sees it: `statvfs` at most once per
/// [`DiskGauge::FRESH`] while the space last seen is comfortably above what is needed
/// (twice it), else at every MAIL. So a steady flow of MAILs costs one system call a
/// second, and a disk filling up is looked at every time once it nears the limit. (While a
/// message is being spooled, [`check_disk`] is asked directly.)
pub(crate) struct DiskGauge {
    last: Mutex<Option<(Instant, u64)>>,
    read: fn(&std::path::Path) -> Option<u64>,
}

impl DiskGauge {
    /// How long a reading is used.
    const FRESH: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self {
            last: Mutex::new(None),
            read: free_bytes,
        }
    }

    /// [`check_disk`] through the cached reading.
    pub(crate) fn check(&self, dir: &std::path::Path, need: u64) -> Option<Reply> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let free = match *last {
            Some((at, free)) if at.elapsed() < Self::FRESH && free / 2 >= need => free,
            _ => {
                let free = (self.read)(dir)?;
                *last = Some((Instant::now(), free));
                free
            }
        };
        (free < need).then(disk_full)
    }
}

/// Bytes free for unprivileged users on the file system of `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)]
    Some(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
}

fn disk_full() -> Reply {
    Reply::new(
        452,
        (4, 3, 1),
        "Insufficient system storage, try again later",
    )
}

/// At MAIL: the refusal when the queue holds `len` messages of at most `max`.
pub(crate) fn check_queue(len: usize, max: usize) -> Option<Reply> {
    (max > 0 && len >= max).then(|| Reply::new(452, (4, 3, 1), "Mail queue full, try again later"))
}

/// A fake authd `socketmap` socket for the shared-policy tests (limits, greylist).
#[cfg(test)]
pub(crate) mod fake_socketmap {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use postern_auth_proto::socketmap::{MAX_REQUEST_LEN, NetstringDecoder, Reply, parse_request};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `answer(map, key)` on a socket in `dir`; returns its path and a count of the
    /// requests seen.
    pub(crate) fn serve(
        dir: &std::path::Path,
        answer: impl Fn(&str, &str) -> Reply + Send + Sync + 'static,
    ) -> (PathBuf, Arc<AtomicUsize>) {
        let path = dir.join("socketmap");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let (seen2, answer) = (seen.clone(), Arc::new(answer));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (seen, answer) = (seen2.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut dec = NetstringDecoder::new(MAX_REQUEST_LEN);
                    let mut buf = [0u8; 1024];
                    loop {
                        for body in dec.by_ref() {
                            let req = parse_request(&body.unwrap()).unwrap();
                            seen.fetch_add(1, Ordering::SeqCst);
                            let reply = answer(&req.name, &req.key);
                            if s.write_all(&reply.encode()).await.is_err() {
                                return;
                            }
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => dec.push(&buf[..n]),
                        }
                    }
                });
            }
        });
        (path, seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    use postern_auth_proto::socketmap::Reply as MapReply;

    /// A cluster front asks the directory (the key carries the limit and the lower-cased
    /// user) and follows its answer; a single node never asks.
    #[tokio::test]
    async fn shared_limit_follows_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (path, seen) = fake_socketmap::serve(dir.path(), |map, key| match (map, key) {
            ("sendlimit", "3 alice@example.org") => MapReply::Ok("ok 2".into()),
            ("sendlimit", "3 bob@example.org") => MapReply::Ok("full 3 125".into()),
            _ => MapReply::Perm(format!("unexpected {map} {key}")),
        });
        let mut lookups = crate::policy::Directory::new(path).lookups();
        let l = Limits::new(true);
        assert!(
            l.check(&mut lookups, "Alice@example.org", 3)
                .await
                .is_none()
        );
        let r = l.check(&mut lookups, "bob@example.org", 3).await.unwrap();
        assert_eq!((r.code(), r.enhanced()), (450, Some((4, 7, 1).into())));
        assert!(
            r.lines()[0]
                .contains("3 messages per hour for bob@example.org; try again in 3 minutes"),
            "{:?}",
            r.lines()
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert!(
            l.check(&mut lookups, "bob@example.org", 0).await.is_none(),
            "0: no limit, not asked"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2);

        // Local: the same answers as before, and authd is never asked.
        let local = Limits::new(false);
        for _ in 0..3 {
            assert!(
                local
                    .check(&mut lookups, "bob@example.org", 3)
                    .await
                    .is_none()
            );
            local.record("bob@example.org");
        }
        assert!(
            local
                .check(&mut lookups, "bob@example.org", 3)
                .await
                .is_some()
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }

    /// The directory fails (TEMP, then authd gone): this front's own count decides, so an
    /// outage is neither unlimited sending nor a refusal for everyone.
    #[tokio::test]
    async fn directory_failure_falls_back_to_this_fronts_count() {
        let dir = tempfile::tempdir().unwrap();
        let (path, seen) =
            fake_socketmap::serve(dir.path(), |_, _| MapReply::Temp("database down".into()));
        let mut lookups = crate::policy::Directory::new(path.clone()).lookups();
        let l = Limits::new(true);
        for _ in 0..2 {
            assert!(
                l.check(&mut lookups, "carol@example.org", 2)
                    .await
                    .is_none(),
                "allowed while under the limit"
            );
            l.record("carol@example.org");
        }
        let r = l.check(&mut lookups, "carol@example.org", 2).await;
        assert_eq!(
            r.map(|r| r.code()),
            Some(450),
            "the local count still stops her"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        // authd unreachable: the same.
        let mut gone = crate::policy::Directory::new(dir.path().join("no-such-socket")).lookups();
        assert_eq!(
            l.check(&mut gone, "carol@example.org", 2)
                .await
                .map(|r| r.code()),
            Some(450)
        );
        assert!(l.check(&mut gone, "dave@example.org", 2).await.is_none());
        // Nonsense from authd is not obeyed either way.
        assert_eq!(parse_sendlimit("ok 1"), Some(None));
        assert_eq!(
            parse_sendlimit("full 5 60"),
            Some(Some(Duration::from_secs(60)))
        );
        for bad in ["", "ok", "full 5", "full x 60", "ok 1 2", "maybe 1"] {
            assert_eq!(parse_sendlimit(bad), None, "{bad:?}");
        }
    }

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

    /// MAIL's gauge reads the free space once per second while it is well above the need,
    /// and at every MAIL once it is not (so a filling disk is noticed at once).
    #[test]
    fn disk_gauge_reads_seldom_while_there_is_room() {
        use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
        static FREE: AtomicU64 = AtomicU64::new(100 << 20);
        static READS: AtomicUsize = AtomicUsize::new(0);
        let g = DiskGauge {
            last: Mutex::new(None),
            read: |_| {
                READS.fetch_add(1, Ordering::SeqCst);
                Some(FREE.load(Ordering::SeqCst))
            },
        };
        let dir = std::path::Path::new("/");
        for _ in 0..100 {
            assert!(g.check(dir, 10 << 20).is_none());
        }
        assert_eq!(READS.load(Ordering::SeqCst), 1, "one reading a second");
        // Less than twice the need left: every MAIL looks again, and sees the disk fill.
        FREE.store(15 << 20, Ordering::SeqCst);
        *g.last.lock().unwrap() = Some((Instant::now(), 15 << 20));
        assert!(g.check(dir, 10 << 20).is_none());
        assert_eq!(READS.load(Ordering::SeqCst), 2);
        FREE.store(5 << 20, Ordering::SeqCst);
        assert_eq!(g.check(dir, 10 << 20).unwrap().code(), 452);
        assert_eq!(READS.load(Ordering::SeqCst), 3);
        // An old reading is not used, however roomy.
        FREE.store(1 << 40, Ordering::SeqCst);
        *g.last.lock().unwrap() = Some((Instant::now() - DiskGauge::FRESH, 1 << 40));
        assert!(g.check(dir, 10 << 20).is_none());
        assert_eq!(READS.load(Ordering::SeqCst), 4);
    }
}
