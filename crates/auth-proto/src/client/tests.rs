//! Each client against a tiny in-test server built from this crate's server-side codecs:
//! the shared helpers, and the auth client's tests (the others are beside their clients).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::*;
use crate::dovecot::{self, ClientCommand, Mech};
use crate::sasl::{LoginMechanism, LoginStep, Plain};

/// A socket path in a fresh temp dir, and a listener on it.
pub(crate) fn listen() -> (TempDir, PathBuf, UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let listener = UnixListener::bind(&path).unwrap();
    (dir, path, listener)
}

/// Accepts connections forever, each served by `serve`.
pub(crate) fn spawn_server<F, Fut>(listener: UnixListener, serve: F)
where
    F: Fn(UnixStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
}

/// Reads lines from `stream` and writes whatever `answer` returns for each.
pub(crate) async fn line_server(
    mut stream: UnixStream,
    greeting: String,
    mut answer: impl FnMut(&str) -> String,
) {
    if stream.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut lines = LineBuffer::new(1024);
    let mut chunk = [0u8; 512];
    loop {
        while let Some(line) = lines.next_line() {
            let out = answer(&line.unwrap());
            if stream.write_all(out.as_bytes()).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => lines.push(&chunk[..n]),
        }
    }
}

/// An auth server: alice/secret succeeds, "down" fails temporarily, the rest fails.
async fn auth_server(stream: UnixStream) {
    let greeting = dovecot::handshake(&[Mech::plain(), Mech::login()], 4321, 9, [7; 16]);
    let mut logins: HashMap<u32, LoginMechanism> = HashMap::new();
    let mut saw_version = false;
    let verdict = |id: u32, user: &str, pass: &str| match (user, pass) {
        ("alice", "secret") => dovecot::ok(id, "alice@example.org", &[("quota", "1G")]),
        ("down", _) => dovecot::fail(id, Some("try later"), None, true),
        _ => dovecot::fail(id, Some("Authentication failed"), Some(user), false),
    };
    line_server(
        stream,
        greeting,
        move |line| match dovecot::parse_client_line(line).unwrap() {
            ClientCommand::Version { major, minor } => {
                assert_eq!((major, minor), (1, 2));
                saw_version = true;
                String::new()
            }
            ClientCommand::Cpid(pid) => {
                assert!(saw_version && pid == std::process::id());
                String::new()
            }
            ClientCommand::Auth(req) => {
                assert_eq!(req.service.as_deref(), Some("smtp"));
                assert!(req.secured);
                // A stale reply first: the client must skip it.
                let stale = dovecot::fail(req.id + 1000, None, None, false);
                match req.mechanism.as_str() {
                    "PLAIN" => match Plain::decode(req.initial_response.as_deref().unwrap_or("")) {
                        Ok(c) => stale + &verdict(req.id, &c.authcid, c.password.expose()),
                        Err(_) => dovecot::fail(req.id, Some("malformed"), None, false),
                    },
                    _ => {
                        let mut login = LoginMechanism::new();
                        let step = login.start(req.initial_response.as_deref()).unwrap();
                        logins.insert(req.id, login);
                        let LoginStep::Challenge(c) = step else {
                            panic!("challenge expected")
                        };
                        stale + &dovecot::cont(req.id, c)
                    }
                }
            }
            ClientCommand::Cont { id, data } => {
                let login = logins.get_mut(&id).unwrap();
                match login.step(&data).unwrap() {
                    LoginStep::Challenge(c) => dovecot::cont(id, c),
                    LoginStep::Done(c) => verdict(id, &c.username, c.password.expose()),
                }
            }
            ClientCommand::Cancel { .. } => String::new(),
        },
    )
    .await;
}

fn params() -> AuthParams {
    AuthParams {
        secured: true,
        rip: "192.0.2.9".parse().ok(),
        ..AuthParams::new("smtp")
    }
}

#[tokio::test]
async fn auth_client_plain_and_login() {
    let (_dir, path, listener) = listen();
    spawn_server(listener, auth_server);
    let mut client = AuthClient::connect(&path).await.unwrap();
    assert_eq!(client.mechanisms(), [Mech::plain(), Mech::login()]);
    assert!(client.has_mechanism("login"));
    assert_eq!(
        (client.server_pid(), client.connection_id()),
        (Some(4321), Some(9))
    );

    let ok = AuthOutcome::Ok {
        user: "alice@example.org".into(),
        extra: vec![("quota".into(), "1G".into())],
    };
    assert_eq!(
        client.plain("alice", "secret", &params()).await.unwrap(),
        ok
    );
    assert_eq!(
        client.login("alice", "secret", &params()).await.unwrap(),
        ok
    );
    let refused = AuthOutcome::Fail {
        reason: Some("Authentication failed".into()),
        temp: false,
    };
    assert_eq!(
        client.plain("alice", "wrong", &params()).await.unwrap(),
        refused
    );
    assert_eq!(
        client.login("alice", "wrong", &params()).await.unwrap(),
        refused
    );
    let temp = AuthOutcome::Fail {
        reason: Some("try later".into()),
        temp: true,
    };
    assert_eq!(client.plain("down", "x", &params()).await.unwrap(), temp);

    // Step by step, with an Outlook-style initial user name.
    let step = client
        .authenticate("LOGIN", &params(), Some(b"alice"))
        .await
        .unwrap();
    assert_eq!(step, AuthStep::Challenge(b"Password:".to_vec()));
    assert_eq!(
        client.respond(b"secret").await.unwrap(),
        AuthStep::Done(ok.clone())
    );

    // Mistakes that leave the connection usable.
    let err = client.plain_or_cram().await.unwrap_err();
    assert!(matches!(err, ClientError::UnsupportedMechanism(ref m) if m == "CRAM-MD5"));
    assert!(matches!(
        client.respond(b"x").await,
        Err(ClientError::Misuse(_))
    ));
    assert_eq!(
        client.plain("alice", "secret", &params()).await.unwrap(),
        ok
    );
}

impl AuthClient {
    async fn plain_or_cram(&mut self) -> Result<AuthStep, ClientError> {
        self.authenticate("cram-md5", &params(), None).await
    }
}

#[tokio::test]
async fn auth_client_rejects_wrong_version_and_hangs() {
    let (_dir, path, listener) = listen();
    spawn_server(listener, |stream| {
        line_server(stream, "VERSION\t2\t0\n".into(), |_| String::new())
    });
    assert!(matches!(
        AuthClient::connect(&path).await,
        Err(ClientError::Version(2))
    ));

    let (_dir2, path, listener) = listen();
    // Greets, then never answers an AUTH.
    spawn_server(listener, |stream| {
        let greeting = dovecot::handshake(&[Mech::plain()], 1, 1, [0; 16]);
        line_server(stream, greeting, |_| String::new())
    });
    let mut client = AuthClient::connect_with_timeout(&path, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(matches!(
        client.plain("a", "b", &params()).await,
        Err(ClientError::Timeout)
    ));
    assert!(matches!(
        client.plain("a", "b", &params()).await,
        Err(ClientError::Unusable)
    ));
}
