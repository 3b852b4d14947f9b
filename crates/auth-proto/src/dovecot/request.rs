//! Lines a client sends to the auth server: parse them (server side) and write them (client
//! side).
//!
//! ```text
//! VERSION\t1\t2
//! CPID\t<pid>
//! AUTH\t<id>\t<MECH>\tservice=smtp\tlip=…\trip=…\tsecured\tnologin\tresp=<base64>
//! CONT\t<id>\t<base64>
//! CANCEL\t<id>
//! ```
//! The `AUTH` parameters become an [`AuthRequest`]; unknown ones are kept there, not refused.

use std::net::IpAddr;

use crate::params::{write_flag, write_pair};
use crate::{ProtoError, escape, parse_u32, unescape};

use super::auth_request::parse_auth;
use super::{AuthRequest, MAJOR_VERSION, MINOR_VERSION};

/// A parsed client line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `VERSION`: only the major number must match ours.
    Version {
        /// Major version (1).
        major: u32,
        /// Minor version (Postfix sends 0, Dovecot 2.4 sends 4).
        minor: u32,
    },
    /// `CPID`: the client's process id.
    Cpid(u32),
    /// `AUTH`: start an authentication.
    Auth(Box<AuthRequest>),
    /// `CONT`: the client's answer to our `CONT` challenge.
    Cont {
        /// Request id.
        id: u32,
        /// Base64 response, as sent.
        data: String,
    },
    /// `CANCEL`: forget a request.
    Cancel {
        /// Request id.
        id: u32,
    },
}

/// What our clients put in an `AUTH` line besides the mechanism.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthParams {
    /// `service=`: smtp, imap, pop3, …
    pub service: String,
    /// `lip=`: our address.
    pub lip: Option<IpAddr>,
    /// `rip=`: the remote client's address.
    pub rip: Option<IpAddr>,
    /// `secured`: the client connection is TLS (or local).
    pub secured: bool,
    /// `nologin`: only verify the credentials.
    pub nologin: bool,
}

impl AuthParams {
    /// Parameters for `service`, everything else unset.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            ..Self::default()
        }
    }
}

/// Parses one client line (without its LF).
pub fn parse_client_line(line: &str) -> Result<ClientCommand, ProtoError> {
    let mut fields = line.split('\t');
    let command = fields.next().unwrap_or_default();
    let mut arg = |name| fields.next().ok_or(ProtoError::Missing(name));
    match command {
        "" => Err(ProtoError::Empty),
        "VERSION" => Ok(ClientCommand::Version {
            major: parse_u32("major version", arg("major version")?)?,
            minor: parse_u32("minor version", arg("minor version")?)?,
        }),
        "CPID" => Ok(ClientCommand::Cpid(parse_u32("pid", arg("pid")?)?)),
        "CONT" => Ok(ClientCommand::Cont {
            id: parse_u32("id", arg("id")?)?,
            data: unescape(arg("data")?)?,
        }),
        "CANCEL" => Ok(ClientCommand::Cancel {
            id: parse_u32("id", arg("id")?)?,
        }),
        "AUTH" => {
            let id = parse_u32("id", arg("id")?)?;
            let mechanism = arg("mechanism")?;
            Ok(ClientCommand::Auth(Box::new(parse_auth(
                id, mechanism, fields,
            )?)))
        }
        other => Err(ProtoError::unknown(other)),
    }
}

/// `VERSION\t1\t2\n`.
pub fn encode_version() -> String {
    format!("VERSION\t{MAJOR_VERSION}\t{MINOR_VERSION}\n")
}

/// `CPID\t<pid>\n`.
pub fn encode_cpid(pid: u32) -> String {
    format!("CPID\t{pid}\n")
}

/// `AUTH\t<id>\t<MECH>\tservice=…[\tlip=…][\trip=…][\tsecured][\tnologin][\tresp=…]\n`, with
/// `initial` (already base64) as the last parameter.
pub fn encode_auth(id: u32, mech: &str, params: &AuthParams, initial: Option<&str>) -> String {
    let mut out = format!("AUTH\t{id}\t");
    out.push_str(&escape(&mech.to_ascii_uppercase()));
    write_pair(&mut out, "service", &params.service);
    if let Some(lip) = params.lip {
        write_pair(&mut out, "lip", &lip.to_string());
    }
    if let Some(rip) = params.rip {
        write_pair(&mut out, "rip", &rip.to_string());
    }
    if params.secured {
        write_flag(&mut out, "secured");
    }
    if params.nologin {
        write_flag(&mut out, "nologin");
    }
    if let Some(resp) = initial {
        write_pair(&mut out, "resp", resp);
    }
    out.push('\n');
    out
}

/// `CONT\t<id>\t<base64>\n`.
pub fn encode_cont(id: u32, b64: &str) -> String {
    format!("CONT\t{id}\t{}\n", escape(b64))
}

/// `CANCEL\t<id>\n`.
pub fn encode_cancel(id: u32) -> String {
    format!("CANCEL\t{id}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands() {
        let cases: &[(&str, ClientCommand)] = &[
            (
                "VERSION\t1\t0",
                ClientCommand::Version { major: 1, minor: 0 },
            ),
            (
                "VERSION\t1\t4\textra",
                ClientCommand::Version { major: 1, minor: 4 },
            ),
            ("CPID\t4242", ClientCommand::Cpid(4242)),
            (
                "CONT\t7\tYWxpY2U=",
                ClientCommand::Cont {
                    id: 7,
                    data: "YWxpY2U=".into(),
                },
            ),
            (
                "CONT\t7\t",
                ClientCommand::Cont {
                    id: 7,
                    data: String::new(),
                },
            ),
            ("CANCEL\t3", ClientCommand::Cancel { id: 3 }),
        ];
        for (line, want) in cases {
            assert_eq!(parse_client_line(line).as_ref(), Ok(want), "{line:?}");
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, ProtoError)] = &[
            ("", ProtoError::Empty),
            ("HELLO\tthere", ProtoError::UnknownCommand("HELLO".into())),
            (
                "version\t1\t2",
                ProtoError::UnknownCommand("version".into()),
            ),
            ("VERSION\t1", ProtoError::Missing("minor version")),
            (
                "VERSION\tone\t2",
                ProtoError::invalid("major version", "one"),
            ),
            ("CPID", ProtoError::Missing("pid")),
            ("CPID\t-1", ProtoError::invalid("pid", "-1")),
            (
                "CPID\t99999999999",
                ProtoError::invalid("pid", "99999999999"),
            ),
            ("AUTH", ProtoError::Missing("id")),
            ("AUTH\t1", ProtoError::Missing("mechanism")),
            ("AUTH\t1\t", ProtoError::Missing("mechanism")),
            ("AUTH\tx\tPLAIN", ProtoError::invalid("id", "x")),
            ("AUTH\t1\tPLAIN\tsession=\x01q", ProtoError::InvalidEscape),
            ("AUTH\t1\tPLAIN\tresp=\x01", ProtoError::InvalidEscape),
            ("CONT\t1", ProtoError::Missing("data")),
            ("CONT\t+1\tx", ProtoError::invalid("id", "+1")),
            ("CANCEL\t", ProtoError::invalid("id", "")),
            (
                " AUTH\t1\tPLAIN",
                ProtoError::UnknownCommand(" AUTH".into()),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_client_line(line).as_ref(), Err(want), "{line:?}");
        }
        let long = "X".repeat(500);
        let Err(ProtoError::UnknownCommand(shown)) = parse_client_line(&long) else {
            panic!("unknown command expected");
        };
        assert_eq!(shown.len(), crate::SHOWN_LEN);
    }

    #[test]
    fn encoders_round_trip() {
        assert_eq!(encode_version(), "VERSION\t1\t2\n");
        assert_eq!(encode_cpid(77), "CPID\t77\n");
        let parse = |s: String| parse_client_line(s.trim_end_matches('\n'));
        assert_eq!(
            parse(encode_version()),
            Ok(ClientCommand::Version { major: 1, minor: 2 })
        );
        assert_eq!(parse(encode_cpid(77)), Ok(ClientCommand::Cpid(77)));
        assert_eq!(parse(encode_cancel(5)), Ok(ClientCommand::Cancel { id: 5 }));
        assert_eq!(
            parse(encode_cont(5, "UGFzcw==")),
            Ok(ClientCommand::Cont {
                id: 5,
                data: "UGFzcw==".into()
            })
        );

        let params = AuthParams {
            lip: Some("::1".parse().unwrap()),
            rip: Some("203.0.113.9".parse().unwrap()),
            secured: true,
            nologin: true,
            ..AuthParams::new("smtp")
        };
        let line = encode_auth(12, "plain", &params, Some("AGEAYg=="));
        assert_eq!(
            line,
            "AUTH\t12\tPLAIN\tservice=smtp\tlip=::1\trip=203.0.113.9\tsecured\tnologin\tresp=AGEAYg==\n"
        );
        let Ok(ClientCommand::Auth(req)) = parse(line) else {
            panic!("AUTH expected")
        };
        let want = AuthRequest {
            id: 12,
            mechanism: "PLAIN".into(),
            service: Some("smtp".into()),
            lip: params.lip,
            rip: params.rip,
            secured: true,
            nologin: true,
            initial_response: Some("AGEAYg==".into()),
            ..AuthRequest::default()
        };
        assert_eq!(*req, want);

        let bare = encode_auth(1, "LOGIN", &AuthParams::new("imap\tx"), None);
        assert_eq!(bare, "AUTH\t1\tLOGIN\tservice=imap\x01tx\n");
        let Ok(ClientCommand::Auth(req)) = parse(bare) else {
            panic!("AUTH expected")
        };
        assert_eq!(req.service.as_deref(), Some("imap\tx"));
        assert_eq!(req.initial_response, None);
    }
}
