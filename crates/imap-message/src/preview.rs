//! PREVIEW (RFC 8970) text and the thread root behind OBJECTID's THREADID (RFC 8474 §5.2),
//! from the start of a message.
//!
//! Both work on a bounded prefix the caller reads ([`PREVIEW_INPUT`] bytes): a message whose
//! first text lies beyond it previews as the empty string, and nothing here costs more than
//! linear time in that prefix (mail-parser decodes base64 and quoted-printable of what is
//! there; a cut-off encoded line decodes as far as it goes).

use mail_parser::{HeaderValue, MessageParser};

/// How much of a message the preview and the thread root are made from.
pub const PREVIEW_INPUT: usize = 256 * 1024;

/// RFC 8970: the preview text is at most 256 characters (not octets).
pub const PREVIEW_CHARS: usize = 256;

/// The preview text of a message (or of its first [`PREVIEW_INPUT`] bytes): the first
/// text/plain body part, else text/html turned into text; whitespace runs (line breaks
/// included) collapsed to one space, control characters dropped, trimmed, at most
/// [`PREVIEW_CHARS`] characters. The empty string when there is no text (RFC 8970 keeps
/// NIL for a preview the server does not give, e.g. with LAZY).
///
/// The parts are found by this crate's MIME parser (`mime::parse_message`, bounded in parts
/// and depth), not mail-parser's, whose `parse` hits a `debug_assert!` on some damaged
/// multiparts (a panic in every debug build).
pub fn preview(msg: &[u8]) -> String {
    let msg = &msg[..msg.len().min(PREVIEW_INPUT)];
    let root = crate::mime::parse_message(msg);
    let Some((part, html)) = first_text(&root) else {
        return String::new();
    };
    let body = part.body(msg);
    let decoded = crate::decode::decode_cte(part.mime.cte.as_deref(), body);
    let text =
        crate::decode::decode_charset(part.mime.charset(), decoded.as_deref().unwrap_or(body));
    if html {
        collapse(
            &mail_parser::decoders::html::html_to_text(&text),
            PREVIEW_CHARS,
        )
    } else {
        collapse(&text, PREVIEW_CHARS)
    }
}

/// The message's body text part: the first text/plain leaf (depth first, not inside an
/// attached message, not an attachment), else the first text/html one (`true`).
fn first_text(root: &crate::mime::Part) -> Option<(&crate::mime::Part, bool)> {
    use crate::mime::{Kind, Part};
    fn walk<'p>(p: &'p Part, html: &mut Option<&'p Part>) -> Option<&'p Part> {
        match &p.kind {
            Kind::Multipart(children) => children.iter().find_map(|c| walk(c, html)),
            Kind::Message(_) => None,
            Kind::Leaf => {
                let attachment = p
                    .mime
                    .disposition
                    .as_ref()
                    .is_some_and(|(d, _)| d.eq_ignore_ascii_case(b"attachment"));
                if attachment {
                    None
                } else if p.mime.is("text", "plain") {
                    Some(p)
                } else {
                    if html.is_none() && p.mime.is("text", "html") {
                        *html = Some(p);
                    }
                    None
                }
            }
        }
    }
    let mut html = None;
    match walk(root, &mut html) {
        Some(p) => Some((p, false)),
        None => html.map(|p| (p, true)),
    }
}

/// Whitespace runs to one space, other control characters dropped, trimmed, cut to `max`
/// characters.
fn collapse(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(max.min(text.len()));
    let mut n = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if c.is_control() || c == '\u{feff}' {
            continue;
        }
        if space {
            if n + 1 >= max {
                break;
            }
            out.push(' ');
            n += 1;
            space = false;
        }
        out.push(c);
        n += 1;
        if n >= max {
            break;
        }
    }
    out
}

/// The Message-ID of the root of a message's thread: the first of `References`, else the
/// first of `In-Reply-To`, else its own `Message-ID` (without angle brackets). `None` when
/// the message has none of them.
pub fn thread_root(msg: &[u8]) -> Option<String> {
    let msg = &msg[..msg.len().min(PREVIEW_INPUT)];
    let head = &msg[..crate::mime::header_len(msg).min(msg.len())];
    let m = MessageParser::new().parse_headers(head)?;
    let first = |v: &HeaderValue<'_>| -> Option<String> {
        match v {
            HeaderValue::Text(t) => Some(t.to_string()),
            HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
            _ => None,
        }
    };
    first(m.references())
        .or_else(|| first(m.in_reply_to()))
        .or_else(|| m.message_id().map(str::to_owned))
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_collapsed_and_cut_at_256_characters() {
        let mut m = b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".to_vec();
        m.extend_from_slice("  Hello,\r\n\r\n\tworld  é ".as_bytes());
        m.extend(std::iter::repeat_n(b'x', 1000));
        let p = preview(&m);
        assert!(p.starts_with("Hello, world é xxx"), "{p}");
        assert_eq!(p.chars().count(), 256);
    }

    #[test]
    fn base64_and_quoted_printable_are_decoded() {
        let m = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMgQmFzZTY0\r\n";
        assert_eq!(preview(m), "Grüße aus Base64");
        let m = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 =\r\nau lait\r\n";
        assert_eq!(preview(m), "Café au lait");
    }

    #[test]
    fn html_only_is_stripped_to_text() {
        let m = b"Content-Type: text/html\r\n\r\n<html><head><style>p{color:red}</style></head><body><p>Hello <b>bold</b></p><p>next</p></body></html>\r\n";
        let p = preview(m);
        assert!(p.contains("Hello bold") && p.contains("next"), "{p}");
        assert!(!p.contains('<'), "{p}");
    }

    #[test]
    fn multipart_takes_the_first_text_part() {
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b\r\nContent-Type: text/plain\r\n\r\nthe text\r\n--b--\r\n";
        assert_eq!(preview(m), "the text");
    }

    #[test]
    fn no_text_is_empty() {
        assert_eq!(preview(b"Subject: x\r\n\r\n"), "");
        let m = b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n";
        assert_eq!(preview(m), "");
    }

    /// The input is cut at PREVIEW_INPUT bytes, whatever the message's size.
    #[test]
    fn a_huge_single_line_body_is_cheap() {
        let mut m = b"Subject: x\r\n\r\n".to_vec();
        m.extend(std::iter::repeat_n(b'y', 20 << 20));
        let t = std::time::Instant::now();
        let p = preview(&m);
        assert_eq!(p.len(), 256);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn thread_root_from_references_then_in_reply_to_then_message_id() {
        let m = b"Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nReferences: <a@x> <b@x>\r\n\r\nbody";
        assert_eq!(thread_root(m).as_deref(), Some("a@x"));
        let m = b"Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\n\r\nbody";
        assert_eq!(thread_root(m).as_deref(), Some("b@x"));
        let m = b"Message-ID: <c@x>\r\n\r\nbody";
        assert_eq!(thread_root(m).as_deref(), Some("c@x"));
        assert_eq!(thread_root(b"Subject: x\r\n\r\nbody"), None);
    }

    /// Fuzz crash (imap_message target, 2026-12-07): mail-parser 0.11.9 hit a
    /// `debug_assert!` ("Invalid part ID, could not find multipart", parsers/message.rs:485)
    /// on this damaged multipart with nested message/rfc822 parts, so every debug build (the
    /// tests, the e2e binaries) panicked computing its PREVIEW. The preview is made with this
    /// crate's own MIME parser: the first text part, decoded.
    #[test]
    fn a_message_that_made_mail_parser_assert_previews() {
        let m: &[u8] = b"From: bob@example.test\r\n\
              To: Alice\x00\x00\x00\x00\x00\x00\x00\x00examlpe.test>, Carol@ex\x1cmple.test\r\n\
              Subject: =?UTF-8?Q?caf=C3=A9?= report\r\n\
              MIME-Version: 1.0\r\n\
              Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
              \r\n\
              --b1\r\n\
              Content-Type: text/plain; charset=utf-8\r\n\
              Content-Transfer-Encoding: quoted-printable\r\n\
              \r\n\
              caf=C3=A9 report\r\n\
              --b1\r\n\
              Content-Type: message/rfc822\r\n\
              \r\n\
              Subject: inner\r\n\
              Cont\xa4\x91t-Type: multipart/alternatect: =?utf-8?B?AAAA?= =?x?q?\
              y?=lice <alice@example\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff.test>\r\n\
              To:--b1\r\n\
              Content-Type: message/rfc822\r\n\
              \r\n\
              Subject: inner\r\n\
              Cont\xa4\x91t-Type: mmplice@example.e\xbe\x8b\xf2\x8b\n\
              st: heexample.test>\r\n\
              \r\n\
              hello wonten \"\" <nsfer-Encoding: base32\r\n\
              \r\n\
              AAECAwQF\r\n\
              --b1--\r\n";
        assert_eq!(preview(m), "caf\u{e9} report");
        let _ = thread_root(m);
    }
}
