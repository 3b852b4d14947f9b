//! Crash test of the slot layout (as `crash.rs` for the file layout): a child process
//! commits into slots in a loop, freeing and reusing slots as it goes, and prints every
//! acknowledged id; it is killed with SIGKILL mid-run, and every acknowledged message not
//! yet removed must then be in the spool, intact, and no removed one may come back changed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_queue::{Committer, Envelope, Layout, QueueId, Recipient, Spool};

const CHILD_ENV: &str = "POSTERN_QUEUE_SLOT_CRASH_DIR";
const ACKS_BEFORE_KILL: usize = 400;

fn message(task: u32, n: u32) -> Vec<u8> {
    let mut m = format!("From: <s@example.org>\r\nSubject: {task}-{n}\r\n\r\n").into_bytes();
    for line in 0..(n % 50) {
        m.extend_from_slice(
            format!("line {line} of message {task}-{n} ........................\r\n").as_bytes(),
        );
    }
    m
}

/// The child side: does nothing unless started by the test below.
#[test]
fn slot_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (spool, _) = Spool::open_with(&dir, Layout::Slots).unwrap();
        let (committer, task) = Committer::new(Arc::new(spool));
        tokio::spawn(task);
        let workers: Vec<_> = (0..16u32)
            .map(|t| {
                let c = committer.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let env = Envelope::new(
                            Some("s@example.org".into()),
                            vec![Recipient::new(format!("r{t}@x"))],
                        );
                        let env = c.commit(env, message(t, n)).await.unwrap();
                        // One write of a short line: atomic on a pipe.
                        let line = format!("ACK {} {t} {n} END\n", env.id);
                        {
                            let mut out = std::io::stdout().lock();
                            out.write_all(line.as_bytes()).unwrap();
                            out.flush().unwrap();
                        }
                        // Every odd message is removed again (delivered), so that slots
                        // are freed and rewritten while the kill may come.
                        if n % 2 == 1 {
                            c.spool().remove(env.id).unwrap();
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
    });
}

/// Records an `ACK <id> <task> <n> END` line (anything else, like libtest's chatter, is skipped).
fn parse(acked: &mut HashMap<QueueId, (u32, u32)>, line: &str) {
    let w: Vec<&str> = line.split(' ').collect();
    if let ["ACK", id, t, n, "END"] = w[..] {
        acked.insert(
            id.parse().unwrap(),
            (t.parse().unwrap(), n.parse().unwrap()),
        );
    }
}

#[test]
fn acknowledged_messages_in_slots_survive_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "slot_crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: HashMap<QueueId, (u32, u32)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in lines.by_ref() {
        parse(&mut acked, &line.unwrap());
        if acked.len() >= ACKS_BEFORE_KILL {
            break;
        }
        assert!(Instant::now() < deadline, "child too slow");
    }
    assert!(acked.len() >= ACKS_BEFORE_KILL, "child exited early");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines the child wrote before it died are still in the pipe.
    for line in lines {
        parse(&mut acked, &line.unwrap());
    }

    let (spool, envs) = Spool::open_with(dir.path(), Layout::Slots).unwrap();
    let queued: HashMap<QueueId, Envelope> = envs.into_iter().map(|e| (e.id, e)).collect();
    for (id, &(t, n)) in &acked {
        // An odd one may have been removed (or be back: its removal is not fsynced);
        // if it is there, it is whole.
        let Some(env) = queued.get(id) else {
            assert!(n % 2 == 1, "acknowledged {id} lost");
            continue;
        };
        assert_eq!(env.recipients[0].address, format!("r{t}@x"));
        assert_eq!(spool.read_message(*id).unwrap(), message(t, n), "{id}");
    }
    // Nothing queued that was not committed whole: each is one of the child's messages.
    for (id, env) in &queued {
        let t: u32 = env.recipients[0].address[1..]
            .trim_end_matches("@x")
            .parse()
            .unwrap();
        let body = spool.read_message(*id).unwrap();
        let subject = String::from_utf8_lossy(&body)
            .lines()
            .nth(1)
            .unwrap()
            .to_owned();
        let n: u32 = subject.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(body, message(t, n), "{id}");
    }
    eprintln!(
        "{} acknowledged, {} queued after SIGKILL",
        acked.len(),
        queued.len()
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("incoming"))
            .unwrap()
            .count(),
        0
    );
    // A write the kill cut short may be quarantined; it was never acknowledged.
    for e in std::fs::read_dir(dir.path().join("corrupt")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(name.starts_with("slot."), "{name}");
    }
}
