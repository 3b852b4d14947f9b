//! Writing responses: tagged/untagged lines, strings (quoted or literal), number sets.

use std::fmt::Write as _;

use imap_codec::ResponseCodec;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::response::{Data, Response};

/// Appends `* <text>\r\n`.
pub(crate) fn untagged(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"* ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `<tag> <kind> [<code>] <text>\r\n`.
pub(crate) fn tagged(out: &mut Vec<u8>, tag: &str, kind: &str, code: Option<&str>, text: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b' ');
    if let Some(c) = code {
        out.push(b'[');
        out.extend_from_slice(c.as_bytes());
        out.extend_from_slice(b"] ");
    }
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a typed data response encoded by imap-codec (FETCH with literals, ENVELOPE…).
pub(crate) fn data(out: &mut Vec<u8>, d: Data<'static>) {
    let encoded = ResponseCodec::default().encode(&Response::Data(d));
    out.extend_from_slice(&encoded.dump());
}

/// Appends an IMAP string: quoted when possible, a literal otherwise. UTF-8 is quoted only
/// when `utf8` (UTF8=ACCEPT / IMAP4rev2).
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() < 1024
        && s.iter().all(|&b| {
            b != 0 && b != b'\r' && b != b'\n' && (b < 0x80 || utf8) && (b >= 0x20 || b == b'\t')
        })
        && (utf8 || s.is_ascii());
    if quotable && (!utf8 || std::str::from_utf8(s).is_ok()) {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        let _ = write!(Lit(out), "{{{}}}\r\n", s.len());
        out.extend_from_slice(s);
    }
}

/// `fmt::Write` into a byte vector.
pub(crate) struct Lit<'a>(pub(crate) &'a mut Vec<u8>);

impl std::fmt::Write for Lit<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A compact set of numbers (`1:3,7,9:10`) from ascending or unordered input.
pub(crate) fn num_set(nums: &[u32]) -> String {
    let mut v = nums.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut s = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !s.is_empty() {
            s.push(',');
        }
        if start == end {
            let _ = write!(s, "{start}");
        } else {
            let _ = write!(s, "{start}:{end}");
        }
        i += 1;
    }
    s
}

/// A number set keeping the given order (COPYUID source/destination must pair up).
pub(crate) fn num_list_ordered(nums: &[u32]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && nums[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = nums[i];
        }
        if !s.is_empty() {
            s.push(',');
        }
        if start == end {
            let _ = write!(s, "{start}");
        } else {
            let _ = write!(s, "{start}:{end}");
        }
        i += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        assert_eq!(num_set(&[5, 1, 2, 3, 9]), "1:3,5,9");
        assert_eq!(num_set(&[]), "");
        assert_eq!(num_list_ordered(&[4, 5, 1]), "4:5,1");
    }

    #[test]
    fn strings() {
        let mut o = Vec::new();
        string(&mut o, b"a \"b\"", false);
        assert_eq!(o, b"\"a \\\"b\\\"\"");
        o.clear();
        string(&mut o, "ä".as_bytes(), false);
        assert_eq!(o, b"{2}\r\n\xc3\xa4");
        o.clear();
        string(&mut o, "ä".as_bytes(), true);
        assert_eq!(o, "\"ä\"".as_bytes());
    }
}
