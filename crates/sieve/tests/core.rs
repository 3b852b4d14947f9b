//! RFC 5228 core: commands, tests, match types, comparators, implicit keep.

mod common;

use common::*;
use postern_sieve::Action;

const RFC_EXAMPLE: &str = r#"#
# Example Sieve Filter (RFC 5228 section 9)
require ["fileinto"];

if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal" mailbox.
        fileinto "personal";
        }
"#;

#[test]
fn rfc_example_script() {
    let list = "Sender: owner-ietf-mta-filters@imc.org\nTo: me@example.com\n\n";
    assert_eq!(run(RFC_EXAMPLE, list), [fileinto("filter")]);
    let company = "From: boss@example.com\nTo: someone@else.org\n\n";
    assert_eq!(run(RFC_EXAMPLE, company), [keep()]);
    let not_to_me = "From: x@spam.example\nTo: other@example.net\n\n";
    assert_eq!(run(RFC_EXAMPLE, not_to_me), [fileinto("spam")]);
    let spam = "From: x@spam.example\nTo: l@lists.example\nCc: me@example.com\nSubject: MAKE MONEY FAST now\n\n";
    assert_eq!(run(RFC_EXAMPLE, spam), [fileinto("spam")]);
    let personal = "From: friend@friends.example\nCc: Me <me@example.com>\nSubject: hi\n\n";
    assert_eq!(run(RFC_EXAMPLE, personal), [fileinto("personal")]);
}

#[test]
fn implicit_keep_and_basic_actions() {
    assert_eq!(run("", MSG_A), [keep()]);
    assert_eq!(run("# only a comment\n/* and\nanother */", MSG_A), [keep()]);
    assert_eq!(run("keep;", MSG_A), [keep()]);
    assert_eq!(run("keep; keep;", MSG_A), [keep()]);
    assert_eq!(run("discard;", MSG_A), [Action::Discard]);
    assert_eq!(run("discard; keep;", MSG_A), [Action::Discard, keep()]);
    assert_eq!(run("stop; discard;", MSG_A), [keep()]);
    assert_eq!(
        run(
            "require \"fileinto\"; fileinto \"a\"; stop; fileinto \"b\";",
            MSG_A
        ),
        [fileinto("a")]
    );
    assert_eq!(
        run(
            "require \"fileinto\"; fileinto \"a\"; fileinto \"b\"; fileinto \"a\";",
            MSG_A
        ),
        [fileinto("a"), fileinto("b")]
    );
    assert_eq!(
        run(
            "require \"fileinto\"; fileinto \"INBOX\"; fileinto \"inbox\";",
            MSG_A
        ),
        [fileinto("INBOX")]
    );
    assert_eq!(
        run("redirect \"Other <other@example.net>\";", MSG_A),
        [redirect("other@example.net")]
    );
    assert_eq!(
        run("redirect \"a@x.org\"; redirect \"A@X.org\";", MSG_A),
        [redirect("a@x.org")]
    );
    assert_eq!(run("if false { discard; }", MSG_A), [keep()]);
}

#[test]
fn if_elsif_else() {
    let s = r#"require "fileinto";
        if header :contains "subject" "nothing" { fileinto "1"; }
        elsif header :contains "subject" "present" { fileinto "2"; }
        elsif true { fileinto "3"; }
        else { fileinto "4"; }
        if false { fileinto "5"; } else { fileinto "6"; }"#;
    assert_eq!(run(s, MSG_A), [fileinto("2"), fileinto("6")]);
    let nested = r#"require "fileinto";
        if true { if false { fileinto "a"; } elsif true { if true { fileinto "b"; stop; } } }
        fileinto "c";"#;
    assert_eq!(run(nested, MSG_A), [fileinto("b")]);
}

#[test]
fn header_test_match_types() {
    let t = |test: &str| run(&format!("if {test} {{ discard; }}"), MSG_B) == [Action::Discard];
    assert!(t(r#"header :is "subject" "re: fwd: coffee""#));
    assert!(!t(r#"header :is "subject" "Re: Fwd""#));
    assert!(t(r#"header "SUBJECT" "Re: Fwd: Coffee""#));
    assert!(t(r#"header :contains "subject" "FWD""#));
    assert!(t(r#"header :contains "subject" """#));
    assert!(t(
        r#"header :contains ["x-none", "X-Caffeine"] ["tea", "c8h10"]"#
    ));
    assert!(t(r#"header :matches "subject" "re:*co?fee""#));
    assert!(!t(r#"header :matches "subject" "fwd*""#));
    assert!(t(r#"header :matches "received" "from c*""#));
    assert!(!t(r#"header :matches "x-absent" "*""#));
    assert!(!t(r#"header :contains "x-absent" """#));
    assert!(t(
        r#"header :comparator "i;octet" :is "subject" "Re: Fwd: Coffee""#
    ));
    assert!(!t(
        r#"header :comparator "i;octet" :is "subject" "re: fwd: coffee""#
    ));
    assert!(!t(
        r#"header :comparator "i;octet" :contains "subject" "COFFEE""#
    ));
    assert!(t(
        r#"header :comparator "i;ascii-casemap" :contains "subject" "COFFEE""#
    ));
    assert!(!t(
        r#"header :comparator "i;octet" :matches "subject" "*COFFEE""#
    ));
    assert!(!t(r#"header :matches "x-caffeine" "C8H10N4O\\?""#));
    assert!(t(r#"header :matches "x-caffeine" "C8H10N4O\?""#));
    assert!(t("header :matches \"x-caffeine\" \"C8H10N4O?\""));
}

#[test]
fn address_test() {
    let t = |test: &str| run(&format!("if {test} {{ discard; }}"), MSG_B) == [Action::Discard];
    assert!(t(r#"address :is "from" "ned@mrochek.example.com""#));
    assert!(t(r#"address :all :is "from" "NED@mrochek.example.com""#));
    assert!(t(r#"address :localpart :is "from" "ned""#));
    assert!(t(r#"address :domain :is "from" "MROCHEK.example.com""#));
    assert!(!t(
        r#"address :is "from" "Ned Freed <ned@mrochek.example.com>""#
    ));
    assert!(t(r#"address :domain :matches "to" "*.com""#));
    assert!(t(r#"address :is "to" "jane+lists@example.com""#));
    assert!(t(r#"address :localpart :is "to" "bob""#));
    assert!(t(r#"address :domain :is "cc" "example.net""#));
    assert!(t(r#"address :is "cc" "dave@example.net""#));
    assert!(!t(r#"address :is "cc" "team""#));
    assert!(!t(r#"address :is "bcc" "bob@example.com""#));
    // A value that is not an address list is seen whole by :all only.
    let raw = "From: <<broken\n\n";
    let t2 = |test: &str| run(&format!("if {test} {{ discard; }}"), raw) == [Action::Discard];
    assert!(t2(r#"address :all :is "from" "<<broken""#));
    assert!(!t2(r#"address :localpart :matches "from" "*""#));
}

#[test]
fn envelope_test() {
    let s = r#"require "envelope";
        if envelope :all :is "from" "" { discard; stop; }
        if envelope :domain :is "from" "EXAMPLE.org" { redirect "a@b.example"; }
        if envelope :localpart :is "to" "me" { redirect "c@d.example"; }"#;
    let msg = Msg::new(MSG_A);
    let out = |from: Option<&str>| match run_full(s, &msg, &env(from, "me@example.com"), &[]) {
        Ok(o) => o.actions,
        Err(_) => panic!("failed"),
    };
    assert_eq!(
        out(Some("sender@example.org")),
        [redirect("a@b.example"), redirect("c@d.example")]
    );
    assert_eq!(
        out(Some("<sender@example.org>")),
        [redirect("a@b.example"), redirect("c@d.example")]
    );
    assert_eq!(out(None), [Action::Discard]);
    assert_eq!(out(Some("")), [Action::Discard]);
    let null_parts = r#"require "envelope"; if envelope :localpart :is "from" "" { discard; }"#;
    assert!(
        matches!(run_full(null_parts, &msg, &env(None, "me@x"), &[]), Ok(o) if o.actions == [Action::Discard])
    );
}

#[test]
fn exists_size_and_logic() {
    let t = |test: &str| run(&format!("if {test} {{ discard; }}"), MSG_B) == [Action::Discard];
    assert!(t(r#"exists "x-caffeine""#));
    assert!(t(r#"exists ["From", "to", "Received"]"#));
    assert!(!t(r#"exists ["From", "X-Nope"]"#));
    let sized = |test: &str, size: u64| {
        let out = run_full(
            &format!("if {test} {{ discard; }}"),
            &Msg::new(MSG_A).with_size(size),
            &env(None, "m@x"),
            &[],
        );
        matches!(out, Ok(o) if o.actions == [Action::Discard])
    };
    assert!(sized("size :over 100K", 100 * 1024 + 1));
    assert!(!sized("size :over 100K", 100 * 1024));
    assert!(!sized("size :under 100k", 100 * 1024));
    assert!(sized("size :under 1M", 1));
    assert!(sized("size :over 1G", (1 << 30) + 1));
    assert!(t("true"));
    assert!(!t("false"));
    assert!(t("not false"));
    assert!(t("not not true"));
    assert!(t("allof (true, not false, exists \"from\")"));
    assert!(!t("allof (true, false)"));
    assert!(t("anyof (false, false, true)"));
    assert!(!t("anyof (false)"));
}

#[test]
fn strings_and_line_ends() {
    let raw = "Subject: a \"quoted\" \\word\\\n\n";
    assert_eq!(
        run(
            r#"if header :is "subject" "a \"quoted\" \\word\\" { discard; }"#,
            raw
        ),
        [Action::Discard]
    );
    assert_eq!(
        run(
            r#"if header :is "subject" "a \"q\uoted\" \\word\\" { discard; }"#,
            raw
        ),
        [Action::Discard]
    );
    let crlf = "require \"fileinto\";\r\nif true\r\n{\r\n  fileinto \"x\";\r\n}\r\n";
    assert_eq!(run(crlf, MSG_A), [fileinto("x")]);
    let multi = "require \"reject\";\r\nreject text:\r\nNo thanks.\r\n..dotted\r\n.\r\n;\r\n";
    assert_eq!(
        run(multi, MSG_A),
        [Action::Reject {
            reason: "No thanks.\r\n.dotted\r\n".into(),
            extended: false
        }]
    );
    let lf = "require \"reject\";\nreject text: # why\nline\n.\n;";
    assert_eq!(
        run(lf, MSG_A),
        [Action::Reject {
            reason: "line\r\n".into(),
            extended: false
        }]
    );
}

#[test]
fn utf8_and_case_insensitive_syntax() {
    let raw = "Subject: Grüße aus Köln\n\n";
    assert_eq!(
        run("IF HEADER :CONTAINS \"Subject\" \"köln\" { DISCARD; }", raw),
        [Action::Discard]
    );
    assert_eq!(
        run(
            "if header :matches \"Subject\" \"Gr??e *\" { discard; }",
            raw
        ),
        [Action::Discard]
    );
    assert_eq!(
        run("require \"fileinto\"; fileinto \"Archiv/Größe\";", raw),
        [fileinto("Archiv/Größe")]
    );
}
