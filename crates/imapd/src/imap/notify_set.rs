//! NOTIFY (RFC 5465): what a session asked to hear about, and finding it out.
//!
//! `cmd/notify_cmd.rs` parses the command; this module keeps the session's [`State`]: the event
//! groups with their mailbox names decoded, the mailboxes followed (non-selected ones with
//! message or metadata events, at most [`MAX_TRACKED`]), and what was last reported of each.
//!
//! **Noticing.** The process's one inotify instance (`notify.rs`) watches, for this session's
//! [`Group`], the Maildir root itself (folders made, removed, renamed; the subscriptions and
//! server metadata files replaced) and `new/`+`cur/` of up to [`MAX_WATCHED`] followed
//! mailboxes (INBOX first, then by name; one user's groups together stay under
//! [`super::notify::MAX_USER_WATCHES`] distinct watches and all groups under
//! [`super::notify::MAX_GROUP_WATCHES`], so one user's many sessions cannot push everyone
//! else onto polling). The others (and the root, when it cannot be watched) are polled: every
//! [`POLL_ROUND`] the next [`POLL_BATCH`] of them are compared by a fingerprint of a few
//! `stat`s (the mtimes of `new/` and `cur/`, the uidlist's and the metadata file's mtime, size and inode), so 5,000
//! folders under `personal` cost 500 stats × 3 every 2 s and a change is seen within 20 s.
//! Every [`RECHECK`] everything is compared (events inotify cannot see). A mailbox whose
//! watch fired is opened whatever its fingerprint says (two changes in one mtime granule).
//!
//! **Reporting** (§5): a followed mailbox that changed is opened like STATUS opens it and
//! compared with what was last reported: new UIDs are MessageNew, fewer messages than the
//! arrivals explain are MessageExpunge, a new HIGHESTMODSEQ with neither is FlagChange; each
//! answers `* STATUS name (MESSAGES n UIDNEXT n UIDVALIDITY n [HIGHESTMODSEQ n])` (the last
//! with CONDSTORE). A mailbox first seen changed after NOTIFY (no count yet) gets its STATUS.
//! Folder list and subscription changes are `LIST` responses (a RENAME done through this
//! process is one `LIST` with `OLDNAME`, §5.4; one done outside it a removal and a
//! creation), metadata changes `METADATA name (entries)`. The selected mailbox is never
//! reported with STATUS (§3): a `selected` group gets the usual EXISTS/FETCH/EXPUNGE (EXPUNGE
//! at once with `selected`, only where a command allows it with `selected-delayed`), and
//! MessageNew's fetch-att is answered with a FETCH of each new message.
//!
//! **When** (§5): the driver calls [`Session::notify_wake`] when the group ticks or a round is
//! due, between commands and during IDLE, never inside a command's response; after each
//! command [`Session::notify_absorb`] takes in silently what the session did itself (APPEND,
//! COPY/MOVE into a followed mailbox, CREATE/DELETE/RENAME, (UN)SUBSCRIBE, SETMETADATA, the
//! selected mailbox left) so it is not reported back to it.
//!
//! **STATUS at SET** (§3.1) is answered in steps of [`STATUS_CHUNK`] opened mailboxes
//! (`Flow::More`, each step flushed before the next), so one step's work and the output held
//! stay bounded with up to [`MAX_TRACKED`] followed mailboxes; NOTIFY is active from the
//! tagged OK on.
//!
//! **Overflow.** More than [`MAX_TRACKED`] mailboxes at `NOTIFY SET` is `NO [LIMIT]`; a
//! mailbox list that grows past it later ends NOTIFY with `* OK [NOTIFICATIONOVERFLOW]`, as
//! §3.1 allows when the server cannot keep up (the client must issue NOTIFY again).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_codec::imap_types::command::CommandBody;
use postern_maildir::metadata::MetadataTarget;
use postern_maildir::{Mailbox, Maildir};

use super::cmd::notify_cmd::{self, Events, Filter, Notify};
use super::names::{self, SEP};
use super::notify::{Group, Kind, Notifier};
use super::resp;
use super::session::{Flow, Session};
use super::tagged::{Tagged, other};

/// Mailboxes one session may follow (small in unit tests, which pass it).
pub(crate) const MAX_TRACKED: usize = if cfg!(test) { 40 } else { 10_000 };
/// Followed mailboxes one session watches with inotify (two watches each); the rest are polled
/// (small in unit tests, which pass it).
pub(crate) const MAX_WATCHED: usize = if cfg!(test) { 8 } else { 256 };
/// How often polled mailboxes are looked at.
pub(crate) const POLL_ROUND: Duration = Duration::from_secs(2);
/// Polled mailboxes looked at per round (small in unit tests, which pass it).
pub(crate) const POLL_BATCH: usize = if cfg!(test) { 10 } else { 500 };
/// Mailboxes `NOTIFY SET STATUS` opens per step (small in unit tests, which pass it).
pub(crate) const STATUS_CHUNK: usize = if cfg!(test) { 4 } else { 100 };
/// How often every followed mailbox is compared, watched or not.
pub(crate) const RECHECK: Duration = Duration::from_secs(30);

/// A session's NOTIFY: the process's watcher (set by the driver at login; `None` in tests and
/// without inotify: then everything is polled) and the active state.
#[derive(Default)]
pub(crate) struct NotifyHandle {
    pub(crate) notifier: Option<Arc<Notifier>>,
    pub(crate) state: Option<Box<State>>,
    /// A `NOTIFY SET STATUS` still answering (see [`Session::notify_status_resume`]).
    status_todo: Option<Box<StatusTodo>>,
}

/// `NOTIFY SET STATUS` between two steps: the new state (active once every followed mailbox
/// is answered) and where the answers resume.
struct StatusTodo {
    tag: String,
    st: Box<State>,
    /// The next followed mailbox to answer (name order).
    next: Option<String>,
}

/// One event group with its names decoded.
struct Rule {
    filter: Match,
    events: Events,
}

enum Match {
    Selected { delayed: bool },
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

impl Match {
    fn matches(&self, name: &str, subs: &BTreeSet<String>) -> bool {
        match self {
            Self::Selected { .. } => false,
            Self::Inboxes => name == "INBOX",
            Self::Personal => true,
            Self::Subscribed => subs.contains(name),
            Self::Subtree(roots) => roots.iter().any(|r| {
                name == r
                    || (name.len() > r.len()
                        && name.starts_with(r.as_str())
                        && name[r.len()..].starts_with(SEP))
            }),
            Self::Mailboxes(list) => list.iter().any(|m| m == name),
        }
    }
}

/// `stat` of one file: inode, mtime (s, ns), size.
type Stat = Option<(u64, i64, i64, u64)>;
/// A mailbox's fingerprint: `new/`, `cur/`, the uidlist, the metadata file.
type Fp = [Stat; 4];

fn stat(p: &Path) -> Stat {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

fn fp_mailbox(dir: &Path) -> Fp {
    [
        stat(&dir.join("new")),
        stat(&dir.join("cur")),
        stat(&dir.join("dovecot-uidlist")),
        stat(&dir.join(postern_maildir::metadata::METADATA_FILE)),
    ]
}

fn fp_root(root: &Path) -> [Stat; 3] {
    [
        stat(root),
        stat(&root.join("subscriptions")),
        stat(&root.join(postern_maildir::metadata::SERVER_METADATA_FILE)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    messages: u32,
    uid_next: u32,
    uid_validity: u32,
    modseq: u64,
}

impl Counts {
    fn of(m: &Mailbox) -> Self {
        Self {
            messages: u32::try_from(m.messages().len()).unwrap_or(u32::MAX),
            uid_next: m.uid_next(),
            uid_validity: m.uid_validity(),
            modseq: m.highest_modseq(),
        }
    }

    /// Whether the change from `self` to `now` is one of `ev` (§5.1–5.3).
    fn reportable(&self, now: &Self, ev: &Events) -> bool {
        if now.uid_validity != self.uid_validity {
            return ev.message_new || ev.message_expunge;
        }
        let arrived = now.uid_next.saturating_sub(self.uid_next);
        let new = arrived > 0;
        let expunged = u64::from(self.messages) + u64::from(arrived) > u64::from(now.messages);
        let flags = now.modseq != self.modseq && !new && !expunged;
        (new && ev.message_new) || (expunged && ev.message_expunge) || (flags && ev.flag_change)
    }
}

/// A followed mailbox.
struct Tracked {
    dir: PathBuf,
    events: Events,
    fp: Option<Fp>,
    counts: Option<Counts>,
    /// Hashes of its metadata entries (with MailboxMetadataChange).
    meta: Option<BTreeMap<String, u64>>,
    watched: bool,
}

/// What wakes a NOTIFY session (see [`Session::notify_waker`]).
pub(crate) struct Waker {
    group: Option<Group>,
    /// Polled mailboxes exist (or no inotify): wake every [`POLL_ROUND`], else [`RECHECK`].
    polls: bool,
    /// MessageNew's FETCH stopped at a full chunk: wake at once for the rest.
    again: bool,
}

impl Waker {
    /// Resolves when the session should look again. Cancel-safe.
    pub(crate) async fn changed(&mut self) {
        if std::mem::take(&mut self.again) {
            return;
        }
        let period = if self.polls { POLL_ROUND } else { RECHECK };
        match self.group.as_mut() {
            Some(g) => {
                tokio::select! {
                    r = g.rx.changed() => {
                        if r.is_err() {
                            tokio::time::sleep(period).await;
                        }
                    }
                    () = tokio::time::sleep(period) => {}
                }
            }
            None => tokio::time::sleep(period).await,
        }
    }
}

/// An active NOTIFY.
pub(crate) struct State {
    rules: Vec<Rule>,
    root: PathBuf,
    root_fp: [Stat; 3],
    folders: BTreeSet<String>,
    subs: BTreeSet<String>,
    /// Hashes of the server's metadata entries (with ServerMetadataChange).
    server_meta: Option<BTreeMap<String, u64>>,
    tracked: BTreeMap<String, Tracked>,
    waker: Waker,
    /// Where the next poll round starts among the polled mailboxes.
    cursor: usize,
    last_full: Instant,
    /// The selected mailbox's highest UID whose MessageNew fetch-att went out.
    fetched_upto: u32,
    /// The selected mailbox's directory, watched for a `selected` group.
    selected_dir: Option<PathBuf>,
    /// The Maildir root is watched (else its changes are found by polling).
    root_watched: bool,
    /// Renames through this process seen under way on disk (§5.4 OLDNAME).
    moves: Vec<Move>,
}

/// A logged rename this session has begun to see on disk, with the names it still expects
/// to go (the old name and its children) and to come (the new ones). On disk the folder and
/// then each child move one by one, and a look (a directory read, which a concurrent rename
/// can even catch half-way) may see any part of it: each part is taken in when seen.
struct Move {
    old: String,
    new: String,
    /// When it was logged: with the names, which log entry this is.
    at: Instant,
    gone: BTreeSet<String>,
    come: BTreeSet<String>,
}

/// What a command of the session itself changed (see [`Session::notify_absorb`]).
#[derive(Debug, Default)]
pub(crate) struct Touched {
    names: Vec<String>,
    root: bool,
    reselect: bool,
    /// A RENAME's (from, to), announced to the process's other sessions once done.
    rename: Option<(String, String)>,
}

/// A RENAME done through this process (§5.4: its followers get one LIST with OLDNAME).
struct Renamed {
    root: PathBuf,
    old: String,
    new: String,
    at: Instant,
}

/// Recent renames of the whole process, oldest first: at most [`RENAME_LOG`], none older than
/// [`RENAME_KEEP`] (a follower looks at the root at least every [`RECHECK`]); a follower that
/// looks later sees a removal and a creation, as for a rename done outside imapd.
static RENAMES: std::sync::Mutex<std::collections::VecDeque<Renamed>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());
const RENAME_LOG: usize = 1024;
const RENAME_KEEP: Duration = Duration::from_secs(120);
/// Longer names (together) are not logged (memory of the log).
const RENAME_NAME_MAX: usize = 2048;

fn log_rename(root: &Path, old: &str, new: &str) {
    if old.len() + new.len() > RENAME_NAME_MAX {
        return;
    }
    let Ok(mut log) = RENAMES.lock() else {
        return;
    };
    let now = Instant::now();
    while log
        .front()
        .is_some_and(|r| log.len() >= RENAME_LOG || now.duration_since(r.at) > RENAME_KEEP)
    {
        log.pop_front();
    }
    log.push_back(Renamed {
        root: root.to_path_buf(),
        old: old.to_owned(),
        new: new.to_owned(),
        at: now,
    });
}

/// Takes back [`log_rename`]'s entry for a RENAME that did not take place.
fn unlog_rename(root: &Path, old: &str, new: &str) {
    let Ok(mut log) = RENAMES.lock() else {
        return;
    };
    if let Some(i) = log
        .iter()
        .rposition(|r| r.root == root && r.old == old && r.new == new)
    {
        log.remove(i);
    }
}

/// The logged renames under `root` (old name, new name, when logged), oldest first.
fn renames_under(root: &Path) -> Vec<(String, String, Instant)> {
    let now = Instant::now();
    RENAMES
        .lock()
        .map(|log| {
            log.iter()
                .filter(|r| r.root == root && now.duration_since(r.at) <= RENAME_KEEP)
                .map(|r| (r.old.clone(), r.new.clone(), r.at))
                .collect()
        })
        .unwrap_or_default()
}

fn hash_entries(e: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, u64> {
    e.iter()
        .map(|(k, v)| {
            let mut h = DefaultHasher::new();
            v.hash(&mut h);
            (k.clone(), h.finish())
        })
        .collect()
}

fn read_meta(md: &Maildir, target: MetadataTarget<'_>) -> BTreeMap<String, u64> {
    md.metadata(target)
        .map(|e| hash_entries(&e))
        .unwrap_or_default()
}

/// Entry names that differ between `old` and `new`.
fn changed_entries<'a>(
    old: &'a BTreeMap<String, u64>,
    new: &'a BTreeMap<String, u64>,
) -> Vec<&'a str> {
    let mut v: Vec<&str> = new
        .iter()
        .filter(|(k, h)| old.get(*k) != Some(h))
        .map(|(k, _)| k.as_str())
        .collect();
    v.extend(
        old.keys()
            .filter(|k| !new.contains_key(*k))
            .map(String::as_str),
    );
    v.sort_unstable();
    v
}

/// Output settings of the session.
#[derive(Clone, Copy)]
struct Wire {
    utf8: bool,
    condstore: bool,
}

fn name_bytes(out: &mut Vec<u8>, name: &str, w: Wire) {
    resp::string(out, names::encode(name, w.utf8).as_bytes(), w.utf8);
}

fn status_line(out: &mut Vec<u8>, name: &str, c: &Counts, w: Wire) {
    out.extend_from_slice(b"* STATUS ");
    name_bytes(out, name, w);
    out.extend_from_slice(
        format!(
            " (MESSAGES {} UIDNEXT {} UIDVALIDITY {}",
            c.messages, c.uid_next, c.uid_validity
        )
        .as_bytes(),
    );
    if w.condstore {
        out.extend_from_slice(format!(" HIGHESTMODSEQ {}", c.modseq).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}

fn list_line(out: &mut Vec<u8>, attrs: &str, name: &str, w: Wire) {
    out.extend_from_slice(format!("* LIST ({attrs}) \"{SEP}\" ").as_bytes());
    name_bytes(out, name, w);
    out.extend_from_slice(b"\r\n");
}

/// `* LIST () "/" new ("OLDNAME" (old))` (RFC 5465 §5.4, RFC 5258 extended data).
fn oldname_line(out: &mut Vec<u8>, new: &str, old: &str, w: Wire) {
    out.extend_from_slice(format!("* LIST () \"{SEP}\" ").as_bytes());
    name_bytes(out, new, w);
    out.extend_from_slice(b" (\"OLDNAME\" (");
    name_bytes(out, old, w);
    out.extend_from_slice(b"))\r\n");
}

fn metadata_line(out: &mut Vec<u8>, name: &str, entries: &[&str], w: Wire) {
    out.extend_from_slice(b"* METADATA ");
    name_bytes(out, name, w);
    out.extend_from_slice(b" (");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        resp::string(out, e.as_bytes(), w.utf8);
    }
    out.extend_from_slice(b")\r\n");
}

impl State {
    /// The events for a non-selected mailbox: the first group whose filter matches it.
    fn events_for(&self, name: &str, subs: &BTreeSet<String>) -> Option<&Events> {
        self.rules
            .iter()
            .find(|r| r.filter.matches(name, subs))
            .map(|r| &r.events)
    }

    /// The `selected`/`selected-delayed` group: (delayed, events).
    fn selected_rule(&self) -> Option<(bool, &Events)> {
        self.rules.iter().find_map(|r| match r.filter {
            Match::Selected { delayed } => Some((delayed, &r.events)),
            _ => None,
        })
    }

    /// With a `selected` group, the selected mailbox (`dir`) is watched too, so that its
    /// changes wake the session between commands.
    fn watch_selected(&mut self, dir: Option<PathBuf>) {
        if self.selected_rule().is_none_or(|(_, e)| !e.messages()) || self.selected_dir == dir {
            return;
        }
        let Some(g) = self.waker.group.as_mut() else {
            return;
        };
        if let Some(old) = self.selected_dir.take()
            && !self.tracked.values().any(|t| t.watched && t.dir == old)
        {
            g.remove(&old, Kind::Mailbox);
        }
        if let Some(d) = dir
            && g.add(&d, Kind::Mailbox)
        {
            self.selected_dir = Some(d);
        }
    }

    fn any_server_meta(&self) -> bool {
        self.rules.iter().any(|r| r.events.server_metadata)
    }

    /// Brings the followed set in line with the folder list and subscriptions. New ones are
    /// baselined now when `baseline` (at NOTIFY SET), else left to report on their first
    /// look. False when more than [`MAX_TRACKED`] would be followed.
    fn resolve(&mut self, md: &Maildir, baseline: bool) -> bool {
        let mut want: BTreeMap<String, Events> = BTreeMap::new();
        for name in &self.folders {
            if let Some(ev) = self.events_for(name, &self.subs)
                && (ev.messages() || ev.mailbox_metadata)
            {
                want.insert(name.clone(), ev.clone());
                if want.len() > MAX_TRACKED {
                    return false;
                }
            }
        }
        let gone: Vec<String> = self
            .tracked
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            if let Some(t) = self.tracked.remove(&name)
                && t.watched
                && self.selected_dir.as_ref() != Some(&t.dir)
                && let Some(g) = self.waker.group.as_mut()
            {
                g.remove(&t.dir, Kind::Mailbox);
            }
        }
        for (name, ev) in want {
            if let Some(t) = self.tracked.get_mut(&name) {
                t.events = ev;
                continue;
            }
            let dir = if name == "INBOX" {
                Ok(md.root().to_path_buf())
            } else {
                md.folder_dir(&name)
            };
            let Ok(dir) = dir else { continue };
            let mut t = Tracked {
                dir,
                events: ev,
                fp: None,
                counts: None,
                meta: None,
                watched: false,
            };
            if baseline {
                t.fp = Some(fp_mailbox(&t.dir));
            }
            if t.events.mailbox_metadata {
                t.meta = Some(if baseline {
                    read_meta(md, MetadataTarget::Mailbox(&name))
                } else {
                    BTreeMap::new()
                });
            }
            self.tracked.insert(name, t);
        }
        // Inotify for the first MAX_WATCHED (INBOX sorts first among the names we make).
        let mut watched = self.tracked.values().filter(|t| t.watched).count();
        let mut polls =
            !self.root_watched || (self.waker.group.is_none() && !self.tracked.is_empty());
        for name in std::iter::once("INBOX".to_owned()).chain(
            self.tracked
                .keys()
                .filter(|k| *k != "INBOX")
                .cloned()
                .collect::<Vec<_>>(),
        ) {
            let Some(t) = self.tracked.get_mut(&name) else {
                continue;
            };
            if t.watched {
                continue;
            }
            if watched < MAX_WATCHED
                && let Some(g) = self.waker.group.as_mut()
                && g.add(&t.dir, Kind::Mailbox)
            {
                t.watched = true;
                watched += 1;
            } else {
                polls = true;
            }
        }
        self.waker.polls = polls;
        true
    }

    /// Looks at the root: folder list, subscriptions, server metadata (reported to `out`),
    /// then the followed set (new mailboxes baselined now when `baseline`: the session made
    /// them itself). False on overflow.
    fn check_root(
        &mut self,
        md: &Maildir,
        sel: Option<&str>,
        out: &mut Vec<u8>,
        w: Wire,
        baseline: bool,
    ) -> bool {
        self.root_fp = fp_root(&self.root);
        let folders: BTreeSet<String> = match md.list_folders() {
            Ok(f) => std::iter::once("INBOX".to_owned()).chain(f).collect(),
            Err(_) => self.folders.clone(),
        };
        let subs: BTreeSet<String> = md
            .subscriptions()
            .map(|s| s.into_iter().map(names::normalise_inbox).collect())
            .unwrap_or_else(|_| self.subs.clone());
        let wants_name = |st: &Self, n: &str, subs: &BTreeSet<String>| {
            if sel == Some(n)
                && let Some((_, e)) = st.selected_rule()
            {
                return e.mailbox_name;
            }
            st.events_for(n, subs).is_some_and(|e| e.mailbox_name)
        };
        // §5.4: a rename done through this process is one LIST with OLDNAME for the new name,
        // nothing for the old one nor for the children that moved with it. On disk the folder
        // moves and then each child, so a look may see any part of that: a logged rename
        // becomes a [`Move`] at the first part seen, and each later part is taken in quietly.
        let mut quiet: BTreeSet<String> = BTreeSet::new();
        let added: BTreeSet<&String> = folders.difference(&self.folders).collect();
        let removed: BTreeSet<&String> = self.folders.difference(&folders).collect();
        let mut moves = std::mem::take(&mut self.moves);
        let now = Instant::now();
        moves.retain(|m| now.duration_since(m.at) <= RENAME_KEEP);
        if !added.is_empty() || !removed.is_empty() {
            for (old, new, at) in renames_under(&self.root) {
                let known = moves
                    .iter()
                    .any(|m| m.at == at && m.old == old && m.new == new);
                if known || !(removed.contains(&old) || added.contains(&new)) {
                    continue;
                }
                // The children as this session knew them before the move.
                let prefix = format!("{old}{SEP}");
                let kids: Vec<&str> = self
                    .folders
                    .iter()
                    .filter_map(|f| f.strip_prefix(&prefix))
                    .collect();
                let gone = std::iter::once(old.clone())
                    .chain(kids.iter().map(|k| format!("{prefix}{k}")))
                    .collect();
                let come = std::iter::once(new.clone())
                    .chain(kids.iter().map(|k| format!("{new}{SEP}{k}")))
                    .collect();
                moves.push(Move {
                    old,
                    new,
                    at,
                    gone,
                    come,
                });
            }
        }
        for m in &mut moves {
            for n in &removed {
                if m.gone.remove(*n) {
                    quiet.insert((*n).clone());
                }
            }
            for n in &added {
                if m.come.remove(*n) {
                    quiet.insert((*n).clone());
                    if **n == m.new
                        && (wants_name(self, &m.old, &self.subs) || wants_name(self, &m.new, &subs))
                    {
                        oldname_line(out, &m.new, &m.old, w);
                    }
                }
            }
        }
        moves.retain(|m| !m.gone.is_empty() || !m.come.is_empty());
        self.moves = moves;
        for n in added {
            if !quiet.contains(n) && wants_name(self, n, &subs) {
                list_line(out, "", n, w);
            }
        }
        for n in removed {
            if !quiet.contains(n) && wants_name(self, n, &self.subs) {
                list_line(out, "\\NonExistent", n, w);
            }
        }
        let wants_sub = |st: &Self, n: &str, subs: &BTreeSet<String>| {
            st.events_for(n, subs)
                .is_some_and(|e| e.subscription_change)
        };
        for n in subs.difference(&self.subs) {
            if wants_sub(self, n, &subs) {
                let attrs = if folders.contains(n) {
                    "\\Subscribed"
                } else {
                    "\\Subscribed \\NonExistent"
                };
                list_line(out, attrs, n, w);
            }
        }
        for n in self.subs.difference(&subs) {
            if wants_sub(self, n, &self.subs) {
                let attrs = if folders.contains(n) {
                    ""
                } else {
                    "\\NonExistent"
                };
                list_line(out, attrs, n, w);
            }
        }
        if let Some(old) = &self.server_meta {
            let new = read_meta(md, MetadataTarget::Server);
            let changed = changed_entries(old, &new);
            if !changed.is_empty() {
                metadata_line(out, "", &changed, w);
            }
            self.server_meta = Some(new);
        }
        let relist = folders != self.folders || subs != self.subs;
        self.folders = folders;
        self.subs = subs;
        !relist || self.resolve(md, baseline)
    }

    /// Compares one followed mailbox and reports what its events ask for.
    fn check_mailbox(
        md: &Maildir,
        name: &str,
        t: &mut Tracked,
        force: bool,
        out: &mut Vec<u8>,
        w: Wire,
    ) {
        let fp = fp_mailbox(&t.dir);
        let old = t.fp.replace(fp);
        if !force && old.as_ref() == Some(&fp) {
            return;
        }
        let msgs_changed = force || old.as_ref().is_none_or(|o| o[..3] != fp[..3]);
        if t.events.messages()
            && msgs_changed
            && let Ok(m) = md.open_mailbox(name)
        {
            let now = Counts::of(&m);
            let report = t.counts.is_none_or(|o| o.reportable(&now, &t.events));
            t.counts = Some(now);
            if report {
                status_line(out, name, &now, w);
            }
        }
        let meta_changed = force || old.as_ref().is_none_or(|o| o[3] != fp[3]);
        if t.events.mailbox_metadata && meta_changed {
            let new = read_meta(md, MetadataTarget::Mailbox(name));
            if let Some(old) = &t.meta {
                let changed = changed_entries(old, &new);
                if !changed.is_empty() {
                    metadata_line(out, name, &changed, w);
                }
            }
            t.meta = Some(new);
        }
    }
}

impl Session {
    fn wire(&self) -> Wire {
        Wire {
            utf8: self.utf8(),
            condstore: self.enabled.condstore,
        }
    }

    /// `NOTIFY SET …` / `NOTIFY NONE` (RFC 5465 §3.1), parsed by `cmd/notify_cmd.rs`: all
    /// its responses and the tagged one. With STATUS, `Flow::More` while the followed
    /// mailboxes' STATUS are being answered ([`STATUS_CHUNK`] opened per step; the driver
    /// flushes each step and calls [`Session::resume`] for the next).
    pub(crate) fn notify_cmd(&mut self, n: Notify, tag: &str, out: &mut Vec<u8>) -> Flow {
        self.notify.status_todo = None;
        match self.notify_set(n, out) {
            Err(t) => {
                t.write(out, tag);
                Flow::Continue
            }
            Ok(st) => {
                let next = st.tracked.keys().next().cloned();
                self.notify.status_todo = Some(Box::new(StatusTodo {
                    tag: tag.to_owned(),
                    st,
                    next,
                }));
                self.notify_status_resume(out).unwrap_or(Flow::Continue)
            }
        }
    }

    /// The next step of a `NOTIFY SET STATUS`; `None` when none is under way.
    pub(crate) fn notify_status_resume(&mut self, out: &mut Vec<u8>) -> Option<Flow> {
        let mut todo = self.notify.status_todo.take()?;
        let w = self.wire();
        let sel = self.state.sel().map(|s| s.name.clone());
        let Some(md) = self.state.user().map(|u| u.maildir.clone()) else {
            Tagged::bad("Log in first").write(out, &todo.tag);
            return Some(Flow::Continue);
        };
        let mut opened = 0;
        if let Some(start) = todo.next.take() {
            for (name, t) in todo.st.tracked.range_mut(start..) {
                if !(t.events.message_new || t.events.message_expunge)
                    || sel.as_deref() == Some(name.as_str())
                {
                    continue;
                }
                if opened == STATUS_CHUNK {
                    todo.next = Some(name.clone());
                    break;
                }
                opened += 1;
                if let Ok(m) = md.open_mailbox(name) {
                    let c = Counts::of(&m);
                    t.counts = Some(c);
                    status_line(out, name, &c, w);
                }
            }
        }
        if todo.next.is_some() {
            self.notify.status_todo = Some(todo);
            return Some(Flow::More);
        }
        let StatusTodo { tag, st, .. } = *todo;
        self.notify.state = Some(st);
        self.done(out, "NOTIFY completed").write(out, &tag);
        Some(Flow::Continue)
    }

    /// Checks and sets up `NOTIFY SET`/`NONE`: `Err` with the tagged answer when done (OK
    /// included), `Ok` with the new state when its STATUS answers are due first.
    fn notify_set(&mut self, n: Notify, out: &mut Vec<u8>) -> Result<Box<State>, Tagged> {
        let Some(user) = self.state.user() else {
            return Err(Tagged::bad("Log in first"));
        };
        // A new SET replaces the old one (once it is valid); NONE ends it.
        let Notify::Set { status, groups } = n else {
            self.notify.state = None;
            return Err(self.done(out, "NOTIFY completed"));
        };
        let utf8 = self.utf8();
        let mut rules = Vec::new();
        for g in groups {
            let decode = |list: Vec<Vec<u8>>| -> Option<Vec<String>> {
                list.iter().map(|m| names::decode_bytes(m, utf8)).collect()
            };
            let filter = match g.filter {
                Filter::Selected => Match::Selected { delayed: false },
                Filter::SelectedDelayed => Match::Selected { delayed: true },
                Filter::Inboxes => Match::Inboxes,
                Filter::Personal => Match::Personal,
                Filter::Subscribed => Match::Subscribed,
                Filter::Subtree(l) => match decode(l) {
                    Some(v) => Match::Subtree(v),
                    None => return Err(Tagged::bad("Invalid mailbox name")),
                },
                Filter::Mailboxes(l) => match decode(l) {
                    Some(v) => Match::Mailboxes(v),
                    None => return Err(Tagged::bad("Invalid mailbox name")),
                },
            };
            rules.push(Rule {
                filter,
                events: g.events,
            });
        }
        let md = user.maildir.clone();
        self.notify.state = None;
        let mut root_watched = false;
        let group = self.notify.notifier.as_ref().map(|n| {
            let mut g = n.group(&user.name);
            root_watched = g.add(md.root(), Kind::Dir);
            g
        });
        let mut st = Box::new(State {
            rules,
            root: md.root().to_path_buf(),
            root_fp: fp_root(md.root()),
            folders: BTreeSet::new(),
            subs: BTreeSet::new(),
            server_meta: None,
            tracked: BTreeMap::new(),
            waker: Waker {
                group,
                polls: false,
                again: false,
            },
            cursor: 0,
            last_full: Instant::now(),
            fetched_upto: self
                .state
                .sel()
                .and_then(|s| s.uids.last().copied())
                .unwrap_or(0),
            selected_dir: None,
            root_watched,
            moves: Vec::new(),
        });
        st.watch_selected(self.selected_dir());
        st.folders = match md.list_folders() {
            Ok(f) => std::iter::once("INBOX".to_owned()).chain(f).collect(),
            Err(e) => return Err(super::session::store_error(&e)),
        };
        st.subs = md
            .subscriptions()
            .map(|s| s.into_iter().map(names::normalise_inbox).collect())
            .unwrap_or_default();
        if st.any_server_meta() {
            st.server_meta = Some(read_meta(&md, MetadataTarget::Server));
        }
        if !st.resolve(&md, true) {
            return Err(Tagged::no(
                other("LIMIT"),
                "NOTIFY would follow too many mailboxes",
            ));
        }
        // §3.1: with STATUS, the current state of every followed mailbox first.
        if status {
            return Ok(st);
        }
        self.notify.state = Some(st);
        Err(self.done(out, "NOTIFY completed"))
    }

    /// What wakes this session for NOTIFY, when it is active.
    pub(crate) fn notify_waker(&mut self) -> Option<&mut Waker> {
        self.notify.state.as_mut().map(|s| &mut s.waker)
    }

    /// NOTIFY woke the session (between commands or during IDLE): the selected mailbox's
    /// updates as its group asks, then every other followed change.
    pub fn notify_wake(&mut self, out: &mut Vec<u8>) {
        // A shared mailbox whose read right was revoked is closed before any update.
        crate::imap::shared::recheck_selected(self);
        let Some(st) = self.notify.state.as_ref() else {
            return;
        };
        let sel_rule = st
            .selected_rule()
            .map(|(d, e)| (d, e.messages(), e.message_expunge));
        if self.idling.is_some() {
            self.sync(out, true);
        } else if let Some((delayed, true, expunge)) = sel_rule {
            // §6: "selected" reports expunges at once, "selected-delayed" only where the
            // client's command allows them (not here, between commands).
            self.sync(out, expunge && !delayed);
        }
        self.notify_fetch_new(out);
        self.notify_check(out);
    }

    /// MessageNew's fetch-att (§5.2) for new messages of the selected mailbox not yet sent.
    /// One call answers at most one FETCH chunk (`cmd::fetch`'s 1 MiB, plus the message that
    /// crosses it): the messages after it are sent by the next call (the next wake, which
    /// comes at once, or command), so the output held at once does not grow with the mail
    /// that arrived.
    pub(crate) fn notify_fetch_new(&mut self, out: &mut Vec<u8>) {
        if self.pending.is_some() {
            return;
        }
        let Some(st) = self.notify.state.as_mut() else {
            return;
        };
        let Some(atts) = st.selected_rule().and_then(|(_, e)| e.fetch_att.clone()) else {
            return;
        };
        let Some(sel) = self.state.sel() else {
            return;
        };
        let Some(&last) = sel.uids.last() else {
            return;
        };
        if last <= st.fetched_upto {
            return;
        }
        let first = st.fetched_upto + 1;
        st.fetched_upto = last;
        let Some(cmd) = notify_cmd::fetch_command(&format!("{first}:{last}"), &atts) else {
            return;
        };
        let CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            modifiers,
        } = cmd.body
        else {
            return;
        };
        let mut buf = Vec::new();
        let f = self.fetch(
            "N",
            &sequence_set,
            macro_or_item_names,
            uid,
            &modifiers,
            &mut buf,
        );
        if f == Flow::More {
            // A chunk is full: the messages not answered yet wait for the next call.
            let next = self
                .pending
                .take()
                .and_then(|p| p.todo.front().map(|t| t.1));
            if let (Some(next), Some(st)) = (next, self.notify.state.as_mut()) {
                st.fetched_upto = next.saturating_sub(1);
                st.waker.again = true;
            }
            out.extend_from_slice(&buf);
            return;
        }
        // Drop the internal FETCH's tagged line (always the last one).
        let body_end = buf.len().saturating_sub(2);
        let line_start = buf[..body_end]
            .windows(2)
            .rposition(|w| w == b"\r\n")
            .map_or(0, |i| i + 2);
        if buf[line_start..].starts_with(b"N ") {
            buf.truncate(line_start);
        }
        out.extend_from_slice(&buf);
    }

    /// Looks at what changed outside the selected mailbox and reports it.
    fn notify_check(&mut self, out: &mut Vec<u8>) {
        let w = self.wire();
        let sel = self.state.sel().map(|s| s.name.clone());
        let Some(user) = self.state.user() else {
            return;
        };
        let md = user.maildir.clone();
        let Some(st) = self.notify.state.as_mut() else {
            return;
        };
        let dirty = st
            .waker
            .group
            .as_ref()
            .map(Group::take_dirty)
            .unwrap_or_default();
        let now = Instant::now();
        let full = dirty.all || now.duration_since(st.last_full) >= RECHECK;
        if full {
            st.last_full = now;
        }
        let root_dirty = dirty.dirs.contains(&(st.root.clone(), Kind::Dir));
        if (full || root_dirty || fp_root(&st.root) != st.root_fp)
            && !st.check_root(&md, sel.as_deref(), out, w, false)
        {
            resp::untagged(
                out,
                "OK [NOTIFICATIONOVERFLOW] Too many mailboxes to follow; NOTIFY is off",
            );
            self.notify.state = None;
            return;
        }
        // This round's polled mailboxes: POLL_BATCH of them from the cursor on, in name order
        // among the polled, wrapping around.
        let polled = st.tracked.values().filter(|t| !t.watched).count().max(1);
        let start = st.cursor % polled;
        let mut polled_seen = 0usize;
        for (name, t) in &mut st.tracked {
            let in_batch = if t.watched {
                false
            } else {
                let k = (polled_seen + polled - start) % polled;
                polled_seen += 1;
                k < POLL_BATCH
            };
            if sel.as_deref() == Some(name.as_str()) {
                continue;
            }
            let force = dirty.dirs.contains(&(t.dir.clone(), Kind::Mailbox));
            if force || full || in_batch {
                State::check_mailbox(&md, name, t, force, out, w);
            }
        }
        st.cursor = (start + POLL_BATCH) % polled;
    }

    /// What `body`, a command of this session, will change that NOTIFY follows.
    pub(crate) fn notify_touched(&self, body: &CommandBody<'_>) -> Option<Touched> {
        let utf8 = self.utf8();
        let name = |m| names::decode(m, utf8);
        // A RENAME is logged before it runs: another session's watch can fire as soon as the
        // directory moves, before this command returns, and must then find it in the log.
        // [`Session::notify_absorb`] takes the entry back if the rename did not take place.
        // INBOX's is not logged: §5.4 "a new INBOX is assumed to be created".
        if let CommandBody::Rename { from, to } = body
            && let (Some(f), Some(t)) = (name(from), name(to))
            && f != "INBOX"
            && let Some(user) = self.state.user()
        {
            log_rename(user.maildir.root(), &f, &t);
        }
        if let CommandBody::Rename { from, to } = body
            && self.notify.state.is_none()
        {
            // Logged for the other sessions' NOTIFY (§5.4 OLDNAME) even without one here.
            return Some(Touched {
                rename: name(from).zip(name(to)),
                ..Touched::default()
            });
        }
        self.notify.state.as_ref()?;
        let mut t = Touched::default();
        match body {
            CommandBody::Append { mailbox, .. }
            | CommandBody::Copy { mailbox, .. }
            | CommandBody::Move { mailbox, .. } => t.names.extend(name(mailbox)),
            CommandBody::Rename { from, to } => {
                t.root = true;
                t.rename = name(from).zip(name(to));
            }
            CommandBody::Create { .. }
            | CommandBody::Delete { .. }
            | CommandBody::Subscribe { .. }
            | CommandBody::Unsubscribe { .. } => t.root = true,
            CommandBody::SetMetadata { mailbox, .. } => match name(mailbox) {
                Some(n) if !n.is_empty() => t.names.push(n),
                _ => t.root = true,
            },
            CommandBody::Select { mailbox, .. } | CommandBody::Examine { mailbox, .. } => {
                t.names.extend(name(mailbox));
                t.names.extend(self.state.sel().map(|s| s.name.clone()));
                t.reselect = true;
            }
            CommandBody::Close | CommandBody::Unselect => {
                t.names.extend(self.state.sel().map(|s| s.name.clone()));
                t.reselect = true;
            }
            _ => return None,
        }
        Some(t)
    }

    /// [`Session::notify_touched`] for a command recovered by `cmd/ext.rs`: `tag APPEND
    /// mailbox …` (MULTIAPPEND, CATENATE) touches its mailbox; others nothing known.
    pub(crate) fn notify_touched_raw(&self, raw: &[u8]) -> Option<Touched> {
        self.notify.state.as_ref()?;
        let sp1 = raw.iter().take(128).position(|&b| b == b' ')?;
        let rest = &raw[sp1 + 1..];
        if rest.len() < 7 || !rest[..7].eq_ignore_ascii_case(b"APPEND ") {
            return None;
        }
        let name = notify_cmd::leading_astring(&rest[7..])?;
        let name = names::decode_bytes(&name, self.utf8())?;
        Some(Touched {
            names: vec![name],
            ..Touched::default()
        })
    }

    /// After a command: takes in silently what the session did itself (`touched`, from
    /// [`Session::notify_touched`]), then sends MessageNew's FETCH for new messages.
    pub(crate) fn notify_absorb(&mut self, touched: Option<Touched>, out: &mut Vec<u8>) {
        // A RENAME was logged for the other sessions before it ran (see
        // [`Session::notify_touched`]); one that did not take place (the old name still
        // there or the new one missing) is taken back.
        if let Some((from, to)) = touched.as_ref().and_then(|t| t.rename.as_ref())
            && from != "INBOX"
            && let Some(user) = self.state.user()
            && (!user.maildir.folder_exists(to).unwrap_or(false)
                || user.maildir.folder_exists(from).unwrap_or(true))
        {
            unlog_rename(user.maildir.root(), from, to);
        }
        if let Some(t) = touched {
            let w = self.wire();
            let sel = self
                .state
                .sel()
                .map(|s| (s.name.clone(), s.uids.last().copied()));
            if let Some(user) = self.state.user()
                && let Some(st) = self.notify.state.as_mut()
            {
                let md = user.maildir.clone();
                let mut scratch = Vec::new();
                let sel_name = sel.as_ref().map(|s| s.0.as_str());
                if t.root && !st.check_root(&md, sel_name, &mut scratch, w, true) {
                    resp::untagged(
                        out,
                        "OK [NOTIFICATIONOVERFLOW] Too many mailboxes to follow; NOTIFY is off",
                    );
                    self.notify.state = None;
                    return;
                }
                for n in &t.names {
                    if let Some(tr) = st.tracked.get_mut(n) {
                        State::check_mailbox(&md, n, tr, true, &mut scratch, w);
                    }
                }
                if t.reselect {
                    st.fetched_upto = sel.and_then(|s| s.1).unwrap_or(0);
                    st.watch_selected(self.state.sel().map(|s| s.mbox.path().to_path_buf()));
                }
            }
        }
        self.notify_fetch_new(out);
    }
}

/// The watches a user's NOTIFY would take: for tests and the report.
#[cfg(test)]
pub(crate) fn watched_count(s: &Session) -> (usize, usize) {
    s.notify.state.as_ref().map_or((0, 0), |st| {
        (
            st.tracked.values().filter(|t| t.watched).count(),
            st.tracked.len(),
        )
    })
}

#[cfg(test)]
#[path = "notify_set_tests.rs"]
mod tests;
