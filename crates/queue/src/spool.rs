//! The spool directory: recovery at start and the delivery-side operations.
//!
//! Everything here is synchronous `std::fs`; async callers use `spawn_blocking`. The receive
//! side (group commit) is in [`Committer`](crate::Committer).

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{error, info, warn};

use crate::envelope::Envelope;
use crate::error::{IoContext, QueueError, Result};
use crate::format::{self, MAX_ENVELOPE_JSON};
use crate::id::{IdGen, QueueId};
use crate::slots::{Found, Slots};

/// Default cap on a message's size (64 MiB); see [`Spool::with_max_message_size`].
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;

/// How [`Committer`](crate::Committer) writes new messages (see the crate docs, "On-disk
/// format"). Either way, every message already in the spool is recovered and served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// One file per message, `active/<id>`: written, fsynced, linked, `active/` fsynced.
    #[default]
    Files,
    /// Preallocated slot files `slots/<n>`, rewritten in place: one `fdatasync` commits.
    Slots,
}

/// The queue's spool directory. Share it as `Arc<Spool>`; every method takes `&self`.
///
/// Only one process may have a spool open at a time (not enforced here).
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    layout: Layout,
    pub(crate) slots: Slots,
    pub(crate) incoming: PathBuf,
    active: PathBuf,
    /// `active/`, open for the fsync that commits (not opened and closed per commit).
    active_dir: std::sync::OnceLock<File>,
    corrupt: PathBuf,
    /// Files of removed messages kept for reuse (see [`Spool::remove_all`]).
    spare: PathBuf,
    spares: Mutex<Vec<PathBuf>>,
    /// The messages that have an `active/<id>.state` file (found at open or saved since):
    /// the others' removal and loading need not look for one. Only this process writes
    /// states while the spool is open.
    states: Mutex<HashSet<QueueId>>,
    max_message_size: u64,
    ids: IdGen,
    dir_syncs: AtomicU64,
}

/// A message body being received, spooled to `incoming/body.<random>` so that it need not be
/// held in memory, until [`Committer::commit_spooled`](crate::Committer::commit_spooled)
/// copies it into the message file. The file is removed when this is dropped (committed or
/// not), and at the next [`Spool::open`] after a crash: never acknowledged, never delivered.
#[derive(Debug)]
pub struct BodyFile {
    path: PathBuf,
    file: File,
}

impl BodyFile {
    /// The open file (read and write), for the receiver to write the body into.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its length now.
    pub fn len(&self) -> Result<u64> {
        Ok(self.file.metadata().ctx("stat", &self.path)?.len())
    }

    /// Whether nothing was written to it.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(path = %self.path.display(), error = %e, "could not remove a spooled body");
        }
    }
}

/// Files kept in `spare/` at most.
const MAX_SPARES: usize = 512;

impl Spool {
    /// Opens (creating with mode 0700 if needed) the spool at `dir` and recovers it: removes
    /// everything in `incoming/` (never acknowledged), moves committed files that fail their
    /// checks to `corrupt/` (logged as errors), removes `.state` files whose message is gone,
    /// and returns every queued envelope (merged with its state), sorted by id.
    ///
    /// Fails on an I/O error other than a corrupt file: a daemon that cannot read its spool
    /// should not start.
    pub fn open(dir: impl AsRef<Path>) -> Result<(Self, Vec<Envelope>)> {
        Self::open_with(dir, Layout::Files)
    }

    /// [`Spool::open`], committing new messages in `layout`. Slots found in `slots/` are
    /// recovered whatever the layout: torn ones (a commit cut short, never acknowledged) and
    /// damaged ones are moved to `corrupt/`, free ones are kept for reuse.
    pub fn open_with(dir: impl AsRef<Path>, layout: Layout) -> Result<(Self, Vec<Envelope>)> {
        let root = dir.as_ref().to_path_buf();
        DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&root)
            .ctx("mkdir", &root)?;
        let spool = Self {
            layout,
            slots: Slots::new(root.join("slots")),
            incoming: root.join("incoming"),
            active: root.join("active"),
            active_dir: std::sync::OnceLock::new(),
            corrupt: root.join("corrupt"),
            spare: root.join("spare"),
            spares: Mutex::new(Vec::new()),
            states: Mutex::new(HashSet::new()),
            root,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            ids: IdGen::default(),
            dir_syncs: AtomicU64::new(0),
        };
        let slots_dir = spool.slots.dir().to_path_buf();
        for d in [
            &spool.incoming,
            &spool.active,
            &spool.corrupt,
            &spool.spare,
            &slots_dir,
        ] {
            match DirBuilder::new().mode(0o700).create(d) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                r => r.ctx("mkdir", d)?,
            }
        }
        let active_dir = File::open(&spool.active).ctx("open directory", &spool.active)?;
        let _ = spool.active_dir.set(active_dir);
        spool.sync_dir(&spool.root)?;
        spool.clean_incoming()?;
        spool.load_spares()?;
        let envelopes = spool.recover()?;
        Ok((spool, envelopes))
    }

    /// A new, empty [`BodyFile`] in `incoming/` (mode 0600).
    pub fn body_file(&self) -> Result<BodyFile> {
        let path = self
            .incoming
            .join(format!("body.{:016x}", rand::random::<u64>()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .ctx("create", &path)?;
        Ok(BodyFile { path, file })
    }

    /// Sets the largest message [`Committer::commit`](crate::Committer::commit) accepts.
    pub fn with_max_message_size(mut self, max: u64) -> Self {
        self.max_message_size = max;
        self
    }

    /// The largest message accepted at commit.
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Path of a committed message file in the file layout (`active/<id>`; a message in a
    /// slot has no file of its own).
    pub fn message_path(&self, id: QueueId) -> PathBuf {
        self.active.join(id.to_string())
    }

    /// Loads one message's envelope, merged with its saved state.
    pub fn load(&self, id: QueueId) -> Result<Envelope> {
        if let Some(env) = self.slots.load(id)? {
            return self.merge_state(id, env);
        }
        let path = self.message_path(id);
        let (envelope, _) = self.open_message(id, &path)?;
        self.merge_state(id, envelope)
    }

    /// Reads a message's bytes, exactly as received.
    pub fn read_message(&self, id: QueueId) -> Result<Vec<u8>> {
        if let Some((_, body)) = self.slots.read(id)? {
            return Ok(body);
        }
        let path = self.message_path(id);
        let (envelope, reader) = self.open_message(id, &path)?;
        let size = envelope.size;
        // Bounded: read_prefix checked that the file holds exactly `size` more bytes.
        let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .take(size)
            .read_to_end(&mut body)
            .ctx("read", &path)?;
        if body.len() as u64 != size {
            return Err(QueueError::corrupt(
                &path,
                "message shorter than its envelope says",
            ));
        }
        Ok(body)
    }

    /// Saves an envelope's mutable state (statuses, attempts, hold, …) atomically: written in
    /// `incoming/`, fsynced, renamed to `active/<id>.state`, `active/` fsynced.
    pub fn save_state(&self, env: &Envelope) -> Result<()> {
        let msg = self.message_path(env.id);
        if !self.slots.contains(env.id) && !msg.try_exists().ctx("stat", &msg)? {
            return Err(QueueError::NotFound(env.id));
        }
        // Serializing a derived struct of strings, numbers and enums into memory cannot fail.
        let json = serde_json::to_vec(env).expect("envelope serializes");
        if json.len() > MAX_ENVELOPE_JSON {
            return Err(QueueError::EnvelopeTooLarge {
                size: json.len(),
                max: MAX_ENVELOPE_JSON,
            });
        }
        let tmp = self
            .incoming
            .join(format!("{}.state.{:08x}", env.id, rand::random::<u32>()));
        write_durable(&tmp, &[&json])?;
        let state = self.state_path(env.id);
        // Known before the rename: a state on disk is never left unknown (an unknown one
        // would survive the message's removal until the next open).
        self.states_lock().insert(env.id);
        if let Err(e) = fs::rename(&tmp, &state) {
            let _ = fs::remove_file(&tmp);
            return Err(e).ctx("rename", &state);
        }
        self.sync_dir(&self.active)
    }

    fn states_lock(&self) -> std::sync::MutexGuard<'_, HashSet<QueueId>> {
        // Every update is one call: a panic while holding the lock leaves a consistent set.
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `id` has (or may have) a state file.
    fn has_state(&self, id: QueueId) -> bool {
        self.states_lock().contains(&id)
    }

    /// Removes the state file of `id`, if it has one.
    fn remove_state(&self, id: QueueId) -> Result<()> {
        if !self.has_state(id) {
            return Ok(());
        }
        let state = self.state_path(id);
        match fs::remove_file(&state) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).ctx("unlink", &state),
            _ => {
                self.states_lock().remove(&id);
                Ok(())
            }
        }
    }

    /// Removes a message held in a slot and without a state file, the common case of a
    /// delivered message, if `id` is one: its slot's header zeroed with one write into a
    /// file kept open since the commit (no path lookup, no directory change, no fsync; see
    /// [`Spool::remove_all`]). `Ok(false)`: not such a message, nothing done; the caller
    /// uses [`Spool::remove`]. Cheap enough for an async task to call inline.
    pub fn remove_if_slot_only(&self, id: QueueId) -> Result<bool> {
        if self.has_state(id) || !self.slots.contains(id) {
            return Ok(false);
        }
        self.slots.free(id)
    }

    /// Removes a delivered (or bounced) message: its slot or file, then its state, without
    /// an fsync (see [`Spool::remove_all`]). Already-missing files are not an error.
    pub fn remove(&self, id: QueueId) -> Result<()> {
        self.remove_all(&[id])
    }

    /// Removes several messages. The directory is not fsynced: if a crash loses the
    /// unlink, the message is delivered again after restart (a duplicate of a delivery that
    /// was just finishing, never a loss) — as Postfix does, and it keeps removals from
    /// competing with commits for directory fsyncs.
    ///
    /// A message in a slot: its slot's header is zeroed (likewise not fsynced: a crash that
    /// loses it delivers the message again) and the slot is free for the next commit, which
    /// rewrites it whole and checksummed before it answers (see the crate docs).
    ///
    /// In the file layout, message files are not unlinked but moved to `spare/` (up to a
    /// bound) and rewritten for later messages: creating a file allocates an inode, and right after many deletions
    /// that is expensive (ext4 without a journal scans past recently freed inodes). A spare
    /// is only reused by a commit, which fsyncs `active/` before it answers, so the removal
    /// of the old name is durable before the reused file is acknowledged; should a crash come
    /// earlier, the old name holds an unacknowledged message with another id, which recovery
    /// moves to `corrupt/`.
    pub fn remove_all(&self, ids: &[QueueId]) -> Result<()> {
        for &id in ids {
            let message = self.message_path(id);
            let freed = self.slots.free(id)?;
            if freed || (self.layout == Layout::Files && self.keep_spare(id, &message)) {
                self.remove_state(id)?;
                continue;
            }
            // Message first: a crash between the two leaves a state without its message,
            // which open() removes.
            match fs::remove_file(&message) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(e).ctx("unlink", &message);
                }
                _ => {}
            }
            self.remove_state(id)?;
        }
        Ok(())
    }

    /// Moves a removed message's file to `spare/` if there is room; false if it was not moved.
    fn keep_spare(&self, id: QueueId, message: &Path) -> bool {
        let Ok(mut spares) = self.spares.lock() else {
            return false;
        };
        if spares.len() >= MAX_SPARES {
            return false;
        }
        let target = self.spare.join(id.to_string());
        if fs::rename(message, &target).is_err() {
            return false;
        }
        spares.push(target);
        true
    }

    /// A spare file renamed to `path` (in `incoming/`), ready to be truncated and rewritten.
    pub(crate) fn take_spare(&self, path: &Path) -> bool {
        let spare = match self.spares.lock() {
            Ok(mut s) => s.pop(),
            Err(_) => None,
        };
        spare.is_some_and(|spare| fs::rename(&spare, path).is_ok())
    }

    /// Lists `spare/` at start.
    fn load_spares(&self) -> Result<()> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.spare).ctx("read directory", &self.spare)? {
            let entry = entry.ctx("read directory", &self.spare)?;
            let path = entry.path();
            // A spare with another name too is a committed message whose removal from
            // spare/ was lost in a crash (only active/ is fsynced at commit, and a file
            // system without ordered metadata may keep the old name): reusing it would
            // overwrite that message. Only the spare name is removed.
            let lone_file = entry
                .metadata()
                .is_ok_and(|m| m.is_file() && std::os::unix::fs::MetadataExt::nlink(&m) == 1);
            if found.len() < MAX_SPARES && lone_file {
                found.push(path);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
        if let Ok(mut s) = self.spares.lock() {
            *s = found;
        }
        Ok(())
    }

    /// Holds a message: it stays queued but is not delivered until [`Spool::release`]d.
    pub fn hold(&self, id: QueueId) -> Result<Envelope> {
        self.set_held(id, true)
    }

    /// Releases a held message.
    pub fn release(&self, id: QueueId) -> Result<Envelope> {
        self.set_held(id, false)
    }

    /// How many directory fsyncs this spool has done (lets tests see group commit at work).
    pub fn dir_syncs(&self) -> u64 {
        self.dir_syncs.load(Ordering::Relaxed)
    }

    /// A fresh id, greater than every id handed out or found at open.
    pub(crate) fn next_id(&self) -> QueueId {
        self.ids.next()
    }

    /// Creates free slots until the spool has `count` slots (at most 512), so that a burst
    /// of commits after a start finds slots whose names are durable already (a commit that
    /// finds no free slot creates one, and fsyncs `slots/` before it answers). The new slots
    /// hold 16 KiB of zeros, not fsynced; one fsync of `slots/` makes their names durable
    /// before any is used. Best effort: errors are logged, fewer slots made. Only useful in
    /// the slot layout; blocking.
    pub fn preallocate_slots(&self, count: usize) {
        self.slots.preallocate(count, || self.sync_slots());
    }

    /// How new messages are written.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// fsyncs `slots/`, making new slot files' names durable.
    pub(crate) fn sync_slots(&self) -> Result<()> {
        self.sync_dir(self.slots.dir())?;
        #[cfg(test)]
        crate::slots::trace::record(self.slots.dir(), crate::slots::trace::Op::SyncDir);
        Ok(())
    }

    /// fsyncs `active/`, making committed links durable.
    pub(crate) fn sync_active(&self) -> Result<()> {
        self.sync_dir(&self.active)
    }

    fn set_held(&self, id: QueueId, held: bool) -> Result<Envelope> {
        let mut env = self.load(id)?;
        if env.held != held {
            env.held = held;
            self.save_state(&env)?;
        }
        Ok(env)
    }

    fn state_path(&self, id: QueueId) -> PathBuf {
        self.active.join(format!("{id}.state"))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.dir_syncs.fetch_add(1, Ordering::Relaxed);
        if dir == self.active
            && let Some(d) = self.active_dir.get()
        {
            return d.sync_all().ctx("fsync directory", dir);
        }
        File::open(dir)
            .ctx("open directory", dir)?
            .sync_all()
            .ctx("fsync directory", dir)
    }

    /// Opens a message file and reads its prefix, leaving the reader at the first body byte.
    fn open_message(&self, id: QueueId, path: &Path) -> Result<(Envelope, BufReader<File>)> {
        let file = match File::open(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(QueueError::NotFound(id)),
            r => r.ctx("open", path)?,
        };
        let len = file.metadata().ctx("stat", path)?.len();
        let mut reader = BufReader::with_capacity(8192, file);
        let envelope = format::read_prefix(&mut reader, len, path)?;
        if envelope.id != id {
            return Err(QueueError::corrupt(
                path,
                format!("envelope id {} in file", envelope.id),
            ));
        }
        Ok((envelope, reader))
    }

    /// Replaces `base` by the saved state, if any. A bad state file is moved to `corrupt/` and
    /// the committed envelope used: delivered recipients may get the message again.
    fn merge_state(&self, id: QueueId, base: Envelope) -> Result<Envelope> {
        if !self.has_state(id) {
            return Ok(base);
        }
        let path = self.state_path(id);
        let bytes = match read_bounded(&path, MAX_ENVELOPE_JSON as u64) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(base),
            Err(e @ QueueError::Io { .. }) => return Err(e),
            Err(e) => {
                error!(error = %e, "bad queue state file; using the committed envelope");
                self.quarantine(&path)?;
                self.states_lock().remove(&id);
                return Ok(base);
            }
        };
        match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(state) if state.id == id && state.size == base.size => Ok(state),
            Ok(_) | Err(_) => {
                error!(path = %path.display(), "bad queue state file; using the committed envelope");
                self.quarantine(&path)?;
                self.states_lock().remove(&id);
                Ok(base)
            }
        }
    }

    fn clean_incoming(&self) -> Result<()> {
        for entry in fs::read_dir(&self.incoming).ctx("read directory", &self.incoming)? {
            let path = entry.ctx("read directory", &self.incoming)?.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.ctx("remove", &path)?;
            info!(path = %path.display(), "removed unacknowledged file from incoming/");
        }
        Ok(())
    }

    /// Loads `active/`, quarantining what fails its checks and removing orphaned states.
    fn recover(&self) -> Result<Vec<Envelope>> {
        let (mut messages, mut states, mut others) = (Vec::new(), Vec::new(), Vec::new());
        for entry in fs::read_dir(&self.active).ctx("read directory", &self.active)? {
            let entry = entry.ctx("read directory", &self.active)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(id) = name.parse::<QueueId>() {
                messages.push(id);
            } else if let Some(id) = name
                .strip_suffix(".state")
                .and_then(|s| s.parse::<QueueId>().ok())
            {
                states.push(id);
            } else {
                others.push(entry.path());
            }
        }
        messages.sort_unstable();
        self.states_lock().extend(states.iter().copied());
        let mut changed = false;
        for path in others {
            warn!(path = %path.display(), "unexpected file in active/, moved to corrupt/");
            self.quarantine(&path)?;
            changed = true;
        }
        let mut envelopes = Vec::with_capacity(messages.len());
        for (path, n, len, found) in self.slots.scan()? {
            match found {
                Found::Message(env) => {
                    let id = env.id;
                    self.ids.observe(id);
                    if messages.binary_search(&id).is_ok() || !self.slots.found(id, n, len) {
                        warn!(%id, path = %path.display(), "message in two places; one kept");
                        continue;
                    }
                    envelopes.push(self.merge_state(id, env)?);
                }
                Found::Corrupt(e) => {
                    error!(error = %e, "torn or corrupt queue slot moved to corrupt/ (a commit cut short was never acknowledged)");
                    self.quarantine(&path)?;
                    changed = true;
                }
                Found::Free => {}
            }
        }
        for &id in &messages {
            self.ids.observe(id);
            let path = self.message_path(id);
            match self.load(id) {
                Ok(env) => envelopes.push(env),
                Err(e @ QueueError::Corrupt { .. }) => {
                    error!(error = %e, "corrupt queue file moved to corrupt/");
                    self.quarantine(&path)?;
                    let state = self.state_path(id);
                    if state.exists() {
                        self.quarantine(&state)?;
                    }
                    changed = true;
                }
                Err(e) => return Err(e),
            }
        }
        for id in states {
            if messages.binary_search(&id).is_err() && !self.slots.contains(id) {
                let path = self.state_path(id);
                fs::remove_file(&path).ctx("unlink", &path)?;
                self.states_lock().remove(&id);
                info!(path = %path.display(), "removed state of a removed message");
                changed = true;
            }
        }
        if changed {
            self.sync_dir(&self.corrupt)?;
            self.sync_dir(&self.active)?;
            self.sync_dir(self.slots.dir())?;
        }
        envelopes.sort_by_key(|e| e.id);
        Ok(envelopes)
    }

    /// Moves a file to `corrupt/`, never overwriting what is there.
    fn quarantine(&self, path: &Path) -> Result<()> {
        let mut name = path
            .file_name()
            .map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
        if path.parent() == Some(self.slots.dir()) {
            name = format!("slot.{name}");
        }
        let mut target = self.corrupt.join(&name);
        let mut n = 0;
        while target.try_exists().ctx("stat", &target)? {
            n += 1;
            target = self.corrupt.join(format!("{name}.{n}"));
        }
        fs::rename(path, &target).ctx("rename to corrupt/", path)
    }
}

/// Creates `path` (it must not exist), writes `parts`, fsyncs. Removes it on failure.
pub(crate) fn write_durable(path: &Path, parts: &[&[u8]]) -> Result<()> {
    write_durable_with(path, parts, None)
}

/// [`write_durable`], then the first `len` bytes of the file at `body.0` (length `body.1`).
pub(crate) fn write_durable_with(
    path: &Path,
    parts: &[&[u8]],
    body: Option<(&Path, u64)>,
) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .ctx("create", path)?;
    write_file(file, path, parts, body)
}

/// Like [`write_durable_with`], into an existing file at `path` (a reused spare), truncated
/// first.
pub(crate) fn rewrite_durable(
    path: &Path,
    parts: &[&[u8]],
    body: Option<(&Path, u64)>,
) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .ctx("open", path)?;
    write_file(file, path, parts, body)
}

fn write_file(
    mut file: File,
    path: &Path,
    parts: &[&[u8]],
    body: Option<(&Path, u64)>,
) -> Result<()> {
    let written = write_all_parts(&mut file, parts)
        .ctx("write", path)
        .and_then(|()| match body {
            Some((from, len)) => copy_body(from, len, &mut file),
            None => Ok(()),
        })
        .and_then(|()| file.sync_all().ctx("fsync", path));
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// Writes every part, in order, with as few `writev` calls as the kernel allows (one for a
/// whole message: its prefix and bytes), not one `write` per part.
fn write_all_parts(file: &mut File, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| io::IoSlice::new(p))
        .collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        match file.write_vectored(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends the first `len` bytes of the file at `from` to `to` (in the kernel where it can:
/// `io::copy` between files uses `copy_file_range` on Linux); fails if it holds fewer.
fn copy_body(from: &Path, len: u64, to: &mut File) -> Result<()> {
    let src = File::open(from).ctx("open", from)?;
    let copied = io::copy(&mut src.take(len), to).ctx("copy", from)?;
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
    Ok(())
}

/// Reads a whole file of at most `max` bytes; `None` if it does not exist.
fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        r => r.ctx("open", path)?,
    };
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf).ctx("read", path)?;
    if buf.len() as u64 > max {
        return Err(QueueError::corrupt(
            path,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(Some(buf))
}
