//! Dovecot's tab-escaping of values.
//!
//! Dovecot's line protocols separate fields with TAB and lines with LF, so a value that
//! contains either is written with `\x01` as the escape byte:
//!
//! | byte   | written as    |
//! |--------|---------------|
//! | NUL    | `\x01` `0`    |
//! | `\x01` | `\x01` `1`    |
//! | TAB    | `\x01` `t`    |
//! | CR     | `\x01` `r`    |
//! | LF     | `\x01` `n`    |
//!
//! Only values are escaped; command names and numbers never need it. This module knows
//! nothing about fields or lines: [`crate::params`] and the protocol modules split first, then
//! unescape each value.

use crate::ProtoError;

/// The escape byte.
pub const ESCAPE: char = '\x01';

/// Escapes `value` so it can stand as one field of a Dovecot line.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_into(&mut out, value);
    out
}

/// Appends the escaped form of `value` to `out`.
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\0' => out.push_str("\x010"),
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            other => out.push(other),
        }
    }
}

/// Undoes [`escape`]. An escape byte followed by anything other than `0 1 t r n`, or at the
/// very end, is an error.
pub fn unescape(value: &str) -> Result<String, ProtoError> {
    if !value.contains(ESCAPE) {
        return Ok(value.to_owned());
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != ESCAPE {
            out.push(c);
            continue;
        }
        let plain = match chars.next() {
            Some('0') => '\0',
            Some('1') => '\x01',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('n') => '\n',
            _ => return Err(ProtoError::InvalidEscape),
        };
        out.push(plain);
    }
    Ok(out)
}

/// Whether `value` contains a byte that [`escape`] would rewrite.
pub fn needs_escape(value: &str) -> bool {
    value
        .bytes()
        .any(|b| matches!(b, 0 | 1 | b'\t' | b'\r' | b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (plain, escaped) pairs; each must map both ways.
    const PAIRS: &[(&str, &str)] = &[
        ("", ""),
        ("alice@example.org", "alice@example.org"),
        ("a\tb", "a\x01tb"),
        ("line1\nline2", "line1\x01nline2"),
        ("cr\r", "cr\x01r"),
        ("\0nul", "\x010nul"),
        ("\x01", "\x011"),
        ("\x01t", "\x011t"),
        ("\t\r\n\0\x01", "\x01t\x01r\x01n\x010\x011"),
        ("pässwörd\tß", "pässwörd\x01tß"),
        ("x=y", "x=y"),
    ];

    #[test]
    fn escape_table() {
        for (plain, escaped) in PAIRS {
            assert_eq!(escape(plain), *escaped, "escape {plain:?}");
            assert_eq!(
                needs_escape(plain),
                plain != escaped,
                "needs_escape {plain:?}"
            );
        }
    }

    #[test]
    fn unescape_table() {
        for (plain, escaped) in PAIRS {
            assert_eq!(
                unescape(escaped).as_deref(),
                Ok(*plain),
                "unescape {escaped:?}"
            );
        }
    }

    #[test]
    fn escaped_values_hold_no_separators() {
        for (plain, _) in PAIRS {
            let e = escape(plain);
            assert!(!e.contains(['\t', '\n', '\r', '\0']), "{e:?}");
        }
    }

    #[test]
    fn invalid_escapes() {
        for bad in [
            "\x01",
            "abc\x01",
            "\x01x",
            "\x01T",
            "a\x01\x02b",
            "\x01\t",
            "\x01é",
        ] {
            assert_eq!(unescape(bad), Err(ProtoError::InvalidEscape), "{bad:?}");
        }
    }

    #[test]
    fn round_trip_every_byte() {
        let all: String = (0u8..=127).map(char::from).collect();
        assert_eq!(unescape(&escape(&all)).as_deref(), Ok(all.as_str()));
    }

    #[test]
    fn escape_into_appends() {
        let mut s = String::from("user=");
        escape_into(&mut s, "a\tb");
        assert_eq!(s, "user=a\x01tb");
    }
}
