//! OBJECTID (RFC 8474), SAVEDATE (RFC 8514) and PREVIEW (RFC 8970): the FETCH items
//! `EMAILID`, `THREADID`, `SAVEDATE`, `PREVIEW [(LAZY)]`, the SEARCH keys `EMAILID`,
//! `THREADID`, `SAVEDBEFORE`, `SAVEDON`, `SAVEDSINCE`, `SAVEDATESUPPORTED`, the STATUS item
//! (also in `LIST … RETURN (STATUS (…))`) and response code `MAILBOXID`.
//!
//! imap-codec parses none of these, so a command that uses them arrives through
//! [`super::ext`]: [`job`] takes the new items out, has imap-codec parse the plain command
//! that remains, and runs it on the ordinary path with a hook that adds the new items
//! (FETCH: [`fetch_items`], called by `fetch.rs`; STATUS: [`status_text`]). SEARCH keys are
//! evaluated over the selected mailbox when the job runs and replaced by the `UID` set they
//! match (or `NOT ALL`), which the ordinary SEARCH/SORT/THREAD then combines with the rest.
//!
//! Where the identifiers come from (see `postern_maildir::mailbox::objectid`):
//! - MAILBOXID: `F` and the mailbox GUID in the `dovecot-uidlist` header (Dovecot's), so it
//!   stays with the mailbox across RENAME and a deleted and recreated name gets a new one.
//!   RENAME INBOX (RFC 8474 §4.2 and RFC 3501: INBOX stays, its messages move to a new
//!   mailbox): INBOX keeps its MAILBOXID, the new mailbox gets a new one.
//! - EMAILID: `M` and 24 hex digits of a hash of Dovecot's message GUID (the uidlist
//!   record's `G` field, else the file name base), so no path or host name leaks and the
//!   id is always valid `objectid` syntax. COPY and MOVE write the source's GUID into the
//!   copy's `G` field, so both keep the EMAILID (RFC 8474 §5.1: a MOVE SHOULD keep it; for
//!   COPY the choice is the server's — we keep it, as the content is the same and
//!   immutable). Messages moved by RENAME INBOX keep their files and so their EMAILID.
//! - THREADID: `T` and 24 hex digits of a hash of the thread root's Message-ID (the first
//!   of `References`, else `In-Reply-To`, else its own `Message-ID`), so every message of a
//!   thread whose replies carry `References` shares it, in every mailbox; a message with
//!   none of these headers is a thread of its own (derived from its EMAILID).
//! - SAVEDATE: the time at the start of the file name base, named when the file was saved
//!   into this mailbox (delivery, APPEND, COPY, MOVE); flag changes never rename the base.

use std::collections::HashMap;

use chrono::NaiveDate;
use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use postern_maildir::Mailbox;

use super::fetch::imap_date;
use super::preview;
use crate::imap::resp::{self, num_set};
use crate::imap::session::{Flow, Selected, Session};
use crate::imap::tagged::{Tagged, other};

/// One new FETCH item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extra {
    EmailId,
    ThreadId,
    SaveDate,
    Preview { lazy: bool },
}

/// The new items of one FETCH, carried in its `PendingFetch`.
#[derive(Debug, Default)]
pub(crate) struct FetchExtra {
    pub(crate) items: Vec<Extra>,
    /// Uncached previews a LAZY fetch may still compute.
    lazy_left: usize,
    /// The message GUIDs of the view, read once per FETCH that asks for EMAILID.
    guids: Option<HashMap<u32, String>>,
}

impl FetchExtra {
    /// No new items: the FETCH is an ordinary one.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What a rewritten command asks of the ordinary path (a field of the session, taken by
/// FETCH and STATUS).
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    pub(crate) fetch: FetchExtra,
    /// STATUS lines get `MAILBOXID (…)`.
    pub(crate) status_mailboxid: bool,
    /// MAILBOXID was the only STATUS item (the other items are a placeholder).
    pub(crate) status_only: bool,
}

// ---------------------------------------------------------------------------------------
// Identifiers

/// 128-bit FNV-1a: stable across releases and platforms (unlike std's hasher).
fn fnv128(data: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for &b in data {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h
}

/// `prefix` and 24 hex digits of the hash of `data`.
fn object_id(prefix: char, data: &[u8]) -> String {
    format!("{prefix}{:024x}", fnv128(data) >> 32)
}

/// EMAILID of a message GUID.
pub(crate) fn email_id(guid: &str) -> String {
    object_id('M', guid.as_bytes())
}

/// THREADID of a thread root Message-ID.
fn thread_id_of_root(root: &str) -> String {
    object_id('T', root.as_bytes())
}

/// RFC 8474 §3: `objectid = 1*255(ALPHA / DIGIT / "_" / "-")`.
pub(crate) fn valid_objectid(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The MAILBOXID of a mailbox: `F` and its uidlist GUID (32 hex digits). The letter keeps
/// the id from starting with a digit or being all digits (RFC 8474 §8.1's advice) and keeps
/// the three id spaces apart (`F…`, `M…`, `T…`; §5.2: an id is never reused across them).
pub(crate) fn mailbox_id(mbox: &mut Mailbox) -> Option<String> {
    match mbox.mailbox_guid() {
        Ok(g) if valid_objectid(g.as_bytes()) => Some(format!("F{g}")),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, mailbox = mbox.name(), "cannot read the mailbox GUID");
            None
        }
    }
}

fn thread_id(mbox: &Mailbox, uid: u32, guid: Option<&String>) -> Option<String> {
    match preview::thread_root(mbox, uid) {
        Some(root) => Some(thread_id_of_root(&root)),
        None => guid.map(|g| object_id('T', g.as_bytes())),
    }
}

// ---------------------------------------------------------------------------------------
// Hooks called from the ordinary paths

/// SELECT/EXAMINE: `* OK [MAILBOXID (id)] Ok` (RFC 8474 §4.1).
pub(crate) fn select_code(mbox: &mut Mailbox, out: &mut Vec<u8>) {
    if let Some(id) = mailbox_id(mbox) {
        resp::untagged(out, &format!("OK [MAILBOXID ({id})] Ok"));
    }
}

/// CREATE's tagged OK with `[MAILBOXID (id)]` (RFC 8474 §4.1), after updates.
pub(crate) fn created(s: &mut Session, name: &str, out: &mut Vec<u8>) -> Tagged {
    let id = s
        .state
        .user()
        .and_then(|u| u.maildir.open_mailbox(name).ok())
        .and_then(|mut m| mailbox_id(&mut m));
    match id {
        Some(id) => {
            s.sync(out, true);
            Tagged::ok_code(other(format!("MAILBOXID ({id})")), "CREATE completed")
        }
        None => s.done(out, "CREATE completed"),
    }
}

/// A STATUS line's items with `MAILBOXID (id)` when the command asked for it.
pub(crate) fn status_text(hooks: &Hooks, mbox: &mut Mailbox, text: String) -> String {
    if !hooks.status_mailboxid {
        return text;
    }
    let id = match mailbox_id(mbox) {
        Some(id) => format!("MAILBOXID ({id})"),
        None => {
            return if hooks.status_only {
                String::new()
            } else {
                text
            };
        }
    };
    if hooks.status_only || text.is_empty() {
        id
    } else {
        format!("{text} {id}")
    }
}

/// The new items of one message of a FETCH, each as its raw bytes (`EMAILID (M…)`).
pub(crate) fn fetch_items(sel: &mut Selected, fx: &mut FetchExtra, uid: u32) -> Vec<Vec<u8>> {
    let mut v = Vec::with_capacity(fx.items.len());
    let needs_guid = fx
        .items
        .iter()
        .any(|i| matches!(i, Extra::EmailId | Extra::ThreadId));
    if needs_guid && fx.guids.is_none() {
        fx.guids = Some(sel.mbox.mail_guids(&sel.uids).unwrap_or_default());
    }
    let guid = fx.guids.as_ref().and_then(|g| g.get(&uid));
    for it in fx.items.clone() {
        match it {
            Extra::EmailId => {
                // RFC 8474 §7: EMAILID is never NIL; a message whose GUID cannot be read
                // (gone meanwhile) gets no EMAILID item.
                if let Some(g) = guid {
                    v.push(format!("EMAILID ({})", email_id(g)).into_bytes());
                }
            }
            Extra::ThreadId => match thread_id(&sel.mbox, uid, guid) {
                Some(t) => v.push(format!("THREADID ({t})").into_bytes()),
                None => v.push(b"THREADID NIL".to_vec()),
            },
            Extra::SaveDate => {
                let mut b = b"SAVEDATE ".to_vec();
                match sel.mbox.save_date(uid).and_then(imap_date) {
                    Some(d) => {
                        let mut one = Vec::new();
                        resp::data(
                            &mut one,
                            imap_codec::imap_types::response::Data::Fetch {
                                seq: std::num::NonZeroU32::MIN,
                                items: imap_codec::imap_types::core::Vec1::from(
                                    imap_codec::imap_types::fetch::MessageDataItem::InternalDate(d),
                                ),
                            },
                        );
                        // `* 1 FETCH (INTERNALDATE "…")\r\n` → the quoted date.
                        let text = String::from_utf8_lossy(&one);
                        match text.find('"').zip(text.rfind('"')) {
                            Some((a, z)) if z > a => b.extend_from_slice(text[a..=z].as_bytes()),
                            _ => b.extend_from_slice(b"NIL"),
                        }
                    }
                    None => b.extend_from_slice(b"NIL"),
                }
                v.push(b);
            }
            Extra::Preview { lazy } => {
                let p = if lazy {
                    match preview::cached(&sel.mbox, uid) {
                        Some(p) => Some(p),
                        None if fx.lazy_left > 0 => {
                            fx.lazy_left -= 1;
                            preview::preview(&sel.mbox, uid)
                        }
                        None => None,
                    }
                } else {
                    preview::preview(&sel.mbox, uid)
                };
                let mut b = b"PREVIEW ".to_vec();
                match p {
                    Some(p) => resp::string(&mut b, p.as_bytes(), false),
                    None => b.extend_from_slice(b"NIL"),
                }
                v.push(b);
            }
        }
    }
    v
}

// ---------------------------------------------------------------------------------------
// Parsing and rewriting

/// The job for a command that uses one of these extensions (see [`super::ext`]).
pub(crate) fn job(raw: &[u8]) -> Option<super::ext::Job> {
    let (tag, cmd) = command_name(raw)?;
    match cmd.as_str() {
        "FETCH" | "UID FETCH" => fetch_job(raw, tag),
        "SEARCH" | "UID SEARCH" | "SORT" | "UID SORT" | "THREAD" | "UID THREAD" => {
            search_job(raw, tag, &cmd)
        }
        "STATUS" => status_job(raw, tag),
        "LIST" => list_job(raw, tag),
        _ => None,
    }
}

/// The tag and the command name (`UID FETCH`, upper case), cheaply.
fn command_name(raw: &[u8]) -> Option<(String, String)> {
    let head = &raw[..raw.len().min(64)];
    let sp = head.iter().position(|&b| b == b' ')?;
    let tag = std::str::from_utf8(&head[..sp]).ok()?.to_owned();
    let word = |from: usize| -> Option<(String, usize)> {
        let rest = head.get(from..)?;
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        Some((
            String::from_utf8_lossy(&rest[..end]).to_ascii_uppercase(),
            from + end + 1,
        ))
    };
    let (w, next) = word(sp + 1)?;
    if w == "UID" {
        let (w2, _) = word(next)?;
        return Some((tag, format!("UID {w2}")));
    }
    Some((tag, w))
}

/// The bytes without the final CRLF; `None` unless the command is one line (these
/// extensions need no literal; a command with one is left to the other parsers).
fn one_line(raw: &[u8]) -> Option<&[u8]> {
    let line = raw
        .strip_suffix(b"\r\n")
        .or_else(|| raw.strip_suffix(b"\n"))?;
    (!line.contains(&b'\n') && !line.contains(&b'\r')).then_some(line)
}

fn bad_job(tag: String, text: &'static str) -> super::ext::Job {
    Box::new(move |_s: &mut Session, out: &mut Vec<u8>| {
        Tagged::bad(text).write(out, &tag);
        Flow::Continue
    })
}

/// Splits a FETCH item list's content at spaces outside parentheses and brackets.
fn split_items(s: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    let mut quoted = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'(' | b'[' if !quoted => depth += 1,
            b')' | b']' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            b' ' if depth == 0 && !quoted => {
                if i > start {
                    out.push(&s[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 || quoted {
        return None;
    }
    if s.len() > start {
        out.push(&s[start..]);
    }
    Some(out)
}

/// The end (exclusive) of the parenthesised group starting at `s[0] == b'('`.
fn group_end(s: &[u8]) -> Option<usize> {
    let mut depth = 0i32;
    let mut quoted = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'(' | b'[' if !quoted => depth += 1,
            b')' | b']' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// A rewritten FETCH: the plain command, the new items, whether a placeholder stands in.
type Rewritten = (Vec<u8>, Vec<Extra>, bool);

/// A FETCH with the new items taken out: (the plain command, the new items, whether the
/// item list held only new items and a placeholder stands in).
fn rewrite_fetch(line: &[u8]) -> Option<Result<Rewritten, &'static str>> {
    // tag SP [UID SP] FETCH SP set SP items [SP modifiers]
    let mut pos = 0;
    let mut words = 0;
    let want = if line
        .splitn(3, |&b| b == b' ')
        .nth(1)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"UID"))
    {
        4
    } else {
        3
    };
    while words < want {
        let sp = line[pos..].iter().position(|&b| b == b' ')?;
        pos += sp + 1;
        words += 1;
    }
    let head = &line[..pos];
    let rest = &line[pos..];
    let (inner, after): (&[u8], &[u8]) = if rest.first() == Some(&b'(') {
        let end = group_end(rest)?;
        (&rest[1..end - 1], &rest[end..])
    } else {
        // One item; `PREVIEW (LAZY)` keeps its modifier list.
        let items = split_items(rest)?;
        let first = *items.first()?;
        let n = if first.eq_ignore_ascii_case(b"PREVIEW")
            && items.get(1).is_some_and(|m| {
                m.first() == Some(&b'(')
                    && !starts_with_ci(m, b"(CHANGEDSINCE")
                    && !starts_with_ci(m, b"(VANISHED")
            }) {
            first.len() + 1 + items[1].len()
        } else {
            first.len()
        };
        (&rest[..n], &rest[n..])
    };
    let items = split_items(inner)?;
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut extra = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let it = items[i];
        let up = it.to_ascii_uppercase();
        match up.as_slice() {
            b"EMAILID" => extra.push(Extra::EmailId),
            b"THREADID" => extra.push(Extra::ThreadId),
            b"SAVEDATE" => extra.push(Extra::SaveDate),
            b"PREVIEW" => {
                let mut lazy = false;
                if let Some(m) = items.get(i + 1)
                    && m.first() == Some(&b'(')
                {
                    // RFC 8970: preview-mod = "LAZY"; anything else is BAD.
                    let inside = &m[1..m.len() - 1];
                    for w in inside.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
                        if !w.eq_ignore_ascii_case(b"LAZY") {
                            return Some(Err("Unknown PREVIEW modifier"));
                        }
                        lazy = true;
                    }
                    if !lazy {
                        return Some(Err("Empty PREVIEW modifier list"));
                    }
                    i += 1;
                }
                extra.push(Extra::Preview { lazy });
            }
            _ => kept.push(it),
        }
        i += 1;
    }
    if extra.is_empty() {
        return None;
    }
    // Each item once, in the order first asked (`(EMAILID EMAILID …)` costs one).
    let mut seen = Vec::with_capacity(extra.len());
    extra.retain(|e| {
        let first = !seen.contains(e);
        seen.push(*e);
        first
    });
    let placeholder = kept.is_empty();
    let mut out = head.to_vec();
    out.push(b'(');
    if placeholder {
        out.extend_from_slice(b"UID");
    } else {
        out.extend_from_slice(&kept.join(&b' '));
    }
    out.push(b')');
    out.extend_from_slice(after);
    out.extend_from_slice(b"\r\n");
    Some(Ok((out, extra, placeholder)))
}

fn starts_with_ci(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p)
}

fn decode(bytes: &[u8]) -> Option<imap_codec::imap_types::command::Command<'static>> {
    let (rem, cmd) = CommandCodec::default().decode(bytes).ok()?;
    rem.is_empty().then(|| cmd.into_static())
}

fn fetch_job(raw: &[u8], tag: String) -> Option<super::ext::Job> {
    let line = one_line(raw)?;
    let (plain, extra, placeholder) = match rewrite_fetch(line)? {
        Ok(r) => r,
        Err(why) => return Some(bad_job(tag, why)),
    };
    let run = |s: &mut Session, out: &mut Vec<u8>, extra: Vec<Extra>, inner: super::ext::Job| {
        s.objectid.fetch = FetchExtra {
            items: extra,
            lazy_left: preview::LAZY_BUDGET,
            guids: None,
        };
        let flow = inner(s, out);
        s.objectid.fetch = FetchExtra::default();
        flow
    };
    let Some(mut cmd) = decode(&plain) else {
        // A form another extension parses (SEARCHRES's `FETCH $ …`): its job runs the FETCH
        // with our items (a placeholder UID stays in the answer there).
        let Some(inner) = super::ext::reparse(&plain) else {
            return Some(bad_job(tag, "Invalid FETCH arguments"));
        };
        return Some(Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
            run(s, out, extra, inner)
        }));
    };
    if placeholder
        && let CommandBody::Fetch {
            macro_or_item_names,
            ..
        } = &mut cmd.body
    {
        *macro_or_item_names = MacroOrMessageDataItemNames::MessageDataItemNames(Vec::new());
    }
    let inner: super::ext::Job =
        Box::new(move |s: &mut Session, out: &mut Vec<u8>| s.handle(cmd, out));
    Some(Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
        run(s, out, extra, inner)
    }))
}

// --- SEARCH ------------------------------------------------------------------------------

/// A token of a command line: its span and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Atom,
    Quoted,
    Open,
    Close,
}

/// Splits a line into atoms, quoted strings and parentheses. `None` on an unterminated
/// quoted string or a literal (left to the other parsers).
fn lex(line: &[u8]) -> Option<Vec<(usize, usize, Tok)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' => i += 1,
            b'(' => {
                out.push((i, i + 1, Tok::Open));
                i += 1;
            }
            b')' => {
                out.push((i, i + 1, Tok::Close));
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match line.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
                out.push((start, i, Tok::Quoted));
            }
            b'{' => return None,
            _ => {
                let start = i;
                while i < line.len() && !matches!(line[i], b' ' | b'(' | b')' | b'"') {
                    i += 1;
                }
                out.push((start, i, Tok::Atom));
            }
        }
    }
    Some(out)
}

/// One of the new SEARCH keys.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    EmailId(String),
    ThreadId(String),
    SavedBefore(NaiveDate),
    SavedOn(NaiveDate),
    SavedSince(NaiveDate),
    SaveDateSupported,
}

/// The most new SEARCH keys one command may hold (each is evaluated over the mailbox).
const MAX_KEYS: usize = 16;

/// Search keys of RFC 9051 and extensions taking one argument (skipped whole, so that
/// `SUBJECT EMAILID` searches for the word).
const ONE_ARG: &[&str] = &[
    "BCC",
    "BEFORE",
    "BODY",
    "CC",
    "FROM",
    "KEYWORD",
    "LARGER",
    "ON",
    "SENTBEFORE",
    "SENTON",
    "SENTSINCE",
    "SINCE",
    "SMALLER",
    "SUBJECT",
    "TEXT",
    "TO",
    "UID",
    "UNKEYWORD",
    "OLDER",
    "YOUNGER",
    "CHARSET",
    "FUZZY",
];

fn unquote(line: &[u8], t: (usize, usize, Tok)) -> Option<String> {
    let s = &line[t.0..t.1];
    match t.2 {
        Tok::Atom => Some(String::from_utf8_lossy(s).into_owned()),
        Tok::Quoted => {
            let inner = &s[1..s.len() - 1];
            let mut v = Vec::with_capacity(inner.len());
            let mut esc = false;
            for &b in inner {
                if !esc && b == b'\\' {
                    esc = true;
                    continue;
                }
                esc = false;
                v.push(b);
            }
            Some(String::from_utf8_lossy(&v).into_owned())
        }
        _ => None,
    }
}

/// RFC 9051 `date`: `d-Mon-yyyy`, possibly quoted.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let mut p = s.split('-');
    let (d, m, y) = (p.next()?, p.next()?, p.next()?);
    if p.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|x| x.eq_ignore_ascii_case(m))? as u32
        + 1;
    NaiveDate::from_ymd_opt(y.parse().ok()?, month, d.parse().ok()?)
}

/// A new key and the span of the line it occupies.
type Found = (usize, usize, Key);

/// The new keys of a SEARCH/SORT/THREAD line, with the spans they occupy. `None`: none.
fn find_keys(line: &[u8], cmd: &str) -> Option<Result<Vec<Found>, &'static str>> {
    let toks = lex(line)?;
    // Skip the tag, the command name(s), SORT's criteria list and THREAD's algorithm.
    let mut i = 1 + cmd.split(' ').count();
    if cmd.ends_with("SORT") && toks.get(i).is_some_and(|t| t.2 == Tok::Open) {
        while toks.get(i).is_some_and(|t| t.2 != Tok::Close) {
            i += 1;
        }
        i += 1;
    } else if cmd.ends_with("THREAD") {
        i += 1;
    }
    let mut found = Vec::new();
    while i < toks.len() {
        let t = toks[i];
        if t.2 != Tok::Atom {
            i += 1;
            continue;
        }
        let word = String::from_utf8_lossy(&line[t.0..t.1]).to_ascii_uppercase();
        let arg = || {
            toks.get(i + 1)
                .copied()
                .filter(|a| matches!(a.2, Tok::Atom | Tok::Quoted))
        };
        let key = match word.as_str() {
            "EMAILID" | "THREADID" => {
                let Some(a) = arg() else {
                    return Some(Err("EMAILID/THREADID need an objectid"));
                };
                let v = unquote(line, a).unwrap_or_default();
                if !valid_objectid(v.as_bytes()) {
                    return Some(Err("Invalid objectid"));
                }
                let k = if word == "EMAILID" {
                    Key::EmailId(v)
                } else {
                    Key::ThreadId(v)
                };
                Some((a.1, k))
            }
            "SAVEDBEFORE" | "SAVEDON" | "SAVEDSINCE" => {
                let Some(d) = arg()
                    .and_then(|a| unquote(line, a))
                    .and_then(|s| parse_date(&s))
                else {
                    return Some(Err("Invalid date"));
                };
                let end = toks[i + 1].1;
                Some((
                    end,
                    match word.as_str() {
                        "SAVEDBEFORE" => Key::SavedBefore(d),
                        "SAVEDON" => Key::SavedOn(d),
                        _ => Key::SavedSince(d),
                    },
                ))
            }
            "SAVEDATESUPPORTED" => Some((t.1, Key::SaveDateSupported)),
            _ => None,
        };
        if let Some((end, k)) = key {
            found.push((t.0, end, k));
            i += if matches!(found.last(), Some((_, _, Key::SaveDateSupported))) {
                1
            } else {
                2
            };
            continue;
        }
        i += match word.as_str() {
            "HEADER" => 3,
            "MODSEQ" if toks.get(i + 1).is_some_and(|a| a.2 == Tok::Quoted) => 4,
            "MODSEQ" => 2,
            w if ONE_ARG.contains(&w) => 2,
            _ => 1,
        };
    }
    if found.is_empty() {
        return None;
    }
    if found.len() > MAX_KEYS {
        // Each key is evaluated over the whole mailbox when the command runs.
        return Some(Err("Too many EMAILID/THREADID/SAVED* keys"));
    }
    Some(Ok(found))
}

/// What one command's keys share: the view's message GUIDs and thread ids, each read once
/// however many keys use them (up to [`MAX_KEYS`]).
#[derive(Default)]
struct Memo {
    guids: Option<HashMap<u32, String>>,
    threads: Option<HashMap<u32, Option<String>>>,
}

/// The UIDs of the selected view a key matches.
fn matching(sel: &mut Selected, key: &Key, memo: &mut Memo) -> Vec<u32> {
    let uids = sel.uids.clone();
    let day = |uid: u32| {
        sel.mbox
            .save_date(uid)
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map(|d| d.date_naive())
    };
    match key {
        Key::SaveDateSupported => uids,
        Key::SavedBefore(d) => uids
            .into_iter()
            .filter(|&u| day(u).is_some_and(|x| x < *d))
            .collect(),
        Key::SavedOn(d) => uids
            .into_iter()
            .filter(|&u| day(u).is_some_and(|x| x == *d))
            .collect(),
        Key::SavedSince(d) => uids
            .into_iter()
            .filter(|&u| day(u).is_some_and(|x| x >= *d))
            .collect(),
        Key::EmailId(id) => {
            let g = memo
                .guids
                .get_or_insert_with(|| sel.mbox.mail_guids(&uids).unwrap_or_default());
            uids.into_iter()
                .filter(|u| g.get(u).is_some_and(|g| email_id(g) == *id))
                .collect()
        }
        Key::ThreadId(id) => {
            if !id.starts_with('T') {
                return Vec::new();
            }
            let g = memo
                .guids
                .get_or_insert_with(|| sel.mbox.mail_guids(&uids).unwrap_or_default());
            let t = memo.threads.get_or_insert_with(|| {
                uids.iter()
                    .map(|&u| (u, thread_id(&sel.mbox, u, g.get(&u))))
                    .collect()
            });
            uids.into_iter()
                .filter(|u| t.get(u).is_some_and(|t| t.as_deref() == Some(id.as_str())))
                .collect()
        }
    }
}

fn search_job(raw: &[u8], tag: String, cmd: &str) -> Option<super::ext::Job> {
    let line = one_line(raw)?.to_vec();
    let keys = match find_keys(&line, cmd)? {
        Ok(k) => k,
        Err(why) => return Some(bad_job(tag, why)),
    };
    Some(Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
        let Some(sel) = s.state.sel_mut() else {
            Tagged::bad("No mailbox selected").write(out, &tag);
            return Flow::Continue;
        };
        let mut plain = Vec::with_capacity(line.len() + 64);
        let mut at = 0;
        let mut memo = Memo::default();
        for (start, end, key) in &keys {
            plain.extend_from_slice(&line[at..*start]);
            let uids = matching(sel, key, &mut memo);
            if uids.is_empty() {
                plain.extend_from_slice(b"NOT ALL");
            } else {
                plain.extend_from_slice(format!("UID {}", num_set(&uids)).as_bytes());
            }
            at = *end;
        }
        plain.extend_from_slice(&line[at..]);
        plain.extend_from_slice(b"\r\n");
        if let Some(cmd) = decode(&plain) {
            return s.handle(cmd, out);
        }
        // ESEARCH's `SEARCH RETURN (…)` and other forms imap-codec lacks.
        match super::ext::reparse(&plain) {
            Some(job) => job(s, out),
            None => {
                Tagged::bad("Invalid search arguments").write(out, &tag);
                Flow::Continue
            }
        }
    }))
}

// --- STATUS and LIST RETURN (STATUS (…)) -------------------------------------------------

/// Removes `MAILBOXID` atoms from the parenthesised group at token `open`; returns the new
/// line, whether any was removed and whether the group is now empty.
fn strip_mailboxid(
    line: &[u8],
    toks: &[(usize, usize, Tok)],
    open: usize,
) -> Option<(Vec<u8>, bool, bool)> {
    let mut depth = 0;
    let mut remove = Vec::new();
    let mut others = 0;
    let mut close = None;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t.2 {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    close = Some(j);
                    break;
                }
            }
            _ if depth == 1 && line[t.0..t.1].eq_ignore_ascii_case(b"MAILBOXID") => {
                remove.push(*t);
            }
            _ => others += 1,
        }
    }
    close?;
    if remove.is_empty() {
        return Some((line.to_vec(), false, others == 0));
    }
    let mut out = Vec::with_capacity(line.len());
    let mut at = 0;
    for t in &remove {
        // The item and one space beside it (after it, else before it).
        let (mut start, mut end) = (t.0, t.1);
        if line.get(end) == Some(&b' ') {
            end += 1;
        } else if start > at && line[start - 1] == b' ' {
            start -= 1;
        }
        out.extend_from_slice(&line[at..start.max(at)]);
        at = end;
    }
    out.extend_from_slice(&line[at..]);
    Some((out, true, others == 0))
}

fn status_job(raw: &[u8], _tag: String) -> Option<super::ext::Job> {
    let line = one_line(raw)?;
    let toks = lex(line)?;
    // tag STATUS mailbox ( items )
    let open = 3;
    if toks.get(open)?.2 != Tok::Open {
        return None;
    }
    let (mut plain, removed, empty) = strip_mailboxid(line, &toks, open)?;
    if !removed {
        return None;
    }
    if empty {
        // A placeholder item for the parser; `status_only` drops it from the answer.
        let t = toks[open];
        plain.splice(t.1..t.1, b"MESSAGES".iter().copied());
    }
    plain.extend_from_slice(b"\r\n");
    let cmd = decode(&plain)?;
    Some(Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
        s.objectid.status_mailboxid = true;
        s.objectid.status_only = empty;
        let flow = s.handle(cmd, out);
        s.objectid.status_mailboxid = false;
        s.objectid.status_only = false;
        flow
    }))
}

fn list_job(raw: &[u8], _tag: String) -> Option<super::ext::Job> {
    let line = one_line(raw)?;
    let toks = lex(line)?;
    // … RETURN ( … STATUS ( items ) … )
    let ret = toks
        .iter()
        .position(|t| t.2 == Tok::Atom && line[t.0..t.1].eq_ignore_ascii_case(b"RETURN"))?;
    let status = (ret..toks.len()).find(|&j| {
        toks[j].2 == Tok::Atom
            && line[toks[j].0..toks[j].1].eq_ignore_ascii_case(b"STATUS")
            && toks.get(j + 1).is_some_and(|t| t.2 == Tok::Open)
    })?;
    let (mut plain, removed, empty) = strip_mailboxid(line, &toks, status + 1)?;
    if !removed {
        return None;
    }
    plain.extend_from_slice(b"\r\n");
    let inner = super::list::job(&plain)?;
    Some(Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
        s.objectid.status_mailboxid = true;
        s.objectid.status_only = empty;
        let flow = inner(s, out);
        s.objectid.status_mailboxid = false;
        s.objectid.status_only = false;
        flow
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_rewrites() {
        let r = rewrite_fetch(b"a UID FETCH 1:* (FLAGS EMAILID BODY.PEEK[HEADER.FIELDS (SUBJECT)] PREVIEW (LAZY)) (CHANGEDSINCE 5)")
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.0),
            "a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]) (CHANGEDSINCE 5)\r\n"
        );
        assert_eq!(r.1, vec![Extra::EmailId, Extra::Preview { lazy: true }]);
        assert!(!r.2);
        let r = rewrite_fetch(b"a FETCH 1 PREVIEW (LAZY)").unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&r.0), "a FETCH 1 (UID)\r\n");
        assert!(r.2);
        let r = rewrite_fetch(b"a FETCH 1 (EMAILID SAVEDATE EMAILID SAVEDATE EMAILID)")
            .unwrap()
            .unwrap();
        assert_eq!(r.1, vec![Extra::EmailId, Extra::SaveDate]);
        let r = rewrite_fetch(b"a FETCH 1 savedate").unwrap().unwrap();
        assert_eq!(r.1, vec![Extra::SaveDate]);
        assert!(rewrite_fetch(b"a FETCH 1 (FLAGS)").is_none());
        assert!(
            rewrite_fetch(b"a FETCH 1 (PREVIEW (FAST))")
                .unwrap()
                .is_err()
        );
        assert!(rewrite_fetch(b"a FETCH 1 (PREVIEW ())").unwrap().is_err());
    }

    #[test]
    fn search_keys_found_but_not_as_arguments() {
        let l = b"a UID SEARCH SUBJECT EMAILID OR EMAILID M1 SAVEDSINCE \"1-Feb-2024\" NOT SAVEDATESUPPORTED";
        let k = find_keys(l, "UID SEARCH").unwrap().unwrap();
        assert_eq!(k.len(), 3);
        assert_eq!(k[0].2, Key::EmailId("M1".into()));
        assert_eq!(
            k[1].2,
            Key::SavedSince(NaiveDate::from_ymd_opt(2024, 2, 1).unwrap())
        );
        assert_eq!(&l[k[1].0..k[1].1], b"SAVEDSINCE \"1-Feb-2024\"");
        assert_eq!(k[2].2, Key::SaveDateSupported);
        assert!(find_keys(b"a SEARCH SUBJECT EMAILID", "SEARCH").is_none());
        assert!(
            find_keys(b"a SEARCH EMAILID a.b", "SEARCH")
                .unwrap()
                .is_err()
        );
        assert!(
            find_keys(b"a SEARCH SAVEDON 32-Jan-2024", "SEARCH")
                .unwrap()
                .is_err()
        );
        let many = format!("a SEARCH{}", " SAVEDATESUPPORTED".repeat(MAX_KEYS + 1));
        assert!(find_keys(many.as_bytes(), "SEARCH").unwrap().is_err());
        let enough = format!("a SEARCH{}", " SAVEDATESUPPORTED".repeat(MAX_KEYS));
        assert!(find_keys(enough.as_bytes(), "SEARCH").unwrap().is_ok());
        let long = format!("a SEARCH EMAILID {}", "x".repeat(256));
        assert!(find_keys(long.as_bytes(), "SEARCH").unwrap().is_err());
    }

    fn session(input: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let md =
            postern_maildir::Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
        let mut mb = md.open_mailbox("INBOX").unwrap();
        mb.append(
            b"Message-ID: <a@x>\r\nSubject: one\r\n\r\nHello world\r\n",
            &postern_maildir::Flags::default(),
            Some(1_000_000_000),
        )
        .unwrap();
        mb.append(
            b"Message-ID: <b@x>\r\nReferences: <a@x>\r\n\r\nreply\r\n",
            &postern_maildir::Flags::default(),
            None,
        )
        .unwrap();
        let out = crate::imap::fuzzing::run_imap(input.as_bytes(), Some(&md), 1 << 16);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The text after the first `before` up to the next `until`.
    fn after<'a>(text: &'a str, before: &str, until: char) -> &'a str {
        let i = text
            .find(before)
            .unwrap_or_else(|| panic!("{before}: {text}"))
            + before.len();
        let rest = &text[i..];
        &rest[..rest.find(until).unwrap_or(rest.len())]
    }

    fn is_hex_id(s: &str, prefix: char, len: usize) -> bool {
        s.len() == len + 1 && s.starts_with(prefix) && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// RFC 8474 §7: `fetch-emailid-resp = "EMAILID" SP "(" objectid ")"`,
    /// `fetch-threadid-resp = "THREADID" SP ( "(" objectid ")" / nil )`,
    /// `resp-text-code =/ "MAILBOXID" SP "(" objectid ")"`, `status-att-val =/ "MAILBOXID"
    /// SP "(" objectid ")"`. RFC 8514: `msg-att-dynamic =/ "SAVEDATE" SP (date-time / nil)`.
    /// RFC 8970: `msg-att-dynamic =/ "PREVIEW" SP nstring`.
    #[test]
    fn wire_syntax_of_the_new_items() {
        let out = session(
            "s SELECT INBOX\r\nf FETCH 1:2 (UID EMAILID THREADID SAVEDATE PREVIEW)\r\n\
             g UID FETCH 2 SAVEDATE\r\nh STATUS INBOX (MAILBOXID MESSAGES)\r\n\
             c CREATE Neu\r\n",
        );
        let mid = after(&out, "* OK [MAILBOXID (", ')');
        assert!(is_hex_id(mid, 'F', 32), "{out}");
        let f1 = after(&out, "* 1 FETCH (", '\r');
        let f2 = after(&out, "* 2 FETCH (", '\r');
        assert!(f1.starts_with("UID 1 EMAILID ("), "{out}");
        let (e1, e2) = (after(f1, "EMAILID (", ')'), after(f2, "EMAILID (", ')'));
        assert!(
            is_hex_id(e1, 'M', 24) && is_hex_id(e2, 'M', 24) && e1 != e2,
            "{out}"
        );
        let (t1, t2) = (after(f1, "THREADID (", ')'), after(f2, "THREADID (", ')'));
        assert!(is_hex_id(t1, 'T', 24), "{out}");
        assert_eq!(t1, t2, "a reply shares its root's THREADID: {out}");
        assert!(after(f1, "SAVEDATE \"", '"').ends_with(" +0000"), "{out}");
        assert!(f1.ends_with(" PREVIEW \"Hello world\")"), "{out}");
        assert!(out.contains("f OK"), "{out}");
        assert!(out.contains("* 2 FETCH (UID 2 SAVEDATE \""), "{out}");
        assert!(
            out.contains(&format!(
                "* STATUS \"INBOX\" (MESSAGES 2 MAILBOXID ({mid}))\r\n"
            )),
            "{out}"
        );
        let created = after(&out, "c OK [MAILBOXID (", ')');
        assert!(is_hex_id(created, 'F', 32) && created != mid, "{out}");
        assert!(out.contains(")] CREATE completed\r\n"), "{out}");
        // The INTERNALDATE given to APPEND (2001) is not the SAVEDATE.
        assert!(!f1.contains("SAVEDATE \"09-Sep-2001"), "{out}");
    }

    /// Bad syntax is BAD and changes nothing; a FETCH of only new items answers only them.
    #[test]
    fn bad_syntax_is_bad() {
        let out = session(
            "s SELECT INBOX\r\na FETCH 1 (PREVIEW (LAZY FAST))\r\nb SEARCH EMAILID a/b\r\n\
             c SEARCH SAVEDSINCE 1-Foo-2020\r\nd SEARCH THREADID\r\ne FETCH 1 (EMAILID\r\n\
             f FETCH 1 (PREVIEW)\r\ng UID SEARCH SAVEDATESUPPORTED\r\n",
        );
        for t in ["a", "b", "c", "d", "e"] {
            assert!(out.contains(&format!("\r\n{t} BAD")), "{t}: {out}");
        }
        assert!(
            out.contains("* 1 FETCH (PREVIEW \"Hello world\")\r\nf OK"),
            "{out}"
        );
        assert!(out.contains("* SEARCH 1 2\r\ng OK"), "{out}");
    }

    /// Hostile input: a FETCH naming the new items 50,000 times answers each once; a SEARCH
    /// with more new keys than allowed is BAD; deep nesting is parsed without recursion;
    /// LIST-STATUS with only MAILBOXID answers only it.
    #[test]
    fn hostile_and_nested_forms() {
        let many = " EMAILID SAVEDATE".repeat(25_000);
        let keys = " SAVEDATESUPPORTED".repeat(MAX_KEYS + 1);
        let deep = format!("{}SAVEDATESUPPORTED{}", "(".repeat(5000), ")".repeat(5000));
        let input = format!(
            "s SELECT INBOX\r\na FETCH 1 (UID{many})\r\nb SEARCH{keys}\r\n\
             c SEARCH {deep}\r\nd SEARCH NOT (OR SAVEDATESUPPORTED (UID 1))\r\n\
             e LIST \"\" INBOX RETURN (STATUS (MAILBOXID))\r\n"
        );
        let t = std::time::Instant::now();
        let out = session(&input);
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        let a = after(&out, "* 1 FETCH (", '\r');
        assert!(
            a.starts_with("UID 1 EMAILID (M") && a.matches("EMAILID").count() == 1,
            "{a}"
        );
        assert_eq!(a.matches("SAVEDATE").count(), 1, "{a}");
        assert!(out.contains("\r\nb BAD"), "{out}");
        // imap-codec bounds nesting itself: the plain command is refused, so BAD.
        assert!(out.contains("\r\nc BAD"), "{out}");
        assert!(out.contains("* SEARCH\r\nd OK"), "{out}");
        let st = after(&out, "* STATUS \"INBOX\" (", '\r');
        assert!(
            st.starts_with("MAILBOXID (F") && st.ends_with("))"),
            "{out}"
        );
    }

    /// SORT (RFC 5256) and THREAD take the new keys too (after the sort criteria/algorithm
    /// and the charset); SEARCH THREADID finds every message of the thread.
    #[test]
    fn sort_and_thread_take_the_new_keys() {
        let t = thread_id_of_root("a@x");
        let out = session(&format!(
            "s SELECT INBOX\r\na SORT (REVERSE ARRIVAL) UTF-8 SAVEDATESUPPORTED\r\n\
             b THREAD REFERENCES UTF-8 THREADID {t}\r\nc SORT (SUBJECT) UTF-8 NOT EMAILID Mzz\r\n\
             d UID SEARCH THREADID {t}\r\ne SEARCH THREADID Tnone\r\n"
        ));
        assert!(out.contains("* SORT 2 1\r\na OK"), "{out}");
        assert!(out.contains("* THREAD (1 2)\r\nb OK"), "{out}");
        assert!(out.contains("* SORT 2 1\r\nc OK"), "{out}");
        assert!(out.contains("* SEARCH 1 2\r\nd OK"), "{out}");
        assert!(out.contains("* SEARCH\r\ne OK"), "{out}");
    }

    /// Hostile cost: the per-process thread-root cache holds 20,000 messages, so in a
    /// larger mailbox each THREADID key read every message's header again — one command of
    /// 16 keys (`THREADID T1 THREADID T2 …`, MAX_KEYS) cost 16 header reads per message.
    /// Each message's thread root is looked up once per command, whatever the keys.
    #[test]
    fn many_threadid_keys_look_each_message_up_once() {
        let keys = (0..MAX_KEYS)
            .map(|i| format!("THREADID T{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        preview::ROOT_LOOKUPS.with(|c| c.set(0));
        let out = session(&format!(
            "s SELECT INBOX\r\na UID SEARCH {keys}\r\nb SEARCH OR THREADID Tx EMAILID Mx\r\n"
        ));
        assert!(out.contains("\r\n* SEARCH\r\na OK"), "{out}");
        assert!(out.contains("\r\n* SEARCH\r\nb OK"), "{out}");
        // Two messages: two look-ups for `a`, two for `b`.
        let n = preview::ROOT_LOOKUPS.with(std::cell::Cell::get);
        assert_eq!(n, 4, "thread-root look-ups");
    }

    #[test]
    fn ids_are_valid_objectids() {
        let e = email_id("1700000000.M1P2.host.example,S=10");
        assert!(valid_objectid(e.as_bytes()) && e.len() == 25 && e.starts_with('M'));
        assert_ne!(e, email_id("1700000000.M1P3.host.example,S=10"));
        assert!(!e.contains("host"));
    }
}
