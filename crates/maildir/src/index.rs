//! The `postern-index` file: encoding and decoding (the logic lives in [`crate::mailbox`]).
//!
//! ```text
//! "PSTNIDX1"                     magic, 8 bytes
//! body_len: u64, body_hash: u64  the snapshot
//! body:                          header, then messages, then expunge history
//!   uid_validity u32, uid_next u32, highest_modseq u64, first_recent u32, expunge_floor u64,
//!   dirs (cur sec i64, cur nsec u32, new sec i64, new nsec u32, safe u8),
//!   cache_ino u64, cache_pos u64, message count u32, expunge count u32
//!   per message: uid u32, modseq u64, size u64, date i64, cache_off u64, cache_len u32,
//!                base (u16 length + bytes), suffix (u8 length + bytes)
//!   per expunge: uid u32, modseq u64
//! log records, appended:         len u32 (type + payload), hash u32, type u8, payload
//! ```
//! All integers little-endian. A record is accepted only whole and with a matching hash, so
//! a reader that meets a record being written (or torn by a crash) stops before it.

/// Name of the index file in each mailbox directory.
pub(crate) const INDEX_FILE: &str = "postern-index";
/// Temporary name of a new snapshot before it is renamed over the index.
pub(crate) const INDEX_TMP_FILE: &str = "postern-index.tmp";

const MAGIC: &[u8; 8] = b"PSTNIDX1";
/// Bytes before the snapshot body.
pub(crate) const PREAMBLE: usize = 24;
const MAX_RECORD: u32 = 64 * 1024;

/// A directory modification time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) sec: i64,
    pub(crate) nsec: u32,
}

/// The `cur/` and `new/` modification times the index is known to reflect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DirState {
    pub(crate) cur: Stamp,
    pub(crate) new: Stamp,
    /// False when a change within the file system's timestamp granularity after the stat
    /// could have left the times unchanged: then the directories are scanned again.
    pub(crate) safe: bool,
}

/// The snapshot header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) uid_validity: u32,
    pub(crate) uid_next: u32,
    pub(crate) highest_modseq: u64,
    pub(crate) first_recent: u32,
    pub(crate) expunge_floor: u64,
    pub(crate) dirs: DirState,
    pub(crate) cache_ino: u64,
    pub(crate) cache_pos: u64,
}

/// One message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Msg {
    pub(crate) uid: u32,
    pub(crate) modseq: u64,
    pub(crate) size: u64,
    pub(crate) date: i64,
    pub(crate) base: String,
    /// Everything from the `:` of the info part (`:2,FS`), or empty.
    pub(crate) suffix: String,
    pub(crate) cache_off: u64,
    pub(crate) cache_len: u32,
}

/// A whole snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) hdr: Header,
    pub(crate) msgs: Vec<Msg>,
    pub(crate) expunges: Vec<(u32, u64)>,
}

/// A change appended to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rec {
    /// A message got its UID (cache fields unused).
    New(Msg),
    /// A message's info part changed.
    Flags {
        uid: u32,
        modseq: u64,
        suffix: String,
    },
    /// A message is gone.
    Expunge { uid: u32, modseq: u64 },
    /// UIDs below this were claimed as \Recent.
    Recent(u32),
    /// The directories were scanned and found as recorded.
    Dirs(DirState),
    /// The uidlist's next UID grew without a message for us.
    UidNext(u32),
}

/// A fast 64-bit hash for corruption checks (not cryptographic).
pub(crate) fn hash64(data: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x243F_6A88_85A3_08D3 ^ (data.len() as u64);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut last = [0u8; 8];
    let rem = chunks.remainder();
    last[..rem.len()].copy_from_slice(rem);
    h = (h ^ u64::from_le_bytes(last)).wrapping_mul(K);
    h ^ (h >> 31)
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str16(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        self.u16(b.len() as u16);
        self.0.extend_from_slice(b);
    }
    fn str8(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(u8::MAX as usize)];
        self.u8(b.len() as u8);
        self.0.extend_from_slice(b);
    }
    fn dirs(&mut self, d: &DirState) {
        self.i64(d.cur.sec);
        self.u32(d.cur.nsec);
        self.i64(d.new.sec);
        self.u32(d.new.nsec);
        self.u8(u8::from(d.safe));
    }
}

struct R<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.p..self.p.checked_add(n)?)?;
        self.p += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .and_then(|s| s.try_into().ok())
            .map(i64::from_le_bytes)
    }
    fn str16(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn str8(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn dirs(&mut self) -> Option<DirState> {
        Some(DirState {
            cur: Stamp {
                sec: self.i64()?,
                nsec: self.u32()?,
            },
            new: Stamp {
                sec: self.i64()?,
                nsec: self.u32()?,
            },
            safe: self.u8()? != 0,
        })
    }
    fn done(&self) -> bool {
        self.p == self.b.len()
    }
}

/// Encodes a whole index file holding only a snapshot.
pub(crate) fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(
        128 + s.msgs.len() * 110 + s.expunges.len() * 12,
    ));
    let h = &s.hdr;
    w.u32(h.uid_validity);
    w.u32(h.uid_next);
    w.u64(h.highest_modseq);
    w.u32(h.first_recent);
    w.u64(h.expunge_floor);
    w.dirs(&h.dirs);
    w.u64(h.cache_ino);
    w.u64(h.cache_pos);
    w.u32(s.msgs.len() as u32);
    w.u32(s.expunges.len() as u32);
    for m in &s.msgs {
        w.u32(m.uid);
        w.u64(m.modseq);
        w.u64(m.size);
        w.i64(m.date);
        w.u64(m.cache_off);
        w.u32(m.cache_len);
        w.str16(&m.base);
        w.str8(&m.suffix);
    }
    for &(uid, modseq) in &s.expunges {
        w.u32(uid);
        w.u64(modseq);
    }
    let body = w.0;
    let mut out = Vec::with_capacity(PREAMBLE + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&hash64(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes the snapshot at the start of an index file; returns it and where the log starts.
pub(crate) fn decode_snapshot(data: &[u8]) -> Option<(Snapshot, usize)> {
    if data.len() < PREAMBLE || &data[..8] != MAGIC {
        return None;
    }
    let len = usize::try_from(u64::from_le_bytes(data[8..16].try_into().ok()?)).ok()?;
    let want = u64::from_le_bytes(data[16..24].try_into().ok()?);
    let body = data.get(PREAMBLE..PREAMBLE.checked_add(len)?)?;
    if hash64(body) != want {
        return None;
    }
    let mut r = R { b: body, p: 0 };
    let hdr = Header {
        uid_validity: r.u32()?,
        uid_next: r.u32()?,
        highest_modseq: r.u64()?,
        first_recent: r.u32()?,
        expunge_floor: r.u64()?,
        dirs: r.dirs()?,
        cache_ino: r.u64()?,
        cache_pos: r.u64()?,
    };
    let n = r.u32()? as usize;
    let ne = r.u32()? as usize;
    // Each message takes at least 43 bytes: refuse counts the body cannot hold.
    if n > body.len() / 43 || ne > body.len() / 12 {
        return None;
    }
    let mut msgs = Vec::with_capacity(n);
    for _ in 0..n {
        msgs.push(Msg {
            uid: r.u32()?,
            modseq: r.u64()?,
            size: r.u64()?,
            date: r.i64()?,
            cache_off: r.u64()?,
            cache_len: r.u32()?,
            base: r.str16()?,
            suffix: r.str8()?,
        });
    }
    let mut expunges = Vec::with_capacity(ne);
    for _ in 0..ne {
        expunges.push((r.u32()?, r.u64()?));
    }
    if !r.done() || hdr.uid_validity == 0 || !msgs.windows(2).all(|w| w[0].uid < w[1].uid) {
        return None;
    }
    Some((
        Snapshot {
            hdr,
            msgs,
            expunges,
        },
        PREAMBLE + len,
    ))
}

/// Appends the encoding of a log record to `out`.
pub(crate) fn encode_rec(rec: &Rec, out: &mut Vec<u8>) {
    let mut w = W(Vec::with_capacity(64));
    match rec {
        Rec::New(m) => {
            w.u8(1);
            w.u32(m.uid);
            w.u64(m.modseq);
            w.u64(m.size);
            w.i64(m.date);
            w.str16(&m.base);
            w.str8(&m.suffix);
        }
        Rec::Flags {
            uid,
            modseq,
            suffix,
        } => {
            w.u8(2);
            w.u32(*uid);
            w.u64(*modseq);
            w.str8(suffix);
        }
        Rec::Expunge { uid, modseq } => {
            w.u8(3);
            w.u32(*uid);
            w.u64(*modseq);
        }
        Rec::Recent(u) => {
            w.u8(4);
            w.u32(*u);
        }
        Rec::Dirs(d) => {
            w.u8(5);
            w.dirs(d);
        }
        Rec::UidNext(n) => {
            w.u8(6);
            w.u32(*n);
        }
    }
    let body = w.0;
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&(hash64(&body) as u32).to_le_bytes());
    out.extend_from_slice(&body);
}

/// Decodes log records from `data` until the end or the first incomplete or damaged one.
/// Returns the records and how many bytes they took.
pub(crate) fn decode_recs(data: &[u8]) -> (Vec<Rec>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while data.len() - pos >= 8 {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap_or_default());
        let want = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap_or_default());
        if len == 0 || len > MAX_RECORD || data.len() - pos - 8 < len as usize {
            break;
        }
        let body = &data[pos + 8..pos + 8 + len as usize];
        if hash64(body) as u32 != want {
            break;
        }
        let Some(rec) = decode_one(body) else { break };
        out.push(rec);
        pos += 8 + len as usize;
    }
    (out, pos)
}

fn decode_one(body: &[u8]) -> Option<Rec> {
    let mut r = R { b: body, p: 0 };
    let rec = match r.u8()? {
        1 => Rec::New(Msg {
            uid: r.u32()?,
            modseq: r.u64()?,
            size: r.u64()?,
            date: r.i64()?,
            base: r.str16()?,
            suffix: r.str8()?,
            cache_off: 0,
            cache_len: 0,
        }),
        2 => Rec::Flags {
            uid: r.u32()?,
            modseq: r.u64()?,
            suffix: r.str8()?,
        },
        3 => Rec::Expunge {
            uid: r.u32()?,
            modseq: r.u64()?,
        },
        4 => Rec::Recent(r.u32()?),
        5 => Rec::Dirs(r.dirs()?),
        6 => Rec::UidNext(r.u32()?),
        _ => return None,
    };
    r.done().then_some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            hdr: Header {
                uid_validity: 7,
                uid_next: 4,
                highest_modseq: 9,
                first_recent: 3,
                expunge_floor: 1,
                dirs: DirState {
                    cur: Stamp { sec: 5, nsec: 6 },
                    new: Stamp { sec: 7, nsec: 8 },
                    safe: true,
                },
                cache_ino: 11,
                cache_pos: 12,
            },
            msgs: vec![
                Msg {
                    uid: 1,
                    modseq: 2,
                    size: 3,
                    date: 4,
                    base: "a.b.c,S=1".into(),
                    suffix: ":2,S".into(),
                    cache_off: 16,
                    cache_len: 5,
                },
                Msg {
                    uid: 3,
                    base: "x".into(),
                    ..Msg::default()
                },
            ],
            expunges: vec![(2, 8)],
        }
    }

    #[test]
    fn snapshot_and_records_round_trip() {
        let s = sample();
        let mut file = encode_snapshot(&s);
        let recs = vec![
            Rec::New(Msg {
                uid: 4,
                modseq: 10,
                size: 1,
                date: -1,
                base: "n".into(),
                suffix: String::new(),
                cache_off: 0,
                cache_len: 0,
            }),
            Rec::Flags {
                uid: 1,
                modseq: 11,
                suffix: ":2,FS".into(),
            },
            Rec::Expunge { uid: 3, modseq: 12 },
            Rec::Recent(5),
            Rec::Dirs(DirState::default()),
            Rec::UidNext(9),
        ];
        for r in &recs {
            encode_rec(r, &mut file);
        }
        let (snap, end) = decode_snapshot(&file).unwrap();
        assert_eq!(snap, s);
        let (got, used) = decode_recs(&file[end..]);
        assert_eq!(got, recs);
        assert_eq!(end + used, file.len());

        // A torn last record is not returned.
        let (got, used) = decode_recs(&file[end..file.len() - 1]);
        assert_eq!(got.len(), recs.len() - 1);
        assert!(end + used < file.len());
    }

    #[test]
    fn damage_is_detected() {
        let file = encode_snapshot(&sample());
        for i in [0, 9, 17, 30, file.len() - 1] {
            let mut bad = file.clone();
            bad[i] ^= 0x40;
            assert!(decode_snapshot(&bad).is_none(), "byte {i}");
        }
        assert!(decode_snapshot(&file[..file.len() - 1]).is_none());
        assert!(decode_snapshot(b"garbage garbage garbage garbage").is_none());
        let mut rec = Vec::new();
        encode_rec(&Rec::Recent(5), &mut rec);
        rec[9] ^= 1;
        assert_eq!(decode_recs(&rec).0.len(), 0);
    }
}
