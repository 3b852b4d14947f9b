//! APPEND in the forms imap-codec cannot parse: MULTIAPPEND (RFC 3502, several messages in
//! one command) and CATENATE (RFC 4469, a message built from literals and IMAP URLs), alone
//! or together. A plain single-message APPEND stays with `mailboxes.rs`.
//!
//! - The command arrives whole from `ext.rs` (up to `max_command_size`, literals included). It
//!   is read once, left to right ([`parse`]): every literal is kept as a range of the raw
//!   bytes, never copied, and the cost is linear in the input. Any syntax error is `BAD` and
//!   nothing is stored.
//! - Each message is checked (APPENDLIMIT `TOOBIG`, literal8 content `UNKNOWN-CTE`, CATENATE
//!   URLs `BADURL` — `catenate.rs`) and written to the mailbox's `tmp/` one at a time
//!   ([`postern_maildir::mailbox::AppendBatch`]): a CATENATE message is the only one held in
//!   memory, and never larger than APPENDLIMIT. The quota counts all messages together.
//! - All messages are then appended under one lock with one `cur/` sync and one uidlist
//!   write, or none (RFC 3502, Introduction: "A MULTIAPPEND APPEND operation is atomic;
//!   either all messages are successfully appended, or no messages are appended"). The
//!   tagged OK carries `[APPENDUID uidvalidity uid-set]` (RFC 4315) once the files, their
//!   names in `cur/` and the uidlist records are on disk.

use std::borrow::Cow;
use std::ops::Range;

use imap_codec::imap_types::response::Code;
use postern_maildir::Flags;

use super::catenate::{self, CatPart, Sources};
use super::ext::Job;
use super::mailboxes::{no_trycreate, stored_exactly};
use super::token;
use crate::imap::names;
use crate::imap::resp::num_set;
use crate::imap::session::{Flow, Session, store_error};
use crate::imap::tagged::{Tagged, other};

/// Most messages one APPEND may carry (each is a file written and fsynced).
pub(crate) const MAX_MESSAGES: usize = 1000;
/// Most CATENATE parts in one command, all messages together.
pub(crate) const MAX_PARTS: usize = 1000;

/// A literal: where its bytes are in the raw command, and whether it was a literal8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lit {
    pub(crate) range: Range<usize>,
    pub(crate) binary: bool,
}

/// One message's content: a literal, or CATENATE parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    Literal(Lit),
    Catenate(Vec<CatPart>),
}

/// One message of the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) flags: Flags,
    /// Unix seconds.
    pub(crate) date: Option<i64>,
    pub(crate) data: Data,
}

/// A parsed extended APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Append {
    pub(crate) tag: String,
    /// The mailbox name as sent (astring contents).
    pub(crate) mailbox: Vec<u8>,
    pub(crate) messages: Vec<Message>,
}

/// The `ext.rs` hook: an APPEND with several messages or with CATENATE.
pub(crate) fn job(raw: &[u8]) -> Option<Job> {
    if !is_append(raw) {
        return None;
    }
    let job: Job = match parse(raw) {
        Ok(cmd) => {
            let raw = raw.to_vec();
            Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
                let t = s.multiappend(&cmd, &raw, out);
                t.write(out, &cmd.tag);
                Flow::Continue
            })
        }
        Err(Some((tag, why))) => Box::new(move |_s: &mut Session, out: &mut Vec<u8>| {
            Tagged::bad(why).write(out, &tag);
            Flow::Continue
        }),
        Err(None) => return None,
    };
    Some(job)
}

/// `tag APPEND ` at the start (cheap: looks at the first bytes only).
fn is_append(raw: &[u8]) -> bool {
    let Some(sp) = raw.iter().take(100).position(|&b| b == b' ') else {
        return false;
    };
    raw.get(sp + 1..sp + 8)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND "))
}

/// A syntax error: the tag (when it was read) and why.
type SyntaxError = Option<(String, &'static str)>;

/// Parses `tag APPEND mailbox 1*(SP [flag-list SP] [date-time SP] append-data) CRLF`, where
/// append-data is a literal, a literal8 or `CATENATE (cat-part *(SP cat-part))` (RFC 3502
/// §6, RFC 4469 §5, RFC 3516 §6.2).
pub(crate) fn parse(raw: &[u8]) -> Result<Append, SyntaxError> {
    let mut r = Reader { raw, pos: 0 };
    let tag = r.tag().ok_or(None)?;
    let fail = |why: &'static str| Some((tag.clone(), why));
    r.word(b"APPEND").ok_or(None)?;
    r.sp().ok_or_else(|| fail("Missing mailbox"))?;
    let mailbox = r
        .astring()
        .ok_or_else(|| fail("Invalid mailbox name"))?
        .into_owned();
    let mut messages = Vec::new();
    let mut parts = 0usize;
    loop {
        if r.at_end() {
            break;
        }
        r.sp().ok_or_else(|| fail("Expected a space"))?;
        if messages.len() == MAX_MESSAGES {
            return Err(fail("Too many messages in one APPEND"));
        }
        let mut flags = Flags::default();
        if r.peek() == Some(b'(') {
            flags = r.flag_list().ok_or_else(|| fail("Invalid flag list"))?;
            r.sp().ok_or_else(|| fail("Expected a space"))?;
        }
        let mut date = None;
        if r.peek() == Some(b'"') {
            let d = r.quoted().ok_or_else(|| fail("Invalid date-time"))?;
            date = Some(date_time(&d).ok_or_else(|| fail("Invalid date-time"))?);
            r.sp().ok_or_else(|| fail("Expected a space"))?;
        }
        let data = if r.peek_word(b"CATENATE") {
            r.word(b"CATENATE")
                .ok_or_else(|| fail("Expected CATENATE"))?;
            r.sp().ok_or_else(|| fail("Expected a space"))?;
            r.byte(b'(').ok_or_else(|| fail("Expected ("))?;
            let mut list = Vec::new();
            loop {
                if parts == MAX_PARTS {
                    return Err(fail("Too many CATENATE parts"));
                }
                parts += 1;
                if r.peek_word(b"TEXT") {
                    r.word(b"TEXT").ok_or_else(|| fail("Expected TEXT"))?;
                    r.sp().ok_or_else(|| fail("Expected a space"))?;
                    let lit = r.literal().ok_or_else(|| fail("Expected a literal"))?;
                    if !lit.binary && raw[lit.range.clone()].contains(&0) {
                        // RFC 3501 §9: a literal is CHAR8, without NUL (literal8 allows it).
                        return Err(fail("NUL in a literal"));
                    }
                    list.push(CatPart::Text(lit));
                } else if r.peek_word(b"URL") {
                    r.word(b"URL").ok_or_else(|| fail("Expected URL"))?;
                    r.sp().ok_or_else(|| fail("Expected a space"))?;
                    let url = r.astring().ok_or_else(|| fail("Invalid URL"))?;
                    list.push(CatPart::Url(url.into_owned()));
                } else {
                    return Err(fail("Expected TEXT or URL"));
                }
                match r.peek() {
                    Some(b' ') => r.pos += 1,
                    Some(b')') => {
                        r.pos += 1;
                        break;
                    }
                    _ => return Err(fail("Expected ) after the CATENATE parts")),
                }
            }
            Data::Catenate(list)
        } else {
            let lit = r
                .literal()
                .ok_or_else(|| fail("Expected a message literal"))?;
            if !lit.binary && raw[lit.range.clone()].contains(&0) {
                // RFC 3501 §9: a literal is CHAR8, without NUL (RFC 3516's literal8 allows it).
                return Err(fail("NUL in a literal"));
            }
            Data::Literal(lit)
        };
        messages.push(Message { flags, date, data });
    }
    if messages.is_empty() {
        return Err(fail("Missing message"));
    }
    Ok(Append {
        tag,
        mailbox,
        messages,
    })
}

/// `"dd-Mon-yyyy hh:mm:ss +zzzz"` (RFC 3501 date-time; the day may be space-padded) as unix
/// seconds.
fn date_time(s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?;
    let s = s.strip_prefix(' ').unwrap_or(s);
    if s.len() > 32 {
        return None;
    }
    chrono::DateTime::parse_from_str(s, "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.timestamp())
}

/// A cursor over the raw command.
struct Reader<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.raw.get(self.pos).copied()
    }

    /// Only the line end is left (CRLF, or LF as imap-next accepts it).
    fn at_end(&self) -> bool {
        matches!(&self.raw[self.pos.min(self.raw.len())..], b"\r\n" | b"\n")
    }

    fn byte(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.pos += 1)
    }

    fn sp(&mut self) -> Option<()> {
        self.byte(b' ')
    }

    fn peek_word(&self, w: &[u8]) -> bool {
        self.raw
            .get(self.pos..self.pos + w.len())
            .is_some_and(|x| x.eq_ignore_ascii_case(w))
            && !self
                .raw
                .get(self.pos + w.len())
                .is_some_and(|&b| is_atom_char(b))
    }

    fn word(&mut self, w: &[u8]) -> Option<()> {
        self.peek_word(w).then(|| self.pos += w.len())
    }

    fn tag(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(|b| is_atom_char(b) && b != b'+') {
            self.pos += 1;
        }
        let t = &self.raw[start..self.pos];
        if t.is_empty() || t.len() > 256 {
            return None;
        }
        self.sp()?;
        Some(String::from_utf8_lossy(t).into_owned())
    }

    /// An atom (astring chars, `]` included), a quoted string or a literal: its contents.
    fn astring(&mut self) -> Option<Cow<'a, [u8]>> {
        match self.peek()? {
            b'"' => self.quoted().map(Cow::Owned),
            b'{' | b'~' => {
                let l = self.literal()?;
                if l.binary {
                    return None;
                }
                Some(Cow::Borrowed(&self.raw[l.range]))
            }
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|b| is_atom_char(b) || b == b']') {
                    self.pos += 1;
                }
                (self.pos > start).then(|| Cow::Borrowed(&self.raw[start..self.pos]))
            }
        }
    }

    /// A quoted string's contents (`\"` and `\\` unescaped); no CR, LF or NUL.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        let (v, next) = token::quoted(self.raw, self.pos)?;
        self.pos = next;
        Some(v)
    }

    /// `{n}`, `{n+}`, `~{n}` or `~{n+}`, CRLF, then n octets.
    fn literal(&mut self) -> Option<Lit> {
        let (l, next) = token::literal(self.raw, self.pos)?;
        self.pos = next;
        Some(Lit {
            range: l.range,
            binary: l.binary,
        })
    }

    /// `(` flags `)`: system flags and keywords; `\Recent` is ignored, another `\Name` or an
    /// invalid keyword refused.
    fn flag_list(&mut self) -> Option<Flags> {
        self.byte(b'(')?;
        let mut f = Flags::default();
        if self.byte(b')').is_some() {
            return Some(f);
        }
        loop {
            let start = self.pos;
            let _ = self.byte(b'\\');
            while self.peek().is_some_and(is_atom_char) {
                self.pos += 1;
            }
            let word = std::str::from_utf8(&self.raw[start..self.pos]).ok()?;
            match word.to_ascii_lowercase().as_str() {
                "\\seen" => f.seen = true,
                "\\answered" => f.answered = true,
                "\\flagged" => f.flagged = true,
                "\\deleted" => f.deleted = true,
                "\\draft" => f.draft = true,
                "\\recent" => {}
                w if w.starts_with('\\') => return None,
                _ => {
                    if !postern_maildir::flags::is_valid_keyword(word) {
                        return None;
                    }
                    if !f.keywords.iter().any(|k| k.eq_ignore_ascii_case(word)) {
                        if f.keywords.len() >= 64 {
                            return None;
                        }
                        f.keywords.push(word.to_owned());
                    }
                }
            }
            match self.peek()? {
                b' ' => self.pos += 1,
                b')' => {
                    self.pos += 1;
                    return Some(f);
                }
                _ => return None,
            }
        }
    }
}

/// ATOM-CHAR of RFC 3501 §9: any CHAR except atom-specials.
fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b)
}

impl Session {
    /// Runs a parsed extended APPEND; `raw` holds its literals.
    pub(crate) fn multiappend(&mut self, cmd: &Append, raw: &[u8], out: &mut Vec<u8>) -> Tagged {
        // Shared mailboxes: the "i" right, the owner's Maildir (`shared.rs`).
        if let Some(t) = crate::imap::shared::multiappend(self, cmd, raw, out) {
            return t;
        }
        let Some(name) = names::decode_bytes(&cmd.mailbox, self.utf8()) else {
            return Tagged::no(other("CANNOT"), "Invalid mailbox name");
        };
        let limit = u64::from(self.cfg.append_limit);
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        // Plain literals are known in size before anything is read or written.
        let mut known = 0u64;
        for m in &cmd.messages {
            if let Data::Literal(l) = &m.data {
                if l.range.len() as u64 > limit {
                    return Tagged::no(other("TOOBIG"), "Message too big");
                }
                known += l.range.len() as u64;
            }
        }
        let quota = user.quota_bytes.map(|q| {
            let used = postern_maildir::Quota::usage(&user.maildir)
                .map(|u| u.bytes)
                .unwrap_or(0);
            (q, used)
        });
        if quota.is_some_and(|(q, used)| used.saturating_add(known) > q) {
            return Tagged::no(other("OVERQUOTA"), "Quota exceeded");
        }
        let md = user.maildir.clone();
        // The destination: the selected mailbox's own handle (when it is one of the user's own
        // mailboxes, not another user's), or one opened for this command.
        let mut opened = None;
        let selected = self
            .state
            .sel()
            .is_some_and(|s| same_mailbox(&s.name, &name) && s.mbox.path().starts_with(md.root()));
        if !selected {
            match md.open_mailbox(&name) {
                Ok(m) => opened = Some(m),
                Err(e) => return no_trycreate(&e),
            }
        }
        let mut batch = match (&opened, self.state.sel()) {
            (Some(m), _) => m.begin_append(),
            (None, Some(s)) => s.mbox.begin_append(),
            (None, None) => return Tagged::bad("Log in first"),
        };
        let mut sources = Sources::new(&md, user_name(self), &self.cfg.hostname, limit);
        for m in &cmd.messages {
            let built;
            let (data, binary): (&[u8], bool) = match &m.data {
                Data::Literal(l) => (&raw[l.range.clone()], l.binary),
                Data::Catenate(parts) => {
                    match catenate::build(&mut sources, self.state.sel(), parts, raw) {
                        Ok((msg, binary)) => {
                            built = msg;
                            (&built, binary)
                        }
                        Err(t) => return t,
                    }
                }
            };
            if binary && !stored_exactly(data) {
                // RFC 3516 §4.3: binary content the mailbox cannot store as it is.
                return Tagged::no(
                    Code::UnknownCte,
                    "Binary content with a bare LF cannot be stored as it is",
                );
            }
            if let Err(e) = batch.add(data, &m.flags, m.date) {
                return store_error(&e);
            }
        }
        drop(sources);
        if quota.is_some_and(|(q, used)| used.saturating_add(batch.bytes()) > q) {
            return Tagged::no(other("OVERQUOTA"), "Quota exceeded");
        }
        let res = match opened.as_mut() {
            Some(m) => m.append_batch(batch).map(|u| (u, m.uid_validity())),
            None => match self.state.sel_mut() {
                Some(s) => s
                    .mbox
                    .append_batch(batch)
                    .map(|u| (u, s.mbox.uid_validity())),
                None => return Tagged::bad("Log in first"),
            },
        };
        match res {
            Ok((uids, validity)) => self.done_code(
                out,
                other(format!("APPENDUID {validity} {}", num_set(&uids))),
                "APPEND completed",
                true,
            ),
            Err(e) => store_error(&e),
        }
    }
}

fn user_name(s: &Session) -> String {
    s.state.user().map(|u| u.name.clone()).unwrap_or_default()
}

/// Whether two decoded names are the same mailbox (INBOX in any case).
fn same_mailbox(a: &str, b: &str) -> bool {
    a == b || (postern_maildir::folder::is_inbox(a) && postern_maildir::folder::is_inbox(b))
}

#[cfg(test)]
#[path = "multiappend_tests.rs"]
mod tests;

/// For the fuzz target: the extended APPEND parser, the IMAP URL parser and the CREATE USE
/// parser on `raw`, with their invariants (literal ranges inside the input, no URL naming a
/// mailbox with an empty, `.` or `..` component or a control character).
pub(crate) fn fuzz_check(raw: &[u8]) {
    let check_url = |url: &[u8]| {
        if let Some(u) = catenate::parse_url(url, "u@example.test", "mx.example.test") {
            assert!(u.uid > 0);
            if let Some(m) = &u.mailbox {
                assert!(
                    m.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
                    "{m:?}"
                );
                assert!(!m.chars().any(char::is_control), "{m:?}");
            }
        }
    };
    check_url(raw);
    if let Ok(cmd) = parse(raw) {
        assert!(!cmd.messages.is_empty() && cmd.messages.len() <= MAX_MESSAGES);
        for m in &cmd.messages {
            match &m.data {
                Data::Literal(l) => assert!(l.range.end <= raw.len()),
                Data::Catenate(parts) => {
                    assert!(!parts.is_empty());
                    for p in parts {
                        match p {
                            CatPart::Text(l) => assert!(l.range.end <= raw.len()),
                            CatPart::Url(u) => check_url(u),
                        }
                    }
                }
            }
        }
    }
    if let Some(c) = super::create_special_use::parse(raw) {
        assert!(c.attrs.iter().all(|a| a.starts_with('\\')));
    }
}
