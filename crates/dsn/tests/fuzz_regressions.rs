//! Inputs the fuzz target `dsn` (`fuzz/`) found failing its checks: header and
//! delivery-status lines longer than 998 octets, because `write_field` folded only at spaces
//! and a word (an address, an ENVID, a remote reply without spaces) can be longer.

use postern_dsn::{Action, RecipientReport, Report, Ret, build};

fn report<'a>(to: &'a str, envid: Option<&'a str>, rcpt: RecipientReport) -> Report<'a> {
    Report {
        reporting_mta: "mx.example.test",
        postmaster: "postmaster@mx.example.test",
        to,
        envid,
        arrival: 1_704_110_400,
        recipients: vec![rcpt],
        original: b"Subject: hi\r\n\r\nbody\r\n",
        ret: Ret::Headers,
        max_original: 1 << 20,
    }
}

fn rcpt(addr: &str, diagnostic: &str) -> RecipientReport {
    RecipientReport {
        final_recipient: addr.into(),
        original_recipient: None,
        action: Action::Failed,
        status: (5, 1, 1),
        remote_mta: Some("mx.remote.test".into()),
        diagnostic: Some(diagnostic.into()),
        last_attempt: None,
        will_retry_until: None,
    }
}

/// Every line of the DSN is at most 998 octets plus CRLF (RFC 5322 §2.1.1), whatever the
/// length of the words in the addresses and texts it repeats.
fn assert_lines_fit(dsn: &[u8]) {
    for line in dsn.split(|&b| b == b'\n') {
        assert!(
            line.len() <= 999,
            "line of {} octets: {:?}",
            line.len(),
            String::from_utf8_lossy(&line[..80])
        );
    }
}

#[test]
fn long_sender_address() {
    let to = format!("{}@example.test", "a".repeat(1200));
    assert_lines_fit(&build(&report(&to, None, rcpt("b@example.test", "550 no"))).unwrap());
}

#[test]
fn long_envid_and_recipient() {
    let addr = format!("{}@example.test", "b".repeat(1200));
    let envid = "e".repeat(1100);
    let dsn = build(&report(
        "a@example.test",
        Some(&envid),
        rcpt(&addr, "550 no"),
    ))
    .unwrap();
    assert_lines_fit(&dsn);
}

/// A remote server's reply line can be 4096 octets without a space.
#[test]
fn long_word_in_a_remote_reply() {
    let diag = format!("550 5.1.1 {}", "x".repeat(4000));
    let dsn = build(&report(
        "a@example.test",
        None,
        rcpt("b@example.test", &diag),
    ))
    .unwrap();
    assert_lines_fit(&dsn);
}
