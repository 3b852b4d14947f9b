//! Decoding helpers: IMAP string construction, transfer encodings, charsets, RFC 2047 words.

use imap_codec::imap_types::core::{IString, NString, Quoted};
use mail_parser::{HeaderValue, decoders::charsets::map::charset_decoder, parsers::MessageStream};

/// An IMAP string (quoted when possible, literal otherwise). NUL bytes, which IMAP strings
/// cannot carry, are dropped.
pub(crate) fn istr(bytes: &[u8]) -> IString<'static> {
    let clean: Vec<u8> = if bytes.contains(&0) {
        bytes.iter().copied().filter(|&b| b != 0).collect()
    } else {
        bytes.to_vec()
    };
    IString::try_from(clean).unwrap_or_else(|_| IString::Quoted(Quoted::unvalidated("")))
}

pub(crate) fn nstr(bytes: Option<&[u8]>) -> NString<'static> {
    NString(bytes.map(istr))
}

/// The bytes of an IMAP string type.
pub(crate) fn bytes_of(s: &impl AsRef<[u8]>) -> &[u8] {
    s.as_ref()
}

const B64: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0u8;
    while i < 64 {
        let c = match i {
            0..=25 => b'A' + i,
            26..=51 => b'a' + (i - 26),
            52..=61 => b'0' + (i - 52),
            62 => b'+',
            _ => b'/',
        };
        t[c as usize] = i;
        i += 1;
    }
    t
};

/// Lenient base64: characters outside the alphabet are skipped.
pub(crate) fn decode_base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut n = 0u8;
    for &c in data {
        let v = B64[usize::from(c)];
        if v == 0xff {
            continue;
        }
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&acc.to_be_bytes()[1..]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => {
            out.push((acc >> 10) as u8);
            out.push((acc >> 2) as u8);
        }
        _ => {}
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lenient quoted-printable: invalid `=` sequences are kept as they are, soft line breaks
/// removed, trailing white space on lines dropped.
pub(crate) fn decode_qp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while let Some(&c) = data.get(i) {
        match c {
            b'=' => {
                let h1 = data.get(i + 1).copied();
                let h2 = data.get(i + 2).copied();
                if let (Some(a), Some(b)) = (h1.and_then(hex), h2.and_then(hex)) {
                    out.push(a << 4 | b);
                    i += 3;
                    continue;
                }
                // soft line break: "=" [WSP] CRLF
                let mut j = i + 1;
                while matches!(data.get(j), Some(b' ' | b'\t')) {
                    j += 1;
                }
                match (data.get(j), data.get(j + 1)) {
                    (Some(b'\r'), Some(b'\n')) => i = j + 2,
                    (Some(b'\n'), _) => i = j + 1,
                    (None, _) => i = j,
                    _ => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b'\r' | b'\n' => {
                while matches!(out.last(), Some(b' ' | b'\t')) {
                    out.pop();
                }
                out.push(c);
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// What a Content-Transfer-Encoding means for decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cte {
    Identity,
    Base64,
    QuotedPrintable,
    Unknown,
}

pub(crate) fn cte_kind(cte: Option<&[u8]>) -> Cte {
    let Some(cte) = cte else {
        return Cte::Identity;
    };
    let is = |s: &str| cte.eq_ignore_ascii_case(s.as_bytes());
    if is("7bit") || is("8bit") || is("binary") {
        Cte::Identity
    } else if is("base64") {
        Cte::Base64
    } else if is("quoted-printable") {
        Cte::QuotedPrintable
    } else {
        Cte::Unknown
    }
}

/// Decodes by transfer encoding; None for an unknown encoding.
pub(crate) fn decode_cte(cte: Option<&[u8]>, data: &[u8]) -> Option<Vec<u8>> {
    match cte_kind(cte) {
        Cte::Identity => Some(data.to_vec()),
        Cte::Base64 => Some(decode_base64(data)),
        Cte::QuotedPrintable => Some(decode_qp(data)),
        Cte::Unknown => None,
    }
}

/// Text in a charset to a Rust string; unknown charsets are read as UTF-8 (lossy).
pub(crate) fn decode_charset(charset: Option<&[u8]>, data: &[u8]) -> String {
    let Some(cs) = charset else {
        return String::from_utf8_lossy(data).into_owned();
    };
    let is = |s: &str| cs.eq_ignore_ascii_case(s.as_bytes());
    if is("utf-8") || is("utf8") || is("us-ascii") || is("ascii") || cs.len() > 45 || cs.is_empty()
    {
        return String::from_utf8_lossy(data).into_owned();
    }
    match charset_decoder(cs) {
        Some(decoder) => decoder(data),
        None => String::from_utf8_lossy(data).into_owned(),
    }
}

/// Decodes a raw (possibly folded) header value: RFC 2047 encoded words, unfolding.
pub fn decode_header_value(raw: &[u8]) -> String {
    let mut buf = Vec::with_capacity(raw.len() + 2);
    buf.extend_from_slice(raw);
    buf.extend_from_slice(b"\r\n");
    match MessageStream::new(&buf).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        _ => String::new(),
    }
}

/// Case folding used for substring search and sort keys.
pub(crate) fn fold(s: &str) -> String {
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(decode_base64(b"aGVsbG8gd29ybGQ=\r\n"), b"hello world");
        assert_eq!(decode_base64(b"aGVs\r\nbG8"), b"hello");
        assert_eq!(decode_base64(b"!!*"), b"");
    }

    #[test]
    fn qp() {
        assert_eq!(
            decode_qp(b"caf=C3=A9 =\r\nbar  \r\nx=zz="),
            "café bar\r\nx=zz".as_bytes()
        );
        assert_eq!(decode_qp(b"a=\nb"), b"ab");
    }

    #[test]
    fn header_words() {
        assert_eq!(
            decode_header_value(b" =?UTF-8?B?aMOpbGxv?= =?utf-8?q?_w=C3=B6rld?="),
            "héllo wörld"
        );
        assert_eq!(decode_header_value(b" plain\r\n folded"), "plain folded");
        assert_eq!(decode_header_value(b" =?iso-8859-1?q?caf=E9?="), "café");
        assert_eq!(decode_header_value(b""), "");
    }

    #[test]
    fn charsets() {
        assert_eq!(decode_charset(Some(b"iso-8859-1"), b"caf\xe9"), "café");
        assert_eq!(decode_charset(Some(b"x-unknown"), "é".as_bytes()), "é");
        assert_eq!(decode_charset(None, b"\xff"), "\u{fffd}");
    }

    #[test]
    fn imap_strings() {
        use imap_codec::imap_types::core::IString;
        assert!(matches!(istr(b"abc"), IString::Quoted(_)));
        assert!(matches!(istr("é".as_bytes()), IString::Literal(_)));
        assert!(matches!(istr(b"a\r\nb"), IString::Literal(_)));
        assert_eq!(bytes_of(&istr(b"a\0b")), b"ab");
    }
}
