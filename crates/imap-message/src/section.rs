//! BODY[section], partial fetches, BINARY[part] and header lookups.

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_codec::imap_types::{
    core::{AString, Vec1},
    fetch::{Part as ImapPart, Section},
};

use crate::{
    decode::{Cte, cte_kind, decode_base64, decode_header_value, decode_qp},
    mime::{self, Kind, Part, fields, first_field, header_len, unfold},
};

fn path_of(part: &ImapPart) -> Vec<u32> {
    part.0.as_ref().iter().map(|n| n.get()).collect()
}

/// Header fields of `header` whose name is (`not == false`) or is not (`not == true`) in
/// `names`, followed by the blank line (RFC 3501 §6.4.5).
pub(crate) fn filter_fields(header: &[u8], names: &Vec1<AString<'_>>, not: bool) -> Vec<u8> {
    // A set, not a scan of the list per field: both can be long (fields × names).
    let names: std::collections::HashSet<Vec<u8>> = names
        .as_ref()
        .iter()
        .map(|n| n.as_ref().to_ascii_lowercase())
        .collect();
    let mut out = Vec::new();
    for f in fields(header) {
        let listed = names.contains(&f.name.to_ascii_lowercase());
        if listed != not {
            out.extend_from_slice(f.raw);
            if !f.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A message with its MIME part tree parsed at most once, however many sections are read
/// from it: FETCH answers all the items of one message from one `Parsed` (a command may
/// carry thousands of `BODY[1]`, and a parse per item made it cost items × message size).
pub struct Parsed<'a> {
    msg: &'a [u8],
    root: std::cell::OnceCell<Part>,
}

impl<'a> Parsed<'a> {
    /// Nothing is parsed until a section needs the part tree.
    pub fn new(msg: &'a [u8]) -> Self {
        Self {
            msg,
            root: std::cell::OnceCell::new(),
        }
    }

    /// The message.
    pub fn raw(&self) -> &'a [u8] {
        self.msg
    }

    fn root(&self) -> &Part {
        self.root.get_or_init(|| mime::parse_message(self.msg))
    }

    fn part(&self, path: &[u32]) -> Option<&Part> {
        mime::find_part(self.root(), path)
    }

    /// The header and body of the message a section refers to: the whole message without a
    /// part number, or the message encapsulated in a message/rfc822 part.
    fn message_at(&self, part: Option<&ImapPart>) -> Option<(&'a [u8], &'a [u8])> {
        let msg = self.msg;
        match part {
            None => {
                let h = header_len(msg);
                Some((msg.get(..h)?, msg.get(h..)?))
            }
            Some(p) => match &self.part(&path_of(p))?.kind {
                Kind::Message(inner) => Some((inner.header(msg), inner.body(msg))),
                _ => None,
            },
        }
    }

    /// The content of a BODY[section] (RFC 3501 §6.4.5); `None` when the section does not
    /// exist (for example a part number past the last part, or HEADER of a part that is not
    /// message/rfc822). `section == None` is BODY[]. Borrowed from the message except for
    /// HEADER.FIELDS(.NOT).
    pub fn section(&self, section: Option<&Section<'_>>) -> Option<Cow<'a, [u8]>> {
        let Some(section) = section else {
            return Some(Cow::Borrowed(self.msg));
        };
        let msg = self.msg;
        match section {
            Section::Header(part) => self.message_at(part.as_ref()).map(|(h, _)| h.into()),
            Section::Text(part) => self.message_at(part.as_ref()).map(|(_, b)| b.into()),
            Section::HeaderFields(part, names) => self
                .message_at(part.as_ref())
                .map(|(h, _)| filter_fields(h, names, false).into()),
            Section::HeaderFieldsNot(part, names) => self
                .message_at(part.as_ref())
                .map(|(h, _)| filter_fields(h, names, true).into()),
            Section::Part(part) => self.part(&path_of(part)).map(|p| p.body(msg).into()),
            Section::Mime(part) => self.part(&path_of(part)).map(|p| p.header(msg).into()),
        }
    }

    /// Octets [`Self::section`] reads beyond what it returns: the header block that
    /// HEADER.FIELDS(.NOT) filters (0 for the other sections, which are slices).
    pub fn section_work(&self, section: Option<&Section<'_>>) -> usize {
        match section {
            Some(Section::HeaderFields(part, _) | Section::HeaderFieldsNot(part, _)) => {
                self.message_at(part.as_ref()).map_or(0, |(h, _)| h.len())
            }
            _ => 0,
        }
    }

    /// Octets [`Self::binary_section`] and [`Self::binary_size`] read: the part they decode.
    pub fn binary_work(&self, part: &[NonZeroU32]) -> usize {
        if part.is_empty() {
            return self.msg.len();
        }
        let path: Vec<u32> = part.iter().map(|n| n.get()).collect();
        self.part(&path).map_or(0, |p| p.body(self.msg).len())
    }

    fn binary_part(&self, part: &[NonZeroU32]) -> Result<Cow<'a, [u8]>, BinaryError> {
        let msg = self.msg;
        if part.is_empty() {
            return Ok(Cow::Borrowed(msg));
        }
        let path: Vec<u32> = part.iter().map(|n| n.get()).collect();
        let found: &Part = self.part(&path).ok_or(BinaryError::NoSuchPart)?;
        let body = found.body(msg);
        if !matches!(found.kind, Kind::Leaf) {
            // multipart and message/rfc822 bodies carry no transfer encoding of their own
            return Ok(Cow::Borrowed(body));
        }
        if found.mime.cte_invalid {
            return Err(BinaryError::UnknownCte);
        }
        match cte_kind(found.mime.cte.as_deref()) {
            Cte::Identity => Ok(Cow::Borrowed(body)),
            Cte::Base64 => Ok(Cow::Owned(decode_base64(body))),
            Cte::QuotedPrintable => Ok(Cow::Owned(decode_qp(body))),
            Cte::Unknown => Err(BinaryError::UnknownCte),
        }
    }

    /// RFC 3516 BINARY[part]: the part's content with its Content-Transfer-Encoding removed.
    /// An empty part list is the whole message.
    pub fn binary_section(&self, part: &[NonZeroU32]) -> Result<Cow<'a, [u8]>, BinaryError> {
        self.binary_part(part)
    }

    /// RFC 3516 BINARY.SIZE[part]: the decoded size.
    pub fn binary_size(&self, part: &[NonZeroU32]) -> Result<u32, BinaryError> {
        self.binary_part(part)
            .map(|d| u32::try_from(d.len()).unwrap_or(u32::MAX))
    }
}

/// The content of a BODY[section] (RFC 3501 §6.4.5); `None` when the section does not exist
/// (for example a part number past the last part, or HEADER of a part that is not
/// message/rfc822). `section == None` is BODY[]. Several sections of one message: use
/// [`Parsed`], which parses it once.
pub fn section(msg: &[u8], section: Option<&Section<'_>>) -> Option<Vec<u8>> {
    Parsed::new(msg).section(section).map(Cow::into_owned)
}

/// `<offset.length>` of a partial fetch: the bytes that exist in that window.
pub fn partial(data: &[u8], offset: u32, len: u32) -> &[u8] {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let end = start
        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
        .min(data.len());
    data.get(start..end).unwrap_or_default()
}

/// Why a BINARY[part] cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// The part does not exist.
    #[error("no such message part")]
    NoSuchPart,
    /// The part has a Content-Transfer-Encoding we cannot decode (answer `NO [UNKNOWN-CTE]`).
    #[error("unknown Content-Transfer-Encoding")]
    UnknownCte,
}

/// RFC 3516 BINARY[part]: the part's content with its Content-Transfer-Encoding removed. An
/// empty part list is the whole message.
pub fn binary_section(msg: &[u8], part: &[NonZeroU32]) -> Result<Vec<u8>, BinaryError> {
    Parsed::new(msg).binary_section(part).map(Cow::into_owned)
}

/// RFC 3516 BINARY.SIZE[part]: the decoded size.
pub fn binary_size(msg: &[u8], part: &[NonZeroU32]) -> Result<u32, BinaryError> {
    Parsed::new(msg).binary_size(part)
}

/// The header block of a message (RFC822.HEADER, BODY[HEADER]), blank line included.
pub fn header_block(msg: &[u8]) -> &[u8] {
    msg.get(..header_len(msg)).unwrap_or_default()
}

/// The body of a message (RFC822.TEXT, BODY[TEXT]).
pub fn body_text(msg: &[u8]) -> &[u8] {
    msg.get(header_len(msg)..).unwrap_or_default()
}

/// The raw value of the first header field `name` (case-insensitive), unfolded and trimmed.
pub fn header_value(msg: &[u8], name: &str) -> Option<Vec<u8>> {
    first_field(header_block(msg), name).map(|f| unfold(f.value))
}

/// The raw values of all header fields `name`, unfolded and trimmed, in message order.
pub fn header_values(msg: &[u8], name: &str) -> Vec<Vec<u8>> {
    fields(header_block(msg))
        .filter(|f| f.is(name))
        .map(|f| unfold(f.value))
        .collect()
}

/// The first header field `name` with RFC 2047 encoded words decoded.
pub fn decoded_header_value(msg: &[u8], name: &str) -> Option<String> {
    first_field(header_block(msg), name).map(|f| decode_header_value(f.value))
}

#[cfg(test)]
mod parsed_tests {
    use super::*;
    use imap_codec::imap_types::core::Vec1;

    fn part(n: &[u32]) -> ImapPart {
        let v: Vec<NonZeroU32> = n.iter().filter_map(|&n| NonZeroU32::new(n)).collect();
        ImapPart(Vec1::try_from(v).unwrap())
    }

    /// Many sections of one message from one [`Parsed`]: one part-tree parse, and the
    /// answers of the one-shot functions.
    #[test]
    fn one_parse_answers_every_section() {
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\
Content-Transfer-Encoding: base64\r\n\r\ndHdv\r\n--b--\r\n";
        let p = Parsed::new(m);
        let before = crate::parse_count();
        let sections = [
            Section::Part(part(&[1])),
            Section::Mime(part(&[2])),
            Section::Part(part(&[2])),
            Section::Part(part(&[3])),
        ];
        for _ in 0..100 {
            for s in &sections {
                assert_eq!(p.section(Some(s)).map(Cow::into_owned), section(m, Some(s)));
            }
        }
        let two = [NonZeroU32::new(2).unwrap()];
        assert_eq!(&*p.binary_section(&two).unwrap(), b"two");
        assert_eq!(p.binary_size(&two), Ok(3));
        assert_eq!(p.binary_work(&two), 4);
        // The 400 one-shot `section` calls parse once each; `p` parsed once for everything.
        assert_eq!(crate::parse_count() - before, 1 + 400);
        assert_eq!(p.section(None).as_deref(), Some(&m[..]));
    }
}
