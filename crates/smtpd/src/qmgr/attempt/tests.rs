//! An attempt's decisions without sockets: retries, bounces, expiry, notifications.

use std::collections::HashMap;
use std::time::Duration;

use postern_dsn::Action;
use postern_queue::{
    Backoff, DeliveryReply, Destination, Domain, Envelope, Notify, RcptStatus, Recipient, Spool,
};

use super::*;

const NOW: i64 = 1_800_000_000;

fn backoff() -> Backoff {
    Backoff {
        min: Duration::from_secs(300),
        max: Duration::from_secs(3600),
        lifetime: Duration::from_secs(5 * 86400),
        delay_warning: Duration::from_secs(4 * 3600),
    }
}

fn env(sender: Option<&str>, rcpts: &[&str]) -> Envelope {
    let mut e = Envelope::new(
        sender.map(Into::into),
        rcpts.iter().map(|r| Recipient::new(*r)).collect(),
    );
    e.arrival = NOW - 60;
    e
}

fn remote(code: u16, status: (u8, u16, u16), text: &str) -> DeliveryReply {
    DeliveryReply::new(code, status, text)
        .from_remote("mx1.example.net", Some("192.0.2.7".parse().unwrap()))
}

/// Applies one outcome per recipient, finishes at `now`, and returns the notices.
fn run(e: &mut Envelope, outcomes: Vec<Outcome>, now: i64) -> (Vec<Notice>, bool) {
    let mut p = Progress::default();
    for (i, o) in outcomes.into_iter().enumerate() {
        apply(e, &mut p, i, o);
    }
    let (due, done) = finish(e, p, &backoff(), now);
    (notices(e, &due, now, backoff().lifetime), done)
}

#[test]
fn a_temporary_failure_retries_with_backoff() {
    let mut e = env(Some("a@example.org"), &["b@example.net"]);
    let reply = remote(451, (4, 7, 1), "greylisted");
    let (n, done) = run(&mut e, vec![Outcome::Deferred(reply.clone())], NOW);
    assert!(!done && n.is_empty());
    assert!(e.recipients[0].is_pending());
    assert_eq!(e.recipients[0].last_reply.as_ref(), Some(&reply));
    assert_eq!(e.attempts, 1);
    // min backoff, ±10%
    assert!(
        (NOW + 270..=NOW + 330).contains(&e.next_attempt),
        "{}",
        e.next_attempt
    );
    assert_eq!(
        e.last_error.as_deref(),
        Some("451 4.7.1 greylisted (remote-mta mx1.example.net[192.0.2.7])")
    );
    // The second failure doubles it.
    let (_, done) = run(&mut e, vec![Outcome::Deferred(reply)], NOW);
    assert!(!done && e.attempts == 2);
    assert!(
        (NOW + 540..=NOW + 660).contains(&e.next_attempt),
        "{}",
        e.next_attempt
    );
}

#[test]
fn a_permanent_failure_bounces_with_the_remote_reply_and_remote_mta() {
    let mut e = env(Some("a@example.org"), &["b@example.net", "c@example.net"]);
    e.recipients[0].orcpt = Some("rfc822;B@example.net".into());
    let refused = remote(550, (5, 1, 1), "<b@example.net>: no such user");
    let ok = remote(250, (2, 0, 0), "queued");
    let (n, done) = run(
        &mut e,
        vec![Outcome::Bounced(refused.clone()), Outcome::Delivered(ok)],
        NOW,
    );
    assert!(done);
    assert_eq!(
        e.recipients[0].status,
        RcptStatus::Bounced { reply: refused }
    );
    assert_eq!(e.recipients[1].status, RcptStatus::Delivered);
    assert_eq!(n.len(), 1, "a failure notice only (no NOTIFY=SUCCESS)");
    assert_eq!(n[0].to, "a@example.org");
    let r = &n[0].recipients;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].final_recipient, "b@example.net");
    assert_eq!(
        r[0].original_recipient.as_deref(),
        Some("rfc822;B@example.net")
    );
    assert_eq!(r[0].action, Action::Failed);
    assert_eq!(r[0].status, (5, 1, 1));
    assert_eq!(r[0].remote_mta.as_deref(), Some("mx1.example.net"));
    assert_eq!(
        r[0].diagnostic.as_deref(),
        Some("550 5.1.1 <b@example.net>: no such user")
    );
    assert_eq!(r[0].last_attempt, Some(NOW));
    // A 5xx without an enhanced code: 5.0.0.
    let mut e = env(Some("a@example.org"), &["b@example.net"]);
    let bare = DeliveryReply {
        status: None,
        ..DeliveryReply::new(554, (5, 0, 0), "no")
    };
    let (n, _) = run(&mut e, vec![Outcome::Bounced(bare)], NOW);
    assert_eq!(n[0].recipients[0].status, (5, 0, 0));
    assert_eq!(n[0].recipients[0].diagnostic.as_deref(), Some("554 no"));
    assert_eq!(n[0].recipients[0].remote_mta, None);
}

#[test]
fn expiry_bounces_what_is_pending_with_4_4_7_and_the_last_reply() {
    let mut e = env(Some("a@example.org"), &["b@example.net", "c@example.org"]);
    let lifetime = i64::try_from(backoff().lifetime.as_secs()).unwrap();
    let now = e.arrival + lifetime;
    let last = remote(421, (4, 3, 2), "shutting down");
    let (n, done) = run(
        &mut e,
        vec![
            Outcome::Deferred(last.clone()),
            Outcome::Deferred(DeliveryReply::new(451, (4, 3, 0), "authd down")),
        ],
        now,
    );
    assert!(done, "nothing pending after expiry");
    let RcptStatus::Bounced { reply } = &e.recipients[0].status else {
        panic!()
    };
    assert_eq!(
        reply.to_string(),
        "4.4.7 message expired in the queue; last error: 421 4.3.2 shutting down (remote-mta mx1.example.net[192.0.2.7])"
    );
    assert_eq!(e.recipients[0].last_reply.as_ref(), Some(&last));
    assert_eq!(n.len(), 1);
    let r = &n[0].recipients;
    assert_eq!(r.len(), 2);
    assert!(
        r.iter()
            .all(|r| r.action == Action::Failed && r.status == (4, 4, 7))
    );
    assert_eq!(
        r[0].diagnostic.as_deref(),
        Some("4.4.7 message expired in the queue; last error: 421 4.3.2 shutting down")
    );
    assert_eq!(r[0].remote_mta.as_deref(), Some("mx1.example.net"));
    assert_eq!(
        r[1].diagnostic.as_deref(),
        Some("4.4.7 message expired in the queue; last error: 451 4.3.0 authd down")
    );
    assert_eq!(r[1].remote_mta, None);
    // Never tried: the reason says so, with nothing after it.
    let mut e = env(Some("a@example.org"), &["b@example.net"]);
    let (n, _) = run(&mut e, vec![], NOW - 60 + lifetime);
    assert_eq!(
        n[0].recipients[0].diagnostic.as_deref(),
        Some("4.4.7 message expired in the queue; last error: ")
    );
    // Just before the lifetime: still retried.
    let mut e = env(Some("a@example.org"), &["b@example.net"]);
    let (_, done) = run(
        &mut e,
        vec![Outcome::Deferred(last)],
        NOW - 60 + lifetime - 1,
    );
    assert!(!done && e.recipients[0].is_pending());
}

#[test]
fn notify_decides_which_notices_are_sent() {
    let never = Notify::NEVER;
    let success = Notify {
        success: true,
        failure: false,
        delay: false,
    };
    let failure_only = Notify {
        success: false,
        failure: true,
        delay: false,
    };
    let mut e = env(
        Some("a@example.org"),
        &["never@x.net", "success@x.net", "fail@x.net", "delay@x.net"],
    );
    e.recipients[0].notify = never;
    e.recipients[1].notify = success;
    e.recipients[2].notify = failure_only;
    // Old enough for a delay warning.
    let warn_at = e.arrival + 4 * 3600;
    let (n, done) = run(
        &mut e,
        vec![
            Outcome::Bounced(remote(550, (5, 1, 1), "no")),
            Outcome::Delivered(remote(250, (2, 0, 0), "ok")),
            Outcome::Deferred(remote(451, (4, 2, 0), "later")),
            Outcome::Deferred(remote(452, (4, 2, 2), "full")),
        ],
        warn_at,
    );
    assert!(!done);
    // NEVER: no failure notice; SUCCESS: a success notice; FAILURE only: no delay warning;
    // the default (FAILURE,DELAY): a delay warning.
    assert_eq!(n.len(), 2, "{n:?}");
    let delayed = &n[0].recipients;
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].final_recipient, "delay@x.net");
    assert_eq!(delayed[0].action, Action::Delayed);
    assert_eq!(delayed[0].status, (4, 2, 2));
    assert_eq!(delayed[0].diagnostic.as_deref(), Some("452 4.2.2 full"));
    let lifetime = i64::try_from(backoff().lifetime.as_secs()).unwrap();
    assert_eq!(delayed[0].will_retry_until, Some(e.arrival + lifetime));
    let delivered = &n[1].recipients;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].final_recipient, "success@x.net");
    assert_eq!(delivered[0].action, Action::Delivered);
    assert_eq!(delivered[0].status, (2, 0, 0));
    assert_eq!(delivered[0].remote_mta.as_deref(), Some("mx1.example.net"));
    assert!(e.recipients[3].delay_warned && !e.recipients[2].delay_warned);
    // One delay warning per recipient, not one per attempt.
    let (n, _) = run(
        &mut e,
        vec![
            Outcome::Deferred(remote(451, (4, 2, 0), "later")),
            Outcome::Deferred(remote(451, (4, 2, 0), "later")),
            Outcome::Deferred(remote(451, (4, 2, 0), "later")),
            Outcome::Deferred(remote(452, (4, 2, 2), "full")),
        ],
        warn_at + 600,
    );
    assert!(n.is_empty(), "{n:?}");
    // Too young for a warning.
    let mut e = env(Some("a@example.org"), &["b@x.net"]);
    let (n, _) = run(
        &mut e,
        vec![Outcome::Deferred(remote(451, (4, 2, 0), "x"))],
        NOW,
    );
    assert!(n.is_empty());
}

#[test]
fn the_null_sender_never_gets_a_notice() {
    for sender in [None, Some("")] {
        let mut e = env(sender, &["b@example.net", "c@example.net"]);
        e.recipients[1].notify.success = true;
        let (n, done) = run(
            &mut e,
            vec![
                Outcome::Bounced(remote(550, (5, 1, 1), "no")),
                Outcome::Delivered(remote(250, (2, 0, 0), "ok")),
            ],
            NOW,
        );
        assert!(done && n.is_empty(), "{sender:?}: {n:?}");
        let mut e = env(sender, &["b@example.net"]);
        let (n, _) = run(&mut e, vec![], NOW - 60 + 5 * 86400);
        assert!(n.is_empty(), "expiry of {sender:?}");
    }
}

#[test]
fn routing_uses_the_destination_recorded_at_rcpt() {
    let mut e = env(
        Some("a@example.org"),
        &[
            "x@Example.ORG",
            "y@example.net",
            "z@relay.test",
            "w@new.test",
            "v@down.test",
        ],
    );
    e.recipients[0].destination = Some(Destination::Local);
    e.recipients[1].destination = Some(Destination::Remote);
    e.recipients[2].destination = Some(Destination::Local);
    let transport = |d: &Domain| d.is("relay.test");
    // Only recipients without a recorded destination (and without transport) are asked about.
    let ask: Vec<String> = domains_to_ask(&e, transport)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ask, ["down.test", "new.test"]);
    let answers = HashMap::from([
        (Domain::new("new.test"), Ok(true)),
        (
            Domain::new("down.test"),
            Err("socketmap connection failed".to_owned()),
        ),
    ]);
    let p = plan(&e, transport, &answers);
    assert_eq!(p.local, [0, 3]);
    assert_eq!(
        p.remote.into_iter().collect::<Vec<_>>(),
        [
            (Domain::new("example.net"), vec![1]),
            (Domain::new("relay.test"), vec![2]),
        ],
        "a transports entry wins"
    );
    assert_eq!(p.unrouted.len(), 1);
    assert_eq!(p.unrouted[0].0, 4);
    assert_eq!(
        p.unrouted[0].1.to_string(),
        "451 4.3.0 socketmap connection failed"
    );
    // Done recipients are not routed again.
    e.recipients[0].status = RcptStatus::Delivered;
    assert_eq!(plan(&e, transport, &answers).local, [3]);
}

#[test]
fn outgoing_carries_the_dsn_parameters() {
    let mut e = env(Some("a@example.org"), &["b@x.net", "c@x.net"]);
    e.recipients[1].notify = Notify::NEVER;
    e.recipients[1].orcpt = Some("rfc822;c@x.net".into());
    e.ret = Some(postern_queue::Ret::Full);
    e.envid = Some("E1".into());
    let out = outgoing(&e, &[1, 0], b"m");
    assert_eq!(out.recipients[0].address, "c@x.net");
    assert_eq!(out.recipients[0].notify, Some(Notify::NEVER));
    assert_eq!(out.recipients[0].orcpt.as_deref(), Some("rfc822;c@x.net"));
    assert_eq!(out.recipients[1].notify, Some(Notify::default()));
    assert_eq!(
        (out.ret, out.envid.as_deref()),
        (Some(postern_queue::Ret::Full), Some("E1"))
    );
}

/// Queue files written by the previous release (text replies, no recorded destination,
/// one without `origin`): routed by asking authd, and the notices are what that release
/// sent (the expected values are what its `status_of`/`split_remote` made of the texts).
#[test]
fn queue_files_of_the_previous_format_give_the_same_notices() {
    let dir = tempfile::tempdir().unwrap();
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../queue/tests/fixtures/spool-v1/active");
    std::fs::create_dir_all(dir.path().join("active")).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join("active").join(f.file_name())).unwrap();
    }
    let (_spool, envs) = Spool::open(dir.path()).unwrap();
    assert_eq!(envs.len(), 3);
    let mut one = envs[0].clone();
    let ask: Vec<String> = domains_to_ask(&one, |_| false)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ask, ["example.net", "example.org"]);
    let answers = HashMap::from([
        (Domain::new("example.net"), Ok(false)),
        (Domain::new("example.org"), Ok(true)),
    ]);
    let p = plan(&one, |_| false, &answers);
    assert_eq!((p.local.as_slice(), p.remote.len()), (&[2][..], 1));

    // Expired now, nothing delivered: a and c bounce; b (bounced before) and d are not
    // reported again.
    let lifetime = i64::try_from(backoff().lifetime.as_secs()).unwrap();
    let now = one.arrival + lifetime;
    let (n, done) = run(&mut one, vec![], now);
    assert!(done);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].to, "alice@example.org");
    let r = &n[0].recipients;
    let got: Vec<_> = r
        .iter()
        .map(|r| {
            (
                r.final_recipient.as_str(),
                r.action,
                r.status,
                r.remote_mta.as_deref(),
                r.diagnostic.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "a@example.net",
                Action::Failed,
                (4, 4, 7),
                Some("mx1.example.net"),
                Some(
                    "4.4.7 message expired in the queue; last error: 451 4.7.1 greylisted, come back later"
                )
            ),
            (
                "c@example.org",
                Action::Failed,
                (4, 4, 7),
                None,
                Some(
                    "4.4.7 message expired in the queue; last error: 451 4.3.0 authd: connection refused"
                )
            ),
        ]
    );
    let RcptStatus::Bounced { reply } = &one.recipients[0].status else {
        panic!()
    };
    assert_eq!(
        reply.to_string(),
        "4.4.7 message expired in the queue; last error: 451 4.7.1 greylisted, come back later (remote-mta mx1.example.net[192.0.2.7])",
        "the text the previous release wrote"
    );

    // The bounce stored by the previous release, reported as it would have been.
    let old = &envs[0];
    let due = Notices {
        failed: vec![1],
        delayed: vec![0],
        delivered: vec![],
    };
    let n = notices(old, &due, now, backoff().lifetime);
    assert_eq!(n[0].recipients[0].status, (5, 1, 1));
    assert_eq!(
        n[0].recipients[0].remote_mta.as_deref(),
        Some("mx1.example.net")
    );
    assert_eq!(
        n[0].recipients[0].diagnostic.as_deref(),
        Some("550 5.1.1 <b@example.net>: no such user")
    );
    assert_eq!(
        n[0].recipients[0].original_recipient.as_deref(),
        Some("rfc822;B@example.net")
    );
    assert_eq!(n[1].recipients[0].status, (4, 7, 1));
    assert_eq!(
        n[1].recipients[0].diagnostic.as_deref(),
        Some("451 4.7.1 greylisted, come back later")
    );

    // The expired bounce stored by the previous release, and a reply without enhanced
    // code (the default status, as before); the null sender of this one gets nothing.
    let three = &envs[2];
    let mut as_if_sent = three.clone();
    as_if_sent.sender = Some("s@example.org".into());
    let due = Notices {
        failed: vec![1],
        delayed: vec![2],
        delivered: vec![],
    };
    let n = notices(&as_if_sent, &due, now, backoff().lifetime);
    assert_eq!(n[0].recipients[0].status, (4, 4, 7));
    assert_eq!(
        n[0].recipients[0].diagnostic.as_deref(),
        Some("4.4.7 message expired in the queue; last error: 421 4.3.2 shutting down")
    );
    assert_eq!(
        n[0].recipients[0].remote_mta.as_deref(),
        Some("mx1.example.net")
    );
    assert_eq!(n[1].recipients[0].status, (4, 0, 0));
    assert_eq!(
        n[1].recipients[0].diagnostic.as_deref(),
        Some("452 too many recipients")
    );
    assert!(notices(three, &due, now, backoff().lifetime).is_empty());
}
