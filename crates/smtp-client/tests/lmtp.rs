//! LMTP against a scripted fake server: per-recipient replies, reuse, lost connections.

mod common;

use common::{connect, tcp_server, unix_server};
use postern_smtp_client::{Flavor, OutRcpt, Outgoing, RcptResult};

const MESSAGE: &[u8] = b"Subject: test\r\n\r\nhello\r\n";

fn rcpts(addresses: &[&str]) -> Vec<OutRcpt> {
    addresses.iter().map(|a| OutRcpt::new(*a)).collect()
}

fn summary(results: &[RcptResult]) -> Vec<(String, String)> {
    results
        .iter()
        .map(|r| (r.address.clone(), r.reply.to_string()))
        .collect()
}

#[tokio::test]
async fn per_recipient_replies_in_order() {
    let (target, _dir, server) = unix_server(async |mut p| {
        p.handshake(
            "LHLO client.example.org",
            &["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"],
        )
        .await;
        // Everything up to DATA arrives before the server says a word.
        p.expect("MAIL FROM:<alice@example.org>").await;
        p.expect("RCPT TO:<a@example.org>").await;
        p.expect("RCPT TO:<b@example.org>").await;
        p.expect("RCPT TO:<c@example.org>").await;
        p.expect("DATA").await;
        p.say("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 <b@example.org> unknown\r\n")
            .await;
        p.say("250 2.1.5 ok\r\n354 go ahead\r\n").await;
        assert_eq!(p.body().await, ["Subject: test", "", "hello"]);
        p.say("250 2.0.0 <a@example.org> saved\r\n").await;
        p.say("452-4.2.2 <c@example.org>\r\n452 4.2.2 mailbox full\r\n")
            .await;
        p.expect("QUIT").await;
        p.say("221 2.0.0 bye\r\n").await;
        p.closed().await;
    })
    .await;
    let mut client = connect(&target, Flavor::Lmtp).await;
    assert!(client.capabilities().pipelining);
    let tx = Outgoing::new(
        Some("alice@example.org".into()),
        rcpts(&["a@example.org", "b@example.org", "c@example.org"]),
        MESSAGE,
    );
    let results = client.send(&tx).await.unwrap();
    assert_eq!(
        summary(&results),
        [
            (
                "a@example.org".into(),
                "250 2.0.0 <a@example.org> saved".into()
            ),
            (
                "b@example.org".into(),
                "550 5.1.1 <b@example.org> unknown".into()
            ),
            (
                "c@example.org".into(),
                "452 4.2.2 <c@example.org> mailbox full".into()
            ),
        ]
    );
    assert!(results[2].reply.is_temporary());
    client.quit().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn connection_reused_for_two_transactions() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("LHLO", &["PIPELINING"]).await;
        for n in 1..=2 {
            p.expect(&format!("MAIL FROM:<s{n}@example.org>")).await;
            p.expect(&format!("RCPT TO:<r{n}@example.org>")).await;
            p.expect("DATA").await;
            p.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
            assert_eq!(p.body().await, [format!("message {n}")]);
            p.say(&format!("250 2.0.0 saved {n}\r\n")).await;
        }
        p.expect("QUIT").await;
        p.say("221 bye\r\n").await;
        p.seen
    })
    .await;
    let mut client = connect(&target, Flavor::Lmtp).await;
    for n in 1..=2 {
        let body = format!("message {n}\r\n");
        let tx = Outgoing::new(
            Some(format!("s{n}@example.org")),
            rcpts(&[&format!("r{n}@example.org")]),
            body.as_bytes(),
        );
        let results = client.send(&tx).await.unwrap();
        assert_eq!(results[0].reply.text, format!("saved {n}"));
        assert!(client.is_usable());
    }
    client.quit().await.unwrap();
    let seen = server.await.unwrap();
    assert!(!seen.iter().any(|l| l == "RSET"), "{seen:?}");
}

#[tokio::test]
async fn rset_before_reuse_after_refused_data() {
    let (target, _dir, server) = unix_server(async |mut p| {
        p.handshake("LHLO", &["PIPELINING"]).await;
        p.expect("MAIL").await;
        p.expect("RCPT").await;
        p.expect("DATA").await;
        p.say("250 ok\r\n250 ok\r\n451 4.3.0 try later\r\n").await;
        p.expect("RSET").await;
        p.say("250 ok\r\n").await;
        p.expect("MAIL").await;
        p.expect("RCPT").await;
        p.expect("DATA").await;
        p.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        p.body().await;
        p.say("250 2.0.0 saved\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Lmtp).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org"]), MESSAGE);
    let first = client.send(&tx).await.unwrap();
    assert_eq!(first[0].reply.to_string(), "451 4.3.0 try later");
    let second = client.send(&tx).await.unwrap();
    assert_eq!(second[0].reply.code, 250);
    server.await.unwrap();
}

#[tokio::test]
async fn lost_connection_keeps_replies_already_received() {
    let (target, _dir, server) = unix_server(async |mut p| {
        p.handshake("LHLO", &["PIPELINING"]).await;
        for _ in 0..4 {
            p.line().await;
        }
        p.say("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n").await;
        p.body().await;
        p.say("250 2.0.0 first saved\r\n").await;
        // …and the server dies before answering for the second recipient.
    })
    .await;
    let mut client = connect(&target, Flavor::Lmtp).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org", "b@example.org"]), MESSAGE);
    let results = client.send(&tx).await.unwrap();
    assert_eq!(results[0].reply.code, 250);
    assert_eq!(results[1].reply.code, 451);
    assert_eq!(results[1].reply.enhanced, Some((4, 4, 2)));
    assert!(!client.is_usable());
    server.await.unwrap();
}
