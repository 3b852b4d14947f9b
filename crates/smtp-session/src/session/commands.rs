//! Command handlers: sequence checks first, then syntax, then an action or a reply.

use smtp_proto::request::receiver::DummyDataReceiver;

use super::{ChunkRead, Helo, Pending, Read, Session, State};
use crate::action::Action;
use crate::command::{self, Command};
use crate::config::Flavor;
use crate::data::{Chunks, DotReader};
use crate::params::{self, BodyType, ParamError};
use crate::reply::Reply;

impl Session {
    pub(super) fn command_line(&mut self, line: &[u8], out: &mut Vec<Action>) {
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(reply) => return self.fail(reply, out),
        };
        let in_transaction = matches!(self.state, State::Mail(..) | State::Chunking(..));
        if !in_transaction && !matches!(command, Command::Mail(_) | Command::Quit) {
            self.idle_commands += 1;
            if self.idle_commands > self.config.max_commands_before_mail {
                return self.close(Reply::new(421, (4, 7, 0), "Error: too many commands"), out);
            }
        }
        match command {
            Command::Helo(name) => self.helo(name, false, Flavor::Smtp, out),
            Command::Ehlo(name) => self.helo(name, true, Flavor::Smtp, out),
            Command::Lhlo(name) => self.helo(name, true, Flavor::Lmtp, out),
            Command::Mail(args) => self.mail(&args, out),
            Command::Rcpt(args) => self.rcpt(&args, out),
            Command::Data => self.data(out),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                if let Some(helo) = self.helo_name() {
                    self.state = State::Greeted(helo);
                }
                self.emit(Reply::ok(), out);
            }
            Command::Noop => self.emit(Reply::ok(), out),
            Command::Quit => {
                self.emit(Reply::new(221, (2, 0, 0), "Bye"), out);
                out.push(Action::Close);
                self.state = State::Closed;
            }
            Command::Help => self.emit(Reply::new(214, (2, 0, 0), self.help_text()), out),
            Command::Vrfy if self.config.extensions.vrfy => self.emit(
                Reply::new(252, (2, 5, 2), "Cannot VRFY user, but will accept message"),
                out,
            ),
            Command::Vrfy => self.fail(not_implemented("VRFY command is disabled"), out),
            Command::Expn => self.fail(not_implemented("EXPN command is disabled"), out),
            Command::NotImplemented => self.fail(not_implemented("command not implemented"), out),
            Command::StartTls => self.starttls(out),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial, out),
        }
    }

    fn helo(&mut self, name: String, esmtp: bool, flavor: Flavor, out: &mut Vec<Action>) {
        match (self.config.flavor, flavor) {
            (Flavor::Lmtp, Flavor::Smtp) => {
                return self.fail(Reply::new(500, (5, 5, 1), "Error: use LHLO in LMTP"), out);
            }
            (Flavor::Smtp, Flavor::Lmtp) => return self.fail(command::unknown(), out),
            _ => {}
        }
        self.state = State::Greeted(Helo { name, esmtp });
        let host = self.config.hostname.clone();
        if !esmtp {
            return self.emit(Reply::plain(250, host), out);
        }
        let mut lines = vec![host];
        lines.extend(self.capabilities());
        self.emit(Reply::multiline(250, None, lines), out);
    }

    fn capabilities(&self) -> Vec<String> {
        let (ext, tls) = (&self.config.extensions, self.peer.tls);
        let mut caps = Vec::new();
        let mut add = |on: bool, cap: &str| {
            if on {
                caps.push(cap.to_owned());
            }
        };
        add(ext.pipelining, "PIPELINING");
        add(ext.size, &format!("SIZE {}", self.config.max_message_size));
        add(ext.vrfy, "VRFY");
        add(ext.starttls && !tls, "STARTTLS");
        let auth = !ext.auth.is_empty() && (tls || !ext.auth_requires_tls);
        add(auth, &format!("AUTH {}", ext.auth.join(" ")));
        add(self.config.enhanced_codes(), "ENHANCEDSTATUSCODES");
        add(ext.eightbitmime, "8BITMIME");
        add(self.config.binarymime(), "BINARYMIME");
        add(ext.chunking, "CHUNKING");
        add(ext.dsn, "DSN");
        add(ext.smtputf8, "SMTPUTF8");
        caps
    }

    fn help_text(&self) -> String {
        let ext = &self.config.extensions;
        let hello = match self.config.flavor {
            Flavor::Smtp => "EHLO HELO",
            Flavor::Lmtp => "LHLO",
        };
        let mut commands = vec![hello, "MAIL RCPT DATA RSET NOOP QUIT HELP"];
        for (on, command) in [
            (ext.chunking, "BDAT"),
            (ext.vrfy, "VRFY"),
            (ext.starttls && !self.peer.tls, "STARTTLS"),
            (!ext.auth.is_empty(), "AUTH"),
        ] {
            if on {
                commands.push(command);
            }
        }
        format!("Commands: {}", commands.join(" "))
    }

    fn mail(&mut self, args: &str, out: &mut Vec<Action>) {
        match &self.state {
            State::Connected => return self.fail(self.need_hello(), out),
            State::Mail(..) | State::Chunking(..) => {
                return self.fail(bad_sequence("nested MAIL command"), out);
            }
            _ => {}
        }
        let (address, params) = match params::parse_mail(args, &self.config) {
            Ok(parsed) => parsed,
            Err(ParamError::Address(_)) => {
                return self.fail(Reply::new(501, (5, 1, 7), "Bad sender address syntax"), out);
            }
            Err(e) => return self.fail(param_reply(e, "MAIL FROM:<address>"), out),
        };
        if params
            .size
            .is_some_and(|s| s > self.config.max_message_size)
        {
            return self.emit(Reply::message_too_big(), out);
        }
        if address.as_ref().is_some_and(|a| !a.is_ascii()) && !params.smtputf8 {
            return self.fail(needs_smtputf8(), out);
        }
        out.push(Action::CheckSender {
            address: address.clone(),
            params: params.clone(),
        });
        self.pending = Some(Pending::Sender(address, params));
    }

    fn rcpt(&mut self, args: &str, out: &mut Vec<Action>) {
        let (smtputf8, count) = match &self.state {
            State::Mail(_, tx) => (tx.params.smtputf8, tx.rcpts.len()),
            State::Chunking(..) => return self.fail(bad_sequence("RCPT after BDAT"), out),
            _ => return self.fail(bad_sequence("need MAIL command"), out),
        };
        if count >= self.config.max_recipients {
            return self.emit(
                Reply::new(452, (4, 5, 3), "Error: too many recipients"),
                out,
            );
        }
        let (address, params) = match params::parse_rcpt(args, &self.config) {
            Ok(parsed) => parsed,
            Err(ParamError::Address(_)) => {
                return self.fail(
                    Reply::new(501, (5, 1, 3), "Bad recipient address syntax"),
                    out,
                );
            }
            Err(e) => return self.fail(param_reply(e, "RCPT TO:<address>"), out),
        };
        if !address.is_ascii() && !smtputf8 {
            return self.fail(needs_smtputf8(), out);
        }
        out.push(Action::CheckRecipient {
            address: address.clone(),
            params: params.clone(),
        });
        self.pending = Some(Pending::Recipient(address, params));
    }

    fn data(&mut self, out: &mut Vec<Action>) {
        let reply = match std::mem::replace(&mut self.state, State::Closed) {
            State::Mail(helo, tx) if tx.rcpts.is_empty() => {
                self.state = State::Mail(helo, tx);
                match self.config.flavor {
                    Flavor::Smtp => Reply::new(554, (5, 5, 1), "Error: no valid recipients"),
                    Flavor::Lmtp => bad_sequence("no valid recipients"),
                }
            }
            State::Mail(helo, tx) if tx.params.body == Some(BodyType::BinaryMime) => {
                self.state = State::Mail(helo, tx);
                bad_sequence("BINARYMIME requires BDAT")
            }
            State::Mail(helo, tx) => {
                let c = &self.config;
                let reader = DotReader::new(
                    c.max_message_size,
                    c.max_body_line_length,
                    c.reject_bare_newline,
                );
                self.state = State::Data(helo, tx, Box::new(reader));
                return self.emit(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"), out);
            }
            state @ State::Chunking(..) => {
                self.state = state;
                bad_sequence("DATA after BDAT")
            }
            state => {
                self.state = state;
                bad_sequence("need MAIL command")
            }
        };
        self.fail(reply, out);
    }

    fn bdat(&mut self, size: usize, last: bool) {
        let refusal = match &self.state {
            _ if !self.config.extensions.chunking => {
                Some(not_implemented("command not implemented"))
            }
            State::Mail(_, tx) if tx.rcpts.is_empty() => Some(bad_sequence("no valid recipients")),
            State::Mail(..) | State::Chunking(..) => None,
            _ => Some(bad_sequence("need MAIL command")),
        };
        if let Some(reply) = refusal {
            // Read the chunk anyway, to stay in step.
            self.read = Read::Skip(DummyDataReceiver::new_bdat(size), reply);
            return;
        }
        if matches!(self.state, State::Mail(..))
            && let State::Mail(helo, tx) = std::mem::replace(&mut self.state, State::Closed)
        {
            let binary = tx.params.body == Some(BodyType::BinaryMime);
            let chunks = Chunks::new(self.config.max_message_size, !binary);
            self.state = State::Chunking(helo, tx, Box::new(chunks), None);
        }
        if let State::Chunking(_, _, chunks, reading) = &mut self.state {
            chunks.start(size);
            *reading = Some(ChunkRead { size, last });
        }
    }

    fn starttls(&mut self, out: &mut Vec<Action>) {
        if !self.config.extensions.starttls {
            return self.fail(not_implemented("command not implemented"), out);
        }
        if self.peer.tls {
            return self.fail(bad_sequence("TLS already active"), out);
        }
        if matches!(self.state, State::Mail(..) | State::Chunking(..)) {
            return self.fail(bad_sequence("MAIL transaction in progress"), out);
        }
        self.emit(Reply::new(220, (2, 0, 0), "Ready to start TLS"), out);
        out.push(Action::StartTls);
        self.pending = Some(Pending::Tls);
    }

    fn auth(&mut self, mechanism: String, initial: Option<String>, out: &mut Vec<Action>) {
        let ext = &self.config.extensions;
        let refusal = if ext.auth.is_empty() {
            Some(not_implemented("authentication not enabled"))
        } else if matches!(self.state, State::Connected) {
            Some(self.need_hello())
        } else if self.authenticated.is_some() {
            Some(bad_sequence("already authenticated"))
        } else if matches!(self.state, State::Mail(..) | State::Chunking(..)) {
            Some(bad_sequence("MAIL transaction in progress"))
        } else if ext.auth_requires_tls && !self.peer.tls {
            Some(Reply::new(
                538,
                (5, 7, 11),
                "Encryption required for requested authentication mechanism",
            ))
        } else if !ext.auth.iter().any(|m| m.eq_ignore_ascii_case(&mechanism)) {
            Some(Reply::new(
                504,
                (5, 5, 4),
                "Unrecognized authentication type",
            ))
        } else if initial.as_deref() == Some("*") {
            Some(auth_cancelled())
        } else {
            None
        };
        if let Some(reply) = refusal {
            return self.fail(reply, out);
        }
        let initial_response = initial.map(|i| if i == "=" { String::new() } else { i });
        out.push(Action::Auth {
            mechanism,
            initial_response,
        });
        self.pending = Some(Pending::Auth);
    }

    /// The client's line after a `334` challenge.
    pub(super) fn sasl_line(&mut self, line: &[u8], out: &mut Vec<Action>) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line)
            .ok()
            .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()));
        match text {
            Some("*") => {
                out.push(Action::AuthCancel);
                self.fail(auth_cancelled(), out);
            }
            Some(text) => {
                out.push(Action::AuthResponse(text.to_owned()));
                self.pending = Some(Pending::Auth);
            }
            None => {
                out.push(Action::AuthCancel);
                self.fail(Reply::new(501, (5, 5, 2), "Invalid SASL response"), out);
            }
        }
    }

    pub(super) fn helo_name(&self) -> Option<Helo> {
        match &self.state {
            State::Greeted(helo)
            | State::Mail(helo, _)
            | State::Data(helo, ..)
            | State::Chunking(helo, ..) => Some(helo.clone()),
            State::Connected | State::Closed => None,
        }
    }

    fn need_hello(&self) -> Reply {
        match self.config.flavor {
            Flavor::Smtp => bad_sequence("send HELO/EHLO first"),
            Flavor::Lmtp => bad_sequence("send LHLO first"),
        }
    }
}

fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, (5, 5, 1), format!("Error: {text}"))
}

fn not_implemented(text: &str) -> Reply {
    Reply::new(502, (5, 5, 1), format!("Error: {text}"))
}

fn auth_cancelled() -> Reply {
    Reply::new(501, (5, 0, 0), "Authentication cancelled")
}

fn needs_smtputf8() -> Reply {
    Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8")
}

fn param_reply(error: ParamError, syntax: &str) -> Reply {
    match error {
        ParamError::Unsupported(key) => {
            Reply::new(555, (5, 5, 4), format!("Unsupported parameter {key}"))
        }
        ParamError::Invalid(key) => Reply::new(501, (5, 5, 4), format!("Bad {key} parameter")),
        ParamError::Duplicate(key) => {
            Reply::new(501, (5, 5, 4), format!("Duplicate {key} parameter"))
        }
        _ => command::syntax(&format!("Syntax: {syntax} [parameters]")),
    }
}
