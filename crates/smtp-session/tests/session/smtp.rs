//! SMTP commands, their sequence and their errors.

use postern_smtp_session::BodyType;

use crate::common::{Driver, open_transaction, smtp_config};

#[test]
fn greeting() {
    let d = Driver::smtp();
    assert_eq!(d.session.greeting().to_string(), "220 mx.example ESMTP\r\n");
    let mut config = smtp_config();
    config.greeting_text = "Postern".into();
    let d = Driver::new(config);
    assert_eq!(
        d.session.greeting().to_string(),
        "220 mx.example ESMTP Postern\r\n"
    );
}

#[test]
fn ehlo_and_helo() {
    let mut d = Driver::smtp();
    let reply = d.send("EHLO client.example\r\n").remove(0);
    assert_eq!(
        reply.to_string(),
        "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-STARTTLS\r\n\
         250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-CHUNKING\r\n\
         250-DSN\r\n250 SMTPUTF8\r\n"
    );
    assert_eq!(d.lines("HELO client.example\r\n"), ["250 mx.example"]);
    assert_eq!(
        d.lines("LHLO client.example\r\n"),
        ["500 5.5.2 Error: command not recognized"]
    );
    assert_eq!(d.lines("EHLO\r\n"), ["501 5.5.4 Syntax: EHLO domain"]);
}

#[test]
fn whole_transaction() {
    let mut d = Driver::smtp();
    open_transaction(&mut d, &["one@example.org", "two@example.org"]);
    assert_eq!(d.lines("DATA\r\n"), ["354 End data with <CR><LF>.<CR><LF>"]);
    assert_eq!(
        d.lines("Subject: hi\r\n\r\nbody\r\n.\r\n"),
        ["250 2.0.0 Ok: queued as TEST"]
    );
    let tx = &d.delivered[0];
    assert_eq!(tx.helo, "client.example");
    assert_eq!(
        tx.mail_from.as_ref().map(|a| a.as_str()),
        Some("sender@client.example")
    );
    let rcpts: Vec<_> = tx.recipients.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(rcpts, ["one@example.org", "two@example.org"]);
    assert_eq!(tx.message, b"Subject: hi\r\n\r\nbody\r\n");
    assert_eq!(tx.body_type, BodyType::SevenBit);
    assert_eq!(tx.protocol(), "ESMTP");
    assert!(!tx.tls && tx.authenticated.is_none() && !tx.chunked);
    // The transaction is over: a new one needs MAIL.
    assert_eq!(d.codes("RCPT TO:<x@example.org>\r\n"), [503]);
    assert_eq!(
        d.codes("MAIL FROM:<>\r\nRCPT TO:<x@example.org>\r\n"),
        [250, 250]
    );
}

#[test]
fn simple_commands() {
    let mut d = Driver::smtp();
    assert_eq!(d.lines("NOOP\r\n"), ["250 2.0.0 Ok"]);
    assert_eq!(d.lines("RSET\r\n"), ["250 2.0.0 Ok"]);
    assert_eq!(d.codes("HELP\r\n"), [214]);
    assert_eq!(
        d.lines("VRFY postmaster\r\n"),
        ["502 5.5.1 Error: VRFY command is disabled"]
    );
    assert_eq!(d.codes("EXPN list\r\n"), [502]);
    assert_eq!(d.codes("ETRN example.org\r\n"), [502]);
    assert_eq!(
        d.lines("XYZZY\r\n"),
        ["500 5.5.2 Error: command not recognized"]
    );
    assert_eq!(d.lines("QUIT\r\n"), ["221 2.0.0 Bye"]);
    assert!(d.closed && d.session.is_closed() && !d.session.wants_input());
    assert!(d.session.input(b"NOOP\r\n").is_empty());

    let mut config = smtp_config();
    config.extensions.vrfy = true;
    let mut d = Driver::new(config);
    assert_eq!(d.codes("VRFY postmaster\r\n"), [252]);
}

#[test]
fn quit_ends_pipelined_input() {
    let mut d = Driver::smtp();
    assert_eq!(d.codes("NOOP\r\nQUIT\r\nNOOP\r\n"), [250, 221]);
    assert_eq!(d.events, ["Close"]);
}

#[test]
fn rset_clears_the_transaction() {
    let mut d = Driver::smtp();
    open_transaction(&mut d, &["a@example.org"]);
    assert_eq!(
        d.codes("RSET\r\nDATA\r\nRCPT TO:<a@example.org>\r\n"),
        [250, 503, 503]
    );
    open_transaction(&mut d, &["a@example.org"]);
    // EHLO also clears it.
    assert_eq!(d.codes("EHLO again\r\nDATA\r\n"), [250, 503]);
}

#[test]
fn bad_sequence() {
    let mut d = Driver::smtp();
    assert_eq!(
        d.lines("MAIL FROM:<a@b.example>\r\n"),
        ["503 5.5.1 Error: send HELO/EHLO first"]
    );
    assert_eq!(
        d.lines("RCPT TO:<a@b.example>\r\n"),
        ["503 5.5.1 Error: need MAIL command"]
    );
    assert_eq!(d.codes("DATA\r\n"), [503]);
    open_transaction(&mut d, &[]);
    assert_eq!(
        d.lines("MAIL FROM:<a@b.example>\r\n"),
        ["503 5.5.1 Error: nested MAIL command"]
    );
    assert_eq!(
        d.lines("DATA\r\n"),
        ["554 5.5.1 Error: no valid recipients"]
    );
}

#[test]
fn syntax_errors() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    for (line, reply) in [
        (
            "MAIL FROM:a@b.example",
            "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]",
        ),
        (
            "MAIL TO:<a@b.example>",
            "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]",
        ),
        (
            "MAIL FROM:<a b@c.example>",
            "501 5.1.7 Bad sender address syntax",
        ),
        (
            "MAIL FROM:<a@b.example> FOO=1",
            "555 5.5.4 Unsupported parameter FOO",
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=x",
            "501 5.5.4 Bad SIZE parameter",
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=1 SIZE=1",
            "501 5.5.4 Duplicate SIZE parameter",
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=52428801",
            "552 5.3.4 Message size exceeds fixed maximum message size",
        ),
        (
            "MAIL FROM:<ü@b.example>",
            "553 5.6.7 Non-ASCII address requires SMTPUTF8",
        ),
    ] {
        assert_eq!(d.lines(format!("{line}\r\n")), [reply], "{line}");
    }
    d.send("MAIL FROM:<a@b.example>\r\n");
    for (line, reply) in [
        ("RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"),
        ("RCPT TO:<a@>", "501 5.1.3 Bad recipient address syntax"),
        (
            "RCPT TO:<a@b.example",
            "501 5.5.4 Syntax: RCPT TO:<address> [parameters]",
        ),
        (
            "RCPT TO:<a@b.example> NOTIFY=SOMETIMES",
            "501 5.5.4 Bad NOTIFY parameter",
        ),
        (
            "RCPT TO:<a@b.example> XFORWARD=1",
            "555 5.5.4 Unsupported parameter XFORWARD",
        ),
        (
            "RCPT TO:<ü@b.example>",
            "553 5.6.7 Non-ASCII address requires SMTPUTF8",
        ),
    ] {
        assert_eq!(d.lines(format!("{line}\r\n")), [reply], "{line}");
    }
}

#[test]
fn dsn_parameters_only_when_advertised() {
    let mut config = smtp_config();
    config.extensions.dsn = false;
    let mut d = Driver::new(config);
    d.send("EHLO c\r\n");
    assert_eq!(d.codes("MAIL FROM:<a@b.example> RET=FULL\r\n"), [555]);
    assert_eq!(d.codes("MAIL FROM:<a@b.example> ENVID=x\r\n"), [555]);
    assert_eq!(d.codes("MAIL FROM:<a@b.example>\r\n"), [250]);
    assert_eq!(d.codes("RCPT TO:<x@b.example> NOTIFY=NEVER\r\n"), [555]);
    assert_eq!(
        d.codes("RCPT TO:<x@b.example> ORCPT=rfc822;x@b.example\r\n"),
        [555]
    );
}

#[test]
fn parameters_reach_the_transaction() {
    let mut d = Driver::smtp();
    let script = "EHLO c\r\nMAIL FROM:<ü@b.example> SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=id+2B1\r\n\
                  RCPT TO:<Postmaster> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x+40y\r\nDATA\r\nx\r\n.\r\n";
    assert_eq!(d.codes(script), [250, 250, 250, 354, 250]);
    let tx = &d.delivered[0];
    assert!(tx.smtputf8 && tx.mail_params.smtputf8);
    assert_eq!(tx.body_type, BodyType::EightBitMime);
    assert_eq!(tx.mail_params.envid.as_deref(), Some("id+1"));
    let (rcpt, params) = &tx.recipients[0];
    assert_eq!(rcpt.as_str(), "postmaster@mx.example");
    assert!(
        params
            .notify
            .is_some_and(|n| n.failure && n.delay && !n.success)
    );
    assert_eq!(
        params.orcpt.as_ref().and_then(|o| o.address()).as_deref(),
        Some("x@y")
    );
    assert_eq!(tx.protocol(), "UTF8SMTP");
}

#[test]
fn verdicts() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    assert_eq!(
        d.lines("MAIL FROM:<rejected@b.example>\r\n"),
        ["550 5.7.1 Go away"]
    );
    assert_eq!(d.codes("RCPT TO:<a@b.example>\r\n"), [503]);
    d.send("MAIL FROM:<a@b.example>\r\n");
    assert_eq!(
        d.lines("RCPT TO:<unknown@b.example>\r\n"),
        ["550 5.1.1 User unknown"]
    );
    assert_eq!(d.codes("RCPT TO:<later@b.example>\r\n"), [451]);
    assert_eq!(
        d.lines("DATA\r\n"),
        ["554 5.5.1 Error: no valid recipients"]
    );
}

#[test]
fn too_many_recipients() {
    let mut config = smtp_config();
    config.max_recipients = 2;
    let mut d = Driver::new(config);
    open_transaction(&mut d, &["a@x.example", "b@x.example"]);
    assert_eq!(
        d.lines("RCPT TO:<c@x.example>\r\n"),
        ["452 4.5.3 Error: too many recipients"]
    );
    assert_eq!(d.codes("DATA\r\nx\r\n.\r\n"), [354, 250]);
    assert_eq!(d.delivered[0].recipients.len(), 2);
}

#[test]
fn long_command_line_stays_in_step() {
    let mut config = smtp_config();
    config.max_line_length = 64;
    let mut d = Driver::new(config);
    let long = format!("NOOP {}QUIT\r\nNOOP\r\n", "x".repeat(100));
    assert_eq!(
        d.lines(&long),
        ["500 5.5.2 Error: line too long", "250 2.0.0 Ok"]
    );
    // The same, arriving in pieces: the tail (with its QUIT) is still discarded.
    let mut got = Vec::new();
    for piece in long.as_bytes().chunks(7) {
        got.extend(d.codes(piece));
    }
    assert_eq!(got, [500, 250]);
    assert!(!d.closed);
    // 64 octets with CRLF is fine.
    assert_eq!(d.codes(format!("NOOP {}\r\n", "y".repeat(57))), [250]);
    assert_eq!(d.codes(format!("NOOP {}\r\n", "y".repeat(58))), [500]);
}

#[test]
fn nul_in_command() {
    let mut d = Driver::smtp();
    assert_eq!(
        d.lines("NO\0OP\r\nNOOP\r\n"),
        ["500 5.5.2 Error: NUL character in command", "250 2.0.0 Ok"]
    );
}

#[test]
fn too_many_errors() {
    let mut config = smtp_config();
    config.max_errors = 3;
    let mut d = Driver::new(config);
    let replies = d.lines("A\r\nB\r\nC\r\nD\r\nNOOP\r\n");
    assert_eq!(replies.len(), 5);
    assert_eq!(replies[4], "421 4.7.0 mx.example Error: too many errors");
    assert!(d.closed);
}

#[test]
fn too_many_commands_before_mail() {
    let mut config = smtp_config();
    config.max_commands_before_mail = 3;
    let mut d = Driver::new(config);
    assert_eq!(d.codes("EHLO c\r\nNOOP\r\nRSET\r\n"), [250, 250, 250]);
    assert_eq!(
        d.lines("NOOP\r\n"),
        ["421 4.7.0 mx.example Error: too many commands"]
    );
    assert!(d.closed);
    // A MAIL resets the count.
    let mut config = smtp_config();
    config.max_commands_before_mail = 3;
    let mut d = Driver::new(config);
    d.send("EHLO c\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nNOOP\r\nNOOP\r\n");
    assert!(!d.closed);
}

#[test]
fn without_enhanced_status_codes() {
    let mut config = smtp_config();
    config.extensions.enhanced_status_codes = false;
    let mut d = Driver::new(config);
    let ehlo = d.send("EHLO c\r\n").remove(0).to_string();
    assert!(!ehlo.contains("ENHANCEDSTATUSCODES"));
    assert_eq!(
        d.lines("NOOP\r\nFOO\r\n"),
        ["250 Ok", "500 Error: command not recognized"]
    );
}
