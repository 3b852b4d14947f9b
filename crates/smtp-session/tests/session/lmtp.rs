//! LMTP: `LHLO`, enhanced codes always, one reply per accepted recipient after the message.

use postern_smtp_session::Reply;

use crate::common::{Driver, lmtp_config, open_transaction};

#[test]
fn greeting_and_lhlo() {
    let mut d = Driver::lmtp();
    assert_eq!(
        d.session.greeting().to_string(),
        "220 lmtp.example LMTP\r\n"
    );
    assert_eq!(d.lines("HELO c\r\n"), ["500 5.5.1 Error: use LHLO in LMTP"]);
    assert_eq!(d.lines("EHLO c\r\n"), ["500 5.5.1 Error: use LHLO in LMTP"]);
    assert_eq!(
        d.lines("MAIL FROM:<>\r\n"),
        ["503 5.5.1 Error: send LHLO first"]
    );
    let lhlo = d.send("LHLO c\r\n").remove(0).to_string();
    assert!(lhlo.starts_with("250-lmtp.example\r\n"), "{lhlo}");
    assert!(lhlo.contains("250-ENHANCEDSTATUSCODES\r\n"), "{lhlo}");
}

#[test]
fn enhanced_codes_always() {
    let mut d = Driver::lmtp();
    // lmtp_config() turns the extension off; LMTP sends the codes anyway.
    assert!(!lmtp_config().extensions.enhanced_status_codes);
    assert_eq!(d.lines("NOOP\r\n"), ["250 2.0.0 Ok"]);
}

#[test]
fn one_reply_per_recipient() {
    let mut d = Driver::lmtp();
    open_transaction(&mut d, &["one@example.org", "full@example.org"]);
    assert_eq!(d.codes("RCPT TO:<unknown@example.org>\r\n"), [550]);
    open_rcpt(&mut d, "broken@example.org");
    let replies = d.lines("DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    assert_eq!(
        replies,
        [
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 <one@example.org> Saved",
            "452 4.2.2 Mailbox full",
            "451 4.3.0 Temporary failure, try again later",
        ]
    );
    let tx = &d.delivered[0];
    assert_eq!(tx.recipients.len(), 3);
    assert_eq!(tx.protocol(), "LMTP");
    assert_eq!(d.codes("NOOP\r\n"), [250]);
}

#[test]
fn missing_delivery_replies_become_451() {
    let mut d = Driver::lmtp();
    d.delivery = Some(vec![Reply::ok()]);
    open_transaction(&mut d, &["a@example.org", "b@example.org", "c@example.org"]);
    let replies = d.lines("DATA\r\nx\r\n.\r\n");
    assert_eq!(
        replies[1..],
        [
            "250 2.0.0 Ok",
            "451 4.3.0 Temporary failure, try again later",
            "451 4.3.0 Temporary failure, try again later",
        ]
    );
    // Extra replies are dropped.
    d.delivery = Some(vec![Reply::ok(), Reply::ok(), Reply::user_unknown()]);
    open_rcpts(&mut d, &["a@example.org"]);
    assert_eq!(d.codes("DATA\r\nx\r\n.\r\nNOOP\r\n"), [354, 250, 250]);
}

#[test]
fn no_recipients_at_data() {
    let mut d = Driver::lmtp();
    open_transaction(&mut d, &[]);
    assert_eq!(
        d.lines("DATA\r\n"),
        ["503 5.5.1 Error: no valid recipients"]
    );
}

#[test]
fn oversized_body_gets_one_refusal_per_recipient() {
    let mut config = lmtp_config();
    config.max_message_size = 100;
    let mut d = Driver::new(config);
    open_transaction(&mut d, &["a@example.org", "b@example.org"]);
    let body = format!("DATA\r\n{}\r\n.\r\nNOOP\r\n", "x".repeat(200));
    assert_eq!(
        d.lines(body),
        [
            "354 End data with <CR><LF>.<CR><LF>",
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "250 2.0.0 Ok",
        ]
    );
    assert!(d.delivered.is_empty());
}

#[test]
fn bdat_last_gets_one_reply_per_recipient() {
    let mut d = Driver::lmtp();
    open_transaction(&mut d, &["a@example.org", "full@example.org"]);
    assert_eq!(d.codes("BDAT 3\r\nabcBDAT 2 LAST\r\nde"), [250, 250, 452]);
    assert_eq!(d.delivered[0].message, b"abcde");
}

#[test]
fn wrong_hello_does_not_greet() {
    let mut d = Driver::lmtp();
    d.send("EHLO c\r\n");
    assert_eq!(d.codes("MAIL FROM:<>\r\n"), [503]);
}

fn open_rcpt(d: &mut Driver, rcpt: &str) {
    assert_eq!(d.codes(format!("RCPT TO:<{rcpt}>\r\n")), [250]);
}

fn open_rcpts(d: &mut Driver, rcpts: &[&str]) {
    assert_eq!(d.codes("MAIL FROM:<>\r\n"), [250]);
    for rcpt in rcpts {
        open_rcpt(d, rcpt);
    }
}
