//! STARTTLS and AUTH against a scripted fake server.

mod common;

use common::{connect, self_signed_acceptor, tcp_server};
use postern_smtp_client::tls::{CertCheck, connector, server_name};
use postern_smtp_client::{ClientError, Flavor, OutRcpt, Outgoing};

#[tokio::test]
async fn starttls_then_auth_plain_then_a_message() {
    let acceptor = self_signed_acceptor();
    let (target, server) = tcp_server(async move |mut p| {
        p.handshake("EHLO client.example.org", &["PIPELINING", "STARTTLS"])
            .await;
        p.expect("STARTTLS").await;
        p.say("220 2.0.0 go ahead\r\n").await;
        p.start_tls(&acceptor).await;
        p.hello(
            "EHLO client.example.org",
            &["PIPELINING", "AUTH PLAIN LOGIN"],
        )
        .await;
        // \0user\0secret
        p.expect("AUTH PLAIN AHVzZXIAc2VjcmV0").await;
        p.say("235 2.7.0 ok\r\n").await;
        p.expect("MAIL FROM:<a@example.org>").await;
        p.expect("RCPT TO:<x@example.org>").await;
        p.expect("DATA").await;
        p.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        p.body().await;
        p.say("250 2.0.0 queued\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    assert!(client.capabilities().starttls && client.tls().is_none());
    client
        .starttls(
            &connector(CertCheck::Any),
            server_name("mx.example.org").unwrap(),
        )
        .await
        .unwrap();
    assert!(
        client.tls().unwrap().starts_with("TLSv1"),
        "{:?}",
        client.tls()
    );
    assert_eq!(client.capabilities().auth, ["PLAIN", "LOGIN"]);
    client.auth("user", "secret").await.unwrap();
    let tx = Outgoing::new(
        Some("a@example.org".into()),
        vec![OutRcpt::new("x@example.org")],
        b"hi\r\n",
    );
    let r = client.send(&tx).await.unwrap();
    assert_eq!(r[0].reply.code, 250);
    server.await.unwrap();
}

#[tokio::test]
async fn auth_login_and_a_refusal() {
    let (target, server) = tcp_server(async move |mut p| {
        p.handshake("EHLO", &["AUTH LOGIN"]).await;
        p.expect("AUTH LOGIN").await;
        p.say("334 VXNlcm5hbWU6\r\n").await;
        p.expect("dXNlcg==").await;
        p.say("334 UGFzc3dvcmQ6\r\n").await;
        p.expect("d3Jvbmc=").await;
        p.say("535 5.7.8 bad credentials\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    match client.auth("user", "wrong").await {
        Err(ClientError::Rejected(r)) => assert_eq!(r.code, 535),
        other => panic!("{other:?}"),
    }
    server.await.unwrap();
}

#[tokio::test]
async fn refused_starttls_leaves_plain_text_usable_and_bad_certs_fail_verification() {
    let (target, server) = tcp_server(async move |mut p| {
        p.handshake("EHLO", &["STARTTLS"]).await;
        p.expect("STARTTLS").await;
        p.say("454 4.7.0 TLS not available\r\n").await;
        p.expect("QUIT").await;
        p.say("221 bye\r\n").await;
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let err = client
        .starttls(
            &connector(CertCheck::Any),
            server_name("mx.example.org").unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Rejected(ref r) if r.code == 454),
        "{err:?}"
    );
    assert!(client.is_usable());
    client.quit().await.unwrap();
    server.await.unwrap();

    // A self-signed certificate does not pass the webpki check.
    let acceptor = self_signed_acceptor();
    let (target, server) = tcp_server(async move |mut p| {
        p.handshake("EHLO", &["STARTTLS"]).await;
        p.expect("STARTTLS").await;
        p.say("220 go\r\n").await;
        let done = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            p.try_start_tls(&acceptor),
        )
        .await;
        assert_ne!(done, Ok(true), "the client took a self-signed certificate");
    })
    .await;
    let mut client = connect(&target, Flavor::Smtp).await;
    let err = client
        .starttls(
            &connector(CertCheck::WebPki),
            server_name("mx.example.org").unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
    assert!(!client.is_usable());
    server.await.unwrap();
}
