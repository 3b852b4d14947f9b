//! BODY[section], partial fetches, BINARY[part] and header lookups.

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

/// The header and body of the message a section refers to: the whole message without a part
/// number, or the message encapsulated in a message/rfc822 part.
fn message_at<'a>(msg: &'a [u8], part: Option<&ImapPart>) -> Option<(&'a [u8], &'a [u8])> {
    match part {
        None => {
            let h = header_len(msg);
            Some((msg.get(..h)?, msg.get(h..)?))
        }
        Some(p) => {
            let root = mime::parse_message(msg);
            let found = mime::find_part(&root, &path_of(p))?;
            match &found.kind {
                Kind::Message(inner) => Some((inner.header(msg), inner.body(msg))),
                _ => None,
            }
        }
    }
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

/// The content of a BODY[section] (RFC 3501 §6.4.5); `None` when the section does not exist
/// (for example a part number past the last part, or HEADER of a part that is not
/// message/rfc822). `section == None` is BODY[].
pub fn section(msg: &[u8], section: Option<&Section<'_>>) -> Option<Vec<u8>> {
    let Some(section) = section else {
        return Some(msg.to_vec());
    };
    match section {
        Section::Header(part) => message_at(msg, part.as_ref()).map(|(h, _)| h.to_vec()),
        Section::Text(part) => message_at(msg, part.as_ref()).map(|(_, b)| b.to_vec()),
        Section::HeaderFields(part, names) => {
            message_at(msg, part.as_ref()).map(|(h, _)| filter_fields(h, names, false))
        }
        Section::HeaderFieldsNot(part, names) => {
            message_at(msg, part.as_ref()).map(|(h, _)| filter_fields(h, names, true))
        }
        Section::Part(part) => {
            let root = mime::parse_message(msg);
            mime::find_part(&root, &path_of(part)).map(|p| p.body(msg).to_vec())
        }
        Section::Mime(part) => {
            let root = mime::parse_message(msg);
            mime::find_part(&root, &path_of(part)).map(|p| p.header(msg).to_vec())
        }
    }
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

fn binary_part(msg: &[u8], part: &[NonZeroU32]) -> Result<Vec<u8>, BinaryError> {
    if part.is_empty() {
        return Ok(msg.to_vec());
    }
    let root = mime::parse_message(msg);
    let path: Vec<u32> = part.iter().map(|n| n.get()).collect();
    let found: &Part = mime::find_part(&root, &path).ok_or(BinaryError::NoSuchPart)?;
    let body = found.body(msg);
    if !matches!(found.kind, Kind::Leaf) {
        // multipart and message/rfc822 bodies carry no transfer encoding of their own
        return Ok(body.to_vec());
    }
    if found.mime.cte_invalid {
        return Err(BinaryError::UnknownCte);
    }
    match cte_kind(found.mime.cte.as_deref()) {
        Cte::Identity => Ok(body.to_vec()),
        Cte::Base64 => Ok(decode_base64(body)),
        Cte::QuotedPrintable => Ok(decode_qp(body)),
        Cte::Unknown => Err(BinaryError::UnknownCte),
    }
}

/// RFC 3516 BINARY[part]: the part's content with its Content-Transfer-Encoding removed. An
/// empty part list is the whole message.
pub fn binary_section(msg: &[u8], part: &[NonZeroU32]) -> Result<Vec<u8>, BinaryError> {
    binary_part(msg, part)
}

/// RFC 3516 BINARY.SIZE[part]: the decoded size.
pub fn binary_size(msg: &[u8], part: &[NonZeroU32]) -> Result<u32, BinaryError> {
    binary_part(msg, part).map(|d| u32::try_from(d.len()).unwrap_or(u32::MAX))
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
