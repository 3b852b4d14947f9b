//! A read-only view of a message's header for Sieve: names, values unfolded and decoded
//! (RFC 2047 encoded-words, through mail-parser), and the size; and, for the `body` test
//! (RFC 5173), the first [`MAX_BODY_VIEW`] bytes of the message, parsed only when a
//! script asks.

/// The header of one message, parsed once per delivery.
#[derive(Debug, Clone, Default)]
pub(crate) struct MailView {
    /// (lower-cased name, decoded value), in message order.
    headers: Vec<(String, String)>,
    size: u64,
    /// The start of the raw message (header and body), for the `body` test.
    head: Vec<u8>,
}

/// Most header fields looked at (a message with more is still delivered).
const MAX_FIELDS: usize = 2000;
/// Bytes of the message the `body` test sees (Sieve filters on what a message says, and
/// a bound keeps a huge attachment from costing a parse per delivery).
pub(crate) const MAX_BODY_VIEW: usize = 256 * 1024;

impl MailView {
    /// Reads the header block of `raw` (up to the first empty line).
    pub(crate) fn parse(raw: &[u8]) -> Self {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut current: Option<(String, Vec<u8>)> = None;
        for line in raw.split_inclusive(|&b| b == b'\n') {
            let content = trim_eol(line);
            if content.is_empty() {
                break;
            }
            if matches!(content[0], b' ' | b'\t') {
                // Continuation: unfolding removes only the line break.
                if let Some((_, v)) = current.as_mut() {
                    v.extend_from_slice(content);
                }
                continue;
            }
            if let Some((n, v)) = current.take() {
                headers.push((n, decode(&v)));
            }
            if headers.len() >= MAX_FIELDS {
                break;
            }
            if let Some(colon) = content.iter().position(|&b| b == b':') {
                let name = String::from_utf8_lossy(&content[..colon])
                    .trim()
                    .to_ascii_lowercase();
                if !name.is_empty() && !name.contains(' ') {
                    current = Some((name, content[colon + 1..].to_vec()));
                }
            }
        }
        if let Some((n, v)) = current {
            headers.push((n, decode(&v)));
        }
        Self {
            headers,
            size: raw.len() as u64,
            head: raw[..raw.len().min(MAX_BODY_VIEW)].to_vec(),
        }
    }

    /// Every value of header `name` (case-insensitive), decoded.
    pub(crate) fn values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first value of `name`.
    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl postern_sieve::Message for MailView {
    fn header(&self, name: &str) -> Vec<String> {
        self.values(name)
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn body(&self, transform: &postern_sieve::BodyTransform) -> Vec<String> {
        use mail_parser::MimeHeaders as _;
        use postern_sieve::BodyTransform;
        let Some(msg) = mail_parser::MessageParser::default().parse(&self.head) else {
            return Vec::new();
        };
        if let BodyTransform::Raw = transform {
            let start = (msg.root_part().raw_body_offset() as usize).min(self.head.len());
            return vec![String::from_utf8_lossy(&self.head[start..]).into_owned()];
        }
        let wanted = |ctype: &str, subtype: &str| match transform {
            BodyTransform::Content(types) => types.iter().any(|t| {
                let t = t.trim();
                match t.split_once('/') {
                    None => t.is_empty() || t.eq_ignore_ascii_case(ctype),
                    Some((a, b)) => {
                        a.eq_ignore_ascii_case(ctype) && b.eq_ignore_ascii_case(subtype)
                    }
                }
            }),
            _ => ctype.eq_ignore_ascii_case("text"),
        };
        msg.parts
            .iter()
            .filter(|p| !p.is_multipart())
            .filter(|p| {
                let (ct, st) = p.content_type().map_or(("text", "plain"), |c| {
                    (c.ctype(), c.subtype().unwrap_or(""))
                });
                wanted(ct, st)
            })
            .map(|p| match p.text_contents() {
                Some(t) => t.to_owned(),
                None => String::from_utf8_lossy(p.contents()).into_owned(),
            })
            .collect()
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Trims and decodes RFC 2047 encoded-words (any charset mail-parser knows).
fn decode(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    if !text.contains("=?") {
        return text.to_owned();
    }
    let mut synthetic = b"Subject: ".to_vec();
    synthetic.extend_from_slice(text.as_bytes());
    synthetic.extend_from_slice(b"\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse(&synthetic)
        .and_then(|m| m.subject().map(str::to_owned))
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_unfold_and_decode() {
        let raw = b"From: Alice <a@x.org>\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nX-Long: one\r\n two\r\nX-Long: again\r\n\r\nBody: not a header\r\n";
        let v = MailView::parse(raw);
        assert_eq!(v.values("subject"), ["Grüße"]);
        assert_eq!(v.values("X-LONG"), ["one two", "again"]);
        assert_eq!(v.first("from"), Some("Alice <a@x.org>"));
        assert!(v.values("body").is_empty());
        assert_eq!(postern_sieve::Message::size(&v), raw.len() as u64);
    }

    #[test]
    fn body_for_sieve() {
        use postern_sieve::{BodyTransform, Message};
        let raw = b"From: a@x.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe, invoice attached\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>cheap</p>\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let v = MailView::parse(raw);
        let text = v.body(&BodyTransform::Text);
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].contains("Grüße, invoice"), "{text:?}");
        assert!(text[1].contains("<p>cheap</p>"));
        let plain = v.body(&BodyTransform::Content(vec!["text/plain".into()]));
        assert_eq!(plain.len(), 1);
        let pdf = v.body(&BodyTransform::Content(vec!["application".into()]));
        assert_eq!(pdf, ["%PDF-"]);
        assert_eq!(v.body(&BodyTransform::Content(vec!["".into()])).len(), 3);
        let rawb = v.body(&BodyTransform::Raw);
        assert!(
            rawb[0].starts_with("--b\r\nContent-Type: text/plain"),
            "{rawb:?}"
        );
        // A plain message without MIME headers is text/plain.
        let v = MailView::parse(b"Subject: x\r\n\r\nhello there\r\n");
        assert_eq!(v.body(&BodyTransform::Text), ["hello there\r\n"]);
        // Only the first MAX_BODY_VIEW bytes are kept.
        let mut big = b"Subject: x\r\n\r\n".to_vec();
        big.resize(MAX_BODY_VIEW * 2, b'a');
        let v = MailView::parse(&big);
        assert!(v.body(&BodyTransform::Raw)[0].len() < MAX_BODY_VIEW);
    }

    #[test]
    fn garbage_does_not_panic() {
        for raw in [
            &b""[..],
            b"\n",
            b":\n",
            b" leading\n",
            b"\xff\xfe: \xff\r\n",
            b"NoColon\r\n\r\n",
        ] {
            let _ = MailView::parse(raw);
        }
    }
}
