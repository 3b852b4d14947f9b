//! SMTP replies: a code, an optional enhanced status code (RFC 3463) and text lines.
//!
//! We format replies ourselves: smtp-proto's `Response::write` always writes an enhanced code
//! (`354 0.0.0 …`) and `EhloResponse::write` fixes the text of the first line.

use std::fmt;

/// An enhanced status code, `class.subject.detail` (RFC 3463), e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject, 0–999.
    pub subject: u16,
    /// The detail, 0–999.
    pub detail: u16,
}

impl From<(u8, u16, u16)> for EnhancedCode {
    fn from((class, subject, detail): (u8, u16, u16)) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One reply, possibly multi-line. `Display` and [`Reply::to_bytes`] give the wire form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
}

impl Reply {
    /// A reply with an enhanced code: `Reply::new(250, (2, 1, 0), "Ok")`.
    ///
    /// Line breaks in `text` start new lines of a multi-line reply.
    pub fn new(code: u16, enhanced: impl Into<EnhancedCode>, text: impl AsRef<str>) -> Self {
        Self::multiline(code, Some(enhanced.into()), split_lines(text.as_ref()))
    }

    /// A reply without an enhanced code (greeting, `354`, `334`, `EHLO` lines).
    pub fn plain(code: u16, text: impl AsRef<str>) -> Self {
        Self::multiline(code, None, split_lines(text.as_ref()))
    }

    /// A multi-line reply; each element is one line (CR and LF inside are replaced by spaces).
    pub fn multiline<I, S>(code: u16, enhanced: Option<EnhancedCode>, lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut lines: Vec<String> = lines.into_iter().map(|l| sanitize(l.into())).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Self {
            code: code.clamp(200, 599),
            enhanced,
            lines,
        }
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if any.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text lines, without codes.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        self.code < 300
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The same reply without its enhanced code.
    pub fn without_enhanced(mut self) -> Self {
        self.enhanced = None;
        self
    }

    /// The wire form: one `CODE[-| ][ENH ]text\r\n` per line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// Appends the wire form (what `Display` gives) to `out`, without the formatting
    /// machinery: a driver answers every command with one, so this is on every message's
    /// path.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let text: usize = self.lines.iter().map(|l| l.len() + 16).sum();
        out.reserve(text);
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            push_decimal(out, u32::from(self.code));
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(e) = self.enhanced {
                push_decimal(out, u32::from(e.class));
                out.push(b'.');
                push_decimal(out, u32::from(e.subject));
                out.push(b'.');
                push_decimal(out, u32::from(e.detail));
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    // Common replies, worded as Postfix and Dovecot word them.

    /// `250 2.0.0 Ok`.
    pub fn ok() -> Self {
        Self::new(250, (2, 0, 0), "Ok")
    }

    /// `250 2.1.0 Ok` (sender accepted).
    pub fn sender_ok() -> Self {
        Self::new(250, (2, 1, 0), "Ok")
    }

    /// `250 2.1.5 Ok` (recipient accepted).
    pub fn recipient_ok() -> Self {
        Self::new(250, (2, 1, 5), "Ok")
    }

    /// `250 2.0.0 Ok: queued as ID`.
    pub fn queued(id: impl fmt::Display) -> Self {
        Self::new(250, (2, 0, 0), format!("Ok: queued as {id}"))
    }

    /// `250 2.0.0 <rcpt> Saved` (LMTP delivery done, Dovecot's wording).
    pub fn saved(rcpt: impl fmt::Display) -> Self {
        Self::new(250, (2, 0, 0), format!("<{rcpt}> Saved"))
    }

    /// `550 5.1.1 User unknown`.
    pub fn user_unknown() -> Self {
        Self::new(550, (5, 1, 1), "User unknown")
    }

    /// `550 5.1.2 Domain not found` (no such local domain).
    pub fn domain_unknown() -> Self {
        Self::new(550, (5, 1, 2), "Domain not found")
    }

    /// `552 5.2.2 Mailbox full` (over quota, permanent).
    pub fn mailbox_full() -> Self {
        Self::new(552, (5, 2, 2), "Mailbox full")
    }

    /// `452 4.2.2 Mailbox full` (over quota, try later).
    pub fn mailbox_full_temp() -> Self {
        Self::new(452, (4, 2, 2), "Mailbox full")
    }

    /// `451 4.3.0 Temporary failure, try again later`.
    pub fn temp_fail() -> Self {
        Self::new(451, (4, 3, 0), "Temporary failure, try again later")
    }

    /// `452 4.3.1 Insufficient system storage`.
    pub fn insufficient_storage() -> Self {
        Self::new(452, (4, 3, 1), "Insufficient system storage")
    }

    /// `554 5.7.1 Relay access denied`.
    pub fn relay_denied() -> Self {
        Self::new(554, (5, 7, 1), "Relay access denied")
    }

    /// `553 5.7.1 Sender address rejected: not owned by user` (submission).
    pub fn sender_not_owned() -> Self {
        Self::new(553, (5, 7, 1), "Sender address rejected: not owned by user")
    }

    /// `530 5.7.0 Authentication required`.
    pub fn auth_required() -> Self {
        Self::new(530, (5, 7, 0), "Authentication required")
    }

    /// `530 5.7.0 Must issue a STARTTLS command first`.
    pub fn tls_required() -> Self {
        Self::new(530, (5, 7, 0), "Must issue a STARTTLS command first")
    }

    /// `235 2.7.0 Authentication successful`.
    pub fn auth_ok() -> Self {
        Self::new(235, (2, 7, 0), "Authentication successful")
    }

    /// `535 5.7.8 Authentication credentials invalid`.
    pub fn auth_failed() -> Self {
        Self::new(535, (5, 7, 8), "Authentication credentials invalid")
    }

    /// `454 4.7.0 Temporary authentication failure`.
    pub fn auth_temp_fail() -> Self {
        Self::new(454, (4, 7, 0), "Temporary authentication failure")
    }

    /// `552 5.3.4 Message size exceeds fixed maximum message size`.
    pub fn message_too_big() -> Self {
        Self::new(
            552,
            (5, 3, 4),
            "Message size exceeds fixed maximum message size",
        )
    }

    /// `554 5.7.1 Message rejected` with a reason, e.g. a content filter's.
    pub fn rejected(reason: impl fmt::Display) -> Self {
        Self::new(554, (5, 7, 1), format!("Message rejected: {reason}"))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            write!(f, "{}{sep}", self.code)?;
            if let Some(enhanced) = self.enhanced {
                write!(f, "{enhanced}")?;
                if !line.is_empty() {
                    f.write_str(" ")?;
                }
            }
            write!(f, "{line}\r\n")?;
        }
        Ok(())
    }
}

/// `n` in decimal, as `Display` writes it.
fn push_decimal(out: &mut Vec<u8>, n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn split_lines(text: &str) -> Vec<String> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}

fn sanitize(line: String) -> String {
    if line.contains(['\r', '\n']) {
        line.replace(['\r', '\n'], " ")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire form written without `fmt` is byte for byte what `Display` gives.
    #[test]
    fn write_to_is_display() {
        let replies = [
            Reply::ok(),
            Reply::queued("0662054990957a000096"),
            Reply::plain(354, "End data with <CR><LF>.<CR><LF>"),
            Reply::plain(220, ""),
            Reply::new(550, (5, 1, 1), ""),
            Reply::new(451, (4, 123, 999), "a\nb\r\nc"),
            Reply::multiline(250, None, ["mx.example", "PIPELINING", "SIZE 10240000"]),
            Reply::multiline(599, Some((5, 0, 0).into()), ["x", "", "y"]),
            Reply::new(100, (0, 0, 0), "clamped"),
            Reply::new(9999, (255, 65535, 65535), "clamped too"),
        ];
        for r in replies {
            let mut out = b"before".to_vec();
            r.write_to(&mut out);
            assert_eq!(
                out,
                [b"before".as_slice(), r.to_string().as_bytes()].concat()
            );
            assert_eq!(r.to_bytes(), r.to_string().into_bytes());
        }
    }

    #[test]
    fn single_line() {
        assert_eq!(
            Reply::new(250, (2, 1, 0), "Ok").to_string(),
            "250 2.1.0 Ok\r\n"
        );
        assert_eq!(
            Reply::plain(354, "Go ahead").to_string(),
            "354 Go ahead\r\n"
        );
        assert_eq!(Reply::plain(334, "").to_string(), "334 \r\n");
        assert_eq!(Reply::ok().without_enhanced().to_string(), "250 Ok\r\n");
    }

    #[test]
    fn multi_line() {
        let r = Reply::multiline(250, None, ["mx.example", "PIPELINING", "SIZE 10"]);
        assert_eq!(
            r.to_string(),
            "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
        let r = Reply::new(550, (5, 7, 1), "first\r\nsecond");
        assert_eq!(r.to_string(), "550-5.7.1 first\r\n550 5.7.1 second\r\n");
        let r = Reply::multiline(550, None, ["a\rb"]);
        assert_eq!(r.to_bytes(), b"550 a b\r\n");
    }

    #[test]
    fn classes() {
        assert!(Reply::ok().is_positive());
        assert!(Reply::temp_fail().is_transient());
        assert!(Reply::user_unknown().is_permanent());
        assert_eq!(
            Reply::user_unknown().to_string(),
            "550 5.1.1 User unknown\r\n"
        );
        assert_eq!(Reply::new(99, (2, 0, 0), "x").code(), 200);
    }
}
