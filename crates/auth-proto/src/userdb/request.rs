//! Lines a userdb client sends: parse them (server side) and write them (client side).

use crate::params::{Params, write_pairs};
use crate::{ProtoError, escape, parse_u32, unescape};

use super::{MAJOR_VERSION, MINOR_VERSION};

/// A parsed client line on the userdb socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterCommand {
    /// `VERSION`: only the major number must match.
    Version {
        /// Major version (1).
        major: u32,
        /// Minor version.
        minor: u32,
    },
    /// `USER`: look a user up in the userdb.
    User {
        /// Request id.
        id: u32,
        /// The user name as given.
        user: String,
        /// `service=` and friends, in order.
        params: Params,
    },
    /// `PASS`: look a user up in the passdb, without a password check.
    Pass {
        /// Request id.
        id: u32,
        /// The user name as given.
        user: String,
        /// `service=` and friends, in order.
        params: Params,
    },
    /// `LIST`: iterate over all users.
    List {
        /// Request id.
        id: u32,
        /// Filters such as `user=<mask>`, in order.
        params: Params,
    },
}

impl MasterCommand {
    /// The request id (`None` for `VERSION`).
    pub fn id(&self) -> Option<u32> {
        match self {
            Self::Version { .. } => None,
            Self::User { id, .. } | Self::Pass { id, .. } | Self::List { id, .. } => Some(*id),
        }
    }
}

/// Parses one client line (without its LF).
pub fn parse_master_line(line: &str) -> Result<MasterCommand, ProtoError> {
    let mut fields = line.split('\t');
    let command = fields.next().unwrap_or_default();
    let mut arg = |name| fields.next().ok_or(ProtoError::Missing(name));
    match command {
        "" => Err(ProtoError::Empty),
        "VERSION" => Ok(MasterCommand::Version {
            major: parse_u32("major version", arg("major version")?)?,
            minor: parse_u32("minor version", arg("minor version")?)?,
        }),
        "USER" | "PASS" => {
            let id = parse_u32("id", arg("id")?)?;
            let user = unescape(arg("user")?)?;
            if user.is_empty() {
                return Err(ProtoError::Missing("user"));
            }
            let params = Params::parse(fields)?;
            Ok(if command == "USER" {
                MasterCommand::User { id, user, params }
            } else {
                MasterCommand::Pass { id, user, params }
            })
        }
        "LIST" => {
            let id = parse_u32("id", arg("id")?)?;
            Ok(MasterCommand::List {
                id,
                params: Params::parse(fields)?,
            })
        }
        other => Err(ProtoError::unknown(other)),
    }
}

/// `VERSION\t1\t0\n`.
pub fn encode_version() -> String {
    format!("VERSION\t{MAJOR_VERSION}\t{MINOR_VERSION}\n")
}

/// `USER\t<id>\t<user>[\tkey=value…]\n`, e.g. with `[("service", "lmtp")]`.
pub fn encode_user<K: AsRef<str>, V: AsRef<str>>(id: u32, user: &str, params: &[(K, V)]) -> String {
    lookup("USER", id, user, params)
}

/// `PASS\t<id>\t<user>[\tkey=value…]\n`.
pub fn encode_pass<K: AsRef<str>, V: AsRef<str>>(id: u32, user: &str, params: &[(K, V)]) -> String {
    lookup("PASS", id, user, params)
}

/// `LIST\t<id>[\tkey=value…]\n`.
pub fn encode_list<K: AsRef<str>, V: AsRef<str>>(id: u32, params: &[(K, V)]) -> String {
    let mut out = format!("LIST\t{id}");
    write_pairs(&mut out, params);
    out.push('\n');
    out
}

fn lookup<K: AsRef<str>, V: AsRef<str>>(
    cmd: &str,
    id: u32,
    user: &str,
    params: &[(K, V)],
) -> String {
    let mut out = format!("{cmd}\t{id}\t{}", escape(user));
    write_pairs(&mut out, params);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(fields: &[&str]) -> Params {
        Params::parse(fields.iter().copied()).unwrap()
    }

    #[test]
    fn parse_table() {
        let cases: Vec<(&str, MasterCommand)> = vec![
            (
                "VERSION\t1\t0",
                MasterCommand::Version { major: 1, minor: 0 },
            ),
            (
                "VERSION\t1\t3\tx",
                MasterCommand::Version { major: 1, minor: 3 },
            ),
            (
                "USER\t1\talice@example.org\tservice=lmtp",
                MasterCommand::User {
                    id: 1,
                    user: "alice@example.org".into(),
                    params: params(&["service=lmtp"]),
                },
            ),
            (
                "USER\t2\tbob",
                MasterCommand::User {
                    id: 2,
                    user: "bob".into(),
                    params: Params::new(),
                },
            ),
            (
                "PASS\t3\ta\x01tb\tservice=smtp\tdebug",
                MasterCommand::Pass {
                    id: 3,
                    user: "a\tb".into(),
                    params: params(&["service=smtp", "debug"]),
                },
            ),
            (
                "LIST\t4",
                MasterCommand::List {
                    id: 4,
                    params: Params::new(),
                },
            ),
            (
                "LIST\t5\tuser=*@example.org",
                MasterCommand::List {
                    id: 5,
                    params: params(&["user=*@example.org"]),
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_master_line(line), Ok(want), "{line:?}");
        }
    }

    #[test]
    fn service_helper_and_id() {
        let cmd = parse_master_line("USER\t9\tu\tservice=imap\trip=192.0.2.1").unwrap();
        let MasterCommand::User { ref params, .. } = cmd else {
            panic!("USER expected")
        };
        assert_eq!(params.service(), Some("imap"));
        assert_eq!(cmd.id(), Some(9));
        assert_eq!(parse_master_line("VERSION\t1\t0").unwrap().id(), None);
    }

    #[test]
    fn errors() {
        let cases: &[(&str, ProtoError)] = &[
            ("", ProtoError::Empty),
            (
                "REQUEST\t1\t2\t3\tabc",
                ProtoError::UnknownCommand("REQUEST".into()),
            ),
            (
                "CACHE-FLUSH\t1",
                ProtoError::UnknownCommand("CACHE-FLUSH".into()),
            ),
            ("user\t1\tx", ProtoError::UnknownCommand("user".into())),
            ("USER", ProtoError::Missing("id")),
            ("USER\t1", ProtoError::Missing("user")),
            ("USER\t1\t", ProtoError::Missing("user")),
            ("USER\tone\tx", ProtoError::invalid("id", "one")),
            ("PASS\t1\tx\x01", ProtoError::InvalidEscape),
            ("LIST", ProtoError::Missing("id")),
            ("LIST\t1\tuser=\x01?", ProtoError::InvalidEscape),
            ("VERSION\t1", ProtoError::Missing("minor version")),
        ];
        for (line, want) in cases {
            assert_eq!(parse_master_line(line).as_ref(), Err(want), "{line:?}");
        }
    }

    #[test]
    fn encoders_round_trip() {
        let parse = |s: String| parse_master_line(s.trim_end_matches('\n'));
        assert_eq!(encode_version(), "VERSION\t1\t0\n");
        assert_eq!(
            parse(encode_version()),
            Ok(MasterCommand::Version { major: 1, minor: 0 })
        );
        let line = encode_user(7, "a\nb@example.org", &[("service", "lmtp")]);
        assert_eq!(line, "USER\t7\ta\x01nb@example.org\tservice=lmtp\n");
        assert_eq!(
            parse(line),
            Ok(MasterCommand::User {
                id: 7,
                user: "a\nb@example.org".into(),
                params: params(&["service=lmtp"]),
            })
        );
        let owned = vec![("service".to_owned(), "smtp".to_owned())];
        assert_eq!(
            parse(encode_pass(8, "carol", &owned)),
            Ok(MasterCommand::Pass {
                id: 8,
                user: "carol".into(),
                params: params(&["service=smtp"]),
            })
        );
        let none: &[(&str, &str)] = &[];
        assert_eq!(encode_list(9, none), "LIST\t9\n");
        assert_eq!(
            parse(encode_list(9, &[("user", "*")])),
            Ok(MasterCommand::List {
                id: 9,
                params: params(&["user=*"]),
            })
        );
    }
}
