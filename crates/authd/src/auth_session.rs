//! One connection on the `auth` socket, minus the socket: Dovecot auth protocol lines in,
//! reply lines and password checks out.
//!
//! The driver ([`crate::auth`]) runs the [`Verify`] jobs (lockout check, password
//! verification, failure accounting) and writes their `OK`/`FAIL` itself, so one slow
//! failure (a penalty delay) never holds up other requests on the same connection.

use std::collections::HashMap;
use std::net::IpAddr;

use postern_auth_proto::dovecot::{self, AuthRequest, ClientCommand, parse_client_line};
use postern_auth_proto::sasl::{LoginMechanism, LoginStep, Plain};
use postern_auth_proto::{ProtoError, Secret};

/// Requests one connection may have open (waiting for `CONT` or being verified).
pub(crate) const MAX_PENDING: usize = 64;
/// Unparseable lines tolerated before the connection is closed.
const MAX_BAD_LINES: u32 = 10;

/// A password check the driver must run.
#[derive(Debug)]
pub(crate) struct Verify {
    pub(crate) id: u32,
    pub(crate) login: String,
    pub(crate) password: Secret<String>,
    pub(crate) rip: Option<IpAddr>,
    pub(crate) service: String,
    pub(crate) secured: bool,
    pub(crate) mechanism: &'static str,
}

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Out {
    /// Write this line (with its `\n`).
    Line(String),
    /// Run this check and answer its request.
    Verify(Verify),
    /// Log this protocol error (the reply, if any, is in a `Line`).
    Warn(String),
    /// Close the connection after writing what came before.
    Close(String),
}

#[derive(Debug)]
enum Mech {
    /// PLAIN sent without an initial response: waiting for it.
    Plain,
    /// LOGIN in progress.
    Login(LoginMechanism),
}

#[derive(Debug)]
struct Pending {
    mech: Mech,
    rip: Option<IpAddr>,
    service: String,
    secured: bool,
}

/// The state of one `auth` connection.
#[derive(Debug)]
pub(crate) struct AuthSession {
    allow_plaintext_insecure: bool,
    version_seen: bool,
    pending: HashMap<u32, Pending>,
    verifying: usize,
    bad_lines: u32,
}

impl AuthSession {
    pub(crate) fn new(allow_plaintext_insecure: bool) -> Self {
        Self {
            allow_plaintext_insecure,
            version_seen: false,
            pending: HashMap::new(),
            verifying: 0,
            bad_lines: 0,
        }
    }

    /// The mechanisms offered in the handshake.
    pub(crate) fn mechanisms() -> Vec<dovecot::Mech> {
        vec![dovecot::Mech::plain(), dovecot::Mech::login()]
    }

    /// The driver finished a [`Verify`].
    pub(crate) fn verified(&mut self) {
        self.verifying = self.verifying.saturating_sub(1);
    }

    /// True while password checks are running.
    pub(crate) fn busy(&self) -> bool {
        self.verifying > 0
    }

    /// A line that was too long to read: the connection cannot be trusted to be in step.
    pub(crate) fn too_long(&mut self) -> Vec<Out> {
        vec![Out::Close("request line too long".into())]
    }

    /// One protocol line from the client.
    pub(crate) fn line(&mut self, line: &str) -> Vec<Out> {
        match parse_client_line(line) {
            Ok(cmd) => self.command(cmd),
            Err(e) => self.bad_line(line, &e),
        }
    }

    fn bad_line(&mut self, line: &str, e: &ProtoError) -> Vec<Out> {
        self.bad_lines += 1;
        let mut out = vec![Out::Warn(format!("bad request: {e}"))];
        // Answer the request if its id can be made out, so the client is not left waiting.
        let mut fields = line.split('\t');
        let cmd = fields.next().unwrap_or("");
        if matches!(cmd, "AUTH" | "CONT")
            && let Some(id) = fields.next().and_then(|f| f.parse::<u32>().ok())
        {
            self.pending.remove(&id);
            out.push(Out::Line(dovecot::fail(
                id,
                Some(&format!("Invalid request: {e}")),
                None,
                false,
            )));
        }
        if self.bad_lines >= MAX_BAD_LINES {
            out.push(Out::Close("too many bad requests".into()));
        }
        out
    }

    fn command(&mut self, cmd: ClientCommand) -> Vec<Out> {
        match cmd {
            ClientCommand::Version { major, .. } => {
                if major != dovecot::MAJOR_VERSION {
                    return vec![Out::Close(format!(
                        "client speaks protocol version {major}, not 1"
                    ))];
                }
                self.version_seen = true;
                Vec::new()
            }
            ClientCommand::Cpid(_) => Vec::new(),
            ClientCommand::Cancel { id } => {
                self.pending.remove(&id);
                Vec::new()
            }
            ClientCommand::Auth(req) => self.auth(*req),
            ClientCommand::Cont { id, data } => self.cont(id, &data),
        }
    }

    fn fail(id: u32, reason: &str) -> Out {
        Out::Line(dovecot::fail(id, Some(reason), None, false))
    }

    fn auth(&mut self, req: AuthRequest) -> Vec<Out> {
        let id = req.id;
        if self.pending.contains_key(&id) {
            return vec![Self::fail(id, "Duplicate request id")];
        }
        if self.pending.len() + self.verifying >= MAX_PENDING {
            return vec![Self::fail(id, "Too many requests in progress")];
        }
        let mechanism = req.mechanism.to_ascii_uppercase();
        if mechanism != "PLAIN" && mechanism != "LOGIN" {
            return vec![
                Out::Warn(format!("unsupported mechanism {mechanism:.32}")),
                Self::fail(id, "Unsupported authentication mechanism"),
            ];
        }
        let local = match (req.rip, req.lip) {
            (Some(r), _) if r.is_loopback() => true,
            (Some(r), Some(l)) => r == l,
            _ => false,
        };
        if !(req.secured || local || self.allow_plaintext_insecure) {
            return vec![
                Out::Warn(format!(
                    "plaintext {mechanism} refused on an insecure connection from {}",
                    req.rip
                        .map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string())
                )),
                Self::fail(
                    id,
                    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
                ),
            ];
        }
        let service = req.service.clone().unwrap_or_else(|| "unknown".to_owned());
        let pending = |mech| Pending {
            mech,
            rip: req.rip,
            service: service.clone(),
            secured: req.secured,
        };
        if mechanism == "PLAIN" {
            return match req.initial_response.as_deref() {
                // An empty initial response ("=") is not credentials: ask for them.
                Some(resp) if !resp.is_empty() && resp != "=" => {
                    self.plain(id, pending(Mech::Plain), resp)
                }
                _ => {
                    self.pending.insert(id, pending(Mech::Plain));
                    vec![Out::Line(dovecot::cont(id, ""))]
                }
            };
        }
        let mut login = LoginMechanism::new();
        match login.start(
            req.initial_response
                .as_deref()
                .filter(|r| !r.is_empty() && *r != "="),
        ) {
            Ok(LoginStep::Challenge(c)) => {
                self.pending.insert(id, pending(Mech::Login(login)));
                vec![Out::Line(dovecot::cont(id, c))]
            }
            Ok(LoginStep::Done(creds)) => self.verify(
                id,
                pending(Mech::Plain),
                creds.username,
                creds.password,
                "LOGIN",
            ),
            Err(e) => vec![
                Out::Warn(format!("LOGIN: {e}")),
                Self::fail(id, "Invalid base64 data"),
            ],
        }
    }

    fn plain(&mut self, id: u32, p: Pending, resp: &str) -> Vec<Out> {
        match Plain::decode(resp) {
            Ok(creds) => {
                if let Some(z) = creds.authzid.as_deref()
                    && !z.is_empty()
                    && !z.eq_ignore_ascii_case(&creds.authcid)
                {
                    return vec![Self::fail(
                        id,
                        "Authorization as another user is not allowed",
                    )];
                }
                self.verify(id, p, creds.authcid, creds.password, "PLAIN")
            }
            Err(e) => vec![
                Out::Warn(format!("PLAIN: {e}")),
                Self::fail(id, "Invalid PLAIN response"),
            ],
        }
    }

    fn cont(&mut self, id: u32, data: &str) -> Vec<Out> {
        let Some(mut p) = self.pending.remove(&id) else {
            return vec![Self::fail(id, "Unknown request id")];
        };
        match &mut p.mech {
            Mech::Plain => self.plain(id, p, data),
            Mech::Login(login) => match login.step(data) {
                Ok(LoginStep::Challenge(c)) => {
                    self.pending.insert(id, p);
                    vec![Out::Line(dovecot::cont(id, c))]
                }
                Ok(LoginStep::Done(creds)) => {
                    self.verify(id, p, creds.username, creds.password, "LOGIN")
                }
                Err(e) => vec![
                    Out::Warn(format!("LOGIN: {e}")),
                    Self::fail(id, "Invalid base64 data"),
                ],
            },
        }
    }

    fn verify(
        &mut self,
        id: u32,
        p: Pending,
        login: String,
        password: Secret<String>,
        mechanism: &'static str,
    ) -> Vec<Out> {
        if login.is_empty() || login.len() > 320 || login.contains(char::is_control) {
            return vec![Self::fail(id, "Invalid user name")];
        }
        self.verifying += 1;
        vec![Out::Verify(Verify {
            id,
            // Canonicalised by the directory: the account it reaches names the lockout key.
            login: login.trim().to_owned(),
            password,
            rip: p.rip,
            service: p.service,
            secured: p.secured,
            mechanism,
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_auth_proto::sasl::b64_encode;

    fn lines(out: &[Out]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Out::Line(l) => Some(l.clone()),
                _ => None,
            })
            .collect()
    }

    fn verify_of(out: Vec<Out>) -> Verify {
        out.into_iter()
            .find_map(|o| match o {
                Out::Verify(v) => Some(v),
                _ => None,
            })
            .expect("a Verify")
    }

    #[test]
    fn plain_with_initial_response_asks_for_verification() {
        let mut s = AuthSession::new(false);
        assert!(s.line("VERSION\t1\t0").is_empty());
        assert!(s.line("CPID\t42").is_empty());
        let resp = b64_encode(b"\0Alice@Example.org\0secret");
        let v = verify_of(s.line(&format!(
            "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp={resp}"
        )));
        assert_eq!(v.id, 1);
        assert_eq!(v.login, "Alice@Example.org");
        assert_eq!(v.password.expose(), "secret");
        assert_eq!(v.service, "smtp");
        assert!(s.busy());
    }

    #[test]
    fn plain_without_response_gets_an_empty_challenge() {
        let mut s = AuthSession::new(false);
        assert_eq!(
            lines(&s.line("AUTH\t7\tPLAIN\tservice=imap\tsecured\trip=203.0.113.9")),
            vec!["CONT\t7\t\n"]
        );
        let v = verify_of(s.line(&format!("CONT\t7\t{}", b64_encode(b"\0bob@x.org\0pw"))));
        assert_eq!(v.login, "bob@x.org");
    }

    #[test]
    fn login_is_two_challenges() {
        let mut s = AuthSession::new(false);
        assert_eq!(
            lines(&s.line("AUTH\t2\tLOGIN\tservice=smtp\trip=::1")),
            vec!["CONT\t2\tVXNlcm5hbWU6\n"]
        );
        assert_eq!(
            lines(&s.line(&format!("CONT\t2\t{}", b64_encode("carol@x.org")))),
            vec!["CONT\t2\tUGFzc3dvcmQ6\n"]
        );
        let v = verify_of(s.line(&format!("CONT\t2\t{}", b64_encode("pw"))));
        assert_eq!(
            (v.login.as_str(), v.password.expose().as_str(), v.mechanism),
            ("carol@x.org", "pw", "LOGIN")
        );
    }

    #[test]
    fn login_with_initial_response_skips_the_user_prompt() {
        let mut s = AuthSession::new(false);
        let out = s.line(&format!(
            "AUTH\t3\tLOGIN\tservice=smtp\trip=127.0.0.1\tresp={}",
            b64_encode("dave@x.org")
        ));
        assert_eq!(lines(&out), vec!["CONT\t3\tUGFzc3dvcmQ6\n"]);
    }

    #[test]
    fn plaintext_refused_from_remote_without_tls() {
        let mut s = AuthSession::new(false);
        let resp = b64_encode(b"\0a@x.org\0pw");
        let out = lines(&s.line(&format!(
            "AUTH\t1\tPLAIN\tservice=smtp\tlip=192.0.2.1\trip=198.51.100.7\tresp={resp}"
        )));
        assert!(
            out[0].starts_with("FAIL\t1\t") && out[0].contains("Plaintext"),
            "{out:?}"
        );
        // secured, or rip == lip, or the config switch, let it through.
        verify_of(s.line(&format!(
            "AUTH\t2\tPLAIN\tservice=smtp\tlip=192.0.2.1\trip=198.51.100.7\tsecured\tresp={resp}"
        )));
        verify_of(s.line(&format!(
            "AUTH\t3\tPLAIN\tservice=smtp\tlip=192.0.2.1\trip=192.0.2.1\tresp={resp}"
        )));
        let mut open = AuthSession::new(true);
        verify_of(open.line(&format!(
            "AUTH\t4\tPLAIN\tservice=smtp\trip=198.51.100.7\tresp={resp}"
        )));
    }

    #[test]
    fn bad_input_gets_fail_replies_and_eventually_a_close() {
        let mut s = AuthSession::new(false);
        let out = lines(&s.line("AUTH\t5\tCRAM-MD5\tservice=smtp\trip=127.0.0.1"));
        assert!(out[0].starts_with("FAIL\t5\t") && out[0].contains("Unsupported"));
        let out = lines(&s.line("AUTH\t6\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp=!!!notbase64"));
        assert!(out[0].starts_with("FAIL\t6\t"), "{out:?}");
        let out = lines(&s.line("CONT\t99\tAAAA"));
        assert!(out[0].starts_with("FAIL\t99\t"));
        let out = lines(&s.line(&format!(
            "AUTH\t8\tPLAIN\trip=127.0.0.1\tresp={}",
            b64_encode(b"other@x.org\0a@x.org\0pw")
        )));
        assert!(out[0].contains("another user"), "{out:?}");
        let mut closed = false;
        for _ in 0..MAX_BAD_LINES {
            closed |= s
                .line("GARBAGE\x01\x02")
                .iter()
                .any(|o| matches!(o, Out::Close(_)));
        }
        assert!(closed);
        assert!(matches!(
            AuthSession::new(false).line("VERSION\t2\t0")[0],
            Out::Close(_)
        ));
    }

    #[test]
    fn pending_requests_are_bounded() {
        let mut s = AuthSession::new(false);
        for id in 0..MAX_PENDING as u32 {
            assert_eq!(
                lines(&s.line(&format!("AUTH\t{id}\tLOGIN\trip=127.0.0.1"))).len(),
                1
            );
        }
        let out = lines(&s.line("AUTH\t1000\tLOGIN\trip=127.0.0.1"));
        assert!(out[0].contains("Too many"), "{out:?}");
        assert!(lines(&s.line("CANCEL\t0")).is_empty());
        assert!(lines(&s.line("AUTH\t1001\tLOGIN\trip=127.0.0.1"))[0].starts_with("CONT"));
    }
}
