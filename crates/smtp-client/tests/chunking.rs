//! LMTP with `CHUNKING`: the whole transaction in one write (`MAIL`, `RCPT`s, `BDAT … LAST`
//! and the body), the replies read in order, and every way it can go wrong.

mod common;

use common::{Peer, Recorded, Writes, pipe_server, quick};
use postern_smtp_client::{Client, ClientError, Flavor, OutRcpt, Outgoing, RcptResult};

const MESSAGE: &[u8] = b"Subject: test\r\n\r\nhello\r\n";
const CHUNKING: &[&str] = &["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING"];

fn rcpts(addresses: &[&str]) -> Vec<OutRcpt> {
    addresses.iter().map(|a| OutRcpt::new(*a)).collect()
}

fn summary(results: &[RcptResult]) -> Vec<String> {
    results.iter().map(|r| r.reply.to_string()).collect()
}

async fn client(stream: Recorded, flavor: Flavor, writes: &Writes) -> Client {
    let c = Client::over(stream, flavor, "client.example.org", quick())
        .await
        .unwrap();
    writes.take();
    c
}

/// Reads `MAIL`, the `RCPT`s and the `BDAT … LAST` line, then its chunk; returns the chunk.
async fn transaction(p: &mut Peer, rcpts: usize) -> Vec<u8> {
    p.expect("MAIL FROM:").await;
    for _ in 0..rcpts {
        p.expect("RCPT TO:").await;
    }
    let bdat = p.expect("BDAT ").await;
    let size = bdat
        .strip_prefix("BDAT ")
        .and_then(|s| s.strip_suffix(" LAST"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not BDAT n LAST: {bdat:?}"));
    p.octets(size).await
}

#[tokio::test]
async fn one_write_and_per_recipient_replies() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO client.example.org", CHUNKING).await;
        for _ in 0..2 {
            assert_eq!(transaction(&mut p, 3).await, MESSAGE);
            // All replies in one go, as lmtp-deliver sends them.
            p.say(concat!(
                "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 <b@example.org> unknown\r\n",
                "250 2.1.5 ok\r\n250 2.0.0 <a@example.org> saved\r\n",
                "452-4.2.2 <c@example.org>\r\n452 4.2.2 mailbox full\r\n"
            ))
            .await;
        }
        p.expect("QUIT").await;
        p.say("221 2.0.0 bye\r\n").await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    assert!(c.capabilities().chunking);
    let tx = Outgoing::new(
        Some("alice@example.org".into()),
        rcpts(&["a@example.org", "b@example.org", "c@example.org"]),
        MESSAGE,
    );
    let want = [
        "250 2.0.0 <a@example.org> saved",
        "550 5.1.1 <b@example.org> unknown",
        "452 4.2.2 <c@example.org> mailbox full",
    ];
    for _ in 0..2 {
        let results = c.send(&tx).await.unwrap();
        assert_eq!(summary(&results), want);
        assert_eq!(
            writes.take(),
            [concat!(
                "MAIL FROM:<alice@example.org>\r\n",
                "RCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n",
                "BDAT 24 LAST\r\n",
                "Subject: test\r\n\r\nhello\r\n"
            )
            .as_bytes()],
            "one write per transaction"
        );
        assert!(c.is_usable() && !c.in_transaction());
    }
    c.quit().await.unwrap();
    server.await.unwrap();
}

/// The body goes as it is: no dot-stuffing, a line of one dot included; the trace fields
/// first; SIZE counts both.
#[tokio::test]
async fn body_is_not_stuffed_and_trace_comes_first() {
    let message: &[u8] = b"Subject: dots\r\n\r\n.\r\n..two\r\n.\r\n";
    let trace: &[u8] = b"Received: from x\r\n";
    let (stream, writes, server) = pipe_server(async move |mut p| {
        p.handshake("LHLO", &["PIPELINING", "CHUNKING", "SIZE 1000"])
            .await;
        let mail = p.expect("MAIL FROM:<>").await;
        assert_eq!(mail, "MAIL FROM:<> SIZE=48");
        p.expect("RCPT TO:<a@example.org>").await;
        p.expect("BDAT 48 LAST").await;
        let body = p.octets(48).await;
        assert_eq!(body, [trace, message].concat());
        p.say("250 ok\r\n250 ok\r\n250 2.0.0 saved\r\n").await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org"]), message).with_trace(trace);
    let results = c.send(&tx).await.unwrap();
    assert_eq!(summary(&results), ["250 2.0.0 saved"]);
    assert_eq!(writes.take().len(), 1);
    server.await.unwrap();
}

/// Bare LFs and a last line without CRLF: the chunk carries what `DATA` would have (CRLF
/// line ends), and its size counts those.
#[tokio::test]
async fn line_ends_made_canonical_as_data_would() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        let body = transaction(&mut p, 1).await;
        assert_eq!(body, b"Subject: lf\r\n\r\nbare\r\nend\r\n");
        p.say("250 ok\r\n250 ok\r\n250 2.0.0 saved\r\n").await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org"]), b"Subject: lf\n\nbare\nend");
    assert_eq!(summary(&c.send(&tx).await.unwrap()), ["250 2.0.0 saved"]);
    server.await.unwrap();
}

/// A message larger than one block: the commands and the first block in one write, the
/// rest written straight from the message, every octet in order.
#[tokio::test]
async fn large_message_in_blocks() {
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 1 << 20 {
        big.extend_from_slice(b".a line of the body, starting with a dot\r\n");
    }
    let want = big.clone();
    let (stream, writes, server) = pipe_server(async move |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        let body = transaction(&mut p, 1).await;
        assert!(body == want, "the chunk is the message");
        p.say("250 ok\r\n250 ok\r\n250 2.0.0 saved\r\n").await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org"]), &big);
    assert_eq!(summary(&c.send(&tx).await.unwrap()), ["250 2.0.0 saved"]);
    let w = writes.take();
    assert_eq!(w[0].len(), 64 * 1024, "commands and the first block");
    assert!(w[0].starts_with(b"MAIL FROM:<>\r\nRCPT TO:<a@example.org>\r\nBDAT "));
    assert!(w.iter().all(|w| w.len() <= 64 * 1024));
    assert_eq!(
        w.iter().map(Vec::len).sum::<usize>(),
        "MAIL FROM:<>\r\nRCPT TO:<a@example.org>\r\n".len()
            + format!("BDAT {} LAST\r\n", big.len()).len()
            + big.len()
    );
    server.await.unwrap();
}

/// Every recipient refused: the server refuses the `BDAT` with one reply (and discards its
/// octets); the transaction is reset and the connection stays in step.
#[tokio::test]
async fn all_recipients_refused() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        transaction(&mut p, 2).await;
        p.say(concat!(
            "250 2.1.0 ok\r\n550 5.1.1 <a@example.org> unknown\r\n",
            "450 4.2.1 <b@example.org> try later\r\n503 5.5.1 no valid recipients\r\n"
        ))
        .await;
        p.expect("RSET").await;
        p.say("250 2.0.0 ok\r\n").await;
        transaction(&mut p, 1).await;
        p.say("250 ok\r\n250 ok\r\n250 2.0.0 saved\r\n").await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org", "b@example.org"]), MESSAGE);
    let results = c.send(&tx).await.unwrap();
    assert_eq!(
        summary(&results),
        [
            "550 5.1.1 <a@example.org> unknown",
            "450 4.2.1 <b@example.org> try later"
        ]
    );
    assert!(c.is_usable() && !c.in_transaction());
    let tx = Outgoing::new(None, rcpts(&["c@example.org"]), MESSAGE);
    assert_eq!(summary(&c.send(&tx).await.unwrap()), ["250 2.0.0 saved"]);
    server.await.unwrap();
}

/// `MAIL` refused: the `RCPT`s and the `BDAT` are refused too, and read; the refusal
/// applies to every recipient; the connection stays in step.
#[tokio::test]
async fn mail_refused() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        transaction(&mut p, 2).await;
        p.say(concat!(
            "550 5.7.1 sender refused\r\n503 5.5.1 need MAIL command\r\n",
            "503 5.5.1 need MAIL command\r\n503 5.5.1 need MAIL command\r\n"
        ))
        .await;
        // No RSET: nothing was open.
        transaction(&mut p, 1).await;
        p.say("250 ok\r\n250 ok\r\n250 2.0.0 saved\r\n").await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org", "b@example.org"]), MESSAGE);
    match c.send(&tx).await {
        Err(ClientError::Rejected(r)) => assert_eq!(r.to_string(), "550 5.7.1 sender refused"),
        other => panic!("{other:?}"),
    }
    assert!(c.is_usable() && !c.in_transaction());
    let tx = Outgoing::new(None, rcpts(&["c@example.org"]), MESSAGE);
    assert_eq!(summary(&c.send(&tx).await.unwrap()), ["250 2.0.0 saved"]);
    server.await.unwrap();
}

/// The message refused after the body, for one recipient temporarily, for the other for
/// good: each recipient gets its own reply.
#[tokio::test]
async fn bdat_refused_per_recipient() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        transaction(&mut p, 2).await;
        p.say(concat!(
            "250 ok\r\n250 ok\r\n250 ok\r\n",
            "451 4.3.0 <a@example.org> disk trouble\r\n552 5.2.2 <b@example.org> over quota\r\n"
        ))
        .await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org", "b@example.org"]), MESSAGE);
    let results = c.send(&tx).await.unwrap();
    assert!(results[0].reply.is_temporary() && results[1].reply.is_permanent());
    assert!(c.is_usable() && !c.in_transaction());
    server.await.unwrap();
}

/// The server goes away in the middle of the body: an error, nobody delivered, the
/// connection not used again.
#[tokio::test]
async fn server_closes_mid_body() {
    let big = vec![b'x'; 300 * 1024];
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        p.expect("MAIL FROM:").await;
        p.expect("RCPT TO:").await;
        p.expect("BDAT 307202 LAST").await;
        p.octets(1000).await;
        drop(p);
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org"]), &big);
    let err = c.send(&tx).await.unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
    assert!(!c.is_usable());
    server.await.unwrap();
}

/// The server closes after the whole message but before any reply: an error (each
/// recipient is tried again later), not a delivery.
#[tokio::test]
async fn server_closes_before_replying() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        transaction(&mut p, 1).await;
        p.say("250 ok\r\n250 ok\r\n").await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org"]), MESSAGE);
    let err = c.send(&tx).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed), "{err:?}");
    assert!(!c.is_usable() && c.in_transaction());
    server.await.unwrap();
}

/// Lost between the per-recipient replies: the first keeps its reply, the second gets a
/// made-up 451 (so the first is not delivered twice).
#[tokio::test]
async fn lost_between_final_replies() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        transaction(&mut p, 2).await;
        p.say("250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 <a@example.org> saved\r\n")
            .await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org", "b@example.org"]), MESSAGE);
    let results = c.send(&tx).await.unwrap();
    assert_eq!(
        results[0].reply.to_string(),
        "250 2.0.0 <a@example.org> saved"
    );
    assert_eq!(results[1].reply.code, 451);
    assert!(!c.is_usable());
    server.await.unwrap();
}

/// A 421 instead of a `RCPT` reply: the server is going away; it answers for the accepted
/// recipients and the rest; the connection is not used again.
#[tokio::test]
async fn closing_421_mid_transaction() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        transaction(&mut p, 3).await;
        p.say("250 ok\r\n250 ok\r\n421 4.3.2 shutting down\r\n")
            .await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(
        None,
        rcpts(&["a@example.org", "b@example.org", "c@example.org"]),
        MESSAGE,
    );
    let results = c.send(&tx).await.unwrap();
    assert!(results.iter().all(|r| r.reply.code == 421), "{results:?}");
    assert!(!c.is_usable());
    server.await.unwrap();
}

/// More replies than the transaction asked for: the connection is out of step and is not
/// used again (the answers already read stand).
#[tokio::test]
async fn extra_replies_retire_the_connection() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", CHUNKING).await;
        transaction(&mut p, 1).await;
        p.say("250 ok\r\n250 ok\r\n250 2.0.0 saved\r\n250 2.0.0 again?\r\n")
            .await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org"]), MESSAGE);
    assert_eq!(summary(&c.send(&tx).await.unwrap()), ["250 2.0.0 saved"]);
    assert!(!c.is_usable());
    server.await.unwrap();
}

/// `DATA` as before: to an SMTP server even with `CHUNKING`, and to an LMTP server with
/// `CHUNKING` but no `PIPELINING`.
#[tokio::test]
async fn data_without_pipelining_or_to_smtp() {
    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("EHLO", CHUNKING).await;
        p.expect("MAIL FROM:").await;
        p.expect("RCPT TO:").await;
        p.expect("DATA").await;
        p.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        assert_eq!(p.body().await, ["Subject: test", "", "hello"]);
        p.say("250 2.0.0 queued\r\n").await;
    });
    let mut c = client(stream, Flavor::Smtp, &writes).await;
    let tx = Outgoing::new(None, rcpts(&["a@example.org"]), MESSAGE);
    assert_eq!(summary(&c.send(&tx).await.unwrap()), ["250 2.0.0 queued"]);
    server.await.unwrap();

    let (stream, writes, server) = pipe_server(async |mut p| {
        p.handshake("LHLO", &["CHUNKING"]).await;
        p.expect("MAIL FROM:").await;
        p.say("250 ok\r\n").await;
        p.expect("RCPT TO:").await;
        p.say("250 ok\r\n").await;
        p.expect("DATA").await;
        p.say("354 go\r\n").await;
        assert_eq!(p.body().await, ["Subject: test", "", "hello"]);
        p.say("250 2.0.0 saved\r\n").await;
    });
    let mut c = client(stream, Flavor::Lmtp, &writes).await;
    assert_eq!(summary(&c.send(&tx).await.unwrap()), ["250 2.0.0 saved"]);
    server.await.unwrap();
}
