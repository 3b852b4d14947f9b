//! How long a large move takes over loopback TCP: a home of 20,000 small messages (the
//! size of a busy mailbox) is created on the real disk (not tmpfs: fsync must cost what it
//! costs), then copied, verified and committed by a client and a server in two threads.
//! Prints figures; asserts only that the copy is complete. Ignored by default (it writes
//! and fsyncs ~60 MB): `cargo test -p postern-transfer --test speed -- --ignored --nocapture`.
//! `POSTERN_SPEED_FILES=N` changes the number of messages, `POSTERN_SPEED_DIR` where the
//! homes are created (default: the system's temporary directory).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use postern_transfer::{Action, Client, Manifest, Status, scan, serve};

const SECRET: &[u8] = b"the-shared-secret-of-the-speed-run-0123456789";

fn make_home(home: &Path, files: usize) {
    for d in ["cur", "new", "tmp"] {
        fs::create_dir_all(home.join(d)).unwrap();
    }
    for i in 0..files {
        let body = format!(
            "From: a@example.org\r\nTo: bob@example.org\r\nSubject: message {i}\r\n\r\n{}\r\n",
            "x".repeat(2000 + i % 1000)
        );
        fs::write(
            home.join(format!(
                "cur/{}.M{i}P1.host,S={}:2,S",
                1_700_000_000 + i,
                body.len()
            )),
            body,
        )
        .unwrap();
    }
    fs::write(home.join("dovecot-uidlist"), "3 V1 N20001\n").unwrap();
}

#[test]
#[ignore = "a speed measurement: run it explicitly with --nocapture"]
fn a_home_of_20000_small_messages_over_loopback() {
    let files: usize = std::env::var("POSTERN_SPEED_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let base = std::env::var_os("POSTERN_SPEED_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    let source = dir.path().join("source");
    let dest = dir.path().join("dest");
    let t = Instant::now();
    make_home(&source, files);
    // Out of the page cache's dirty list, so the copy's fsyncs do not pay for it.
    fs::File::open(&source).unwrap().sync_all().unwrap();
    sync_everything();
    println!("created {files} messages in {:.2?}", t.elapsed());

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dest_root = dest.clone();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        serve(s, SECRET, &|_: &str| Ok(dest_root.join("example.org/bob")))
    });
    let t0 = Instant::now();
    let tcp = TcpStream::connect(addr).unwrap();
    // As mailctl does.
    tcp.set_nodelay(true).unwrap();
    let mut c = Client::handshake(tcp, SECRET).unwrap();
    assert_eq!(c.begin("bob@example.org").unwrap(), Status::Fresh);
    let here = scan(&source, false).unwrap();
    let t_scan = t0.elapsed();
    let (mut puts, mut bytes) = (0usize, 0u64);
    for action in Manifest::diff(&here, &Manifest::default()) {
        match action {
            Action::Mkdir(e) => c.mkdir(&e).unwrap(),
            Action::Put(e) => {
                let mut f = fs::File::open(source.join(&e.path)).unwrap();
                c.put(&e, &mut f).unwrap();
                puts += 1;
                bytes += e.size;
            }
            Action::Delete(p) => c.delete(&p).unwrap(),
        }
    }
    let t_put = t0.elapsed();
    let there = c.verify().unwrap();
    let t_verify = t0.elapsed();
    let hashed = scan(&source, true).unwrap();
    Manifest::same_content(&hashed, &there).unwrap();
    c.commit().unwrap();
    let t_commit = t0.elapsed();
    drop(c);
    server.join().unwrap().unwrap();
    assert_eq!(puts, files + 1);
    println!(
        "move of {puts} files, {} KiB over loopback: scan {:.2?}, puts {:.2?} ({:.0} files/s), verify {:.2?}, commit {:.2?}, total {:.2?}",
        bytes / 1024,
        t_scan,
        t_put - t_scan,
        puts as f64 / (t_put - t_scan).as_secs_f64(),
        t_verify - t_put,
        t_commit - t_verify,
        t_commit
    );
}

/// Flushes what creating the source left dirty (the `sync` command), so the copy's own
/// fsyncs are what is measured.
fn sync_everything() {
    let _ = std::process::Command::new("sync").status();
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
fn rss() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
#[ignore = "a measurement: run it explicitly with --nocapture"]
fn a_manifest_at_the_entry_limit_in_memory_and_cpu() {
    use postern_transfer::{Entry, Kind, MAX_ENTRIES};
    let before = rss();
    let t = Instant::now();
    let entries: Vec<Entry> = (0..MAX_ENTRIES)
        .map(|i| Entry {
            path: format!(
                "cur/{}.M{i}P4242.backend1.example.org,S=4321,W=4400:2,S",
                1_700_000_000 + i
            ),
            kind: Kind::File,
            size: 4321,
            mtime: 1_700_000_000,
            mode: 0o600,
            sha256: Some(format!("{i:064x}")),
            target: None,
        })
        .collect();
    let mut source = Manifest { entries };
    source.entries.sort_by(|a, b| a.path.cmp(&b.path));
    let built = t.elapsed();
    let held = rss().saturating_sub(before);
    let wire: usize = source
        .entries
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap().len() + 1)
        .sum();
    let mut dest = source.clone();
    dest.entries[MAX_ENTRIES / 2].size += 1;
    let t = Instant::now();
    let actions = Manifest::diff(&source, &dest);
    let diffed = t.elapsed();
    let t = Instant::now();
    assert!(Manifest::same_content(&source, &dest).is_err());
    let compared = t.elapsed();
    assert_eq!(actions.len(), 1);
    println!(
        "{MAX_ENTRIES} entries with hashes: built and sorted in {built:.2?}, ~{} MiB resident \
         (~{} bytes/entry), {} MiB on the wire; diff {diffed:.2?}, same_content {compared:.2?}",
        held >> 20,
        held / MAX_ENTRIES as u64,
        wire >> 20
    );
}
