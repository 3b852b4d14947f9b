//! imap4flags (RFC 5232), reject/ereject (RFC 5429), mailbox (RFC 5490), copy (RFC 3894),
//! relational (RFC 5231), subaddress (RFC 5233), redirect checks and action limits.

mod common;

use common::*;
use postern_sieve::Action;

fn fi(mailbox: &str, flags: &[&str]) -> Action {
    Action::FileInto {
        mailbox: mailbox.into(),
        create: false,
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        copy: false,
    }
}

#[test]
fn internal_flag_variable() {
    let s = r#"require ["imap4flags", "fileinto"];
        setflag "\\Seen";
        addflag ["$Work \\flagged", "\\SEEN"];
        fileinto "A";
        removeflag "\\Seen $WORK";
        fileinto "B";
        addflag "Later";"#;
    // Each action takes the internal variable as it is at that point; the implicit keep is
    // cancelled by fileinto.
    assert_eq!(
        run(s, MSG_A),
        [
            fi("A", &["\\Seen", "$Work", "\\Flagged"]),
            fi("B", &["\\Flagged"])
        ]
    );
    // The implicit keep uses the final value.
    let s = r#"require "imap4flags"; addflag "\\Answered"; addflag "$Label1";"#;
    assert_eq!(run(s, MSG_A), [keep_flags(&["\\Answered", "$Label1"])]);
    let s = r#"require "imap4flags"; addflag "a"; setflag "b"; keep;"#;
    assert_eq!(run(s, MSG_A), [keep_flags(&["b"])]);
}

#[test]
fn flags_tagged_argument() {
    let s = r#"require ["imap4flags", "fileinto"];
        addflag "\\Seen";
        fileinto :flags ["\\Deleted", "x y"] "Trash";
        keep :flags "";"#;
    assert_eq!(
        run(s, MSG_A),
        [fi("Trash", &["\\Deleted", "x", "y"]), keep()]
    );
    // Invalid flags are dropped with a warning; \Recent cannot be set.
    let o = outcome(
        r#"require "imap4flags"; keep :flags ["\\Recent", "a(b", "ok", "\\seen"];"#,
        MSG_A,
    );
    assert_eq!(o.actions, [keep_flags(&["ok", "\\Seen"])]);
    assert_eq!(o.warnings.len(), 2);
    // Same folder twice: one action, flags merged.
    let s = r#"require ["imap4flags", "fileinto"]; fileinto :flags "a" "F"; fileinto :flags "b A" "F";"#;
    assert_eq!(run(s, MSG_A), [fi("F", &["a", "b"])]);
}

#[test]
fn named_flag_variables_and_hasflag() {
    // RFC 5232 section 3 style.
    let s = r#"require ["imap4flags", "variables", "fileinto"];
        if header :contains "from" "coyote" {
            setflag "flagvar" "\\Flagged";
            addflag "flagvar" ["\\Seen", "\\flagged"];
            fileinto :flags "${flagvar}" "INBOX.From Coyote";
        }
        if hasflag :contains "flagvar" "seen" { addflag "found"; }
        if hasflag :is "flagvar" "\\Flagged \\Seen" { addflag "both"; }
        if not hasflag :is "flagvar" "\\Draft" { addflag "nodraft"; }
        if hasflag :is "found" { addflag "internal"; }
        keep;"#;
    assert_eq!(
        run(s, MSG_A),
        [
            fi("INBOX.From Coyote", &["\\Flagged", "\\Seen"]),
            keep_flags(&["found", "both", "nodraft", "internal"])
        ]
    );
    let s = r#"require ["imap4flags", "relational", "comparator-i;ascii-numeric", "variables"];
        setflag "v" "a b c";
        removeflag "v" "B";
        if hasflag :count "eq" :comparator "i;ascii-numeric" "v" "2" { setflag "two"; }
        if hasflag :matches "v" "?" { addflag "single"; }"#;
    assert_eq!(run(s, MSG_A), [keep_flags(&["two", "single"])]);
    assert!(
        compile_err(r#"require "imap4flags"; setflag "v" "x";"#)
            .message
            .contains("variables")
    );
    assert!(
        compile_err(r#"require "imap4flags"; if hasflag "v" "x" { keep; }"#)
            .message
            .contains("variables")
    );
}

#[test]
fn reject_and_conflicts() {
    let r = |reason: &str, extended| Action::Reject {
        reason: reason.into(),
        extended,
    };
    assert_eq!(
        run(r#"require "reject"; reject "go away";"#, MSG_A),
        [r("go away", false)]
    );
    assert_eq!(
        run(r#"require "ereject"; ereject "nope";"#, MSG_A),
        [r("nope", true)]
    );
    assert_eq!(
        run(r#"require "reject"; discard; reject "x";"#, MSG_A),
        [Action::Discard, r("x", false)]
    );
    let e = runtime_err(r#"require "reject"; keep; reject "x";"#, MSG_A);
    assert!(e.message.contains("cannot be combined"), "{e}");
    let e = runtime_err(
        r#"require ["reject", "fileinto"]; reject "x"; fileinto "f";"#,
        MSG_A,
    );
    assert!(e.message.contains("after reject"), "{e}");
    assert_eq!(e.line, 1);
    let e = runtime_err(
        "require \"reject\";\nreject \"x\";\nredirect \"a@b.org\";",
        MSG_A,
    );
    assert_eq!(e.line, 3);
    assert!(
        runtime_err(
            r#"require ["reject", "ereject"]; reject "x"; ereject "y";"#,
            MSG_A
        )
        .message
        .contains("already")
    );
    assert!(
        runtime_err(
            r#"require ["reject", "vacation"]; vacation "v"; reject "x";"#,
            MSG_A
        )
        .message
        .contains("vacation")
    );
    assert!(
        runtime_err(
            r#"require ["reject", "vacation"]; reject "x"; vacation "v";"#,
            MSG_A
        )
        .message
        .contains("reject")
    );
    // A conflict on a branch not taken is no error.
    assert_eq!(
        run(r#"require "reject"; if false { keep; } reject "x";"#, MSG_A),
        [r("x", false)]
    );
}

#[test]
fn copy_and_mailbox() {
    let s = r#"require ["copy", "fileinto", "mailbox"];
        fileinto :copy :create "Archive";
        redirect :copy "backup@example.net";"#;
    assert_eq!(
        run(s, MSG_A),
        [
            Action::FileInto {
                mailbox: "Archive".into(),
                create: true,
                flags: vec![],
                copy: true
            },
            Action::Redirect {
                address: "backup@example.net".into(),
                copy: true
            },
            keep()
        ]
    );
    let s = r#"require ["fileinto", "mailbox"];
        if mailboxexists "Lists" { fileinto "Lists"; }
        if mailboxexists ["Lists", "Missing"] { fileinto "Both"; }"#;
    let out = run_full(s, &Msg::new(MSG_A), &env(None, "me@x.org"), &["Lists"]);
    assert!(matches!(out, Ok(o) if o.actions == [fileinto("Lists")]));
    assert!(
        compile_err(r#"require "fileinto"; fileinto :create "x";"#)
            .message
            .contains("mailbox")
    );
    assert!(
        compile_err(r#"require "fileinto"; fileinto :copy "x";"#)
            .message
            .contains("copy")
    );
    assert!(
        compile_err(r#"redirect :copy "a@b.c";"#)
            .message
            .contains("copy")
    );
    assert!(
        compile_err(r#"require "copy"; keep :copy;"#)
            .message
            .contains("unknown tagged argument")
    );
}

#[test]
fn relational() {
    let req = "require [\"relational\", \"comparator-i;ascii-numeric\"];\n";
    let t = |test: &str| run(&format!("{req}if {test} {{ discard; }}"), MSG_B) == [Action::Discard];
    assert!(t(
        r#"header :count "eq" :comparator "i;ascii-numeric" "received" "2""#
    ));
    assert!(t(
        r#"header :count "ge" :comparator "i;ascii-numeric" ["received", "subject"] "3""#
    ));
    assert!(!t(
        r#"header :count "gt" :comparator "i;ascii-numeric" "received" "2""#
    ));
    assert!(t(
        r#"address :count "eq" :comparator "i;ascii-numeric" ["to", "cc"] "4""#
    ));
    assert!(t(
        r#"header :count "eq" :comparator "i;ascii-numeric" "x-none" "0""#
    ));
    assert!(!t(
        r#"header :value "lt" :comparator "i;ascii-numeric" "x-caffeine" "1""#
    ));
    assert!(t(r#"header :value "gt" "subject" "RE""#));
    assert!(t(
        r#"header :value "lt" :comparator "i;octet" "subject" "a""#
    ));
    let e = compile_err(
        r#"require "relational"; if header :count "eq" :comparator "i;ascii-numeric" "a" "1" { keep; }"#,
    );
    assert!(e.message.contains("comparator-i;ascii-numeric"), "{e}");
    assert!(
        compile_err(r#"if header :count "eq" "a" "1" { keep; }"#)
            .message
            .contains("relational")
    );
    assert!(
        compile_err(&format!(
            "{req}if header :value \"gte\" \"a\" \"1\" {{ keep; }}"
        ))
        .message
        .contains("operator")
    );
    let e = compile_err(&format!(
        "{req}if header :contains :comparator \"i;ascii-numeric\" \"a\" \"1\" {{ keep; }}"
    ));
    assert!(e.message.contains("supports only"), "{e}");
    assert!(
        compile_err(r#"if header :comparator "i;bogus" "a" "1" { keep; }"#)
            .message
            .contains("unsupported comparator")
    );
    assert!(
        compile_err(r#"if header :is :contains "a" "1" { keep; }"#)
            .message
            .contains("one match type")
    );
}

#[test]
fn numeric_comparator_is() {
    let req = "require \"comparator-i;ascii-numeric\";\n";
    let raw = "X-Score: 007\nX-Text: abc\n\n";
    let t = |test: &str| run(&format!("{req}if {test} {{ discard; }}"), raw) == [Action::Discard];
    assert!(t(r#"header :comparator "i;ascii-numeric" "x-score" "7""#));
    assert!(!t(r#"header :comparator "i;ascii-numeric" "x-score" "8""#));
    assert!(t(r#"header :comparator "i;ascii-numeric" "x-text" "xyz""#));
}

#[test]
fn subaddress() {
    let req = "require [\"subaddress\", \"envelope\"];\n";
    let raw = "To: jane+lists@example.com, bob@example.com\n\n";
    let t = |test: &str| run(&format!("{req}if {test} {{ discard; }}"), raw) == [Action::Discard];
    assert!(t(r#"address :user "to" "jane""#));
    assert!(t(r#"address :detail "to" "lists""#));
    assert!(t(r#"address :user "to" "bob""#));
    assert!(t(r#"address :detail :matches "to" "*""#));
    assert!(t(r#"envelope :user "to" "me""#));
    assert!(!t(r#"envelope :detail :matches "to" "*""#));
    assert!(
        compile_err(r#"if address :user "to" "x" { keep; }"#)
            .message
            .contains("subaddress")
    );
    assert!(
        compile_err(r#"require "subaddress"; if header :user "to" "x" { keep; }"#)
            .message
            .contains("unknown")
    );
}

#[test]
fn redirect_checks_and_limits() {
    assert!(
        compile_err(r#"redirect "not an address";"#)
            .message
            .contains("invalid address")
    );
    assert!(
        compile_err(r#"redirect "a@b.org, c@d.org";"#)
            .message
            .contains("invalid address")
    );
    assert!(
        compile_err(r#"redirect ["a@b.org"];"#)
            .message
            .contains("expected an address")
    );
    let s = r#"require "variables"; set "to" "broken"; redirect "${to}";"#;
    assert!(runtime_err(s, MSG_A).message.contains("invalid address"));
    let s =
        r#"require "variables"; if address :matches "from" "*@*" { redirect "postmaster@${2}"; }"#;
    assert_eq!(run(s, MSG_A), [redirect("postmaster@desert.example.org")]);
    let four: String = (0..4)
        .map(|i| format!("redirect \"u{i}@example.net\";"))
        .collect();
    assert_eq!(run(&four, MSG_A).len(), 4);
    let e = runtime_err(&format!("{four}\nredirect \"u9@example.net\";"), MSG_A);
    assert!(e.message.contains("too many redirects"), "{e}");
    assert_eq!(e.line, 2);
    let many: String = (0..64).map(|i| format!("fileinto \"f{i}\";\n")).collect();
    assert_eq!(
        run(&format!("require \"fileinto\";\n{many}"), MSG_A).len(),
        64
    );
    let e = runtime_err(
        &format!("require \"fileinto\";\n{many}fileinto \"last\";"),
        MSG_A,
    );
    assert!(e.message.contains("too many actions"), "{e}");
    assert_eq!(e.line, 66);
    // Repeats of one action do not count against the limit.
    let same: String = (0..200).map(|_| "fileinto \"same\";".to_owned()).collect();
    assert_eq!(
        run(&format!("require \"fileinto\";{same}"), MSG_A),
        [fileinto("same")]
    );
}
