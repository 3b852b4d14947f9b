//! Greylisting (RFC 6647): the first attempt of a (client network, sender, recipient)
//! triplet is deferred with `450 4.7.1`; a retry after the delay (and within the retry
//! window) passes, and from then on the triplet is allowed while it keeps being seen.
//! The network is the client's /24 (IPv4) or /64 (IPv6), so senders retrying from another
//! address of their pool are not deferred again.
//!
//! The state lives in `<state_dir>/greylist`, a text file (`first last passed key` per
//! line) written whole to a temporary file, fsynced and renamed over the old one: a crash
//! leaves the old or the new file, never half of one. Changes are written by
//! [`Greylist::flush`] (every few seconds and at shutdown), so a restart keeps them.
//!
//! On a cluster member (`[smtpd] shared_policy`, see `limits::in_directory`) the verdict
//! comes from the shared directory instead, through authd's `greylist` socketmap map (key
//! `DELAY WINDOW ALLOW NET|SENDER|RCPT`, answer `pass` or `defer SECS`; the same states and
//! timing, in the database), so a sender retrying at another MX front is not deferred
//! again. When the directory cannot answer, this file decides, as on a single node.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;

/// The timing, in seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) delay: u64,
    pub(crate) window: u64,
    pub(crate) allow: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    first: u64,
    last: u64,
    passed: bool,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    dirty: bool,
}

/// The greylist.
pub(crate) struct Greylist {
    path: PathBuf,
    timing: Timing,
    state: Mutex<State>,
    /// Serialises writers of the file.
    write: Mutex<()>,
    /// Ask the directory first (a cluster member).
    shared: bool,
}

/// The verdict on one triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Deferred; try again in this many seconds.
    Defer(u64),
}

/// The client's network: /24 for IPv4, /64 for IPv6.
pub(crate) fn network(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The triplet's key (addresses lower-cased; `<>` for the null sender).
pub(crate) fn key(ip: IpAddr, sender: Option<&str>, rcpt: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && !c.is_control())
            .collect::<String>()
            .to_lowercase()
    };
    format!(
        "{}|{}|{}",
        network(ip),
        sender.map_or_else(|| "<>".to_owned(), clean),
        clean(rcpt)
    )
}

fn decide(e: Option<&mut Entry>, now: u64, t: Timing) -> (Verdict, Option<Entry>, bool) {
    // Returns the verdict, a new entry to insert (when absent or restarted), and whether
    // something changed that must be written.
    let fresh = Entry {
        first: now,
        last: now,
        passed: false,
    };
    match e {
        None => (Verdict::Defer(t.delay), Some(fresh), true),
        Some(e) if e.passed => {
            if now.saturating_sub(e.last) > t.allow {
                (Verdict::Defer(t.delay), Some(fresh), true)
            } else {
                e.last = now;
                (Verdict::Pass, None, false)
            }
        }
        Some(e) => {
            let age = now.saturating_sub(e.first);
            if age < t.delay {
                e.last = now;
                (Verdict::Defer(t.delay - age), None, false)
            } else if age > t.window {
                (Verdict::Defer(t.delay), Some(fresh), true)
            } else {
                e.passed = true;
                e.last = now;
                (Verdict::Pass, None, true)
            }
        }
    }
}

/// authd's `greylist` answer: `pass` or `defer SECS`.
fn parse_answer(v: &str) -> Option<Verdict> {
    let mut f = v.split_ascii_whitespace();
    match (f.next()?, f.next(), f.next()) {
        ("pass", None, None) => Some(Verdict::Pass),
        ("defer", Some(secs), None) => secs.parse().ok().map(Verdict::Defer),
        _ => None,
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Greylist {
    /// Loads the state file (none yet is an empty list).
    pub(crate) fn open(path: PathBuf, timing: Timing) -> anyhow::Result<Self> {
        let mut entries = HashMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.starts_with('#')) {
                    let mut f = line.splitn(4, ' ');
                    let (Some(first), Some(last), Some(passed), Some(key)) =
                        (f.next(), f.next(), f.next(), f.next())
                    else {
                        continue;
                    };
                    let (Ok(first), Ok(last)) = (first.parse(), last.parse()) else {
                        continue;
                    };
                    entries.insert(
                        key.to_owned(),
                        Entry {
                            first,
                            last,
                            passed: passed == "1",
                        },
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        Ok(Self {
            path,
            timing,
            state: Mutex::new(State {
                entries,
                dirty: false,
            }),
            write: Mutex::new(()),
            shared: false,
        })
    }

    /// Asks the shared directory first when `yes` (a cluster member).
    pub(crate) fn in_directory(mut self, yes: bool) -> Self {
        self.shared = yes;
        self
    }

    /// The verdict on a triplet now: from the directory when shared (this file when it
    /// cannot answer), else from this file.
    pub(crate) async fn verdict(
        &self,
        lookups: &mut crate::policy::Lookups,
        ip: IpAddr,
        sender: Option<&str>,
        rcpt: &str,
    ) -> Verdict {
        if !self.shared {
            return self.check(ip, sender, rcpt);
        }
        let k = key(ip, sender, rcpt);
        let t = self.timing;
        let q = format!("{} {} {} {k}", t.delay, t.window, t.allow);
        match lookups.policy_map("greylist", &q).await {
            Ok(v) => match parse_answer(&v) {
                Some(v) => return v,
                None => {
                    tracing::warn!(answer = %v, "greylist: unexpected answer from authd; the local greylist decides")
                }
            },
            Err(why) => {
                tracing::warn!(reason = %why, "greylist: directory unavailable; the local greylist decides");
            }
        }
        self.check_at(&k, now_secs())
    }

    /// The verdict on a triplet now.
    pub(crate) fn check(&self, ip: IpAddr, sender: Option<&str>, rcpt: &str) -> Verdict {
        self.check_at(&key(ip, sender, rcpt), now_secs())
    }

    fn check_at(&self, key: &str, now: u64) -> Verdict {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (v, insert, changed) = decide(s.entries.get_mut(key), now, self.timing);
        if let Some(e) = insert {
            if s.entries.len() > 500_000 {
                self.expire(&mut s, now);
            }
            s.entries.insert(key.to_owned(), e);
        }
        s.dirty |= changed;
        v
    }

    fn expire(&self, s: &mut State, now: u64) {
        let t = self.timing;
        s.entries.retain(|_, e| {
            if e.passed {
                now.saturating_sub(e.last) <= t.allow
            } else {
                now.saturating_sub(e.first) <= t.window
            }
        });
    }

    /// Writes the state when it changed (expired entries dropped), atomically.
    pub(crate) fn flush(&self) -> anyhow::Result<()> {
        self.flush_at(now_secs())
    }

    fn flush_at(&self, now: u64) -> anyhow::Result<()> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let text = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !s.dirty {
                return Ok(());
            }
            self.expire(&mut s, now);
            s.dirty = false;
            let mut text = String::from("# postern greylist: first last passed key\n");
            for (k, e) in &s.entries {
                text.push_str(&format!(
                    "{} {} {} {k}\n",
                    e.first,
                    e.last,
                    u8::from(e.passed)
                ));
            }
            text
        };
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            // Try again at the next flush.
            self.state.lock().unwrap_or_else(|e| e.into_inner()).dirty = true;
            anyhow::anyhow!("writing {}: {e}", self.path.display())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        delay: 60,
        window: 3600,
        allow: 86_400,
    };

    #[test]
    fn triplet_defer_pass_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greylist");
        let g = Greylist::open(path.clone(), T).unwrap();
        let k = key("192.0.2.7".parse().unwrap(), Some("A@x.test"), "b@y.test");
        assert_eq!(k, "192.0.2.0/24|a@x.test|b@y.test");
        assert_eq!(g.check_at(&k, 1000), Verdict::Defer(60));
        assert_eq!(g.check_at(&k, 1030), Verdict::Defer(30), "too early");
        assert_eq!(g.check_at(&k, 1061), Verdict::Pass, "retry after the delay");
        assert_eq!(g.check_at(&k, 5000), Verdict::Pass, "allowed from then on");
        // Another recipient is another triplet.
        let k2 = key("192.0.2.99".parse().unwrap(), Some("a@x.test"), "c@y.test");
        assert_eq!(g.check_at(&k2, 5000), Verdict::Defer(60));
        // A retry after the window starts over.
        assert_eq!(g.check_at(&k2, 5000 + 3601), Verdict::Defer(60));
        // Allowed triplets unseen for longer than `allow` start over.
        assert_eq!(g.check_at(&k, 5000 + 86_401), Verdict::Defer(60));
        g.flush_at(5000 + 86_401).unwrap();

        // Survives a restart.
        let g2 = Greylist::open(path, T).unwrap();
        assert_eq!(
            g2.state.lock().unwrap().entries.len(),
            g.state.lock().unwrap().entries.len()
        );
        assert_eq!(g2.check_at(&k, 5000 + 86_401 + 61), Verdict::Pass);
        assert!(!dir.path().join("greylist.tmp").exists());
    }

    /// A cluster front follows the directory's verdict on the triplet (key: the timing,
    /// then the triplet); when the directory fails, this file decides.
    #[tokio::test]
    async fn shared_verdicts_and_the_local_fallback() {
        use postern_auth_proto::socketmap::Reply as MapReply;
        let dir = tempfile::tempdir().unwrap();
        let (path, seen) =
            crate::limits::fake_socketmap::serve(dir.path(), |map, key| match (map, key) {
                ("greylist", "60 3600 86400 192.0.2.0/24|a@x.test|b@y.test") => {
                    MapReply::Ok("pass".into())
                }
                ("greylist", "60 3600 86400 192.0.2.0/24|a@x.test|c@y.test") => {
                    MapReply::Ok("defer 17".into())
                }
                _ => MapReply::Temp("database down".into()),
            });
        let mut lookups = crate::policy::Directory::new(path).lookups();
        let g = Greylist::open(dir.path().join("greylist"), T)
            .unwrap()
            .in_directory(true);
        let ip = "192.0.2.7".parse().unwrap();
        let v = g
            .verdict(&mut lookups, ip, Some("A@x.test"), "b@y.test")
            .await;
        assert_eq!(v, Verdict::Pass, "passed elsewhere in the cluster");
        let v = g
            .verdict(&mut lookups, ip, Some("a@x.test"), "c@y.test")
            .await;
        assert_eq!(v, Verdict::Defer(17));
        assert!(
            g.state.lock().unwrap().entries.is_empty(),
            "the file is not used meanwhile"
        );
        // The directory fails: the local greylist decides (a new triplet is deferred).
        let v = g
            .verdict(&mut lookups, ip, Some("a@x.test"), "d@y.test")
            .await;
        assert_eq!(v, Verdict::Defer(60));
        assert_eq!(g.state.lock().unwrap().entries.len(), 1);
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
        // A single node never asks.
        let local = Greylist::open(dir.path().join("greylist2"), T).unwrap();
        assert_eq!(
            local
                .verdict(&mut lookups, ip, Some("a@x.test"), "b@y.test")
                .await,
            Verdict::Defer(60)
        );
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
        for bad in ["", "pass 1", "defer", "defer x", "ok"] {
            assert_eq!(parse_answer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(
            network("198.51.100.200".parse().unwrap()),
            "198.51.100.0/24"
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            key("::1".parse().unwrap(), None, "X@Y"),
            "0:0:0:0::/64|<>|x@y"
        );
    }
}
