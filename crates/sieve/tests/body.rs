//! The body test (RFC 5173) over a view that gives the parts' text.

mod common;

use common::*;
use postern_sieve::{Action, BodyTransform, Context, Message, compile, execute};

/// A message with a text part and an HTML part.
struct Parts;

impl Message for Parts {
    fn header(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn size(&self) -> u64 {
        100
    }
    fn body(&self, t: &BodyTransform) -> Vec<String> {
        let text = ("text/plain", "Please find the Invoice attached.");
        let html = ("text/html", "<p>cheap pills</p>");
        let pdf = ("application/pdf", "%PDF-1.4");
        match t {
            BodyTransform::Raw => {
                vec!["--b\r\nContent-Type: text/plain\r\n\r\nPlease find...".into()]
            }
            BodyTransform::Text => vec![text.1.into(), html.1.into()],
            BodyTransform::Content(types) => [text, html, pdf]
                .iter()
                .filter(|(ct, _)| {
                    types.iter().any(|t| {
                        t.is_empty()
                            || t.eq_ignore_ascii_case(ct)
                            || (!t.contains('/') && ct.split('/').next() == Some(t.as_str()))
                    })
                })
                .map(|(_, v)| (*v).to_owned())
                .collect(),
        }
    }
}

fn run_parts(script: &str) -> Vec<Action> {
    let s = compile(script).unwrap_or_else(|e| panic!("{e}\n{script}"));
    let envelope = env(Some("a@b.c"), "me@example.com");
    let ctx = Context {
        message: &Parts,
        envelope: &envelope,
        mailbox_exists: &|_| true,
    };
    execute(&s, &ctx).expect("runs").actions
}

fn fi(m: &str) -> Action {
    Action::FileInto {
        mailbox: m.into(),
        create: false,
        flags: Vec::new(),
        copy: false,
    }
}

#[test]
fn body_transforms() {
    // Roundcube: `body :text :contains`.
    let s =
        r#"require ["body","fileinto"]; if body :text :contains "invoice" { fileinto "Bills"; }"#;
    assert_eq!(run_parts(s), [fi("Bills")]);
    let s = r#"require ["body","fileinto"]; if body :contains "pills" { fileinto "Spam"; }"#;
    assert_eq!(run_parts(s), [fi("Spam")]);
    let s = r#"require ["body","fileinto"]; if body :content "text/plain" :contains "pills" { fileinto "Spam"; }"#;
    assert_eq!(run_parts(s), [keep()]);
    let s = r#"require ["body","fileinto"]; if body :content "application" :contains "%PDF" { fileinto "Pdf"; }"#;
    assert_eq!(run_parts(s), [fi("Pdf")]);
    let s = r#"require ["body","fileinto"]; if body :raw :contains "Content-Type: text/plain" { fileinto "Raw"; }"#;
    assert_eq!(run_parts(s), [fi("Raw")]);
    // A view without a body (the trait's default) matches nothing.
    let s = r#"require ["body","fileinto"]; if body :contains "" { fileinto "X"; }"#;
    assert_eq!(run(s, MSG_A), [keep()]);
}

#[test]
fn body_compile_errors() {
    for (s, what) in [
        (r#"if body :contains "x" { stop; }"#, "require"),
        (
            r#"require "body"; if body :raw :text "x" { stop; }"#,
            "only one of",
        ),
        (
            r#"require "body"; if body :content "x" { stop; }"#,
            "key list",
        ),
    ] {
        let e = compile_err(s);
        assert!(e.message.contains(what), "{s}: {e}");
    }
}
