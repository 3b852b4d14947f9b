//! maildir: the per-mailbox files read from disk — `dovecot-uidlist`, `postern-index`,
//! `postern-cache`, `dovecot-keywords` — replaced, overwritten in part or appended to with
//! hostile bytes (another program, a crash or an attacker with the mail uid wrote them).
//! The mailbox must still open with every message on disk, readable, under unique UIDs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_fuzz::{MESSAGES, maildir_with_messages};
use postern_maildir::uidlist::Uidlist;

const FILES: [&str; 4] = [
    "dovecot-uidlist",
    "postern-index",
    "postern-cache",
    "dovecot-keywords",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    if let Ok(list) = Uidlist::parse(bytes) {
        let _ = list.to_bytes();
    }
    let (_dir, md) = maildir_with_messages();
    let mut want: Vec<Vec<u8>> = {
        // Index and cache as a session leaves them.
        let mut inbox = md.open_mailbox("INBOX").expect("a fresh INBOX opens");
        let metas = inbox.messages().to_vec();
        assert_eq!(metas.len(), MESSAGES.len());
        for m in &metas {
            inbox.cache_put(m.uid, b"summary blob").expect("cache_put");
        }
        metas
            .iter()
            .map(|m| inbox.read(m.uid).expect("read"))
            .collect()
    };
    want.sort();
    let file = md.root().join(FILES[usize::from(sel & 3)]);
    if let Ok(dump) = std::env::var("POSTERN_FUZZ_DUMP") {
        // Seeds for the corpus: the files as written, in this target's input format.
        for (i, name) in FILES.iter().enumerate() {
            if let Ok(old) = std::fs::read(md.root().join(name)) {
                let mut seed = vec![i as u8];
                seed.extend_from_slice(&old);
                std::fs::write(format!("{dump}/{name}"), seed).expect("dump");
            }
        }
    }
    let old = std::fs::read(&file).unwrap_or_default();
    let new = match (sel >> 2) & 3 {
        // Replaced.
        0 | 1 => bytes.to_vec(),
        // Overwritten from an offset (the rest of the file kept).
        2 => {
            let at = bytes
                .first()
                .map_or(0, |&b| usize::from(b) * 4)
                .min(old.len());
            let mut v = old.clone();
            let patch = bytes.get(1..).unwrap_or_default();
            let end = (at + patch.len()).min(v.len());
            v[at..end].copy_from_slice(&patch[..end - at]);
            v.extend_from_slice(&patch[end - at..]);
            v
        }
        // Appended to.
        _ => [&old[..], bytes].concat(),
    };
    std::fs::write(&file, new).expect("write");
    for round in 0..2 {
        let mut inbox = match md.open_mailbox("INBOX") {
            Ok(m) => m,
            Err(e) => panic!("round {round}: INBOX does not open: {e}"),
        };
        let _ = inbox.sync();
        let metas = inbox.messages().to_vec();
        assert_eq!(
            metas.len(),
            MESSAGES.len(),
            "round {round}: messages lost or doubled"
        );
        assert!(
            metas.windows(2).all(|w| w[0].uid < w[1].uid),
            "round {round}: UIDs not ascending"
        );
        let mut bodies: Vec<Vec<u8>> = metas
            .iter()
            .map(|m| inbox.read(m.uid).expect("a listed message reads"))
            .collect();
        bodies.sort();
        assert_eq!(bodies, want, "round {round}: message contents changed");
        for m in &metas {
            if let Some(blob) = inbox.cache_get(m.uid) {
                assert!(blob.len() <= 16 << 20);
            }
        }
    }
});
