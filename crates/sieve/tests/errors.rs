//! Compile errors (require, syntax, shapes) with their line numbers, resource limits, and
//! robustness against random input.

mod common;

use std::time::{Duration, Instant};

use common::*;
use postern_sieve::limits::{MAX_NESTING, MAX_SCRIPT_SIZE};
use postern_sieve::{Action, compile};

#[test]
fn missing_require() {
    let cases = [
        (r#"fileinto "x";"#, "fileinto"),
        (r#"if envelope "from" "x" { keep; }"#, "envelope"),
        (r#"set "a" "b";"#, "variables"),
        (r#"if string "a" "b" { keep; }"#, "variables"),
        (r#"setflag "\\Seen";"#, "imap4flags"),
        (r#"keep :flags "\\Seen";"#, "imap4flags"),
        (r#"if hasflag "x" { keep; }"#, "imap4flags"),
        (r#"vacation "x";"#, "vacation"),
        (r#"reject "x";"#, "reject"),
        (r#"require "reject"; ereject "x";"#, "ereject"),
        (r#"redirect :copy "a@b.org";"#, "copy"),
        (r#"if mailboxexists "x" { keep; }"#, "mailbox"),
        (r#"if header :value "gt" "a" "b" { keep; }"#, "relational"),
        (r#"if address :detail "to" "x" { keep; }"#, "subaddress"),
    ];
    for (script, ext) in cases {
        let e = compile_err(script);
        assert!(
            e.message.contains(&format!("require \"{ext}\"")),
            "{script}: {e}"
        );
        assert_eq!(e.line, 1);
    }
}

#[test]
fn bad_require() {
    // (This named "body" until the body extension was implemented.)
    let e = compile_err("require [\"fileinto\", \"foreverypart\"];");
    assert_eq!(
        e.to_string(),
        "line 1: unsupported extension \"foreverypart\""
    );
    assert!(
        compile_err("require \"FileInto\";")
            .message
            .contains("unsupported")
    );
    let e = compile_err("keep;\nrequire \"fileinto\";");
    assert_eq!(
        (e.line, e.message.contains("start of the script")),
        (2, true)
    );
    let e = compile_err("if true {\n  require \"fileinto\";\n}");
    assert_eq!(e.line, 2);
    assert!(
        compile_err("require 1;")
            .message
            .contains("list of extensions")
    );
    assert!(
        compile_err("require \"fileinto\" true;")
            .message
            .contains("only a list")
    );
    let ok = compile("require \"fileinto\";\nrequire [\"vacation\", \"fileinto\"];\nkeep;");
    assert_eq!(
        ok.map(|s| s.extensions().to_vec()).ok(),
        Some(vec!["fileinto".to_owned(), "vacation".to_owned()])
    );
}

#[test]
fn shape_errors() {
    let cases = [
        ("frobnicate;", "unknown command 'frobnicate'"),
        ("if bogus { keep; }", "unknown test 'bogus'"),
        ("keep :bogus;", "unknown tagged argument ':bogus'"),
        ("keep \"x\";", "unexpected a string"),
        ("discard 1;", "unexpected number 1"),
        ("stop { }", "does not take a block"),
        ("keep true;", "does not take a test"),
        ("if true;", "needs a block"),
        ("if { keep; }", "exactly one test"),
        ("elsif true { keep; }", "without a preceding 'if'"),
        ("else { keep; }", "without a preceding 'if'"),
        ("if true { } else true { }", "takes no test"),
        ("if not (true, false) { }", "exactly one test"),
        ("if true false { }", "does not take nested tests"),
        ("if size 10 { }", ":over or :under"),
        ("if size :over \"10\" { }", "expected a size limit"),
        ("if size :over 1 :under 2 { }", "unexpected tag"),
        ("if header \"subject\" { }", "expected a key list"),
        ("if header \"bad name\" \"x\" { }", "invalid header name"),
        (
            "if address \"subject\" \"x\" { }",
            "does not hold addresses",
        ),
        (
            "require \"envelope\"; if envelope \"auth\" \"x\" { }",
            "unsupported envelope part",
        ),
        (
            "if address :all :domain \"to\" \"x\" { }",
            "one address part",
        ),
        ("if header :is :is \"a\" \"b\" { }", "duplicate tag"),
        (
            "require \"fileinto\"; fileinto \"\";",
            "invalid mailbox name",
        ),
        (
            "require \"fileinto\"; fileinto [\"a\", \"b\"];",
            "expected a mailbox name",
        ),
    ];
    for (script, want) in cases {
        let e = compile_err(script);
        assert!(
            e.message.contains(want),
            "{script}: got '{e}', want '{want}'"
        );
    }
}

#[test]
fn syntax_errors_with_line_numbers() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("keep", 1, 5, "expected ';'"),
        (
            "require \"fileinto\";\nif true {\n  fileinto \"x\"\n}\n",
            4,
            1,
            "expected ';' or '{'",
        ),
        (
            "keep;\n\n  \"unterminated\n\n",
            3,
            3,
            "unterminated quoted string",
        ),
        (
            "# comment\nif true {\n  keep;\n",
            4,
            1,
            "missing '}' for the block opened on line 2",
        ),
        ("keep;\n/* never\nclosed", 2, 1, "unterminated /* comment"),
        ("keep;\r\nkeep;\r\n  @", 3, 3, "unexpected character '@'"),
        (
            "if header :is [\"a\", ] \"b\" {}",
            1,
            21,
            "expected a string in string list",
        ),
        ("if anyof (true,) {}", 1, 16, "expected a test"),
        (
            "reject text:\nno end\n",
            1,
            8,
            "unterminated multi-line string",
        ),
        ("keep;\n}", 2, 1, "unexpected '}'"),
        (
            "if size :over 99999999999999999999 {}",
            1,
            15,
            "number too large",
        ),
        ("keep; : ;", 1, 7, "expected a tag name"),
        ("if true { keep; } }", 1, 19, "unexpected '}'"),
        ("x\n\n\n    ;;", 4, 6, "expected a command"),
    ];
    for (script, line, column, want) in cases {
        let e = compile_err(script);
        assert_eq!((e.line, e.column), (*line, *column), "{script:?}: {e}");
        assert!(
            e.message.contains(want),
            "{script:?}: got '{e}', want '{want}'"
        );
        assert_eq!(e.to_string(), format!("line {line}: {}", e.message));
    }
}

#[test]
fn nesting_limits() {
    let blocks = |n: usize| "if true {\n".repeat(n) + "discard;" + &"}\n".repeat(n);
    assert_eq!(run(&blocks(MAX_NESTING), MSG_A), [Action::Discard]);
    let e = compile_err(&blocks(MAX_NESTING + 1));
    assert!(e.message.contains("nesting too deep"), "{e}");
    assert_eq!(e.line, MAX_NESTING + 1);
    let nots = |n: usize| format!("if {}false {{ discard; }}", "not ".repeat(n));
    assert_eq!(run(&nots(MAX_NESTING - 1), MSG_A), [Action::Discard]);
    assert!(compile_err(&nots(MAX_NESTING)).message.contains("nesting"));
    let anyofs = |n: usize| format!("if {}true{} {{ }}", "anyof(".repeat(n), ")".repeat(n));
    assert!(compile(&anyofs(MAX_NESTING - 1)).is_ok());
    assert!(compile_err(&anyofs(1000)).message.contains("nesting"));
    assert!(
        compile_err(&"if true {".repeat(100_000))
            .message
            .contains("nesting")
    );
}

#[test]
fn script_size_limit() {
    let big = format!("keep;{}", " ".repeat(MAX_SCRIPT_SIZE));
    assert!(compile_err(&big).message.contains("too large"));
    let fits = format!("keep;{}", " ".repeat(MAX_SCRIPT_SIZE - 5));
    assert!(compile(&fits).is_ok());
}

#[test]
fn pathological_matches_finish_quickly() {
    let long = "a".repeat(100_000);
    let raw = format!("Subject: {long}\n\n");
    let start = Instant::now();
    let s = r#"if header :matches "subject" ["*a*a*a*a*a*b", "*a?a?a?a*b*", "a*a*a*a*a*a*a*a*a*a*c"] { discard; }"#;
    assert_eq!(run(s, &raw), [keep()]);
    let s = r#"if header :matches "subject" "*a*a*a*a*a*a" { discard; }"#;
    assert_eq!(run(s, &raw), [Action::Discard]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn work_limit_is_a_runtime_error() {
    let long = "a".repeat(200_000);
    let raw = format!("Subject: {long}\n\n");
    let keys: Vec<String> = (0..20)
        .map(|i| format!("\"*{}b{i}\"", "a".repeat(40)))
        .collect();
    let s = format!(
        "keep;\nif header :matches \"subject\" [{}] {{ discard; }}",
        keys.join(", ")
    );
    let start = Instant::now();
    let e = runtime_err(&s, &raw);
    assert!(e.message.contains("work limit"), "{e}");
    assert_eq!(e.line, 2);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // Doubling a variable quickly meets the value cap, not the work limit.
    let doubling = "require \"variables\"; set \"a\" \"xx\";".to_owned()
        + &"set \"a\" \"${a}${a}\";".repeat(1000)
        + "if string :matches \"${a}\" \"*\" { discard; }";
    assert_eq!(run(&doubling, MSG_A), [Action::Discard]);
}
