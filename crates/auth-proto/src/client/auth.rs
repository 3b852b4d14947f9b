//! [`AuthClient`]: the client end of the Dovecot auth protocol.

use std::path::Path;
use std::time::Duration;

use crate::ProtoError;
use crate::dovecot::{
    self, AuthParams, MAJOR_VERSION, Mech, ServerLine, encode_auth, encode_cancel, encode_cont,
    encode_cpid, encode_version, parse_server_line,
};
use crate::sasl::{b64_decode, b64_encode};

use super::{ClientError, DEFAULT_TIMEOUT, Health, Ids, LineConn, within};

/// The result of an authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Accepted.
    Ok {
        /// The user as the server names it (`user=`; may differ from what was typed).
        user: String,
        /// The other `OK` fields, in order.
        extra: Vec<(String, String)>,
    },
    /// Refused.
    Fail {
        /// `reason=`: text for the end client, if any.
        reason: Option<String>,
        /// The server could not decide (database down): answer with a temporary error.
        temp: bool,
    },
}

/// Where an authentication stands after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Finished.
    Done(AuthOutcome),
    /// The server sent this (decoded) challenge; answer with [`AuthClient::respond`].
    Challenge(Vec<u8>),
}

/// A connection to a Dovecot-protocol auth socket (authd's `auth`, or Dovecot's).
#[derive(Debug)]
pub struct AuthClient {
    conn: LineConn,
    mechs: Vec<Mech>,
    spid: Option<u32>,
    cuid: Option<u32>,
    ids: Ids,
    pending: Option<u32>,
    timeout: Duration,
    health: Health,
}

impl AuthClient {
    /// Connects, sends `VERSION` and `CPID`, and reads the server's greeting up to `DONE`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with_timeout(path, DEFAULT_TIMEOUT).await
    }

    /// [`AuthClient::connect`] with another time limit, kept for later calls.
    pub async fn connect_with_timeout(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        within(timeout, Self::handshake(path.as_ref(), timeout)).await
    }

    async fn handshake(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let mut conn = LineConn::connect(path, dovecot::MAX_LINE).await?;
        conn.send(&(encode_version() + &encode_cpid(std::process::id())))
            .await?;
        let mut client = Self {
            conn,
            mechs: Vec::new(),
            spid: None,
            cuid: None,
            ids: Ids::default(),
            pending: None,
            timeout,
            health: Health::default(),
        };
        loop {
            let line = client.conn.line().await?;
            match parse_server_line(&line) {
                Ok(ServerLine::Version { major, .. }) if major != MAJOR_VERSION => {
                    return Err(ClientError::Version(major));
                }
                Ok(ServerLine::Version { .. } | ServerLine::Cookie(_)) => {}
                Ok(ServerLine::Mech(mech)) => client.mechs.push(mech),
                Ok(ServerLine::Spid(pid)) => client.spid = Some(pid),
                Ok(ServerLine::Cuid(cuid)) => client.cuid = Some(cuid),
                Ok(ServerLine::Done) => return Ok(client),
                Ok(ServerLine::Ok(_) | ServerLine::Fail(_) | ServerLine::Cont { .. }) => {
                    return Err(ClientError::Unexpected("reply during the handshake"));
                }
                // Lines a later server may add to its greeting.
                Err(ProtoError::UnknownCommand(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The mechanisms the server offered.
    pub fn mechanisms(&self) -> &[Mech] {
        &self.mechs
    }

    /// Whether the server offered `name` (case-insensitive).
    pub fn has_mechanism(&self, name: &str) -> bool {
        self.mechs.iter().any(|m| m.name.eq_ignore_ascii_case(name))
    }

    /// The server's process id (`SPID`).
    pub fn server_pid(&self) -> Option<u32> {
        self.spid
    }

    /// This connection's id on the server (`CUID`).
    pub fn connection_id(&self) -> Option<u32> {
        self.cuid
    }

    /// Changes the time limit of later calls.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Starts an authentication with `mech`, and `initial` (raw bytes) as initial response.
    /// A request still waiting for [`AuthClient::respond`] is cancelled first.
    pub async fn authenticate(
        &mut self,
        mech: &str,
        params: &AuthParams,
        initial: Option<&[u8]>,
    ) -> Result<AuthStep, ClientError> {
        self.health.check()?;
        let result = within(self.timeout, self.start(mech, params, initial)).await;
        self.health.settle(result)
    }

    /// Answers the challenge of the authentication in progress with `response` (raw bytes).
    pub async fn respond(&mut self, response: &[u8]) -> Result<AuthStep, ClientError> {
        self.health.check()?;
        let result = within(self.timeout, self.answer(response)).await;
        self.health.settle(result)
    }

    /// Checks `user` / `pass` with `PLAIN` (one round trip).
    pub async fn plain(
        &mut self,
        user: &str,
        pass: &str,
        params: &AuthParams,
    ) -> Result<AuthOutcome, ClientError> {
        self.health.check()?;
        let result = within(self.timeout, self.plain_steps(user, pass, params)).await;
        self.health.settle(result)
    }

    /// Checks `user` / `pass` with `LOGIN`, answering the two challenges.
    pub async fn login(
        &mut self,
        user: &str,
        pass: &str,
        params: &AuthParams,
    ) -> Result<AuthOutcome, ClientError> {
        self.health.check()?;
        let result = within(self.timeout, self.login_steps(user, pass, params)).await;
        self.health.settle(result)
    }

    async fn plain_steps(
        &mut self,
        user: &str,
        pass: &str,
        params: &AuthParams,
    ) -> Result<AuthOutcome, ClientError> {
        let initial = format!("\0{user}\0{pass}");
        match self
            .start("PLAIN", params, Some(initial.as_bytes()))
            .await?
        {
            AuthStep::Done(outcome) => Ok(outcome),
            AuthStep::Challenge(_) => Err(ClientError::Unexpected("challenge to PLAIN")),
        }
    }

    async fn login_steps(
        &mut self,
        user: &str,
        pass: &str,
        params: &AuthParams,
    ) -> Result<AuthOutcome, ClientError> {
        let mut step = self.start("LOGIN", params, None).await?;
        for answer in [user, pass] {
            match step {
                AuthStep::Done(outcome) => return Ok(outcome),
                AuthStep::Challenge(_) => step = self.answer(answer.as_bytes()).await?,
            }
        }
        match step {
            AuthStep::Done(outcome) => Ok(outcome),
            AuthStep::Challenge(_) => Err(ClientError::Unexpected("third challenge to LOGIN")),
        }
    }

    async fn start(
        &mut self,
        mech: &str,
        params: &AuthParams,
        initial: Option<&[u8]>,
    ) -> Result<AuthStep, ClientError> {
        if !self.has_mechanism(mech) {
            // Dovecot drops the connection on a mechanism it doesn't have.
            return Err(ClientError::UnsupportedMechanism(mech.to_ascii_uppercase()));
        }
        if let Some(old) = self.pending.take() {
            self.conn.send(&encode_cancel(old)).await?;
        }
        let id = self.ids.fresh();
        let initial = initial.map(b64_encode);
        self.conn
            .send(&encode_auth(id, mech, params, initial.as_deref()))
            .await?;
        self.pending = Some(id);
        self.reply(id).await
    }

    async fn answer(&mut self, response: &[u8]) -> Result<AuthStep, ClientError> {
        let id = self
            .pending
            .ok_or(ClientError::Misuse("no authentication in progress"))?;
        self.conn
            .send(&encode_cont(id, &b64_encode(response)))
            .await?;
        self.reply(id).await
    }

    /// Reads up to the reply for `id`, skipping replies to earlier requests (as Postfix does).
    async fn reply(&mut self, id: u32) -> Result<AuthStep, ClientError> {
        loop {
            let line = self.conn.line().await?;
            let step = match parse_server_line(&line)? {
                ServerLine::Ok(ok) if ok.id == id => {
                    let user = ok.user.ok_or(ClientError::Unexpected("OK without user="))?;
                    AuthStep::Done(AuthOutcome::Ok {
                        user,
                        extra: ok.params.into_pairs(),
                    })
                }
                ServerLine::Fail(fail) if fail.id == id => {
                    let temp = fail.is_temp();
                    AuthStep::Done(AuthOutcome::Fail {
                        reason: fail.reason,
                        temp,
                    })
                }
                ServerLine::Cont { id: cont, data } if cont == id => {
                    return Ok(AuthStep::Challenge(b64_decode(&data)?));
                }
                ServerLine::Ok(_) | ServerLine::Fail(_) | ServerLine::Cont { .. } => continue,
                _ => return Err(ClientError::Unexpected("greeting line after the handshake")),
            };
            self.pending = None;
            return Ok(step);
        }
    }
}
