//! What one FETCH of one message may cost. A command of 64 KiB names about 5,000 items, and
//! the answer for one message is built in memory before it is written (the chunked
//! [`Flow::More`](crate::imap::session::Flow::More) output yields between messages), so:
//! - repeated items are answered once ([`dedupe`]);
//! - the message's part tree is parsed once for all items (`msg::Parsed`, in `fetch.rs`);
//! - before anything is answered or \Seen is set, the octets the items would produce or
//!   read ([`estimate`]) are held against [`budget`]; past it the message is refused with a
//!   tagged `NO [LIMIT]`.

use std::collections::HashSet;

use imap_codec::imap_types::fetch::{MessageDataItemName, Section};
use postern_imap_message as msg;

/// Slack over [`budget`]'s multiple of the message size (small messages, structures).
const SLACK: usize = 1 << 20;
/// An allowance for the items answered from the summary (ENVELOPE, BODY, BODYSTRUCTURE…).
const SMALL_ITEM: usize = 64;

/// Keeps the first of identical items. RFC 9051 §7.5.2: a FETCH response is a list of data
/// items and their values; an item named twice names the same value, so it is answered once
/// (Dovecot's `imap_fetch_add_handler` likewise drops a repeated UID, FLAGS, ENVELOPE…; we
/// do it for sections too). Linear in the items (they are hashed).
pub(super) fn dedupe(items: &mut Vec<MessageDataItemName<'static>>) {
    if items.len() < 2 {
        return;
    }
    let mut seen = HashSet::with_capacity(items.len());
    items.retain(|i| seen.insert(i.clone()));
}

/// Most octets one message's FETCH may produce or read: four times the message (BODY[],
/// BODY[HEADER], BODY[TEXT] and BINARY[] of it together take about twice) plus 1 MiB.
pub(super) fn budget(size: usize) -> usize {
    size.saturating_mul(4).saturating_add(SLACK)
}

/// `len` octets cut by a partial fetch `<off.n>`.
fn cut(len: usize, partial: Option<(u32, std::num::NonZeroU32)>) -> usize {
    match partial {
        None => len,
        Some((off, n)) => {
            let off = usize::try_from(off).unwrap_or(usize::MAX);
            let n = usize::try_from(n.get()).unwrap_or(usize::MAX);
            len.saturating_sub(off).min(n)
        }
    }
}

/// An upper bound on the octets `items` make and read for one message, computed without
/// copying or decoding anything: sections are slices of the parsed message, a header field
/// filter reads (and at most returns) its header block, a BINARY decodes at most its part.
pub(super) fn estimate(
    items: &[MessageDataItemName<'_>],
    parsed: &msg::Parsed<'_>,
    summary: Option<&msg::Summary>,
) -> usize {
    let raw = parsed.raw();
    let header = msg::header_block(raw).len();
    let mut total = 0usize;
    for it in items {
        let n = match it {
            MessageDataItemName::BodyExt {
                section, partial, ..
            } => match section {
                Some(s @ (Section::HeaderFields(part, _) | Section::HeaderFieldsNot(part, _))) => {
                    let h = match (part, summary) {
                        (None, Some(sm)) => sm.header.len(),
                        _ => parsed.section_work(Some(s)),
                    };
                    h.saturating_mul(2)
                }
                Some(Section::Header(None)) => match summary {
                    Some(sm) => cut(sm.header.len(), *partial),
                    None => cut(header, *partial),
                },
                s => cut(parsed.section(s.as_ref()).map_or(0, |d| d.len()), *partial),
            },
            MessageDataItemName::Binary {
                section, partial, ..
            } => {
                let w = parsed.binary_work(section);
                w.saturating_add(cut(w, *partial))
            }
            MessageDataItemName::BinarySize { section } => parsed.binary_work(section),
            MessageDataItemName::Rfc822 => raw.len(),
            MessageDataItemName::Rfc822Text => raw.len().saturating_sub(header),
            MessageDataItemName::Rfc822Header => summary.map_or(header, |sm| sm.header.len()),
            _ => SMALL_ITEM,
        };
        total = total.saturating_add(n);
    }
    total
}
