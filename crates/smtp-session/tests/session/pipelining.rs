//! The driver's side: pipelined input waits for completions; timeouts, shutdown, mistakes.

use std::sync::Arc;

use postern_smtp_session::{
    Action, Completion, Flavor, PeerInfo, Reply, Session, SessionError, Verdict,
};

use crate::common::{codes, first_line, smtp_config};

#[test]
fn accept_with_a_custom_reply() {
    let config = Arc::new(smtp_config());
    let mut s = Session::new(config, PeerInfo::default());
    s.input(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n");
    let custom = Reply::new(250, (2, 1, 0), "Sender <a@b.example> OK");
    let out = s.completed(Completion::Sender(Verdict::AcceptWith(custom.clone())));
    assert_eq!(out, Ok(vec![Action::Reply(custom)]));
}

#[test]
fn pipelined_commands_wait_for_the_driver() {
    let config = Arc::new(smtp_config());
    let mut s = Session::new(config, PeerInfo::default());
    let out = s.input(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@b.example>\r\nDATA\r\n");
    assert_eq!(out.len(), 2);
    assert!(
        matches!(&out[1], Action::CheckSender { address: Some(a), .. } if a.as_str() == "a@b.example")
    );
    assert!(!s.wants_input());
    // More input is kept for later.
    assert!(s.input(b"hello\r\n.\r\n").is_empty());
    let out = s.completed(Completion::Sender(Verdict::Accept)).unwrap();
    assert_eq!(out[0], Action::Reply(Reply::sender_ok()));
    assert!(
        matches!(&out[1], Action::CheckRecipient { address, .. } if address.as_str() == "x@b.example")
    );
    let out = s.completed(Completion::Recipient(Verdict::Accept)).unwrap();
    assert_eq!(codes(&replies(&out)), [250, 354]);
    let Some(Action::Deliver(tx)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(tx.message, b"hello\r\n");
    let out = s.completed(Completion::Delivered(vec![])).unwrap();
    assert_eq!(out, [Action::Reply(Reply::temp_fail())]);
    assert!(s.wants_input());
}

#[test]
fn unexpected_completion_is_an_error() {
    let config = Arc::new(smtp_config());
    let mut s = Session::new(config, PeerInfo::default());
    let err = s
        .completed(Completion::Recipient(Verdict::Accept))
        .unwrap_err();
    assert_eq!(
        err,
        SessionError::UnexpectedCompletion { pending: "nothing" }
    );
    s.input(b"EHLO c\r\nMAIL FROM:<>\r\n");
    assert!(s.completed(Completion::Delivered(vec![])).is_err());
    // The pending action survives the mistake.
    assert!(s.completed(Completion::Sender(Verdict::Accept)).is_ok());
}

#[test]
fn timeout_and_shutdown() {
    let config = Arc::new(smtp_config());
    let mut s = Session::new(config.clone(), PeerInfo::default());
    let out = s.timeout();
    assert_eq!(
        first_line(&replies(&out)[0]),
        "421 4.4.2 mx.example Error: timeout exceeded"
    );
    assert_eq!(out.last(), Some(&Action::Close));
    assert!(s.timeout().is_empty() && s.input(b"NOOP\r\n").is_empty());
    let mut s = Session::new(config, PeerInfo::default());
    s.input(b"EHLO c\r\nMAIL FROM:<>\r\n");
    let out = s.shutdown();
    assert_eq!(
        first_line(&replies(&out)[0]),
        "421 4.3.2 mx.example Service shutting down"
    );
    assert_eq!(s.completed(Completion::Sender(Verdict::Accept)), Ok(vec![]));
    assert_eq!(s.config().flavor, Flavor::Smtp);
}

pub(crate) fn replies(actions: &[Action]) -> Vec<Reply> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}
