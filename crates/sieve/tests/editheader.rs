//! `editheader` (RFC 5293): `addheader` and `deleteheader`, checked against the RFC's
//! text and examples, and the limits and protections of this implementation.

mod common;

use common::{compile_err, fileinto, keep, outcome, runtime_err};
use postern_sieve::Outcome;
use postern_sieve::limits::{MAX_ADDED_HEADER_BYTES, MAX_ADDHEADER_VALUE, MAX_HEADER_EDITS};

const MSG: &str = "X-Hello: one\r
From: coyote@desert.example.org\r
Subject: I have a present for you\r
X-Hello: two\r
Received: from a by b\r
X-Hello: three\r
X-Hello: four\r
\r
Look, I'm sorry about the whole anvil thing.\r
";

/// The outcome and the message with the edits applied.
fn edited(script: &str, raw: &str) -> (Outcome, String) {
    let script = format!(
        "require [\"editheader\", \"fileinto\", \"variables\", \"encoded-character\", \"relational\", \"comparator-i;ascii-numeric\"];\n{script}"
    );
    let o = outcome(&script, raw);
    let out = String::from_utf8(o.header_edits.apply(raw.as_bytes())).unwrap();
    (o, out)
}

fn header_of(msg: &str) -> &str {
    msg.split("\r\n\r\n").next().unwrap()
}

#[test]
fn addheader_puts_the_field_first_and_last_appends() {
    let (o, out) = edited(
        r#"addheader "X-Source" "mydomain.com";
           addheader :last "X-Sieve-Filtered" "<kim@job.example.com>";"#,
        MSG,
    );
    assert_eq!(o.actions, [keep()]);
    assert_eq!(o.header_edits.len(), 2);
    assert!(
        out.starts_with("X-Source: mydomain.com\r\nX-Hello: one\r\n"),
        "{out}"
    );
    assert!(
        header_of(&out).ends_with("X-Hello: four\r\nX-Sieve-Filtered: <kim@job.example.com>"),
        "{out}"
    );
    // The body is untouched.
    assert!(out.ends_with("\r\n\r\nLook, I'm sorry about the whole anvil thing.\r\n"));
}

#[test]
fn later_tests_see_the_added_field() {
    // RFC 5293 §7: the header test "will always evaluate to true".
    let (o, _) = edited(
        r#"addheader "X-Hello" "World";
           if header :contains "X-Hello" "World" { fileinto "international"; }"#,
        "Subject: x\r\n\r\nbody\r\n",
    );
    assert_eq!(o.actions, [fileinto("international")]);
    let (o, _) = edited(
        r#"addheader "X-New" "v";
           if allof (exists "X-New", header :count "eq" :comparator "i;ascii-numeric" "X-New" "1")
           { fileinto "seen"; }"#,
        "Subject: x\r\n\r\nbody\r\n",
    );
    assert_eq!(o.actions, [fileinto("seen")]);
}

#[test]
fn later_tests_do_not_see_deleted_fields() {
    let (o, out) = edited(
        r#"deleteheader "X-Hello";
           if exists "X-Hello" { fileinto "still"; }"#,
        MSG,
    );
    assert_eq!(o.actions, [keep()]);
    assert!(!out.contains("X-Hello"), "{out}");
    assert!(out.contains("Received: from a by b\r\n"));
}

#[test]
fn add_then_delete_first_leaves_the_message_unchanged() {
    // RFC 5293 §7, first example.
    let (o, out) = edited(
        r#"addheader "X-Hello" "World"; deleteheader :index 1 "X-Hello";"#,
        MSG,
    );
    assert_eq!(out, MSG);
    assert_eq!(o.header_edits.len(), 2);
}

#[test]
fn successive_indexes_count_the_current_header() {
    // RFC 5293 §7: "deletes the first and third of them, not the first and fourth".
    let (_, out) = edited(
        r#"deleteheader :index 1 "X-Hello"; deleteheader :index 2 "X-Hello";"#,
        MSG,
    );
    let h = header_of(&out);
    assert!(
        !h.contains("X-Hello: one") && !h.contains("X-Hello: three"),
        "{h}"
    );
    assert!(
        h.contains("X-Hello: two") && h.contains("X-Hello: four"),
        "{h}"
    );
}

#[test]
fn index_is_counted_before_the_patterns_and_last_counts_backwards() {
    // RFC 5293 §5: the first field, if it matches; not the first that matches.
    let (o, out) = edited(r#"deleteheader :index 1 :contains "X-Hello" "two";"#, MSG);
    assert!(o.header_edits.is_empty());
    assert_eq!(out, MSG);
    let (_, out) = edited(r#"deleteheader :index 2 :contains "X-Hello" "two";"#, MSG);
    assert!(!out.contains("X-Hello: two") && out.contains("X-Hello: one"));
    let (_, out) = edited(r#"deleteheader :index 1 :last "X-Hello";"#, MSG);
    assert!(!out.contains("X-Hello: four") && out.contains("X-Hello: three"));
    // Past the end: not an error, nothing deleted.
    let (o, out) = edited(r#"deleteheader :index 9 "X-Hello";"#, MSG);
    assert!(o.header_edits.is_empty());
    assert_eq!(out, MSG);
}

#[test]
fn value_patterns_use_the_match_type_and_comparator() {
    let (_, out) = edited(r#"deleteheader :matches "X-Hello" ["t*", "ONE"];"#, MSG);
    let h = header_of(&out);
    assert_eq!(h.matches("X-Hello").count(), 1, "{h}");
    assert!(h.contains("X-Hello: four"));
    // i;octet is case-sensitive: "ONE" does not match "one".
    let (o, _) = edited(
        r#"deleteheader :comparator "i;octet" :is "X-Hello" "ONE";"#,
        MSG,
    );
    assert!(o.header_edits.is_empty());
    // Without value patterns the match type is ignored: every field goes.
    let (_, out) = edited(r#"deleteheader :contains "X-Hello";"#, MSG);
    assert!(!out.contains("X-Hello"));
}

#[test]
fn deleteheader_matches_does_not_set_match_variables() {
    let (o, _) = edited(
        r#"if header :matches "Subject" "I have *" { }
           deleteheader :matches "X-Hello" "t*";
           if string :is "${1}" "a present for you" { fileinto "kept"; }"#,
        MSG,
    );
    assert_eq!(o.actions, [fileinto("kept")]);
}

#[test]
fn the_field_name_is_case_insensitive_and_written_as_given() {
    let (_, out) = edited(r#"deleteheader "x-HELLO"; addheader "x-sPaM" "yes";"#, MSG);
    assert!(!out.contains("X-Hello"));
    assert!(out.starts_with("x-sPaM: yes\r\n"));
}

#[test]
fn variables_expand_in_names_and_values() {
    let (o, out) = edited(
        r#"set "n" "X-Tag"; set "v" "tagged";
           if header :matches "Subject" "* present *" { addheader "${n}" "${v} ${2}"; }
           if header :is "X-Tag" "tagged for you" { fileinto "ok"; }"#,
        MSG,
    );
    assert_eq!(o.actions, [fileinto("ok")]);
    assert!(out.starts_with("X-Tag: tagged for you\r\n"));
}

#[test]
fn subject_can_be_replaced() {
    // RFC 5293 §6: Subject must be editable.
    let (o, out) = edited(
        r#"if header :matches "Subject" "*" { deleteheader "Subject"; addheader :last "Subject" "[filtered] ${1}"; }"#,
        MSG,
    );
    assert!(o.warnings.is_empty());
    let h = header_of(&out);
    assert!(
        h.ends_with("Subject: [filtered] I have a present for you"),
        "{h}"
    );
    assert_eq!(h.matches("Subject:").count(), 1);
}

#[test]
fn protected_fields_are_silently_left_alone() {
    // RFC 5293 §6: deleting Received must not be permitted, and an attempt is ignored.
    for script in [
        r#"deleteheader "Received";"#,
        r#"deleteheader :index 1 "received";"#,
        r#"addheader "Received" "from forged by forged";"#,
        r#"addheader "Auto-Submitted" "no";"#,
        r#"deleteheader "Auto-Submitted";"#,
        r#"addheader "Authentication-Results" "example.com; dkim=pass";"#,
        r#"deleteheader "Authentication-Results";"#,
        r#"addheader "X-Postern-Junk" "no";"#,
        r#"set "n" "Received"; deleteheader "${n}";"#,
    ] {
        let (o, out) = edited(script, MSG);
        assert!(o.header_edits.is_empty(), "{script}");
        assert_eq!(out, MSG, "{script}");
        assert_eq!(o.actions, [keep()], "{script}");
        assert_eq!(o.warnings.len(), 1, "{script}: {:?}", o.warnings);
    }
}

#[test]
fn non_ascii_values_are_encoded_and_long_ones_folded() {
    let (_, out) = edited(r#"addheader "Subject" "Grüße";"#, "A: b\r\n\r\nbody");
    assert!(
        out.starts_with("Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nA: b\r\n"),
        "{out}"
    );
    let long = "word ".repeat(60);
    let (o, out) = edited(
        &format!(
            r#"addheader "X-Long" "{long}"; if header :is "X-Long" "{}" {{ fileinto "same"; }}"#,
            long.trim()
        ),
        "A: b\r\n\r\nbody",
    );
    assert_eq!(o.actions, [fileinto("same")]);
    let added: Vec<&str> = out
        .split("\r\nA: b")
        .next()
        .unwrap()
        .split("\r\n")
        .collect();
    assert!(added.len() > 2, "{added:?}");
    assert!(added.iter().all(|l| l.len() <= 78), "{added:?}");
    assert!(added[1..].iter().all(|l| l.starts_with(' ')));
}

#[test]
fn no_header_injection() {
    // A line break inside the value (here through encoded-character) cannot start a field.
    let (o, out) = edited(
        r#"addheader "X-A" "a${hex:0d 0a}Bcc: victim@example.net${hex:0a}${hex:0d 0a}${hex:0d 0a}body";
           if header :is "X-A" "a Bcc: victim@example.net body" { fileinto "one-field"; }"#,
        "A: b\r\n\r\nbody",
    );
    assert_eq!(o.actions, [fileinto("one-field")]);
    assert!(
        out.starts_with("X-A: a Bcc: victim@example.net body\r\nA: b\r\n\r\n"),
        "{out}"
    );
    assert!(!out.contains("\r\nBcc"));
    // NUL and other controls are refused: a runtime error, the message is kept as it came.
    let e = runtime_err(
        r#"require ["editheader", "encoded-character"]; addheader "X-A" "a${hex:00}b";"#,
        MSG,
    );
    assert!(e.message.contains("control character"), "{e}");
    runtime_err(
        r#"require ["editheader", "encoded-character"]; addheader "X-A" "${hex:1b}[31m";"#,
        MSG,
    );
    // Folding in the value is unfolded, as RFC 5322 reads it.
    let (_, out) = edited(r#"addheader "X-F" "a${hex:0d 0a} b";"#, "A: b\r\n\r\nbody");
    assert!(out.starts_with("X-F: a b\r\n"), "{out}");
}

#[test]
fn invalid_field_names_do_not_compile() {
    for script in [
        r#"require "editheader"; addheader "X Hello" "v";"#,
        r#"require "editheader"; addheader "X:Hello" "v";"#,
        r#"require "editheader"; addheader "" "v";"#,
        r#"require "editheader"; addheader "Grüße" "v";"#,
        r#"require "editheader"; deleteheader "a b";"#,
    ] {
        let e = compile_err(script);
        assert!(e.message.contains("invalid field name"), "{script}: {e}");
        assert_eq!(e.line, 1);
    }
    let long = "X".repeat(201);
    compile_err(&format!(r#"require "editheader"; addheader "{long}" "v";"#));
}

#[test]
fn invalid_names_from_variables_are_runtime_errors() {
    let e = runtime_err(
        r#"require ["editheader", "variables"]; set "n" "a b"; addheader "${n}" "v";"#,
        MSG,
    );
    assert!(e.message.contains("invalid field name"), "{e}");
    runtime_err(
        r#"require ["editheader", "variables"]; set "n" ""; deleteheader "${n}";"#,
        MSG,
    );
}

#[test]
fn syntax_errors() {
    // Without require.
    let e = compile_err(r#"addheader "X-A" "v";"#);
    assert!(e.message.contains("editheader"), "{e}");
    compile_err(r#"deleteheader "X-A";"#);
    // RFC 5293 §5: :last without :index is an error.
    let e = compile_err(r#"require "editheader"; deleteheader :last "X-A";"#);
    assert!(e.message.contains(":last needs :index"), "{e}");
    compile_err(r#"require "editheader"; deleteheader :index 0 "X-A";"#);
    compile_err(r#"require "editheader"; addheader "X-A";"#);
    compile_err(r#"require "editheader"; addheader :first "X-A" "v";"#);
    compile_err(r#"require "editheader"; addheader "X-A" ["v", "w"];"#);
    compile_err(r#"require ["editheader", "relational"]; deleteheader :count "gt" "X-A" "1";"#);
    // :index on deleteheader needs no "index" extension.
    assert!(
        postern_sieve::compile(r#"require "editheader"; deleteheader :index 2 :last "X-A" "v";"#)
            .is_ok()
    );
}

#[test]
fn edit_count_and_added_bytes_are_bounded() {
    let many = r#"addheader "X-A" "v";"#.repeat(MAX_HEADER_EDITS);
    let (o, _) = edited(&many, MSG);
    assert_eq!(o.header_edits.len(), MAX_HEADER_EDITS);
    let e = runtime_err(
        &format!(r#"require "editheader"; {many} deleteheader "X-A";"#),
        MSG,
    );
    assert!(e.message.contains("too many header edits"), "{e}");
    // One value over the limit.
    let big = "a".repeat(MAX_ADDHEADER_VALUE + 1);
    let e = runtime_err(
        &format!(r#"require "editheader"; addheader "X-A" "{big}";"#),
        MSG,
    );
    assert!(e.message.contains("longer than"), "{e}");
    // Many values under it, over the total.
    let value = "a ".repeat(MAX_ADDHEADER_VALUE / 2);
    let n = MAX_ADDED_HEADER_BYTES / value.len() + 1;
    let script = format!(r#"addheader "X-A" "{value}";"#).repeat(n);
    let e = runtime_err(&format!(r#"require "editheader"; {script}"#), MSG);
    assert!(e.message.contains("exceed"), "{e}");
}

#[test]
fn editheader_is_advertised() {
    assert!(postern_sieve::EXTENSIONS.contains(&"editheader"));
}

/// xorshift64*: deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

/// Random sequences of edits: the message `apply` writes holds exactly the fields a plain
/// model of RFC 5293 (a list of fields, edited in order) predicts, and what later tests
/// saw (recorded in variables) matches the model at that point.
#[test]
fn random_edit_sequences_match_a_model() {
    let names = ["X-A", "x-b", "X-C"];
    let values = ["1", "2", "3"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let mut model: Vec<(String, String)> = vec![
            ("X-A".into(), "1".into()),
            ("Subject".into(), "s".into()),
            ("x-b".into(), "2".into()),
            ("X-A".into(), "2".into()),
            ("X-C".into(), "3".into()),
            ("X-A".into(), "1".into()),
        ];
        let raw: String = model
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect::<String>()
            + "\r\nbody\r\n";
        let mut script = String::new();
        for step in 0..rng.below(8) + 1 {
            let name = names[rng.below(3)];
            let value = values[rng.below(3)];
            let same = |n: &str| n.eq_ignore_ascii_case(name);
            match rng.below(4) {
                0 => {
                    script.push_str(&format!("addheader \"{name}\" \"{value}\";\n"));
                    model.insert(0, (name.into(), value.into()));
                }
                1 => {
                    script.push_str(&format!("addheader :last \"{name}\" \"{value}\";\n"));
                    model.push((name.into(), value.into()));
                }
                2 => {
                    let i = rng.below(4) + 1;
                    let last = rng.below(2) == 0;
                    let pattern = rng.below(2) == 0;
                    script.push_str(&format!(
                        "deleteheader :index {i} {} \"{name}\"{};\n",
                        if last { ":last" } else { "" },
                        if pattern {
                            format!(" \"{value}\"")
                        } else {
                            String::new()
                        }
                    ));
                    let positions: Vec<usize> =
                        (0..model.len()).filter(|&k| same(&model[k].0)).collect();
                    if i <= positions.len() {
                        let at = if last {
                            positions[positions.len() - i]
                        } else {
                            positions[i - 1]
                        };
                        if !pattern || model[at].1 == value {
                            model.remove(at);
                        }
                    }
                }
                _ => {
                    script.push_str(&format!("deleteheader :is \"{name}\" \"{value}\";\n"));
                    model.retain(|(n, v)| !(same(n) && v == value));
                }
            }
            // What a later test sees: the number of fields of that name, then.
            let count = model.iter().filter(|(n, _)| same(n)).count();
            script.push_str(&format!(
                "if header :count \"eq\" :comparator \"i;ascii-numeric\" \"{name}\" \"{count}\" {{ }} else {{ fileinto \"wrong-{step}\"; }}\n"
            ));
        }
        let (o, out) = edited(&script, &raw);
        assert_eq!(
            o.actions,
            [keep()],
            "round {round}: a test saw another header\n{script}"
        );
        let got: Vec<(String, String)> = header_of(&out)
            .split("\r\n")
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("a field");
                (n.to_owned(), v.to_owned())
            })
            .collect();
        assert_eq!(got, model, "round {round}\n{script}\n{out}");
        assert!(out.ends_with("\r\n\r\nbody\r\n"));
    }
}
