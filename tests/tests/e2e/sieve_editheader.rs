//! Sieve `editheader` (RFC 5293) through lmtp-deliver: the stored Maildir file and the
//! redirected copy carry the script's header edits; protected fields stay; a script that
//! fails stores the message as it came.

use std::time::Duration;

use postern_e2e::{Postern, SmtpSink};

use crate::lmtp::{Lmtp, lmtp_install, maildir, messages};

const SCRIPT: &str = r#"require ["editheader", "fileinto", "mailbox", "variables", "encoded-character"];
if header :contains "subject" "tag me" {
  addheader "X-Filtered" "by Sieve, Grüße";
  addheader :last "X-Last" "end of header";
  deleteheader "X-Spam-Score";
  deleteheader :index 1 :last "X-Hop";
  deleteheader "Received";
  addheader "Auto-Submitted" "no";
  if header :is "X-Filtered" "by Sieve, Grüße" { fileinto :create "Tagged"; }
  stop;
}
if header :is "subject" "forward me" {
  addheader "X-Redirected-By" "alice";
  redirect "carol@elsewhere.test";
  stop;
}
if header :is "subject" "broken" {
  addheader "X-First" "kept only if the script succeeds";
  addheader "X-Bad" "a${hex:00}b";
}
"#;

fn header(stored: &str) -> &str {
    stored.split("\n\n").next().expect("a header")
}

#[test]
fn stored_and_redirected_copies_carry_the_edits() {
    let sink = SmtpSink::start();
    let pm = lmtp_install(Postern::builder().set("lmtp.submit_to", sink.addr().to_string()));
    let path = pm.dir().join("edit.sieve");
    std::fs::write(&path, SCRIPT).expect("write script");
    pm.mailctl_ok(&[
        "sieve",
        "put",
        "alice@example.org",
        path.to_str().expect("utf8"),
    ]);
    let md = maildir(&pm, "alice");
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    let message = |subject: &str| {
        format!(
            "Received: from relay.remote.test by mx.remote.test; Mon, 1 Dec 2025 10:00:00 +0000\n\
             X-Hop: 1\nFrom: Sender <sender@remote.test>\nTo: alice@example.org\n\
             X-Spam-Score: 9.5\nX-Spam-Score: 1.0\nSubject: {subject}\nX-Hop: 2\n\
             Message-ID: <{}@remote.test>\n\nbody line\n",
            subject.replace(' ', "-")
        )
    };
    let mut deliver = |subject: &str| {
        let (_, after) = c.transaction(
            "sender@remote.test",
            &["alice@example.org"],
            &message(subject),
        );
        after.into_iter().next().expect("a reply")
    };

    // Added, deleted, protected: the stored file.
    let r = deliver("tag me please");
    assert!(r.starts_with("250"), "{r}");
    let tagged = messages(&md, ".Tagged/new");
    assert_eq!(
        tagged.len(),
        1,
        "later tests saw the added field: fileinto ran"
    );
    let h = header(&tagged[0]);
    let lines: Vec<&str> = h.lines().collect();
    // Our trace fields stay first; the added field comes right below them.
    assert!(
        lines[0].starts_with("Return-Path: <sender@remote.test>"),
        "{h}"
    );
    assert!(
        lines[1].starts_with("Delivered-To: alice@example.org"),
        "{h}"
    );
    let filtered = lines
        .iter()
        .position(|l| l.starts_with("X-Filtered:"))
        .expect("X-Filtered added");
    assert_eq!(
        lines[filtered], "X-Filtered: =?UTF-8?B?YnkgU2lldmUsIEdyw7zDn2U=?=",
        "non-ASCII values are RFC 2047-encoded"
    );
    assert!(
        lines[filtered + 1].starts_with("Received: from relay.remote.test"),
        "{h}"
    );
    assert_eq!(lines.last(), Some(&"X-Last: end of header"), "{h}");
    assert!(!h.contains("X-Spam-Score"), "{h}");
    assert!(h.contains("X-Hop: 1") && !h.contains("X-Hop: 2"), "{h}");
    // Received cannot be deleted, Auto-Submitted cannot be added (silently ignored).
    assert_eq!(
        h.matches("\nReceived:").count(),
        2,
        "ours and the relay's: {h}"
    );
    assert!(!h.contains("Auto-Submitted"), "{h}");
    assert!(tagged[0].ends_with("\n\nbody line\n"), "{}", tagged[0]);
    assert!(messages(&md, "new").is_empty());
    pm.daemon("lmtp-deliver")
        .wait_for("Sieve edited the header", Duration::from_secs(10));

    // A redirect sends the edited message.
    let r = deliver("forward me");
    assert!(r.starts_with("250"), "{r}");
    let sent = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(sent[0].to, ["carol@elsewhere.test"]);
    let data = &sent[0].data;
    assert!(data.contains("X-Redirected-By: alice\r\n"), "{data}");
    assert!(data.contains("Subject: forward me"), "{data}");
    assert!(!data.contains("Return-Path:"), "{data}");

    // A runtime error: no edit at all reaches the stored copy (RFC 5293 §7).
    let r = deliver("broken");
    assert!(r.starts_with("250"), "{r}");
    let inbox = messages(&md, "new");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let h = header(&inbox[0]);
    assert!(!h.contains("X-First") && !h.contains("X-Bad"), "{h}");
    assert!(h.contains("X-Spam-Score: 9.5"), "{h}");
}
