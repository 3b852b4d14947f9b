//! Lines the auth server sends: write them (server side) and parse them (client side).
//!
//! ```text
//! VERSION\t1\t2            MECH\tPLAIN\tplaintext   (one per mechanism, before SPID)
//! SPID\t<pid>              CUID\t<n>                COOKIE\t<32 hex>        DONE
//! OK\t<id>\tuser=<user>[\t…]
//! FAIL\t<id>[\tuser=…][\tcode=temp_fail][\treason=…]
//! CONT\t<id>\t<base64>
//! ```

use std::fmt::Write as _;

use crate::params::{Params, write_flag, write_pair, write_pairs};
use crate::{ProtoError, escape, parse_u32, unescape};

use super::{MAJOR_VERSION, MINOR_VERSION, Mech, MechFlag};

/// The server's whole greeting: `VERSION`, one `MECH` per mechanism, `SPID`, `CUID`,
/// `COOKIE` (lower-case hex) and `DONE`. The `MECH` lines come before `SPID`, or Postfix takes
/// the socket for a master socket and gives up.
pub fn handshake(mechs: &[Mech], spid: u32, cuid: u32, cookie: [u8; 16]) -> String {
    let mut out = format!("VERSION\t{MAJOR_VERSION}\t{MINOR_VERSION}\n");
    for mech in mechs {
        out.push_str("MECH\t");
        out.push_str(&escape(&mech.name));
        for flag in &mech.flags {
            write_flag(&mut out, flag.as_str());
        }
        out.push('\n');
    }
    let _ = write!(out, "SPID\t{spid}\nCUID\t{cuid}\nCOOKIE\t");
    for byte in cookie {
        let _ = write!(out, "{byte:02x}");
    }
    out.push_str("\nDONE\n");
    out
}

/// `OK\t<id>\tuser=<user>[\tkey=value…]\n`. Postfix refuses an `OK` without `user=`, so it is
/// always there.
pub fn ok<K: AsRef<str>, V: AsRef<str>>(id: u32, user: &str, extra: &[(K, V)]) -> String {
    let mut out = format!("OK\t{id}");
    write_pair(&mut out, "user", user);
    write_pairs(&mut out, extra);
    out.push('\n');
    out
}

/// `FAIL\t<id>[\tuser=…][\tcode=temp_fail][\treason=…]\n`. Postfix shows `reason=` to the
/// SMTP client; `temp` marks a failure on our side (database down), not a wrong password.
pub fn fail(id: u32, reason: Option<&str>, user: Option<&str>, temp: bool) -> String {
    let mut out = format!("FAIL\t{id}");
    if let Some(user) = user {
        write_pair(&mut out, "user", user);
    }
    if temp {
        write_pair(&mut out, "code", "temp_fail");
    }
    if let Some(reason) = reason {
        write_pair(&mut out, "reason", reason);
    }
    out.push('\n');
    out
}

/// `CONT\t<id>\t<base64>\n`: a challenge for the client.
pub fn cont(id: u32, b64: &str) -> String {
    format!("CONT\t{id}\t{}\n", escape(b64))
}

/// A parsed server line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    /// `VERSION`.
    Version {
        /// Major version; must be 1.
        major: u32,
        /// Minor version.
        minor: u32,
    },
    /// `MECH`: one offered mechanism.
    Mech(Mech),
    /// `SPID`: the server's process id.
    Spid(u32),
    /// `CUID`: this connection's id on the server.
    Cuid(u32),
    /// `COOKIE`: 128 bits for the master `REQUEST` command.
    Cookie([u8; 16]),
    /// `DONE`: end of the greeting.
    Done,
    /// `OK`: authenticated.
    Ok(OkReply),
    /// `FAIL`: not authenticated.
    Fail(FailReply),
    /// `CONT`: a challenge.
    Cont {
        /// Request id.
        id: u32,
        /// Base64 challenge.
        data: String,
    },
}

/// An `OK` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkReply {
    /// Request id.
    pub id: u32,
    /// `user=`: the authenticated user (Dovecot always sends it).
    pub user: Option<String>,
    /// The other fields, in order.
    pub params: Params,
}

/// A `FAIL` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailReply {
    /// Request id.
    pub id: u32,
    /// `user=`, if the server knew who it was.
    pub user: Option<String>,
    /// `code=`: temp_fail, authz_fail, user_disabled, pass_expired, …
    pub code: Option<String>,
    /// `reason=`: text meant for the end client.
    pub reason: Option<String>,
    /// The other fields, in order.
    pub params: Params,
}

impl FailReply {
    /// Whether the failure is temporary (`code=temp_fail`, or an old server's bare `temp`).
    pub fn is_temp(&self) -> bool {
        self.code.as_deref() == Some("temp_fail") || self.params.has("temp")
    }
}

/// Parses one server line (without its LF).
pub fn parse_server_line(line: &str) -> Result<ServerLine, ProtoError> {
    let mut fields = line.split('\t');
    let command = fields.next().unwrap_or_default();
    let mut arg = |name| fields.next().ok_or(ProtoError::Missing(name));
    match command {
        "" => Err(ProtoError::Empty),
        "VERSION" => Ok(ServerLine::Version {
            major: parse_u32("major version", arg("major version")?)?,
            minor: parse_u32("minor version", arg("minor version")?)?,
        }),
        "MECH" => {
            let name = unescape(arg("mechanism")?)?;
            if name.is_empty() {
                return Err(ProtoError::Missing("mechanism"));
            }
            let flags = fields
                .filter(|f| !f.is_empty())
                .map(MechFlag::parse)
                .collect();
            Ok(ServerLine::Mech(Mech::new(&name, flags)))
        }
        "SPID" => Ok(ServerLine::Spid(parse_u32("pid", arg("pid")?)?)),
        "CUID" => Ok(ServerLine::Cuid(parse_u32("cuid", arg("cuid")?)?)),
        "COOKIE" => Ok(ServerLine::Cookie(parse_cookie(arg("cookie")?)?)),
        "DONE" => Ok(ServerLine::Done),
        "OK" => {
            let id = parse_u32("id", arg("id")?)?;
            let mut params = Params::parse(fields)?;
            let user = take(&mut params, "user");
            Ok(ServerLine::Ok(OkReply { id, user, params }))
        }
        "FAIL" => {
            let id = parse_u32("id", arg("id")?)?;
            let mut params = Params::parse(fields)?;
            let user = take(&mut params, "user");
            let code = take(&mut params, "code");
            let reason = take(&mut params, "reason");
            Ok(ServerLine::Fail(FailReply {
                id,
                user,
                code,
                reason,
                params,
            }))
        }
        "CONT" => Ok(ServerLine::Cont {
            id: parse_u32("id", arg("id")?)?,
            data: unescape(arg("data")?)?,
        }),
        other => Err(ProtoError::unknown(other)),
    }
}

/// Removes the first `name=value` field and returns its value.
fn take(params: &mut Params, name: &str) -> Option<String> {
    let at = params
        .0
        .iter()
        .position(|(k, v)| k == name && v.is_some())?;
    params.0.remove(at).1
}

/// 32 hex digits → 16 bytes.
fn parse_cookie(hex: &str) -> Result<[u8; 16], ProtoError> {
    let bad = || ProtoError::invalid("cookie", hex);
    let digits: Vec<u8> = hex
        .bytes()
        .map(nibble)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if digits.len() != 32 {
        return Err(bad());
    }
    let mut cookie = [0u8; 16];
    for (byte, pair) in cookie.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = pair[0] << 4 | pair[1];
    }
    Ok(cookie)
}

/// The value of one hex digit.
fn nibble(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIE: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xa, 0xb, 0xc, 0xd, 0xe, 0xff];

    fn parse_all(text: &str) -> Vec<ServerLine> {
        text.lines()
            .map(|l| parse_server_line(l).unwrap())
            .collect()
    }

    #[test]
    fn handshake_exact_bytes() {
        let got = handshake(&[Mech::plain(), Mech::login()], 1234, 7, COOKIE);
        let want = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t1234\n\
                    CUID\t7\nCOOKIE\t000102030405060708090a0b0c0d0eff\nDONE\n";
        assert_eq!(got, want);
    }

    #[test]
    fn handshake_mechs_before_spid() {
        let text = handshake(
            &[Mech::new("cram-md5", vec![MechFlag::Dictionary])],
            1,
            2,
            [9; 16],
        );
        let lines = parse_all(&text);
        let mech = lines.iter().position(|l| matches!(l, ServerLine::Mech(_)));
        let spid = lines.iter().position(|l| matches!(l, ServerLine::Spid(_)));
        assert!(mech < spid && mech.is_some());
        assert_eq!(
            lines,
            vec![
                ServerLine::Version { major: 1, minor: 2 },
                ServerLine::Mech(Mech::new("CRAM-MD5", vec![MechFlag::Dictionary])),
                ServerLine::Spid(1),
                ServerLine::Cuid(2),
                ServerLine::Cookie([9; 16]),
                ServerLine::Done,
            ]
        );
    }

    #[test]
    fn ok_round_trip() {
        let text = ok(3, "alice@example.org", &[("quota", "1G"), ("note", "a\tb")]);
        assert_eq!(
            text,
            "OK\t3\tuser=alice@example.org\tquota=1G\tnote=a\x01tb\n"
        );
        let [ServerLine::Ok(reply)] = &parse_all(&text)[..] else {
            panic!("one OK")
        };
        assert_eq!(reply.id, 3);
        assert_eq!(reply.user.as_deref(), Some("alice@example.org"));
        assert_eq!(reply.params.get("note"), Some("a\tb"));
        assert_eq!(reply.params.len(), 2);
        let none: &[(String, String)] = &[];
        assert_eq!(ok(4, "u\nx", none), "OK\t4\tuser=u\x01nx\n");
    }

    #[test]
    fn fail_variants() {
        /// (encoded, wire, user, reason, temp)
        type Case<'a> = (String, &'a str, Option<&'a str>, Option<&'a str>, bool);
        let cases: &[Case<'_>] = &[
            (fail(1, None, None, false), "FAIL\t1\n", None, None, false),
            (
                fail(2, Some("Authentication failed"), Some("bob"), false),
                "FAIL\t2\tuser=bob\treason=Authentication failed\n",
                Some("bob"),
                Some("Authentication failed"),
                false,
            ),
            (
                fail(3, Some("try\tlater"), None, true),
                "FAIL\t3\tcode=temp_fail\treason=try\x01tlater\n",
                None,
                Some("try\tlater"),
                true,
            ),
        ];
        for (text, wire, user, reason, temp) in cases {
            assert_eq!(text, wire);
            let [ServerLine::Fail(reply)] = &parse_all(text)[..] else {
                panic!("one FAIL")
            };
            assert_eq!(reply.user.as_deref(), *user);
            assert_eq!(reply.reason.as_deref(), *reason);
            assert_eq!(reply.is_temp(), *temp);
            assert!(reply.params.is_empty());
        }
        let Ok(ServerLine::Fail(old)) = parse_server_line("FAIL\t4\ttemp\tauthz") else {
            panic!("FAIL expected");
        };
        assert!(old.is_temp() && old.code.is_none() && old.params.has("authz"));
    }

    #[test]
    fn cont_round_trip() {
        assert_eq!(cont(5, "VXNlcm5hbWU6"), "CONT\t5\tVXNlcm5hbWU6\n");
        assert_eq!(
            parse_all(&cont(5, "VXNlcm5hbWU6")),
            vec![ServerLine::Cont {
                id: 5,
                data: "VXNlcm5hbWU6".into()
            }]
        );
    }

    #[test]
    fn mech_line_variants() {
        let cases: &[(&str, Mech)] = &[
            ("MECH\tPLAIN", Mech::plain_without_flags()),
            ("MECH\tplain\tplaintext\t", Mech::plain()),
            (
                "MECH\tX\tdictonary",
                Mech::new("X", vec![MechFlag::Other("dictonary".into())]),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_server_line(line),
                Ok(ServerLine::Mech(want.clone())),
                "{line:?}"
            );
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, ProtoError)] = &[
            ("", ProtoError::Empty),
            ("NOPE", ProtoError::UnknownCommand("NOPE".into())),
            ("MECH", ProtoError::Missing("mechanism")),
            ("MECH\t", ProtoError::Missing("mechanism")),
            ("SPID\tabc", ProtoError::invalid("pid", "abc")),
            ("CUID", ProtoError::Missing("cuid")),
            ("COOKIE\t00", ProtoError::invalid("cookie", "00")),
            (
                "COOKIE\t000102030405060708090a0b0c0d0eZZ",
                ProtoError::invalid("cookie", "000102030405060708090a0b0c0d0eZZ"),
            ),
            (
                "COOKIE\t+00102030405060708090a0b0c0d0eff",
                ProtoError::invalid("cookie", "+00102030405060708090a0b0c0d0eff"),
            ),
            ("OK", ProtoError::Missing("id")),
            ("OK\t1\tuser=\x01x", ProtoError::InvalidEscape),
            ("FAIL\tz", ProtoError::invalid("id", "z")),
            ("CONT\t1", ProtoError::Missing("data")),
            ("VERSION\t1\t", ProtoError::invalid("minor version", "")),
        ];
        for (line, want) in cases {
            assert_eq!(parse_server_line(line).as_ref(), Err(want), "{line:?}");
        }
    }

    impl Mech {
        fn plain_without_flags() -> Self {
            Self::new("PLAIN", vec![])
        }
    }
}
