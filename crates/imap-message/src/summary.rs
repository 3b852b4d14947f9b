//! A cacheable per-message summary: ENVELOPE, BODY, BODYSTRUCTURE, the header block and the
//! SORT/THREAD fields, with a compact versioned binary encoding.
//!
//! Encoding (little endian): `"PSUM"`, version byte, then the fields, then an FNV-1a 32-bit
//! checksum of everything before it. Strings are a u32 length and bytes; NIL / absent values
//! a 0 tag byte, present ones a 1 tag byte. Decoding checks every length against the input,
//! caps nesting, validates IMAP strings and rejects trailing bytes: corrupt input gives `None`.

use imap_codec::imap_types::{
    body::{
        BasicFields, Body, BodyExtension, BodyStructure, Disposition, Language, Location,
        MultiPartExtensionData, SinglePartExtensionData, SpecificFields,
    },
    core::{IString, NString, Vec1},
    envelope::{Address, Envelope},
    fetch::Section,
};

use crate::{
    decode::bytes_of,
    mime::header_len,
    section::filter_fields,
    sort::{SortFields, SortItem},
    structure::{build, envelope_from_header, strip_extensions},
};

const MAGIC: &[u8; 4] = b"PSUM";
/// 2: SORT's from/to/cc key is a group's name when the list starts with a group.
/// 3: SORT's from/to/cc keys RFC 2047-decoded; Message-IDs normalized (RFC 5256 §2.2).
const VERSION: u8 = 3;
const MAX_NESTING: usize = 128;

/// What the server caches per message so that FETCH ENVELOPE/BODY/BODYSTRUCTURE/HEADER, header
/// SEARCH keys, SORT and THREAD need not read and parse the message file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// RFC822.SIZE of the message the summary was made from.
    pub size: u64,
    pub envelope: Envelope<'static>,
    /// BODY (no extension data).
    pub body: BodyStructure<'static>,
    /// BODYSTRUCTURE (with extension data).
    pub body_structure: BodyStructure<'static>,
    /// The header block, blank line included (BODY[HEADER], RFC822.HEADER).
    pub header: Vec<u8>,
    pub sort: SortFields,
}

impl Summary {
    /// Parses a message once into everything the summary holds.
    pub fn from_message(msg: &[u8]) -> Self {
        let root = crate::mime::parse_message(msg);
        let header = msg.get(..header_len(msg)).unwrap_or_default().to_vec();
        let body_structure = build(msg, &root, true);
        Self {
            size: msg.len() as u64,
            envelope: envelope_from_header(&header),
            body: strip_extensions(&body_structure),
            body_structure,
            sort: SortFields::from_header(&header),
            header,
        }
    }

    /// BODY[HEADER], BODY[HEADER.FIELDS (…)] and BODY[HEADER.FIELDS.NOT (…)] of the whole
    /// message from the cached header; `None` when the section needs the message itself.
    pub fn header_section(&self, section: Option<&Section<'_>>) -> Option<Vec<u8>> {
        match section? {
            Section::Header(None) => Some(self.header.clone()),
            Section::HeaderFields(None, names) => Some(filter_fields(&self.header, names, false)),
            Section::HeaderFieldsNot(None, names) => Some(filter_fields(&self.header, names, true)),
            _ => None,
        }
    }

    /// A [`SortItem`] for SORT/THREAD from this summary (RFC822.SIZE is the summary's size).
    pub fn sort_item(&self, seq: u32, uid: u32, internal_date: i64) -> SortItem {
        SortItem {
            seq,
            uid,
            internal_date,
            size: self.size,
            fields: self.sort.clone(),
        }
    }

    /// The compact binary encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(self.header.len() + 512));
        w.0.extend_from_slice(MAGIC);
        w.0.push(VERSION);
        w.u64(self.size);
        w.bytes(&self.header);
        w.envelope(&self.envelope);
        w.body_structure(&self.body_structure);
        w.sort(&self.sort);
        let sum = fnv1a(&w.0);
        w.0.extend_from_slice(&sum.to_le_bytes());
        w.0
    }

    /// Decodes [`Self::to_bytes`] output; `None` for anything corrupt or of another version.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let (payload, sum) = data.split_at_checked(data.len().checked_sub(4)?)?;
        if fnv1a(payload).to_le_bytes() != sum {
            return None;
        }
        let mut r = Reader { d: payload, i: 0 };
        if r.take(4)? != MAGIC || r.u8()? != VERSION {
            return None;
        }
        let size = r.u64()?;
        let header = r.bytes()?.to_vec();
        let envelope = r.envelope(0)?;
        let body_structure = r.body_structure(0)?;
        let sort = r.sort()?;
        if r.i != r.d.len() {
            return None;
        }
        Some(Self {
            size,
            envelope,
            body: strip_extensions(&body_structure),
            body_structure,
            header,
            sort,
        })
    }
}

fn fnv1a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        let b = b.get(..b.len().min(u32::MAX as usize)).unwrap_or_default();
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn istr(&mut self, s: &IString<'_>) {
        self.bytes(bytes_of(s));
    }
    fn nstr(&mut self, s: &NString<'_>) {
        match &s.0 {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.istr(s);
            }
        }
    }
    fn params(&mut self, p: &[(IString<'_>, IString<'_>)]) {
        self.len(p.len());
        for (n, v) in p {
            self.istr(n);
            self.istr(v);
        }
    }
    fn addresses(&mut self, list: &[Address<'_>]) {
        self.len(list.len());
        for a in list {
            self.nstr(&a.name);
            self.nstr(&a.adl);
            self.nstr(&a.mailbox);
            self.nstr(&a.host);
        }
    }
    fn envelope(&mut self, e: &Envelope<'_>) {
        self.nstr(&e.date);
        self.nstr(&e.subject);
        self.addresses(&e.from);
        self.addresses(&e.sender);
        self.addresses(&e.reply_to);
        self.addresses(&e.to);
        self.addresses(&e.cc);
        self.addresses(&e.bcc);
        self.nstr(&e.in_reply_to);
        self.nstr(&e.message_id);
    }
    fn body_extension(&mut self, x: &BodyExtension<'_>) {
        match x {
            BodyExtension::NString(s) => {
                self.u8(0);
                self.nstr(s);
            }
            BodyExtension::Number(n) => {
                self.u8(1);
                self.u32(*n);
            }
            BodyExtension::List(l) => {
                self.u8(2);
                self.len(l.as_ref().len());
                for x in l.as_ref() {
                    self.body_extension(x);
                }
            }
        }
    }
    fn disposition(&mut self, d: Option<&Disposition<'_>>) {
        let Some(d) = d else {
            self.u8(0);
            return;
        };
        self.u8(1);
        match &d.disposition {
            None => self.u8(0),
            Some((t, p)) => {
                self.u8(1);
                self.istr(t);
                self.params(p);
            }
        }
        let Some(lang) = &d.tail else {
            self.u8(0);
            return;
        };
        self.u8(1);
        self.len(lang.language.len());
        for l in &lang.language {
            self.istr(l);
        }
        let Some(loc) = &lang.tail else {
            self.u8(0);
            return;
        };
        self.u8(1);
        self.nstr(&loc.location);
        self.len(loc.extensions.len());
        for x in &loc.extensions {
            self.body_extension(x);
        }
    }
    fn body_structure(&mut self, bs: &BodyStructure<'_>) {
        match bs {
            BodyStructure::Single {
                body,
                extension_data,
            } => {
                self.u8(0);
                let b = &body.basic;
                self.params(&b.parameter_list);
                self.nstr(&b.id);
                self.nstr(&b.description);
                self.istr(&b.content_transfer_encoding);
                self.u32(b.size);
                match &body.specific {
                    SpecificFields::Basic { r#type, subtype } => {
                        self.u8(0);
                        self.istr(r#type);
                        self.istr(subtype);
                    }
                    SpecificFields::Message {
                        envelope,
                        body_structure,
                        number_of_lines,
                    } => {
                        self.u8(1);
                        self.envelope(envelope);
                        self.body_structure(body_structure);
                        self.u32(*number_of_lines);
                    }
                    SpecificFields::Text {
                        subtype,
                        number_of_lines,
                    } => {
                        self.u8(2);
                        self.istr(subtype);
                        self.u32(*number_of_lines);
                    }
                }
                match extension_data {
                    None => self.u8(0),
                    Some(x) => {
                        self.u8(1);
                        self.nstr(&x.md5);
                        self.disposition(x.tail.as_ref());
                    }
                }
            }
            BodyStructure::Multi {
                bodies,
                subtype,
                extension_data,
            } => {
                self.u8(1);
                self.len(bodies.as_ref().len());
                for b in bodies.as_ref() {
                    self.body_structure(b);
                }
                self.istr(subtype);
                match extension_data {
                    None => self.u8(0),
                    Some(x) => {
                        self.u8(1);
                        self.params(&x.parameter_list);
                        self.disposition(x.tail.as_ref());
                    }
                }
            }
        }
    }
    fn sort(&mut self, s: &SortFields) {
        match s.date {
            None => self.u8(0),
            Some(d) => {
                self.u8(1);
                self.0.extend_from_slice(&d.to_le_bytes());
            }
        }
        self.str(&s.subject);
        self.u8(u8::from(s.subject_is_reply));
        self.str(&s.from);
        self.str(&s.to);
        self.str(&s.cc);
        self.str(&s.display_from);
        self.str(&s.display_to);
        match &s.message_id {
            None => self.u8(0),
            Some(m) => {
                self.u8(1);
                self.str(m);
            }
        }
        self.len(s.references.len());
        for r in &s.references {
            self.str(r);
        }
    }
}

struct Reader<'a> {
    d: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.i.checked_add(n)?;
        let s = self.d.get(self.i..end)?;
        self.i = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// A count of items, each at least `min_size` bytes: bounded by the remaining input.
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.u32()?).ok()?;
        let left = self.d.len().saturating_sub(self.i);
        (n.saturating_mul(min_size.max(1)) <= left).then_some(n)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    fn istr(&mut self) -> Option<IString<'static>> {
        IString::try_from(self.bytes()?.to_vec()).ok()
    }
    fn nstr(&mut self) -> Option<NString<'static>> {
        Some(NString(if self.flag()? {
            Some(self.istr()?)
        } else {
            None
        }))
    }
    fn params(&mut self) -> Option<Vec<(IString<'static>, IString<'static>)>> {
        let n = self.count(8)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push((self.istr()?, self.istr()?));
        }
        Some(out)
    }
    fn addresses(&mut self) -> Option<Vec<Address<'static>>> {
        let n = self.count(4)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Address {
                name: self.nstr()?,
                adl: self.nstr()?,
                mailbox: self.nstr()?,
                host: self.nstr()?,
            });
        }
        Some(out)
    }
    fn envelope(&mut self, depth: usize) -> Option<Envelope<'static>> {
        if depth > MAX_NESTING {
            return None;
        }
        Some(Envelope {
            date: self.nstr()?,
            subject: self.nstr()?,
            from: self.addresses()?,
            sender: self.addresses()?,
            reply_to: self.addresses()?,
            to: self.addresses()?,
            cc: self.addresses()?,
            bcc: self.addresses()?,
            in_reply_to: self.nstr()?,
            message_id: self.nstr()?,
        })
    }
    fn body_extension(&mut self, depth: usize) -> Option<BodyExtension<'static>> {
        if depth > MAX_NESTING {
            return None;
        }
        Some(match self.u8()? {
            0 => BodyExtension::NString(self.nstr()?),
            1 => BodyExtension::Number(self.u32()?),
            2 => {
                let n = self.count(1)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.body_extension(depth + 1)?);
                }
                BodyExtension::List(Vec1::try_from(v).ok()?)
            }
            _ => return None,
        })
    }
    fn disposition(&mut self, depth: usize) -> Option<Option<Disposition<'static>>> {
        if !self.flag()? {
            return Some(None);
        }
        let disposition = if self.flag()? {
            Some((self.istr()?, self.params()?))
        } else {
            None
        };
        let tail = if self.flag()? {
            let n = self.count(4)?;
            let mut language = Vec::with_capacity(n);
            for _ in 0..n {
                language.push(self.istr()?);
            }
            let tail = if self.flag()? {
                let location = self.nstr()?;
                let n = self.count(1)?;
                let mut extensions = Vec::with_capacity(n);
                for _ in 0..n {
                    extensions.push(self.body_extension(depth + 1)?);
                }
                Some(Location {
                    location,
                    extensions,
                })
            } else {
                None
            };
            Some(Language { language, tail })
        } else {
            None
        };
        Some(Some(Disposition { disposition, tail }))
    }
    fn body_structure(&mut self, depth: usize) -> Option<BodyStructure<'static>> {
        if depth > MAX_NESTING {
            return None;
        }
        match self.u8()? {
            0 => {
                let basic = BasicFields {
                    parameter_list: self.params()?,
                    id: self.nstr()?,
                    description: self.nstr()?,
                    content_transfer_encoding: self.istr()?,
                    size: self.u32()?,
                };
                let specific = match self.u8()? {
                    0 => SpecificFields::Basic {
                        r#type: self.istr()?,
                        subtype: self.istr()?,
                    },
                    1 => SpecificFields::Message {
                        envelope: Box::new(self.envelope(depth + 1)?),
                        body_structure: Box::new(self.body_structure(depth + 1)?),
                        number_of_lines: self.u32()?,
                    },
                    2 => SpecificFields::Text {
                        subtype: self.istr()?,
                        number_of_lines: self.u32()?,
                    },
                    _ => return None,
                };
                let extension_data = if self.flag()? {
                    Some(SinglePartExtensionData {
                        md5: self.nstr()?,
                        tail: self.disposition(depth)?,
                    })
                } else {
                    None
                };
                Some(BodyStructure::Single {
                    body: Body { basic, specific },
                    extension_data,
                })
            }
            1 => {
                let n = self.count(1)?;
                let mut bodies = Vec::with_capacity(n);
                for _ in 0..n {
                    bodies.push(self.body_structure(depth + 1)?);
                }
                let subtype = self.istr()?;
                let extension_data = if self.flag()? {
                    Some(MultiPartExtensionData {
                        parameter_list: self.params()?,
                        tail: self.disposition(depth)?,
                    })
                } else {
                    None
                };
                Some(BodyStructure::Multi {
                    bodies: Vec1::try_from(bodies).ok()?,
                    subtype,
                    extension_data,
                })
            }
            _ => None,
        }
    }
    fn sort(&mut self) -> Option<SortFields> {
        let date = if self.flag()? {
            Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
        } else {
            None
        };
        let subject = self.string()?;
        let subject_is_reply = self.flag()?;
        let from = self.string()?;
        let to = self.string()?;
        let cc = self.string()?;
        let display_from = self.string()?;
        let display_to = self.string()?;
        let message_id = if self.flag()? {
            Some(self.string()?)
        } else {
            None
        };
        let n = self.count(4)?;
        let mut references = Vec::with_capacity(n);
        for _ in 0..n {
            references.push(self.string()?);
        }
        Some(SortFields {
            date,
            subject,
            subject_is_reply,
            from,
            to,
            cc,
            display_from,
            display_to,
            message_id,
            references,
        })
    }
}
