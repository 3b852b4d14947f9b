//! FETCH: message data items, \Seen on non-PEEK reads, CHANGEDSINCE/VANISHED, and output
//! in chunks so a `FETCH 1:* BODY[]` never holds the whole mailbox in memory.

use std::num::{NonZeroU32, NonZeroU64};

use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::core::{IString, Literal, NString, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_codec::imap_types::response::{Code, Data};
use imap_codec::imap_types::sequence::SequenceSet;
use postern_imap_message as msg;
use postern_maildir::FlagOp;
use postern_maildir::{Flags, MessageMeta};

use crate::imap::resp::{self, num_set, untagged};
use crate::imap::session::{Flow, PendingFetch, Selected, Session, fetch_flags};
use crate::imap::tagged::{Tagged, other};

#[path = "fetch_cost.rs"]
mod cost;

/// Output size after which a FETCH yields to the driver to write.
const CHUNK: usize = 1 << 20;

/// True when every item is one `write_meta_fetch` writes.
fn meta_only(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().all(|i| {
        matches!(
            i,
            MessageDataItemName::Uid
                | MessageDataItemName::Flags
                | MessageDataItemName::ModSeq
                | MessageDataItemName::Rfc822Size
        )
    })
}

/// `* SEQ FETCH (UID n FLAGS (…) RFC822.SIZE n MODSEQ (n))` for the items asked, in order.
/// Keywords are valid atoms (the store keeps only those), so no quoting is needed.
fn write_meta_fetch(
    out: &mut Vec<u8>,
    seq: u32,
    meta: &MessageMeta,
    recent: bool,
    items: &[MessageDataItemName<'_>],
    modseq: bool,
) {
    use std::io::Write as _;
    let _ = write!(out, "* {seq} FETCH (");
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b' ');
        }
    };
    let mut wrote_modseq = false;
    for it in items {
        sep(out);
        match it {
            MessageDataItemName::Uid => {
                let _ = write!(out, "UID {}", meta.uid);
            }
            MessageDataItemName::Flags => {
                out.extend_from_slice(b"FLAGS (");
                let f = &meta.flags;
                let mut fsep = false;
                for (on, name) in [
                    (f.answered, "\\Answered"),
                    (f.flagged, "\\Flagged"),
                    (f.deleted, "\\Deleted"),
                    (f.seen, "\\Seen"),
                    (f.draft, "\\Draft"),
                ] {
                    if on {
                        if std::mem::replace(&mut fsep, true) {
                            out.push(b' ');
                        }
                        out.extend_from_slice(name.as_bytes());
                    }
                }
                for k in &f.keywords {
                    if std::mem::replace(&mut fsep, true) {
                        out.push(b' ');
                    }
                    out.extend_from_slice(k.as_bytes());
                }
                if recent {
                    if fsep {
                        out.push(b' ');
                    }
                    out.extend_from_slice(b"\\Recent");
                }
                out.push(b')');
            }
            MessageDataItemName::Rfc822Size => {
                let _ = write!(
                    out,
                    "RFC822.SIZE {}",
                    u32::try_from(meta.size).unwrap_or(u32::MAX)
                );
            }
            MessageDataItemName::ModSeq => {
                wrote_modseq = true;
                let _ = write!(out, "MODSEQ ({})", meta.modseq.max(1));
            }
            _ => {}
        }
    }
    if modseq && !wrote_modseq {
        sep(out);
        let _ = write!(out, "MODSEQ ({})", meta.modseq.max(1));
    }
    out.extend_from_slice(b")\r\n");
}

/// A section answered from the cached header alone.
fn header_only(section: Option<&Section<'_>>) -> bool {
    matches!(
        section,
        Some(
            Section::Header(None)
                | Section::HeaderFields(None, _)
                | Section::HeaderFieldsNot(None, _)
        )
    )
}

/// Items that need the message file.
fn wants_raw(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|i| match i {
        MessageDataItemName::BodyExt { section, .. } => !header_only(section.as_ref()),
        MessageDataItemName::Rfc822
        | MessageDataItemName::Rfc822Text
        | MessageDataItemName::Binary { .. }
        | MessageDataItemName::BinarySize { .. } => true,
        _ => false,
    })
}

/// Items answered from the cached [`msg::Summary`].
fn wants_summary(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|i| match i {
        MessageDataItemName::BodyExt { section, .. } => header_only(section.as_ref()),
        MessageDataItemName::Body
        | MessageDataItemName::BodyStructure
        | MessageDataItemName::Envelope
        | MessageDataItemName::Rfc822Header => true,
        _ => false,
    })
}

fn sets_seen(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|i| {
        matches!(
            i,
            MessageDataItemName::BodyExt { peek: false, .. }
                | MessageDataItemName::Binary { peek: false, .. }
                | MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Text
        )
    })
}

/// A literal for BODY/RFC822 data. An IMAP literal cannot carry NUL (RFC 9051 §4.3:
/// `CHAR8` excludes %x00), which only a literal8 may (RFC 3516): a message APPENDed with
/// binary content is answered with each NUL as 0x80 here, as Dovecot does; BINARY[] gives
/// its octets unchanged.
fn literal(mut data: Vec<u8>) -> NString<'static> {
    if data.contains(&0) {
        for b in &mut data {
            if *b == 0 {
                *b = 0x80;
            }
        }
    }
    NString(Some(IString::Literal(Literal::unvalidated(data))))
}

/// Notes a message whose file cannot be read, for the tagged NO.
fn unreadable(p: &mut PendingFetch, uid: u32, e: &postern_maildir::MaildirError) {
    if matches!(e, postern_maildir::MaildirError::Expunged(_)) {
        tracing::info!(uid, "fetch: message file is gone");
    } else {
        tracing::warn!(error = %e, uid, "fetch: message unreadable");
        p.read_error = true;
    }
    p.unreadable.push(uid);
}

/// INTERNALDATE as an IMAP date-time (UTC).
pub(crate) fn imap_date(unix: i64) -> Option<DateTime> {
    let dt = chrono::DateTime::from_timestamp(unix, 0)?.fixed_offset();
    DateTime::try_from(dt).ok()
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fetch(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        names: MacroOrMessageDataItemNames<'static>,
        uid: bool,
        modifiers: &[FetchModifier],
        out: &mut Vec<u8>,
    ) -> Flow {
        // Shared mailboxes: no \Seen without the "s" right (`shared.rs`).
        let names = crate::imap::shared::fetch_items(self, names);
        let mut items = match names {
            MacroOrMessageDataItemNames::Macro(m) => {
                let mut v = vec![
                    MessageDataItemName::Flags,
                    MessageDataItemName::InternalDate,
                    MessageDataItemName::Rfc822Size,
                ];
                if matches!(m, Macro::All | Macro::Full) {
                    v.push(MessageDataItemName::Envelope);
                }
                if matches!(m, Macro::Full) {
                    v.push(MessageDataItemName::Body);
                }
                v
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        cost::dedupe(&mut items);
        let mut changed_since = None;
        let mut vanished = false;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(v) => changed_since = Some(v.get()),
                FetchModifier::Vanished => vanished = true,
            }
        }
        if vanished && (!uid || changed_since.is_none() || !self.enabled.qresync) {
            Tagged::bad("VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC").write(out, tag);
            return Flow::Continue;
        }
        let mut announce_modseq = false;
        if changed_since.is_some()
            || items
                .iter()
                .any(|i| matches!(i, MessageDataItemName::ModSeq))
        {
            announce_modseq = !self.enabled.condstore && self.state.sel().is_some();
            self.enabled.condstore = true;
        }
        let modseq = self.enabled.condstore
            && (changed_since.is_some() || items.contains(&MessageDataItemName::ModSeq));
        // Under UIDONLY the UID heads the response (`* u UIDFETCH`, RFC 9586).
        if uid && !self.enabled.uidonly && !items.contains(&MessageDataItemName::Uid) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let targets = match self.resolve(set, uid) {
            Ok(t) => t,
            Err(e) => {
                Tagged::bad(e).write(out, tag);
                return Flow::Continue;
            }
        };
        if vanished && let (Some(cs), Some(sel)) = (changed_since, self.state.sel()) {
            let largest = sel.uids.last().copied().unwrap_or(0);
            let rs = crate::imap::session::ranges(set, largest);
            if let Some(gone) = sel.mbox.expunged_since(cs) {
                let v: Vec<u32> = gone
                    .into_iter()
                    .filter(|&u| super::mailboxes::in_ranges(&rs, u))
                    .collect();
                if !v.is_empty() {
                    untagged(out, &format!("VANISHED (EARLIER) {}", num_set(&v)));
                }
            }
        }
        let extra = std::mem::take(&mut self.objectid.fetch);
        self.pending = Some(PendingFetch {
            tag: tag.to_owned(),
            meta_only: meta_only(&items) && extra.is_empty(),
            extra,
            items,
            todo: targets.into(),
            modseq,
            changed_since,
            failed_cte: false,
            unreadable: Vec::new(),
            read_error: false,
            too_large: Vec::new(),
            announce_modseq,
        });
        self.resume(out)
    }

    /// Continues a FETCH (see [`Flow::More`]).
    pub fn resume(&mut self, out: &mut Vec<u8>) -> Flow {
        if let Some(f) = self.notify_status_resume(out) {
            return f;
        }
        let Some(mut p) = self.pending.take() else {
            return Flow::Continue;
        };
        let start_len = out.len();
        while let Some((seq, uid)) = p.todo.pop_front() {
            let at = out.len();
            self.fetch_one(&mut p, seq, uid, out);
            if self.enabled.uidonly && out.len() > at {
                super::uidonly::to_uidfetch(out, at, uid);
            }
            if out.len() - start_len > CHUNK && !p.todo.is_empty() {
                self.pending = Some(p);
                return Flow::More;
            }
        }
        self.sync(out, false);
        let result = if !p.unreadable.is_empty() {
            // RFC 9051 §6.4.5 (NO: cannot fetch that data), after answering the readable
            // messages; Dovecot's codes and texts.
            let uids = num_set(&p.unreadable);
            if p.read_error {
                Tagged::no(
                    other("SERVERBUG"),
                    format!("Some messages could not be read (UID {uids})"),
                )
            } else {
                Tagged::no(
                    other("EXPUNGEISSUED"),
                    format!("Some of the requested messages no longer exist (UID {uids})"),
                )
            }
        } else if !p.too_large.is_empty() {
            // The messages whose answer would pass `cost::budget`.
            Tagged::no(
                other("LIMIT"),
                format!(
                    "FETCH response too large for UID {}: fetch fewer items",
                    num_set(&p.too_large)
                ),
            )
        } else if p.failed_cte {
            Tagged::no(Code::UnknownCte, "Cannot decode a part's transfer encoding")
        } else if p.announce_modseq
            && let Some(sel) = self.state.sel()
        {
            Tagged::ok_code(
                other(format!(
                    "HIGHESTMODSEQ {}",
                    sel.mbox.highest_modseq().max(1)
                )),
                "FETCH completed",
            )
        } else {
            Tagged::ok("FETCH completed")
        };
        result.write(out, &p.tag);
        Flow::Continue
    }

    /// Answers one message of a FETCH (nothing for a message expunged meanwhile or, with
    /// CHANGEDSINCE, unchanged since).
    fn fetch_one(&mut self, p: &mut PendingFetch, seq: u32, uid: u32, out: &mut Vec<u8>) {
        let condstore = self.enabled.condstore;
        let Some(sel) = self.state.sel_mut() else {
            return;
        };
        if sel.gone.contains(&uid) {
            return;
        }
        if p.meta_only {
            // FLAGS/UID/MODSEQ/RFC822.SIZE only (what clients send to resynchronise, often
            // for the whole mailbox): written directly, without copies or the generic encoder.
            if let Some(meta) = sel.mbox.get(uid)
                && p.changed_since.is_none_or(|cs| meta.modseq > cs)
            {
                let recent = sel.recent.contains(&uid);
                write_meta_fetch(out, seq, meta, recent, &p.items, p.modseq);
            }
            return;
        }
        let Some(meta) = sel.mbox.get(uid).cloned() else {
            return;
        };
        if p.changed_since.is_some_and(|cs| meta.modseq <= cs) {
            return;
        }
        let src = match Source::load(sel, &p.items, uid) {
            Ok(src) => src,
            Err(e) => return unreadable(p, uid, &e),
        };
        // The part tree, parsed once for all the items (at most once per message).
        let parsed = msg::Parsed::new(src.raw());
        let size = src
            .raw()
            .len()
            .max(usize::try_from(meta.size).unwrap_or(usize::MAX));
        if cost::estimate(&p.items, &parsed, src.summary.as_ref()) > cost::budget(size) {
            // Before \Seen is set: nothing of this message is answered.
            p.too_large.push(uid);
            return;
        }
        let (meta, flags_changed) = mark_seen(sel, &p.items, meta);
        let recent = sel.recent.contains(&uid);
        let mut v: Vec<Item> = Vec::with_capacity(p.items.len() + 2);
        for it in &p.items {
            match item(it, &meta, recent, &src, &parsed) {
                Ok(Some(d)) => v.push(d),
                Ok(None) => {}
                Err(UnknownCte) => p.failed_cte = true,
            }
        }
        if !p.extra.is_empty() {
            let new = super::objectid::fetch_items(sel, &mut p.extra, uid);
            v.extend(new.into_iter().map(Item::Raw));
        }
        // A FETCH that set \Seen reports the new flags (and MODSEQ) even if not asked.
        if flags_changed && !p.items.contains(&MessageDataItemName::Flags) {
            v.push(Item::Codec(MessageDataItem::Flags(fetch_flags(
                &meta, recent,
            ))));
        }
        if (p.modseq || (flags_changed && condstore))
            && !p.items.contains(&MessageDataItemName::ModSeq)
            && let Some(m) = NonZeroU64::new(meta.modseq.max(1))
        {
            v.push(Item::Codec(MessageDataItem::ModSeq(m)));
        }
        if let Some(seq) = NonZeroU32::new(seq) {
            write_fetch(out, seq, v);
        }
    }
}

/// One item of a FETCH response: encoded by imap-codec, or written here (BINARY, whose
/// partial form `BINARY[1]<0>` imap-types cannot express). A FETCH holds a few at a time.
#[allow(clippy::large_enum_variant)]
enum Item {
    Codec(MessageDataItem<'static>),
    Raw(Vec<u8>),
}

/// `* SEQ FETCH (item item …)\r\n`; nothing when there are no items.
fn write_fetch(out: &mut Vec<u8>, seq: NonZeroU32, items: Vec<Item>) {
    if items.iter().all(|i| matches!(i, Item::Codec(_))) {
        let v: Vec<MessageDataItem<'static>> = items
            .into_iter()
            .filter_map(|i| match i {
                Item::Codec(d) => Some(d),
                Item::Raw(_) => None,
            })
            .collect();
        if let Ok(items) = Vec1::try_from(v) {
            resp::data(out, Data::Fetch { seq, items });
        }
        return;
    }
    use std::io::Write as _;
    let _ = write!(out, "* {seq} FETCH (");
    let prefix = out.len();
    for it in items {
        if out.len() > prefix {
            out.push(b' ');
        }
        match it {
            Item::Raw(b) => out.extend_from_slice(&b),
            Item::Codec(d) => {
                // The item alone, as imap-codec writes it inside `* SEQ FETCH (…)\r\n`.
                let mut one = Vec::new();
                resp::data(
                    &mut one,
                    Data::Fetch {
                        seq,
                        items: Vec1::from(d),
                    },
                );
                let head = format!("* {seq} FETCH (").len();
                if let Some(inner) = one.get(head..one.len().saturating_sub(3)) {
                    out.extend_from_slice(inner);
                }
            }
        }
    }
    out.extend_from_slice(b")\r\n");
}

/// What one message's items are answered from: its file, its cached [`msg::Summary`], or
/// both (each only when an item needs it).
struct Source {
    raw: Option<Vec<u8>>,
    summary: Option<msg::Summary>,
}

impl Source {
    /// Reads what `items` need: the file for body sections, the summary (built from the file
    /// and cached when missing) for ENVELOPE, BODY(STRUCTURE) and header sections.
    fn load(
        sel: &mut Selected,
        items: &[MessageDataItemName<'_>],
        uid: u32,
    ) -> Result<Self, postern_maildir::MaildirError> {
        let mut raw = if wants_raw(items) {
            Some(sel.mbox.read(uid)?)
        } else {
            None
        };
        if !wants_summary(items) {
            return Ok(Self { raw, summary: None });
        }
        let cached = sel
            .mbox
            .cache_get(uid)
            .and_then(|b| msg::Summary::from_bytes(&b));
        let summary = match cached {
            Some(s) => s,
            None => {
                let bytes = match raw.take() {
                    Some(r) => r,
                    None => sel.mbox.read(uid)?,
                };
                let s = msg::Summary::from_message(&bytes);
                let _ = sel.mbox.cache_put(uid, &s.to_bytes());
                raw = Some(bytes);
                s
            }
        };
        Ok(Self {
            raw,
            summary: Some(summary),
        })
    }

    /// The message file (empty when no item needed it).
    fn raw(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or_default()
    }
}

/// Sets \Seen when an item reads the body without PEEK (not in a read-only mailbox); the
/// message's metadata afterwards, and whether the flags changed.
fn mark_seen(
    sel: &mut Selected,
    items: &[MessageDataItemName<'_>],
    meta: MessageMeta,
) -> (MessageMeta, bool) {
    if sel.read_only || meta.flags.seen || !sets_seen(items) {
        return (meta, false);
    }
    let add = Flags {
        seen: true,
        ..Flags::default()
    };
    match sel.mbox.store_flags(meta.uid, FlagOp::Add, &add, None) {
        Ok(Some(m)) => (m.clone(), true),
        _ => (meta, false),
    }
}

/// A part's Content-Transfer-Encoding cannot be decoded (BINARY): the tagged result is
/// `NO [UNKNOWN-CTE]`.
struct UnknownCte;

/// One requested item of a message; `Ok(None)` when there is nothing to send for it.
fn item(
    it: &MessageDataItemName<'static>,
    meta: &MessageMeta,
    recent: bool,
    src: &Source,
    parsed: &msg::Parsed<'_>,
) -> Result<Option<Item>, UnknownCte> {
    if let MessageDataItemName::Binary {
        section, partial, ..
    } = it
    {
        return binary_section(section, *partial, parsed).map(|b| Some(Item::Raw(b)));
    }
    Ok(codec_item(it, meta, recent, src, parsed)?.map(Item::Codec))
}

/// An item imap-codec encodes.
fn codec_item(
    it: &MessageDataItemName<'static>,
    meta: &MessageMeta,
    recent: bool,
    src: &Source,
    parsed: &msg::Parsed<'_>,
) -> Result<Option<MessageDataItem<'static>>, UnknownCte> {
    let summary = src.summary.as_ref();
    let raw = src.raw();
    Ok(Some(match it {
        MessageDataItemName::Uid => return Ok(NonZeroU32::new(meta.uid).map(MessageDataItem::Uid)),
        MessageDataItemName::Flags => MessageDataItem::Flags(fetch_flags(meta, recent)),
        MessageDataItemName::InternalDate => {
            return Ok(imap_date(meta.internal_date).map(MessageDataItem::InternalDate));
        }
        MessageDataItemName::Rfc822Size => {
            MessageDataItem::Rfc822Size(u32::try_from(meta.size).unwrap_or(u32::MAX))
        }
        MessageDataItemName::ModSeq => {
            return Ok(NonZeroU64::new(meta.modseq.max(1)).map(MessageDataItem::ModSeq));
        }
        MessageDataItemName::Envelope => MessageDataItem::Envelope(match summary {
            Some(s) => s.envelope.clone(),
            None => msg::envelope(raw),
        }),
        MessageDataItemName::Body => MessageDataItem::Body(match summary {
            Some(s) => s.body.clone(),
            None => msg::body_structure(raw, false),
        }),
        MessageDataItemName::BodyStructure => MessageDataItem::BodyStructure(match summary {
            Some(s) => s.body_structure.clone(),
            None => msg::body_structure(raw, true),
        }),
        MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(literal(raw.to_vec())),
        MessageDataItemName::Rfc822Header => {
            MessageDataItem::Rfc822Header(literal(match summary {
                Some(s) => s.header.clone(),
                None => msg::header_block(raw).to_vec(),
            }))
        }
        MessageDataItemName::Rfc822Text => {
            MessageDataItem::Rfc822Text(literal(msg::body_text(raw).to_vec()))
        }
        MessageDataItemName::BodyExt {
            section, partial, ..
        } => body_section(section.as_ref(), *partial, src, parsed),
        MessageDataItemName::Binary { .. } => return Ok(None),
        MessageDataItemName::BinarySize { section } => MessageDataItem::BinarySize {
            section: section.clone(),
            size: match parsed.binary_size(section) {
                Ok(size) => size,
                Err(msg::BinaryError::UnknownCte) => return Err(UnknownCte),
                Err(msg::BinaryError::NoSuchPart) => 0,
            },
        },
    }))
}

/// `BODY[section]<partial>`: header sections from the summary when there is one, the rest
/// from the file; NIL for a part that does not exist.
fn body_section(
    section: Option<&Section<'static>>,
    partial: Option<(u32, NonZeroU32)>,
    src: &Source,
    parsed: &msg::Parsed<'_>,
) -> MessageDataItem<'static> {
    let data = match (&src.summary, header_only(section)) {
        (Some(s), true) => s.header_section(section).map(std::borrow::Cow::Owned),
        _ => parsed.section(section),
    };
    let (data, origin) = match (data, partial) {
        (Some(d), Some((off, len))) => (Some(msg::partial(&d, off, len.get()).to_vec()), Some(off)),
        (d, _) => (d.map(std::borrow::Cow::into_owned), None),
    };
    MessageDataItem::BodyExt {
        section: section.cloned(),
        origin,
        data: data.map_or(NString(None), literal),
    }
}

/// `BINARY[section]<origin> value` (RFC 3516 §4.2, §4.3): the decoded part (a partial
/// fetch counts decoded octets and names its origin octet); a literal8 (`~{n}`) when the data
/// holds NUL, a plain literal otherwise (§4.3: data without NUL SHOULD be a string); NIL
/// for a part that does not exist.
fn binary_section(
    section: &[NonZeroU32],
    partial: Option<(u32, NonZeroU32)>,
    parsed: &msg::Parsed<'_>,
) -> Result<Vec<u8>, UnknownCte> {
    use std::io::Write as _;
    let decoded = match parsed.binary_section(section) {
        Ok(d) => Some(d),
        Err(msg::BinaryError::UnknownCte) => return Err(UnknownCte),
        Err(msg::BinaryError::NoSuchPart) => None,
    };
    let data = decoded.as_deref().map(|d| match partial {
        Some((off, len)) => msg::partial(d, off, len.get()),
        None => d,
    });
    let mut out = Vec::with_capacity(data.map_or(0, <[u8]>::len) + 32);
    out.extend_from_slice(b"BINARY[");
    for (i, n) in section.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        let _ = write!(out, "{n}");
    }
    out.push(b']');
    if let Some((off, _)) = partial {
        let _ = write!(out, "<{off}>");
    }
    out.push(b' ');
    match data {
        None => out.extend_from_slice(b"NIL"),
        Some(d) => {
            if d.contains(&0) {
                out.push(b'~');
            }
            let _ = write!(out, "{{{}}}\r\n", d.len());
            out.extend_from_slice(d);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "fetch_cost_tests.rs"]
mod cost_tests;

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    /// The direct writer answers byte for byte what the generic encoder would.
    #[test]
    fn meta_fetch_matches_the_encoder() {
        let meta = MessageMeta {
            uid: 42,
            flags: Flags {
                seen: true,
                flagged: true,
                keywords: vec!["$Junk".into(), "Work".into()],
                ..Flags::default()
            },
            modseq: 77,
            size: 1234,
            internal_date: 1_700_000_000,
        };
        for recent in [false, true] {
            let items = vec![
                MessageDataItemName::Uid,
                MessageDataItemName::Flags,
                MessageDataItemName::Rfc822Size,
                MessageDataItemName::ModSeq,
            ];
            let mut fast = Vec::new();
            write_meta_fetch(&mut fast, 7, &meta, recent, &items, true);
            let mut slow = Vec::new();
            let v = vec![
                MessageDataItem::Uid(NonZeroU32::new(42).unwrap()),
                MessageDataItem::Flags(fetch_flags(&meta, recent)),
                MessageDataItem::Rfc822Size(1234),
                MessageDataItem::ModSeq(NonZeroU64::new(77).unwrap()),
            ];
            resp::data(
                &mut slow,
                Data::Fetch {
                    seq: NonZeroU32::new(7).unwrap(),
                    items: Vec1::try_from(v).unwrap(),
                },
            );
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(slow).unwrap()
            );
        }
        // No flags at all, MODSEQ added for CONDSTORE without being asked.
        let bare = MessageMeta {
            flags: Flags::default(),
            ..meta
        };
        let mut fast = Vec::new();
        write_meta_fetch(
            &mut fast,
            1,
            &bare,
            false,
            &[MessageDataItemName::Flags],
            true,
        );
        assert_eq!(fast, b"* 1 FETCH (FLAGS () MODSEQ (77))\r\n");
    }
}
