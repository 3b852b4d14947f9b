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

#[cfg(test)]
mod tests {
    use tokio::net::UnixStream;

    use super::*;
    use crate::ProtoError;
    use crate::client::tests::{line_server, listen, spawn_server};
    use crate::userdb::{self, MasterCommand};

    async fn userdb_server(stream: UnixStream) {
        let home = [
            ("home", "/var/mail/example.org/alice"),
            ("uid", "5000"),
            ("gid", "5000"),
        ];
        line_server(
            stream,
            userdb::greeting(77),
            move |line| match userdb::parse_master_line(line).unwrap() {
                MasterCommand::Version { major, .. } => {
                    assert_eq!(major, 1);
                    String::new()
                }
                MasterCommand::User { id, user, params } => {
                    assert_eq!(params.service(), Some("lmtp"));
                    match user.as_str() {
                        "alice@example.org" => {
                            userdb::not_found(id + 500) + &userdb::user_found(id, &user, &home)
                        }
                        "broken" => userdb::fail(id, "database down"),
                        _ => userdb::not_found(id),
                    }
                }
                MasterCommand::Pass { id, user, .. } if user == "alice@example.org" => {
                    userdb::pass_found(id, &user, &[("nopassword", "y")])
                }
                MasterCommand::Pass { id, .. } => userdb::not_found(id),
                MasterCommand::List { id, .. } => {
                    userdb::list_entry(id, "alice@example.org")
                        + &userdb::list_entry(id, "bob@example.org")
                        + &userdb::list_done(id, false)
                }
            },
        )
        .await;
    }

    #[tokio::test]
    async fn userdb_client() {
        let (_dir, path, listener) = listen();
        spawn_server(listener, userdb_server);
        let mut client = UserdbClient::connect(&path).await.unwrap();
        assert_eq!(client.server_pid(), Some(77));
        let fields = client
            .user("alice@example.org", "lmtp")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            fields[0],
            ("home".into(), "/var/mail/example.org/alice".into())
        );
        assert_eq!(fields.len(), 3);
        assert_eq!(
            client.user("nobody@example.org", "lmtp").await.unwrap(),
            None
        );
        let err = client.user("broken", "lmtp").await.unwrap_err();
        assert!(matches!(err, ClientError::Failed(ref r) if r == "database down"));
        assert!(!err.is_fatal());
        let pass = client
            .pass("alice@example.org", "smtp")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            pass,
            vec![
                ("user".into(), "alice@example.org".into()),
                ("nopassword".into(), "y".into())
            ]
        );
        assert_eq!(client.pass("x", "smtp").await.unwrap(), None);
        assert_eq!(
            client.list().await.unwrap(),
            ["alice@example.org", "bob@example.org"]
        );
        assert!(matches!(
            client.user("", "lmtp").await,
            Err(ClientError::Misuse(_))
        ));
    }

    #[tokio::test]
    async fn userdb_client_sees_close_and_garbage() {
        let (_dir, path, listener) = listen();
        spawn_server(listener, |stream| async move { drop(stream) });
        assert!(matches!(
            UserdbClient::connect(&path).await,
            Err(ClientError::Closed)
        ));

        let (_dir2, path, listener) = listen();
        spawn_server(listener, |stream| {
            line_server(stream, userdb::greeting(1), |_| "WHAT\t1\n".into())
        });
        let mut client = UserdbClient::connect(&path).await.unwrap();
        let err = client.user("a", "lmtp").await.unwrap_err();
        assert!(
            matches!(err, ClientError::Proto(ProtoError::UnknownCommand(_))),
            "{err}"
        );
        assert!(matches!(
            client.user("a", "lmtp").await,
            Err(ClientError::Unusable)
        ));
    }
}
