//! UIDONLY (RFC 9586): after `ENABLE UIDONLY` the session names messages by UID only.
//!
//! - §3: a command that uses message sequence numbers — FETCH, STORE, SEARCH, COPY, MOVE,
//!   SORT, THREAD without `UID`, a sequence-set key inside UID SEARCH/SORT/THREAD, the
//!   message sequence match data of QRESYNC's SELECT parameter — is refused with
//!   `BAD [UIDREQUIRED]` and nothing is done ([`refusal`], checked by `Session::handle`
//!   for every parsed command, and by the SEARCH paths of `cmd/list.rs`/`cmd/searchres.rs`).
//! - §3.3: FETCH responses become `* <uid> UIDFETCH (…)` ([`to_uidfetch`], used by the
//!   FETCH writer and by the unsolicited flag updates); the UID item is left out unless the
//!   client asked for it (the number before UIDFETCH is the UID).
//! - §3.2: expunges are announced with VANISHED, as under QRESYNC, whether or not QRESYNC
//!   is enabled ([`super::super::session::Enabled::vanished`]).
//! - SELECT/EXAMINE send no `[UNSEEN n]` (a message number).
//! - SEARCHRES's `$` stays usable in UID commands; ESEARCH answers carry `UID` already
//!   because only UID SEARCH is allowed.

use imap_codec::imap_types::command::{CommandBody, SelectParameter};
use imap_codec::imap_types::search::SearchKey;

/// The text of the refusal; [`refusal`]'s callers write it as `BAD [UIDREQUIRED] …`.
pub(crate) const TEXT: &str = "Message sequence numbers are not allowed with UIDONLY";

/// Whether `body` uses message sequence numbers (RFC 9586 §3), which UIDONLY forbids.
pub(crate) fn refusal(body: &CommandBody<'_>) -> bool {
    match body {
        CommandBody::Fetch { uid, .. }
        | CommandBody::Store { uid, .. }
        | CommandBody::Copy { uid, .. }
        | CommandBody::Move { uid, .. } => !uid,
        CommandBody::Search { uid, criteria, .. } => !uid || uses_seqs(criteria.as_ref()),
        CommandBody::Sort {
            uid,
            search_criteria,
            ..
        }
        | CommandBody::Thread {
            uid,
            search_criteria,
            ..
        } => !uid || uses_seqs(search_criteria.as_ref()),
        CommandBody::Select { parameters, .. } | CommandBody::Examine { parameters, .. } => {
            parameters.iter().any(|p| {
                matches!(
                    p,
                    SelectParameter::QResync {
                        seq_match_data: Some(_),
                        ..
                    }
                )
            })
        }
        _ => false,
    }
}

/// A message-sequence-set search key anywhere in `keys` (bounded depth; imap-codec bounds
/// the nesting it parses).
pub(crate) fn uses_seqs(keys: &[SearchKey<'_>]) -> bool {
    let mut stack: Vec<(&SearchKey<'_>, usize)> = keys.iter().map(|k| (k, 0)).collect();
    while let Some((k, depth)) = stack.pop() {
        if depth > 1000 {
            return true;
        }
        match k {
            SearchKey::SequenceSet(_) => return true,
            SearchKey::And(v) => stack.extend(v.as_ref().iter().map(|k| (k, depth + 1))),
            SearchKey::Or(a, b) => {
                stack.push((a, depth + 1));
                stack.push((b, depth + 1));
            }
            SearchKey::Not(k) => stack.push((k, depth + 1)),
            _ => {}
        }
    }
    false
}

/// Rewrites the FETCH response written at `out[at..]` (`* SEQ FETCH (`) into
/// `* UID UIDFETCH (` (RFC 9586 §3.3). Only the head moves; the items stay as written.
pub(crate) fn to_uidfetch(out: &mut Vec<u8>, at: usize, uid: u32) {
    const HEAD: &[u8] = b" FETCH (";
    let Some(rest) = out.get(at..) else {
        return;
    };
    if !rest.starts_with(b"* ") {
        return;
    }
    let scan = &rest[..rest.len().min(24)];
    let Some(p) = scan.windows(HEAD.len()).position(|w| w == HEAD) else {
        return;
    };
    let new = format!("* {uid} UIDFETCH (");
    out.splice(at..at + p + HEAD.len(), new.into_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_of_a_fetch_response_becomes_uidfetch() {
        let mut out = b"* OK x\r\n* 3 FETCH (FLAGS (\\Seen))\r\n".to_vec();
        to_uidfetch(&mut out, 8, 42);
        assert_eq!(out, b"* OK x\r\n* 42 UIDFETCH (FLAGS (\\Seen))\r\n");
        // Anything else is left alone.
        let mut out = b"* 3 EXPUNGE\r\n".to_vec();
        to_uidfetch(&mut out, 0, 42);
        assert_eq!(out, b"* 3 EXPUNGE\r\n");
    }
}
