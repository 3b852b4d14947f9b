//! RFC 5229 variables: set and its modifiers, expansion, match variables, the string test,
//! limits; plus RFC 5228 encoded characters.

mod common;

use common::*;
use postern_sieve::Action;

const REQ: &str = "require [\"variables\", \"fileinto\"];\n";

fn folder(script: &str, raw: &str) -> String {
    match run(&format!("{REQ}{script}"), raw).as_slice() {
        [Action::FileInto { mailbox, .. }] => mailbox.clone(),
        other => panic!("expected one fileinto, got {other:?}"),
    }
}

#[test]
fn set_and_expand() {
    assert_eq!(
        folder(
            r#"set "a" "x"; set "B" "y"; fileinto "${a}.${b}.${A}-${unset}";"#,
            MSG_A
        ),
        "x.y.x-"
    );
    assert_eq!(
        folder(
            r#"set "a" "1"; set "a" "${a}${a}"; set "a" "${a}${a}"; fileinto "${a}";"#,
            MSG_A
        ),
        "1111"
    );
    // Malformed references are literal; expansion happens once.
    assert_eq!(
        folder(
            r#"set "d" "$"; set "x" "${d}{y}"; set "y" "z"; fileinto "${x}|${|${ x}|${x";"#,
            MSG_A
        ),
        "${y}|${|${ x}|${x"
    );
    assert_eq!(
        folder(r#"set "a" "q"; fileinto "${a${a}}";"#, MSG_A),
        "${aq}"
    );
    // Without the extension, ${...} is just text.
    assert_eq!(
        run(r#"require "fileinto"; fileinto "${a}";"#, MSG_A),
        [fileinto("${a}")]
    );
}

#[test]
fn modifiers_and_precedence() {
    let m = |mods: &str, value: &str| {
        folder(
            &format!("set {mods} \"v\" \"{value}\"; fileinto \"${{v}}\";"),
            MSG_A,
        )
    };
    assert_eq!(m(":lower", "HeLLo"), "hello");
    assert_eq!(m(":upper", "HeLLo"), "HELLO");
    assert_eq!(m(":lowerfirst", "HeLLo"), "heLLo");
    assert_eq!(m(":upperfirst", "heLLo"), "HeLLo");
    assert_eq!(m(":length", "héllo"), "5");
    assert_eq!(m(":length", ""), "0");
    assert_eq!(m(":quotewildcard", "a*b?c"), "a\\*b\\?c");
    // RFC 5229 section 4.1 examples.
    assert_eq!(m(":upperfirst :lower", "juLIET"), "Juliet");
    assert_eq!(m(":lower :upperfirst", "juLIET"), "Juliet");
    assert_eq!(m(":length :upper", "abc"), "3");
    assert_eq!(m(":quotewildcard :upper", "a*"), "A\\*");
    let e = compile_err(&format!("{REQ}set :lower :upper \"a\" \"b\";"));
    assert!(e.message.contains("same precedence"), "{e}");
    let e = compile_err(&format!("{REQ}set :lowerfirst :upperfirst \"a\" \"b\";"));
    assert!(e.message.contains("same precedence"), "{e}");
    assert!(
        compile_err(&format!("{REQ}set :lower :lower \"a\" \"b\";"))
            .message
            .contains("duplicate")
    );
    assert!(
        compile_err(&format!("{REQ}set :encodeurl \"a\" \"b\";"))
            .message
            .contains("unknown")
    );
}

#[test]
fn quotewildcard_keeps_matches_literal() {
    let s = r#"set :quotewildcard "pat" "a*c";
        if header :matches "subject" "${pat}" { fileinto "literal"; } else { fileinto "no"; }"#;
    assert_eq!(folder(s, "Subject: a*c\n\n"), "literal");
    assert_eq!(folder(s, "Subject: abbc\n\n"), "no");
    let unquoted = r#"set "pat" "a*c"; if header :matches "subject" "${pat}" { fileinto "wild"; }"#;
    assert_eq!(folder(unquoted, "Subject: abbc\n\n"), "wild");
}

#[test]
fn match_variables_rfc5229_examples() {
    let s = r#"if header :matches "List-ID" "*<*@*" { fileinto "INBOX.lists.${2}"; stop; }
        if header :matches "Subject" "[*] *" { fileinto "INBOX.lists.${1}"; stop; }
        if address :matches ["To", "Cc"] ["coyote@**.com", "wile@**.com"] {
            fileinto "INBOX.business.${2}|${1}|${0}"; stop;
        }
        fileinto "none:${0}${1}";"#;
    assert_eq!(
        folder(s, "List-ID: Sieve list <sieve.ietf.org@example.org>\n\n"),
        "INBOX.lists.sieve.ietf.org"
    );
    assert_eq!(
        folder(s, "Subject: [acme-users] [fwd] version 1.0 is out\n\n"),
        "INBOX.lists.acme-users"
    );
    assert_eq!(
        folder(s, "To: coyote@ACME.Example.COM\n\n"),
        "INBOX.business.ACME.Example||coyote@ACME.Example.COM"
    );
    assert_eq!(folder(s, "To: nobody@example.org\n\n"), "none:");
}

#[test]
fn match_variables_lifetime() {
    // A failed match or an unevaluated test leaves them as they were.
    let s = r#"if header :matches "subject" "I * a *" { set "one" "${1}"; }
        if header :matches "subject" "zzz*" { fileinto "never"; }
        if anyof (true, header :matches "from" "*@*") { fileinto "${one}-${1}-${2}-${3}"; }"#;
    assert_eq!(folder(s, MSG_A), "have-have-present for you-");
    // The value that matched is the first matching value, key order inside.
    let s = r#"if header :matches "received" ["nomatch*", "from * by *"] { fileinto "${1}${2}"; }"#;
    assert_eq!(folder(s, MSG_B), "ab");
    // ? captures one character; ${10} and beyond are empty when absent.
    let s =
        r#"if header :matches "x-caffeine" "C?H??N?O?" { fileinto "${1}${2}${3}${4}${5}${10}"; }"#;
    assert_eq!(folder(s, MSG_B), "81042");
}

#[test]
fn string_test() {
    let t = |test: &str| {
        run(
            &format!("{REQ}set \"a\" \"Hello\"; set \"e\" \"\"; if {test} {{ discard; }}"),
            MSG_A,
        ) == [Action::Discard]
    };
    assert!(t(r#"string :is "${a}" "hello""#));
    assert!(t(r#"string :comparator "i;octet" :is "${a}" "Hello""#));
    assert!(!t(r#"string :comparator "i;octet" :is "${a}" "hello""#));
    assert!(t(r#"string :contains ["x", "${a} world"] "o w""#));
    assert!(t(r#"string :matches "${a}" "H*o""#));
    assert!(t(r#"string :is "${e}" """#));
    assert!(t(r#"string :is "${undefined}" """#));
    let with_rel = |test: &str| {
        run(
            &format!(
                "require [\"variables\", \"relational\", \"comparator-i;ascii-numeric\"]; set \"e\" \"\"; if {test} {{ discard; }}"
            ),
            MSG_A,
        ) == [Action::Discard]
    };
    // :count ignores empty strings.
    assert!(with_rel(
        r#"string :count "eq" :comparator "i;ascii-numeric" ["a", "${e}", "b"] "2""#
    ));
    assert!(with_rel(
        r#"string :value "gt" :comparator "i;ascii-numeric" "10" "9""#
    ));
    assert!(!with_rel(r#"string :value "gt" "10" "9""#));
}

#[test]
fn names_and_limits() {
    let e = compile_err(&format!("{REQ}set \"1\" \"x\";"));
    assert!(e.message.contains("match variable"), "{e}");
    assert!(
        compile_err(&format!("{REQ}set \"a.b\" \"x\";"))
            .message
            .contains("namespace")
    );
    assert!(
        compile_err(&format!("{REQ}set \"a-b\" \"x\";"))
            .message
            .contains("invalid variable name")
    );
    assert!(
        compile_err(&format!("{REQ}set \"\" \"x\";"))
            .message
            .contains("invalid variable name")
    );
    assert!(
        compile_err(&format!("{REQ}fileinto \"${{env.x}}\";"))
            .message
            .contains("namespace")
    );
    let long = "v".repeat(65);
    assert!(
        compile_err(&format!("{REQ}set \"{long}\" \"x\";"))
            .message
            .contains("longer")
    );
    assert!(
        compile_err(&format!("{REQ}fileinto \"${{{long}}}\";"))
            .message
            .contains("too long")
    );
    let ok = "v".repeat(64);
    assert_eq!(
        folder(
            &format!("set \"{ok}\" \"x\"; fileinto \"${{{ok}}}\";"),
            MSG_A
        ),
        "x"
    );
    let many: String = (0..257).map(|i| format!("set \"v{i}\" \"x\";\n")).collect();
    assert!(
        compile_err(&format!("{REQ}{many}"))
            .message
            .contains("too many variables")
    );
    // Values are cut at 4000 bytes.
    let big = "x".repeat(3000);
    let s = format!(
        "set \"a\" \"{big}\"; set \"a\" \"${{a}}${{a}}\"; set :length \"n\" \"${{a}}\"; fileinto \"${{n}}\";"
    );
    assert_eq!(folder(&s, MSG_A), "4000");
    let s = "set \"a\" \"ééééé\"; set \"a\" \"${a}${a}${a}${a}${a}${a}${a}${a}\"; set \"a\" \"${a}${a}${a}${a}${a}${a}${a}${a}\";
        set \"a\" \"${a}${a}${a}${a}${a}${a}${a}${a}\"; set :length \"n\" \"${a}\"; fileinto \"${n}\";";
    assert_eq!(folder(s, MSG_A), "2000");
}

#[test]
fn encoded_characters() {
    let s = r#"require ["encoded-character", "fileinto"]; fileinto "${hex:46 6f 6F}${unicode:00E9}${hex:}";"#;
    assert_eq!(run(s, MSG_A), [fileinto("Fooé${hex:}")]);
    assert_eq!(
        run(r#"require "fileinto"; fileinto "${hex:41}";"#, MSG_A),
        [fileinto("${hex:41}")]
    );
    assert!(
        compile_err(r#"require "encoded-character"; redirect "${hex:ff}@x.org";"#)
            .message
            .contains("UTF-8")
    );
    let e = compile_err(r#"require ["encoded-character", "reject"]; reject "${unicode:D800}";"#);
    assert!(e.message.contains("code point"), "{e}");
    // Encoded characters are decoded before variable references are looked for.
    let s = r#"require ["encoded-character", "variables", "fileinto"]; set "a" "ok"; fileinto "${hex:24}{a}";"#;
    assert_eq!(run(s, MSG_A), [fileinto("ok")]);
}
