//! The slot layout ([`Layout::Slots`]): commits into preallocated files rewritten in place,
//! recovery, reuse of freed slots, old-format files alongside, and fault injection on the
//! tail of a slot (truncated, corrupted, a torn rewrite of a freed slot).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postern_queue::{Committer, Envelope, Layout, QueueError, RcptStatus, Recipient, Spool};

fn envelope(rcpt: &str) -> Envelope {
    let mut env = Envelope::new(
        Some("sender@example.org".into()),
        vec![Recipient::new(rcpt)],
    );
    env.client_ip = Some("192.0.2.1".into());
    env
}

fn message(n: usize) -> Vec<u8> {
    format!("From: <sender@example.org>\r\nSubject: slot test {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

fn open(dir: &Path) -> (Spool, Vec<Envelope>) {
    Spool::open_with(dir, Layout::Slots).unwrap()
}

fn start(dir: &Path) -> (Committer, Vec<Envelope>) {
    let (spool, envs) = open(dir);
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

/// The slot file holding `id` (found by its header's id bytes).
fn slot_of(dir: &Path, id: &str) -> PathBuf {
    for name in names(&dir.join("slots")) {
        let p = dir.join("slots").join(&name);
        let b = fs::read(&p).unwrap();
        if b.len() >= 28 && &b[8..28] == id.as_bytes() && b.starts_with(b"PQSLOT1\n") {
            return p;
        }
    }
    panic!("no slot holds {id}");
}

#[tokio::test]
async fn commit_read_recover_and_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let (c, envs) = start(dir.path());
    assert!(envs.is_empty());
    let a = c.commit(envelope("a@x"), message(1)).await.unwrap();
    let b = c.commit(envelope("b@x"), message(2)).await.unwrap();
    // Nothing in active/ or incoming/: one slot per message.
    assert!(names(&dir.path().join("active")).is_empty());
    assert!(names(&dir.path().join("incoming")).is_empty());
    assert_eq!(names(&dir.path().join("slots")), vec!["0", "1"]);
    assert_eq!(c.spool().read_message(a.id).unwrap(), message(1));
    assert_eq!(c.spool().load(b.id).unwrap(), b);

    // State, hold and release work as in the file layout; the state lives in active/.
    let mut deferred = a.clone();
    deferred.recipients[0].status = RcptStatus::Delivered;
    deferred.attempts = 1;
    c.spool().save_state(&deferred).unwrap();
    let held = c.spool().hold(a.id).unwrap();
    assert!(held.held);
    drop(c);
    let (spool, envs) = open(dir.path());
    assert_eq!(envs, vec![held.clone(), b.clone()]);
    assert!(!spool.release(a.id).unwrap().held);

    // Removed: the slot is free (header zeroed) and the next commit takes it.
    spool.remove(a.id).unwrap();
    spool.remove(a.id).unwrap();
    assert!(spool.load(a.id).unwrap_err().is_not_found());
    assert!(spool.read_message(a.id).unwrap_err().is_not_found());
    assert!(matches!(
        spool.save_state(&deferred),
        Err(QueueError::NotFound(_))
    ));
    assert!(
        names(&dir.path().join("active")).is_empty(),
        "state removed"
    );
    let (c, task) = Committer::new(Arc::new(spool));
    tokio::spawn(task);
    let big = vec![b'y'; 100_000];
    let d = c.commit(envelope("d@x"), big.clone()).await.unwrap();
    assert_eq!(names(&dir.path().join("slots")), vec!["0", "1"], "reused");
    assert_eq!(c.spool().read_message(d.id).unwrap(), big);
    // A short message into the slot that held a long one: the stale tail is not read.
    c.spool().remove(d.id).unwrap();
    let e = c.commit(envelope("e@x"), message(5)).await.unwrap();
    assert_eq!(c.spool().read_message(e.id).unwrap(), message(5));
    drop(c);
    let (spool, envs) = open(dir.path());
    assert_eq!(
        envs.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![b.id, e.id]
    );
    assert_eq!(spool.read_message(e.id).unwrap(), message(5));
    assert!(names(&dir.path().join("corrupt")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_and_spooled_bodies() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let tasks: Vec<_> = (0..60)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move { (n, c.commit(envelope("a@x"), message(n)).await.unwrap()) })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        let (n, env) = t.await.unwrap();
        assert_eq!(c.spool().read_message(env.id).unwrap(), message(n));
        ids.push(env.id);
    }
    // A message whose body was spooled as it arrived.
    let body = c.spool().body_file().unwrap();
    let mut rest = Vec::new();
    for i in 0..10_000 {
        rest.extend_from_slice(format!("line {i:06} of the body\r\n").as_bytes());
    }
    body.file().write_all(&rest).unwrap();
    let head = b"Subject: big\r\n\r\n".to_vec();
    let big = c
        .commit_spooled(envelope("b@x"), head.clone(), Some(body))
        .await
        .unwrap();
    let mut whole = head;
    whole.extend_from_slice(&rest);
    assert_eq!(c.spool().read_message(big.id).unwrap(), whole);
    assert!(names(&dir.path().join("incoming")).is_empty());
    for id in &ids {
        c.spool().remove(*id).unwrap();
    }
    drop(c);
    let (spool, envs) = open(dir.path());
    assert_eq!(envs.len(), 1);
    assert_eq!(spool.read_message(big.id).unwrap(), whole);
}

/// Old-format files in `active/` (the previous release's spool) recover next to slots, can
/// be held, and are removed as before; new messages go to slots.
#[tokio::test]
async fn old_format_files_recover_alongside_slots() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spool-v1/active");
    fs::create_dir_all(dir.path().join("active")).unwrap();
    for e in fs::read_dir(fixture).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.path().join("active").join(e.file_name())).unwrap();
    }
    let (c, envs) = start(dir.path());
    assert_eq!(envs.len(), 3);
    let new = c.commit(envelope("n@x"), message(9)).await.unwrap();
    assert!(new.id > envs[2].id, "new ids sort after recovered ones");
    let old = envs[1].id;
    let held = c.spool().hold(old).unwrap();
    assert!(held.held);
    assert!(!c.spool().read_message(old).unwrap().is_empty());
    c.spool().remove(envs[0].id).unwrap();
    drop(c);
    let (_, after) = open(dir.path());
    let ids: Vec<_> = after.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![envs[1].id, envs[2].id, new.id]);
    assert!(after[0].held);
    assert!(names(&dir.path().join("corrupt")).is_empty());
}

/// Fault injection on a slot's tail and header, as a crash or damage would leave it: a
/// payload cut short or with a flipped byte is not delivered (moved to `corrupt/`), a torn
/// header makes the slot free, other messages are untouched, and the damaged slot's place
/// is not reused under the old name.
#[tokio::test]
async fn a_truncated_or_corrupted_slot_is_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let good = c.commit(envelope("good@x"), message(1)).await.unwrap();
    let cut = c.commit(envelope("cut@x"), message(2)).await.unwrap();
    let flipped = c.commit(envelope("flip@x"), message(3)).await.unwrap();
    let torn = c.commit(envelope("torn@x"), message(4)).await.unwrap();
    drop(c);

    // cut: the file ends inside the payload (a new slot's write cut short).
    let p = slot_of(dir.path(), &cut.id.to_string());
    let payload_end = 64 + {
        let b = fs::read(&p).unwrap();
        u64::from_le_bytes(b[32..40].try_into().unwrap())
    };
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(payload_end - 5)
        .unwrap();
    // flipped: last payload byte changed (a sector of the tail not written).
    let p = slot_of(dir.path(), &flipped.id.to_string());
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let len = 64 + u64::from_le_bytes(fs::read(&p).unwrap()[32..40].try_into().unwrap());
    let mut last = [0u8];
    f.read_exact_at(&mut last, len - 1).unwrap();
    f.write_all_at(&[last[0] ^ 1], len - 1).unwrap();
    // torn: header half old, half new.
    let p = slot_of(dir.path(), &torn.id.to_string());
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(&[0u8; 20], 30).unwrap();

    let (spool, envs) = open(dir.path());
    assert_eq!(envs, vec![good.clone()], "only the intact message");
    assert_eq!(spool.read_message(good.id).unwrap(), message(1));
    for gone in [cut.id, flipped.id, torn.id] {
        assert!(spool.load(gone).unwrap_err().is_not_found());
    }
    let corrupt = names(&dir.path().join("corrupt"));
    assert_eq!(corrupt.len(), 2, "{corrupt:?}");
    assert!(
        corrupt.iter().all(|n| n.starts_with("slot.")),
        "{corrupt:?}"
    );
    // Later commits take the free slot (the torn one) or new ones, never a quarantined name.
    let (c, task) = Committer::new(Arc::new(spool));
    tokio::spawn(task);
    let mut later = Vec::new();
    for n in 10..14 {
        later.push((n, c.commit(envelope("l@x"), message(n)).await.unwrap()));
    }
    drop(c);
    let (spool, envs) = open(dir.path());
    assert_eq!(envs.len(), 5);
    for (n, env) in later {
        assert_eq!(spool.read_message(env.id).unwrap(), message(n));
    }
    assert_eq!(names(&dir.path().join("corrupt")).len(), 2);
}

/// A freed slot rewritten for a new message when the power fails: whatever mix of old and
/// new sectors reaches the disk, recovery never delivers a mix, and it delivers the old
/// message only whole (its removal was not durable: a duplicate of a delivered message,
/// as with the file layout) and the new one only whole (written before the crash).
#[tokio::test]
async fn a_torn_rewrite_of_a_freed_slot_delivers_no_mix() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let old_msg = vec![b'o'; 9000];
    let old = c.commit(envelope("old@x"), old_msg.clone()).await.unwrap();
    drop(c);
    let slot = slot_of(dir.path(), &old.id.to_string());
    let before = fs::read(&slot).unwrap();
    let (spool, _) = open(dir.path());
    spool.remove(old.id).unwrap();
    let (c, task) = Committer::new(Arc::new(spool));
    tokio::spawn(task);
    let new_msg = vec![b'n'; 7000];
    let new = c.commit(envelope("new@x"), new_msg.clone()).await.unwrap();
    drop(c);
    assert_eq!(
        slot_of(dir.path(), &new.id.to_string()),
        slot,
        "slot reused"
    );
    let after = fs::read(&slot).unwrap();

    // Every mix of 512-byte sectors from before/after over the first 16 KiB (4 choices
    // per 4 KiB page, so 2^k mixes stay few): page i from `after` if bit i is set.
    let pages = before.len().max(after.len()).div_ceil(4096).min(4);
    for mask in 0..(1u32 << pages) {
        let mut mixed = before.clone();
        mixed.resize(before.len().max(after.len()), 0);
        for i in 0..pages {
            if mask & (1 << i) != 0 {
                let (s, e) = (i * 4096, ((i + 1) * 4096).min(after.len()));
                if s < e {
                    mixed[s..e].copy_from_slice(&after[s..e]);
                }
            }
        }
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("slots")).unwrap();
        fs::write(d.path().join("slots").join("0"), &mixed).unwrap();
        let (spool, envs) = open(d.path());
        match envs.as_slice() {
            [] => {}
            [e] if e.id == old.id => {
                assert_eq!(spool.read_message(e.id).unwrap(), old_msg, "mask {mask}")
            }
            [e] if e.id == new.id => {
                assert_eq!(spool.read_message(e.id).unwrap(), new_msg, "mask {mask}")
            }
            other => panic!("mask {mask}: {other:?}"),
        }
        if mask == 0 {
            assert_eq!(envs.len(), 1, "the old message whole: delivered again");
        }
        if mask == (1 << pages) - 1 {
            assert_eq!(envs.len(), 1, "the new message whole");
            assert_eq!(envs[0].id, new.id);
        }
    }
}

/// A message over 256 KiB is committed as a file in `active/` even in the slot layout (its
/// data write dominates); it recovers and is removed like any other, without a spare kept.
#[tokio::test]
async fn large_messages_go_to_files_small_ones_to_slots() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let large = vec![b'L'; 300 << 10];
    let small = vec![b's'; 100 << 10];
    let l = c.commit(envelope("l@x"), large.clone()).await.unwrap();
    let s = c.commit(envelope("s@x"), small.clone()).await.unwrap();
    assert_eq!(names(&dir.path().join("active")), vec![l.id.to_string()]);
    slot_of(dir.path(), &s.id.to_string());
    assert!(
        fs::read(dir.path().join("active").join(l.id.to_string()))
            .unwrap()
            .ends_with(&large)
    );
    drop(c);
    let (spool, envs) = open(dir.path());
    assert_eq!(
        envs.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![l.id, s.id]
    );
    assert_eq!(spool.read_message(l.id).unwrap(), large);
    assert_eq!(spool.read_message(s.id).unwrap(), small);
    spool.remove(l.id).unwrap();
    assert!(names(&dir.path().join("active")).is_empty());
    assert!(names(&dir.path().join("spare")).is_empty());
}

/// Any damage to a slot file (random bytes changed, cut, grown) never makes recovery fail
/// or deliver anything but the message exactly as committed.
#[tokio::test]
async fn random_damage_never_delivers_a_changed_message() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = start(dir.path());
    let msg = message(42);
    let env = c.commit(envelope("r@x"), msg.clone()).await.unwrap();
    drop(c);
    let good = fs::read(slot_of(dir.path(), &env.id.to_string())).unwrap();
    let payload_end = 64 + u64::from_le_bytes(good[32..40].try_into().unwrap()) as usize;
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let mut delivered = 0;
    for round in 0..400 {
        let mut bytes = good.clone();
        match round % 4 {
            // A few bytes changed anywhere in the header and payload.
            0 | 1 => {
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..payload_end);
                    bytes[i] = rng.random();
                }
            }
            // Cut anywhere.
            2 => bytes.truncate(rng.random_range(0..payload_end + 8)),
            // Only the stale tail after the payload changed: still the message.
            _ => {
                let i = rng.random_range(payload_end..bytes.len());
                bytes[i] ^= 0xff;
            }
        }
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("slots")).unwrap();
        fs::write(d.path().join("slots").join("7"), &bytes).unwrap();
        let (spool, envs) = open(d.path());
        match envs.as_slice() {
            [] => assert!(
                round % 4 != 3,
                "round {round}: tail damage lost the message"
            ),
            [e] => {
                assert_eq!(e.id, env.id, "round {round}");
                assert_eq!(spool.read_message(e.id).unwrap(), msg, "round {round}");
                delivered += 1;
            }
            more => panic!("round {round}: {more:?}"),
        }
    }
    assert!(delivered >= 100, "{delivered}");
}

/// Preallocated slots are used before any new one is made, count toward the total at the
/// next start, and recover as free whatever a crash left of their (unsynced) zeros.
#[tokio::test]
async fn preallocated_slots_are_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    spool.preallocate_slots(10);
    assert_eq!(names(&dir.path().join("slots")).len(), 10);
    let (c, task) = Committer::new(Arc::new(spool));
    tokio::spawn(task);
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(c.commit(envelope("p@x"), message(n)).await.unwrap().id);
    }
    assert_eq!(names(&dir.path().join("slots")).len(), 10, "no new slot");
    drop(c);
    // A crash before the zeros were written back: some preallocated files empty.
    for name in names(&dir.path().join("slots")) {
        let p = dir.path().join("slots").join(&name);
        if fs::read(&p).unwrap().iter().all(|&b| b == 0) && name.ends_with('1') {
            fs::write(&p, b"").unwrap();
        }
    }
    let (spool, envs) = open(dir.path());
    assert_eq!(envs.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    spool.preallocate_slots(10);
    assert_eq!(names(&dir.path().join("slots")).len(), 10, "enough already");
    spool.preallocate_slots(12);
    assert_eq!(names(&dir.path().join("slots")).len(), 12);
    assert!(names(&dir.path().join("corrupt")).is_empty());
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(spool.read_message(*id).unwrap(), message(n));
    }
}
