//! queue: slot files (`slots/<n>`, the slot layout) as found in the spool at start-up, a mix
//! of the fuzzer's bytes and valid committed slots, recovered by
//! `Spool::open_with(dir, Layout::Slots)`. Recovery never fails or panics on content, never
//! returns a message whose bytes differ from the committed one, never loses an intact
//! committed slot, and leaves every file either in `slots/` (a message or a free slot) or in
//! `corrupt/`: a second recovery finds the same messages and quarantines nothing more.
//!
//! Input: a sequence of chunks, each `op` (1 byte), `len` (2 bytes LE), then `len` bytes
//! (cut at the end of the input). By `op % 5`:
//! - 0: the bytes are a slot file as they are;
//! - 1: valid slot `arg % 3` with edits: the bytes are (offset u16 LE, xor byte) triples;
//! - 2: valid slot `arg % 3` cut to `u16 LE` bytes, or grown by that many stale bytes;
//! - 3: the bytes are a payload (a message file) under a correct header with id [`FUZZ_ID`]
//!   and correct CRCs, so that the message-file parser behind the checksum is reached;
//! - 4: the bytes are a header only (64 bytes) followed by valid slot `arg % 3`'s payload.
//!
//! `op & 0x80` names the file `x<i>` instead of `<i>` (not a slot number). The first input
//! byte's low 3 bits choose which of the 3 valid slots are also written intact (at numbers
//! 1000, 1001, 1002).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern_queue::{Layout, QueueId, Spool};

/// The id of the payloads the fuzzer supplies under a valid header (op 3).
const FUZZ_ID: &str = "00061f0a1b2c3d00017f";
/// Valid committed slots: ids and messages (one with a body longer than a slot's first 4 KiB,
/// one in a slot longer than its payload, as a reused slot is).
const VALID_IDS: [&str; 3] = [
    "00061f0a1b2c3d000001",
    "00061f0a1b2c3d000002",
    "00061f0a1b2c3d000003",
];
const MAX_CHUNKS: usize = 64;

struct Valid {
    id: QueueId,
    message: Vec<u8>,
    slot: Vec<u8>,
}

/// CRC-32 (IEEE), as the slot header uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The 64-byte header of a slot holding `payload` for `id` (lib.rs "Slot layout").
fn header(id: &str, payload: &[u8]) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[0..8].copy_from_slice(b"PQSLOT1\n");
    h[8..28].copy_from_slice(id.as_bytes());
    h[32..40].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[40..44].copy_from_slice(&crc32(payload).to_le_bytes());
    let own = crc32(&h[..44]);
    h[44..48].copy_from_slice(&own.to_le_bytes());
    h
}

/// A message file (lib.rs "On-disk format") for `id` and `message`, its envelope as JSON.
fn payload(id: &str, i: usize, message: &[u8]) -> Vec<u8> {
    let json = format!(
        r#"{{"id":"{id}","sender":"sender@example.org","recipients":[{{"address":"rcpt{i}@example.test"}}],"arrival":1700000000,"size":{}}}"#,
        message.len()
    );
    let mut out = format!("POSTERN-QUEUE 1 {}\n", json.len()).into_bytes();
    out.extend_from_slice(json.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(message);
    out
}

fn valid() -> &'static [Valid] {
    static VALID: OnceLock<Vec<Valid>> = OnceLock::new();
    VALID.get_or_init(|| {
        VALID_IDS
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let message = match i {
                    0 => postern_fuzz::MESSAGES[0].to_vec(),
                    1 => {
                        let mut m = postern_fuzz::MESSAGES[1].to_vec();
                        m.extend(std::iter::repeat_n(b'x', 6000));
                        m.extend_from_slice(b"\r\n");
                        m
                    }
                    _ => postern_fuzz::MESSAGES[2].to_vec(),
                };
                let p = payload(id, i, &message);
                let mut slot = header(id, &p).to_vec();
                slot.extend_from_slice(&p);
                if i == 2 {
                    // A reused slot: stale bytes of an earlier, longer message after the payload.
                    slot.extend(std::iter::repeat_n(b'S', 9000));
                } else {
                    slot.resize(slot.len().max(16 << 10), 0);
                }
                Valid {
                    id: id.parse().expect("a queue id"),
                    message,
                    slot,
                }
            })
            .collect()
    })
}

fn names(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The messages recovered, by id, with their bytes (each checked against what it claims).
fn recover(dir: &Path) -> BTreeMap<QueueId, Vec<u8>> {
    let (spool, envelopes) =
        Spool::open_with(dir, Layout::Slots).expect("recovery never fails on content");
    let mut out = BTreeMap::new();
    for env in &envelopes {
        let bytes = spool
            .read_message(env.id)
            .expect("a recovered message reads");
        assert_eq!(
            bytes.len() as u64,
            env.size,
            "size differs from the envelope's"
        );
        assert_eq!(
            spool.load(env.id).expect("a recovered message loads").id,
            env.id
        );
        assert!(
            out.insert(env.id, bytes).is_none(),
            "one message returned twice"
        );
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&intact, mut rest)) = data.split_first() else {
        return;
    };
    let valid = valid();
    let dir = postern_fuzz::tempdir();
    let slots = dir.path().join("slots");
    std::fs::create_dir_all(&slots).expect("mkdir");
    let mut written = 0usize;
    let mut fuzz_payloads = Vec::new();
    let mut i = 0;
    while rest.len() >= 3 && i < MAX_CHUNKS {
        let op = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        let bytes = &rest[3..3 + len.min(rest.len() - 3)];
        rest = &rest[3 + bytes.len()..];
        let base = &valid[usize::from(op >> 4) % 3];
        let file = match (op & 0x7f) % 5 {
            0 => bytes.to_vec(),
            1 => {
                let mut s = base.slot.clone();
                for e in bytes.chunks_exact(3) {
                    let at = usize::from(u16::from_le_bytes([e[0], e[1]])) % s.len();
                    s[at] ^= e[2];
                }
                s
            }
            2 => {
                let mut s = base.slot.clone();
                let n = bytes
                    .get(..2)
                    .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
                if bytes.get(2).is_some_and(|b| b & 1 == 1) {
                    s.extend(std::iter::repeat_n(b'S', n));
                } else {
                    s.truncate(n);
                }
                s
            }
            3 => {
                fuzz_payloads.push(bytes.to_vec());
                let mut s = header(FUZZ_ID, bytes).to_vec();
                s.extend_from_slice(bytes);
                s
            }
            _ => {
                let mut s = bytes.get(..64).unwrap_or(bytes).to_vec();
                s.resize(64, 0);
                s.extend_from_slice(&base.slot[64..]);
                s
            }
        };
        let name = if op & 0x80 != 0 {
            format!("x{i}")
        } else {
            i.to_string()
        };
        std::fs::write(slots.join(name), file).expect("write");
        written += 1;
        i += 1;
    }
    for (k, v) in valid.iter().enumerate() {
        if intact & (1 << k) != 0 {
            std::fs::write(slots.join((1000 + k).to_string()), &v.slot).expect("write");
            written += 1;
        }
    }

    let found = recover(dir.path());
    for (id, bytes) in &found {
        if let Some(v) = valid.iter().find(|v| v.id == *id) {
            assert_eq!(bytes, &v.message, "a committed message came back changed");
        } else {
            assert_eq!(id.to_string(), FUZZ_ID, "a message nobody committed");
            // Under a correct header only the fuzzer's own payloads are messages.
            assert!(
                fuzz_payloads.iter().any(|p| p.ends_with(bytes)),
                "a message that is no payload written"
            );
        }
    }
    for (k, v) in valid.iter().enumerate() {
        if intact & (1 << k) != 0 {
            assert!(
                found.contains_key(&v.id),
                "an intact committed slot was lost"
            );
        }
    }
    // Every file is still in slots/ (a message or free) or was moved to corrupt/.
    let left = names(&slots).len();
    let corrupt = names(&dir.path().join("corrupt"));
    assert_eq!(left + corrupt.len(), written, "a file vanished");
    // Recovery is settled: a second one finds the same messages and moves nothing.
    let again = recover(dir.path());
    assert_eq!(again, found, "a second recovery differs");
    assert_eq!(
        names(&dir.path().join("corrupt")),
        corrupt,
        "more quarantined later"
    );
    assert_eq!(names(&slots).len(), left);
});
