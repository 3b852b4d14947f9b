//! [`UserdbClient`]: the client end of the Dovecot userdb protocol.

use std::path::Path;
use std::time::Duration;

use crate::userdb::{
    self, MAJOR_VERSION, UserdbReply, encode_list, encode_pass, encode_user, encode_version,
    parse_userdb_reply,
};

use super::{ClientError, DEFAULT_TIMEOUT, Health, Ids, LineConn, within};

/// A connection to a userdb socket (authd's `auth-userdb`, or Dovecot's).
#[derive(Debug)]
pub struct UserdbClient {
    conn: LineConn,
    spid: Option<u32>,
    ids: Ids,
    timeout: Duration,
    health: Health,
}

/// Which lookup command to send.
#[derive(Debug, Clone, Copy)]
enum Lookup {
    User,
    Pass,
}

impl UserdbClient {
    /// Connects, sends `VERSION`, and reads the server's `VERSION` and `SPID`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with_timeout(path, DEFAULT_TIMEOUT).await
    }

    /// [`UserdbClient::connect`] with another time limit, kept for later calls.
    pub async fn connect_with_timeout(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        within(timeout, Self::handshake(path.as_ref(), timeout)).await
    }

    async fn handshake(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let mut conn = LineConn::connect(path, userdb::MAX_LINE).await?;
        conn.send(&encode_version()).await?;
        loop {
            match parse_userdb_reply(&conn.line().await?)? {
                UserdbReply::Version { major, .. } if major != MAJOR_VERSION => {
                    return Err(ClientError::Version(major));
                }
                UserdbReply::Version { .. } => {}
                UserdbReply::Spid(pid) => {
                    return Ok(Self {
                        conn,
                        spid: Some(pid),
                        ids: Ids::default(),
                        timeout,
                        health: Health::default(),
                    });
                }
                _ => return Err(ClientError::Unexpected("reply before the greeting ended")),
            }
        }
    }

    /// The server's process id (`SPID`).
    pub fn server_pid(&self) -> Option<u32> {
        self.spid
    }

    /// Changes the time limit of later calls.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// `USER`: the user's fields (home, uid, gid, mail, …; a bare flag has an empty value),
    /// `None` if there is no such user, [`ClientError::Failed`] if the server could not look.
    pub async fn user(
        &mut self,
        name: &str,
        service: &str,
    ) -> Result<Option<Vec<(String, String)>>, ClientError> {
        self.health.check()?;
        let result = within(self.timeout, self.lookup(Lookup::User, name, service)).await;
        self.health.settle(result)
    }

    /// `PASS`: the passdb's fields for the user (`user=` among them), without checking a
    /// password; `None` if there is no such user.
    pub async fn pass(
        &mut self,
        name: &str,
        service: &str,
    ) -> Result<Option<Vec<(String, String)>>, ClientError> {
        self.health.check()?;
        let result = within(self.timeout, self.lookup(Lookup::Pass, name, service)).await;
        self.health.settle(result)
    }

    /// `LIST`: every user name.
    pub async fn list(&mut self) -> Result<Vec<String>, ClientError> {
        self.health.check()?;
        let result = within(self.timeout, self.list_users()).await;
        self.health.settle(result)
    }

    async fn lookup(
        &mut self,
        kind: Lookup,
        name: &str,
        service: &str,
    ) -> Result<Option<Vec<(String, String)>>, ClientError> {
        if name.is_empty() {
            return Err(ClientError::Misuse("empty user name"));
        }
        let id = self.ids.fresh();
        let params = [("service", service)];
        let line = match kind {
            Lookup::User => encode_user(id, name, &params),
            Lookup::Pass => encode_pass(id, name, &params),
        };
        self.conn.send(&line).await?;
        loop {
            let reply = self.reply().await?;
            if reply.id() != Some(id) {
                continue; // an answer to a request we gave up on
            }
            return match (kind, reply) {
                (Lookup::User, UserdbReply::User { fields, .. })
                | (Lookup::Pass, UserdbReply::Pass { fields, .. }) => Ok(Some(fields.into_pairs())),
                (_, UserdbReply::NotFound { .. }) => Ok(None),
                (_, UserdbReply::Fail { reason, .. }) => Err(ClientError::Failed(
                    reason.unwrap_or_else(|| "lookup failed".into()),
                )),
                _ => Err(ClientError::Unexpected("reply of the wrong kind")),
            };
        }
    }

    async fn list_users(&mut self) -> Result<Vec<String>, ClientError> {
        let id = self.ids.fresh();
        let none: &[(&str, &str)] = &[];
        self.conn.send(&encode_list(id, none)).await?;
        let mut users = Vec::new();
        loop {
            let reply = self.reply().await?;
            if reply.id() != Some(id) {
                continue;
            }
            match reply {
                UserdbReply::List { user, .. } => users.push(user),
                UserdbReply::Done { failed: false, .. } => return Ok(users),
                UserdbReply::Done { failed: true, .. } => {
                    return Err(ClientError::Failed("user listing failed".into()));
                }
                UserdbReply::Fail { reason, .. } => {
                    return Err(ClientError::Failed(
                        reason.unwrap_or_else(|| "lookup failed".into()),
                    ));
                }
                _ => return Err(ClientError::Unexpected("reply of the wrong kind")),
            }
        }
    }

    async fn reply(&mut self) -> Result<UserdbReply, ClientError> {
        Ok(parse_userdb_reply(&self.conn.line().await?)?)
    }
}
