//! IMAP modified UTF-7 (RFC 3501 §5.1.3), the encoding of mailbox names on the wire and, as
//! Dovecot stores them by default, of Maildir++ folder directory names.
//!
//! Printable US-ASCII (0x20..=0x7e) except `&` stands for itself; `&` is written `&-`; every
//! other character is written as UTF-16BE in a "modified BASE64" run (alphabet `A-Za-z0-9+,`,
//! no `=` padding) between `&` and `-`.
//!
//! [`decode`] is strict and accepts only the canonical form [`encode`] produces, so that every
//! mailbox name has exactly one on-disk name: it rejects bytes outside printable ASCII, an
//! unterminated or empty run, characters outside the alphabet, non-zero padding bits, a
//! dangling half UTF-16 unit, unpaired surrogates, encoded printable ASCII (which must stand for
//! itself) and two runs next to each other (which must be one run).

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why a string is not canonical modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutf7Error {
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

impl fmt::Display for Mutf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid modified UTF-7 at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for Mutf7Error {}

fn is_direct(c: u32) -> bool {
    (0x20..=0x7e).contains(&c) && c != u32::from(b'&')
}

/// Encodes a UTF-8 string as IMAP modified UTF-7.
pub fn encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    for ch in input.chars() {
        if is_direct(u32::from(ch)) {
            flush_run(&mut run, &mut out);
            out.push(ch);
        } else if ch == '&' {
            flush_run(&mut run, &mut out);
            out.push_str("&-");
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush_run(&mut run, &mut out);
    out
}

fn flush_run(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for unit in run.drain(..) {
        bits = (bits << 16) | u32::from(unit);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((bits >> nbits) & 0x3f) as usize]));
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(char::from(
            ALPHABET[((bits << (6 - nbits)) & 0x3f) as usize],
        ));
    }
    out.push('-');
}

fn sextet(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes canonical IMAP modified UTF-7 into UTF-8.
pub fn decode(input: &str) -> Result<String, Mutf7Error> {
    let bytes = input.as_bytes();
    let err = |offset, reason| Err(Mutf7Error { offset, reason });
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut prev_run_end = None;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            if !is_direct(u32::from(b)) {
                return err(i, "byte outside printable US-ASCII");
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if bytes.get(i) == Some(&b'-') {
            out.push('&');
            i += 1;
            continue;
        }
        if prev_run_end == Some(start) {
            return err(start, "two encoded runs next to each other");
        }
        let mut units: Vec<u16> = Vec::new();
        let mut bits: u32 = 0;
        let mut nbits = 0;
        loop {
            let Some(&c) = bytes.get(i) else {
                return err(start, "unterminated encoded run");
            };
            i += 1;
            if c == b'-' {
                break;
            }
            let Some(v) = sextet(c) else {
                return err(i - 1, "character outside the modified BASE64 alphabet");
            };
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push(((bits >> nbits) & 0xffff) as u16);
                bits &= (1 << nbits) - 1;
            }
        }
        if nbits >= 6 || bits != 0 {
            return err(i - 1, "encoded run does not end on a UTF-16 boundary");
        }
        if units.is_empty() {
            return err(start, "empty encoded run");
        }
        for r in char::decode_utf16(units.iter().copied()) {
            let Ok(ch) = r else {
                return err(start, "unpaired UTF-16 surrogate");
            };
            if is_direct(u32::from(ch)) || ch == '&' {
                return err(start, "printable US-ASCII must not be encoded");
            }
            out.push(ch);
        }
        prev_run_end = Some(i);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(utf8: &str, utf7: &str) {
        assert_eq!(encode(utf8), utf7, "encode {utf8:?}");
        assert_eq!(decode(utf7).as_deref(), Ok(utf8), "decode {utf7:?}");
    }

    #[test]
    fn known_vectors() {
        round("", "");
        round("INBOX", "INBOX");
        round("Entwürfe", "Entw&APw-rfe");
        round("&", "&-");
        round("Tom & Jerry", "Tom &- Jerry");
        round("&&", "&-&-");
        // RFC 3501 §5.1.3 example.
        round("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        round("日本語", "&ZeVnLIqe-");
        round("Éé", "&AMkA6Q-");
        // U+1F600 as the surrogate pair D83D DE00.
        round("😀", "&2D3eAA-");
        round("😀€", "&2D3eACCs-");
        round("a😀b€", "a&2D3eAA-b&IKw-");
    }

    #[test]
    fn round_trips_many() {
        for s in [
            "Gelöschte Elemente",
            "Черновики",
            "送信済み",
            "x\u{7f}y",
            "tab\there",
            "🎉🎊",
            "ü&ü",
        ] {
            assert_eq!(decode(&encode(s)).as_deref(), Ok(s), "{s:?}");
            assert!(encode(s).bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "&",          // unterminated
            "&APw",       // unterminated
            "&-&",        // unterminated after a valid '&-'
            "&AP!-",      // bad alphabet
            "&APw=-",     // padding is not allowed
            "&APx-",      // non-zero padding bits
            "&AA-",       // 12 bits: half a UTF-16 unit
            "&AAAA-",     // 24 bits: dangling byte
            "&2D0-",      // lone high surrogate
            "&3gA-",      // lone low surrogate
            "&AEE-",      // encoded 'A'
            "&ACY-",      // encoded '&'
            "&APw-&APw-", // adjacent runs
            "caf\u{e9}",  // raw 8-bit
            "tab\there",  // raw control character
            "&U,BTFw",    // missing '-'
        ] {
            assert!(decode(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
