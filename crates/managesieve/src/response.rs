//! Server responses (RFC 5804 §1.3, §4): `OK`/`NO`/`BYE` with an optional response code
//! and text, strings as quoted strings or literals.

/// A response code (RFC 5804 §1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `QUOTA`: some quota would be exceeded.
    Quota,
    /// `QUOTA/MAXSCRIPTS`: too many scripts.
    QuotaMaxScripts,
    /// `QUOTA/MAXSIZE`: the script is too large.
    QuotaMaxSize,
    /// `ACTIVE`: the script is active (DELETESCRIPT).
    Active,
    /// `NONEXISTENT`: no such script.
    NonExistent,
    /// `ALREADYEXISTS`: the target name is taken (RENAMESCRIPT).
    AlreadyExists,
    /// `TRYLATER`: a temporary failure.
    TryLater,
    /// `ENCRYPT-NEEDED`: use STARTTLS first.
    EncryptNeeded,
    /// `WARNINGS`: done, with warnings in the text.
    Warnings,
    /// `TAG string` (NOOP).
    Tag(Vec<u8>),
    /// `SASL string`: the server's last SASL data (base64).
    Sasl(Vec<u8>),
}

impl Code {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'(');
        match self {
            Self::Quota => out.extend_from_slice(b"QUOTA"),
            Self::QuotaMaxScripts => out.extend_from_slice(b"QUOTA/MAXSCRIPTS"),
            Self::QuotaMaxSize => out.extend_from_slice(b"QUOTA/MAXSIZE"),
            Self::Active => out.extend_from_slice(b"ACTIVE"),
            Self::NonExistent => out.extend_from_slice(b"NONEXISTENT"),
            Self::AlreadyExists => out.extend_from_slice(b"ALREADYEXISTS"),
            Self::TryLater => out.extend_from_slice(b"TRYLATER"),
            Self::EncryptNeeded => out.extend_from_slice(b"ENCRYPT-NEEDED"),
            Self::Warnings => out.extend_from_slice(b"WARNINGS"),
            Self::Tag(t) => {
                out.extend_from_slice(b"TAG ");
                write_string(out, t);
            }
            Self::Sasl(s) => {
                out.extend_from_slice(b"SASL ");
                write_string(out, s);
            }
        }
        out.push(b')');
    }
}

/// Appends `s` as a quoted string when it can be one (at most 1024 octets, no NUL, CR or
/// LF), otherwise as a literal `{n}` CRLF octets.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= crate::parse::MAX_QUOTED && !s.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
        out.push(b'"');
        for &b in s {
            if matches!(b, b'"' | b'\\') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// `s` as a string (see [`write_string`]).
pub fn string(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_string(&mut out, s);
    out
}

fn status(word: &str, code: Option<Code>, text: &str) -> Vec<u8> {
    let mut out = word.as_bytes().to_vec();
    if let Some(c) = code {
        out.push(b' ');
        c.write(&mut out);
    }
    if !text.is_empty() {
        out.push(b' ');
        write_string(&mut out, text.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `OK [(code)] "text"` CRLF.
pub fn ok(code: Option<Code>, text: &str) -> Vec<u8> {
    status("OK", code, text)
}

/// `NO [(code)] "text"` CRLF.
pub fn no(code: Option<Code>, text: &str) -> Vec<u8> {
    status("NO", code, text)
}

/// `BYE [(code)] "text"` CRLF.
pub fn bye(code: Option<Code>, text: &str) -> Vec<u8> {
    status("BYE", code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_quoted_or_literal() {
        assert_eq!(string(b"a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(string(b"line 1\nline 2"), b"{13}\r\nline 1\nline 2");
        assert_eq!(string(&[b'x'; 1025])[..7], *b"{1025}\r");
        assert_eq!(string(b""), b"\"\"");
    }

    #[test]
    fn statuses() {
        assert_eq!(ok(None, "Done."), b"OK \"Done.\"\r\n");
        assert_eq!(
            no(Some(Code::QuotaMaxSize), "too big"),
            b"NO (QUOTA/MAXSIZE) \"too big\"\r\n"
        );
        assert_eq!(
            ok(Some(Code::Tag(b"x1".to_vec())), "Done"),
            b"OK (TAG \"x1\") \"Done\"\r\n"
        );
        assert_eq!(
            no(None, "line 2: a\nline 3: b"),
            b"NO {19}\r\nline 2: a\nline 3: b\r\n"
        );
        assert_eq!(bye(Some(Code::TryLater), ""), b"BYE (TRYLATER)\r\n");
    }
}
