//! A read-only view of a message's header for Sieve: names, values unfolded and decoded
//! (RFC 2047 encoded-words, through mail-parser), and the size.

/// The header of one message, parsed once per delivery.
#[derive(Debug, Clone, Default)]
pub(crate) struct MailView {
    /// (lower-cased name, decoded value), in message order.
    headers: Vec<(String, String)>,
    size: u64,
}

/// Most header fields looked at (a message with more is still delivered).
const MAX_FIELDS: usize = 2000;

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
