//! The IMAP session without sockets: parsed commands in, response bytes out.
//!
//! The driver in `mod.rs` does the I/O: the socket, the TLS handshake, the deflate stream,
//! authd and the waiting during IDLE. The session decides everything else and hands the
//! driver an action when it needs one (`cmd/auth.rs` for LOGIN, STARTTLS and COMPRESS,
//! `idle.rs` for IDLE). The session's state, its view of the selected mailbox and the
//! untagged updates are here, the commands in `cmd/` (one file per family). All of it is
//! synchronous (the store is `std::fs`), so the driver runs it on the blocking pool and unit
//! tests call it directly.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::flag::{Flag, FlagFetch};
use imap_codec::imap_types::response::{Code, Data};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::StatusDataItemName;
use postern_maildir::{Flags, Mailbox, Maildir, MaildirError, MessageMeta};

use super::names::{self, SEP};
use super::resp::{self, num_set, untagged};
use super::tagged::{Tagged, other};

/// Settings a session needs from the config.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our name, for the greeting.
    pub hostname: String,
    /// APPENDLIMIT (the largest literal).
    pub append_limit: u32,
    /// STARTTLS can be offered (port 143 with a certificate).
    pub starttls: bool,
}

/// What the driver does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// More output is pending (a large FETCH): write, then call [`Session::resume`].
    More,
    /// Close the connection (after LOGOUT or a fatal error).
    Close,
}

/// The logged-in user.
pub struct User {
    /// The account name.
    pub name: String,
    /// The Maildir root.
    pub maildir: Maildir,
    /// Storage quota in bytes, if any.
    pub quota_bytes: Option<u64>,
}

/// Extensions the client enabled.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Enabled {
    pub(crate) utf8: bool,
    pub(crate) condstore: bool,
    pub(crate) qresync: bool,
    pub(crate) rev2: bool,
    /// UIDONLY (RFC 9586, `cmd/uidonly.rs`).
    pub(crate) uidonly: bool,
}

impl Enabled {
    /// Expunges are announced with VANISHED (QRESYNC, or UIDONLY: RFC 9586 §3.2).
    pub(crate) fn vanished(&self) -> bool {
        self.qresync || self.uidonly
    }
}

/// The selected mailbox and this session's view of it.
pub(crate) struct Selected {
    pub(crate) name: String,
    pub(crate) mbox: Mailbox,
    pub(crate) read_only: bool,
    /// UIDs in the client's view, ascending: sequence number = index + 1.
    pub(crate) uids: Vec<u32>,
    /// Gone from the store, not yet announced with EXPUNGE/VANISHED.
    pub(crate) gone: BTreeSet<u32>,
    /// Messages that are \Recent in this session.
    pub(crate) recent: HashSet<u32>,
    /// Keywords announced in FLAGS.
    pub(crate) keywords: BTreeSet<String>,
    /// Messages whose flags other sessions changed, not yet reported.
    pub(crate) changed: BTreeSet<u32>,
    /// SEARCHRES's saved result (`$`, RFC 5182): runs of UIDs consecutive in this view when
    /// saved (see `cmd/searchres.rs`); a new selection starts empty.
    pub(crate) saved: Vec<(u32, u32)>,
}

impl Selected {
    /// Reads the store's changes into `gone`/`changed` (reported later).
    pub(crate) fn pull(&mut self) {
        match self.mbox.sync() {
            Ok(r) => {
                self.gone.extend(r.expunged);
                self.changed.extend(r.changed);
            }
            Err(e) => tracing::warn!(error = %e, mailbox = %self.name, "sync failed"),
        }
    }

    /// The sequence number of `uid` in the client's view.
    pub(crate) fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids
            .binary_search(&uid)
            .ok()
            .and_then(|i| u32::try_from(i + 1).ok())
    }
}

/// A FETCH in progress.
pub(crate) struct PendingFetch {
    pub(crate) tag: String,
    pub(crate) items: Vec<imap_codec::imap_types::fetch::MessageDataItemName<'static>>,
    /// Only UID, FLAGS, MODSEQ and RFC822.SIZE are asked for (see `cmd::fetch`'s fast path).
    pub(crate) meta_only: bool,
    pub(crate) todo: std::collections::VecDeque<(u32, u32)>,
    pub(crate) modseq: bool,
    pub(crate) changed_since: Option<u64>,
    pub(crate) failed_cte: bool,
    /// UIDs whose message file could not be read (reported with a tagged NO).
    pub(crate) unreadable: Vec<u32>,
    /// Some message could not be read for another reason than being gone.
    pub(crate) read_error: bool,
    /// UIDs refused because their answer would pass `cmd::fetch`'s cost budget (`NO [LIMIT]`).
    pub(crate) too_large: Vec<u32>,
    /// This FETCH enabled CONDSTORE with a mailbox selected: the tagged OK carries
    /// `[HIGHESTMODSEQ n]` (RFC 7162 §3.1).
    pub(crate) announce_modseq: bool,
    /// OBJECTID/SAVEDATE/PREVIEW items (`cmd::objectid`).
    pub(crate) extra: crate::imap::cmd::objectid::FetchExtra,
}

/// Where a session is in RFC 9051's state diagram (§3): the user exists only once logged
/// in, a selected mailbox only inside the authenticated state.
pub(crate) enum State {
    /// Before LOGIN/AUTHENTICATE.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated(User),
    /// Logged in with a mailbox selected (boxed: the view is large, the other states small).
    Selected(User, Box<Selected>),
    /// After LOGOUT (the connection closes).
    Logout,
}

impl State {
    /// The logged-in user.
    pub(crate) fn user(&self) -> Option<&User> {
        match self {
            Self::Authenticated(u) | Self::Selected(u, _) => Some(u),
            Self::NotAuthenticated | Self::Logout => None,
        }
    }

    /// The selected mailbox.
    pub(crate) fn sel(&self) -> Option<&Selected> {
        match self {
            Self::Selected(_, s) => Some(s.as_ref()),
            _ => None,
        }
    }

    /// The selected mailbox, mutably.
    pub(crate) fn sel_mut(&mut self) -> Option<&mut Selected> {
        match self {
            Self::Selected(_, s) => Some(s.as_mut()),
            _ => None,
        }
    }

    /// The user and the selected mailbox at once (APPEND to the selected mailbox).
    pub(crate) fn parts_mut(&mut self) -> (Option<&User>, Option<&mut Selected>) {
        match self {
            Self::Authenticated(u) => (Some(u), None),
            Self::Selected(u, s) => (Some(u), Some(s.as_mut())),
            Self::NotAuthenticated | Self::Logout => (None, None),
        }
    }

    /// Leaves the selected state (UNSELECT, CLOSE, SELECT of another mailbox, DELETE or
    /// RENAME of the selected one), returning the mailbox that was selected.
    pub(crate) fn unselect(&mut self) -> Option<Selected> {
        if !matches!(self, Self::Selected(..)) {
            return None;
        }
        match std::mem::replace(self, Self::Logout) {
            Self::Selected(u, s) => {
                *self = Self::Authenticated(u);
                Some(*s)
            }
            other => {
                *self = other;
                None
            }
        }
    }

    /// Enters the selected state with `sel` (only from a logged-in state).
    pub(crate) fn select(&mut self, sel: Selected) {
        self.unselect();
        if let Self::Authenticated(_) = self
            && let Self::Authenticated(u) = std::mem::replace(self, Self::Logout)
        {
            *self = Self::Selected(u, Box::new(sel));
        }
    }
}

/// One IMAP session.
pub struct Session {
    pub(crate) cfg: SessionConfig,
    /// TLS is active.
    pub tls: bool,
    /// The client is on a trusted network (plaintext login allowed).
    pub trusted: bool,
    /// COMPRESS=DEFLATE is active.
    pub compressed: bool,
    pub(crate) enabled: Enabled,
    pub(crate) state: State,
    pub(crate) pending: Option<PendingFetch>,
    /// The tag of the IDLE in progress (see `idle.rs`).
    pub(crate) idling: Option<String>,
    /// NOTIFY (RFC 5465, `notify_set.rs`).
    pub(crate) notify: super::notify_set::NotifyHandle,
    /// What a command rewritten by `cmd::objectid` asks of FETCH and STATUS.
    pub(crate) objectid: crate::imap::cmd::objectid::Hooks,
    /// Shared mailboxes and ACLs (`shared.rs`).
    pub(crate) shared: super::shared::SharedState,
}

/// Maps a store error to a response code and text.
pub(crate) fn store_error(e: &MaildirError) -> Tagged {
    let (code, text) = store_error_parts(e);
    Tagged::no(other(code), text)
}

/// The response code and text for a store error.
pub(crate) fn store_error_parts(e: &MaildirError) -> (&'static str, String) {
    match e {
        MaildirError::NoSuchFolder(_) => ("NONEXISTENT", "No such mailbox".to_owned()),
        MaildirError::FolderExists(_) => ("ALREADYEXISTS", "Mailbox exists".to_owned()),
        MaildirError::NotPermitted(t) => ("CANNOT", t.clone()),
        MaildirError::Expunged(_) => ("EXPUNGEISSUED", "Message was expunged".to_owned()),
        MaildirError::Name { source, .. } => ("CANNOT", format!("Invalid mailbox name: {source}")),
        MaildirError::LockTimeout { .. } => ("INUSE", "Mailbox is busy, try again".to_owned()),
        e if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
            ("NONEXISTENT", "No such mailbox".to_owned())
        }
        e if e.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => {
            ("ALREADYEXISTS", "Mailbox exists".to_owned())
        }
        e => {
            tracing::warn!(error = %e, "mailbox store error");
            ("SERVERBUG", "Internal error, try again later".to_owned())
        }
    }
}

/// Maildir flags from wire flags; `Err` for flags that cannot be stored.
pub(crate) fn to_store_flags(flags: &[Flag<'_>]) -> Result<Flags, String> {
    let mut f = Flags::default();
    for fl in flags {
        match fl {
            Flag::Seen => f.seen = true,
            Flag::Answered => f.answered = true,
            Flag::Flagged => f.flagged = true,
            Flag::Deleted => f.deleted = true,
            Flag::Draft => f.draft = true,
            Flag::Keyword(k) => {
                let k = k.as_ref();
                if !postern_maildir::flags::is_valid_keyword(k) {
                    return Err(format!("Invalid keyword {k}"));
                }
                if !f.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                    f.keywords.push(k.to_owned());
                }
            }
            Flag::Extension(_) => {
                // \Recent and unknown system flags cannot be stored; ignore \Recent.
                let s = fl.to_string();
                if !s.eq_ignore_ascii_case("\\Recent") {
                    return Err(format!("Flag {s} cannot be stored"));
                }
            }
        }
    }
    Ok(f)
}

/// Wire flags of a message (plus \Recent).
pub(crate) fn fetch_flags(meta: &MessageMeta, recent: bool) -> Vec<FlagFetch<'static>> {
    let f = &meta.flags;
    let mut v = Vec::new();
    for (on, flag) in [
        (f.answered, Flag::Answered),
        (f.flagged, Flag::Flagged),
        (f.deleted, Flag::Deleted),
        (f.seen, Flag::Seen),
        (f.draft, Flag::Draft),
    ] {
        if on {
            v.push(FlagFetch::Flag(flag));
        }
    }
    for k in &f.keywords {
        if let Ok(a) = imap_codec::imap_types::core::Atom::try_from(k.clone()) {
            v.push(FlagFetch::Flag(Flag::Keyword(a)));
        }
    }
    if recent {
        v.push(FlagFetch::Recent);
    }
    v
}

/// Flags as text: `\Seen \Flagged $Junk`.
fn flags_text(keywords: &BTreeSet<String>) -> String {
    let mut s = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
    for k in keywords {
        s.push(' ');
        s.push_str(k);
    }
    s
}

/// Merged, sorted inclusive ranges of a sequence set (`*` = `largest`).
pub(crate) use postern_imap_message::sequence_ranges as ranges;

fn has_asterisk(set: &SequenceSet) -> bool {
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(a) => matches!(a, SeqOrUid::Asterisk),
        Sequence::Range(a, b) => matches!(a, SeqOrUid::Asterisk) || matches!(b, SeqOrUid::Asterisk),
    })
}

impl Session {
    /// A new, not yet authenticated session.
    pub fn new(cfg: SessionConfig, tls: bool, trusted: bool) -> Self {
        Self {
            cfg,
            tls,
            trusted,
            compressed: false,
            enabled: Enabled::default(),
            state: State::NotAuthenticated,
            pending: None,
            idling: None,
            notify: super::notify_set::NotifyHandle::default(),
            objectid: Default::default(),
            shared: Default::default(),
        }
    }

    /// True once logged in.
    pub fn is_authenticated(&self) -> bool {
        self.state.user().is_some()
    }

    /// True if plaintext authentication is allowed now.
    pub fn plaintext_ok(&self) -> bool {
        self.tls || self.trusted
    }

    /// The directory of the selected mailbox (what IDLE watches).
    pub fn selected_dir(&self) -> Option<std::path::PathBuf> {
        self.state.sel().map(|s| s.mbox.path().to_path_buf())
    }

    /// The capability list for the current state.
    pub fn capabilities(&self) -> Vec<String> {
        let mut c: Vec<String> = [
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if self.state.user().is_none() {
            if self.cfg.starttls && !self.tls {
                c.push("STARTTLS".into());
            }
            if self.plaintext_ok() {
                c.push("AUTH=PLAIN".into());
                c.push("AUTH=LOGIN".into());
            } else {
                c.push("LOGINDISABLED".into());
            }
            return c;
        }
        c.retain(|x| x != "SASL-IR");
        for x in [
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "CHILDREN",
            "SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "CONDSTORE",
            "QRESYNC",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "SORT",
            "SORT=DISPLAY",
            "THREAD=REFERENCES",
            "THREAD=ORDEREDSUBJECT",
            "BINARY",
            "STATUS=SIZE",
            "WITHIN",
            "METADATA",
            "METADATA-SERVER",
            "UTF8=ACCEPT",
            "ACL",
            "RIGHTS=texk",
            "NOTIFY",
            "MULTIAPPEND",
            "CATENATE",
            "CREATE-SPECIAL-USE",
            "OBJECTID",
            "SAVEDATE",
            "PREVIEW",
            "SEARCHRES",
            "UIDONLY",
        ] {
            c.push(x.into());
        }
        c.push(format!("APPENDLIMIT={}", self.cfg.append_limit));
        if !self.compressed {
            c.push("COMPRESS=DEFLATE".into());
        }
        c
    }

    /// `CAPABILITY a b c` for codes and untagged responses.
    pub fn capability_text(&self) -> String {
        format!("CAPABILITY {}", self.capabilities().join(" "))
    }

    /// The greeting line.
    pub fn greeting(&self) -> Vec<u8> {
        let mut out = Vec::new();
        untagged(
            &mut out,
            &format!(
                "OK [{}] {} ready",
                self.capability_text(),
                self.cfg.hostname
            ),
        );
        out
    }

    /// True if names are UTF-8 on the wire for this client.
    pub(crate) fn utf8(&self) -> bool {
        self.enabled.utf8 || self.enabled.rev2
    }

    /// Logs in (after authd said yes): creates the special-use folders on first login.
    pub fn login(&mut self, user: User) {
        ensure_special_use(&user.maildir);
        self.state = State::Authenticated(user);
    }

    // ----- small helpers -----

    /// Tagged OK after sending pending mailbox updates (EXPUNGE allowed).
    pub(crate) fn done(
        &mut self,
        out: &mut Vec<u8>,
        text: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Tagged {
        self.sync(out, true);
        Tagged::ok(text)
    }

    /// Tagged OK with a code, after updates.
    pub(crate) fn done_code(
        &mut self,
        out: &mut Vec<u8>,
        code: Code<'static>,
        text: &'static str,
        expunge_ok: bool,
    ) -> Tagged {
        self.sync(out, expunge_ok);
        Tagged::ok_code(code, text)
    }

    /// Resolves a sequence set to (seq, uid) pairs in the client's view. `Err` for sequence
    /// numbers beyond the mailbox.
    pub(crate) fn resolve(
        &self,
        set: &SequenceSet,
        uid: bool,
    ) -> Result<Vec<(u32, u32)>, &'static str> {
        let Some(sel) = self.state.sel() else {
            return Ok(Vec::new());
        };
        let n = u32::try_from(sel.uids.len()).unwrap_or(u32::MAX);
        let mut outv = Vec::new();
        if uid {
            let largest = sel.uids.last().copied().unwrap_or(0);
            for (a, b) in ranges(set, largest) {
                let start = sel.uids.partition_point(|&u| u < a);
                for (i, &u) in sel.uids.iter().enumerate().skip(start) {
                    if u > b {
                        break;
                    }
                    outv.push((u32::try_from(i + 1).unwrap_or(u32::MAX), u));
                }
            }
        } else {
            if n == 0 && has_asterisk(set) {
                return Ok(outv);
            }
            for (a, b) in ranges(set, n) {
                if b > n || a == 0 {
                    return Err("Invalid message sequence number");
                }
                for s in a..=b {
                    outv.push((s, sel.uids[(s - 1) as usize]));
                }
            }
        }
        Ok(outv)
    }

    // ----- mailbox updates -----

    /// Syncs the selected mailbox with the store and reports changes: EXISTS, RECENT, FETCH
    /// for flag changes and, when `expunge_ok`, EXPUNGE (or VANISHED under QRESYNC).
    pub fn sync(&mut self, out: &mut Vec<u8>, expunge_ok: bool) {
        let qresync = self.enabled.vanished();
        let condstore = self.enabled.condstore;
        let rev2 = self.enabled.rev2;
        let uidonly = self.enabled.uidonly;
        let Some(sel) = self.state.sel_mut() else {
            return;
        };
        sel.pull();
        let changed = std::mem::take(&mut sel.changed);
        if expunge_ok && !sel.gone.is_empty() {
            announce_expunges(sel, out, qresync);
        }
        let last = sel.uids.last().copied().unwrap_or(0);
        let msgs = sel.mbox.messages();
        let start = msgs.partition_point(|m| m.uid <= last);
        let grew = start < msgs.len();
        sel.uids.extend(msgs[start..].iter().map(|m| m.uid));
        let mut new_kw = false;
        for uid in changed
            .iter()
            .chain(sel.uids[sel.uids.len() - (msgs.len() - start)..].iter())
        {
            if let Some(m) = sel.mbox.get(*uid) {
                for k in &m.flags.keywords {
                    if !sel.keywords.contains(k) {
                        sel.keywords.insert(k.clone());
                        new_kw = true;
                    }
                }
            }
        }
        if new_kw {
            untagged(out, &format!("FLAGS ({})", flags_text(&sel.keywords)));
        }
        if grew {
            // IMAP4rev2 has no \Recent: such a session claims nothing.
            if !rev2 {
                if sel.read_only {
                    // EXAMINE: the new messages no session has claimed, left unclaimed.
                    let first_new = sel.uids[sel.uids.len() - (msgs.len() - start)];
                    let new = sel.mbox.unclaimed_recent_uids();
                    sel.recent
                        .extend(new.into_iter().filter(|u| *u >= first_new));
                } else {
                    sel.recent.extend(sel.mbox.claim_recent());
                }
            }
            untagged(out, &format!("{} EXISTS", sel.uids.len()));
            if !rev2 {
                untagged(out, &format!("{} RECENT", sel.recent.len()));
            }
        }
        for uid in &changed {
            if sel.gone.contains(uid) {
                continue;
            }
            let (Some(seq), Some(meta)) = (sel.seq_of(*uid), sel.mbox.get(*uid)) else {
                continue;
            };
            flag_update(out, seq, meta, sel.recent.contains(uid), condstore, uidonly);
        }
    }
}

/// `* n FETCH (UID u FLAGS (…) [MODSEQ (m)])`; under UIDONLY `* u UIDFETCH (FLAGS (…) …)`.
pub(crate) fn flag_update(
    out: &mut Vec<u8>,
    seq: u32,
    meta: &MessageMeta,
    recent: bool,
    modseq: bool,
    uidonly: bool,
) {
    use imap_codec::imap_types::fetch::MessageDataItem;
    let Some(seq) = std::num::NonZeroU32::new(seq) else {
        return;
    };
    let Some(uid) = std::num::NonZeroU32::new(meta.uid) else {
        return;
    };
    let mut items = vec![MessageDataItem::Flags(fetch_flags(meta, recent))];
    if !uidonly {
        items.insert(0, MessageDataItem::Uid(uid));
    }
    if modseq && let Some(m) = std::num::NonZeroU64::new(meta.modseq) {
        items.push(MessageDataItem::ModSeq(m));
    }
    if let Ok(items) = Vec1::try_from(items) {
        let at = out.len();
        resp::data(out, Data::Fetch { seq, items });
        if uidonly {
            super::cmd::uidonly::to_uidfetch(out, at, uid.get());
        }
    }
}

/// Sends EXPUNGE (descending, so numbers stay valid) or one VANISHED for `sel.gone`, and
/// removes those messages from the view.
pub(crate) fn announce_expunges(sel: &mut Selected, out: &mut Vec<u8>, qresync: bool) {
    let gone = std::mem::take(&mut sel.gone);
    let present: Vec<u32> = gone
        .iter()
        .copied()
        .filter(|u| sel.seq_of(*u).is_some())
        .collect();
    if present.is_empty() {
        return;
    }
    if qresync {
        untagged(out, &format!("VANISHED {}", num_set(&present)));
    } else {
        let mut seqs: Vec<u32> = present.iter().filter_map(|u| sel.seq_of(*u)).collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        for s in seqs {
            let _ = writeln!(resp::Lit(out), "* {s} EXPUNGE\r");
        }
    }
    sel.uids.retain(|u| !gone.contains(u));
    for u in &present {
        sel.recent.remove(u);
    }
}

/// Creates the special-use folders and subscribes them, once: the `subscriptions` file marks
/// a Maildir that has been logged into.
pub(crate) fn ensure_special_use(md: &Maildir) {
    if md.root().join("subscriptions").exists() {
        return;
    }
    let _ = md.set_subscribed("INBOX", true);
    for (name, _) in names::SPECIAL_USE {
        match md.create_folder(name) {
            Ok(_) => {
                let _ = md.set_subscribed(name, true);
            }
            Err(e) => tracing::warn!(error = %e, folder = name, "cannot create special-use folder"),
        }
    }
}

/// A name's parent names (`a/b/c` → `a`, `a/b`).
pub(crate) fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(SEP).map(move |(i, _)| &name[..i])
}

/// STATUS item text for a mailbox.
pub(crate) fn status_items(mbox: &Mailbox, items: &[StatusDataItemName], recent: u32) -> String {
    let msgs = mbox.messages();
    let mut parts = Vec::new();
    for it in items {
        match it {
            StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", msgs.len())),
            StatusDataItemName::Recent => parts.push(format!("RECENT {recent}")),
            StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", mbox.uid_next())),
            StatusDataItemName::UidValidity => {
                parts.push(format!("UIDVALIDITY {}", mbox.uid_validity()));
            }
            StatusDataItemName::Unseen => parts.push(format!(
                "UNSEEN {}",
                msgs.iter().filter(|m| !m.flags.seen).count()
            )),
            StatusDataItemName::Deleted => parts.push(format!(
                "DELETED {}",
                msgs.iter().filter(|m| m.flags.deleted).count()
            )),
            StatusDataItemName::DeletedStorage => parts.push(format!(
                "DELETED-STORAGE {}",
                msgs.iter()
                    .filter(|m| m.flags.deleted)
                    .map(|m| m.size)
                    .sum::<u64>()
            )),
            StatusDataItemName::Size => {
                parts.push(format!("SIZE {}", msgs.iter().map(|m| m.size).sum::<u64>()));
            }
            StatusDataItemName::HighestModSeq => {
                parts.push(format!("HIGHESTMODSEQ {}", mbox.highest_modseq()));
            }
        }
    }
    parts.join(" ")
}
