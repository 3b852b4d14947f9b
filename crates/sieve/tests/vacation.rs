//! RFC 5230 vacation: the action's fields, and the caller-side helpers.

mod common;

use common::*;
use postern_sieve::vacation::{Skip, VacationCheck, dedup_key, should_respond};
use postern_sieve::{Action, Vacation};

fn vacation_of(script: &str, raw: &str) -> (Vacation, Vec<Action>) {
    let actions = run(script, raw);
    let v = actions
        .iter()
        .find_map(|a| {
            if let Action::Vacation(v) = a {
                Some(v.clone())
            } else {
                None
            }
        })
        .expect("a vacation action");
    (v, actions)
}

#[test]
fn all_fields() {
    let s = r#"require "vacation";
        vacation :days 3 :subject "Away" :from "Me <me@example.com>"
                 :addresses ["alias@example.com", "old@example.org"] :mime :handle "h1"
                 text:
Content-Type: text/plain

Back on Monday.
.
;"#;
    let (v, actions) = vacation_of(s, MSG_A);
    assert_eq!(
        v,
        Vacation {
            days: 3,
            subject: "Away".into(),
            from: Some("Me <me@example.com>".into()),
            addresses: vec!["alias@example.com".into(), "old@example.org".into()],
            mime: true,
            handle: "h1".into(),
            reason: "Content-Type: text/plain\r\n\r\nBack on Monday.\r\n".into(),
        }
    );
    // Vacation does not cancel the implicit keep.
    assert_eq!(actions.last(), Some(&keep()));
}

#[test]
fn defaults_and_clamping() {
    let (v, _) = vacation_of(r#"require "vacation"; vacation "Out of office";"#, MSG_A);
    assert_eq!(v.days, 7);
    assert_eq!(v.subject, "Auto: I have a present for you");
    assert_eq!(v.from, None);
    assert!(v.addresses.is_empty());
    assert!(!v.mime);
    assert!(v.handle.starts_with("auto-"));
    let (w, _) = vacation_of(r#"require "vacation"; vacation "Out of office";"#, MSG_B);
    assert_eq!(
        w.handle, v.handle,
        "the derived handle depends on the arguments only"
    );
    let (x, _) = vacation_of(r#"require "vacation"; vacation "Gone fishing";"#, MSG_A);
    assert_ne!(x.handle, v.handle);
    let (v, _) = vacation_of(r#"require "vacation"; vacation :days 0 "x";"#, "\n");
    assert_eq!((v.days, v.subject.as_str()), (1, "Auto: (no subject)"));
    let (v, _) = vacation_of(r#"require "vacation"; vacation :days 365 "x";"#, MSG_A);
    assert_eq!(v.days, 30);
}

#[test]
fn variables_in_vacation() {
    let s = r#"require ["vacation", "variables"];
        if header :matches "subject" "*" { set "s" "${1}"; }
        set "f" "not an address";
        vacation :subject "Re: ${s}" :from "${f}" "I got: ${s}";"#;
    let o = outcome(s, MSG_A);
    let Some(Action::Vacation(v)) = o.actions.first() else {
        panic!("{:?}", o.actions)
    };
    assert_eq!(v.subject, "Re: I have a present for you");
    assert_eq!(v.reason, "I got: I have a present for you");
    assert_eq!(v.from, None);
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    // Line breaks cannot reach the reply's Subject header.
    let (v, _) = vacation_of(
        "require \"vacation\"; vacation :subject \"a\r\nBcc: x@y\" \"r\";",
        MSG_A,
    );
    assert_eq!(v.subject, "a  Bcc: x@y");
}

#[test]
fn vacation_errors() {
    assert!(
        compile_err(r#"vacation "x";"#)
            .message
            .contains("require \"vacation\"")
    );
    assert!(
        compile_err(r#"require "vacation"; vacation :from "bad" "x";"#)
            .message
            .contains(":from")
    );
    assert!(
        compile_err(r#"require "vacation"; vacation :days "3" "x";"#)
            .message
            .contains("number")
    );
    assert!(
        compile_err(r#"require "vacation"; vacation :seconds 3 "x";"#)
            .message
            .contains("unknown")
    );
    assert!(
        compile_err(r#"require "vacation"; vacation;"#)
            .message
            .contains("reason")
    );
    let e = runtime_err(
        "require \"vacation\";\nvacation \"a\";\nvacation \"b\";",
        MSG_A,
    );
    assert_eq!(e.line, 3);
}

fn check(from: Option<&str>, ours: &[&str], raw: &str) -> Result<(), Skip> {
    let msg = Msg::new(raw);
    let ours: Vec<String> = ours.iter().map(|s| (*s).to_owned()).collect();
    should_respond(VacationCheck {
        envelope_from: from,
        recipient_addresses: &ours,
        message: &msg,
    })
}

#[test]
fn should_respond_rules() {
    let me = ["me@example.com"];
    let to_me = "From: a@x.org\nTo: Me <ME@example.com>\nSubject: hi\n\n";
    assert_eq!(check(Some("a@x.org"), &me, to_me), Ok(()));
    assert_eq!(check(Some("<a@x.org>"), &me, to_me), Ok(()));
    assert_eq!(check(None, &me, to_me), Err(Skip::NullSender));
    assert_eq!(check(Some("<>"), &me, to_me), Err(Skip::NullSender));
    for robot in [
        "MAILER-DAEMON@x.org",
        "owner-list@x.org",
        "list-request@x.org",
        "LISTSERV@x.org",
        "majordomo@x.org",
    ] {
        assert!(
            matches!(
                check(Some(robot), &me, to_me),
                Err(Skip::AutomatedSender(_))
            ),
            "{robot}"
        );
    }
    assert_eq!(
        check(Some("me@example.com"), &me, to_me),
        Err(Skip::OwnAddress)
    );
    let auto = "Auto-Submitted: auto-replied\nTo: me@example.com\n\n";
    assert_eq!(
        check(Some("a@x.org"), &me, auto),
        Err(Skip::AutoSubmitted("auto-replied".into()))
    );
    let not_auto = "Auto-Submitted: No (comment)\nTo: me@example.com\n\n";
    assert_eq!(check(Some("a@x.org"), &me, not_auto), Ok(()));
    for h in [
        "List-Id: <l.x.org>",
        "List-Post: <mailto:l@x.org>",
        "List-Unsubscribe: <mailto:u@x.org>",
    ] {
        let raw = format!("{h}\nTo: me@example.com\n\n");
        assert!(
            matches!(check(Some("a@x.org"), &me, &raw), Err(Skip::MailingList(_))),
            "{h}"
        );
    }
    for p in ["bulk", "List", "junk"] {
        let raw = format!("Precedence: {p}\nTo: me@example.com\n\n");
        assert!(
            matches!(check(Some("a@x.org"), &me, &raw), Err(Skip::Precedence(_))),
            "{p}"
        );
    }
    let raw = "Precedence: first-class\nTo: me@example.com\n\n";
    assert_eq!(check(Some("a@x.org"), &me, raw), Ok(()));
    let elsewhere = "To: someone@example.com\nCc: list@example.com\n\n";
    assert_eq!(
        check(Some("a@x.org"), &me, elsewhere),
        Err(Skip::NotAddressed)
    );
    // Bcc, Resent-* and extra :addresses count.
    let cases = [
        "Bcc: me@example.com\n\n",
        "Resent-To: x@y.z, me@example.com\n\n",
        "Resent-Cc: G: me@example.com;\n\n",
    ];
    for raw in cases {
        assert_eq!(check(Some("a@x.org"), &me, raw), Ok(()), "{raw}");
    }
    let alias = "To: alias@example.org\n\n";
    assert_eq!(check(Some("a@x.org"), &me, alias), Err(Skip::NotAddressed));
    assert_eq!(
        check(
            Some("a@x.org"),
            &["me@example.com", "alias@example.org"],
            alias
        ),
        Ok(())
    );
    assert_eq!(
        Skip::NotAddressed.to_string(),
        "not addressed to the recipient"
    );
}

#[test]
fn dedup_keys() {
    assert_eq!(
        dedup_key("Bob@Example.ORG", "h"),
        dedup_key("<bob@example.org>", "h")
    );
    assert_ne!(
        dedup_key("bob@example.org", "h1"),
        dedup_key("bob@example.org", "h2")
    );
    assert_ne!(
        dedup_key("bob@example.org", "h"),
        dedup_key("alice@example.org", "h")
    );
}
