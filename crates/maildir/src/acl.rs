//! Access control lists (RFC 4314) stored the way Dovecot's `acl` plugin stores them, and the
//! index of who shares mailboxes with whom (Dovecot's `shared-mailboxes` dictionary).
//!
//! ## `dovecot-acl`
//!
//! Each mailbox directory (the Maildir root for INBOX, `.A.B` for `A/B`) may hold a
//! `dovecot-acl` file, Dovecot's `vfile` backend format: one entry per line,
//! `<identifier> <rights>`, e.g.
//!
//! ```text
//! owner lrwstipekxa
//! user=bob@example.org lrs
//! -user=eve@example.org w
//! anyone l
//! ```
//!
//! Identifiers: `owner`, `anyone`, `authenticated`, `user=<name>`, `group=<name>`,
//! `group-override=<name>`; a leading `-` makes the entry negative (the rights are taken
//! away). Rights are Dovecot's letters, which are RFC 4314's (`l r w s t i p e k x a`). Lines
//! starting with `#` and empty lines are ignored. The file is written under Dovecot's dotlock
//! (`dovecot-acl.lock`), fsynced and renamed into place ([`write_acl`]).
//!
//! **Deny by default.** A missing file grants nothing to anyone but the owner. A file that is
//! too large ([`MAX_ACL_BYTES`], [`MAX_ENTRIES`]), not UTF-8, or has any line this parser does
//! not understand (named ACLs `:name`, unknown rights) is refused as a whole: skipping one
//! bad line could drop a *negative* entry and so grant more than the owner meant. The owner
//! always has every right on their own mailboxes (Dovecot's default).
//!
//! ## The sharing index
//!
//! Finding the mailboxes shared with a user must not scan every home. Like Dovecot
//! (`acl_sharing_map`), one dictionary records which owners granted the lookup right (`l`) to
//! whom: keys `shared/shared-boxes/user/<grantee>/<owner>` and
//! `shared/shared-boxes/anyone/<owner>` (also for `authenticated`), value `1`, in Dovecot's
//! `file` dict format (key line, value line). It only says *where to look*: rights always
//! come from the mailboxes' `dovecot-acl` files, so a stale entry grants nothing and costs one
//! look at that owner's folders. After an ACL changes, [`SharedIndex::set_owner`] replaces all
//! of the owner's entries with what the owner's ACL files now say ([`lookup_grantees`]).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dotlock::DotLock;
use crate::error::{IoContext, MaildirError, Result};
use crate::store::Maildir;

/// The sharing index's file name, in the mail root (`[paths] mail_root`), where imapd (as the
/// mail user) may write; the leading dot keeps it apart from the domain directories.
pub const INDEX_FILE: &str = ".shared-mailboxes";
/// The ACL file in a mailbox directory (Dovecot's name).
pub const ACL_FILE: &str = "dovecot-acl";
/// Largest ACL file read (a bigger one grants nothing).
pub const MAX_ACL_BYTES: u64 = 256 * 1024;
/// Most entries in one ACL.
pub const MAX_ENTRIES: usize = 1000;
/// Longest identifier name (a user address).
pub const MAX_ID_BYTES: usize = 255;
/// Largest sharing index read.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;
/// How long to wait for a lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// A lock untouched for this long is stale.
const LOCK_STALE: Duration = Duration::from_secs(120);

/// RFC 4314's rights in its canonical order (§2.1), with their bits.
const RIGHTS: [(char, u16); 11] = [
    ('l', 1),
    ('r', 1 << 1),
    ('s', 1 << 2),
    ('w', 1 << 3),
    ('i', 1 << 4),
    ('p', 1 << 5),
    ('k', 1 << 6),
    ('x', 1 << 7),
    ('t', 1 << 8),
    ('e', 1 << 9),
    ('a', 1 << 10),
];

/// Dovecot's order when it writes `dovecot-acl` (`lrwstipekxa`).
const DOVECOT_ORDER: &str = "lrwstipekxa";

/// A set of RFC 4314 rights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rights(u16);

impl Rights {
    /// No rights.
    pub const NONE: Self = Self(0);
    /// Every right (what an owner has).
    pub const ALL: Self = Self(0x7ff);

    fn bit(c: char) -> Option<u16> {
        RIGHTS.iter().find(|(r, _)| *r == c).map(|(_, b)| *b)
    }

    /// One right by its letter (`l r s w i p k x t e a`).
    pub fn of(c: char) -> Option<Self> {
        Self::bit(c).map(Self)
    }

    /// Rights from an IMAP rights string (RFC 4314 §2.1): the eleven letters, plus the
    /// obsolete `c` (= `k x`) and `d` (= `x t e`) of RFC 2086 (§2.1.1). `Err(c)` names the
    /// first character that is not a right (the command is then `BAD`, §3.1).
    pub fn parse_imap(s: &str) -> std::result::Result<Self, char> {
        let mut bits = 0;
        for c in s.chars() {
            bits |= match c {
                'c' => Self::bit('k').unwrap_or(0) | Self::bit('x').unwrap_or(0),
                'd' => {
                    Self::bit('x').unwrap_or(0)
                        | Self::bit('t').unwrap_or(0)
                        | Self::bit('e').unwrap_or(0)
                }
                c => Self::bit(c).ok_or(c)?,
            };
        }
        Ok(Self(bits))
    }

    /// Rights from a `dovecot-acl` line: only the eleven letters.
    pub fn parse_dovecot(s: &str) -> Option<Self> {
        let mut bits = 0;
        for c in s.chars() {
            bits |= Self::bit(c)?;
        }
        Some(Self(bits))
    }

    /// True if every right of `other` is here.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if the letter's right is here.
    pub fn has(self, c: char) -> bool {
        Self::bit(c).is_some_and(|b| self.0 & b != 0)
    }

    /// True if any right of `other` is here.
    pub fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Both sets.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These rights without `other`'s.
    #[must_use]
    pub fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// No right at all.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// RFC 4314 order (`lrswipkxtea`).
    pub fn imap_string(self) -> String {
        RIGHTS
            .iter()
            .filter(|(_, b)| self.0 & b != 0)
            .map(|(c, _)| *c)
            .collect()
    }

    /// The IMAP form with the obsolete `c` and `d` added where their rights are all present
    /// (for RFC 2086 clients; RFC 4314 §2.1.1), as Dovecot does.
    pub fn imap_string_compat(self) -> String {
        let mut s = self.imap_string();
        if self.contains(Self::parse_imap("kx").unwrap_or_default()) {
            s.push('c');
        }
        if self.contains(Self::parse_imap("xte").unwrap_or_default()) {
            s.push('d');
        }
        s
    }

    /// Dovecot's order (`lrwstipekxa`).
    pub fn dovecot_string(self) -> String {
        DOVECOT_ORDER.chars().filter(|c| self.has(*c)).collect()
    }
}

/// Who an entry is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identifier {
    /// The mailbox's owner.
    Owner,
    /// Every user, logged in or not.
    Anyone,
    /// Every logged-in user.
    Authenticated,
    /// One user (an address).
    User(String),
    /// A group (kept as it is; Postern has no groups, so it matches nobody).
    Group(String),
    /// A Dovecot override group (kept as it is; matches nobody here).
    GroupOverride(String),
}

/// Why an identifier name was refused.
pub fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty identifier");
    }
    if name.len() > MAX_ID_BYTES {
        return Err("identifier too long");
    }
    if name.starts_with('-') {
        return Err("identifier starts with '-'");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '/' || c == '"' || c == '\\')
    {
        return Err("identifier contains a space, control character, '/', '\"' or '\\'");
    }
    if name == "." || name == ".." || name.contains("..") {
        return Err("identifier contains '..'");
    }
    Ok(())
}

impl Identifier {
    /// An IMAP identifier (RFC 4314 §2): `anyone`, `authenticated`, `owner`, or a user name
    /// (without the `-` prefix, which the caller strips).
    pub fn from_imap(s: &str) -> std::result::Result<Self, &'static str> {
        if s.eq_ignore_ascii_case("anyone") {
            return Ok(Self::Anyone);
        }
        if s.eq_ignore_ascii_case("authenticated") {
            return Ok(Self::Authenticated);
        }
        if s.eq_ignore_ascii_case("owner") {
            return Ok(Self::Owner);
        }
        if let Some(g) = s.strip_prefix('$') {
            check_name(g)?;
            return Ok(Self::Group(g.to_owned()));
        }
        check_name(s)?;
        Ok(Self::User(s.to_owned()))
    }

    /// The IMAP form.
    pub fn imap(&self) -> String {
        match self {
            Self::Owner => "owner".into(),
            Self::Anyone => "anyone".into(),
            Self::Authenticated => "authenticated".into(),
            Self::User(u) => u.clone(),
            Self::Group(g) | Self::GroupOverride(g) => format!("${g}"),
        }
    }

    /// The `dovecot-acl` form.
    pub fn dovecot(&self) -> String {
        match self {
            Self::Owner => "owner".into(),
            Self::Anyone => "anyone".into(),
            Self::Authenticated => "authenticated".into(),
            Self::User(u) => format!("user={u}"),
            Self::Group(g) => format!("group={g}"),
            Self::GroupOverride(g) => format!("group-override={g}"),
        }
    }

    fn from_dovecot(s: &str) -> Option<Self> {
        let named = |n: &str| check_name(n).ok().map(|()| n.to_owned());
        Some(match s {
            "owner" => Self::Owner,
            "anyone" => Self::Anyone,
            "authenticated" => Self::Authenticated,
            _ => {
                if let Some(u) = s.strip_prefix("user=") {
                    Self::User(named(u)?)
                } else if let Some(g) = s.strip_prefix("group-override=") {
                    Self::GroupOverride(named(g)?)
                } else if let Some(g) = s.strip_prefix("group=") {
                    Self::Group(named(g)?)
                } else {
                    return None;
                }
            }
        })
    }

    /// Whether this entry is about `user` (who is or is not the mailbox's owner).
    fn matches(&self, user: &str, is_owner: bool) -> bool {
        match self {
            Self::Owner => is_owner,
            Self::Anyone | Self::Authenticated => true,
            Self::User(u) => u.eq_ignore_ascii_case(user),
            Self::Group(_) | Self::GroupOverride(_) => false,
        }
    }
}

/// One ACL entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Negative rights (`-user=…`): taken away.
    pub negative: bool,
    /// Whom it is about.
    pub id: Identifier,
    /// The rights.
    pub rights: Rights,
}

impl Entry {
    /// The IMAP identifier, with `-` for negative rights.
    pub fn imap_id(&self) -> String {
        format!("{}{}", if self.negative { "-" } else { "" }, self.id.imap())
    }
}

/// Why an ACL file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// Larger than [`MAX_ACL_BYTES`] or more than [`MAX_ENTRIES`] entries.
    #[error("ACL too large")]
    TooLarge,
    /// A line this parser does not understand.
    #[error("ACL line {0} not understood")]
    BadLine(usize),
    /// Not UTF-8.
    #[error("ACL is not UTF-8")]
    NotText,
}

/// A mailbox's access control list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    /// The entries, at most one per (negative, identifier).
    pub entries: Vec<Entry>,
}

impl Acl {
    /// Parses a `dovecot-acl` file strictly (see the module documentation).
    pub fn parse(text: &str) -> std::result::Result<Self, AclError> {
        if text.len() as u64 > MAX_ACL_BYTES {
            return Err(AclError::TooLarge);
        }
        let mut acl = Self::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if acl.entries.len() >= MAX_ENTRIES {
                return Err(AclError::TooLarge);
            }
            let mut parts = line.split_ascii_whitespace();
            // Exactly an identifier and its rights: anything more (Dovecot's named ACLs) or
            // less is not understood.
            let (Some(id), Some(rights), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(AclError::BadLine(i + 1));
            };
            let (negative, id) = match id.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, id),
            };
            let id = Identifier::from_dovecot(id).ok_or(AclError::BadLine(i + 1))?;
            let rights = Rights::parse_dovecot(rights).ok_or(AclError::BadLine(i + 1))?;
            acl.set(negative, id, rights);
        }
        Ok(acl)
    }

    /// The `dovecot-acl` text (sorted, one entry per line).
    pub fn render(&self) -> String {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| (&a.id, a.negative).cmp(&(&b.id, b.negative)));
        let mut s = String::new();
        for e in entries {
            if e.rights.is_empty() {
                continue;
            }
            s.push_str(if e.negative { "-" } else { "" });
            s.push_str(&e.id.dovecot());
            s.push(' ');
            s.push_str(&e.rights.dovecot_string());
            s.push('\n');
        }
        s
    }

    /// The entry for an identifier.
    pub fn get(&self, negative: bool, id: &Identifier) -> Option<Rights> {
        self.entries
            .iter()
            .find(|e| e.negative == negative && e.id == *id)
            .map(|e| e.rights)
    }

    /// Sets (replaces) an entry; empty rights remove it.
    pub fn set(&mut self, negative: bool, id: Identifier, rights: Rights) {
        self.entries
            .retain(|e| !(e.negative == negative && e.id == id));
        if !rights.is_empty() {
            self.entries.push(Entry {
                negative,
                id,
                rights,
            });
        }
    }

    /// Removes an entry; `true` if there was one.
    pub fn remove(&mut self, negative: bool, id: &Identifier) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.negative == negative && e.id == *id));
        before != self.entries.len()
    }

    /// The rights `user` has (RFC 4314 §2: the union of the matching positive entries minus
    /// the union of the matching negative ones). The owner has every right.
    pub fn rights_for(&self, user: &str, is_owner: bool) -> Rights {
        if is_owner {
            return Rights::ALL;
        }
        let mut plus = Rights::NONE;
        let mut minus = Rights::NONE;
        for e in &self.entries {
            if e.id.matches(user, false) {
                if e.negative {
                    minus = minus.union(e.rights);
                } else {
                    plus = plus.union(e.rights);
                }
            }
        }
        plus.minus(minus)
    }
}

/// Reads the ACL of a mailbox directory: empty when there is no file; `Err` for a file that
/// cannot be read or is refused (callers grant nothing then).
pub fn read_acl(dir: &Path) -> Result<std::result::Result<Acl, AclError>> {
    read_acl_counted(dir).map(|(a, _)| a)
}

/// As [`read_acl`], with the number of bytes read.
fn read_acl_counted(dir: &Path) -> Result<(std::result::Result<Acl, AclError>, u64)> {
    let path = dir.join(ACL_FILE);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Ok(Acl::default()), 0)),
        Err(e) => return Err(MaildirError::io("open", &path, e)),
    };
    let mut buf = Vec::new();
    f.take(MAX_ACL_BYTES + 1)
        .read_to_end(&mut buf)
        .ctx("read", &path)?;
    let n = buf.len() as u64;
    if n > MAX_ACL_BYTES {
        return Ok((Err(AclError::TooLarge), n));
    }
    Ok((
        match String::from_utf8(buf) {
            Ok(t) => Acl::parse(&t),
            Err(_) => Err(AclError::NotText),
        },
        n,
    ))
}

/// Changes the ACL of a mailbox directory under Dovecot's dotlock: `change` gets the current
/// ACL (an unreadable one is an error: it is not silently replaced) and edits it; the result
/// is written to the lock file, fsynced and renamed over `dovecot-acl`. An empty ACL removes
/// the file. Returns the new ACL.
pub fn update_acl(dir: &Path, mode: u32, change: impl FnOnce(&mut Acl)) -> Result<Acl> {
    let path = dir.join(ACL_FILE);
    if !dir.is_dir() {
        return Err(MaildirError::io(
            "open",
            dir,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let lock = DotLock::acquire(&path, LOCK_WAIT, LOCK_STALE, mode)?;
    let mut acl = read_acl(dir)?
        .map_err(|e| MaildirError::NotPermitted(format!("the existing ACL cannot be used: {e}")))?;
    change(&mut acl);
    let text = acl.render();
    // Never write what the reader refuses (it would then grant nothing and refuse every
    // later change: a holder of "a" could break the owner's ACL for good).
    if text.len() as u64 > MAX_ACL_BYTES || acl.entries.len() > MAX_ENTRIES {
        return Err(MaildirError::NotPermitted(format!(
            "the ACL would be over {MAX_ENTRIES} entries or {MAX_ACL_BYTES} bytes"
        )));
    }
    if text.is_empty() {
        match std::fs::remove_file(&path) {
            Ok(()) => crate::fsutil::fsync_dir(dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(MaildirError::io("remove", &path, e)),
        }
        drop(lock);
    } else {
        lock.replace(text.as_bytes())?;
    }
    Ok(acl)
}

impl Maildir {
    /// The ACL of a folder (see [`read_acl`]); `Ok(Err(_))` for a refused file.
    pub fn acl(&self, folder: &str) -> Result<std::result::Result<Acl, AclError>> {
        let dir = self.mailbox_dir(Some(folder))?;
        read_acl(&dir)
    }

    /// The rights `user` has on `folder` of this Maildir, whose owner is `owner`: every right
    /// for the owner, the ACL's for others, nothing when the folder does not exist or its ACL
    /// is refused.
    pub fn rights(&self, folder: &str, owner: &str, user: &str) -> Rights {
        self.rights_counted(folder, owner, user).0
    }

    /// As [`Maildir::rights`], with the bytes of ACL file read (for callers that bound the
    /// work one command may cause: an ACL file is up to [`MAX_ACL_BYTES`] and
    /// [`MAX_ENTRIES`] entries, a few milliseconds to parse).
    pub fn rights_counted(&self, folder: &str, owner: &str, user: &str) -> (Rights, u64) {
        if owner.eq_ignore_ascii_case(user) {
            return (Rights::ALL, 0);
        }
        let Ok(dir) = self.mailbox_dir(Some(folder)) else {
            return (Rights::NONE, 0);
        };
        if !dir.is_dir() {
            return (Rights::NONE, 0);
        }
        match read_acl_counted(&dir) {
            Ok((Ok(acl), n)) => (acl.rights_for(user, false), n),
            Ok((Err(_), n)) => (Rights::NONE, n),
            Err(_) => (Rights::NONE, 0),
        }
    }

    /// Changes a folder's ACL (see [`update_acl`]).
    pub fn update_acl(&self, folder: &str, change: impl FnOnce(&mut Acl)) -> Result<Acl> {
        let dir = self.mailbox_dir(Some(folder))?;
        update_acl(&dir, self.file_mode(), change)
    }
}

/// Who the owner of `md` lets look up (`l`) at least one mailbox: index keys `user/<name>` and
/// `anyone` (for both `anyone` and `authenticated`). Folders whose ACL is refused count for
/// nobody. At most `max_folders` folders are read.
///
/// An owner who lets more than [`MAX_INDEXED_GRANTEES`] names look something up is indexed
/// as `anyone` (so are owners who grant `anyone`: the named keys would add nothing): every
/// user's LIST then looks at that owner's folders, where the ACLs decide as always, and one
/// owner's entries stay small — ACL names need not be accounts, and 1000 names per folder
/// over many folders would otherwise fill the index past [`MAX_INDEX_BYTES`], after which
/// nobody's entries could be read or rewritten.
pub fn lookup_grantees(md: &Maildir, max_folders: usize) -> Result<BTreeSet<String>> {
    let mut folders = vec!["INBOX".to_owned()];
    folders.extend(md.list_folders()?.into_iter().take(max_folders));
    let l = Rights::of('l').unwrap_or_default();
    let mut out = BTreeSet::new();
    for f in folders {
        let Ok(Ok(acl)) = md.acl(&f) else {
            continue;
        };
        for e in acl
            .entries
            .iter()
            .filter(|e| !e.negative && e.rights.contains(l))
        {
            match &e.id {
                Identifier::Anyone | Identifier::Authenticated => {
                    out.insert("anyone".to_owned());
                }
                Identifier::User(u) => {
                    out.insert(format!("user/{}", u.to_ascii_lowercase()));
                }
                _ => {}
            }
            if out.len() > MAX_INDEXED_GRANTEES || out.contains("anyone") {
                return Ok(BTreeSet::from(["anyone".to_owned()]));
            }
        }
    }
    Ok(out)
}

/// Most named grantees indexed for one owner (see [`lookup_grantees`]).
pub const MAX_INDEXED_GRANTEES: usize = 256;

/// The sharing index (see the module documentation): a Dovecot `file` dictionary.
#[derive(Debug, Clone)]
pub struct SharedIndex {
    path: PathBuf,
    mode: u32,
}

const KEY_PREFIX: &str = "shared/shared-boxes/";

impl SharedIndex {
    /// The index at `path` (created on first write with file mode `mode`).
    pub fn at(path: impl Into<PathBuf>, mode: u32) -> Self {
        Self {
            path: path.into(),
            mode,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every `(grantee key, owner)` pair: grantee key `user/<name>` or `anyone`. A missing
    /// file is empty; an oversized or malformed one is an error.
    pub fn entries(&self) -> Result<Vec<(String, String)>> {
        let f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(MaildirError::io("open", &self.path, e)),
        };
        let mut buf = Vec::new();
        f.take(MAX_INDEX_BYTES + 1)
            .read_to_end(&mut buf)
            .ctx("read", &self.path)?;
        let bad = |why: &str| MaildirError::NotPermitted(format!("sharing index: {why}"));
        if buf.len() as u64 > MAX_INDEX_BYTES {
            return Err(bad("too large"));
        }
        let text = String::from_utf8(buf).map_err(|_| bad("not UTF-8"))?;
        let mut out = Vec::new();
        let mut lines = text.lines();
        while let Some(key) = lines.next() {
            let _value = lines.next().ok_or_else(|| bad("a key without a value"))?;
            let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
                continue;
            };
            if let Some(owner) = rest.strip_prefix("anyone/") {
                if check_name(owner).is_ok() {
                    out.push(("anyone".to_owned(), owner.to_owned()));
                }
            } else if let Some(r) = rest.strip_prefix("user/")
                && let Some((grantee, owner)) = r.split_once('/')
                && check_name(grantee).is_ok()
                && check_name(owner).is_ok()
            {
                out.push((format!("user/{grantee}"), owner.to_owned()));
            }
        }
        Ok(out)
    }

    /// The owners who may have shared something with `user` (deduplicated, sorted).
    pub fn owners_for(&self, user: &str) -> Result<Vec<String>> {
        let me = format!("user/{}", user.to_ascii_lowercase());
        let set: BTreeSet<String> = self
            .entries()?
            .into_iter()
            .filter(|(g, o)| (*g == me || g == "anyone") && !o.eq_ignore_ascii_case(user))
            .map(|(_, o)| o)
            .collect();
        Ok(set.into_iter().collect())
    }

    /// Replaces `owner`'s entries with `grantees` (keys as from [`lookup_grantees`]), under
    /// the index's dotlock, written atomically.
    pub fn set_owner(&self, owner: &str, grantees: &BTreeSet<String>) -> Result<()> {
        check_name(owner).map_err(|why| MaildirError::NotPermitted(why.to_owned()))?;
        // The mail root of a fresh install may not exist before the first Maildir.
        if let Some(dir) = self.path.parent()
            && !dir.exists()
        {
            crate::fsutil::mkdir_parents(dir, 0o700)?;
        }
        let lock = DotLock::acquire(&self.path, LOCK_WAIT, LOCK_STALE, self.mode)?;
        let mut all: BTreeSet<(String, String)> = self
            .entries()?
            .into_iter()
            .filter(|(_, o)| !o.eq_ignore_ascii_case(owner))
            .collect();
        for g in grantees {
            if g == "anyone"
                || g.strip_prefix("user/")
                    .is_some_and(|n| check_name(n).is_ok())
            {
                all.insert((g.clone(), owner.to_ascii_lowercase()));
            }
        }
        let mut text = String::new();
        for (g, o) in &all {
            text.push_str(KEY_PREFIX);
            text.push_str(g);
            text.push('/');
            text.push_str(o);
            text.push_str("\n1\n");
        }
        lock.replace(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Rights {
        Rights::parse_imap(s).unwrap()
    }

    #[test]
    fn rights_parse_and_print_in_rfc_order() {
        // RFC 4314 §2.1: "l r s w i p k x t e a".
        assert_eq!(r("aetxkpiwsrl").imap_string(), "lrswipkxtea");
        assert_eq!(Rights::ALL.imap_string(), "lrswipkxtea");
        assert_eq!(Rights::ALL.dovecot_string(), "lrwstipekxa");
        // §2.1.1: "c" and "d" are the obsolete create/delete rights.
        assert_eq!(r("c").imap_string(), "kx");
        assert_eq!(r("d").imap_string(), "xte");
        assert_eq!(r("lrkx").imap_string_compat(), "lrkxc");
        // §3.1: an unknown right is refused (the command is BAD).
        assert_eq!(Rights::parse_imap("lrz"), Err('z'));
        assert_eq!(Rights::parse_imap("l r"), Err(' '));
        assert_eq!(Rights::parse_imap("0"), Err('0'));
        assert!(Rights::parse_dovecot("lrc").is_none());
    }

    #[test]
    fn dovecot_file_round_trip() {
        let text = "owner lrwstipekxa\nuser=bob@example.org lrs\n-user=eve@example.org w\nanyone l\n# c\n\n";
        let acl = Acl::parse(text).unwrap();
        assert_eq!(acl.entries.len(), 4);
        let out = acl.render();
        assert_eq!(
            out,
            "owner lrwstipekxa\nanyone l\nuser=bob@example.org lrs\n-user=eve@example.org w\n"
        );
        assert_eq!(Acl::parse(&out).unwrap().render(), out);
    }

    #[test]
    fn effective_rights_follow_rfc4314_section_2() {
        // RFC 4314 §2: "the set of rights granted to the user is the union of the positive
        // rights of all matching identifiers minus the negative rights".
        let acl =
            Acl::parse("anyone lr\nuser=bob@example.org lrswi\n-user=bob@example.org w\n").unwrap();
        assert_eq!(
            acl.rights_for("bob@example.org", false).imap_string(),
            "lrsi"
        );
        assert_eq!(
            acl.rights_for("BOB@example.org", false).imap_string(),
            "lrsi"
        );
        assert_eq!(
            acl.rights_for("carol@example.org", false).imap_string(),
            "lr"
        );
        // The owner always has everything.
        assert_eq!(acl.rights_for("alice@example.org", true), Rights::ALL);
        // Groups match nobody here.
        let acl = Acl::parse("group=staff lrswi\n").unwrap();
        assert!(acl.rights_for("staff", false).is_empty());
    }

    #[test]
    fn wrong_files_grant_nothing() {
        for bad in [
            "user=bob lr :named\n",
            "user=bob lrz\n",
            "usr=bob lr\n",
            "user= lr\n",
            "user=../x lr\n",
            "user=bob\n",
        ] {
            assert!(Acl::parse(bad).is_err(), "{bad:?}");
        }
        // 100 000 lines: refused by size, bounded work.
        let huge = "user=bob@example.org lr\n".repeat(100_000);
        let t = std::time::Instant::now();
        assert_eq!(Acl::parse(&huge), Err(AclError::TooLarge));
        // Within the byte limit but over the entry limit.
        let many: String = (0..2000).map(|i| format!("user=u{i} l\n")).collect();
        assert_eq!(Acl::parse(&many), Err(AclError::TooLarge));
        assert!(t.elapsed() < Duration::from_secs(2));

        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(dir.path().join("M"), 0o700).unwrap();
        md.create_folder("Team").unwrap();
        let team = md.folder_dir("Team").unwrap();
        std::fs::write(team.join(ACL_FILE), &huge).unwrap();
        assert!(md.rights("Team", "alice", "bob@example.org").is_empty());
        std::fs::write(team.join(ACL_FILE), b"user=bob@example.org lr\n\xff\n").unwrap();
        assert!(md.rights("Team", "alice", "bob@example.org").is_empty());
        // A negative entry that cannot be read must not be skipped.
        std::fs::write(
            team.join(ACL_FILE),
            "anyone lrw\n-user=bob@example.org w :x\n",
        )
        .unwrap();
        assert!(md.rights("Team", "alice", "bob@example.org").is_empty());
        // Missing folder: nothing.
        assert!(md.rights("Nope", "alice", "bob@example.org").is_empty());
    }

    /// One owner's ACLs (up to [`MAX_ENTRIES`] names of up to 255 bytes per folder, names
    /// that need not be accounts) must not fill the shared index: past [`MAX_INDEX_BYTES`]
    /// nobody's entries could be read or rewritten (every SETACL on the server failing).
    #[test]
    fn one_owner_cannot_fill_the_sharing_index() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(dir.path().join("M"), 0o700).unwrap();
        for f in 0..70 {
            let name = format!("F{f}");
            md.create_folder(&name).unwrap();
            let text: String = (0..900)
                .map(|i| format!("user={:0>240}-{f}-{i} l\n", "x"))
                .collect();
            std::fs::write(md.folder_dir(&name).unwrap().join(ACL_FILE), text).unwrap();
        }
        let idx = SharedIndex::at(dir.path().join(INDEX_FILE), 0o600);
        let g = lookup_grantees(&md, 2000).unwrap();
        idx.set_owner("eve@example.org", &g).unwrap();
        // Another owner's sharing still works, and the index stays small.
        let bob = BTreeSet::from(["user/carol@example.org".to_owned()]);
        idx.set_owner("bob@example.org", &bob).unwrap();
        assert_eq!(idx.owners_for("carol@example.org").unwrap().len(), 2);
        let len = std::fs::metadata(idx.path()).unwrap().len();
        assert!(len < 64 * 1024, "index of {len} bytes");
        // Every grantee still finds eve (the index says where to look).
        let one = format!("{:0>240}-3-7", "x");
        assert!(
            idx.owners_for(&one)
                .unwrap()
                .contains(&"eve@example.org".to_owned())
        );
    }

    #[test]
    fn identifiers_are_checked() {
        for bad in [
            "", "a b", "a\r\nb", "a\0b", "-x", "a/b", "..", "a\"b", "x\\y",
        ] {
            assert!(Identifier::from_imap(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Identifier::from_imap("bob@example.org").unwrap().dovecot(),
            "user=bob@example.org"
        );
        assert_eq!(Identifier::from_imap("ANYONE").unwrap(), Identifier::Anyone);
        assert!(Identifier::from_imap(&"a".repeat(300)).is_err());
    }

    #[test]
    fn update_is_atomic_and_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(dir.path().join("M"), 0o700).unwrap();
        md.create_folder("Team").unwrap();
        let bob = Identifier::User("bob@example.org".into());
        md.update_acl("Team", |a| a.set(false, bob.clone(), r("lr")))
            .unwrap();
        let team = md.folder_dir("Team").unwrap();
        assert_eq!(
            std::fs::read_to_string(team.join(ACL_FILE)).unwrap(),
            "user=bob@example.org lr\n"
        );
        assert!(!team.join("dovecot-acl.lock").exists());
        assert_eq!(
            md.rights("Team", "alice@example.org", "bob@example.org"),
            r("lr")
        );
        let g = lookup_grantees(&md, 100).unwrap();
        assert_eq!(g.iter().collect::<Vec<_>>(), ["user/bob@example.org"]);

        let idx = SharedIndex::at(dir.path().join("new-root/shared-mailboxes"), 0o600);
        idx.set_owner("alice@example.org", &g).unwrap();
        assert_eq!(
            std::fs::read_to_string(idx.path()).unwrap(),
            "shared/shared-boxes/user/bob@example.org/alice@example.org\n1\n"
        );
        assert_eq!(
            idx.owners_for("bob@example.org").unwrap(),
            ["alice@example.org"]
        );
        assert!(idx.owners_for("carol@example.org").unwrap().is_empty());
        // Revoked: the file goes, the index entry too.
        md.update_acl("Team", |a| {
            a.remove(false, &bob);
        })
        .unwrap();
        assert!(!team.join(ACL_FILE).exists());
        idx.set_owner("alice@example.org", &lookup_grantees(&md, 100).unwrap())
            .unwrap();
        assert!(idx.owners_for("bob@example.org").unwrap().is_empty());
        // An existing ACL that cannot be read is not overwritten.
        std::fs::write(team.join(ACL_FILE), "garbage line here\n").unwrap();
        assert!(
            md.update_acl("Team", |a| a.set(false, bob.clone(), r("l")))
                .is_err()
        );
        assert_eq!(
            std::fs::read_to_string(team.join(ACL_FILE)).unwrap(),
            "garbage line here\n"
        );
    }
}
