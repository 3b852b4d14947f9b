//! The Postfix socketmap table protocol (`man socketmap_table`): one netstring per request,
//! one per reply, on a connection Postfix keeps open for many lookups.
//!
//! ```text
//! request:  <name> <key>                 e.g. "mailboxes alice@example.org"
//! reply:    OK <value> | NOTFOUND  | TEMP <reason> | PERM <reason> | TIMEOUT <reason>
//! ```
//! Framing is in [`netstring`]; this module turns bodies into [`Request`] and [`Reply`] and
//! back. What a map name means, and the answer, are the server's business.

pub mod netstring;

pub use netstring::{NetstringDecoder, NetstringError, encode};

use crate::ProtoError;

/// Postfix's limit on a reply netstring's body (`socketmap_max_reply_size`'s default).
pub const MAX_REPLY_LEN: usize = 100_000;
/// A generous limit for request bodies: a map name, a space and an address or domain.
pub const MAX_REQUEST_LEN: usize = 10_000;

/// A lookup: `name key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The map name (`domains`, `mailboxes`, …): non-empty, printable ASCII, no spaces.
    pub name: String,
    /// The lookup key: non-empty UTF-8, may contain spaces.
    pub key: String,
}

impl Request {
    /// The request as a netstring, for the client side.
    pub fn encode(&self) -> Vec<u8> {
        encode_request(&self.name, &self.key)
    }
}

/// Splits a request body at its first space into map name and key.
pub fn parse_request(body: &[u8]) -> Result<Request, ProtoError> {
    let space = body
        .iter()
        .position(|&b| b == b' ')
        .ok_or(ProtoError::Missing("key"))?;
    let (name, key) = (&body[..space], &body[space + 1..]);
    if name.is_empty() || !name.iter().all(u8::is_ascii_graphic) {
        let shown = String::from_utf8_lossy(name);
        return Err(ProtoError::invalid("map name", &shown));
    }
    let key = std::str::from_utf8(key).map_err(|_| ProtoError::InvalidUtf8)?;
    if key.is_empty() {
        return Err(ProtoError::Missing("key"));
    }
    Ok(Request {
        name: String::from_utf8_lossy(name).into_owned(),
        key: key.to_owned(),
    })
}

/// The netstring for `name key`.
pub fn encode_request(name: &str, key: &str) -> Vec<u8> {
    encode(format!("{name} {key}").as_bytes())
}

/// A socketmap answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Found, with its value.
    Ok(String),
    /// Not in the map.
    NotFound,
    /// A temporary failure (Postfix defers the mail).
    Temp(String),
    /// A permanent failure of the map (a configuration error).
    Perm(String),
    /// The server timed out looking.
    Timeout(String),
}

impl Reply {
    /// The reply as a netstring. A reply whose body would be over [`MAX_REPLY_LEN`] is sent as
    /// `TEMP reply too long` instead: Postfix would drop the connection on it and defer anyway,
    /// and this keeps the stream in step.
    pub fn encode(&self) -> Vec<u8> {
        let body = self.body();
        if body.len() > MAX_REPLY_LEN {
            return encode(b"TEMP reply too long");
        }
        encode(body.as_bytes())
    }

    /// The netstring body: `OK <value>`, `NOTFOUND `, `TEMP <reason>`, …
    pub fn body(&self) -> String {
        match self {
            Self::Ok(value) => format!("OK {value}"),
            Self::NotFound => "NOTFOUND ".to_owned(),
            Self::Temp(reason) => format!("TEMP {reason}"),
            Self::Perm(reason) => format!("PERM {reason}"),
            Self::Timeout(reason) => format!("TIMEOUT {reason}"),
        }
    }

    /// Parses a reply body (the client side). `NOTFOUND` may come with or without its space.
    pub fn parse(body: &[u8]) -> Result<Self, ProtoError> {
        let text = std::str::from_utf8(body).map_err(|_| ProtoError::InvalidUtf8)?;
        let (status, rest) = text.split_once(' ').unwrap_or((text, ""));
        let rest = rest.to_owned();
        match status {
            "OK" => Ok(Self::Ok(rest)),
            "NOTFOUND" => Ok(Self::NotFound),
            "TEMP" => Ok(Self::Temp(rest)),
            "PERM" => Ok(Self::Perm(rest)),
            "TIMEOUT" => Ok(Self::Timeout(rest)),
            "" => Err(ProtoError::Empty),
            other => Err(ProtoError::unknown(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, key: &str) -> Result<Request, ProtoError> {
        Ok(Request {
            name: name.into(),
            key: key.into(),
        })
    }

    #[test]
    fn parse_request_table() {
        let cases: &[(&[u8], Result<Request, ProtoError>)] = &[
            (b"domains example.org", req("domains", "example.org")),
            (
                b"mailboxes alice@example.org",
                req("mailboxes", "alice@example.org"),
            ),
            (b"aliases a b  c", req("aliases", "a b  c")),
            (b"senders \xc3\xa9@x", req("senders", "é@x")),
            (b"x  ", req("x", " ")),
            (b"domains", Err(ProtoError::Missing("key"))),
            (b"domains ", Err(ProtoError::Missing("key"))),
            (b"", Err(ProtoError::Missing("key"))),
            (b" key", Err(ProtoError::invalid("map name", ""))),
            (
                b"na\tme key",
                Err(ProtoError::invalid("map name", "na\tme")),
            ),
            (
                b"n\xffm key",
                Err(ProtoError::invalid("map name", "n\u{fffd}m")),
            ),
            (b"domains \xff", Err(ProtoError::InvalidUtf8)),
        ];
        for (body, want) in cases {
            assert_eq!(
                &parse_request(body),
                want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn request_round_trip() {
        let r = Request {
            name: "mailboxes".into(),
            key: "a b@example.org".into(),
        };
        let wire = r.encode();
        assert_eq!(wire, b"25:mailboxes a b@example.org,");
        let mut dec = NetstringDecoder::new(MAX_REQUEST_LEN);
        dec.push(&wire);
        let body = dec.next().unwrap().unwrap();
        assert_eq!(parse_request(&body), Ok(r));
    }

    #[test]
    fn reply_encoding() {
        let cases: &[(Reply, &[u8])] = &[
            (
                Reply::Ok("alice@example.org".into()),
                b"20:OK alice@example.org,",
            ),
            (Reply::Ok(String::new()), b"3:OK ,"),
            (Reply::NotFound, b"9:NOTFOUND ,"),
            (Reply::Temp("db down".into()), b"12:TEMP db down,"),
            (Reply::Perm("bad map".into()), b"12:PERM bad map,"),
            (Reply::Timeout("slow".into()), b"12:TIMEOUT slow,"),
        ];
        for (reply, wire) in cases {
            assert_eq!(reply.encode(), *wire, "{reply:?}");
            let body = &wire[wire.iter().position(|&b| b == b':').unwrap() + 1..wire.len() - 1];
            assert_eq!(Reply::parse(body).as_ref(), Ok(reply));
        }
    }

    #[test]
    fn oversized_reply_becomes_temp() {
        let big = Reply::Ok("x".repeat(MAX_REPLY_LEN));
        assert_eq!(big.encode(), b"19:TEMP reply too long,");
        let fits = Reply::Ok("x".repeat(MAX_REPLY_LEN - 3));
        assert_eq!(fits.encode().len(), MAX_REPLY_LEN + 8);
    }

    #[test]
    fn reply_parse_variants_and_errors() {
        let cases: &[(&[u8], Result<Reply, ProtoError>)] = &[
            (b"NOTFOUND", Ok(Reply::NotFound)),
            (b"NOTFOUND whatever", Ok(Reply::NotFound)),
            (b"OK", Ok(Reply::Ok(String::new()))),
            (b"OK a b", Ok(Reply::Ok("a b".into()))),
            (b"TEMP", Ok(Reply::Temp(String::new()))),
            (b"", Err(ProtoError::Empty)),
            (b"ok x", Err(ProtoError::UnknownCommand("ok".into()))),
            (b"MAYBE x", Err(ProtoError::UnknownCommand("MAYBE".into()))),
            (b"OK \xff", Err(ProtoError::InvalidUtf8)),
        ];
        for (body, want) in cases {
            assert_eq!(
                &Reply::parse(body),
                want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
