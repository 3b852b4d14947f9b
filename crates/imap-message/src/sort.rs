//! SORT (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO) and the fields SORT and THREAD use.

use std::cmp::Ordering;

use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};

use crate::{
    address::{Item, Mailbox, first_mailbox, parse_address_list},
    decode::{decode_header_value, fold},
    mime::{fields, header_len},
};

/// What SORT and THREAD need of one message, computed once from its header (cache it; it is
/// part of [`crate::Summary`]). All strings are already case-folded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortFields {
    /// The Date: header as Unix seconds (UTC), if present and valid.
    pub date: Option<i64>,
    /// Base subject (RFC 5256 §2.1), decoded and case-folded.
    pub subject: String,
    /// Whether the subject marks a reply or forward (`Re:`, `Fwd:`, `(fwd)`, `[fwd: …]`).
    pub subject_is_reply: bool,
    /// Local part of the first From address.
    pub from: String,
    /// Local part of the first To address.
    pub to: String,
    /// Local part of the first Cc address.
    pub cc: String,
    /// RFC 5957 display name of the first From address (decoded), else its address.
    pub display_from: String,
    /// Same for the first To address.
    pub display_to: String,
    /// The message's own Message-ID (without angle brackets).
    pub message_id: Option<String>,
    /// References, or else the first In-Reply-To id (oldest first, without brackets).
    pub references: Vec<String>,
}

impl SortFields {
    /// The fields from a whole message.
    pub fn from_message(msg: &[u8]) -> Self {
        Self::from_header(msg.get(..header_len(msg)).unwrap_or_default())
    }

    /// The fields from a header block alone.
    pub fn from_header(header: &[u8]) -> Self {
        let mut out = Self::default();
        let mut have = [false; 8];
        let mut in_reply_to = Vec::new();
        let mut references = None;
        for f in fields(header) {
            let slot = [
                "date",
                "subject",
                "from",
                "to",
                "cc",
                "message-id",
                "references",
                "in-reply-to",
            ]
            .iter()
            .position(|n| f.is(n));
            let Some(slot) = slot else { continue };
            if have[slot] {
                continue;
            }
            have[slot] = true;
            match slot {
                0 => out.date = parse_date(f.value).map(|d| d.to_timestamp()),
                1 => {
                    let (base, reply) = base_subject(&decode_header_value(f.value));
                    out.subject = base;
                    out.subject_is_reply = reply;
                }
                2 => {
                    let items = parse_address_list(f.value);
                    out.from = first_addr_mailbox(&items);
                    if let Some(m) = first_mailbox(&items) {
                        out.display_from = display_key(m);
                    }
                }
                3 => {
                    let items = parse_address_list(f.value);
                    out.to = first_addr_mailbox(&items);
                    if let Some(m) = first_mailbox(&items) {
                        out.display_to = display_key(m);
                    }
                }
                4 => out.cc = first_addr_mailbox(&parse_address_list(f.value)),
                5 => out.message_id = msg_ids(f.value).into_iter().next(),
                6 => references = Some(msg_ids(f.value)),
                _ => in_reply_to = msg_ids(f.value),
            }
        }
        out.references = match references {
            Some(r) if !r.is_empty() => r,
            _ => in_reply_to.into_iter().take(1).collect(),
        };
        out
    }
}

/// Parses an RFC 5322 date; None when missing or invalid.
pub(crate) fn parse_date(value: &[u8]) -> Option<mail_parser::DateTime> {
    let s = String::from_utf8_lossy(value);
    let d = mail_parser::DateTime::parse_rfc822(&s)?;
    let valid = d.is_valid()
        && chrono::NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
            .is_some();
    valid.then_some(d)
}

/// RFC 5256 §3: the addr-mailbox of the first address as ENVELOPE gives it, where a group
/// starts with an address whose addr-mailbox is the group name (RFC 3501 §7.4.2), decoded
/// (RFC 5256 §4: RFC 2047 encoded words become UTF-8 before comparing) and case-folded. A group
/// name is a phrase and may hold encoded words; a local part may not (RFC 2047 §5), but
/// mailers write them anyway and Dovecot decodes the whole field, so they are decoded too.
fn first_addr_mailbox(items: &[Item]) -> String {
    match items.first() {
        Some(Item::Mailbox(m)) => mailbox_key(m),
        Some(Item::GroupStart(name)) => fold(&decoded(name)),
        _ => String::new(),
    }
}

fn mailbox_key(m: &Mailbox) -> String {
    if m.mailbox == crate::mime::MISSING_MAILBOX {
        return String::new();
    }
    fold(&decoded(&m.mailbox))
}

/// A phrase or local part with its RFC 2047 encoded words decoded (only when it has any).
fn decoded(raw: &[u8]) -> String {
    if raw.windows(2).any(|w| w == b"=?") {
        decode_header_value(raw).trim().to_string()
    } else {
        String::from_utf8_lossy(raw).into_owned()
    }
}

fn display_key(m: &Mailbox) -> String {
    let name = m
        .name
        .as_deref()
        .map(|n| decode_header_value(n).trim().to_string())
        .unwrap_or_default();
    if !name.is_empty() {
        return fold(&name);
    }
    let mut a = decoded(&m.mailbox);
    a.push('@');
    a.push_str(&String::from_utf8_lossy(&m.host));
    fold(&a)
}

/// RFC 5256 §2.2: "Implementations of the REFERENCES threading algorithm MUST normalize any
/// msg-id": `<"01KF8JCEOCBS0045PS"@xxx.yyy.com>` and `<01KF8JCEOCBS0045PS@xxx.yyy.com>` are the
/// same Message ID. Quoted strings lose their quotes and quoted pairs their backslash; white
/// space outside quotes (folding, obsolete CFWS around the dots and `@`) is removed. The
/// comparison stays case-sensitive.
fn normalize_msg_id(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut quoted = false;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        match b {
            b'"' => quoted = !quoted,
            b'\\' if quoted => {
                if let Some(&n) = raw.get(i) {
                    out.push(n);
                    i += 1;
                }
            }
            b'\r' | b'\n' => {}
            _ if !quoted && crate::mime::is_wsp(b) => {}
            _ => out.push(b),
        }
    }
    out
}

/// The msg-ids (`<…>` contents, normalized by [`normalize_msg_id`]) in a header value, in
/// order.
pub(crate) fn msg_ids(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = value
        .get(i..)
        .and_then(|v| v.iter().position(|&b| b == b'<'))
    {
        let start = i + p + 1;
        let Some(len) = value
            .get(start..)
            .and_then(|v| v.iter().position(|&b| b == b'>' || b == b'<'))
        else {
            break;
        };
        let end = start + len;
        if value.get(end) == Some(&b'>') {
            let id = normalize_msg_id(value.get(start..end).unwrap_or_default());
            if !id.is_empty() {
                out.push(String::from_utf8_lossy(&id).into_owned());
            }
            i = end + 1;
        } else {
            i = end;
        }
        if out.len() >= 1000 {
            break;
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// RFC 5256 §2.1 base subject

fn strip_blob(s: &str) -> Option<&str> {
    // subj-blob = "[" *BLOBCHAR "]" *WSP
    let rest = s.strip_prefix('[')?;
    let close = rest.find([']', '['])?;
    if !rest[close..].starts_with(']') {
        return None;
    }
    Some(rest[close + 1..].trim_start_matches(' '))
}

fn strip_refwd(s: &str) -> Option<&str> {
    // subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
    let lower_starts =
        |s: &str, p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let rest = if lower_starts(s, "re") {
        &s[2..]
    } else if lower_starts(s, "fwd") {
        &s[3..]
    } else if lower_starts(s, "fw") {
        &s[2..]
    } else {
        return None;
    };
    let mut rest = rest.trim_start_matches(' ');
    if let Some(r) = strip_blob(rest) {
        rest = r;
    }
    rest.strip_prefix(':')
}

/// subj-leader = (*subj-blob subj-refwd) / WSP; the flag tells whether it was a subj-refwd.
fn strip_leader(s: &str) -> Option<(&str, bool)> {
    if let Some(r) = s.strip_prefix(' ') {
        return Some((r, false));
    }
    let mut rest = s;
    loop {
        if let Some(r) = strip_refwd(rest) {
            return Some((r, true));
        }
        rest = strip_blob(rest)?;
    }
}

/// RFC 5256 base subject of a decoded subject, case-folded, and whether a reply/forward marker
/// was removed.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) white space to single spaces
    let mut s = String::with_capacity(subject.len());
    for c in subject.chars() {
        let c = if c == '\t' || c == '\r' || c == '\n' {
            ' '
        } else {
            c
        };
        if c == ' ' && s.ends_with(' ') {
            continue;
        }
        s.push(c);
    }
    let mut is_reply = false;
    let mut cur: &str = &s;
    loop {
        // (2) trailers
        loop {
            if let Some(r) = cur.strip_suffix(' ') {
                cur = r;
            } else if cur.len() >= 5
                && cur
                    .get(cur.len() - 5..)
                    .is_some_and(|t| t.eq_ignore_ascii_case("(fwd)"))
            {
                cur = &cur[..cur.len() - 5];
                is_reply = true;
            } else {
                break;
            }
        }
        // (3)-(5) leaders and blobs
        loop {
            let mut changed = false;
            while let Some((r, refwd)) = strip_leader(cur) {
                is_reply |= refwd;
                cur = r;
                changed = true;
            }
            // (5) one blob, then (4) again. strip_leader just failed at `cur` after walking
            // its whole chain of blobs, and each blob removed here starts a suffix of that
            // same chain (strip_blob eats the spaces after `]`, so no WSP leader appears):
            // it would fail again. Removing the blobs in one pass instead of one per round
            // keeps this linear (`[] [] [] …` was quadratic).
            while let Some(r) = strip_blob(cur)
                && !r.trim_matches(' ').is_empty()
            {
                cur = r;
                changed = true;
            }
            if !changed {
                break;
            }
        }
        // (6) [fwd: ...]
        if cur.len() >= 6
            && cur
                .get(..5)
                .is_some_and(|h| h.eq_ignore_ascii_case("[fwd:"))
            && cur.ends_with(']')
        {
            cur = &cur[5..cur.len() - 1];
            is_reply = true;
            continue;
        }
        break;
    }
    (fold(cur), is_reply)
}

// ------------------------------------------------------------------------------------------

/// One message as SORT and THREAD see it.
pub trait SortMessage {
    /// Message sequence number (the final tie-breaker).
    fn seq(&self) -> u32;
    /// UID (reported by UID THREAD).
    fn uid(&self) -> u32;
    /// INTERNALDATE as Unix seconds.
    fn internal_date(&self) -> i64;
    /// RFC822.SIZE.
    fn size(&self) -> u64;
    /// The header-derived fields ([`SortFields::from_message`] or [`crate::Summary::sort`]).
    fn sort_fields(&self) -> &SortFields;
}

/// A ready-made [`SortMessage`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortItem {
    pub seq: u32,
    pub uid: u32,
    pub internal_date: i64,
    pub size: u64,
    pub fields: SortFields,
}

impl SortMessage for SortItem {
    fn seq(&self) -> u32 {
        self.seq
    }
    fn uid(&self) -> u32 {
        self.uid
    }
    fn internal_date(&self) -> i64 {
        self.internal_date
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn sort_fields(&self) -> &SortFields {
        &self.fields
    }
}

/// The sent date RFC 5256 sorts by: the Date: header, else INTERNALDATE.
pub fn sent_date<M: SortMessage + ?Sized>(m: &M) -> i64 {
    m.sort_fields().date.unwrap_or_else(|| m.internal_date())
}

fn compare_key<M: SortMessage + ?Sized>(key: &SortKey, a: &M, b: &M) -> Ordering {
    let (fa, fb) = (a.sort_fields(), b.sort_fields());
    match key {
        SortKey::Arrival => a.internal_date().cmp(&b.internal_date()),
        SortKey::Cc => casemap_cmp(&fa.cc, &fb.cc),
        SortKey::Date => sent_date(a).cmp(&sent_date(b)),
        SortKey::From => casemap_cmp(&fa.from, &fb.from),
        SortKey::Size => a.size().cmp(&b.size()),
        SortKey::Subject => casemap_cmp(&fa.subject, &fb.subject),
        SortKey::To => casemap_cmp(&fa.to, &fb.to),
        SortKey::DisplayFrom => casemap_cmp(&fa.display_from, &fb.display_from),
        SortKey::DisplayTo => casemap_cmp(&fa.display_to, &fb.display_to),
    }
}

/// The i;ascii-casemap comparator (RFC 4790 §9.2) that RFC 5256 §3 sorts strings with: a-z
/// are compared as A-Z, everything else octet by octet (so `_` and `[` come after letters).
/// The keys are stored lower-cased; mapping their ASCII letters back up gives the same order
/// as mapping the original text.
fn casemap_cmp(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_uppercase())
        .cmp(b.bytes().map(|c| c.to_ascii_uppercase()))
}

/// Compares two messages by SORT criteria, ties broken by sequence number.
pub fn compare<M: SortMessage + ?Sized>(criteria: &[SortCriterion], a: &M, b: &M) -> Ordering {
    for c in criteria {
        let o = compare_key(&c.key, a, b);
        let o = if c.reverse { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.seq().cmp(&b.seq())
}

/// Sorts messages for SORT (RFC 5256).
pub fn sort<M: SortMessage>(criteria: &[SortCriterion], items: &mut [M]) {
    items.sort_by(|a, b| compare(criteria, a, b));
}

/// The SORT fields of a message (alias of [`SortFields::from_message`]).
pub fn sort_key(msg: &[u8]) -> SortFields {
    SortFields::from_message(msg)
}
