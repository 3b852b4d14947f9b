//! Lines the userdb server sends: write them (server side) and parse them (client side).

use crate::params::{Params, write_flag, write_pair, write_pairs};
use crate::{ProtoError, escape, parse_u32, unescape};

use super::{MAJOR_VERSION, MINOR_VERSION};

/// What the server sends as soon as a client connects: `VERSION\t1\t0\nSPID\t<pid>\n`.
pub fn greeting(spid: u32) -> String {
    format!("VERSION\t{MAJOR_VERSION}\t{MINOR_VERSION}\nSPID\t{spid}\n")
}

/// `USER\t<id>\t<user>\tkey=value…\n`: the user exists; `fields` are home, uid, gid, mail, …
pub fn user_found<K: AsRef<str>, V: AsRef<str>>(id: u32, user: &str, fields: &[(K, V)]) -> String {
    let mut out = format!("USER\t{id}\t{}", escape(user));
    write_pairs(&mut out, fields);
    out.push('\n');
    out
}

/// `PASS\t<id>\tuser=<user>\tkey=value…\n`: the passdb knows the user.
pub fn pass_found<K: AsRef<str>, V: AsRef<str>>(id: u32, user: &str, fields: &[(K, V)]) -> String {
    let mut out = format!("PASS\t{id}");
    write_pair(&mut out, "user", user);
    write_pairs(&mut out, fields);
    out.push('\n');
    out
}

/// `NOTFOUND\t<id>\n`: no such user.
pub fn not_found(id: u32) -> String {
    format!("NOTFOUND\t{id}\n")
}

/// `FAIL\t<id>\treason=…\n`: the lookup failed on our side (temporary). The reason may be
/// shown to the end client (LMTP RCPT reply), so keep internals out of it.
pub fn fail(id: u32, reason: &str) -> String {
    let mut out = format!("FAIL\t{id}");
    write_pair(&mut out, "reason", reason);
    out.push('\n');
    out
}

/// `LIST\t<id>\t<user>\n`: one user of a `LIST` answer.
pub fn list_entry(id: u32, user: &str) -> String {
    format!("LIST\t{id}\t{}\n", escape(user))
}

/// `DONE\t<id>\n`, or `DONE\t<id>\tfail\n` when the listing broke off.
pub fn list_done(id: u32, failed: bool) -> String {
    let mut out = format!("DONE\t{id}");
    if failed {
        write_flag(&mut out, "fail");
    }
    out.push('\n');
    out
}

/// A parsed server line on the userdb socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserdbReply {
    /// `VERSION` from the greeting.
    Version {
        /// Major version; must be 1.
        major: u32,
        /// Minor version.
        minor: u32,
    },
    /// `SPID` from the greeting.
    Spid(u32),
    /// `USER`: found in the userdb.
    User {
        /// Request id.
        id: u32,
        /// The user name, possibly rewritten by the server.
        user: String,
        /// Fields in order.
        fields: Params,
    },
    /// `PASS`: found in the passdb; `user=` is among the fields.
    Pass {
        /// Request id.
        id: u32,
        /// Fields in order.
        fields: Params,
    },
    /// `NOTFOUND`.
    NotFound {
        /// Request id.
        id: u32,
    },
    /// `FAIL`: the server could not look.
    Fail {
        /// Request id.
        id: u32,
        /// `reason=`, if sent.
        reason: Option<String>,
    },
    /// `LIST`: one user.
    List {
        /// Request id.
        id: u32,
        /// The user.
        user: String,
    },
    /// `DONE`: end of a `LIST` answer.
    Done {
        /// Request id.
        id: u32,
        /// Whether the listing broke off.
        failed: bool,
    },
}

impl UserdbReply {
    /// The request id, if the line answers a request.
    pub fn id(&self) -> Option<u32> {
        match self {
            Self::Version { .. } | Self::Spid(_) => None,
            Self::User { id, .. }
            | Self::Pass { id, .. }
            | Self::NotFound { id }
            | Self::Fail { id, .. }
            | Self::List { id, .. }
            | Self::Done { id, .. } => Some(*id),
        }
    }
}

/// Parses one server line (without its LF).
pub fn parse_userdb_reply(line: &str) -> Result<UserdbReply, ProtoError> {
    let mut fields = line.split('\t');
    let command = fields.next().unwrap_or_default();
    let mut arg = |name| fields.next().ok_or(ProtoError::Missing(name));
    match command {
        "" => Err(ProtoError::Empty),
        "VERSION" => Ok(UserdbReply::Version {
            major: parse_u32("major version", arg("major version")?)?,
            minor: parse_u32("minor version", arg("minor version")?)?,
        }),
        "SPID" => Ok(UserdbReply::Spid(parse_u32("pid", arg("pid")?)?)),
        "USER" => {
            let id = parse_u32("id", arg("id")?)?;
            let user = unescape(arg("user")?)?;
            Ok(UserdbReply::User {
                id,
                user,
                fields: Params::parse(fields)?,
            })
        }
        "PASS" => {
            let id = parse_u32("id", arg("id")?)?;
            Ok(UserdbReply::Pass {
                id,
                fields: Params::parse(fields)?,
            })
        }
        "NOTFOUND" => Ok(UserdbReply::NotFound {
            id: parse_u32("id", arg("id")?)?,
        }),
        "FAIL" => {
            let id = parse_u32("id", arg("id")?)?;
            let params = Params::parse(fields)?;
            Ok(UserdbReply::Fail {
                id,
                reason: params.get("reason").map(str::to_owned),
            })
        }
        "LIST" => {
            let id = parse_u32("id", arg("id")?)?;
            Ok(UserdbReply::List {
                id,
                user: unescape(arg("user")?)?,
            })
        }
        "DONE" => {
            let id = parse_u32("id", arg("id")?)?;
            Ok(UserdbReply::Done {
                id,
                failed: Params::parse(fields)?.has("fail"),
            })
        }
        other => Err(ProtoError::unknown(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<UserdbReply> {
        text.lines()
            .map(|l| parse_userdb_reply(l).unwrap())
            .collect()
    }

    fn fields(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::new();
        for (k, v) in pairs {
            p.push(*k, *v);
        }
        p
    }

    #[test]
    fn encoders_exact_bytes() {
        let home = [
            ("home".to_owned(), "/var/mail/a".to_owned()),
            ("uid".into(), "5000".into()),
        ];
        let cases: &[(String, &str)] = &[
            (greeting(321), "VERSION\t1\t0\nSPID\t321\n"),
            (
                user_found(1, "a@x", &home),
                "USER\t1\ta@x\thome=/var/mail/a\tuid=5000\n",
            ),
            (
                pass_found(2, "a@x", &[("nopassword", "y")]),
                "PASS\t2\tuser=a@x\tnopassword=y\n",
            ),
            (not_found(3), "NOTFOUND\t3\n"),
            (fail(4, "db\tdown"), "FAIL\t4\treason=db\x01tdown\n"),
            (list_entry(5, "a@x"), "LIST\t5\ta@x\n"),
            (list_done(5, false), "DONE\t5\n"),
            (list_done(6, true), "DONE\t6\tfail\n"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn round_trips() {
        let home = [("home", "/srv/mail/x\ty"), ("mail", "maildir:~/Maildir")];
        let cases: Vec<(String, Vec<UserdbReply>)> = vec![
            (
                greeting(9),
                vec![
                    UserdbReply::Version { major: 1, minor: 0 },
                    UserdbReply::Spid(9),
                ],
            ),
            (
                user_found(1, "a\tb", &home),
                vec![UserdbReply::User {
                    id: 1,
                    user: "a\tb".into(),
                    fields: fields(&home),
                }],
            ),
            (
                pass_found(2, "c", &[("k", "v")]),
                vec![UserdbReply::Pass {
                    id: 2,
                    fields: fields(&[("user", "c"), ("k", "v")]),
                }],
            ),
            (not_found(3), vec![UserdbReply::NotFound { id: 3 }]),
            (
                fail(4, "oops"),
                vec![UserdbReply::Fail {
                    id: 4,
                    reason: Some("oops".into()),
                }],
            ),
            (
                list_entry(5, "u1") + &list_entry(5, "u2") + &list_done(5, false),
                vec![
                    UserdbReply::List {
                        id: 5,
                        user: "u1".into(),
                    },
                    UserdbReply::List {
                        id: 5,
                        user: "u2".into(),
                    },
                    UserdbReply::Done {
                        id: 5,
                        failed: false,
                    },
                ],
            ),
            (
                list_done(6, true),
                vec![UserdbReply::Done {
                    id: 6,
                    failed: true,
                }],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(&text), want, "{text:?}");
        }
    }

    #[test]
    fn dovecot_lines() {
        assert_eq!(
            parse("FAIL\t7"),
            vec![UserdbReply::Fail {
                id: 7,
                reason: None
            }]
        );
        let user = parse("USER\t1\talice\thome=/h\tanonymous\tuid=1");
        let [UserdbReply::User { fields, .. }] = &user[..] else {
            panic!("one USER")
        };
        assert_eq!(fields.get("anonymous"), Some(""));
        assert_eq!(
            fields.clone().into_pairs()[2],
            ("uid".to_owned(), "1".to_owned())
        );
        assert_eq!(user[0].id(), Some(1));
        assert_eq!(UserdbReply::Spid(1).id(), None);
    }

    #[test]
    fn errors() {
        let cases: &[(&str, ProtoError)] = &[
            ("", ProtoError::Empty),
            ("OK\t1", ProtoError::UnknownCommand("OK".into())),
            ("USER\t1", ProtoError::Missing("user")),
            ("USER\tx\tu", ProtoError::invalid("id", "x")),
            ("NOTFOUND", ProtoError::Missing("id")),
            ("LIST\t1", ProtoError::Missing("user")),
            ("DONE\t1\t\x01", ProtoError::InvalidEscape),
            ("SPID\t-", ProtoError::invalid("pid", "-")),
            ("PASS\t1\tuser=\x01", ProtoError::InvalidEscape),
        ];
        for (line, want) in cases {
            assert_eq!(parse_userdb_reply(line).as_ref(), Err(want), "{line:?}");
        }
    }
}
