//! The spool through its public API: commit, recovery, state, removal, group commit.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use postern_queue::{Committer, Envelope, QueueError, QueueId, RcptStatus, Recipient, Ret, Spool};

fn envelope(rcpts: &[&str]) -> Envelope {
    let mut env = Envelope::new(
        Some("sender@example.org".into()),
        rcpts.iter().map(|r| Recipient::new(*r)).collect(),
    );
    env.client_ip = Some("192.0.2.1".into());
    env.helo = Some("client.example".into());
    env.ret = Some(Ret::Headers);
    env.envid = Some("QQ314159".into());
    env.body_8bit = true;
    env
}

fn message(n: usize) -> Vec<u8> {
    format!("From: <sender@example.org>\r\nSubject: test {n}\r\n\r\nbody {n}\r\n.. dot\r\n")
        .into_bytes()
}

/// Opens a spool and starts its committer on the current runtime.
fn start(dir: &Path) -> (Committer, Vec<Envelope>) {
    let (spool, envs) = Spool::open(dir).unwrap();
    let (committer, task) = Committer::new(Arc::new(spool));
    tokio::spawn(task);
    (committer, envs)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn commit_writes_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (c, envs) = start(dir.path());
    assert!(envs.is_empty());
    let msg = message(1);
    let env = c
        .commit(envelope(&["a@example.net", "b@example.net"]), msg.clone())
        .await
        .unwrap();
    assert!(!env.id.is_unassigned());
    assert_eq!(env.size, msg.len() as u64);

    let bytes = fs::read(dir.path().join("active").join(env.id.to_string())).unwrap();
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
    let header = std::str::from_utf8(&bytes[..nl]).unwrap();
    let json_len: usize = header
        .strip_prefix("POSTERN-QUEUE 1 ")
        .unwrap()
        .parse()
        .unwrap();
    let json = &bytes[nl + 1..nl + 1 + json_len];
    assert_eq!(serde_json::from_slice::<Envelope>(json).unwrap(), env);
    assert_eq!(bytes[nl + 1 + json_len], b'\n');
    assert_eq!(&bytes[nl + 2 + json_len..], &msg[..]);

    assert_eq!(c.spool().read_message(env.id).unwrap(), msg);
    assert_eq!(c.spool().load(env.id).unwrap(), env);
    assert!(names(&dir.path().join("incoming")).is_empty());
}

#[tokio::test]
async fn open_recovers_and_cleans_incoming() {
    let dir = tempfile::tempdir().unwrap();
    let mut committed = Vec::new();
    {
        let (c, _) = start(dir.path());
        for n in 0..3 {
            committed.push(c.commit(envelope(&["a@x"]), message(n)).await.unwrap());
        }
    }
    let incoming = dir.path().join("incoming");
    fs::write(
        incoming.join("00000000000000000001"),
        b"POSTERN-QUEUE 1 5\n{",
    )
    .unwrap();
    fs::create_dir(incoming.join("junkdir")).unwrap();

    let (c, envs) = start(dir.path());
    assert_eq!(envs, committed);
    assert!(names(&incoming).is_empty());
    // New ids keep sorting after the recovered ones.
    let next = c.commit(envelope(&["a@x"]), message(9)).await.unwrap();
    assert!(next.id > committed[2].id);
}

#[tokio::test]
async fn corrupt_files_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let good = c.commit(envelope(&["a@x"]), message(1)).await.unwrap();
    let bad = c.commit(envelope(&["a@x"]), message(2)).await.unwrap();
    let mut held = bad.clone();
    held.held = true;
    c.spool().save_state(&held).unwrap();
    drop(c);

    let active = dir.path().join("active");
    let bad_path = active.join(bad.id.to_string());
    let len = fs::metadata(&bad_path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&bad_path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let garbage: QueueId = "0000000000000a000000".parse().unwrap();
    fs::write(
        active.join(garbage.to_string()),
        b"POSTERN-QUEUE 1 99999999999\n",
    )
    .unwrap();
    fs::write(active.join("stray.tmp"), b"?").unwrap();

    let (spool, envs) = Spool::open(dir.path()).unwrap();
    assert_eq!(envs, vec![good.clone()]);
    let mut want = vec![
        bad.id.to_string(),
        format!("{}.state", bad.id),
        garbage.to_string(),
        "stray.tmp".into(),
    ];
    want.sort();
    assert_eq!(names(&dir.path().join("corrupt")), want);
    assert_eq!(names(&active), vec![good.id.to_string()]);
    assert!(spool.load(bad.id).unwrap_err().is_not_found());
}

#[tokio::test]
async fn too_large_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let (c, task) = Committer::new(Arc::new(spool.with_max_message_size(10)));
    tokio::spawn(task);
    let err = c
        .commit(envelope(&["a@x"]), vec![b'x'; 11])
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::TooLarge { size: 11, max: 10 }),
        "{err}"
    );
    c.commit(envelope(&["a@x"]), vec![b'x'; 10]).await.unwrap();
    assert_eq!(names(&dir.path().join("active")).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_shares_directory_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let before = c.spool().dir_syncs();
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(
                async move { (n, c.commit(envelope(&["a@x"]), message(n)).await.unwrap()) },
            )
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        let (n, env) = t.await.unwrap();
        assert_eq!(c.spool().read_message(env.id).unwrap(), message(n));
        ids.push(env.id);
    }
    let syncs = c.spool().dir_syncs() - before;
    eprintln!("{syncs} directory fsyncs for 200 commits");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert!(syncs < 50, "{syncs} directory fsyncs for 200 commits");
    assert_eq!(names(&dir.path().join("active")).len(), 200);
}

#[tokio::test]
async fn state_survives_reopen_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let mut env = c
        .commit(envelope(&["a@x", "b@y"]), message(1))
        .await
        .unwrap();
    let other = c.commit(envelope(&["c@z"]), message(2)).await.unwrap();
    env.recipients[0].status = RcptStatus::Delivered;
    env.recipients[1].last_reply = Some("451 4.3.0 try later".into());
    env.attempts = 2;
    env.next_attempt += 600;
    env.last_error = Some("451 4.3.0 try later".into());
    c.spool().save_state(&env).unwrap();
    let held = c.spool().hold(env.id).unwrap();
    assert!(held.held);
    drop(c);

    let (spool, envs) = Spool::open(dir.path()).unwrap();
    assert_eq!(envs, vec![held.clone(), other.clone()]);
    let released = spool.release(env.id).unwrap();
    assert!(!released.held);
    assert_eq!(spool.load(env.id).unwrap(), released);

    spool.remove(env.id).unwrap();
    spool.remove(env.id).unwrap();
    assert!(spool.load(env.id).unwrap_err().is_not_found());
    assert!(spool.read_message(env.id).unwrap_err().is_not_found());
    assert!(matches!(
        spool.save_state(&env),
        Err(QueueError::NotFound(_))
    ));
    assert_eq!(
        names(&dir.path().join("active")),
        vec![other.id.to_string()]
    );

    // A state left behind by a crash between the two unlinks is removed at open.
    fs::write(
        dir.path().join("active").join(format!("{}.state", env.id)),
        b"{}",
    )
    .unwrap();
    drop(spool);
    let (_, envs) = Spool::open(dir.path()).unwrap();
    assert_eq!(envs, vec![other.clone()]);
    assert_eq!(
        names(&dir.path().join("active")),
        vec![other.id.to_string()]
    );
    assert!(names(&dir.path().join("corrupt")).is_empty());
}

#[tokio::test]
async fn removed_files_are_reused_with_exact_contents() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    // A big message, removed: its file goes to spare/.
    let big = vec![b'x'; 100_000];
    let first = c.commit(envelope(&["a@x"]), big).await.unwrap();
    c.spool().remove(first.id).unwrap();
    assert_eq!(names(&dir.path().join("spare")).len(), 1);
    assert!(names(&dir.path().join("active")).is_empty());
    // The next commit takes it: truncated, rewritten, linked under the new id.
    let msg = message(7);
    let second = c.commit(envelope(&["b@y"]), msg.clone()).await.unwrap();
    assert!(names(&dir.path().join("spare")).is_empty());
    assert_eq!(c.spool().read_message(second.id).unwrap(), msg);
    assert_eq!(c.spool().load(second.id).unwrap(), second);
    assert!(c.spool().load(first.id).unwrap_err().is_not_found());
    assert!(names(&dir.path().join("incoming")).is_empty());
    // Spares survive a restart; the queue does not count them as messages.
    c.spool().remove(second.id).unwrap();
    drop(c);
    let (spool, envs) = Spool::open(dir.path()).unwrap();
    assert!(envs.is_empty());
    let (c, _) = {
        let (committer, task) = Committer::new(Arc::new(spool));
        tokio::spawn(task);
        (committer, ())
    };
    let third = c.commit(envelope(&["c@z"]), message(3)).await.unwrap();
    assert_eq!(c.spool().read_message(third.id).unwrap(), message(3));
    assert!(names(&dir.path().join("spare")).is_empty());
}

/// A large message spooled as it arrives: the message file holds the head and the spooled
/// body exactly, the body file is gone after the commit, and a body left by a crash is
/// removed at the next open and never becomes a message.
#[tokio::test]
async fn spooled_body_commits_exactly_and_never_lingers() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let head = b"Received: by us\r\nSubject: big\r\n".to_vec();
    let mut rest = Vec::new();
    for i in 0..20_000 {
        rest.extend_from_slice(format!("line {i:06} of the body\r\n").as_bytes());
    }
    // Spooled into a reused spare file too: remove one message first.
    let old = c
        .commit(envelope(&["x@example.net"]), message(9))
        .await
        .unwrap();
    c.spool().remove(old.id).unwrap();
    for round in 0..2 {
        let body = c.spool().body_file().unwrap();
        assert!(body.path().starts_with(dir.path().join("incoming")));
        let mut f = body.file();
        for piece in rest.chunks(7000) {
            f.write_all(piece).unwrap();
        }
        let env = c
            .commit_spooled(envelope(&["a@example.net"]), head.clone(), Some(body))
            .await
            .unwrap();
        let mut whole = head.clone();
        whole.extend_from_slice(&rest);
        assert_eq!(env.size, whole.len() as u64, "round {round}");
        assert_eq!(
            c.spool().read_message(env.id).unwrap(),
            whole,
            "round {round}"
        );
        assert!(
            names(&dir.path().join("incoming")).is_empty(),
            "round {round}"
        );
    }
    // Too large: refused, and the body is removed all the same.
    let dir2 = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir2.path()).unwrap();
    let small = Arc::new(spool.with_max_message_size(100));
    let (c2, task) = Committer::new(small.clone());
    tokio::spawn(task);
    let body = small.body_file().unwrap();
    body.file().write_all(&[b'x'; 200]).unwrap();
    let path = body.path().to_path_buf();
    assert!(matches!(
        c2.commit_spooled(envelope(&["a@example.net"]), Vec::new(), Some(body))
            .await,
        Err(QueueError::TooLarge { .. })
    ));
    assert!(!path.exists());
    // A crash while a body is being received: the file stays in incoming/ (forgotten here
    // as a killed process would), and the next open removes it; nothing is queued.
    let body = c.spool().body_file().unwrap();
    body.file().write_all(b"half a message").unwrap();
    std::mem::forget(body);
    assert_eq!(names(&dir.path().join("incoming")).len(), 1);
    drop(c);
    let (_, envs) = Spool::open(dir.path()).unwrap();
    assert_eq!(envs.len(), 2);
    assert!(names(&dir.path().join("incoming")).is_empty());
}

/// An id reserved before the commit (smtpd writes it into its `Received:` field) is the one
/// the message is stored and recovered under; later ids stay greater.
#[tokio::test]
async fn reserved_id_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let reserved = c.reserve_id();
    let mut env = envelope(&["a@x"]);
    env.id = reserved;
    let env = c.commit(env, message(1)).await.unwrap();
    assert_eq!(env.id, reserved);
    assert!(
        dir.path()
            .join("active")
            .join(reserved.to_string())
            .exists()
    );
    let other = c.commit(envelope(&["b@x"]), message(2)).await.unwrap();
    assert!(other.id > reserved);
    drop(c);
    let (_, envs) = start(dir.path());
    assert!(envs.iter().any(|e| e.id == reserved));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_and_concurrent_commits_are_durable_and_a_stopped_committer_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    // One at a time (written by the caller's task), then 20 at once (batched), then alone again.
    let first = c.commit(envelope(&["a@x"]), message(0)).await.unwrap();
    let tasks: Vec<_> = (1..21)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move { (n, c.commit(envelope(&["a@x"]), message(n)).await) })
        })
        .collect();
    let mut ids = vec![first.id];
    for t in tasks {
        let (n, r) = t.await.unwrap();
        let env = r.unwrap();
        assert_eq!(c.spool().read_message(env.id).unwrap(), message(n));
        ids.push(env.id);
    }
    let last = c.commit(envelope(&["a@x"]), message(99)).await.unwrap();
    ids.push(last.id);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 22);
    assert_eq!(names(&dir.path().join("active")).len(), 22);
    assert!(names(&dir.path().join("incoming")).is_empty());
    drop(c);
    let (_, envs) = Spool::open(dir.path()).unwrap();
    assert_eq!(envs.len(), 22);

    // Without its background task a committer refuses, even with nothing else under way.
    let other = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(other.path()).unwrap();
    let (c, task) = Committer::new(Arc::new(spool));
    drop(task);
    let r = c.commit(envelope(&["a@x"]), message(1)).await;
    assert!(matches!(r, Err(QueueError::Closed)), "{r:?}");
    assert!(names(&other.path().join("active")).is_empty());
}

/// A power cut on a file system that does not order metadata (ext4 without a journal) can
/// keep the `spare/` name of a file that a commit took, renamed and linked into `active/`
/// (only `active/` is fsynced): after restart the same file is a queued message and a spare.
/// Reusing that spare would overwrite an acknowledged message; it is dropped instead.
#[tokio::test]
async fn a_spare_that_is_also_a_queued_message_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let kept = c.commit(envelope(&["a@x"]), message(1)).await.unwrap();
    drop(c);
    // The state after such a power cut: the committed file still has a name in spare/.
    let active = dir.path().join("active").join(kept.id.to_string());
    fs::hard_link(
        &active,
        dir.path().join("spare").join("00000000000000000001"),
    )
    .unwrap();

    let (c, envs) = start(dir.path());
    assert_eq!(envs.len(), 1);
    let other = c.commit(envelope(&["b@y"]), message(2)).await.unwrap();
    assert_eq!(c.spool().read_message(kept.id).unwrap(), message(1));
    assert_eq!(c.spool().load(kept.id).unwrap().recipients, kept.recipients);
    assert_eq!(c.spool().read_message(other.id).unwrap(), message(2));
    assert!(names(&dir.path().join("spare")).is_empty());
    assert!(names(&dir.path().join("corrupt")).is_empty());
}
