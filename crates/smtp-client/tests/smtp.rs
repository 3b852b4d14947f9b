//! SMTP against a scripted fake server: pipelining or not, parameters, dot-stuffing.

mod common;

use std::time::Duration;

use common::{connect, tcp_server, unix_server};
use postern_mail_types::{Notify, Ret};
use postern_smtp_client::{Flavor, OutRcpt, Outgoing};

fn rcpt(address: &str) -> OutRcpt {
    OutRcpt::new(address)
}

#[tokio::test]
async fn pipelined_commands_arrive_before_any_reply() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("EHLO client.example.org", &["PIPELINING", "SIZE 1000000"])
            .await;
        // The server reads MAIL, both RCPTs and DATA before answering anything: a client
        // that waited for the MAIL reply would time out here.
        p.expect("MAIL FROM:<a@example.org> SIZE=7").await;
        p.expect("RCPT TO:<x@example.org>").await;
        p.expect("RCPT TO:<y@example.org>").await;
        p.expect("DATA").await;
        p.say("250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n")
            .await;
        assert_eq!(p.body().await, ["hello"]);
        p.say("250 2.0.0 queued as 42\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let tx = Outgoing::new(
        Some("a@example.org".into()),
        vec![rcpt("x@example.org"), rcpt("y@example.org")],
        b"hello\r\n",
    );
    let results = client.send(&tx).await.unwrap();
    assert_eq!(results.len(), 2);
    for result in &results {
        assert_eq!(result.reply.to_string(), "250 2.0.0 queued as 42");
    }
    server.await.unwrap();
}

#[tokio::test]
async fn without_pipelining_waits_for_each_reply() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("EHLO", &["8BITMIME"]).await;
        for (command, reply) in [
            ("MAIL FROM:<> BODY=8BITMIME", "250 ok\r\n"),
            ("RCPT TO:<x@example.org>", "250 ok\r\n"),
            ("RCPT TO:<y@example.org>", "550 5.1.1 no\r\n"),
            ("DATA", "354 go\r\n"),
        ] {
            p.expect(command).await;
            p.quiet_for(100).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            p.say(reply).await;
        }
        p.body().await;
        p.quiet_for(100).await;
        p.say("250 2.0.0 done\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let mut tx = Outgoing::new(
        None,
        vec![rcpt("x@example.org"), rcpt("y@example.org")],
        b"caf\xc3\xa9\r\n",
    );
    tx.body_8bit = true;
    let results = client.send(&tx).await.unwrap();
    assert_eq!(results[0].reply.to_string(), "250 2.0.0 done");
    assert_eq!(results[1].reply.to_string(), "550 5.1.1 no");
    server.await.unwrap();
}

fn dsn_tx(message: &[u8]) -> Outgoing<'_> {
    let mut r = rcpt("x@example.org");
    r.notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    r.orcpt = Some("rfc822;x@example.org".into());
    let mut tx = Outgoing::new(Some("a@example.org".into()), vec![r], message);
    tx.ret = Some(Ret::Headers);
    tx.envid = Some("Q1=2".into());
    tx.body_8bit = true;
    tx
}

#[tokio::test]
async fn dsn_parameters_only_when_advertised() {
    for advertised in [true, false] {
        let caps: &[&str] = if advertised {
            &["PIPELINING", "DSN"]
        } else {
            &["PIPELINING"]
        };
        let (target, server) = tcp_server(async move |mut p| {
            p.handshake("EHLO", caps).await;
            let (mail, rcpt) = (p.line().await, p.line().await);
            p.expect("DATA").await;
            p.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
            p.body().await;
            p.say("250 ok\r\n").await;
            (mail, rcpt)
        })
        .await;
        let mut client = connect(&target, Flavor::Smtp).await;
        client.send(&dsn_tx(b"x\r\n")).await.unwrap();
        let (mail, rcpt) = server.await.unwrap();
        if advertised {
            assert_eq!(mail, "MAIL FROM:<a@example.org> RET=HDRS ENVID=Q1+3D2");
            assert_eq!(
                rcpt,
                "RCPT TO:<x@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@example.org"
            );
        } else {
            // No 8BITMIME either: the body goes as it is, without BODY=.
            assert_eq!(mail, "MAIL FROM:<a@example.org>");
            assert_eq!(rcpt, "RCPT TO:<x@example.org>");
        }
    }
}

#[tokio::test]
async fn body_is_dot_stuffed() {
    let (target, _dir, server) = unix_server(async |mut p| {
        p.handshake("EHLO", &["PIPELINING"]).await;
        for _ in 0..3 {
            p.line().await;
        }
        p.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        let body = p.body().await;
        p.say("250 ok\r\n").await;
        body
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let message = b".starts with a dot\r\n.\r\n..two\r\nmiddle . dot\r\nno final CRLF";
    let tx = Outgoing::new(None, vec![rcpt("x@example.org")], message);
    client.send(&tx).await.unwrap();
    assert_eq!(
        server.await.unwrap(),
        [
            "..starts with a dot",
            "..",
            "...two",
            "middle . dot",
            "no final CRLF"
        ]
    );
}

#[tokio::test]
async fn all_recipients_refused_means_rset_and_no_data() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("EHLO", &[]).await;
        p.expect("MAIL").await;
        p.say("250 ok\r\n").await;
        p.expect("RCPT").await;
        p.say("550 5.1.1 no\r\n").await;
        p.expect("RCPT").await;
        p.say("450 4.2.0 later\r\n").await;
        p.expect("RSET").await;
        p.say("250 ok\r\n").await;
        p.expect("QUIT").await;
        p.say("221 bye\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let tx = Outgoing::new(
        None,
        vec![rcpt("x@example.org"), rcpt("y@example.org")],
        b"x\r\n",
    );
    let results = client.send(&tx).await.unwrap();
    assert_eq!(results[0].reply.code, 550);
    assert_eq!(results[1].reply.code, 450);
    client.quit().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn all_recipients_refused_when_pipelining_sends_no_body() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("EHLO", &["PIPELINING"]).await;
        for command in ["MAIL", "RCPT", "DATA"] {
            p.expect(command).await;
        }
        p.say("250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n")
            .await;
        p.expect("RSET").await;
        p.say("250 ok\r\n").await;
        p.expect("QUIT").await;
        p.say("221 bye\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let tx = Outgoing::new(None, vec![rcpt("x@example.org")], b"x\r\n");
    let results = client.send(&tx).await.unwrap();
    assert_eq!(results[0].reply.to_string(), "550 5.1.1 no");
    client.quit().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn smtputf8_required_but_missing_fails_every_recipient_unsent() {
    let (target, server) = tcp_server(async |mut p| {
        p.handshake("EHLO", &["PIPELINING", "8BITMIME"]).await;
        p.expect("QUIT").await;
        p.say("221 bye\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let mut tx = Outgoing::new(
        None,
        vec![rcpt("jörg@example.org"), rcpt("x@example.org")],
        b"x\r\n",
    );
    tx.smtputf8 = true;
    let results = client.send(&tx).await.unwrap();
    for result in &results {
        assert_eq!(result.reply.code, 550);
        assert_eq!(result.reply.enhanced, Some((5, 6, 7)));
    }
    client.quit().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn helo_when_ehlo_is_refused() {
    let (target, server) = tcp_server(async |mut p| {
        p.say("220 old.example.org\r\n").await;
        p.expect("EHLO client.example.org").await;
        p.say("502 5.5.2 what?\r\n").await;
        p.expect("HELO client.example.org").await;
        p.say("250 old.example.org\r\n").await;
    })
    .await;
    let client = connect(&target, Flavor::Smtp).await;
    assert!(!client.capabilities().esmtp);
    assert_eq!(client.greeting().text, "old.example.org");
    server.await.unwrap();
}
