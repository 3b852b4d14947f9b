//! Server replies (RFC 5321 §4.2) with their enhanced status codes (RFC 3463), parsed line
//! by line without I/O.

use std::fmt;

use postern_mail_types::EnhancedStatus;

/// A reply of the server: the code, the enhanced status code when the text starts with one,
/// and the text of all lines joined with spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code (`class.subject.detail`), when the server sent one.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text after the code(s); the lines of a multi-line reply joined with spaces.
    pub text: String,
}

impl ServerReply {
    /// A reply made up by the client (say, for a recipient it did not send).
    pub fn new(code: u16, enhanced: Option<(u8, u16, u16)>, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced,
            text: text.into(),
        }
    }

    /// The enhanced status code as a value, when the server sent one.
    pub fn status(&self) -> Option<EnhancedStatus> {
        self.enhanced.map(EnhancedStatus::from)
    }

    /// `2xx`: done.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// `3xx`: go on (`354` after `DATA`).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// `4xx`: failed for now; try again later.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// `5xx`: failed for good.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl fmt::Display for ServerReply {
    /// `550 5.1.1 text`, as in logs and in a DSN's `Diagnostic-Code: smtp;`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some((class, subject, detail)) = self.enhanced {
            write!(f, " {class}.{subject}.{detail}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// A whole reply as received: the code and the text of each line (codes stripped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawReply {
    pub(crate) code: u16,
    pub(crate) lines: Vec<String>,
}

impl RawReply {
    /// The reply with its enhanced code split off the text.
    pub(crate) fn to_reply(&self) -> ServerReply {
        let first = self.lines.first().map_or("", String::as_str);
        let Some((enhanced, token, _)) =
            split_enhanced(first).filter(|(e, _, _)| u16::from(e.0) == self.code / 100)
        else {
            return ServerReply::new(self.code, None, self.lines.join(" ").trim().to_owned());
        };
        let texts: Vec<&str> = self
            .lines
            .iter()
            .map(|line| match line.strip_prefix(token) {
                Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim_start(),
                _ => line.as_str(),
            })
            .filter(|text| !text.is_empty())
            .collect();
        ServerReply::new(self.code, Some(enhanced), texts.join(" ").trim().to_owned())
    }
}

/// Collects the lines of one reply.
#[derive(Debug, Default)]
pub(crate) struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Takes one line (without its CRLF); returns the reply once its last line came.
    pub(crate) fn push(&mut self, line: &[u8]) -> Result<Option<RawReply>, String> {
        let (code, last, text) = parse_line(line)?;
        if let Some(first) = self.code
            && first != code
        {
            return Err(format!(
                "reply code changed from {first} to {code} mid-reply"
            ));
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(format!("reply longer than {MAX_REPLY_LINES} lines"));
        }
        self.code = Some(code);
        self.lines.push(text);
        if !last {
            return Ok(None);
        }
        let lines = std::mem::take(&mut self.lines);
        self.code = None;
        Ok(Some(RawReply { code, lines }))
    }
}

/// Splits `250-text` into (250, false, "text"); `250 text` and `250` are last lines.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), String> {
    let shown = || String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    let (digits, rest) = line
        .split_at_checked(3)
        .ok_or_else(|| format!("short reply line {:?}", shown()))?;
    let code = match digits {
        [a @ b'2'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(format!("bad reply code in {:?}", shown())),
    };
    let (last, text) = match rest {
        [] => (true, &[][..]),
        [b' ', text @ ..] => (true, text),
        [b'-', text @ ..] => (false, text),
        _ => return Err(format!("bad separator after reply code in {:?}", shown())),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// Splits `5.1.1 rest` into ((5, 1, 1), "5.1.1", "rest").
fn split_enhanced(text: &str) -> Option<((u8, u16, u16), &str, &str)> {
    let (token, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = token.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    let numeric = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if parts.next().is_some()
        || !matches!(class, "2" | "4" | "5")
        || !numeric(subject, 3)
        || !numeric(detail, 3)
    {
        return None;
    }
    let code = (
        class.parse().ok()?,
        subject.parse().ok()?,
        detail.parse().ok()?,
    );
    Some((code, token, rest.trim_start()))
}

/// The most bytes of a reply line kept; the rest of a longer line is dropped.
pub(crate) const MAX_LINE: usize = 4096;
/// The most lines a reply may have.
pub(crate) const MAX_REPLY_LINES: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_as_a_value() {
        let r = ServerReply::new(550, Some((5, 1, 10)), "no");
        assert_eq!(r.status(), Some(EnhancedStatus::new(5, 1, 10)));
        assert_eq!(ServerReply::new(250, None, "ok").status(), None);
    }

    fn parse(lines: &[&str]) -> Result<ServerReply, String> {
        let mut parser = ReplyParser::default();
        for (i, line) in lines.iter().enumerate() {
            let done = parser.push(line.as_bytes())?;
            match done {
                Some(raw) if i + 1 == lines.len() => return Ok(raw.to_reply()),
                Some(_) => return Err("ended early".into()),
                None => {}
            }
        }
        Err("not finished".into())
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let reply = parse(&["550 5.1.1 <bob@example.org> no such user"]).unwrap();
        assert_eq!(reply.code, 550);
        assert_eq!(reply.enhanced, Some((5, 1, 1)));
        assert_eq!(reply.text, "<bob@example.org> no such user");
        assert_eq!(
            reply.to_string(),
            "550 5.1.1 <bob@example.org> no such user"
        );
        assert!(reply.is_permanent());
    }

    #[test]
    fn multi_line_joined_and_codes_stripped() {
        let reply = parse(&["452-4.2.2 mailbox", "452-4.2.2 is", "452 4.2.2 full"]).unwrap();
        assert_eq!(reply.enhanced, Some((4, 2, 2)));
        assert_eq!(reply.text, "mailbox is full");
    }

    #[test]
    fn bare_code_and_no_enhanced() {
        assert_eq!(parse(&["250"]).unwrap(), ServerReply::new(250, None, ""));
        let reply = parse(&["220 mx.example.org ESMTP"]).unwrap();
        assert_eq!(reply.enhanced, None);
        assert_eq!(reply.text, "mx.example.org ESMTP");
        // A class that does not match the code is text, not an enhanced code.
        assert_eq!(parse(&["250 5.0.0 ok"]).unwrap().enhanced, None);
        assert_eq!(parse(&["250 2.1.0.1 ok"]).unwrap().enhanced, None);
    }

    #[test]
    fn malformed_lines() {
        assert!(parse(&["25"]).is_err());
        assert!(parse(&["abc def"]).is_err());
        assert!(parse(&["250x ok"]).is_err());
        assert!(parse(&["650 ok"]).is_err());
        assert!(parse(&["250-a", "251 b"]).is_err());
    }

    #[test]
    fn too_many_lines() {
        let mut lines = vec!["250-x"; MAX_REPLY_LINES];
        lines.push("250 y");
        assert!(parse(&lines).unwrap_err().contains("100 lines"));
        lines.truncate(MAX_REPLY_LINES - 1);
        lines.push("250 y");
        assert!(parse(&lines).is_ok());
    }
}
