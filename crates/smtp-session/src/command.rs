//! One command line in, one [`Command`] out (or the reply that refuses it).
//!
//! The session frames lines itself (smtp-proto's `RequestReceiver` caps lines at a fixed 4096
//! octets and, after an over-long line, parses the line's tail as a new command); a complete
//! line is then handed to `smtp_proto::Request::parse` for the simple commands. `MAIL`, `RCPT`
//! and `AUTH` keep their argument text and are parsed by [`crate::params`] and the session:
//! the session checks the command sequence before the syntax, as Postfix does.

use smtp_proto::Request;

use crate::reply::Reply;

/// A recognised command. Arguments of `MAIL`/`RCPT` are parsed later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Helo(String),
    Ehlo(String),
    Lhlo(String),
    Mail(String),
    Rcpt(String),
    Data,
    Bdat {
        size: usize,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy,
    Expn,
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// `ETRN`, `ATRN`, `BURL`: known, not offered.
    NotImplemented,
}

/// Parses one line, terminator included (`\n` or `\r\n`).
pub(crate) fn parse(line: &[u8]) -> Result<Command, Reply> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&0) {
        return Err(Reply::new(
            500,
            (5, 5, 2),
            "Error: NUL character in command",
        ));
    }
    let text = std::str::from_utf8(line)
        .ok()
        .filter(|t| !t.chars().any(|c| c.is_control() && c != '\t'))
        .ok_or_else(|| Reply::new(500, (5, 5, 2), "Error: invalid characters in command"))?;
    let (verb, args) = text.split_once(' ').unwrap_or((text, ""));
    let verb = verb.to_ascii_uppercase();
    let no_args = |command| {
        if args.trim().is_empty() {
            Ok(command)
        } else {
            Err(syntax(&format!("Syntax: {verb}")))
        }
    };
    match verb.as_str() {
        "MAIL" => Ok(Command::Mail(args.to_owned())),
        "RCPT" => Ok(Command::Rcpt(args.to_owned())),
        "AUTH" => parse_auth(args),
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        "STARTTLS" => no_args(Command::StartTls),
        "BDAT" => parse_bdat(args),
        "HELO" | "EHLO" | "LHLO" | "NOOP" | "HELP" | "VRFY" | "EXPN" | "ETRN" | "ATRN" | "BURL" => {
            with_smtp_proto(text)
        }
        "" => Err(Reply::new(500, (5, 5, 2), "Error: bad syntax")),
        _ => Err(unknown()),
    }
}

/// `500 5.5.2 Error: command not recognized`.
pub(crate) fn unknown() -> Reply {
    Reply::new(500, (5, 5, 2), "Error: command not recognized")
}

/// `501 5.5.4 {text}`.
pub(crate) fn syntax(text: &str) -> Reply {
    Reply::new(501, (5, 5, 4), text)
}

fn with_smtp_proto(text: &str) -> Result<Command, Reply> {
    let line = format!("{text}\r\n");
    let request = Request::parse(&mut line.as_bytes().iter()).map_err(|e| match e {
        smtp_proto::Error::SyntaxError { syntax: s } => syntax(&format!("Syntax: {s}")),
        smtp_proto::Error::UnknownCommand => unknown(),
        _ => syntax("Error: syntax error"),
    })?;
    Ok(match request {
        Request::Helo { host } => Command::Helo(host.into_owned()),
        Request::Ehlo { host } => Command::Ehlo(host.into_owned()),
        Request::Lhlo { host } => Command::Lhlo(host.into_owned()),
        Request::Noop { .. } => Command::Noop,
        Request::Help { .. } => Command::Help,
        Request::Vrfy { .. } => Command::Vrfy,
        Request::Expn { .. } => Command::Expn,
        Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
            Command::NotImplemented
        }
        // The verb was checked above; anything else is a parser surprise.
        _ => return Err(unknown()),
    })
}

/// `BDAT chunk-size [LAST]`, parsed here: smtp-proto 0.2.5 reads an overflowing size as a
/// small number (`BDAT 99999999999999999999999999` is 999999), which would lose the step.
fn parse_bdat(args: &str) -> Result<Command, Reply> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok());
    let last = match words.next() {
        None => Some(false),
        Some(w) if w.eq_ignore_ascii_case("LAST") => Some(true),
        Some(_) => None,
    };
    match (size, last, words.next()) {
        (Some(size), Some(last), None) => Ok(Command::Bdat { size, last }),
        _ => Err(syntax("Syntax: BDAT chunk-size [LAST]")),
    }
}

fn parse_auth(args: &str) -> Result<Command, Reply> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().filter(|m| {
        (1..=20).contains(&m.len())
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let (Some(mechanism), initial, None) = (mechanism, words.next(), words.next()) else {
        return Err(syntax("Syntax: AUTH mechanism [initial-response]"));
    };
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial: initial.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> u16 {
        parse(line.as_bytes()).unwrap_err().code()
    }

    #[test]
    fn commands() {
        for (line, command) in [
            (
                "EHLO client.example\r\n",
                Command::Ehlo("client.example".into()),
            ),
            ("helo [192.0.2.1]\n", Command::Helo("[192.0.2.1]".into())),
            ("LHLO x\r\n", Command::Lhlo("x".into())),
            (
                "mail FROM:<a@b> SIZE=1\r\n",
                Command::Mail("FROM:<a@b> SIZE=1".into()),
            ),
            ("RCPT TO:<a@b>\r\n", Command::Rcpt("TO:<a@b>".into())),
            ("DATA\r\n", Command::Data),
            (
                "BDAT 10 LAST\r\n",
                Command::Bdat {
                    size: 10,
                    last: true,
                },
            ),
            (
                "bdat 0\r\n",
                Command::Bdat {
                    size: 0,
                    last: false,
                },
            ),
            ("RSET\r\n", Command::Rset),
            ("NOOP anything\r\n", Command::Noop),
            ("QUIT\r\n", Command::Quit),
            ("HELP\r\n", Command::Help),
            ("VRFY someone\r\n", Command::Vrfy),
            ("STARTTLS\r\n", Command::StartTls),
            ("ETRN example.com\r\n", Command::NotImplemented),
            (
                "AUTH plain dGVzdA==\r\n",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some("dGVzdA==".into()),
                },
            ),
        ] {
            assert_eq!(parse(line.as_bytes()), Ok(command), "{line:?}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(code("FOO\r\n"), 500);
        assert_eq!(code("\r\n"), 500);
        assert_eq!(code("STARTTLSX\r\n"), 500);
        assert_eq!(code("NO\0OP\r\n"), 500);
        assert_eq!(code("NOOP\rx\r\n"), 500);
        assert_eq!(code("EHLO\r\n"), 501);
        assert_eq!(code("DATA x\r\n"), 501);
        assert_eq!(code("STARTTLS now\r\n"), 501);
        assert_eq!(code("BDAT x\r\n"), 501);
        assert_eq!(code("BDAT 1 FIRST\r\n"), 501);
        assert_eq!(code("BDAT 99999999999999999999999999\r\n"), 501);
        assert_eq!(code("AUTH\r\n"), 501);
        assert_eq!(code("AUTH PLAIN a b\r\n"), 501);
        assert_eq!(code("VRFY\r\n"), 501);
        assert!(parse(b"\xff\xfe\r\n").is_err());
    }
}
