//! The client side of the RFC 5804 grammar (§4): a command is an atom followed by strings
//! (quoted, or literals `{n}`/`{n+}` followed by CRLF and n octets) and numbers, ending in
//! CRLF.
//!
//! [`frame`] cuts one command off the front of a buffer without copying the literal bodies
//! twice and without reading past what it needs; [`Command::from_tokens`] gives it meaning.
//! Every size is bounded: the line (literals not counted), each quoted string
//! ([`MAX_QUOTED`]), the literals of one command together, and the number of arguments.

/// Longest quoted string, decoded (RFC 5804 §4: "quoted strings are limited to 1024 octets").
pub const MAX_QUOTED: usize = 1024;
/// Most tokens in one command, the command name included (PUTSCRIPT has three).
pub const MAX_TOKENS: usize = 8;
/// Largest number (RFC 5804 §4: `number` is below 2^32).
pub const MAX_NUMBER: u64 = u32::MAX as u64;

/// Size limits for [`frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, literal bodies not counted, line end included.
    pub max_line: usize,
    /// Most literal octets one command may carry (all its literals together).
    pub max_literal: usize,
}

/// One token of a command line.
#[derive(Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare atom (the command name, or a number).
    Atom(String),
    /// A quoted string or a literal, decoded.
    Str(Vec<u8>),
}

impl std::fmt::Debug for Token {
    // Script bodies and SASL data stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Atom(a) => write!(f, "Atom({a:?})"),
            Self::Str(s) => write!(f, "Str({} octets)", s.len()),
        }
    }
}

/// The result of [`frame`].
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// More input is needed; do not try again before the buffer holds `need` octets.
    Incomplete {
        /// Total buffer length worth another try.
        need: usize,
    },
    /// One whole command: its tokens and the octets it took (line end included).
    Line {
        /// The tokens in order.
        tokens: Vec<Token>,
        /// Octets to remove from the front of the buffer.
        used: usize,
    },
    /// The line is malformed. `used` octets can be dropped; `line_ended` says whether they
    /// reach through the end of the line (otherwise skip up to the next LF).
    Bad {
        /// What is wrong.
        reason: &'static str,
        /// Octets to drop.
        used: usize,
        /// The dropped octets include the line end.
        line_ended: bool,
    },
    /// The line (without its literals) is longer than [`Limits::max_line`].
    LineTooLong,
    /// A literal announces more octets than [`Limits::max_literal`] allows. `used` octets
    /// (through the literal's header and its line end) can be dropped; the literal's
    /// `size` octets follow, then the rest of the line.
    LiteralTooLarge {
        /// The announced size.
        size: u64,
        /// Octets through the header's line end.
        used: usize,
    },
}

/// ATOM-CHAR: any CHAR (0x01-0x7f) but atom-specials (RFC 5804 §4 after RFC 3501).
fn is_atom_char(c: u8) -> bool {
    c > 0x20 && c < 0x7f && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// Where a token may end: before a space or the line end.
fn is_boundary(c: u8) -> bool {
    matches!(c, b' ' | b'\r' | b'\n')
}

/// Cuts the first command off `buf` (see [`Framed`]). Lines end in CRLF; a bare LF is
/// accepted too, a bare CR is not.
pub fn frame(buf: &[u8], limits: &Limits) -> Framed {
    let mut tokens = Vec::new();
    let mut i = 0usize;
    let mut literal_octets = 0usize;
    let bad = |reason, at: usize| match buf[at..].iter().position(|&b| b == b'\n') {
        Some(n) => Framed::Bad {
            reason,
            used: at + n + 1,
            line_ended: true,
        },
        None => Framed::Bad {
            reason,
            used: buf.len(),
            line_ended: false,
        },
    };
    loop {
        // The line so far, literal bodies not counted.
        if i - literal_octets > limits.max_line {
            return Framed::LineTooLong;
        }
        while i < buf.len() && buf[i] == b' ' {
            i += 1;
        }
        let Some(&c) = buf.get(i) else {
            return incomplete(buf.len(), literal_octets, limits);
        };
        match c {
            b'\n' => {
                return Framed::Line {
                    tokens,
                    used: i + 1,
                };
            }
            b'\r' => match buf.get(i + 1) {
                None => return incomplete(buf.len(), literal_octets, limits),
                Some(b'\n') => {
                    return Framed::Line {
                        tokens,
                        used: i + 2,
                    };
                }
                Some(_) => return bad("bare CR in the command line", i),
            },
            _ if tokens.len() >= MAX_TOKENS => return bad("too many arguments", i),
            b'"' => {
                let mut out = Vec::new();
                let mut j = i + 1;
                loop {
                    let Some(&q) = buf.get(j) else {
                        return incomplete(buf.len(), literal_octets, limits);
                    };
                    match q {
                        b'"' => break,
                        b'\\' => match buf.get(j + 1) {
                            None => return incomplete(buf.len(), literal_octets, limits),
                            Some(&e @ (b'"' | b'\\')) => {
                                out.push(e);
                                j += 2;
                            }
                            Some(_) => return bad("bad escape in a quoted string", j),
                        },
                        0 | b'\r' | b'\n' => {
                            return bad("NUL, CR or LF in a quoted string", j);
                        }
                        _ => {
                            out.push(q);
                            j += 1;
                        }
                    }
                    if out.len() > MAX_QUOTED {
                        return bad("quoted string too long (use a literal)", j);
                    }
                }
                i = j + 1;
                tokens.push(Token::Str(out));
            }
            b'{' => {
                let mut j = i + 1;
                let mut size: u64 = 0;
                let digits_start = j;
                while let Some(&d) = buf.get(j).filter(|d| d.is_ascii_digit()) {
                    size = size * 10 + u64::from(d - b'0');
                    if size > MAX_NUMBER {
                        return bad("literal size too large", j);
                    }
                    j += 1;
                }
                if buf.get(j).is_none() {
                    return incomplete(buf.len(), literal_octets, limits);
                }
                if j == digits_start {
                    return bad("literal without a size", j);
                }
                if buf.get(j) == Some(&b'+') {
                    j += 1;
                }
                match buf.get(j) {
                    None => return incomplete(buf.len(), literal_octets, limits),
                    Some(b'}') => j += 1,
                    Some(_) => return bad("malformed literal", j),
                }
                match (buf.get(j), buf.get(j + 1)) {
                    (None, _) | (Some(b'\r'), None) => {
                        return incomplete(buf.len(), literal_octets, limits);
                    }
                    (Some(b'\n'), _) => j += 1,
                    (Some(b'\r'), Some(b'\n')) => j += 2,
                    _ => return bad("a literal's size must end the line", j),
                }
                let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
                if literal_octets.saturating_add(size_usize) > limits.max_literal {
                    return Framed::LiteralTooLarge { size, used: j };
                }
                let end = j + size_usize;
                if buf.len() < end {
                    // The body and at least one more octet (a line end or a space).
                    return Framed::Incomplete { need: end + 1 };
                }
                tokens.push(Token::Str(buf[j..end].to_vec()));
                literal_octets += size_usize;
                i = end;
            }
            c if is_atom_char(c) => {
                let mut j = i;
                while buf.get(j).is_some_and(|&a| is_atom_char(a)) {
                    j += 1;
                }
                if j - i > limits.max_line {
                    return Framed::LineTooLong;
                }
                tokens.push(Token::Atom(
                    String::from_utf8_lossy(&buf[i..j]).into_owned(),
                ));
                i = j;
            }
            _ => return bad("unexpected character", i),
        }
        // A token is followed by a space or the line end.
        match buf.get(i) {
            None => return incomplete(buf.len(), literal_octets, limits),
            Some(&b) if is_boundary(b) => {}
            Some(_) => return bad("missing space between arguments", i),
        }
    }
}

fn incomplete(len: usize, literal_octets: usize, limits: &Limits) -> Framed {
    if len - literal_octets > limits.max_line {
        Framed::LineTooLong
    } else {
        Framed::Incomplete { need: len + 1 }
    }
}

/// A ManageSieve command (RFC 5804 §2), its arguments checked for type and count.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `CAPABILITY`
    Capability,
    /// `AUTHENTICATE mechanism [initial-response]` (the response still base64).
    Authenticate {
        /// The mechanism name as sent.
        mechanism: String,
        /// The initial response, if any (base64).
        initial: Option<Vec<u8>>,
    },
    /// `STARTTLS`
    StartTls,
    /// `LOGOUT`
    Logout,
    /// `LISTSCRIPTS`
    ListScripts,
    /// `GETSCRIPT name`
    GetScript(Vec<u8>),
    /// `PUTSCRIPT name script`
    PutScript {
        /// The script name (not checked yet).
        name: Vec<u8>,
        /// The script.
        script: Vec<u8>,
    },
    /// `CHECKSCRIPT script`
    CheckScript(Vec<u8>),
    /// `SETACTIVE name` (empty: no active script).
    SetActive(Vec<u8>),
    /// `DELETESCRIPT name`
    DeleteScript(Vec<u8>),
    /// `RENAMESCRIPT old new`
    RenameScript {
        /// The current name.
        from: Vec<u8>,
        /// The new name.
        to: Vec<u8>,
    },
    /// `HAVESPACE name size`
    HaveSpace {
        /// The script name.
        name: Vec<u8>,
        /// The size in octets.
        size: u64,
    },
    /// `NOOP [tag]`
    Noop(Option<Vec<u8>>),
    /// `UNAUTHENTICATE`
    Unauthenticate,
    /// `XCLIENT name=value …` (Dovecot's proxy extension: a trusted proxy names the real
    /// client before authenticating); the atoms as sent.
    XClient(Vec<String>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a framed line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The line is empty or does not start with an atom.
    NoCommand,
    /// Not a command we know.
    Unknown,
    /// A known command with the wrong arguments; the text is its syntax.
    Arguments(&'static str),
}

/// Every command's name, as [`Command::name`] gives it (RFC 5804 §2).
pub const COMMAND_NAMES: [&str; 15] = [
    "CAPABILITY",
    "AUTHENTICATE",
    "STARTTLS",
    "LOGOUT",
    "LISTSCRIPTS",
    "GETSCRIPT",
    "PUTSCRIPT",
    "CHECKSCRIPT",
    "SETACTIVE",
    "DELETESCRIPT",
    "RENAMESCRIPT",
    "HAVESPACE",
    "NOOP",
    "UNAUTHENTICATE",
    "XCLIENT",
];

impl Command {
    /// The command's name, upper case.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Capability => "CAPABILITY",
            Self::Authenticate { .. } => "AUTHENTICATE",
            Self::StartTls => "STARTTLS",
            Self::Logout => "LOGOUT",
            Self::ListScripts => "LISTSCRIPTS",
            Self::GetScript(_) => "GETSCRIPT",
            Self::PutScript { .. } => "PUTSCRIPT",
            Self::CheckScript(_) => "CHECKSCRIPT",
            Self::SetActive(_) => "SETACTIVE",
            Self::DeleteScript(_) => "DELETESCRIPT",
            Self::RenameScript { .. } => "RENAMESCRIPT",
            Self::HaveSpace { .. } => "HAVESPACE",
            Self::Noop(_) => "NOOP",
            Self::Unauthenticate => "UNAUTHENTICATE",
            Self::XClient(_) => "XCLIENT",
        }
    }

    /// Interprets the tokens of one line.
    pub fn from_tokens(tokens: Vec<Token>) -> Result<Self, CommandError> {
        let mut it = tokens.into_iter();
        let Some(Token::Atom(name)) = it.next() else {
            return Err(CommandError::NoCommand);
        };
        let args: Vec<Token> = it.collect();
        let name = name.to_ascii_uppercase();
        let strings = |n: usize, usage: &'static str| -> Result<Vec<Vec<u8>>, CommandError> {
            if args.len() != n {
                return Err(CommandError::Arguments(usage));
            }
            args.iter()
                .map(|t| match t {
                    Token::Str(s) => Ok(s.clone()),
                    Token::Atom(_) => Err(CommandError::Arguments(usage)),
                })
                .collect()
        };
        let take1 = |v: Vec<Vec<u8>>| v.into_iter().next().unwrap_or_default();
        let take2 = |v: Vec<Vec<u8>>| {
            let mut it = v.into_iter();
            (it.next().unwrap_or_default(), it.next().unwrap_or_default())
        };
        Ok(match name.as_str() {
            "CAPABILITY" => strings(0, "CAPABILITY").map(|_| Self::Capability)?,
            "STARTTLS" => strings(0, "STARTTLS").map(|_| Self::StartTls)?,
            "LOGOUT" => strings(0, "LOGOUT").map(|_| Self::Logout)?,
            "LISTSCRIPTS" => strings(0, "LISTSCRIPTS").map(|_| Self::ListScripts)?,
            "UNAUTHENTICATE" => strings(0, "UNAUTHENTICATE").map(|_| Self::Unauthenticate)?,
            "XCLIENT" => {
                const USAGE: &str = "XCLIENT <name>=<value> ...";
                let atoms = args
                    .iter()
                    .map(|t| match t {
                        Token::Atom(a) if a.contains('=') => Ok(a.clone()),
                        _ => Err(CommandError::Arguments(USAGE)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if atoms.is_empty() {
                    return Err(CommandError::Arguments(USAGE));
                }
                Self::XClient(atoms)
            }
            "GETSCRIPT" => Self::GetScript(take1(strings(1, "GETSCRIPT <name>")?)),
            "CHECKSCRIPT" => Self::CheckScript(take1(strings(1, "CHECKSCRIPT <script>")?)),
            "SETACTIVE" => Self::SetActive(take1(strings(1, "SETACTIVE <name>")?)),
            "DELETESCRIPT" => Self::DeleteScript(take1(strings(1, "DELETESCRIPT <name>")?)),
            "PUTSCRIPT" => {
                let (name, script) = take2(strings(2, "PUTSCRIPT <name> <script>")?);
                Self::PutScript { name, script }
            }
            "RENAMESCRIPT" => {
                let (from, to) = take2(strings(2, "RENAMESCRIPT <old> <new>")?);
                Self::RenameScript { from, to }
            }
            "NOOP" => match args.len() {
                0 => Self::Noop(None),
                _ => Self::Noop(Some(take1(strings(1, "NOOP [<tag>]")?))),
            },
            "AUTHENTICATE" => {
                const USAGE: &str = "AUTHENTICATE <mechanism> [<initial response>]";
                if args.is_empty() || args.len() > 2 {
                    return Err(CommandError::Arguments(USAGE));
                }
                let mut v = strings(args.len(), USAGE)?.into_iter();
                let mechanism = String::from_utf8(v.next().unwrap_or_default())
                    .map_err(|_| CommandError::Arguments(USAGE))?;
                Self::Authenticate {
                    mechanism,
                    initial: v.next(),
                }
            }
            "HAVESPACE" => {
                const USAGE: &str = "HAVESPACE <name> <size>";
                match &args[..] {
                    [Token::Str(name), Token::Atom(n)] => {
                        let size = parse_number(n).ok_or(CommandError::Arguments(USAGE))?;
                        Self::HaveSpace {
                            name: name.clone(),
                            size,
                        }
                    }
                    _ => return Err(CommandError::Arguments(USAGE)),
                }
            }
            _ => return Err(CommandError::Unknown),
        })
    }
}

/// `number = 1*DIGIT` below 2^32.
fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|&n| n <= MAX_NUMBER)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_line: 100,
        max_literal: 50,
    };

    fn line(s: &[u8]) -> (Vec<Token>, usize) {
        match frame(s, &L) {
            Framed::Line { tokens, used } => (tokens, used),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(s)),
        }
    }

    fn s(b: &str) -> Token {
        Token::Str(b.as_bytes().to_vec())
    }

    #[test]
    fn atoms_quoted_and_literals() {
        let (t, used) = line(b"PUTSCRIPT \"a \\\"b\\\\\" {3+}\r\nx\ny\r\nNOOP\r\n");
        assert_eq!(
            t,
            vec![Token::Atom("PUTSCRIPT".into()), s("a \"b\\"), s("x\ny")]
        );
        assert_eq!(used, 31);
        let (t, _) = line(b"havespace \"n\" 123\n");
        assert_eq!(
            Command::from_tokens(t).unwrap(),
            Command::HaveSpace {
                name: b"n".to_vec(),
                size: 123
            }
        );
        // A synchronizing literal is read the same way (no continuation in ManageSieve).
        let (t, _) = line(b"CHECKSCRIPT {2}\r\nab\r\n");
        assert_eq!(t[1], s("ab"));
        // Empty literal and empty quoted string.
        let (t, _) = line(b"SETACTIVE \"\"\r\n");
        assert_eq!(
            Command::from_tokens(t).unwrap(),
            Command::SetActive(Vec::new())
        );
        let (t, _) = line(b"SETACTIVE {0+}\r\n\r\n");
        assert_eq!(t[1], s(""));
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        for partial in [
            &b"NOOP"[..],
            b"NOOP \"ab",
            b"NOOP \"a\\",
            b"PUTSCRIPT \"a\" {1",
            b"PUTSCRIPT \"a\" {10+}",
            b"PUTSCRIPT \"a\" {10+}\r",
            b"NOOP\r",
        ] {
            assert!(
                matches!(frame(partial, &L), Framed::Incomplete { .. }),
                "{:?}",
                String::from_utf8_lossy(partial)
            );
        }
        // A literal's body: nothing is retried before it can all be there.
        assert_eq!(
            frame(b"PUTSCRIPT \"a\" {10+}\r\nabc", &L),
            Framed::Incomplete { need: 32 }
        );
    }

    #[test]
    fn malformed_lines() {
        for (input, ended) in [
            (&b"NOOP \"a\rb\"\r\nNOOP\r\n"[..], true),
            (b"NOOP \"a\\n\"\r\n", true),
            (b"NOOP (x)\r\n", true),
            (b"NOOP \"a\"\"b\"\r\n", true),
            (b"NOOP {x}\r\n", true),
            (b"NOOP {}\r\n", true),
            (b"NOOP {3} x\r\n", true),
            (b"NOOP {99999999999}\r\n", true),
            (b"NOOP\rX\r\n", true),
            (b"NOOP \x01", false),
        ] {
            match frame(input, &L) {
                Framed::Bad {
                    used, line_ended, ..
                } => {
                    assert_eq!(line_ended, ended, "{:?}", String::from_utf8_lossy(input));
                    if ended {
                        assert_eq!(input[used - 1], b'\n');
                    }
                }
                other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
            }
        }
        // The bad line ends at its own LF, not a later one.
        let Framed::Bad { used, .. } = frame(b"NOOP \"a\rb\"\r\nNOOP\r\n", &L) else {
            panic!()
        };
        assert_eq!(used, 12);
    }

    #[test]
    fn limits() {
        let long = [b'A'; 101];
        assert_eq!(frame(&long, &L), Framed::LineTooLong);
        let mut q = b"NOOP \"".to_vec();
        q.extend_from_slice(&[b'a'; MAX_QUOTED + 1]);
        let big = Limits {
            max_line: 10_000,
            max_literal: 10,
        };
        assert!(matches!(frame(&q, &big), Framed::Bad { .. }));
        assert_eq!(
            frame(b"PUTSCRIPT \"a\" {51+}\r\n", &L),
            Framed::LiteralTooLarge { size: 51, used: 21 }
        );
        // The literals of one command count together.
        assert!(matches!(
            frame(
                b"PUTSCRIPT {30+}\r\n012345678901234567890123456789 {30+}\r\n",
                &L
            ),
            Framed::LiteralTooLarge { size: 30, .. }
        ));
        // Literal bodies do not count against the line.
        let mut ok = b"CHECKSCRIPT {45+}\r\n".to_vec();
        ok.extend_from_slice(&[b'x'; 45]);
        ok.extend_from_slice(b"\r\n");
        let limits = Limits {
            max_line: 30,
            max_literal: 45,
        };
        assert!(matches!(frame(&ok, &limits), Framed::Line { .. }));
        let many = b"NOOP \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\"\r\n";
        assert!(matches!(frame(many, &L), Framed::Bad { .. }));
    }

    #[test]
    fn commands_and_their_arguments() {
        let cmd = |b: &[u8]| Command::from_tokens(line(b).0);
        assert_eq!(cmd(b"capability\r\n").unwrap(), Command::Capability);
        assert_eq!(
            cmd(b"Authenticate \"PLAIN\" \"AGEAYg==\"\r\n").unwrap(),
            Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(b"AGEAYg==".to_vec())
            }
        );
        assert_eq!(
            cmd(b"NOOP \"t\"\r\n").unwrap(),
            Command::Noop(Some(b"t".to_vec()))
        );
        assert_eq!(cmd(b"FOO\r\n"), Err(CommandError::Unknown));
        assert_eq!(cmd(b"\r\n"), Err(CommandError::NoCommand));
        assert_eq!(cmd(b"\"x\"\r\n"), Err(CommandError::NoCommand));
        assert!(matches!(
            cmd(b"GETSCRIPT\r\n"),
            Err(CommandError::Arguments(_))
        ));
        assert!(matches!(
            cmd(b"GETSCRIPT name\r\n"),
            Err(CommandError::Arguments(_))
        ));
        assert!(matches!(
            cmd(b"HAVESPACE \"a\" 4294967296\r\n"),
            Err(CommandError::Arguments(_))
        ));
        assert!(matches!(
            cmd(b"HAVESPACE \"a\" \"1\"\r\n"),
            Err(CommandError::Arguments(_))
        ));
        assert!(matches!(
            cmd(b"LOGOUT now\r\n"),
            Err(CommandError::Arguments(_))
        ));
    }
}
