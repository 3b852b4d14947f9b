//! `STARTTLS` (with the command-injection case) and `AUTH`.

use std::sync::Arc;

use postern_smtp_session::{Action, Completion, PeerInfo, Session, SessionError};

use crate::common::{Driver, open_transaction, smtp_config};

#[test]
fn starttls_discards_buffered_plaintext() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    // CVE-2011-0411: commands pipelined after STARTTLS must not run after the handshake.
    let got = d.lines("STARTTLS\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@x.example>\r\n");
    assert_eq!(got, ["220 2.0.0 Ready to start TLS"]);
    assert_eq!(d.events, ["StartTls"]);
    assert!(d.session.peer().tls && d.session.wants_input());
    // Back to the state after the greeting: EHLO again, which no longer offers STARTTLS.
    assert_eq!(d.codes("MAIL FROM:<a@b.example>\r\n"), [503]);
    let ehlo = d.send("EHLO c\r\n").remove(0).to_string();
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(d.codes("STARTTLS\r\n"), [503]);
    open_transaction(&mut d, &["r@example.org"]);
    d.send("DATA\r\nx\r\n.\r\n");
    assert!(d.delivered[0].tls && d.delivered[0].peer.tls);
    assert_eq!(d.delivered[0].protocol(), "ESMTPS");
}

#[test]
fn input_during_the_handshake_is_discarded() {
    let mut d = Driver::smtp();
    d.auto_tls = false;
    d.send("EHLO c\r\nSTARTTLS\r\n");
    assert!(!d.session.wants_input());
    assert!(d.send("MAIL FROM:<evil@x.example>\r\n").is_empty());
    d.session.tls_started().unwrap();
    assert_eq!(d.codes("NOOP\r\n"), [250]);
    assert!(d.events.iter().all(|e| e != "CheckSender"));
    assert_eq!(d.session.tls_started(), Err(SessionError::UnexpectedTls));
}

#[test]
fn starttls_refusals() {
    let mut config = smtp_config();
    config.extensions.starttls = false;
    let mut d = Driver::new(config);
    assert_eq!(
        d.lines("STARTTLS\r\n"),
        ["502 5.5.1 Error: command not implemented"]
    );
    let mut d = Driver::smtp();
    assert_eq!(d.lines("STARTTLS now\r\n"), ["501 5.5.4 Syntax: STARTTLS"]);
    open_transaction(&mut d, &[]);
    assert_eq!(
        d.lines("STARTTLS\r\n"),
        ["503 5.5.1 Error: MAIL transaction in progress"]
    );
    let tls = PeerInfo {
        tls: true,
        ..PeerInfo::default()
    };
    let mut d = Driver::with_peer(smtp_config(), tls);
    assert_eq!(
        d.lines("STARTTLS\r\n"),
        ["503 5.5.1 Error: TLS already active"]
    );
}

#[test]
fn starttls_forgets_authentication() {
    let mut d = Driver::smtp();
    assert_eq!(d.codes("EHLO c\r\nAUTH PLAIN dGVzdA==\r\n"), [250, 235]);
    assert_eq!(d.session.authenticated(), Some("test"));
    d.send("STARTTLS\r\n");
    assert_eq!(d.session.authenticated(), None);
}

#[test]
fn auth_with_initial_response() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    assert_eq!(
        d.lines("AUTH plain dGVzdA==\r\n"),
        ["235 2.7.0 Authentication successful"]
    );
    assert_eq!(
        d.lines("AUTH PLAIN dGVzdA==\r\n"),
        ["503 5.5.1 Error: already authenticated"]
    );
    d.send("MAIL FROM:<a@b.example> AUTH=a+40b.example\r\nRCPT TO:<r@example.org>\r\nDATA\r\nx\r\n.\r\n");
    let tx = &d.delivered[0];
    assert_eq!(tx.authenticated.as_deref(), Some("test"));
    assert_eq!(tx.mail_params.auth.as_deref(), Some("a@b.example"));
    assert_eq!(tx.protocol(), "ESMTPA");
}

#[test]
fn auth_challenge_and_response() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    assert_eq!(d.lines("AUTH LOGIN\r\n"), ["334 VXNlcm5hbWU6"]);
    assert_eq!(d.lines("dGVzdA==\r\n"), ["334 UGFzc3dvcmQ6"]);
    assert_eq!(
        d.lines("c2VjcmV0\r\n"),
        ["235 2.7.0 Authentication successful"]
    );
    assert_eq!(d.events, ["Auth", "AuthResponse", "AuthResponse"]);

    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    // Pipelined: the response lines wait for their challenges.
    let got = d.lines("AUTH LOGIN\r\ndGVzdA==\r\nd3Jvbmc=\r\nNOOP\r\n");
    assert_eq!(
        got,
        [
            "334 VXNlcm5hbWU6",
            "334 UGFzc3dvcmQ6",
            "535 5.7.8 Authentication credentials invalid",
            "250 2.0.0 Ok"
        ]
    );
    assert_eq!(d.session.authenticated(), None);
}

#[test]
fn auth_cancelled() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    assert_eq!(d.lines("AUTH PLAIN\r\n"), ["334 "]);
    assert_eq!(d.lines("*\r\n"), ["501 5.0.0 Authentication cancelled"]);
    assert_eq!(d.events.last().map(String::as_str), Some("AuthCancel"));
    assert_eq!(
        d.lines("AUTH PLAIN *\r\n"),
        ["501 5.0.0 Authentication cancelled"]
    );
    assert_eq!(d.codes("AUTH PLAIN dGVzdA==\r\n"), [235]);
}

#[test]
fn auth_initial_response_equals_sign_is_empty() {
    let mut s = Session::new(Arc::new(smtp_config()), PeerInfo::default());
    let out = s.input(b"EHLO c\r\nAUTH PLAIN =\r\n");
    let auth = Action::Auth {
        mechanism: "PLAIN".into(),
        initial_response: Some(String::new()),
    };
    assert_eq!(out.last(), Some(&auth));
    let out = s
        .completed(Completion::AuthChallenge("abc".into()))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(s.input(b"xyz\r\n"), [Action::AuthResponse("xyz".into())]);
}

#[test]
fn auth_refusals() {
    let mut d = Driver::smtp();
    assert_eq!(
        d.lines("AUTH PLAIN\r\n"),
        ["503 5.5.1 Error: send HELO/EHLO first"]
    );
    d.send("EHLO c\r\n");
    assert_eq!(
        d.lines("AUTH CRAM-MD5\r\n"),
        ["504 5.5.4 Unrecognized authentication type"]
    );
    assert_eq!(d.codes("AUTH\r\n"), [501]);
    open_transaction(&mut d, &[]);
    assert_eq!(
        d.lines("AUTH PLAIN\r\n"),
        ["503 5.5.1 Error: MAIL transaction in progress"]
    );

    let mut config = smtp_config();
    config.extensions.auth.clear();
    let mut d = Driver::new(config);
    let ehlo = d.send("EHLO c\r\n").remove(0).to_string();
    assert!(!ehlo.contains("AUTH"));
    assert_eq!(
        d.lines("AUTH PLAIN\r\n"),
        ["502 5.5.1 Error: authentication not enabled"]
    );
    assert_eq!(d.codes("MAIL FROM:<a@b.example> AUTH=<>\r\n"), [555]);
}

#[test]
fn auth_requires_tls() {
    let mut config = smtp_config();
    config.extensions.auth_requires_tls = true;
    let mut d = Driver::new(config);
    let ehlo = d.send("EHLO c\r\n").remove(0).to_string();
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert_eq!(
        d.lines("AUTH PLAIN dGVzdA==\r\n"),
        ["538 5.7.11 Encryption required for requested authentication mechanism"]
    );
    d.send("STARTTLS\r\n");
    let ehlo = d.send("EHLO c\r\n").remove(0).to_string();
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\r\n"), "{ehlo}");
    assert_eq!(d.codes("AUTH PLAIN dGVzdA==\r\n"), [235]);
}

#[test]
fn sasl_line_too_long() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\nAUTH LOGIN\r\n");
    let got = d.lines(format!("{}\r\nNOOP\r\n", "A".repeat(20_000)));
    assert_eq!(
        got,
        [
            "500 5.5.6 Authentication exchange line is too long",
            "250 2.0.0 Ok"
        ]
    );
    assert_eq!(d.events.last().map(String::as_str), Some("AuthCancel"));
}
