//! One transaction to send: the envelope and the message, the `MAIL`/`RCPT` commands made
//! from them, and the dot-stuffed body (RFC 5321 §4.5.2).

use std::fmt::Write as _;

use postern_mail_types::{Notify, Ret};

use crate::caps::Capabilities;
use crate::reply::ServerReply;

/// A message and its envelope, ready to send.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The reverse path; `None` is the null sender `<>`.
    pub from: Option<String>,
    /// The recipients, in the order their results come back.
    pub recipients: Vec<OutRcpt>,
    /// The message, header and body, with CRLF line ends; not dot-stuffed.
    pub message: &'a [u8],
    /// Trace header fields sent before `message` (a relay's `Received:`), CRLF-ended; empty
    /// by default. Kept apart so the message is not copied to prepend them.
    pub trace: &'a [u8],
    /// The size announced with `SIZE=` (usually `message.len()`).
    pub size: u64,
    /// The body has 8-bit octets: `BODY=8BITMIME` when the server supports it. To a server
    /// without `8BITMIME` it goes only if it really is 7-bit; else every recipient fails
    /// with `550 5.6.3`.
    pub body_8bit: bool,
    /// The envelope or header needs `SMTPUTF8`; a server without it gets nothing and every
    /// recipient fails with `550 5.6.7`.
    pub smtputf8: bool,
    /// `RET=` (`FULL` or `HDRS`), sent only to a server with `DSN`.
    pub ret: Option<Ret>,
    /// `ENVID=`, not yet xtext-encoded (the client encodes it); sent only to a server with `DSN`.
    pub envid: Option<String>,
}

impl<'a> Outgoing<'a> {
    /// A plain transaction: `size` from the message, no extensions asked for.
    pub fn new(from: Option<String>, recipients: Vec<OutRcpt>, message: &'a [u8]) -> Self {
        Self {
            from,
            recipients,
            message,
            trace: &[],
            size: message.len() as u64,
            body_8bit: false,
            smtputf8: false,
            ret: None,
            envid: None,
        }
    }
}

impl<'a> Outgoing<'a> {
    /// Sends `trace` (whole header fields, CRLF-ended) before the message; `size` grows by
    /// its length.
    pub fn with_trace(mut self, trace: &'a [u8]) -> Self {
        self.size = self.size - self.trace.len() as u64 + trace.len() as u64;
        self.trace = trace;
        self
    }
}

/// One recipient and its DSN parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutRcpt {
    /// The forward path, without angle brackets.
    pub address: String,
    /// `NOTIFY=` (`NEVER`, or some of `SUCCESS,FAILURE,DELAY`); sent only to a server with
    /// `DSN`.
    pub notify: Option<Notify>,
    /// `ORCPT=`, already in the `rfc822;xtext` form; sent only to a server with `DSN`.
    pub orcpt: Option<String>,
}

impl OutRcpt {
    /// A recipient without DSN parameters.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            notify: None,
            orcpt: None,
        }
    }
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptResult {
    /// The recipient, as in [`OutRcpt::address`].
    pub address: String,
    /// The reply to `RCPT TO` when it failed; else the reply to `DATA` when that failed; else
    /// the reply after the body (LMTP: this recipient's own, SMTP: the one for all). A reply
    /// the client made up (a refused `SMTPUTF8` message, a malformed address) looks the same.
    pub reply: ServerReply,
}

/// `MAIL FROM:<…>` with the parameters the server supports, CRLF included.
pub(crate) fn mail_command(tx: &Outgoing<'_>, caps: &Capabilities) -> String {
    let mut line = format!("MAIL FROM:<{}>", tx.from.as_deref().unwrap_or(""));
    if caps.size.is_some() {
        let _ = write!(line, " SIZE={}", tx.size);
    }
    if tx.body_8bit && caps.eightbitmime {
        line.push_str(" BODY=8BITMIME");
    }
    if tx.smtputf8 && caps.smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        if let Some(ret) = tx.ret {
            let _ = write!(line, " RET={}", ret.keyword());
        }
        if let Some(envid) = &tx.envid {
            let _ = write!(line, " ENVID={}", xtext_encode(envid));
        }
    }
    line.push_str("\r\n");
    line
}

/// `RCPT TO:<…>` with the DSN parameters when the server supports them, CRLF included.
pub(crate) fn rcpt_command(rcpt: &OutRcpt, caps: &Capabilities) -> String {
    let mut line = format!("RCPT TO:<{}>", rcpt.address);
    if caps.dsn {
        if let Some(notify) = &rcpt.notify {
            let _ = write!(line, " NOTIFY={}", notify.param());
        }
        if let Some(orcpt) = &rcpt.orcpt {
            let _ = write!(line, " ORCPT={orcpt}");
        }
    }
    line.push_str("\r\n");
    line
}

/// Why the envelope cannot go out as it is, as a reply for every recipient.
pub(crate) fn check_envelope(tx: &Outgoing<'_>, caps: &Capabilities) -> Option<ServerReply> {
    if tx.smtputf8 && !caps.smtputf8 {
        return Some(ServerReply::new(
            550,
            Some((5, 6, 7)),
            "server does not support SMTPUTF8, required by this message",
        ));
    }
    if caps.too_big(tx.size) {
        return Some(ServerReply::new(
            552,
            Some((5, 3, 4)),
            format!(
                "message too big for the receiving server ({} bytes, its limit is {})",
                tx.size,
                caps.size.unwrap_or(0)
            ),
        ));
    }
    if tx.body_8bit && !caps.eightbitmime && has_8bit(tx.message) {
        return Some(ServerReply::new(
            550,
            Some((5, 6, 3)),
            "the receiving server does not support 8BITMIME, needed by this message's 8-bit content",
        ));
    }
    if tx.from.as_deref().is_some_and(|from| !is_path(from)) {
        return Some(ServerReply::new(
            553,
            Some((5, 1, 7)),
            "malformed sender address",
        ));
    }
    None
}

/// Why this recipient cannot go out as it is.
pub(crate) fn check_rcpt(rcpt: &OutRcpt) -> Option<ServerReply> {
    if !is_path(&rcpt.address) || rcpt.address.is_empty() {
        return Some(ServerReply::new(
            553,
            Some((5, 1, 3)),
            "malformed recipient address",
        ));
    }
    if rcpt.orcpt.as_deref().is_some_and(|p| !is_parameter(p)) {
        return Some(ServerReply::new(
            501,
            Some((5, 5, 4)),
            "malformed DSN parameter",
        ));
    }
    None
}

/// The body as it goes after `354`: bare LF and bare CR made CRLF (a receiver that took a
/// bare CR or LF for a line end would otherwise see `<CR>.<CR><LF>` as the end of data:
/// SMTP smuggling), lines starting with `.` get another `.`, a CRLF added if the last line
/// has none, then `.` CRLF.
#[cfg(test)]
pub(crate) fn dot_stuff(message: &[u8]) -> Vec<u8> {
    dot_stuff_parts(&[message])
}

/// [`dot_stuff`] of `parts` one after the other, as if they were one message.
pub(crate) fn dot_stuff_parts(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = crlf_parts(parts, true);
    out.extend_from_slice(b".\r\n");
    out
}

/// `parts` one after the other with CRLF line ends (a bare CR or LF becomes CRLF, a last
/// line without one gets one), and with `stuff`, a `.` before each line starting with `.`.
fn crlf_parts(parts: &[&[u8]], stuff: bool) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + len / 64 + 5);
    let mut line_start = true;
    let mut i = 0;
    let mut parts = parts.iter().copied().filter(|p| !p.is_empty());
    let mut message = parts.next().unwrap_or(&[]);
    loop {
        if i == message.len() {
            match parts.next() {
                Some(next) => {
                    // A CR at the end of one part and LF at the start of the next are one
                    // line end: the CR arm below already wrote it.
                    if message.last() == Some(&b'\r') && next.first() == Some(&b'\n') {
                        message = &next[1..];
                    } else {
                        message = next;
                    }
                    i = 0;
                    continue;
                }
                None => break,
            }
        }
        let b = message[i];
        i += 1;
        match b {
            b'\r' => {
                // CR LF, or a bare CR: either way one line end.
                if message.get(i) == Some(&b'\n') {
                    i += 1;
                }
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            _ => {
                if stuff && line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                line_start = false;
            }
        }
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The body as it goes in one `BDAT … LAST` chunk (RFC 3030): `parts` one after the other,
/// not dot-stuffed. `None` when they are already canonical (every CR followed by LF, every
/// LF preceded by CR, and, unless empty, ending with CRLF), so that they can be sent as they
/// are, without a copy; else the copy with line ends made canonical as [`dot_stuff_parts`]
/// makes them (bare CR and bare LF become CRLF, a last line without one gets one). The
/// recipient then stores the same octets whether the message went by `DATA` or `BDAT`.
pub(crate) fn bdat_body(parts: &[&[u8]]) -> Option<Vec<u8>> {
    if is_canonical(parts) {
        return None;
    }
    Some(crlf_parts(parts, false))
}

/// Whether `parts`, one after the other, have only CRLF line ends and end with one (or are
/// empty).
fn is_canonical(parts: &[&[u8]]) -> bool {
    // A CR ended the previous part: this one must start with its LF.
    let mut pending_cr = false;
    let mut last = None;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let mut rest: &[u8] = part;
        if pending_cr {
            if rest[0] != b'\n' {
                return false;
            }
            pending_cr = false;
            rest = &rest[1..];
        }
        // Each CR found is taken with its LF, so an LF found first is a bare one.
        while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
            if rest[i] == b'\n' {
                return false;
            }
            match rest.get(i + 1) {
                Some(b'\n') => rest = &rest[i + 2..],
                Some(_) => return false,
                None => {
                    pending_cr = true;
                    rest = &[];
                }
            }
        }
        last = part.last().copied();
    }
    !pending_cr && matches!(last, None | Some(b'\n'))
}

/// Whether any octet has the high bit set.
fn has_8bit(message: &[u8]) -> bool {
    message.iter().any(|&b| b >= 0x80)
}

/// Encodes as xtext (RFC 3461 §4).
fn xtext_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
    out
}

/// No controls, spaces or angle brackets: nothing that could end the command early.
fn is_path(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() || c == ' ' || c == '<' || c == '>')
}

/// Printable ASCII without spaces: one ESMTP parameter value.
fn is_parameter(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".\r\nx"), b"..\r\nx\r\n.\r\n");
        assert_eq!(dot_stuff(b"bare\nlf\n.x"), b"bare\r\nlf\r\n..x\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    #[test]
    fn parts_are_stuffed_as_one_message() {
        for (parts, whole) in [
            (
                &[&b"Received: x\r\n"[..], b".a\r\nb"][..],
                &b"Received: x\r\n.a\r\nb"[..],
            ),
            (&[&b"x\r"[..], b"\n.y"], b"x\r\n.y"),
            (&[&b"x\r"[..], b".y"], b"x\r.y"),
            (&[&b""[..], b".", b"", b"\n."], b".\n."),
            (&[&b"a."[..], b".b"], b"a..b"),
        ] {
            assert_eq!(dot_stuff_parts(parts), dot_stuff(whole), "{parts:?}");
        }
        let tx = Outgoing::new(None, Vec::new(), b"12345").with_trace(b"abc");
        assert_eq!(tx.size, 8);
        assert_eq!(tx.with_trace(b"").size, 5);
    }

    /// A canonical body goes as it is (no copy); any other comes out as `DATA` would carry
    /// it, without the dot-stuffing.
    #[test]
    fn bdat_body_is_canonical_and_copied_only_when_needed() {
        for parts in [
            &[&b""[..]][..],
            &[b"a\r\n.b\r\n"],
            &[b"Received: x\r\n", b"Subject: y\r\n\r\nbody\r\n"],
            &[b"x\r", b"\n", b"", b"y\r\n"],
            &[b"", b"\r\n"],
        ] {
            assert_eq!(bdat_body(parts), None, "{parts:?}");
        }
        for (parts, want) in [
            (&[&b"a\nb\n"[..]][..], &b"a\r\nb\r\n"[..]),
            (&[b"no end"], b"no end\r\n"),
            (&[b"bare\rcr\r\n"], b"bare\r\ncr\r\n"),
            (&[b"x\r", b"y\r\n"], b"x\r\ny\r\n"),
            (&[b"x\r\n", b"\ny\r\n"], b"x\r\n\r\ny\r\n"),
            (&[b"x\r\n\r"], b"x\r\n\r\n"),
            (&[b"\n"], b"\r\n"),
            (&[b".\r\n", b"..x"], b".\r\n..x\r\n"),
        ] {
            assert_eq!(bdat_body(parts).as_deref(), Some(want), "{parts:?}");
        }
        // Always the DATA body without its stuffing and its final dot.
        for input in [&b"\r\r\n\n\r.\n.\r"[..], b"a\n\r.\r\n", b".\r\r", b"ok\r\n"] {
            for cut in 0..=input.len() {
                let parts = [&input[..cut], &input[cut..]];
                let body = bdat_body(&parts).unwrap_or_else(|| input.to_vec());
                assert_eq!(body, crlf_parts(&[input], false), "{input:?} cut at {cut}");
                let mut stuffed = dot_stuff(input);
                stuffed.truncate(stuffed.len() - 3);
                let unstuffed = String::from_utf8_lossy(&stuffed).replace("\r\n.", "\r\n");
                let unstuffed = unstuffed.strip_prefix('.').unwrap_or(&unstuffed);
                assert_eq!(String::from_utf8_lossy(&body), unstuffed, "{input:?}");
            }
        }
    }

    /// SMTP smuggling (2023) through us: a receiver that takes a bare CR for a line end must
    /// not see `<CR>.<CR><LF>` as the end of data and what follows as new commands.
    #[test]
    fn bare_cr_cannot_end_the_data() {
        let smuggled = b"a\r.\r\nMAIL FROM:<x@evil>\r\n";
        let out = dot_stuff(smuggled);
        assert_eq!(out, b"a\r\n..\r\nMAIL FROM:<x@evil>\r\n.\r\n");
        assert_eq!(dot_stuff(b"x\r"), b"x\r\n.\r\n");
        assert_eq!(dot_stuff(b"\r.\r\r\n"), b"\r\n..\r\n\r\n.\r\n");
        // Every CR is followed by LF, every LF preceded by CR, in any output.
        for input in [&b"\r\r\n\n\r.\n.\r"[..], b"a\n\r.\r\n", b".\r\r"] {
            let out = dot_stuff(input);
            for (i, &b) in out.iter().enumerate() {
                if b == b'\r' {
                    assert_eq!(out.get(i + 1), Some(&b'\n'), "{input:?} -> {out:?}");
                }
                if b == b'\n' {
                    assert_eq!(out[..i].last(), Some(&b'\r'), "{input:?} -> {out:?}");
                }
            }
        }
    }

    #[test]
    fn commands_follow_capabilities() {
        let mut rcpt = OutRcpt::new("bob@example.org");
        rcpt.notify = Some(Notify {
            success: true,
            failure: true,
            delay: false,
        });
        rcpt.orcpt = Some("rfc822;bob+2Bx@example.org".into());
        let mut tx = Outgoing::new(None, vec![rcpt.clone()], b"x\r\n");
        tx.body_8bit = true;
        tx.ret = Some(Ret::Headers);
        tx.envid = Some("id 1+2".into());
        let plain = Capabilities::default();
        assert_eq!(mail_command(&tx, &plain), "MAIL FROM:<>\r\n");
        assert_eq!(rcpt_command(&rcpt, &plain), "RCPT TO:<bob@example.org>\r\n");
        let all = Capabilities::parse(&["x", "SIZE", "8BITMIME", "DSN", "SMTPUTF8"]);
        assert_eq!(
            mail_command(&tx, &all),
            "MAIL FROM:<> SIZE=3 BODY=8BITMIME RET=HDRS ENVID=id+201+2B2\r\n"
        );
        assert_eq!(
            rcpt_command(&rcpt, &all),
            "RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@example.org\r\n"
        );
    }

    #[test]
    fn refuses_what_would_break_the_command() {
        let caps = Capabilities::default();
        let tx = Outgoing::new(Some("a@b\r\nRSET".into()), vec![], b"");
        assert_eq!(check_envelope(&tx, &caps).unwrap().code, 553);
        let mut tx = Outgoing::new(Some("a@b".into()), vec![], b"");
        assert_eq!(check_envelope(&tx, &caps), None);
        tx.smtputf8 = true;
        assert_eq!(
            check_envelope(&tx, &caps).unwrap().enhanced,
            Some((5, 6, 7))
        );
        let mut big = Outgoing::new(None, vec![], b"caf\xc3\xa9\r\n");
        let small = Capabilities::parse(&["x", "SIZE 3"]);
        assert_eq!(
            check_envelope(&big, &small).unwrap().enhanced,
            Some((5, 3, 4))
        );
        big.body_8bit = true;
        let seven = Capabilities::parse(&["x"]);
        assert_eq!(
            check_envelope(&big, &seven).unwrap().enhanced,
            Some((5, 6, 3))
        );
        let ascii = Outgoing {
            body_8bit: true,
            ..Outgoing::new(None, vec![], b"plain\r\n")
        };
        assert_eq!(check_envelope(&ascii, &seven), None);
        assert_eq!(check_rcpt(&OutRcpt::new("x>y")).unwrap().code, 553);
        let mut rcpt = OutRcpt::new("x@y");
        rcpt.orcpt = Some("rfc822;x@y NOTIFY=NEVER".into());
        assert_eq!(check_rcpt(&rcpt).unwrap().code, 501);
    }
}
