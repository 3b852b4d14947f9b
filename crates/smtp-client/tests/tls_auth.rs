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

/// A CA, and a server certificate it issued for `name` (PEM CA, acceptor).
fn ca_and_acceptor(name: &str) -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    (
        ca.pem(),
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
    )
}

#[tokio::test]
async fn required_starttls_checks_the_certificate_against_a_ca_file() {
    use postern_smtp_client::tls::ca_connector;
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, acceptor) = ca_and_acceptor("backend.example");
    let (other_pem, _) = ca_and_acceptor("backend.example");
    std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.path().join("other.pem"), &other_pem).unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    assert!(ca_connector(&dir.path().join("empty.pem")).is_err());
    assert!(ca_connector(&dir.path().join("missing.pem")).is_err());
    for (file, ok) in [("ca.pem", true), ("other.pem", false)] {
        let acceptor = acceptor.clone();
        let (target, server) = tcp_server(async move |mut p| {
            p.handshake("LHLO client.example.org", &["PIPELINING", "STARTTLS"])
                .await;
            p.expect("STARTTLS").await;
            p.say("220 2.0.0 go ahead\r\n").await;
            if ok {
                p.start_tls(&acceptor).await;
                p.hello("LHLO client.example.org", &["PIPELINING"]).await;
                true
            } else {
                p.try_start_tls(&acceptor).await
            }
        })
        .await;
        let mut client = connect(&target, Flavor::Lmtp).await;
        let connector = ca_connector(&dir.path().join(file)).unwrap();
        let r = client
            .starttls_policy(&connector, server_name("backend.example").unwrap(), true)
            .await;
        assert_eq!(r.is_ok(), ok, "{file}: {r:?}");
        assert_eq!(client.tls().is_some(), ok);
        if !ok {
            assert!(matches!(r, Err(ClientError::Tls(_))), "{r:?}");
            assert!(!client.is_usable());
        }
        drop(client);
        let _ = server.await;
    }
}

#[tokio::test]
async fn required_starttls_refuses_a_server_without_it() {
    let (target, server) = tcp_server(async move |mut p| {
        p.handshake("LHLO client.example.org", &["PIPELINING"])
            .await;
        // Nothing may come in plain text: the client gives up here.
        p.closed().await;
    })
    .await;
    let mut client = connect(&target, Flavor::Lmtp).await;
    let c = connector(CertCheck::Any);
    let name = server_name("backend.example").unwrap();
    let r = client.starttls_policy(&c, name.clone(), true).await;
    assert!(matches!(r, Err(ClientError::Tls(_))), "{r:?}");
    // Optional TLS: plain text goes on.
    client.starttls_policy(&c, name, false).await.unwrap();
    assert!(client.tls().is_none() && client.is_usable());
    drop(client);
    server.await.unwrap();
}
