//! What goes wrong: refusals, timeouts, malformed replies, closed connections.

mod common;

use std::time::Duration;

use common::{connect, quick, tcp_server, unix_server};
use postern_smtp_client::{Client, ClientError, Flavor, OutRcpt, Outgoing, Step, Target, Timeouts};

fn tx() -> Outgoing<'static> {
    Outgoing::new(
        Some("a@example.org".into()),
        vec![OutRcpt::new("x@example.org"), OutRcpt::new("y@example.org")],
        b"x\r\n",
    )
}

#[tokio::test]
async fn mail_refused_is_rejected_for_all() {
    for pipelining in [true, false] {
        let (target, server) = tcp_server(async move |mut p| {
            p.handshake("EHLO", if pipelining { &["PIPELINING"] } else { &[] })
                .await;
            p.expect("MAIL").await;
            if pipelining {
                for command in ["RCPT", "RCPT", "DATA"] {
                    p.expect(command).await;
                }
                p.say("550 5.7.1 go away\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n")
                    .await;
                p.say("503 5.5.1 no valid recipients\r\n").await;
            } else {
                p.say("550 5.7.1 go away\r\n").await;
            }
            // Still in step: the next transaction goes through.
            p.expect("MAIL").await;
            p.say("452 4.3.1 full\r\n").await;
            if pipelining {
                for _ in 0..3 {
                    p.line().await;
                }
                p.say("503 no\r\n503 no\r\n503 no\r\n").await;
            }
        })
        .await;
        let mut client = connect(&target, Flavor::Smtp).await;
        let err = client.send(&tx()).await.unwrap_err();
        let ClientError::Rejected(reply) = &err else {
            panic!("expected Rejected, got {err:?}");
        };
        assert_eq!(reply.to_string(), "550 5.7.1 go away");
        assert!(!err.is_temporary());
        assert!(client.is_usable());
        let err = client.send(&tx()).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Rejected(r) if r.code == 452),
            "{err:?}"
        );
        assert!(err.is_temporary());
        server.await.unwrap();
    }
}

#[tokio::test]
async fn greeting_421_is_a_temporary_rejection() {
    let (target, _dir, server) = unix_server(async |mut p| {
        p.say("421-4.3.2 too busy\r\n421 4.3.2 come back later\r\n")
            .await;
    })
    .await;
    let err = Client::connect(&target, Flavor::Lmtp, "c", quick())
        .await
        .unwrap_err();
    let ClientError::Rejected(reply) = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert_eq!(reply.text, "too busy come back later");
    assert!(err.is_temporary());
    server.await.unwrap();
}

#[tokio::test]
async fn lhlo_refused_is_rejected() {
    let (target, server) = tcp_server(async |mut p| {
        p.say("220 hi\r\n").await;
        p.expect("LHLO").await;
        p.say("501 5.5.4 bad name\r\n").await;
    })
    .await;
    let err = Client::connect(&target, Flavor::Lmtp, "c", quick())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected(r) if r.code == 501),
        "{err:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn silent_server_times_out() {
    let (target, _dir, server) = unix_server(async |mut p| {
        p.closed().await;
    })
    .await;
    let timeouts = Timeouts::all(Duration::from_millis(200));
    let err = Client::connect(&target, Flavor::Lmtp, "c", timeouts)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout(Step::Greeting)),
        "{err:?}"
    );
    assert!(err.is_temporary());
    server.await.unwrap();
}

#[tokio::test]
async fn missing_final_reply_times_out() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("EHLO", &["PIPELINING"]).await;
        for _ in 0..4 {
            p.line().await;
        }
        p.say("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n").await;
        p.body().await;
        p.closed().await;
    })
    .await;
    let mut timeouts = quick();
    timeouts.final_reply = Duration::from_millis(200);
    let mut client = Client::connect(&target, Flavor::Smtp, "c", timeouts)
        .await
        .unwrap();
    let err = client.send(&tx()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout(Step::FinalReply)),
        "{err:?}"
    );
    assert!(!client.is_usable());
    assert!(matches!(client.send(&tx()).await, Err(ClientError::Closed)));
    client.quit().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn malformed_reply_is_a_protocol_error() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("EHLO", &[]).await;
        p.expect("MAIL").await;
        p.say("OK then\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let err = client.send(&tx()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol(m) if m.contains("OK then")),
        "{err:?}"
    );
    assert!(!client.is_usable());
    server.await.unwrap();
}

#[tokio::test]
async fn server_closing_mid_transaction() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("EHLO", &[]).await;
        p.expect("MAIL").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let err = client.send(&tx()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Closed | ClientError::Io(_)),
        "{err:?}"
    );
    assert!(!client.is_usable());
    server.await.unwrap();
}

#[tokio::test]
async fn rcpt_421_fails_the_rest_and_breaks_the_connection() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("EHLO", &[]).await;
        p.expect("MAIL").await;
        p.say("250 ok\r\n").await;
        p.expect("RCPT TO:<x@").await;
        p.say("250 ok\r\n").await;
        p.expect("RCPT TO:<y@").await;
        p.say("421 4.4.2 shutting down\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let results = client.send(&tx()).await.unwrap();
    assert!(results.iter().all(|r| r.reply.code == 421), "{results:?}");
    assert!(!client.is_usable());
    server.await.unwrap();
}

#[tokio::test]
async fn nothing_listening() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Unix(dir.path().join("nobody"));
    let err = Client::connect(&target, Flavor::Lmtp, "c", quick())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
}
