//! Message-level IMAP: ENVELOPE, BODY/BODYSTRUCTURE, BODY[section] and BINARY[part], SEARCH
//! key evaluation, SORT and THREAD (RFC 3501, RFC 9051, RFC 3516, RFC 5256, RFC 5957), and a
//! cacheable [`Summary`] of a message.
//!
//! Pure functions over messages given as bytes (RFC 5322 as on the wire, CRLF line ends);
//! no I/O. Malformed input never panics: MIME nesting is followed to a depth of 50, parts are
//! capped, every offset is checked.
//!
//! Results use the `imap-codec` types (`imap_codec::imap_types`), ready to put into responses.

mod address;
mod decode;
mod mime;
mod preview;
mod search;
mod section;
mod sort;
mod structure;
mod summary;
mod thread;
mod within;

#[cfg(test)]
mod tests;

pub use decode::decode_header_value;
pub use mime::parse_count;
pub use preview::{PREVIEW_CHARS, PREVIEW_INPUT, preview, thread_root};
pub use search::{
    MessageFlags, SearchEnv, SearchMessage, SearchSets, in_ranges, in_sequence_set, matches,
    matches_with, needs_body, needs_content, sequence_ranges,
};
pub use section::{
    BinaryError, Parsed, binary_section, binary_size, body_text, decoded_header_value,
    header_block, header_value, header_values, partial, section,
};
pub use sort::{
    SortFields, SortItem, SortMessage, base_subject, compare, sent_date, sort, sort_key,
};
pub use structure::{body_structure, envelope};
pub use summary::Summary;
pub use thread::{thread, thread_orderedsubject, thread_references};

/// Deepest MIME nesting (multipart and message/rfc822 levels) that is parsed.
pub const MAX_MIME_DEPTH: usize = mime::MAX_DEPTH;
