//! `editheader` (RFC 5293): the header edits one execution made, the view of the header
//! they give later tests, and their application to the raw message.
//!
//! Every field is named by a [`FieldId`]: a field of the message is "the n-th field called
//! `name`, counted from the top of the message as it arrived"; a field a script added is
//! "the field of the k-th edit". `deleteheader` records the ids it removed, so the same
//! list of edits gives the header view tests see ([`HeaderEdits::view`]) and the stored
//! or redirected message ([`HeaderEdits::apply`]) without ever matching values twice.
//!
//! Safety: names are checked (RFC 5322 `ftext`), values are unfolded, refused when they
//! carry a control character other than tab (so no CR, LF or NUL ever reaches the
//! output), RFC 2047-encoded when not plain ASCII and folded; some fields are
//! [`protected`] (changes to them are silently ignored, RFC 5293 §6); the number of edit
//! commands and the bytes added are bounded ([`crate::limits`]).

use crate::matching::valid_header_name;

/// Fields no script may add or delete (RFC 5293 §6: attempts are silently ignored):
/// trace fields (`Received`, and the `Return-Path`/`Delivered-To` lmtp-deliver writes and
/// uses to stop redirect loops), `Auto-Submitted` (RFC 3834 loop prevention: vacation and
/// other responders rely on it) and the authentication results recorded upstream
/// (`Authentication-Results`, `DKIM-Signature`, ARC), and Postern's own `X-Postern-*`
/// markers. `Subject` is never protected (RFC 5293 §6 requires it to be editable).
const PROTECTED: &[&str] = &[
    "received",
    "auto-submitted",
    "return-path",
    "delivered-to",
    "authentication-results",
    "dkim-signature",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
];

/// Whether changes to field `name` are refused (silently, with a warning).
pub(crate) fn protected(name: &str) -> bool {
    let lc = name.to_ascii_lowercase();
    PROTECTED.contains(&lc.as_str()) || lc.starts_with("x-postern-")
}

/// Longest field name `addheader` and `deleteheader` accept, in bytes.
pub(crate) const MAX_FIELD_NAME: usize = 200;

/// A field name `addheader`/`deleteheader` accept: RFC 5322 `field-name` (printable
/// US-ASCII but `:`), at most [`MAX_FIELD_NAME`] bytes.
pub(crate) fn valid_field_name(name: &str) -> bool {
    valid_header_name(name) && name.len() <= MAX_FIELD_NAME
}

/// One header field, as the edits see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum FieldId {
    /// The `n`-th (0-based, from the top) field called `name` (lower-cased) in the
    /// message as it arrived.
    Original { name: String, n: usize },
    /// The field added by the edit at this position of the list.
    Added(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    Add {
        /// Lower-cased, for matching.
        lname: String,
        /// The value as tests see it (unfolded, decoded, trimmed).
        value: String,
        /// The field as written: its lines, without line ends.
        lines: Vec<String>,
        last: bool,
    },
    Delete(FieldId),
}

/// The header edits of one execution (`addheader`/`deleteheader`, RFC 5293), in order.
/// Empty unless the script required `editheader` and changed something. Apply them with
/// [`HeaderEdits::apply`] to the message the [`Message`](crate::Message) view was made
/// from, for every copy stored or redirected; responses (`reject`, vacation, DSNs) use
/// the original message (RFC 5293 §7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    edits: Vec<Edit>,
}

impl HeaderEdits {
    /// True when the script changed nothing.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// How many fields were added or deleted.
    pub fn len(&self) -> usize {
        self.edits.len()
    }

    /// Records a field added (already checked and encoded); returns its bytes as written.
    pub(crate) fn add(&mut self, name: &str, value: &str, last: bool) -> usize {
        let lines = encode_field(name, value);
        let bytes = lines.iter().map(|l| l.len() + 2).sum();
        self.edits.push(Edit::Add {
            lname: name.to_ascii_lowercase(),
            value: value.trim().to_owned(),
            lines,
            last,
        });
        bytes
    }

    pub(crate) fn delete(&mut self, id: FieldId) {
        self.edits.push(Edit::Delete(id));
    }

    /// The fields called `name` as the edits left them, in message order: `original` is
    /// every value of `name` in the message as it arrived (what [`Message::header`]
    /// returns).
    ///
    /// [`Message::header`]: crate::Message::header
    pub(crate) fn view(&self, name: &str, original: Vec<String>) -> Vec<(FieldId, String)> {
        let lname = name.to_ascii_lowercase();
        let mut list: Vec<(FieldId, String)> = original
            .into_iter()
            .enumerate()
            .map(|(n, v)| {
                (
                    FieldId::Original {
                        name: lname.clone(),
                        n,
                    },
                    v,
                )
            })
            .collect();
        for (k, e) in self.edits.iter().enumerate() {
            match e {
                Edit::Add {
                    lname: l,
                    value,
                    last,
                    ..
                } if *l == lname => {
                    let item = (FieldId::Added(k), value.clone());
                    if *last {
                        list.push(item);
                    } else {
                        list.insert(0, item);
                    }
                }
                Edit::Add { .. } => {}
                Edit::Delete(id) => list.retain(|(i, _)| i != id),
            }
        }
        list
    }

    /// The message `raw` with the edits made: added fields at the top (the last added
    /// first) or, with `:last`, at the end of the header; deleted fields gone; the body
    /// untouched. Lines end as the message's first line does (CRLF or LF). Fields are
    /// found as lmtp-deliver's and most views find them: a line that does not start
    /// with white space starts a field, named by what comes before its first `:`.
    pub fn apply(&self, raw: &[u8]) -> Vec<u8> {
        if self.edits.is_empty() {
            return raw.to_vec();
        }
        let eol: &[u8] = match raw.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && raw[i - 1] == b'\r' => b"\r\n",
            Some(_) => b"\n",
            None => b"\r\n",
        };
        // The header's chunks (a field and its continuation lines), then the rest.
        let mut chunks: Vec<(Option<FieldId>, &[u8])> = Vec::new();
        let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut pos = 0;
        let mut start_of_current = None;
        let mut current_id: Option<FieldId> = None;
        while pos < raw.len() {
            let end = raw[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(raw.len(), |i| pos + i + 1);
            let line = &raw[pos..end];
            let content = line
                .strip_suffix(b"\n")
                .map_or(line, |l| l.strip_suffix(b"\r").unwrap_or(l));
            if content.is_empty() {
                break;
            }
            let folded = matches!(content[0], b' ' | b'\t');
            if !folded || start_of_current.is_none() {
                if let Some(s) = start_of_current {
                    chunks.push((current_id.take(), &raw[s..pos]));
                }
                start_of_current = Some(pos);
                current_id = if folded {
                    None
                } else {
                    field_id(content, &mut counts)
                };
            }
            pos = end;
        }
        if let Some(s) = start_of_current {
            chunks.push((current_id.take(), &raw[s..pos]));
        }
        let rest = &raw[pos..];
        let deleted: std::collections::HashSet<&FieldId> = self
            .edits
            .iter()
            .filter_map(|e| match e {
                Edit::Delete(id) => Some(id),
                Edit::Add { .. } => None,
            })
            .collect();
        let gone = |id: &FieldId| deleted.contains(&id);
        let mut out = Vec::with_capacity(raw.len() + 256);
        let write_added = |out: &mut Vec<u8>, lines: &[String]| {
            for l in lines {
                out.extend_from_slice(l.as_bytes());
                out.extend_from_slice(eol);
            }
        };
        for (k, e) in self.edits.iter().enumerate().rev() {
            if let Edit::Add {
                lines, last: false, ..
            } = e
                && !gone(&FieldId::Added(k))
            {
                write_added(&mut out, lines);
            }
        }
        let mut last_chunk_open = false;
        for (id, bytes) in &chunks {
            if id.as_ref().is_some_and(gone) {
                continue;
            }
            out.extend_from_slice(bytes);
            last_chunk_open = !bytes.ends_with(b"\n");
        }
        if last_chunk_open {
            // A message that is all header and has no final line end.
            out.extend_from_slice(eol);
        }
        for (k, e) in self.edits.iter().enumerate() {
            if let Edit::Add {
                lines, last: true, ..
            } = e
                && !gone(&FieldId::Added(k))
            {
                write_added(&mut out, lines);
            }
        }
        out.extend_from_slice(rest);
        out
    }
}

/// The id of the field starting with `line`, or `None` for a line that is no field.
fn field_id(line: &[u8], counts: &mut std::collections::HashMap<String, usize>) -> Option<FieldId> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = String::from_utf8_lossy(&line[..colon])
        .trim()
        .to_ascii_lowercase();
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    let n = counts.entry(name.clone()).or_insert(0);
    let id = FieldId::Original { name, n: *n };
    *n += 1;
    Some(id)
}

/// The value `addheader` writes: line breaks unfolded (a line break is white space), or
/// an error when it holds another control character (NUL, ESC, DEL, ...).
pub(crate) fn clean_value(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\n' => {
                // CRLF (or a lone CR or LF) then white space is folding: drop the break;
                // a bare break becomes one space.
                while chars.next_if(|&n| n == '\r' || n == '\n').is_some() {}
                if !matches!(chars.peek(), Some(' ' | '\t')) {
                    out.push(' ');
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {
                return Err(format!(
                    "addheader: the value holds a control character (U+{:04X})",
                    u32::from(c)
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Lines longer than this are folded where there is white space (RFC 5322 §2.1.1).
const FOLD_AT: usize = 78;
/// No line may be longer than this (RFC 5322 §2.1.1).
const LINE_LIMIT: usize = 998;
/// Bytes of UTF-8 per encoded-word: 45 bytes are 60 base64 characters, and the word
/// (`=?UTF-8?B?...?=`) 72, under RFC 2047's 75.
const WORD_BYTES: usize = 45;

/// The field `name: value` as lines (without line ends): plain and folded when the value
/// is printable ASCII and every line fits, else as RFC 2047 `B` encoded-words, one a line.
/// `value` has passed [`clean_value`].
pub(crate) fn encode_field(name: &str, value: &str) -> Vec<String> {
    if value.is_empty() {
        return vec![format!("{name}:")];
    }
    if value.is_ascii() {
        let lines = fold(&format!("{name}: {value}"), name.len() + 2);
        if lines.iter().all(|l| l.len() <= LINE_LIMIT) {
            return lines;
        }
    }
    let mut lines = Vec::new();
    let mut line = format!("{name}:");
    let mut rest = value;
    while !rest.is_empty() {
        let mut cut = rest.len().min(WORD_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        let word = format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes()));
        if line.len() + 1 + word.len() > FOLD_AT && line.len() > name.len() + 1 {
            lines.push(std::mem::take(&mut line));
        }
        line.push(' ');
        line.push_str(&word);
        rest = tail;
    }
    lines.push(line);
    lines
}

/// Splits `line` before white space so that lines stay under [`FOLD_AT`] where they can;
/// never inside the first `keep` bytes (the name, the colon and the space).
fn fold(line: &str, keep: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    let mut floor = keep;
    while rest.len() > FOLD_AT {
        let ws = |i: usize, b: &u8| (i > floor && matches!(b, b' ' | b'\t')).then_some(i);
        let bytes = rest.as_bytes();
        let before = bytes[..=FOLD_AT]
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, b)| ws(i, b));
        let split = before.or_else(|| bytes.iter().enumerate().find_map(|(i, b)| ws(i, b)));
        let Some(at) = split else { break };
        // Only white space before the break: folding there would leave an empty line.
        if rest[..at].trim().is_empty() {
            break;
        }
        out.push(rest[..at].to_owned());
        rest = &rest[at..];
        floor = 0;
    }
    out.push(rest.to_owned());
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_answers() {
        // RFC 4648 §10.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn plain_values_are_folded_at_white_space() {
        let v = "word ".repeat(40);
        let lines = encode_field("X-Long", v.trim_end());
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= FOLD_AT), "{lines:?}");
        assert!(lines[1..].iter().all(|l| l.starts_with(' ')));
        // Unfolding (removing the line breaks) gives the field back.
        assert_eq!(lines.concat(), format!("X-Long: {}", v.trim_end()));
    }

    #[test]
    fn non_ascii_values_become_encoded_words() {
        let lines = encode_field("Subject", "Grüße aus Köln");
        assert_eq!(lines, ["Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?="]);
        let long = "é".repeat(100);
        let lines = encode_field("X-E", &long);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= FOLD_AT && l.is_ascii()));
    }

    #[test]
    fn an_unbreakable_long_word_is_encoded_not_left_over_998() {
        let lines = encode_field("X-W", &"a".repeat(1500));
        assert!(lines.iter().all(|l| l.len() <= FOLD_AT), "{lines:?}");
        assert!(lines[0].starts_with("X-W: =?UTF-8?B?"));
    }

    #[test]
    fn line_breaks_unfold_and_controls_are_refused() {
        assert_eq!(clean_value("a\r\n b").unwrap(), "a b");
        assert_eq!(clean_value("a\r\nb").unwrap(), "a b");
        assert_eq!(clean_value("a\nb\rc").unwrap(), "a b c");
        assert_eq!(clean_value("a\tb").unwrap(), "a\tb");
        assert!(clean_value("a\0b").is_err());
        assert!(clean_value("a\u{1b}b").is_err());
        assert!(clean_value("a\u{7f}").is_err());
    }

    #[test]
    fn protected_fields() {
        for n in [
            "Received",
            "AUTO-SUBMITTED",
            "x-postern-junk",
            "Authentication-Results",
        ] {
            assert!(protected(n), "{n}");
        }
        for n in ["Subject", "X-Spam", "Delivered-To-X"] {
            assert!(!protected(n), "{n}");
        }
    }

    #[test]
    fn apply_adds_and_deletes_by_identity() {
        let raw = b"A: 1\r\nB: x\r\n  folded\r\nA: 2\r\n\r\nA: body\r\n";
        let mut e = HeaderEdits::default();
        e.add("X-Top", "t", false);
        e.add("X-Top2", "t2", false);
        e.add("X-End", "e", true);
        e.delete(FieldId::Original {
            name: "a".into(),
            n: 1,
        });
        e.delete(FieldId::Added(1));
        assert_eq!(
            String::from_utf8(e.apply(raw)).unwrap(),
            "X-Top: t\r\nA: 1\r\nB: x\r\n  folded\r\nX-End: e\r\n\r\nA: body\r\n"
        );
        let mut d = HeaderEdits::default();
        d.delete(FieldId::Original {
            name: "b".into(),
            n: 0,
        });
        assert_eq!(d.apply(b"B: 1\nC: 2\n\nbody"), b"C: 2\n\nbody");
        // No body, no final line end.
        let mut l = HeaderEdits::default();
        l.add("X", "y", true);
        assert_eq!(l.apply(b"A: 1"), b"A: 1\r\nX: y\r\n");
    }
}
