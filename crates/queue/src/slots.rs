//! Message slots: preallocated files in `slots/` whose names are durable, rewritten in place,
//! so that one `fdatasync` commits a message (see the crate docs, "On-disk format").
//!
//! A slot is `slots/<n>` (`n` decimal). Its first [`HEADER_LEN`] bytes are a header naming
//! the queue id, the payload's length and its CRC-32; the payload (a message file exactly as
//! in the file layout) follows. A slot whose header is not valid (zeroed when its message
//! was removed, or cut short by a crash) is free. A valid header whose payload fails its
//! checksum or format checks is a torn write (never acknowledged: a commit is answered only
//! after its `fdatasync`) or damage; the file is moved to `corrupt/` for a human.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{error, warn};

use crate::envelope::Envelope;
use crate::error::{IoContext, QueueError, Result};
use crate::format;
use crate::id::QueueId;

/// Length of a slot's header.
pub(crate) const HEADER_LEN: u64 = 64;
/// First bytes of a valid header.
const MAGIC: &[u8; 8] = b"PQSLOT1\n";
/// A new slot is written out (zeros after the payload) to at least this length, so that the
/// blocks a later, similar message needs are already allocated and its `fdatasync` changes
/// no metadata.
pub(crate) const MIN_SLOT: u64 = 16 << 10;
/// A freed slot longer than this is deleted rather than kept (a large message does not keep
/// its disk space). Not cut back instead: a crash could keep the shorter length but lose the
/// zeroed header, and the removed message would look torn.
const KEEP_MAX: u64 = 128 << 10;
/// Free slots kept at most; a slot freed beyond that is deleted.
pub(crate) const MAX_FREE: usize = 512;
/// Slot files kept open at most, free or holding a message (the others are opened by path
/// when taken or freed), so that slots do not use up the descriptors a daemon needs for its
/// connections. A slot's file stays open from commit to removal and back to the next commit:
/// the reused slots of a steady flow are never opened by path again.
const MAX_OPEN: usize = 256;
/// Chunk size for reading a payload's bytes (checksum at recovery, copying a spooled body).
const CHUNK: usize = 64 << 10;

/// A slot's header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) id: QueueId,
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

impl Header {
    /// The header's bytes: magic, id (20 ASCII hex digits), 4 zero bytes, payload length
    /// (u64 LE), payload CRC-32 (u32 LE), CRC-32 of the 44 bytes before it (u32 LE), 16 zero
    /// bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(MAGIC);
        h[8..28].copy_from_slice(self.id.to_string().as_bytes());
        h[32..40].copy_from_slice(&self.len.to_le_bytes());
        h[40..44].copy_from_slice(&self.crc.to_le_bytes());
        let own = crc32fast::hash(&h[..44]);
        h[44..48].copy_from_slice(&own.to_le_bytes());
        h
    }

    /// The header in `h`, if it is a valid one (else the slot is free).
    pub(crate) fn decode(h: &[u8]) -> Option<Self> {
        if h.len() < HEADER_LEN as usize || &h[0..8] != MAGIC {
            return None;
        }
        if crc32fast::hash(&h[..44]).to_le_bytes() != h[44..48] {
            return None;
        }
        if h[28..32] != [0; 4] || h[48..64] != [0; 16] {
            return None;
        }
        let id = std::str::from_utf8(&h[8..28]).ok()?.parse().ok()?;
        let len = u64::from_le_bytes(h[32..40].try_into().ok()?);
        let crc = u32::from_le_bytes(h[40..44].try_into().ok()?);
        Some(Self { id, len, crc })
    }
}

/// The slots of a spool: which id is in which slot, and the free ones.
#[derive(Debug)]
pub(crate) struct Slots {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The slots holding messages, their files open while [`MAX_OPEN`] allows.
    by_id: HashMap<QueueId, Slot>,
    /// Free slots; the last one freed is taken first (its file most likely open, its pages
    /// cached).
    free: Vec<Slot>,
    /// How many files of `by_id` and `free` are open.
    open: usize,
    /// The number the next new slot gets.
    next: u64,
}

/// A slot file: its number, its descriptor if kept open, and its length as far as we know
/// (at least the real one: it only grows while the slot is kept).
#[derive(Debug)]
struct Slot {
    n: u64,
    file: Option<File>,
    len: u64,
}

/// A slot taken for a commit: not free, not yet holding a committed message.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) n: u64,
    file: File,
    /// The file's length before this commit.
    len: u64,
    /// Created for this commit: its name is durable only after `slots/` is fsynced.
    pub(crate) new: bool,
}

/// A slot found at recovery.
pub(crate) enum Found {
    /// A committed message, its envelope as committed.
    Message(Envelope),
    /// Torn or damaged: moved to `corrupt/` by the caller.
    Corrupt(QueueError),
    Free,
}

impl Slots {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(n.to_string())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every update is one call).
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `id` is in a slot.
    pub(crate) fn contains(&self, id: QueueId) -> bool {
        self.lock().by_id.contains_key(&id)
    }

    /// A free slot, or a new one (created empty). A taken slot's open file is not counted
    /// in [`MAX_OPEN`] until it is published or given back.
    pub(crate) fn take(&self) -> Result<Taken> {
        let n = {
            let mut inner = self.lock();
            if let Some(Slot { n, file, len }) = inner.free.pop() {
                let file = match file {
                    Some(f) => {
                        inner.open -= 1;
                        f
                    }
                    None => {
                        drop(inner);
                        let path = self.path(n);
                        match OpenOptions::new().read(true).write(true).open(&path) {
                            Ok(f) => f,
                            Err(e) => {
                                // Gone (removed by hand?): forget it, take another.
                                warn!(path = %path.display(), error = %e, "free queue slot unusable");
                                return self.take();
                            }
                        }
                    }
                };
                return Ok(Taken {
                    n,
                    file,
                    len,
                    new: false,
                });
            }
            let n = inner.next;
            inner.next += 1;
            n
        };
        let path = self.path(n);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .ctx("create", &path)?;
        Ok(Taken {
            n,
            file,
            len: 0,
            new: true,
        })
    }

    /// Writes a message into a taken slot and makes it durable (`fdatasync`; a new slot:
    /// `fsync`, and the caller fsyncs `slots/` before answering). The payload is `prefix`,
    /// `message`, then the first `body.1` bytes of the file at `body.0`.
    ///
    /// A message wholly in memory goes out in one `pwritev`, header first; a spooled body
    /// is copied after the in-memory parts and the header written last. Either way nothing
    /// orders these writes on disk before the `fdatasync`: it is the header's checksum over
    /// the payload that tells a torn write (never acknowledged) from a committed message.
    pub(crate) fn write(
        &self,
        t: &mut Taken,
        id: QueueId,
        prefix: &[u8],
        message: &[u8],
        body: Option<(&Path, u64)>,
    ) -> Result<()> {
        let path = self.path(t.n);
        let mut crc = crc32fast::Hasher::new();
        crc.update(prefix);
        crc.update(message);
        let mut at = HEADER_LEN + (prefix.len() + message.len()) as u64;
        let Some((from, len)) = body else {
            let header = Header {
                id,
                len: at - HEADER_LEN,
                crc: crc.finalize(),
            }
            .encode();
            write_all_vectored_at(&t.file, &[&header, prefix, message], 0).ctx("write", &path)?;
            #[cfg(test)]
            trace::record(&self.dir, trace::Op::Write(t.n, t.new));
            return self.settle_write(t, at, &path);
        };
        write_all_vectored_at(&t.file, &[prefix, message], HEADER_LEN).ctx("write", &path)?;
        {
            let mut src = File::open(from).ctx("open", from)?.take(len);
            let mut buf = vec![0; CHUNK];
            let mut copied = 0;
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).ctx("read", from),
                };
                t.file.write_all_at(&buf[..n], at).ctx("write", &path)?;
                crc.update(&buf[..n]);
                at += n as u64;
                copied += n as u64;
            }
            if copied != len {
                return Err(QueueError::Io {
                    op: "copy",
                    path: from.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("spooled body has {copied} of {len} bytes"),
                    ),
                });
            }
        }
        let header = Header {
            id,
            len: at - HEADER_LEN,
            crc: crc.finalize(),
        };
        t.file
            .write_all_at(&header.encode(), 0)
            .ctx("write", &path)?;
        #[cfg(test)]
        trace::record(&self.dir, trace::Op::Write(t.n, t.new));
        self.settle_write(t, at, &path)
    }

    /// The end of [`Slots::write`]: a new slot padded to [`MIN_SLOT`] and `fsync`ed (its
    /// length and blocks are new metadata), a reused one `fdatasync`ed.
    fn settle_write(&self, t: &mut Taken, at: u64, path: &Path) -> Result<()> {
        if t.new {
            if at < MIN_SLOT {
                let zeros = vec![0; usize::try_from(MIN_SLOT - at).unwrap_or(0)];
                t.file.write_all_at(&zeros, at).ctx("write", path)?;
            }
            t.len = t.len.max(at).max(MIN_SLOT);
            t.file.sync_all().ctx("fsync", path)?;
        } else {
            t.len = t.len.max(at);
            t.file.sync_data().ctx("fdatasync", path)?;
        }
        #[cfg(test)]
        trace::record(&self.dir, trace::Op::Sync(t.n));
        Ok(())
    }

    /// Records a committed message in its slot (after every fsync it needed), its file kept
    /// open for the removal while [`MAX_OPEN`] allows.
    pub(crate) fn publish(&self, t: Taken, id: QueueId) {
        #[cfg(test)]
        trace::record(&self.dir, trace::Op::Publish(t.n, id));
        let mut inner = self.lock();
        let file = (inner.open < MAX_OPEN).then_some(t.file);
        inner.open += usize::from(file.is_some());
        let old = inner.by_id.insert(
            id,
            Slot {
                n: t.n,
                file,
                len: t.len,
            },
        );
        // An id is committed once (ids are unique); were it not, the slot replaced would
        // only lose its descriptor's place in the count.
        if old.is_some_and(|o| o.file.is_some()) {
            inner.open -= 1;
        }
    }

    /// Returns a slot whose commit failed: its header zeroed (best effort) so that a
    /// half-written message is not taken for one, then free again.
    pub(crate) fn give_back(&self, t: Taken) {
        if let Err(e) = t.file.write_all_at(&[0; HEADER_LEN as usize], 0) {
            warn!(slot = t.n, error = %e, "could not clear a slot after a failed commit");
        }
        // Its length is unknown after a failed write: asked again.
        let len = t.file.metadata().map_or(u64::MAX, |m| m.len());
        self.keep_free(t.n, Some(t.file), len);
    }

    /// Frees the slot of `id` (false if no slot holds it): its header is zeroed, without
    /// an fsync (if a crash loses that, the message is delivered again after restart: a
    /// duplicate, never a loss), and it becomes free for the next commit. The slot's file
    /// is used as kept open since its commit; it is opened by path only when it was not.
    pub(crate) fn free(&self, id: QueueId) -> Result<bool> {
        let Some(Slot { n, file, len }) = ({
            let mut inner = self.lock();
            let slot = inner.by_id.remove(&id);
            if slot.as_ref().is_some_and(|s| s.file.is_some()) {
                inner.open -= 1;
            }
            slot
        }) else {
            return Ok(false);
        };
        let path = self.path(n);
        let file = match file {
            Some(f) => f,
            None => match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) => {
                    // Gone (a human removed it?): nothing left to free.
                    warn!(path = %path.display(), error = %e, "queue slot missing at removal");
                    return Ok(true);
                }
            },
        };
        file.write_all_at(&[0; HEADER_LEN as usize], 0)
            .ctx("write", &path)?;
        #[cfg(test)]
        trace::record(&self.dir, trace::Op::Free(n));
        self.keep_free(n, Some(file), len);
        Ok(true)
    }

    /// Puts a free slot of length `len` on the list (its file kept open while [`MAX_OPEN`]
    /// allows), or deletes it when it is large or the list is full.
    fn keep_free(&self, n: u64, file: Option<File>, len: u64) {
        let mut inner = self.lock();
        if inner.free.len() >= MAX_FREE || len > KEEP_MAX {
            drop(inner);
            drop(file);
            let path = self.path(n);
            if let Err(e) = fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "could not delete a spare queue slot");
            }
            return;
        }
        let file = file.filter(|_| inner.open < MAX_OPEN);
        inner.open += usize::from(file.is_some());
        inner.free.push(Slot { n, file, len });
    }

    /// Creates free slots until the spool has `count` slots (at most [`MAX_FREE`]): written with zeros to
    /// [`MIN_SLOT`] bytes (not fsynced: a free slot's content does not matter, and the first
    /// commit into it flushes what its data needs), then one fsync of `slots/` makes their
    /// names durable before any is used. Best effort: an error is logged and fewer are made.
    pub(crate) fn preallocate(&self, count: usize, sync_dir: impl FnOnce() -> Result<()>) {
        // The numbers are reserved at once, so that a commit creating a slot meanwhile takes
        // another (a number left unused is only a gap).
        let (first, want) = {
            let mut inner = self.lock();
            let have = inner.by_id.len() + inner.free.len();
            let want = count.min(MAX_FREE).saturating_sub(have) as u64;
            let first = inner.next;
            inner.next += want;
            (first, want)
        };
        if want == 0 {
            return;
        }
        let zeros = vec![0u8; MIN_SLOT as usize];
        let mut made = Vec::new();
        for n in first..first + want {
            let path = self.path(n);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|f| f.write_all_at(&zeros, 0).map(|()| f));
            match file {
                Ok(f) => made.push((n, f)),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "could not preallocate a queue slot");
                    let _ = fs::remove_file(&path);
                    break;
                }
            }
        }
        if let Err(e) = sync_dir() {
            // Names not known durable: not used (a later open finds them free).
            warn!(error = %e, "could not preallocate queue slots");
            return;
        }
        for (n, file) in made {
            self.keep_free(n, Some(file), MIN_SLOT);
        }
    }

    /// Opens the slot of `id`, checks its header, and returns the file, its path and the
    /// payload length. `Ok(None)` if no slot holds `id`.
    fn open(&self, id: QueueId) -> Result<Option<(File, PathBuf, Header)>> {
        let (n, kept) = {
            let inner = self.lock();
            let Some(slot) = inner.by_id.get(&id) else {
                return Ok(None);
            };
            (slot.n, slot.file.as_ref().and_then(|f| f.try_clone().ok()))
        };
        let path = self.path(n);
        let file = match kept {
            Some(f) => f,
            None => match File::open(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                r => r.ctx("open", &path)?,
            },
        };
        let mut h = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut h, 0)
            .map_err(|e| format::eof_is_corrupt(e, &path))?;
        let header = match Header::decode(&h) {
            // Freed meanwhile (removed while being read).
            Some(h) if h.id == id => h,
            _ => return Ok(None),
        };
        let len = file.metadata().ctx("stat", &path)?.len();
        if header.len > len.saturating_sub(HEADER_LEN) {
            return Err(QueueError::corrupt(
                &path,
                "slot shorter than its header says",
            ));
        }
        Ok(Some((file, path, header)))
    }

    /// The envelope committed with `id` (`Ok(None)`: not in a slot).
    pub(crate) fn load(&self, id: QueueId) -> Result<Option<Envelope>> {
        let Some((file, path, header)) = self.open(id)? else {
            return Ok(None);
        };
        // Positioned reads: a kept descriptor's duplicate shares its file offset.
        let mut r = BufReader::with_capacity(8192, PositionedReader::new(&file, HEADER_LEN));
        let env = format::read_prefix(&mut r, header.len, &path)?;
        check_id(&env, id, &path)?;
        Ok(Some(env))
    }

    /// The envelope and message bytes of `id`, checksum verified (`Ok(None)`: not in a slot).
    pub(crate) fn read(&self, id: QueueId) -> Result<Option<(Envelope, Vec<u8>)>> {
        let Some((file, path, header)) = self.open(id)? else {
            return Ok(None);
        };
        let mut payload = vec![0; usize::try_from(header.len).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut payload, HEADER_LEN)
            .map_err(|e| format::eof_is_corrupt(e, &path))?;
        if crc32fast::hash(&payload) != header.crc {
            return Err(QueueError::corrupt(&path, "slot checksum mismatch"));
        }
        let mut r = &payload[..];
        let env = format::read_prefix(&mut r, header.len, &path)?;
        check_id(&env, id, &path)?;
        let start = payload.len() - r.len();
        payload.drain(..start);
        Ok(Some((env, payload)))
    }

    /// Reads every slot at open: returns what each holds, by slot file. Free slots are kept
    /// (up to [`MAX_FREE`], the rest deleted); the caller quarantines corrupt ones and
    /// registers messages with [`Slots::found`].
    pub(crate) fn scan(&self) -> Result<Vec<(PathBuf, u64, u64, Found)>> {
        let mut out = Vec::new();
        let mut entries = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx("read directory", &self.dir)? {
            let entry = entry.ctx("read directory", &self.dir)?;
            entries.push(entry.path());
        }
        entries.sort();
        let mut inner = self.lock();
        for path in entries {
            let n = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            let Some(n) = n else {
                out.push((
                    path.clone(),
                    u64::MAX,
                    0,
                    Found::Corrupt(QueueError::corrupt(&path, "unexpected file in slots/")),
                ));
                continue;
            };
            inner.next = inner.next.max(n.saturating_add(1));
            if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                out.push((
                    path.clone(),
                    n,
                    0,
                    Found::Corrupt(QueueError::corrupt(&path, "not a regular file in slots/")),
                ));
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .ctx("open", &path)?;
            let (found, len) = examine(&file, &path)?;
            if matches!(found, Found::Free) {
                drop(inner);
                self.keep_free(n, Some(file), len);
                inner = self.lock();
                continue;
            }
            out.push((path, n, len, found));
        }
        Ok(out)
    }

    /// Registers a message found at open; false if another slot already holds that id
    /// (that slot is then freed: both hold the same committed message).
    pub(crate) fn found(&self, id: QueueId, n: u64, len: u64) -> bool {
        let mut inner = self.lock();
        if inner.by_id.contains_key(&id) {
            drop(inner);
            let path = self.path(n);
            if let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) {
                let _ = file.write_all_at(&[0; HEADER_LEN as usize], 0);
                self.keep_free(n, Some(file), len);
            }
            return false;
        }
        // Not kept open (a recovered queue may be long); opened by path when freed.
        inner.by_id.insert(id, Slot { n, file: None, len });
        true
    }
}

/// Writes every part, in order, from `at` on, with as few `pwritev` calls as the kernel
/// allows (one for a message in memory: header, prefix and bytes). Positioned: the
/// descriptor's offset is neither used nor moved.
fn write_all_vectored_at(file: &File, parts: &[&[u8]], at: u64) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| io::IoSlice::new(p))
        .collect();
    let mut left = &mut slices[..];
    let mut at = at;
    while !left.is_empty() {
        let offset = i64::try_from(at).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match nix::sys::uio::pwritev(file, left, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                io::IoSlice::advance_slices(&mut left, n);
                at += n as u64;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads a file from `at` on with `pread`s, leaving the descriptor's offset alone (a kept
/// slot descriptor and its duplicates share one offset).
struct PositionedReader<'a> {
    file: &'a File,
    at: u64,
}

impl<'a> PositionedReader<'a> {
    fn new(file: &'a File, at: u64) -> Self {
        Self { file, at }
    }
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// What a spool's slots went through, in order, for the tests of durability order (a test
/// filters by its own spool's `slots/`).
#[cfg(test)]
pub(crate) mod trace {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use crate::id::QueueId;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Op {
        /// A message's bytes and header written into slot n (created for it: true).
        Write(u64, bool),
        /// `slots/` fsynced (the names of new slots durable).
        SyncDir,
        /// Slot n's `fdatasync`/`fsync` returned.
        Sync(u64),
        /// Slot n recorded as holding the id (after every fsync of its batch).
        Publish(u64, QueueId),
        /// The commit of the id answered (its `commit` future may resolve).
        Answer(QueueId),
        /// Slot n's header zeroed at removal.
        Free(u64),
    }

    static OPS: Mutex<Vec<(PathBuf, Op)>> = Mutex::new(Vec::new());

    pub(crate) fn record(dir: &Path, op: Op) {
        OPS.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((dir.to_path_buf(), op));
    }

    /// The operations recorded for the spool whose slots are in `dir`.
    pub(crate) fn of(dir: &Path) -> Vec<Op> {
        OPS.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(d, _)| d == dir)
            .map(|(_, op)| *op)
            .collect()
    }
}

fn check_id(env: &Envelope, id: QueueId, path: &Path) -> Result<()> {
    if env.id == id {
        Ok(())
    } else {
        Err(QueueError::corrupt(
            path,
            format!("envelope id {} in slot of {id}", env.id),
        ))
    }
}

/// What one slot holds: its header and payload checked (checksum over the payload, read in
/// chunks, then the message-file format).
fn examine(file: &File, path: &Path) -> Result<(Found, u64)> {
    let len = file.metadata().ctx("stat", path)?.len();
    Ok((examine_len(file, path, len)?, len))
}

fn examine_len(file: &File, path: &Path, len: u64) -> Result<Found> {
    if len < HEADER_LEN {
        return Ok(Found::Free);
    }
    let mut h = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0).ctx("read", path)?;
    let Some(header) = Header::decode(&h) else {
        return Ok(Found::Free);
    };
    if header.len > len - HEADER_LEN {
        return Ok(Found::Corrupt(QueueError::corrupt(
            path,
            format!("slot of {} cut short (torn write?)", header.id),
        )));
    }
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0; CHUNK];
    let mut at = HEADER_LEN;
    let end = HEADER_LEN + header.len;
    while at < end {
        let n = usize::try_from((end - at).min(CHUNK as u64)).unwrap_or(CHUNK);
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| format::eof_is_corrupt(e, path))?;
        crc.update(&buf[..n]);
        at += n as u64;
    }
    if crc.finalize() != header.crc {
        return Ok(Found::Corrupt(QueueError::corrupt(
            path,
            format!("slot of {}: checksum mismatch (torn write?)", header.id),
        )));
    }
    let mut r = BufReader::with_capacity(8192, PositionedReader::new(file, HEADER_LEN));
    match format::read_prefix(&mut r, header.len, path) {
        Ok(env) if env.id == header.id => Ok(Found::Message(env)),
        Ok(env) => Ok(Found::Corrupt(QueueError::corrupt(
            path,
            format!("envelope id {} in slot of {}", env.id, header.id),
        ))),
        Err(e @ QueueError::Corrupt { .. }) => Ok(Found::Corrupt(e)),
        Err(e) => {
            error!(error = %e, "reading a queue slot failed");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> QueueId {
        format!("{:014x}000000", 1_700_000_000_000_000 + n)
            .parse()
            .unwrap()
    }

    /// Slot files: at most [`MAX_OPEN`] kept open, free or holding a message (the rest
    /// reopened when taken or freed), a large one deleted when freed.
    #[test]
    fn open_slots_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path().to_path_buf());
        let commit = |n: u64, body: &[u8]| {
            let mut t = slots.take().unwrap();
            slots.write(&mut t, id(n), b"", body, None).unwrap();
            slots.publish(t, id(n));
        };
        let total = MAX_OPEN as u64 + 6;
        for n in 0..total {
            commit(n, b"small");
        }
        assert_eq!(
            slots.lock().open,
            MAX_OPEN,
            "committed slots kept open up to the bound"
        );
        for n in 0..total {
            assert!(slots.free(id(n)).unwrap());
        }
        assert!(!slots.free(id(0)).unwrap(), "freed once");
        {
            let inner = slots.lock();
            assert_eq!((inner.free.len() as u64, inner.open), (total, MAX_OPEN));
            assert!(inner.free.iter().all(|s| s.len == MIN_SLOT));
        }
        // All taken again (6 of them reopened), no new file.
        for n in 1000..1000 + total {
            commit(n, b"again");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count() as u64, total);
        assert_eq!(slots.lock().open, MAX_OPEN);
        // Each message landed in the file its slot names (read back by path).
        for n in 1000..1000 + total {
            let slot = slots.lock().by_id[&id(n)].n;
            let bytes = fs::read(dir.path().join(slot.to_string())).unwrap();
            let h = Header::decode(&bytes).unwrap();
            assert_eq!((h.id, h.len), (id(n), 5));
            assert_eq!(&bytes[HEADER_LEN as usize..][..5], b"again");
        }
        // A large one is deleted when freed.
        commit(200, &vec![b'x'; (KEEP_MAX + 1) as usize]);
        let n = slots.lock().by_id[&id(200)].n;
        assert!(slots.free(id(200)).unwrap());
        assert!(!dir.path().join(n.to_string()).exists());
    }

    #[test]
    fn header_round_trip_and_any_damage_frees() {
        let id: QueueId = "00061f0a1b2c3d00017f".parse().unwrap();
        let h = Header {
            id,
            len: 12345,
            crc: 0xdead_beef,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Some(h));
        assert_eq!(Header::decode(&[0; 64]), None, "zeroed: free");
        for i in 0..64 {
            let mut d = b;
            d[i] ^= 0x40;
            assert_eq!(Header::decode(&d), None, "byte {i} flipped");
        }
        assert_eq!(Header::decode(&b[..63]), None);
    }
}
