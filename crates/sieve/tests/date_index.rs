//! date/currentdate (RFC 5260 §4, §5) and index (RFC 5260 §6), as Roundcube's vacation and
//! filter forms write them.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use postern_sieve::{Action, Context, compile, execute_at};

/// Runs `script` on `raw` as if it arrived at `now` (Unix seconds).
fn run_at(script: &str, raw: &str, now: u64) -> Vec<Action> {
    let s = compile(script).unwrap_or_else(|e| panic!("compile error: {e}\n{script}"));
    let msg = Msg::new(raw);
    let envelope = env(Some("friend@remote.test"), "me@example.com");
    let ctx = Context {
        message: &msg,
        envelope: &envelope,
        mailbox_exists: &|_| true,
    };
    execute_at(&s, &ctx, SystemTime::UNIX_EPOCH + Duration::from_secs(now))
        .unwrap_or_else(|e| panic!("runtime error: {e}\n{script}"))
        .actions
}

fn fi(mailbox: &str) -> Action {
    Action::FileInto {
        mailbox: mailbox.into(),
        create: false,
        flags: Vec::new(),
        copy: false,
    }
}

/// 2026-12-06 15:00:00 UTC.
const DEC_6: u64 = 1_796_569_200;

/// What Roundcube's managesieve vacation form writes for a date range.
const ROUNDCUBE_VACATION: &str = r#"require ["date","relational","vacation"];
# rule:[vacation]
if allof (currentdate :zone "+0100" :value "ge" "iso8601" "2026-12-01T00:00:00+01:00", currentdate :zone "+0100" :value "le" "iso8601" "2026-12-31T23:59:59+01:00")
{
	vacation :days 1 :subject "Out of office" "I am away.";
}
"#;

#[test]
fn currentdate_vacation_range() {
    let in_range = run_at(ROUNDCUBE_VACATION, MSG_A, DEC_6);
    assert!(
        in_range.iter().any(|a| matches!(a, Action::Vacation(_))),
        "{in_range:?}"
    );
    // A month later: no reply.
    let after = run_at(ROUNDCUBE_VACATION, MSG_A, DEC_6 + 31 * 86_400);
    assert_eq!(after, [keep()]);
    // The date-only form.
    let s = r#"require ["date","relational","fileinto"];
        if allof(currentdate :value "ge" :zone "+0000" "date" "2026-12-01",
                 currentdate :zone "+0000" :value "le" "date" "2026-12-06") { fileinto "In"; }"#;
    assert_eq!(run_at(s, MSG_A, DEC_6), [fi("In")]);
    assert_eq!(run_at(s, MSG_A, DEC_6 + 86_400), [keep()]);
    // Zones move the date: 15:00 UTC is already the 7th at +1000.
    let s = r#"require ["date","fileinto"];
        if currentdate :zone "+1000" "date" "2026-12-07" { fileinto "Tomorrow"; }"#;
    assert_eq!(run_at(s, MSG_A, DEC_6), [fi("Tomorrow")]);
    let s = r#"require ["date","fileinto"];
        if currentdate :zone "-0500" "hour" "10" { fileinto "Ten"; }"#;
    assert_eq!(run_at(s, MSG_A, DEC_6), [fi("Ten")]);
    // Weekday: 2026-12-06 is a Sunday.
    let s = r#"require ["date","fileinto"];
        if currentdate :zone "+0000" "weekday" "0" { fileinto "Sunday"; }"#;
    assert_eq!(run_at(s, MSG_A, DEC_6), [fi("Sunday")]);
}

#[test]
fn date_header_parts_and_zones() {
    // MSG_A: Date: Tue, 1 Apr 1997 09:06:31 -0800 (PST)
    let s = r#"require ["date","fileinto"];
        if date :originalzone "date" "time" "09:06:31" { fileinto "Original"; }"#;
    assert_eq!(run_at(s, MSG_A, DEC_6), [fi("Original")]);
    let s = r#"require ["date","fileinto"];
        if date :zone "+0000" "date" "iso8601" "1997-04-01T17:06:31+00:00" { fileinto "Utc"; }"#;
    assert_eq!(run_at(s, MSG_A, DEC_6), [fi("Utc")]);
    let s = r#"require ["date","relational","fileinto"];
        if date :zone "+0000" :value "lt" "date" "year" "2000" { fileinto "Old"; }"#;
    assert_eq!(run_at(s, MSG_A, DEC_6), [fi("Old")]);
    let s = r#"require ["date","fileinto"];
        if date :originalzone "date" "zone" "-0800" { fileinto "Pst"; }"#;
    assert_eq!(run_at(s, MSG_A, DEC_6), [fi("Pst")]);
    // No Date field, or one that does not parse: no match.
    let s = r#"require ["date","fileinto"];
        if date :originalzone :matches "date" "date" "*" { fileinto "Dated"; }"#;
    assert_eq!(run_at(s, MSG_B, DEC_6), [keep()]);
    assert_eq!(
        run_at(s, "Date: sometime soon\r\n\r\nx\r\n", DEC_6),
        [keep()]
    );
}

#[test]
fn index_selects_one_occurrence() {
    let raw = "Received: from a by mx1; Mon, 1 Jan 2024 10:00:00 +0000\r\n\
               Received: from b by mx2; Mon, 1 Jan 2024 09:00:00 +0000\r\n\
               X-Tag: first\r\nX-Tag: second\r\nX-Tag: third\r\n\r\nbody\r\n";
    let s = r#"require ["index","fileinto"];
        if header :index 2 "x-tag" "second" { fileinto "Second"; }"#;
    assert_eq!(run_at(s, raw, DEC_6), [fi("Second")]);
    let s = r#"require ["index","fileinto"];
        if header :index 1 :last "x-tag" "third" { fileinto "Last"; }"#;
    assert_eq!(run_at(s, raw, DEC_6), [fi("Last")]);
    let s = r#"require ["index","fileinto"];
        if header :index 1 "x-tag" "second" { fileinto "Wrong"; }"#;
    assert_eq!(run_at(s, raw, DEC_6), [keep()]);
    let s = r#"require ["index","fileinto"];
        if header :index 9 "x-tag" "first" { fileinto "Missing"; }"#;
    assert_eq!(run_at(s, raw, DEC_6), [keep()]);
    // The date of the first (most recent) Received field.
    let s = r#"require ["date","index","fileinto"];
        if date :index 1 :zone "+0000" "received" "hour" "10" { fileinto "Hop"; }"#;
    assert_eq!(run_at(s, raw, DEC_6), [fi("Hop")]);
    let s = r#"require ["index","fileinto"];
        if address :index 1 :last :domain "from" "example.net" { fileinto "A"; }"#;
    assert_eq!(
        run_at(
            s,
            "From: a@example.org\r\nFrom: b@example.net\r\n\r\nx\r\n",
            DEC_6
        ),
        [fi("A")]
    );
}

#[test]
fn compile_errors() {
    for (script, what) in [
        (r#"if currentdate "date" "2026-01-01" { stop; }"#, "require"),
        (
            r#"require "date"; if currentdate "fortnight" "1" { stop; }"#,
            "unknown date part",
        ),
        (
            r#"require "date"; if currentdate :zone "CET" "date" "x" { stop; }"#,
            "invalid time zone",
        ),
        (
            r#"require "date"; if currentdate :originalzone "date" "x" { stop; }"#,
            "originalzone",
        ),
        (
            r#"require "date"; if date "da te" "date" "x" { stop; }"#,
            "invalid header name",
        ),
        (r#"if header :index 1 "a" "b" { stop; }"#, "index"),
        (
            r#"require "index"; if header :last "a" "b" { stop; }"#,
            ":last needs :index",
        ),
        (
            r#"require "index"; if header :index 0 "a" "b" { stop; }"#,
            "counts from 1",
        ),
    ] {
        let e = compile_err(script);
        assert!(e.message.contains(what), "{script}: {e}");
    }
}
