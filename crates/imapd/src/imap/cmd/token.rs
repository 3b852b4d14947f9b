//! The two IMAP string forms every extension parser of [`super::ext`] reads — a quoted string
//! and a literal — in one place, so they unescape, refuse and bound them alike.

use std::ops::Range;

/// A literal: where its octets are in the raw command, and whether it was a literal8 (`~{n}`).
pub(crate) struct Literal {
    pub(crate) range: Range<usize>,
    pub(crate) binary: bool,
}

/// The quoted string starting at `raw[pos]` (which must be `"`): its contents with `\"` and
/// `\\` unescaped, and the position after the closing quote. `None` when it is unterminated,
/// holds another escape, or a CR, LF or NUL (RFC 9051 `quoted`).
pub(crate) fn quoted(raw: &[u8], pos: usize) -> Option<(Vec<u8>, usize)> {
    if raw.get(pos) != Some(&b'"') {
        return None;
    }
    let mut v = Vec::new();
    let mut i = pos + 1;
    loop {
        match *raw.get(i)? {
            b'"' => return Some((v, i + 1)),
            b'\\' => {
                let c = *raw.get(i + 1)?;
                if c != b'"' && c != b'\\' {
                    return None;
                }
                v.push(c);
                i += 2;
            }
            b'\r' | b'\n' | 0 => return None,
            c => {
                v.push(c);
                i += 1;
            }
        }
    }
}

/// The literal starting at `raw[pos]`: `{n}`, `{n+}`, `~{n}` or `~{n+}` (at most 10 digits),
/// the line end (CRLF, or LF as imap-next accepts it), then `n` octets, which must all be in
/// `raw` (imap-next framed the whole command). Returns the literal and the position after it.
pub(crate) fn literal(raw: &[u8], pos: usize) -> Option<(Literal, usize)> {
    let mut i = pos;
    let binary = raw.get(i) == Some(&b'~');
    if binary {
        i += 1;
    }
    if raw.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let start = i;
    while raw.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let digits = &raw[start..i];
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if raw.get(i) == Some(&b'+') {
        i += 1;
    }
    if raw.get(i) != Some(&b'}') {
        return None;
    }
    i += 1;
    if raw.get(i) == Some(&b'\r') {
        i += 1;
    }
    if raw.get(i) != Some(&b'\n') {
        return None;
    }
    i += 1;
    let end = i.checked_add(n).filter(|&e| e <= raw.len())?;
    Some((
        Literal {
            range: i..end,
            binary,
        },
        end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_unescape_and_refuse_what_rfc_9051_forbids() {
        assert_eq!(
            quoted(br#""a\"b\\c" x"#, 0),
            Some((br#"a"b\c"#.to_vec(), 9))
        );
        assert_eq!(quoted(b"\"\"", 0), Some((Vec::new(), 2)));
        for bad in [
            &b"\"abc"[..],
            b"\"a\\nb\"",
            b"\"a\rb\"",
            b"\"a\0b\"",
            b"abc",
        ] {
            assert_eq!(quoted(bad, 0), None, "{bad:?}");
        }
    }

    #[test]
    fn literals_of_every_form_and_their_bounds() {
        let (l, end) = literal(b"{3}\r\nabc rest", 0).unwrap();
        assert_eq!((l.range, l.binary, end), (5..8, false, 8));
        let (l, end) = literal(b"~{2+}\nab", 0).unwrap();
        assert_eq!((l.range, l.binary, end), (6..8, true, 8));
        for bad in [
            &b"{3}\r\nab"[..],
            b"{}\r\n",
            b"{12345678901}\r\n",
            b"{3x}\r\nabc",
            b"{3}abc",
            b"~[3]\r\nabc",
        ] {
            assert!(literal(bad, 0).is_none(), "{bad:?}");
        }
    }
}
