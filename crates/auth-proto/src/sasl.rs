//! SASL `PLAIN` (RFC 4616) and `LOGIN` as carried in Dovecot `AUTH` / `CONT` lines: base64 in,
//! credentials out. No I/O, no password checks: the caller verifies what comes out.
//!
//! Passwords are wrapped in [`Secret`], whose `Debug` prints `<redacted>`, so a stray
//! `{:?}` can't put one in a log.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};

use crate::ProtoError;

/// The `LOGIN` challenge `Username:`, base64-encoded.
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// The `LOGIN` challenge `Password:`, base64-encoded.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// A value kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value, for the one place that needs it (the password check).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

/// Encodes bytes as standard padded base64.
pub fn b64_encode(data: impl AsRef<[u8]>) -> String {
    STANDARD.encode(data)
}

/// Decodes standard base64, with or without padding.
pub fn b64_decode(data: &str) -> Result<Vec<u8>, ProtoError> {
    STANDARD_PAD_INDIFFERENT
        .decode(data)
        .map_err(|_| ProtoError::InvalidBase64)
}

/// Credentials from a `PLAIN` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCreds {
    /// Identity to act as, if the client asked for one (an empty authzid is `None`).
    pub authzid: Option<String>,
    /// Identity whose password this is; never empty.
    pub authcid: String,
    /// The password; never empty.
    pub password: Secret<String>,
}

/// The `PLAIN` mechanism: one message, `authzid NUL authcid NUL passwd`.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl Plain {
    /// Decodes a base64 `PLAIN` response. Errors: invalid base64 or UTF-8, not exactly two
    /// NULs, empty authcid, empty password.
    pub fn decode(b64: &str) -> Result<PlainCreds, ProtoError> {
        let raw = b64_decode(b64)?;
        let text = String::from_utf8(raw).map_err(|_| ProtoError::InvalidUtf8)?;
        let mut parts = text.split('\0');
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ProtoError::Sasl(
                "PLAIN needs authzid NUL authcid NUL password",
            ));
        };
        if authcid.is_empty() {
            return Err(ProtoError::Sasl("empty authcid"));
        }
        if password.is_empty() {
            return Err(ProtoError::Sasl("empty password"));
        }
        Ok(PlainCreds {
            authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
            authcid: authcid.to_owned(),
            password: Secret::new(password.to_owned()),
        })
    }

    /// Encodes a `PLAIN` response (the client side), base64.
    pub fn encode(authzid: &str, authcid: &str, password: &str) -> String {
        b64_encode(format!("{authzid}\0{authcid}\0{password}"))
    }
}

/// Credentials gathered by [`LoginMechanism`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCreds {
    /// The user name; never empty.
    pub username: String,
    /// The password (may be empty; the check will fail it).
    pub password: Secret<String>,
}

/// What [`LoginMechanism`] wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send this base64 challenge (`CONT`) and feed the answer to [`LoginMechanism::step`].
    Challenge(&'static str),
    /// Both answers are in.
    Done(LoginCreds),
}

/// The `LOGIN` mechanism, server side: ask `Username:`, then `Password:`.
///
/// Outlook sends the user name as an initial response, so [`LoginMechanism::start`] takes one.
#[derive(Debug, Default)]
pub struct LoginMechanism {
    state: LoginState,
}

#[derive(Debug, Default)]
enum LoginState {
    #[default]
    Start,
    WantUser,
    WantPass(String),
    Finished,
}

impl LoginMechanism {
    /// A mechanism that has not started.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts, with the base64 initial response from `resp=` if there was one. An empty
    /// initial response counts as none.
    pub fn start(&mut self, initial: Option<&str>) -> Result<LoginStep, ProtoError> {
        if !matches!(self.state, LoginState::Start) {
            return Err(ProtoError::Sasl("LOGIN already started"));
        }
        match initial.filter(|i| !i.is_empty()) {
            None => {
                self.state = LoginState::WantUser;
                Ok(LoginStep::Challenge(LOGIN_USERNAME_CHALLENGE))
            }
            Some(user) => {
                self.state = LoginState::WantUser;
                self.step(user)
            }
        }
    }

    /// Feeds the client's base64 answer to the last challenge.
    pub fn step(&mut self, response: &str) -> Result<LoginStep, ProtoError> {
        let text = decode_text(response);
        match std::mem::replace(&mut self.state, LoginState::Finished) {
            LoginState::WantUser => {
                let user = text?;
                if user.is_empty() {
                    return Err(ProtoError::Sasl("empty user name"));
                }
                self.state = LoginState::WantPass(user);
                Ok(LoginStep::Challenge(LOGIN_PASSWORD_CHALLENGE))
            }
            LoginState::WantPass(username) => Ok(LoginStep::Done(LoginCreds {
                username,
                password: Secret::new(text?),
            })),
            LoginState::Start => Err(ProtoError::Sasl("LOGIN not started")),
            LoginState::Finished => Err(ProtoError::Sasl("LOGIN already finished")),
        }
    }
}

/// Base64 → UTF-8 text.
fn decode_text(b64: &str) -> Result<String, ProtoError> {
    String::from_utf8(b64_decode(b64)?).map_err(|_| ProtoError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_what_they_say() {
        assert_eq!(b64_decode(LOGIN_USERNAME_CHALLENGE).unwrap(), b"Username:");
        assert_eq!(b64_decode(LOGIN_PASSWORD_CHALLENGE).unwrap(), b"Password:");
    }

    #[test]
    fn plain_table() {
        let ok = |z: Option<&str>, c: &str, p: &str| {
            Ok(PlainCreds {
                authzid: z.map(str::to_owned),
                authcid: c.to_owned(),
                password: Secret::new(p.to_owned()),
            })
        };
        let bad = |why| Err(ProtoError::Sasl(why));
        let shape = "PLAIN needs authzid NUL authcid NUL password";
        let cases: Vec<(String, Result<PlainCreds, ProtoError>)> = vec![
            (b64_encode("\0alice\0secret"), ok(None, "alice", "secret")),
            (
                b64_encode("admin\0alice\0pw"),
                ok(Some("admin"), "alice", "pw"),
            ),
            (
                b64_encode("\0bob@example.org\0p\u{e4}ss w"),
                ok(None, "bob@example.org", "päss w"),
            ),
            // Without padding (some clients).
            ("AGFsaWNlAHNlY3JldA".to_owned(), ok(None, "alice", "secret")),
            (b64_encode("alice\0secret"), bad(shape)),
            (b64_encode("a\0b\0c\0d"), bad(shape)),
            (b64_encode(""), bad(shape)),
            (b64_encode("\0\0secret"), bad("empty authcid")),
            (b64_encode("\0alice\0"), bad("empty password")),
            ("not base64!".to_owned(), Err(ProtoError::InvalidBase64)),
            ("AGFsaWNl=AHNl".to_owned(), Err(ProtoError::InvalidBase64)),
            (b64_encode(b"\0\xff\0pw"), Err(ProtoError::InvalidUtf8)),
        ];
        for (input, want) in cases {
            assert_eq!(Plain::decode(&input), want, "{input:?}");
        }
    }

    #[test]
    fn plain_round_trip() {
        let creds = Plain::decode(&Plain::encode("", "alice", "s3cret")).unwrap();
        assert_eq!(creds.authcid, "alice");
        assert_eq!(creds.password.expose(), "s3cret");
    }

    #[test]
    fn secret_is_redacted() {
        let creds = Plain::decode(&Plain::encode("", "alice", "hunter2")).unwrap();
        let shown = format!("{creds:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(Secret::from(5).into_inner(), 5);
    }

    #[test]
    fn login_without_initial_response() {
        let mut m = LoginMechanism::new();
        assert_eq!(
            m.start(None),
            Ok(LoginStep::Challenge(LOGIN_USERNAME_CHALLENGE))
        );
        assert_eq!(
            m.step(&b64_encode("alice")),
            Ok(LoginStep::Challenge(LOGIN_PASSWORD_CHALLENGE))
        );
        let Ok(LoginStep::Done(creds)) = m.step(&b64_encode("pw")) else {
            panic!("LOGIN should be done");
        };
        assert_eq!(
            (creds.username.as_str(), creds.password.expose().as_str()),
            ("alice", "pw")
        );
        assert!(format!("{creds:?}").contains("<redacted>"));
        assert!(m.step(&b64_encode("again")).is_err());
    }

    #[test]
    fn login_with_initial_username() {
        let mut m = LoginMechanism::new();
        let step = m.start(Some(&b64_encode("outlook@example.org")));
        assert_eq!(step, Ok(LoginStep::Challenge(LOGIN_PASSWORD_CHALLENGE)));
        assert!(matches!(m.step(&b64_encode("pw")), Ok(LoginStep::Done(_))));
    }

    #[test]
    fn login_empty_initial_counts_as_none() {
        let mut m = LoginMechanism::new();
        assert_eq!(
            m.start(Some("")),
            Ok(LoginStep::Challenge(LOGIN_USERNAME_CHALLENGE))
        );
    }

    #[test]
    fn login_errors() {
        let mut m = LoginMechanism::new();
        assert_eq!(m.step("YQ=="), Err(ProtoError::Sasl("LOGIN not started")));
        let mut m = LoginMechanism::new();
        m.start(None).unwrap();
        assert_eq!(
            m.start(None),
            Err(ProtoError::Sasl("LOGIN already started"))
        );
        assert_eq!(m.step("***"), Err(ProtoError::InvalidBase64));
        let mut m = LoginMechanism::new();
        m.start(None).unwrap();
        assert_eq!(m.step(""), Err(ProtoError::Sasl("empty user name")));
        let mut m = LoginMechanism::new();
        m.start(None).unwrap();
        assert_eq!(m.step(&b64_encode(b"\xff")), Err(ProtoError::InvalidUtf8));
    }
}
