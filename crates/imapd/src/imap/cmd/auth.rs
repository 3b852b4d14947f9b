//! LOGIN, STARTTLS and COMPRESS: the commands that need more than the session (authd, the
//! TLS handshake, the stream). As in POP3, the session decides — state, policy, replies —
//! and hands the driver an [`Action`] for the part it cannot do; the driver reports back
//! ([`Session::login_done`], [`Session::tls_started`], [`Session::compress_started`]).

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::response::Code;

use crate::imap::session::{Flow, Session, User};
use crate::imap::tagged::{Tagged, other};
use crate::login::LoginError;

/// What the driver does after [`Session::begin`].
#[derive(Debug)]
pub(crate) enum Action {
    /// The session answered the command itself (output in `out`).
    Done(Flow),
    /// Check the password with authd, then call [`Session::login_done`].
    Login {
        /// The command's tag.
        tag: String,
        /// The user name as sent.
        user: String,
        /// The password as sent.
        pass: String,
    },
    /// The tagged OK is in `out`: flush it, forget any input already buffered, run the TLS
    /// handshake, then call [`Session::tls_started`] (or close if the handshake fails).
    StartTls,
    /// The tagged OK is in `out`: flush it, then compress the stream with DEFLATE and call
    /// [`Session::compress_started`].
    Compress,
}

impl Session {
    /// Handles a command: LOGIN, STARTTLS and COMPRESS may need the driver, everything else
    /// is answered here (see [`Session::handle`]).
    pub(crate) fn begin(&mut self, cmd: Command<'static>, out: &mut Vec<u8>) -> Action {
        let tag = cmd.tag.inner().to_owned();
        let refusal = match &cmd.body {
            CommandBody::StartTLS => Some(self.starttls_refusal()),
            CommandBody::Login { .. } if self.state.user().is_none() => {
                Some(if self.plaintext_ok() {
                    None
                } else {
                    Some(Tagged::no(
                        other("PRIVACYREQUIRED"),
                        "Plaintext LOGIN is disabled; use STARTTLS",
                    ))
                })
            }
            CommandBody::Compress { .. } if self.state.user().is_some() => {
                Some(if self.compressed {
                    Some(Tagged::no(Code::CompressionActive, "Already compressing"))
                } else {
                    None
                })
            }
            _ => None,
        };
        let Some(refusal) = refusal else {
            let touched = self.notify_touched(&cmd.body);
            let flow = self.handle(cmd, out);
            if flow == Flow::Continue {
                self.notify_absorb(touched, out);
            }
            return Action::Done(flow);
        };
        if let Some(t) = refusal {
            t.write(out, &tag);
            return Action::Done(Flow::Continue);
        }
        match cmd.body {
            CommandBody::Login { username, password } => Action::Login {
                tag,
                user: String::from_utf8_lossy(username.as_ref()).into_owned(),
                pass: String::from_utf8_lossy(password.declassify().as_ref()).into_owned(),
            },
            CommandBody::StartTLS => {
                Tagged::ok("Begin TLS negotiation now").write(out, &tag);
                Action::StartTls
            }
            _ => {
                Tagged::ok("DEFLATE active").write(out, &tag);
                Action::Compress
            }
        }
    }

    /// Why STARTTLS cannot run now, if it cannot.
    fn starttls_refusal(&self) -> Option<Tagged> {
        if !self.cfg.starttls && !self.tls {
            // Port 143 without a certificate.
            Some(Tagged::bad("STARTTLS is not available"))
        } else if !self.cfg.starttls || self.tls || self.state.user().is_some() {
            Some(Tagged::bad("STARTTLS is not available now"))
        } else {
            None
        }
    }

    /// authd's answer to a LOGIN: logs in (creating the special-use folders on first login)
    /// and answers. True when the login failed (the driver counts failures).
    pub(crate) fn login_done(
        &mut self,
        out: &mut Vec<u8>,
        tag: &str,
        result: Result<User, LoginError>,
    ) -> bool {
        let (t, failed) = match result {
            Ok(user) => {
                self.login(user);
                (
                    Tagged::ok_code(other(self.capability_text()), "Logged in"),
                    false,
                )
            }
            Err(LoginError::Temporary(t)) => (Tagged::no(other("UNAVAILABLE"), t), false),
            Err(LoginError::Failed(_)) => (
                Tagged::no(other("AUTHENTICATIONFAILED"), "Authentication failed"),
                true,
            ),
        };
        t.write(out, tag);
        failed
    }

    /// IDLE (RFC 2177): refused before login; otherwise the directory of the selected
    /// mailbox, which the driver watches while idling (`None`: nothing selected).
    pub(crate) fn idle_start(&self) -> Result<Option<std::path::PathBuf>, Tagged> {
        if self.state.user().is_none() {
            return Err(Tagged::bad("Log in first"));
        }
        Ok(self.selected_dir())
    }

    /// DONE ended an IDLE: pending updates, then the tagged OK.
    pub(crate) fn idle_done(&mut self, out: &mut Vec<u8>, tag: &str) {
        self.done(out, "IDLE terminated").write(out, tag);
    }

    /// The TLS handshake after STARTTLS succeeded.
    pub(crate) fn tls_started(&mut self) {
        self.tls = true;
    }

    /// The stream is compressed from now on.
    pub(crate) fn compress_started(&mut self) {
        self.compressed = true;
    }
}
