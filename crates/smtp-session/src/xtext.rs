//! xtext (RFC 3461 §4), as in `ENVID`, `ORCPT` and `AUTH=`, and RFC 6533's `\x{HEX}` form.

/// Decodes xtext (RFC 3461 §4): `+HH` is the octet `HH`; the result must be UTF-8.
pub fn xtext_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'+' {
            let hex = text.get(i + 1..i + 3).filter(|h| is_hex(h))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if (b'!'..=b'~').contains(&b) && b != b'=' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes as xtext: `+`, `=`, controls, space and non-ASCII octets become `+HH`.
pub fn xtext_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Decodes `utf-8-addr-xtext` (RFC 6533): `\x{HEX}` is a code point; `+HH` is accepted too.
pub(crate) fn decode_unitext(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\\x{") {
        out.push_str(&xtext_decode(&rest[..i])?);
        let (hex, tail) = rest[i + 3..].split_once('}').filter(|(h, _)| is_hex(h))?;
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        rest = tail;
    }
    out.push_str(&xtext_decode(rest)?);
    Some(out)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("a+2Bb+3D").as_deref(), Some("a+b="));
        assert_eq!(xtext_decode("a+2"), None);
        assert_eq!(xtext_decode("a=b"), None);
        assert_eq!(xtext_encode("a+b= ü"), "a+2Bb+3D+20+C3+BC");
        assert_eq!(
            xtext_decode(&xtext_encode("a+b= ü")).as_deref(),
            Some("a+b= ü")
        );
    }

    #[test]
    fn unitext() {
        assert_eq!(decode_unitext("\\x{FC}ser+40x").as_deref(), Some("üser@x"));
        assert_eq!(decode_unitext("\\x{+FC}"), None);
        assert_eq!(decode_unitext("\\x{FC"), None);
    }
}
