//! include, return and global (RFC 6609).

mod common;

use common::*;
use postern_sieve::{Action, Context, IncludeLocation, compile, execute_with_includes};

fn fi(m: &str) -> Action {
    Action::FileInto {
        mailbox: m.into(),
        create: false,
        flags: Vec::new(),
        copy: false,
    }
}

/// Runs `script` with `scripts` as the personal (`p:`) and global (`g:`) scripts.
fn run_inc(script: &str, scripts: &[(&str, &str)]) -> Result<Vec<Action>, String> {
    let s = compile(script).unwrap_or_else(|e| panic!("{e}\n{script}"));
    let msg = Msg::new(MSG_A);
    let envelope = env(Some("coyote@desert.example.org"), "me@example.com");
    let ctx = Context {
        message: &msg,
        envelope: &envelope,
        mailbox_exists: &|_| true,
    };
    let loader = |name: &str, loc: IncludeLocation| {
        let key = match loc {
            IncludeLocation::Personal => format!("p:{name}"),
            IncludeLocation::Global => format!("g:{name}"),
        };
        scripts
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (*v).to_owned())
    };
    execute_with_includes(&s, &ctx, &loader)
        .map(|o| o.actions)
        .map_err(|e| e.to_string())
}

#[test]
fn include_runs_the_other_script() {
    // Roundcube's "execute ruleset" action.
    let main = r#"require ["include", "fileinto"]; include :personal "spam"; fileinto "After";"#;
    let spam =
        r#"require "fileinto"; if header :contains "subject" "present" { fileinto "Spam"; }"#;
    assert_eq!(
        run_inc(main, &[("p:spam", spam)]).unwrap(),
        [fi("Spam"), fi("After")]
    );
    // :global looks elsewhere.
    let main = r#"require ["include"]; include :global "spam";"#;
    assert_eq!(run_inc(main, &[("g:spam", spam)]).unwrap(), [fi("Spam")]);
    // return ends the included script only; stop ends everything.
    let inc = r#"require ["include","fileinto"]; fileinto "A"; return; fileinto "B";"#;
    let main = r#"require ["include","fileinto"]; include "x"; fileinto "C";"#;
    assert_eq!(run_inc(main, &[("p:x", inc)]).unwrap(), [fi("A"), fi("C")]);
    let inc = r#"require "fileinto"; fileinto "A"; stop;"#;
    assert_eq!(run_inc(main, &[("p:x", inc)]).unwrap(), [fi("A")]);
    // :once runs a script once; :optional skips a missing one.
    let inc = r#"require "fileinto"; fileinto :copy "Once";"#;
    let main =
        r#"require ["include"]; include :once "o"; include :once "o"; include :optional "none";"#;
    assert!(
        run_inc(main, &[("p:o", inc)]).is_err(),
        ":copy needs require copy"
    );
    let inc = r#"require ["fileinto","imap4flags"]; addflag "x"; fileinto "Once";"#;
    assert_eq!(
        run_inc(main, &[("p:o", inc)]).unwrap(),
        [Action::FileInto {
            mailbox: "Once".into(),
            create: false,
            flags: vec!["x".into()],
            copy: false,
        }]
    );
}

#[test]
fn globals_are_shared_and_others_are_not() {
    let inc = r#"require ["include","variables"]; global "who"; set "who" "${who}!"; set "local" "inner";"#;
    let main = r#"require ["include","variables","fileinto"];
        global "who"; set "who" "coyote"; set "local" "outer";
        include "x";
        fileinto "${who}-${local}";"#;
    assert_eq!(
        run_inc(main, &[("p:x", inc)]).unwrap(),
        [fi("coyote!-outer")]
    );
}

#[test]
fn include_errors_keep_the_message() {
    let main = r#"require ["include"]; include "missing";"#;
    let e = run_inc(main, &[]).unwrap_err();
    assert!(e.contains("not found"), "{e}");
    let e = run_inc(
        main.replace("missing", "bad").as_str(),
        &[("p:bad", "frob;")],
    )
    .unwrap_err();
    assert!(
        e.contains("included script 'bad'") && e.contains("line 1"),
        "{e}"
    );
    // A loop.
    let e = run_inc(
        r#"require "include"; include "a";"#,
        &[("p:a", r#"require "include"; include "a";"#)],
    )
    .unwrap_err();
    assert!(e.contains("loop"), "{e}");
    // A deep chain (each script includes the next).
    let chain: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("p:s{i}"),
                format!("require \"include\"; include \"s{}\";", i + 1),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = chain
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let e = run_inc(r#"require "include"; include "s0";"#, &refs).unwrap_err();
    assert!(e.contains("nested deeper"), "{e}");
    // Many includes of one small script.
    let many = format!("require \"include\"; {}", "include \"k\"; ".repeat(40));
    let e = run_inc(&many, &[("p:k", "keep;")]).unwrap_err();
    assert!(e.contains("more than"), "{e}");
    // Without a loader (execute), nothing is found.
    let s = compile(r#"require "include"; include :optional "x"; keep;"#).unwrap();
    let _ = s;
}

#[test]
fn include_compile_errors() {
    for (s, what) in [
        (r#"include "a";"#, "require"),
        (
            r#"require "include"; include "../a";"#,
            "invalid script name",
        ),
        (
            r#"require "include"; include :personal :global "a";"#,
            "only one of",
        ),
        (
            r#"require ["include","variables"]; include "${x}";"#,
            "cannot use variables",
        ),
        (r#"require "include"; global "x";"#, "variables"),
        (r#"return;"#, "require"),
    ] {
        let e = compile_err(s);
        assert!(e.message.contains(what), "{s}: {e}");
    }
}
