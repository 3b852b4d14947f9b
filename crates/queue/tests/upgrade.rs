//! Queue files written by the release before delivery results were typed (and, for one
//! message, before `origin` was recorded) load, keep every recipient and its state, and read
//! their replies as values whose text is what it was.
//!
//! `tests/fixtures/spool-v1/active` was written by that release's `Committer` and
//! `Spool::save_state`/`hold` (the first message's `.state` with `origin` removed, as
//! written before it existed).

use std::fs;
use std::path::Path;

use postern_queue::{DeliveryReply, EnhancedStatus, Notify, Origin, RcptStatus, Ret, Spool};

fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spool-v1/active");
    fs::create_dir_all(to.join("active")).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join("active").join(e.file_name())).unwrap();
    }
}

fn reply(r: &Option<DeliveryReply>) -> String {
    r.as_ref().map(ToString::to_string).unwrap_or_default()
}

#[test]
fn spool_written_by_the_previous_format_loads_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let (spool, envs) = Spool::open(dir.path()).unwrap();
    assert_eq!(envs.len(), 3, "every message recovered");
    assert!(fs::read_dir(dir.path().join("corrupt")).map_or(true, |mut d| d.next().is_none()));

    // 1: three attempts, mixed results, no `origin` field at all.
    let one = &envs[0];
    assert_eq!(one.sender.as_deref(), Some("alice@example.org"));
    assert_eq!(one.origin, None);
    assert_eq!((one.attempts, one.envid.as_deref()), (3, Some("ENV-1")));
    let r = &one.recipients;
    assert_eq!(r.len(), 4);
    assert!(r[0].is_pending() && r[0].delay_warned);
    let greylisted = r[0].last_reply.as_ref().unwrap();
    assert_eq!(greylisted.code, Some(451));
    assert_eq!(greylisted.status, Some(EnhancedStatus::new(4, 7, 1)));
    assert_eq!(greylisted.text, "greylisted, come back later");
    let mta = greylisted.remote_mta.as_ref().unwrap();
    assert_eq!(mta.host, "mx1.example.net");
    assert_eq!(mta.ip, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(
        one.last_error.as_deref(),
        Some("451 4.7.1 greylisted, come back later (remote-mta mx1.example.net[192.0.2.7])")
    );
    let RcptStatus::Bounced { reply: bounced } = &r[1].status else {
        panic!("{:?}", r[1].status)
    };
    assert_eq!(
        bounced.to_string(),
        "550 5.1.1 <b@example.net>: no such user (remote-mta mx1.example.net[192.0.2.7])"
    );
    assert_eq!(
        bounced.diagnostic(),
        "550 5.1.1 <b@example.net>: no such user"
    );
    assert_eq!(r[1].orcpt.as_deref(), Some("rfc822;B@example.net"));
    assert_eq!(
        reply(&r[2].last_reply),
        "451 4.3.0 authd: connection refused"
    );
    assert_eq!(r[2].last_reply.as_ref().unwrap().remote_mta, None);
    assert_eq!(r[3].status, RcptStatus::Delivered);
    let ipv6 = r[3]
        .last_reply
        .as_ref()
        .unwrap()
        .remote_mta
        .clone()
        .unwrap();
    assert_eq!(ipv6.ip, Some("2001:db8::25".parse().unwrap()));
    assert!(
        r.iter().all(|r| r.destination.is_none()),
        "not recorded then"
    );

    // 2: never attempted; DSN options and origin.
    let two = &envs[1];
    assert_eq!(two.ret, Some(Ret::Full));
    assert_eq!(
        two.origin,
        Some(Origin::Submission {
            login: "bob@example.org".into()
        })
    );
    assert_eq!(
        two.recipients[0].notify,
        Notify {
            success: true,
            failure: true,
            delay: false
        }
    );
    assert_eq!(two.recipients[1].notify, Notify::NEVER);
    assert!(two.body_8bit && two.recipients.iter().all(|r| r.last_reply.is_none()));

    // 3: held; an expiry bounce naming the remote server, a reply without enhanced code.
    let three = &envs[2];
    assert!(three.held && three.sender.is_none());
    let RcptStatus::Bounced { reply: expired } = &three.recipients[1].status else {
        panic!()
    };
    assert_eq!(
        (expired.code, expired.status),
        (None, Some(EnhancedStatus::new(4, 4, 7)))
    );
    assert_eq!(
        expired.diagnostic(),
        "4.4.7 message expired in the queue; last error: 421 4.3.2 shutting down"
    );
    assert_eq!(expired.remote_mta.as_ref().unwrap().host, "mx1.example.net");
    let no_status = three.recipients[2].last_reply.as_ref().unwrap();
    assert_eq!((no_status.code, no_status.status), (Some(452), None));

    // The bodies are intact, and the upgraded state saves and loads again as it is.
    for env in &envs {
        let m = spool.read_message(env.id).unwrap();
        assert_eq!(m.len() as u64, env.size);
        assert!(m.starts_with(b"From: <alice@example.org>\r\n"));
        spool.save_state(env).unwrap();
    }
    drop(spool);
    let (_, again) = Spool::open(dir.path()).unwrap();
    assert_eq!(again, envs);
}
