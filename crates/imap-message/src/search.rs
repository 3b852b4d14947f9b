//! SEARCH key evaluation (RFC 3501 §6.4.4, RFC 9051 §6.4.4, RFC 7162 MODSEQ).

use chrono::NaiveDate;
use imap_codec::imap_types::{
    search::SearchKey,
    sequence::{SeqOrUid, Sequence, SequenceSet},
};

use crate::{
    address::{Item, parse_address_list},
    decode::{decode_charset, decode_cte, decode_header_value, fold},
    mime::{self, Kind, MISSING_DOMAIN, MISSING_MAILBOX, Part, fields, header_len},
    sort::parse_date,
    summary::Summary,
};

/// The flags of one message as SEARCH sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageFlags<'a> {
    pub seen: bool,
    pub answered: bool,
    pub flagged: bool,
    pub deleted: bool,
    pub draft: bool,
    /// `\Recent` (this session's view).
    pub recent: bool,
    /// Keywords (compared case-insensitively).
    pub keywords: &'a [String],
}

/// One message as SEARCH sees it; implemented by the server.
pub trait SearchMessage {
    fn seq(&self) -> u32;
    fn uid(&self) -> u32;
    fn flags(&self) -> MessageFlags<'_>;
    /// RFC822.SIZE.
    fn size(&self) -> u64;
    /// INTERNALDATE as Unix seconds.
    fn internal_date(&self) -> i64;
    /// MODSEQ (CONDSTORE); 0 when unknown.
    fn modseq(&self) -> u64 {
        0
    }
    /// The full message; loaded lazily, only when a key needs the content.
    fn raw(&mut self) -> Option<&[u8]>;
    /// A cached summary, used for header-only keys instead of loading the message.
    fn summary(&mut self) -> Option<&Summary> {
        None
    }
}

/// What `*` means in sequence sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchEnv {
    /// Highest message sequence number (number of messages).
    pub max_seq: u32,
    /// Highest UID in the mailbox.
    pub max_uid: u32,
}

/// Whether `n` is in a sequence set where `*` is `max`.
pub fn in_sequence_set(set: &SequenceSet, n: u32, max: u32) -> bool {
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => max,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(v) => value(v) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (value(a), value(b));
            a.min(b) <= n && n <= a.max(b)
        }
    })
}

/// Whether evaluating `key` needs the message content (header or body).
pub fn needs_content(key: &SearchKey<'_>) -> bool {
    needs(key, false)
}

/// Whether evaluating `key` needs the message body (BODY, TEXT); other content keys can be
/// answered from a [`Summary`].
pub fn needs_body(key: &SearchKey<'_>) -> bool {
    needs(key, true)
}

fn needs(key: &SearchKey<'_>, body_only: bool) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(|k| needs(k, body_only)),
        SearchKey::Not(k) => needs(k, body_only),
        SearchKey::Or(a, b) => needs(a, body_only) || needs(b, body_only),
        SearchKey::Body(_) | SearchKey::Text(_) => true,
        SearchKey::Bcc(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Subject(_)
        | SearchKey::Header(..)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => !body_only,
        _ => false,
    }
}

/// The header of a message, decoded for searching.
#[derive(Debug, Default)]
struct HeaderInfo {
    /// (field name, decoded and case-folded value)
    fields: Vec<(Vec<u8>, String)>,
    /// All fields as `name: value` lines, case-folded (for TEXT).
    all: String,
    sent_day: Option<NaiveDate>,
}

/// Header fields whose value is an address list.
const ADDRESS_FIELDS: [&str; 7] = [
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
];

/// An address list as `Name <local@domain>, group: a@b;` with display names decoded, the
/// text SEARCH FROM/TO/CC/BCC look in besides the raw field.
fn address_text(value: &[u8]) -> String {
    let mut out = String::new();
    let mut first = true;
    for item in parse_address_list(value) {
        match item {
            Item::Mailbox(m) => {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                let name = m
                    .name
                    .as_deref()
                    .map(|n| decode_header_value(n).trim().to_string())
                    .unwrap_or_default();
                let mut addr = String::new();
                if m.mailbox != MISSING_MAILBOX {
                    addr.push_str(&String::from_utf8_lossy(&m.mailbox));
                }
                if !m.host.is_empty() && m.host != MISSING_DOMAIN {
                    addr.push('@');
                    addr.push_str(&String::from_utf8_lossy(&m.host));
                }
                match (name.is_empty(), addr.is_empty()) {
                    (false, false) => {
                        out.push_str(&name);
                        out.push_str(" <");
                        out.push_str(&addr);
                        out.push('>');
                    }
                    (false, true) => out.push_str(&name),
                    _ => out.push_str(&addr),
                }
            }
            Item::GroupStart(name) => {
                if !first {
                    out.push_str(", ");
                }
                out.push_str(decode_header_value(&name).trim());
                out.push_str(": ");
                first = true;
            }
            Item::GroupEnd => {
                out.push(';');
                first = false;
            }
        }
    }
    out
}

impl HeaderInfo {
    fn new(header: &[u8]) -> Self {
        let mut info = Self::default();
        let mut have_date = false;
        for f in fields(header) {
            if !have_date && f.is("date") {
                have_date = true;
                info.sent_day = parse_date(f.value).and_then(|d| {
                    NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
                });
            }
            let mut value = fold(&decode_header_value(f.value));
            if ADDRESS_FIELDS.iter().any(|n| f.is(n)) {
                // RFC 9051 §6.4.4: the address list as text, CFWS inside addresses removed
                // and display names decoded, so that `user (c)@ (c) domain.org` is found
                // as `user@domain.org` (the raw text above is still searched too).
                value.push('\n');
                value.push_str(&fold(&address_text(f.value)));
            }
            info.all.push_str(&fold(&String::from_utf8_lossy(f.name)));
            info.all.push_str(": ");
            info.all.push_str(&value);
            info.all.push('\n');
            info.fields.push((f.name.to_vec(), value));
        }
        info
    }

    fn contains(&self, name: &str, needle: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name.as_bytes()) && v.contains(needle))
    }

    fn any_contains(&self, needle: &str) -> bool {
        self.all.contains(needle)
    }
}

fn collect_text(data: &[u8], part: &Part, out: &mut Vec<String>) {
    match &part.kind {
        Kind::Multipart(children) => {
            for c in children {
                collect_text(data, c, out);
            }
        }
        Kind::Message(inner) => {
            let mut text = String::new();
            for f in fields(inner.header(data)) {
                text.push_str(&String::from_utf8_lossy(f.name));
                text.push_str(": ");
                text.push_str(&decode_header_value(f.value));
                text.push('\n');
            }
            out.push(fold(&text));
            collect_text(data, inner, out);
        }
        Kind::Leaf => {
            if part.mime.is_type("text") {
                let body = part.body(data);
                let decoded = decode_cte(part.mime.cte.as_deref(), body);
                let bytes = decoded.as_deref().unwrap_or(body);
                out.push(fold(&decode_charset(part.mime.charset(), bytes)));
            }
        }
    }
}

/// The decoded, case-folded text of all text parts (and headers of encapsulated messages).
fn body_texts(msg: &[u8]) -> Vec<String> {
    let root = mime::parse_message(msg);
    let mut out = Vec::new();
    collect_text(msg, &root, &mut out);
    out
}

#[derive(Default)]
struct Ctx {
    header: Option<Option<HeaderInfo>>,
    body: Option<Option<Vec<String>>>,
}

impl Ctx {
    fn header(&mut self, msg: &mut impl SearchMessage) -> Option<&HeaderInfo> {
        if self.header.is_none() {
            let info = match msg.summary() {
                Some(s) => Some(HeaderInfo::new(&s.header)),
                None => msg
                    .raw()
                    .map(|r| HeaderInfo::new(r.get(..header_len(r)).unwrap_or_default())),
            };
            self.header = Some(info);
        }
        self.header.as_ref().and_then(Option::as_ref)
    }

    fn body(&mut self, msg: &mut impl SearchMessage) -> Option<&[String]> {
        if self.body.is_none() {
            self.body = Some(msg.raw().map(body_texts));
        }
        self.body.as_ref().and_then(Option::as_deref)
    }
}

fn day_of(secs: i64) -> Option<NaiveDate> {
    chrono::DateTime::from_timestamp(secs, 0).map(|d| d.date_naive())
}

fn needle(s: &impl AsRef<[u8]>) -> String {
    fold(&String::from_utf8_lossy(s.as_ref()))
}

fn header_has(
    ctx: &mut Ctx,
    msg: &mut impl SearchMessage,
    name: &str,
    s: &impl AsRef<[u8]>,
) -> bool {
    let n = needle(s);
    ctx.header(msg).is_some_and(|h| h.contains(name, &n))
}

/// Whether a message matches a SEARCH key. Content is loaded (through
/// [`SearchMessage::summary`] or [`SearchMessage::raw`]) only when a key needs it, and at most
/// once per call.
pub fn matches(key: &SearchKey<'_>, msg: &mut impl SearchMessage, env: &SearchEnv) -> bool {
    let mut ctx = Ctx::default();
    eval(key, msg, env, None, &mut ctx, 0)
}

/// The sequence sets of SEARCH keys as sorted, merged ranges, built once per SEARCH so that
/// each message is looked up in O(log n) (a set as long as a command allows, checked element
/// by element against every message of a large mailbox, is 10^9 comparisons). Sets are
/// found by address inside the keys, which stay borrowed (and so unchanged) meanwhile.
#[derive(Debug, Default)]
pub struct SearchSets<'k> {
    sets: std::collections::HashMap<usize, Vec<(u32, u32)>>,
    keys: std::marker::PhantomData<&'k SearchKey<'k>>,
}

impl<'k> SearchSets<'k> {
    /// Sets shorter than this are scanned as they are.
    const MIN_LEN: usize = 16;

    /// Indexes the sequence sets of `keys` (UID sets with `*` as `env.max_uid`, others
    /// with `*` as `env.max_seq`).
    pub fn new(keys: &'k [SearchKey<'k>], env: &SearchEnv) -> Self {
        let mut out = Self::default();
        let mut stack: Vec<(&SearchKey<'_>, usize)> = keys.iter().map(|k| (k, 0)).collect();
        while let Some((key, depth)) = stack.pop() {
            if depth > 1000 {
                continue;
            }
            match key {
                SearchKey::And(keys) => stack.extend(keys.as_ref().iter().map(|k| (k, depth + 1))),
                SearchKey::Or(a, b) => {
                    stack.push((a, depth + 1));
                    stack.push((b, depth + 1));
                }
                SearchKey::Not(k) => stack.push((k, depth + 1)),
                SearchKey::SequenceSet(set) => out.add(set, env.max_seq),
                SearchKey::Uid(set) => out.add(set, env.max_uid),
                _ => {}
            }
        }
        out
    }

    fn add(&mut self, set: &SequenceSet, max: u32) {
        if set.0.as_ref().len() < Self::MIN_LEN {
            return;
        }
        let merged = sequence_ranges(set, max);
        self.sets.insert(std::ptr::from_ref(set) as usize, merged);
    }

    /// Whether `n` is in `set`; `None` when the set was not indexed.
    fn contains(&self, set: &SequenceSet, n: u32) -> Option<bool> {
        let r = self.sets.get(&(std::ptr::from_ref(set) as usize))?;
        Some(in_ranges(r, n))
    }
}

/// A sequence set as sorted, merged inclusive ranges (`*` = `largest`), for lookups with
/// [`in_ranges`] in O(log n).
pub fn sequence_ranges(set: &SequenceSet, largest: u32) -> Vec<(u32, u32)> {
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    let mut r: Vec<(u32, u32)> = set
        .0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(v) => (value(v), value(v)),
            Sequence::Range(a, b) => {
                let (a, b) = (value(a), value(b));
                (a.min(b), a.max(b))
            }
        })
        .collect();
    r.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Whether `n` is in ranges made by [`sequence_ranges`] (binary search).
pub fn in_ranges(ranges: &[(u32, u32)], n: u32) -> bool {
    let i = ranges.partition_point(|&(_, b)| b < n);
    ranges.get(i).is_some_and(|&(a, _)| a <= n)
}

/// [`matches`] with the sequence sets of the SEARCH indexed once ([`SearchSets::new`] over
/// the same keys).
pub fn matches_with(
    key: &SearchKey<'_>,
    msg: &mut impl SearchMessage,
    env: &SearchEnv,
    sets: &SearchSets<'_>,
) -> bool {
    let mut ctx = Ctx::default();
    eval(key, msg, env, Some(sets), &mut ctx, 0)
}

fn eval(
    key: &SearchKey<'_>,
    msg: &mut impl SearchMessage,
    env: &SearchEnv,
    sets: Option<&SearchSets<'_>>,
    ctx: &mut Ctx,
    depth: usize,
) -> bool {
    if depth > 1000 {
        return false;
    }
    let d = depth + 1;
    match key {
        SearchKey::And(keys) => keys
            .as_ref()
            .iter()
            .all(|k| eval(k, msg, env, sets, ctx, d)),
        SearchKey::Or(a, b) => eval(a, msg, env, sets, ctx, d) || eval(b, msg, env, sets, ctx, d),
        SearchKey::Not(k) => !eval(k, msg, env, sets, ctx, d),
        SearchKey::SequenceSet(set) => sets
            .and_then(|s| s.contains(set, msg.seq()))
            .unwrap_or_else(|| in_sequence_set(set, msg.seq(), env.max_seq)),
        SearchKey::Uid(set) => sets
            .and_then(|s| s.contains(set, msg.uid()))
            .unwrap_or_else(|| in_sequence_set(set, msg.uid(), env.max_uid)),
        SearchKey::All => true,
        SearchKey::Answered => msg.flags().answered,
        SearchKey::Deleted => msg.flags().deleted,
        SearchKey::Draft => msg.flags().draft,
        SearchKey::Flagged => msg.flags().flagged,
        SearchKey::Seen => msg.flags().seen,
        SearchKey::Recent => msg.flags().recent,
        SearchKey::New => {
            let f = msg.flags();
            f.recent && !f.seen
        }
        SearchKey::Old => !msg.flags().recent,
        SearchKey::Unanswered => !msg.flags().answered,
        SearchKey::Undeleted => !msg.flags().deleted,
        SearchKey::Undraft => !msg.flags().draft,
        SearchKey::Unflagged => !msg.flags().flagged,
        SearchKey::Unseen => !msg.flags().seen,
        SearchKey::Keyword(k) => msg
            .flags()
            .keywords
            .iter()
            .any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Unkeyword(k) => !msg
            .flags()
            .keywords
            .iter()
            .any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Larger(n) => msg.size() > u64::from(*n),
        SearchKey::Smaller(n) => msg.size() < u64::from(*n),
        SearchKey::Before(date) => day_of(msg.internal_date()).is_some_and(|x| x < *date.as_ref()),
        SearchKey::On(date) => day_of(msg.internal_date()).is_some_and(|x| x == *date.as_ref()),
        SearchKey::Since(date) => day_of(msg.internal_date()).is_some_and(|x| x >= *date.as_ref()),
        SearchKey::SentBefore(date) | SearchKey::SentOn(date) | SearchKey::SentSince(date) => {
            let fallback = day_of(msg.internal_date());
            let day = ctx.header(msg).and_then(|h| h.sent_day).or(fallback);
            let Some(day) = day else { return false };
            let date = *date.as_ref();
            match key {
                SearchKey::SentBefore(_) => day < date,
                SearchKey::SentOn(_) => day == date,
                _ => day >= date,
            }
        }
        SearchKey::Bcc(s) => header_has(ctx, msg, "bcc", s),
        SearchKey::Cc(s) => header_has(ctx, msg, "cc", s),
        SearchKey::From(s) => header_has(ctx, msg, "from", s),
        SearchKey::To(s) => header_has(ctx, msg, "to", s),
        SearchKey::Subject(s) => header_has(ctx, msg, "subject", s),
        SearchKey::Header(name, value) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            header_has(ctx, msg, &name, value)
        }
        SearchKey::Body(s) => {
            let n = needle(s);
            ctx.body(msg)
                .is_some_and(|b| b.iter().any(|t| t.contains(&n)))
        }
        SearchKey::Text(s) => {
            let n = needle(s);
            ctx.header(msg).is_some_and(|h| h.any_contains(&n))
                || ctx
                    .body(msg)
                    .is_some_and(|b| b.iter().any(|t| t.contains(&n)))
        }
        SearchKey::ModSequence { modseq, .. } => msg.modseq() >= *modseq,
        SearchKey::Older(_) | SearchKey::Younger(_) => {
            crate::within::matches(key, msg.internal_date(), crate::within::now()) == Some(true)
        }
        #[allow(unreachable_patterns)]
        _ => false,
    }
}
