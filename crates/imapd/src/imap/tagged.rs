//! The tagged result of a command: what a handler returns instead of writing the tagged line
//! itself. The dispatcher writes it after the handler's untagged responses.

use std::borrow::Cow;

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::response::{Code, CodeOther, Status};

/// How a command completed (RFC 9051 §7.1): `OK`, `NO` or `BAD`, with an optional response
/// code and human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tagged {
    /// The command completed.
    Ok(Option<Code<'static>>, Cow<'static, str>),
    /// The command failed (an operational error: no such mailbox, over quota…).
    No(Option<Code<'static>>, Cow<'static, str>),
    /// The command was not valid here (syntax, state).
    Bad(Cow<'static, str>),
}

impl Tagged {
    /// `OK text`.
    pub(crate) fn ok(text: impl Into<Cow<'static, str>>) -> Self {
        Self::Ok(None, text.into())
    }

    /// `OK [code] text`.
    pub(crate) fn ok_code(code: Code<'static>, text: impl Into<Cow<'static, str>>) -> Self {
        Self::Ok(Some(code), text.into())
    }

    /// `NO [code] text`.
    pub(crate) fn no(code: Code<'static>, text: impl Into<Cow<'static, str>>) -> Self {
        Self::No(Some(code), text.into())
    }

    /// `NO text`, without a code.
    pub(crate) fn no_plain(text: impl Into<Cow<'static, str>>) -> Self {
        Self::No(None, text.into())
    }

    /// `BAD text`.
    pub(crate) fn bad(text: impl Into<Cow<'static, str>>) -> Self {
        Self::Bad(text.into())
    }

    /// The same as imap-next's tagged status (the driver answers AUTHENTICATE and IDLE
    /// through imap-next, which owns those flows).
    pub(crate) fn status(&self, tag: &Tag<'static>) -> Option<Status<'static>> {
        let t = Some(tag.clone());
        match self {
            Self::Ok(c, text) => Status::ok(t, c.clone(), text.to_string()).ok(),
            Self::No(c, text) => Status::no(t, c.clone(), text.to_string()).ok(),
            Self::Bad(text) => Status::bad(t, None, text.to_string()).ok(),
        }
    }

    /// Appends `<tag> OK|NO|BAD [<code>] <text>\r\n`.
    pub(crate) fn write(&self, out: &mut Vec<u8>, tag: &str) {
        let (kind, code, text) = match self {
            Self::Ok(c, t) => ("OK", c.as_ref(), t),
            Self::No(c, t) => ("NO", c.as_ref(), t),
            Self::Bad(t) => ("BAD", None, t),
        };
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(kind.as_bytes());
        out.push(b' ');
        if let Some(c) = code {
            out.push(b'[');
            write_code(out, c);
            out.extend_from_slice(b"] ");
        }
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// A response code imap-types has no variant for (`CANNOT`, `NONEXISTENT`, …) or whose
/// arguments we format ourselves (`APPENDUID`, `COPYUID` keep our set formatting).
pub(crate) fn other(text: impl Into<String>) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(text.into().into_bytes()))
}

/// The code's text as imap-codec would write it, for the codes we use.
fn write_code(out: &mut Vec<u8>, code: &Code<'_>) {
    let s: &[u8] = match code {
        Code::Other(o) => o.inner(),
        Code::ReadOnly => b"READ-ONLY",
        Code::ReadWrite => b"READ-WRITE",
        Code::TryCreate => b"TRYCREATE",
        Code::OverQuota => b"OVERQUOTA",
        Code::TooBig => b"TOOBIG",
        Code::UnknownCte => b"UNKNOWN-CTE",
        Code::Closed => b"CLOSED",
        Code::CompressionActive => b"COMPRESSIONACTIVE",
        Code::Alert => b"ALERT",
        Code::Parse => b"PARSE",
        other => {
            // Not used by imapd; encoded through imap-codec to stay correct if it is.
            use imap_codec::ResponseCodec;
            use imap_codec::encode::Encoder;
            use imap_codec::imap_types::response::{Response, Status};
            if let Ok(st) = Status::ok(None, Some(other.clone()), "x") {
                let bytes = ResponseCodec::default()
                    .encode(&Response::Status(st))
                    .dump();
                // `* OK [CODE] x\r\n`
                if let Some(inner) = bytes
                    .strip_prefix(b"* OK [")
                    .and_then(|b| b.strip_suffix(b"] x\r\n"))
                {
                    out.extend_from_slice(inner);
                }
            }
            return;
        }
    };
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut o = Vec::new();
        Tagged::ok("NOOP completed").write(&mut o, "a1");
        Tagged::no(other("NONEXISTENT"), "No such mailbox").write(&mut o, "a2");
        Tagged::no(Code::TryCreate, String::from("x")).write(&mut o, "a3");
        Tagged::bad("Log in first").write(&mut o, "a4");
        Tagged::ok_code(Code::ReadWrite, "SELECT completed").write(&mut o, "a5");
        Tagged::ok_code(Code::UidNotSticky, "y").write(&mut o, "a6");
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "a1 OK NOOP completed\r\na2 NO [NONEXISTENT] No such mailbox\r\n\
             a3 NO [TRYCREATE] x\r\na4 BAD Log in first\r\na5 OK [READ-WRITE] SELECT completed\r\n\
             a6 OK [UIDNOTSTICKY] y\r\n"
        );
    }
}
