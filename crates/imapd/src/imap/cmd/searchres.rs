//! SEARCHRES (RFC 5182): `SEARCH RETURN (SAVE …)` keeps the result of a SEARCH in the
//! session, and `$` refers to it wherever a sequence set may stand: FETCH, STORE, COPY, MOVE
//! and their UID forms, UID EXPUNGE, and the `$` / `UID $` keys of SEARCH, SORT and THREAD.
//!
//! **A local extension of imap-codec, not an upstream change.** imap-codec
//! 2.0.0-alpha.10 has no `$` (`seq-last-command`, RFC 5182 §3) in its sequence-set grammar,
//! so such commands reach [`super::ext`] whole. [`job`] replaces each `$` marker (outside
//! quoted strings and literals) by [`PLACEHOLDER`], a sequence set no client sends, lets
//! imap-codec parse the result (so the rest of the command gets the ordinary grammar and
//! limits), and, when the command runs, puts the saved messages in the placeholder's place
//! in the parsed command: their UIDs for UID commands and search keys (`$` as a search key
//! becomes `UID <saved>`, the same messages), their current sequence numbers for FETCH,
//! STORE, COPY and MOVE, so a non-UID command answers exactly as if the client had sent the
//! numbers. A string argument that was a bare `$` (`SUBJECT $ $`) gets its `$` back.
//!
//! The saved result is [`Selected::saved`]: runs of UIDs that were consecutive in the
//! client's view when saved, so it costs at most one pair per two messages of the mailbox
//! whatever the client sends, and selecting, closing or unselecting drops it with the view.

use std::num::NonZeroU32;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{AString, Atom, Vec1};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::ext::Job;
use super::search::SearchReturn;
use crate::imap::resp;
use crate::imap::session::{Flow, Selected, Session};
use crate::imap::tagged::Tagged;

/// What stands in for `$` while imap-codec parses the command: a valid sequence set (and a
/// valid atom, for string positions) that names UIDs no Maildir reaches.
pub(crate) const PLACEHOLDER: &str = "4294967295:4294967294,4294967293";

/// Most `$` markers in one SEARCH/SORT/THREAD: each becomes a copy of the saved set, so an
/// unbounded number would multiply a large result by the length of the command.
const MAX_MARKERS: usize = 16;

/// The commands a `$` may appear in, by how the marker is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// FETCH, STORE, COPY, MOVE, UID EXPUNGE: `$` is the whole sequence set, the first
    /// argument.
    SetArgument,
    /// SEARCH, SORT, THREAD: `$` may be any search key or the set of a `UID` key.
    Criteria,
}

/// A command with `$` markers, parsed with the markers replaced by [`PLACEHOLDER`].
enum Parsed {
    Plain(Command<'static>),
    /// `SEARCH RETURN (…)`, parsed by `list::reparse`.
    Extended(Command<'static>, SearchReturn),
}

/// The job for a command that uses `$` (see [`super::ext`]); `None` for anything else.
pub(crate) fn job(raw: &[u8]) -> Option<Job> {
    let (kind, args_at) = command_kind(raw)?;
    let mut marks = markers(raw, MAX_MARKERS + 1);
    if marks.is_empty() {
        return None;
    }
    let tag = String::from_utf8_lossy(&raw[..raw.iter().position(|&b| b == b' ')?]).into_owned();
    if kind == Kind::SetArgument {
        // RFC 5182 §3: `$` is a whole sequence-set, here the first argument; any other `$`
        // is left to imap-codec (`UID COPY $ $` copies to a mailbox named `$`).
        if marks[0] != args_at {
            return None;
        }
        marks.truncate(1);
    } else if marks.len() > MAX_MARKERS {
        return Some(Box::new(move |_s: &mut Session, out: &mut Vec<u8>| {
            resp::tagged(out, &tag, "NO", Some("LIMIT"), "Too many $ references");
            Flow::Continue
        }));
    }
    let mut rewritten = Vec::with_capacity(raw.len() + marks.len() * PLACEHOLDER.len());
    let mut last = 0;
    for &m in &marks {
        rewritten.extend_from_slice(&raw[last..m]);
        rewritten.extend_from_slice(PLACEHOLDER.as_bytes());
        last = m + 1;
    }
    rewritten.extend_from_slice(&raw[last..]);
    let parsed = if is_search_return(raw) {
        match super::list::reparse(&rewritten)? {
            super::list::Extended::Search { cmd, ret } => Parsed::Extended(cmd, ret),
            super::list::Extended::List { .. } => return None,
        }
    } else {
        let (rem, cmd) = CommandCodec::default().decode(&rewritten).ok()?;
        if !rem.is_empty() {
            return None;
        }
        Parsed::Plain(cmd.into_static())
    };
    Some(Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
        s.run_with_saved(&tag, parsed, out)
    }))
}

/// The kind of a command that may hold `$`, and where its arguments start.
fn command_kind(raw: &[u8]) -> Option<(Kind, usize)> {
    let sp = raw.iter().take(1024).position(|&b| b == b' ')?;
    let mut at = sp + 1;
    let word = |at: usize| -> (String, usize) {
        let end = raw[at..]
            .iter()
            .take(16)
            .position(|&b| b == b' ')
            .map_or(at, |n| at + n);
        (
            String::from_utf8_lossy(&raw[at..end]).to_ascii_uppercase(),
            end,
        )
    };
    let (mut w, mut end) = word(at);
    let uid = w == "UID";
    if uid {
        at = end + 1;
        (w, end) = word(at);
    }
    if end == at {
        return None;
    }
    let kind = match w.as_str() {
        "FETCH" | "STORE" | "COPY" | "MOVE" => Kind::SetArgument,
        "EXPUNGE" if uid => Kind::SetArgument,
        "SEARCH" | "SORT" | "THREAD" => Kind::Criteria,
        _ => return None,
    };
    Some((kind, end + 1))
}

/// `[UID ]SEARCH RETURN …`.
fn is_search_return(raw: &[u8]) -> bool {
    let head: Vec<u8> = raw.iter().take(64).map(u8::to_ascii_uppercase).collect();
    let Some(sp) = head.iter().position(|&b| b == b' ') else {
        return false;
    };
    let rest = &head[sp + 1..];
    rest.starts_with(b"SEARCH RETURN ") || rest.starts_with(b"UID SEARCH RETURN ")
}

/// Offsets of the `$` markers of a command (a `$` standing alone between a space or `(` and
/// a space, `)` or the line end), outside quoted strings and literals; at most `limit`.
/// One pass over the bytes.
fn markers(raw: &[u8], limit: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut quoted = false;
    while i < raw.len() && out.len() < limit {
        let b = raw[i];
        if quoted {
            match b {
                b'\\' => i += 1,
                b'"' => quoted = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => quoted = true,
            b'{' => {
                // `{n}` / `{n+}` (and `~{n}`) then CRLF: the next n octets are data.
                let mut j = i + 1;
                let mut n: u64 = 0;
                while j < raw.len() && raw[j].is_ascii_digit() && j - i < 12 {
                    n = n * 10 + u64::from(raw[j] - b'0');
                    j += 1;
                }
                if j < raw.len() && raw[j] == b'+' {
                    j += 1;
                }
                if j > i + 1 && raw.get(j) == Some(&b'}') {
                    let mut k = j + 1;
                    if raw.get(k) == Some(&b'\r') {
                        k += 1;
                    }
                    if raw.get(k) == Some(&b'\n') {
                        i = (k + 1).saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
                        continue;
                    }
                }
            }
            b'$' => {
                let before = i.checked_sub(1).map(|p| raw[p]);
                let after = raw.get(i + 1).copied();
                if matches!(before, Some(b' ' | b'('))
                    && matches!(after, None | Some(b' ' | b')' | b'\r' | b'\n'))
                {
                    out.push(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn is_placeholder(set: &SequenceSet) -> bool {
    SequenceSet::try_from(PLACEHOLDER).is_ok_and(|p| &p == set)
}

/// A sequence set from inclusive ranges (`None` when there are none).
fn set_of(ranges: &[(u32, u32)]) -> Option<SequenceSet> {
    let v: Vec<Sequence> = ranges
        .iter()
        .filter_map(|&(a, b)| {
            let a = NonZeroU32::new(a)?;
            let b = NonZeroU32::new(b)?;
            Some(if a == b {
                Sequence::Single(SeqOrUid::Value(a))
            } else {
                Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b))
            })
        })
        .collect();
    Vec1::try_from(v).ok().map(SequenceSet)
}

/// A set that matches no message: UID 4294967295, which no Maildir reaches (the empty
/// saved result as a sequence set, which IMAP cannot write).
fn nothing() -> SequenceSet {
    SequenceSet::from(Sequence::Single(SeqOrUid::Value(NonZeroU32::MAX)))
}

/// The saved messages as a UID set.
fn saved_uids(sel: &Selected) -> Option<SequenceSet> {
    set_of(&sel.saved)
}

/// The saved messages still in the client's view, as sequence numbers.
fn saved_seqs(sel: &Selected) -> Option<SequenceSet> {
    let mut r: Vec<(u32, u32)> = Vec::new();
    for &(a, b) in &sel.saved {
        let start = sel.uids.partition_point(|&u| u < a);
        let end = sel.uids.partition_point(|&u| u <= b);
        if start < end {
            let (s, e) = (
                u32::try_from(start + 1).unwrap_or(u32::MAX),
                u32::try_from(end).unwrap_or(u32::MAX),
            );
            match r.last_mut() {
                Some(last) if last.1.saturating_add(1) == s => last.1 = e,
                _ => r.push((s, e)),
            }
        }
    }
    set_of(&r)
}

/// Runs of `(seq, uid)` hits (in mailbox order) that are consecutive in the view, as UID
/// ranges.
pub(crate) fn runs(hits: impl IntoIterator<Item = (u32, u32)>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut prev_seq = 0u32;
    for (seq, uid) in hits {
        match out.last_mut() {
            Some(last) if prev_seq != 0 && seq == prev_seq.wrapping_add(1) => last.1 = uid,
            _ => out.push((uid, uid)),
        }
        prev_seq = seq;
    }
    out.shrink_to_fit();
    out
}

/// Puts the saved set in the placeholder's places within search keys: `$` and `UID $`
/// become `UID <saved UIDs>` (`NOT ALL` when nothing is saved), a bare `$` string comes
/// back as `$`.
fn substitute_keys(keys: &mut Vec1<SearchKey<'static>>, uids: Option<&SequenceSet>) {
    let old = std::mem::replace(keys, Vec1::from(SearchKey::All));
    let v: Vec<SearchKey<'static>> = old
        .into_inner()
        .into_iter()
        .map(|k| subst(k, uids, 0))
        .collect();
    if let Ok(v) = Vec1::try_from(v) {
        *keys = v;
    }
}

/// Nesting deeper than this is left as it is (a placeholder left there matches nothing).
const MAX_DEPTH: usize = 200;

fn subst(key: SearchKey<'static>, uids: Option<&SequenceSet>, depth: usize) -> SearchKey<'static> {
    if depth > MAX_DEPTH {
        return key;
    }
    let fix = |a: AString<'static>| {
        if a.as_ref() == PLACEHOLDER.as_bytes() {
            AString::try_from("$").unwrap_or(a)
        } else {
            a
        }
    };
    let d = depth + 1;
    match key {
        SearchKey::SequenceSet(s) | SearchKey::Uid(s) if is_placeholder(&s) => match uids {
            Some(u) => SearchKey::Uid(u.clone()),
            None => SearchKey::Not(Box::new(SearchKey::All)),
        },
        SearchKey::And(v) => {
            let v: Vec<SearchKey<'static>> = v
                .into_inner()
                .into_iter()
                .map(|k| subst(k, uids, d))
                .collect();
            Vec1::try_from(v).map_or(SearchKey::All, SearchKey::And)
        }
        SearchKey::Or(a, b) => {
            SearchKey::Or(Box::new(subst(*a, uids, d)), Box::new(subst(*b, uids, d)))
        }
        SearchKey::Not(k) => SearchKey::Not(Box::new(subst(*k, uids, d))),
        SearchKey::Bcc(a) => SearchKey::Bcc(fix(a)),
        SearchKey::Body(a) => SearchKey::Body(fix(a)),
        SearchKey::Cc(a) => SearchKey::Cc(fix(a)),
        SearchKey::From(a) => SearchKey::From(fix(a)),
        SearchKey::Subject(a) => SearchKey::Subject(fix(a)),
        SearchKey::Text(a) => SearchKey::Text(fix(a)),
        SearchKey::To(a) => SearchKey::To(fix(a)),
        SearchKey::Header(f, v) => SearchKey::Header(fix(f), fix(v)),
        SearchKey::Keyword(a) if a.as_ref() == PLACEHOLDER => {
            Atom::try_from("$").map_or(SearchKey::Keyword(a), SearchKey::Keyword)
        }
        SearchKey::Unkeyword(a) if a.as_ref() == PLACEHOLDER => {
            Atom::try_from("$").map_or(SearchKey::Unkeyword(a), SearchKey::Unkeyword)
        }
        k => k,
    }
}

/// Sets a command's sequence set (the placeholder) to the saved messages.
fn substitute_set(set: &mut SequenceSet, uid: &mut bool, sel: &Selected) {
    if !is_placeholder(set) {
        return;
    }
    let saved = if *uid {
        saved_uids(sel)
    } else {
        saved_seqs(sel)
    };
    match saved {
        Some(s) => *set = s,
        None => {
            // Nothing saved (or all of it expunged): the command acts on no message, which
            // only a UID set can say.
            *set = nothing();
            *uid = true;
        }
    }
}

impl Session {
    /// Saves the result of a SEARCH with the SAVE return option (RFC 5182 §2.1, §2.4).
    /// `hits` are (seq, uid) in mailbox order.
    pub(crate) fn save_search(&mut self, ret: &SearchReturn, hits: &[(u32, u32)]) {
        let SearchReturn::Extended {
            min,
            max,
            all,
            count,
            save: true,
        } = ret
        else {
            return;
        };
        let Some(sel) = self.state.sel_mut() else {
            return;
        };
        // §2.4: with MIN and/or MAX alone, `$` holds the message(s) they return; with ALL or
        // COUNT (or SAVE alone), every message found.
        sel.saved = if (*min || *max) && !*all && !*count {
            let mut v = Vec::new();
            if *min && let Some(h) = hits.first() {
                v.push((h.1, h.1));
            }
            if *max
                && let Some(h) = hits.last()
                && v.last() != Some(&(h.1, h.1))
            {
                v.push((h.1, h.1));
            }
            v
        } else {
            runs(hits.iter().copied())
        };
    }

    /// §2.1: a SEARCH with SAVE that fails (NO) leaves `$` empty.
    pub(crate) fn forget_search(&mut self, ret: &SearchReturn) {
        if matches!(ret, SearchReturn::Extended { save: true, .. })
            && let Some(sel) = self.state.sel_mut()
        {
            sel.saved.clear();
        }
    }

    /// Runs a command whose `$` markers became [`PLACEHOLDER`], with the saved result in
    /// their place (read now, when the command runs, so a pipelined `SEARCH RETURN (SAVE)`
    /// before it has taken effect — RFC 5182 §2.1).
    fn run_with_saved(&mut self, tag: &str, parsed: Parsed, out: &mut Vec<u8>) -> Flow {
        let Some(sel) = self.state.sel() else {
            Tagged::bad("No mailbox selected").write(out, tag);
            return Flow::Continue;
        };
        let uids = saved_uids(sel);
        match parsed {
            Parsed::Extended(cmd, ret) => {
                let CommandBody::Search {
                    charset,
                    mut criteria,
                    uid,
                } = cmd.body
                else {
                    Tagged::bad("Syntax error").write(out, tag);
                    return Flow::Continue;
                };
                substitute_keys(&mut criteria, uids.as_ref());
                let t = self.search(tag, charset.as_ref(), criteria, uid, &ret, out);
                t.write(out, tag);
                Flow::Continue
            }
            Parsed::Plain(mut cmd) => {
                match &mut cmd.body {
                    CommandBody::Fetch {
                        sequence_set, uid, ..
                    }
                    | CommandBody::Store {
                        sequence_set, uid, ..
                    }
                    | CommandBody::Copy {
                        sequence_set, uid, ..
                    }
                    | CommandBody::Move {
                        sequence_set, uid, ..
                    } => {
                        if !*uid && self.enabled.uidonly {
                            // RFC 9586 §3: refused before anything else (handle's check
                            // would see the numbers only after the substitution).
                            resp::tagged(
                                out,
                                tag,
                                "BAD",
                                Some("UIDREQUIRED"),
                                "Message sequence numbers are not allowed with UIDONLY",
                            );
                            return Flow::Continue;
                        }
                        substitute_set(sequence_set, uid, sel);
                    }
                    CommandBody::ExpungeUid { sequence_set } => {
                        let mut uid = true;
                        substitute_set(sequence_set, &mut uid, sel);
                    }
                    CommandBody::Search { criteria, .. } => {
                        substitute_keys(criteria, uids.as_ref());
                    }
                    CommandBody::Sort {
                        search_criteria, ..
                    }
                    | CommandBody::Thread {
                        search_criteria, ..
                    } => substitute_keys(search_criteria, uids.as_ref()),
                    _ => {}
                }
                self.handle(cmd, out)
            }
        }
    }
}

#[cfg(test)]
mod tests;
