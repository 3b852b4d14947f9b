//! The receiving side (the destination's imapd).

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::json;

use crate::manifest::{entry_same, scan};
use crate::path::{check_link_target, check_path};
use crate::wire::{self, read_entry, read_json, read_line, write_json, write_manifest};
use crate::{CHUNK, Entry, Kind, MAX_ENTRIES, MAX_FILE_SIZE, Manifest, TransferError};

/// The suffix of the staging directory next to the home.
pub const STAGING_SUFFIX: &str = ".postern-move";

#[derive(Deserialize)]
struct Auth {
    op: String,
    nonce: String,
    mac: String,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Request {
    Begin { address: String },
    Mkdir { entry: Entry },
    Put { entry: Entry },
    Symlink { entry: Entry },
    Delete { path: String },
    Verify,
    Commit,
    Abort { entries: Option<usize> },
}

#[derive(Deserialize)]
struct Trailer {
    done: bool,
    #[serde(default)]
    error: Option<String>,
}

/// A refusal to send to the client (the connection goes on).
type Refusal = String;

/// Where one move writes.
struct Target {
    home: PathBuf,
    staging: PathBuf,
    /// This connection's claim on the home.
    claim: Claim,
}

/// The homes connections of this process are moving into. Two connections into one home
/// at once (a `mailctl user move` run again while the receiver still holds the connection
/// of an earlier run whose network died, or a peer holding the secret on purpose) would
/// race between one's path checks and the other's writes, renames and removals. So the
/// newest `begin` for a home wins: every later request of an older connection into it is
/// refused, and each request's checks and changes run under the home's lock.
static HOMES: std::sync::Mutex<Vec<(PathBuf, std::sync::Weak<Slot>)>> =
    std::sync::Mutex::new(Vec::new());

/// One home being moved into.
#[derive(Default)]
struct Slot {
    /// The generation of the newest connection that sent `begin` for it.
    current: std::sync::atomic::AtomicU64,
    /// Held while a request checks and changes the home or staging.
    ops: std::sync::Mutex<()>,
}

/// A connection's claim on a home: its generation.
struct Claim {
    slot: std::sync::Arc<Slot>,
    generation: u64,
}

impl Claim {
    /// Claims `home` for this connection; an older connection's claim lapses.
    fn take(home: &Path) -> Self {
        use std::sync::atomic::Ordering;
        let mut homes = HOMES.lock().unwrap_or_else(|p| p.into_inner());
        homes.retain(|(_, w)| w.strong_count() > 0);
        let slot = homes
            .iter()
            .find(|(h, _)| h == home)
            .and_then(|(_, w)| w.upgrade())
            .unwrap_or_else(|| {
                let slot = std::sync::Arc::new(Slot::default());
                homes.push((home.to_path_buf(), std::sync::Arc::downgrade(&slot)));
                slot
            });
        let generation = slot.current.fetch_add(1, Ordering::AcqRel) + 1;
        Self { slot, generation }
    }

    /// The home's lock, while this connection's claim is the newest.
    fn exclusive(&self) -> Result<std::sync::MutexGuard<'_, ()>, Refusal> {
        use std::sync::atomic::Ordering;
        let guard = self.slot.ops.lock().unwrap_or_else(|p| p.into_inner());
        if self.slot.current.load(Ordering::Acquire) != self.generation {
            return Err(
                "a newer transfer into this home began on another connection; this one can \
                 no longer change it"
                    .into(),
            );
        }
        Ok(guard)
    }
}

/// Serves one connection (blocking) until the client closes it: greeting, one
/// authentication attempt (a wrong proof is answered with an error and the connection is
/// closed: `Err(Auth)`), then requests. `home_of` maps an address to its home on this node,
/// or gives the refusal to send. The caller bounds the time (socket timeouts).
pub fn serve<S: Read + Write>(
    stream: S,
    secret: &[u8],
    home_of: &dyn Fn(&str) -> Result<PathBuf, String>,
) -> Result<(), TransferError> {
    serve_with(stream, secret, home_of, &|| {})
}

/// [`serve`], calling `authenticated` once the peer has proved the secret (before the
/// server's own proof is sent). imapd uses it to end the handshake's deadline: a stranger
/// gets a bounded time to authenticate, however slowly it trickles bytes in.
pub fn serve_with<S: Read + Write>(
    stream: S,
    secret: &[u8],
    home_of: &dyn Fn(&str) -> Result<PathBuf, String>,
    authenticated: &dyn Fn(),
) -> Result<(), TransferError> {
    let mut conn = BufReader::with_capacity(CHUNK, stream);
    let server_nonce = wire::nonce()?;
    write_json(
        conn.get_mut(),
        &json!({"greeting": wire::GREETING, "nonce": wire::hex(&server_nonce)}),
    )?;
    conn.get_mut().flush()?;
    let auth: Result<Auth, _> = read_json(&mut conn);
    let checked = auth.ok().and_then(|a| {
        let client_nonce = wire::unhex(&a.nonce).filter(|n| n.len() == wire::NONCE_LEN)?;
        let mac = wire::unhex(&a.mac)?;
        (a.op == "auth" && wire::verify_client_mac(secret, &server_nonce, &client_nonce, &mac))
            .then_some(client_nonce)
    });
    let Some(client_nonce) = checked else {
        // One attempt per connection.
        let _ = write_json(
            conn.get_mut(),
            &json!({"ok": false, "error": "authentication failed"}),
        );
        let _ = conn.get_mut().flush();
        return Err(TransferError::Auth);
    };
    authenticated();
    let proof = wire::server_mac(secret, &client_nonce, &server_nonce);
    write_json(
        conn.get_mut(),
        &json!({"ok": true, "mac": wire::hex(&proof)}),
    )?;
    conn.get_mut().flush()?;

    let mut target: Option<Target> = None;
    loop {
        let Some(line) = read_line(&mut conn)? else {
            return Ok(());
        };
        let request: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                // Unknown framing (a put's body may follow): answer and close.
                let why = format!("bad request: {e}");
                refuse(&mut conn, &why)?;
                return Err(TransferError::Protocol(why));
            }
        };
        let outcome = match request {
            Request::Begin { address } => {
                if target.is_some() {
                    Err("begin was already sent on this connection".to_owned())
                } else {
                    match begin(&address, home_of) {
                        Ok((t, status)) => {
                            target = Some(t);
                            send_status(&mut conn, status)?;
                            continue;
                        }
                        Err(why) => Err(why),
                    }
                }
            }
            Request::Put { entry } => put(&mut conn, target.as_ref(), entry)?,
            Request::Abort { entries } => abort(&mut conn, target.as_ref(), entries)?,
            Request::Mkdir { entry } => with_target(target.as_ref(), |t| mkdir(t, &entry)),
            Request::Symlink { entry } => with_target(target.as_ref(), |t| symlink(t, &entry)),
            Request::Delete { path } => with_target(target.as_ref(), |t| delete(t, &path)),
            Request::Commit => with_target(target.as_ref(), commit),
            Request::Verify => match with_target(target.as_ref(), verify) {
                Ok(m) => {
                    write_manifest(
                        &mut conn,
                        &json!({"ok": true, "entries": m.entries.len()}),
                        &m,
                    )?;
                    continue;
                }
                Err(why) => Err(why),
            },
        };
        match outcome {
            Ok(()) => {
                write_json(conn.get_mut(), &json!({"ok": true}))?;
                conn.get_mut().flush()?;
            }
            Err(why) => refuse(&mut conn, &why)?,
        }
    }
}

fn refuse<S: Read + Write>(conn: &mut BufReader<S>, why: &str) -> io::Result<()> {
    write_json(conn.get_mut(), &json!({"ok": false, "error": why}))?;
    conn.get_mut().flush()
}

fn with_target<T>(
    target: Option<&Target>,
    f: impl FnOnce(&Target) -> Result<T, Refusal>,
) -> Result<T, Refusal> {
    match target {
        Some(t) => {
            let _guard = t.claim.exclusive()?;
            f(t)
        }
        None => Err("send begin first".into()),
    }
}

fn fs_err(what: &Path, e: io::Error) -> Refusal {
    format!("{}: {e}", what.display())
}

/// Checks an address before it reaches `home_of` (which the caller may check further): at
/// most 254 bytes, `local@domain` with both parts non-empty, no `/`, `\\`, NUL or control
/// character, and neither part `.`, `..` or starting with a dot — so a home template's
/// `%n`, `%d`, `%u` cannot name a parent or the same directory.
pub fn check_address(address: &str) -> Result<(), String> {
    let refuse = || {
        Err(format!(
            "{:?}: not an address this node can have a home for",
            address.chars().take(100).collect::<String>()
        ))
    };
    if address.is_empty()
        || address.len() > 254
        || address.contains(['/', '\\', '\0'])
        || address.chars().any(char::is_control)
        || address.contains("..")
    {
        return refuse();
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return refuse();
    };
    if local.is_empty() || domain.is_empty() || local.starts_with('.') || domain.starts_with('.') {
        return refuse();
    }
    Ok(())
}

/// A home path must be absolute and name no `.` or `..` component (which `Path` would
/// silently normalise away: `/mail/d/.` is `/mail/d` to it).
fn check_home(home: &Path) -> Result<(), Refusal> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = home.as_os_str().as_bytes();
    let bad = !home.is_absolute()
        || home.file_name().is_none()
        || bytes.split(|&b| b == b'/').any(|c| c == b"." || c == b"..");
    if bad {
        Err(format!(
            "{}: the home must be an absolute path without . or .. components",
            home.display()
        ))
    } else {
        Ok(())
    }
}

fn begin(
    address: &str,
    home_of: &dyn Fn(&str) -> Result<PathBuf, String>,
) -> Result<(Target, StatusOut), Refusal> {
    check_address(address)?;
    let home = home_of(address)?;
    check_home(&home)?;
    let mut staging: OsString = home.clone().into_os_string();
    staging.push(STAGING_SUFFIX);
    let t = Target {
        claim: Claim::take(&home),
        home,
        staging: PathBuf::from(staging),
    };
    // An older connection's request in flight finishes first.
    let guard = t.claim.exclusive()?;
    let status = match fs::symlink_metadata(&t.home) {
        Ok(m) if m.file_type().is_dir() => {
            if dir_is_empty(&t.home)? {
                None
            } else {
                let m = scan(&t.home, true).map_err(|e| format!("the home: {e}"))?;
                Some(StatusOut::HomeExists(m))
            }
        }
        Ok(_) => {
            return Err(format!(
                "{}: exists and is not a directory",
                t.home.display()
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(fs_err(&t.home, e)),
    };
    let status = match status {
        Some(s) => s,
        None => match fs::symlink_metadata(&t.staging) {
            Ok(m) if m.file_type().is_dir() => {
                StatusOut::Staging(scan(&t.staging, false).map_err(|e| format!("staging: {e}"))?)
            }
            Ok(_) => {
                return Err(format!(
                    "{}: exists and is not a directory",
                    t.staging.display()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => StatusOut::Fresh,
            Err(e) => return Err(fs_err(&t.staging, e)),
        },
    };
    drop(guard);
    Ok((t, status))
}

enum StatusOut {
    Fresh,
    Staging(Manifest),
    HomeExists(Manifest),
}

fn send_status<S: Read + Write>(
    conn: &mut BufReader<S>,
    status: StatusOut,
) -> Result<(), TransferError> {
    match status {
        StatusOut::Fresh => {
            write_json(conn.get_mut(), &json!({"ok": true, "status": "fresh"}))?;
            conn.get_mut().flush()?;
        }
        StatusOut::Staging(m) => write_manifest(
            conn,
            &json!({"ok": true, "status": "staging", "entries": m.entries.len()}),
            &m,
        )?,
        StatusOut::HomeExists(m) => write_manifest(
            conn,
            &json!({"ok": true, "status": "home_exists", "entries": m.entries.len()}),
            &m,
        )?,
    }
    Ok(())
}

fn dir_is_empty(dir: &Path) -> Result<bool, Refusal> {
    let mut r = fs::read_dir(dir).map_err(|e| fs_err(dir, e))?;
    Ok(r.next().is_none())
}

/// Makes sure the staging directory exists and is a real directory (created 0700, with the
/// home's parent directories when missing).
fn ensure_staging(t: &Target) -> Result<(), Refusal> {
    match fs::symlink_metadata(&t.staging) {
        Ok(m) if m.file_type().is_dir() => return Ok(()),
        Ok(_) => {
            return Err(format!(
                "{}: exists and is not a directory (not followed)",
                t.staging.display()
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fs_err(&t.staging, e)),
    }
    if let Some(parent) = t.home.parent() {
        fs::create_dir_all(parent).map_err(|e| fs_err(parent, e))?;
    }
    match DirBuilder::new().mode(0o700).create(&t.staging) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fs_err(&t.staging, e)),
    }
    match fs::symlink_metadata(&t.staging) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        _ => Err(format!("{}: not a directory", t.staging.display())),
    }
}

/// The directory a path's last component lives in, inside staging, and that component.
/// Every existing intermediate component must be a real directory (a symlink planted in
/// staging is refused, never followed); missing ones are created (0700) when `create`,
/// else `Ok(None)`.
fn parent_in_staging<'p>(
    t: &Target,
    path: &'p str,
    create: bool,
) -> Result<Option<(PathBuf, &'p str)>, Refusal> {
    check_path(path).map_err(|e| e.to_string())?;
    if create {
        ensure_staging(t)?;
    } else {
        match fs::symlink_metadata(&t.staging) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Err(format!("{}: not a directory", t.staging.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fs_err(&t.staging, e)),
        }
    }
    let (dirs, last) = match path.rsplit_once('/') {
        Some((dirs, last)) => (Some(dirs), last),
        None => (None, path),
    };
    let mut dir = t.staging.clone();
    for component in dirs.into_iter().flat_map(|d| d.split('/')) {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{path}: {component} in staging is not a directory (not followed)"
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                match DirBuilder::new().mode(0o700).create(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(fs_err(&dir, e)),
                }
                match fs::symlink_metadata(&dir) {
                    Ok(m) if m.file_type().is_dir() => {}
                    _ => return Err(format!("{path}: {component} is not a directory")),
                }
            }
            Err(e) => return Err(fs_err(&dir, e)),
        }
    }
    Ok(Some((dir, last)))
}

fn mkdir(t: &Target, entry: &Entry) -> Result<(), Refusal> {
    if entry.kind != Kind::Dir {
        return Err(format!("{}: mkdir of a file", entry.path));
    }
    let Some((parent, name)) = parent_in_staging(t, &entry.path, true)? else {
        return Err(format!("{}: no parent", entry.path));
    };
    let dir = parent.join(name);
    let mode = entry.mode & 0o777;
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => return Err(format!("{}: exists and is not a directory", entry.path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| fs_err(&dir, e))?;
        }
        Err(e) => return Err(fs_err(&dir, e)),
    }
    // Through a descriptor opened without following a symlink.
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(&dir)
        .map_err(|e| fs_err(&dir, e))?;
    handle
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| fs_err(&dir, e))
}

/// Creates (or replaces) a symbolic link in staging: the same path checks as a file (every
/// existing component of its directory a real directory, never followed) and a target that
/// stays inside the home ([`check_link_target`]). The link is made under a temporary name
/// next to it and renamed over the old entry (rename replaces a link, never writes through
/// it); a directory in the way is refused.
fn symlink(t: &Target, entry: &Entry) -> Result<(), Refusal> {
    if entry.kind != Kind::Symlink {
        return Err(format!("{}: symlink of a {:?}", entry.path, entry.kind));
    }
    let Some(target) = entry.target.as_deref() else {
        return Err(format!("{}: a symbolic link without a target", entry.path));
    };
    check_link_target(&entry.path, target).map_err(|e| e.to_string())?;
    let Some((dir, name)) = parent_in_staging(t, &entry.path, true)? else {
        return Err(format!("{}: no parent", entry.path));
    };
    let dest = dir.join(name);
    if fs::symlink_metadata(&dest).is_ok_and(|m| m.file_type().is_dir()) {
        return Err(format!("{}: a directory is in the way", entry.path));
    }
    let mut made = None;
    for n in 0..1000u32 {
        let mut tmp = format!("{name}.tmp-{n}");
        if tmp.len() > crate::MAX_COMPONENT {
            tmp = format!(".postern-tmp-{n}");
        }
        let path = dir.join(&tmp);
        // symlink(2) fails on an existing name, whatever it is: nothing is followed.
        match std::os::unix::fs::symlink(target, &path) {
            Ok(()) => {
                made = Some(path);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fs_err(&path, e)),
        }
    }
    let Some(tmp) = made else {
        return Err(format!("{}: no free temporary name", dest.display()));
    };
    fs::rename(&tmp, &dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        fs_err(&dest, e)
    })
}

fn delete(t: &Target, path: &str) -> Result<(), Refusal> {
    let Some((parent, name)) = parent_in_staging(t, path, false)? else {
        return Ok(());
    };
    let target = parent.join(name);
    let result = match fs::symlink_metadata(&target) {
        Ok(m) if m.file_type().is_dir() => fs::remove_dir(&target),
        // Files, and anything else planted there: unlink never follows.
        Ok(_) => fs::remove_file(&target),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fs_err(&target, e)),
    }
}

/// Staging's manifest with hashes, after everything written into it is on disk: `put`
/// does not fsync each file (one fsync per small message made a large move several times
/// slower), so what a verify vouches for must be durable first. After a power cut, a file
/// whose data never reached the disk keeps its size and mtime but not its content: the
/// sender's next verify sees the hash differ and sends it again.
fn verify(t: &Target) -> Result<Manifest, Refusal> {
    match fs::symlink_metadata(&t.staging) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Manifest::default()),
        _ => {
            sync_fs(&t.staging)?;
            scan(&t.staging, true).map_err(|e| format!("staging: {e}"))
        }
    }
}

/// Writes everything dirty on the file system holding `dir` to disk (`syncfs`): the files
/// `put` left unsynced, their renames and directories.
fn sync_fs(dir: &Path) -> Result<(), Refusal> {
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| fs_err(dir, e))?;
    nix::unistd::syncfs(&handle).map_err(|e| fs_err(dir, io::Error::from(e)))
}

/// Free space a `put` must leave on the file system of the homes: 1 % of it, at most
/// 1 GiB, and 1 % of its inodes, at most 10,000 — so that a move onto a node that lacks the
/// room fails at once with a clear reason instead of filling the disk that every other
/// user's deliveries need. There is no per-account quota check: the move copies what the
/// account already holds on the source (quota is enforced where mail is added).
fn check_space(t: &Target, size: u64) -> Result<(), Refusal> {
    #[allow(clippy::useless_conversion)] // the widths differ between platforms
    fn wide<T: Into<u64>>(n: T) -> u64 {
        n.into()
    }
    // The nearest existing directory: staging, or the home's parents before the first put.
    let Some((at, st)) = t
        .staging
        .ancestors()
        .find_map(|p| nix::sys::statvfs::statvfs(p).ok().map(|st| (p, st)))
    else {
        return Ok(());
    };
    let unit = wide(st.fragment_size());
    let total = wide(st.blocks()).saturating_mul(unit);
    let free = wide(st.blocks_available()).saturating_mul(unit);
    let reserve = (total / 100).min(1 << 30);
    if size.saturating_add(reserve) > free {
        return Err(format!(
            "{}: not enough free space for a file of {size} bytes ({free} bytes free on the \
             file system, {reserve} of them kept for deliveries)",
            at.display()
        ));
    }
    let inodes = wide(st.files());
    let inodes_free = wide(st.files_available());
    if inodes > 0 && inodes_free <= (inodes / 100).min(10_000) {
        return Err(format!(
            "{}: no free inodes ({inodes_free} left, kept for deliveries)",
            at.display()
        ));
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<(), Refusal> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| fs_err(dir, e))
}

fn commit(t: &Target) -> Result<(), Refusal> {
    match fs::symlink_metadata(&t.staging) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => return Err(format!("{}: not a directory", t.staging.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err("nothing staged (no staging directory)".into());
        }
        Err(e) => return Err(fs_err(&t.staging, e)),
    }
    // The files' data (put does not fsync each one), then every directory explicitly.
    sync_fs(&t.staging)?;
    let staged = scan(&t.staging, false).map_err(|e| format!("staging: {e}"))?;
    for e in staged.entries.iter().filter(|e| e.kind == Kind::Dir) {
        fsync_dir(&t.staging.join(&e.path))?;
    }
    fsync_dir(&t.staging)?;
    match fs::symlink_metadata(&t.home) {
        Ok(m) if m.file_type().is_dir() => {
            if !dir_is_empty(&t.home)? {
                return Err(format!(
                    "{}: the home exists and is not empty; not replaced",
                    t.home.display()
                ));
            }
            fs::remove_dir(&t.home).map_err(|e| fs_err(&t.home, e))?;
        }
        Ok(_) => {
            return Err(format!(
                "{}: exists and is not a directory",
                t.home.display()
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fs_err(&t.home, e)),
    }
    fs::rename(&t.staging, &t.home).map_err(|e| fs_err(&t.home, e))?;
    if let Some(parent) = t.home.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

fn system_time(mtime: i64) -> SystemTime {
    if mtime >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(mtime.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(mtime.unsigned_abs())
    }
}

/// Creates the temporary file for `name` in `dir` (`<name>.tmp-<n>`, or `.postern-tmp-<n>`
/// when that would be too long), exclusively and without following a symlink.
fn create_tmp(dir: &Path, name: &str) -> Result<(File, PathBuf), Refusal> {
    for n in 0..1000u32 {
        let mut tmp = format!("{name}.tmp-{n}");
        if tmp.len() > crate::MAX_COMPONENT {
            tmp = format!(".postern-tmp-{n}");
        }
        let path = dir.join(&tmp);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fs_err(&path, e)),
        }
    }
    Err(format!(
        "{}: no free temporary name",
        dir.join(name).display()
    ))
}

/// Reads a put's body (always all of it, so the stream stays in step) and its trailer, and
/// stores it unless something failed. The outer error is the connection's.
fn put<S: Read + Write>(
    conn: &mut BufReader<S>,
    target: Option<&Target>,
    entry: Entry,
) -> Result<Result<(), Refusal>, TransferError> {
    if entry.size > MAX_FILE_SIZE {
        let why = format!("{}: larger than {MAX_FILE_SIZE} bytes", entry.path);
        refuse(conn, &why)?;
        return Err(TransferError::Protocol(why));
    }
    if let Some(t) = target
        && let Err(why) = check_space(t, entry.size)
    {
        // Refused before the body, which is not read: the connection ends.
        refuse(conn, &why)?;
        return Err(TransferError::Protocol(why));
    }
    let mut prepared = with_target(target, |t| {
        if entry.kind != Kind::File {
            return Err(format!("{}: put of a {:?}", entry.path, entry.kind));
        }
        let Some((dir, name)) = parent_in_staging(t, &entry.path, true)? else {
            return Err(format!("{}: no parent", entry.path));
        };
        let (file, tmp) = create_tmp(&dir, name)?;
        Ok((file, tmp, dir.join(name)))
    });
    let mut buf = vec![0u8; CHUNK];
    let mut left = entry.size;
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let n = match conn.read(&mut buf[..want]) {
            Ok(0) => {
                if let Ok((_, tmp, _)) = &prepared {
                    let _ = fs::remove_file(tmp);
                }
                return Err(TransferError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside a file",
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if let Ok((_, tmp, _)) = &prepared {
                    let _ = fs::remove_file(tmp);
                }
                return Err(e.into());
            }
        };
        left -= n as u64;
        if let Ok((file, tmp, _)) = &mut prepared
            && let Err(e) = file.write_all(&buf[..n])
        {
            let why = fs_err(tmp, e);
            let _ = fs::remove_file(&*tmp);
            prepared = Err(why);
        }
    }
    let trailer: Trailer = match read_json(conn) {
        Ok(t) => t,
        Err(e) => {
            if let Ok((_, tmp, _)) = &prepared {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
    };
    let (file, tmp, dest) = match prepared {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    if !trailer.done {
        let _ = fs::remove_file(&tmp);
        return Ok(Err(format!(
            "{}: cancelled by the sender: {}",
            entry.path,
            trailer.error.unwrap_or_default()
        )));
    }
    let Some(t) = target else {
        return Ok(Err("send begin first".into()));
    };
    let stored = (|| -> Result<(), Refusal> {
        let _guard = t.claim.exclusive()?;
        file.set_permissions(fs::Permissions::from_mode(entry.mode & 0o777))
            .map_err(|e| fs_err(&tmp, e))?;
        file.set_modified(system_time(entry.mtime))
            .map_err(|e| fs_err(&tmp, e))?;
        // Not fsynced here: verify and commit sync the file system (see `verify`).
        drop(file);
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.file_type().is_dir()) {
            return Err(format!("{}: a directory is in the way", entry.path));
        }
        fs::rename(&tmp, &dest).map_err(|e| fs_err(&dest, e))
    })();
    if stored.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(stored)
}

/// Reads the optional manifest that follows an abort (streamed: compared entry by entry with
/// the home's own hashed scan, never stored), then removes staging, and the home when it
/// matches.
fn abort<S: Read + Write>(
    conn: &mut BufReader<S>,
    target: Option<&Target>,
    entries: Option<usize>,
) -> Result<Result<(), Refusal>, TransferError> {
    if let Some(n) = entries
        && n > MAX_ENTRIES
    {
        let why = format!("a manifest of {n} entries (at most {MAX_ENTRIES})");
        refuse(conn, &why)?;
        return Err(TransferError::Protocol(why));
    }
    // The home as it is, when a comparison was asked for and it exists.
    let local: Option<Result<Manifest, Refusal>> = match (target, entries) {
        (Some(t), Some(_)) => match fs::symlink_metadata(&t.home) {
            Ok(m) if m.file_type().is_dir() => {
                Some(scan(&t.home, true).map_err(|e| format!("the home: {e}")))
            }
            Ok(_) => Some(Err(format!("{}: not a directory", t.home.display()))),
            Err(_) => None,
        },
        _ => None,
    };
    let mut verdict: Result<(), Refusal> = Ok(());
    if let Some(Err(why)) = &local {
        verdict = Err(why.clone());
    }
    let mine: &[Entry] = match &local {
        Some(Ok(m)) => &m.entries,
        _ => &[],
    };
    let mut previous: Option<String> = None;
    for i in 0..entries.unwrap_or(0) {
        let theirs = read_entry(conn)?;
        if verdict.is_err() {
            continue;
        }
        if previous
            .as_deref()
            .is_some_and(|p| p >= theirs.path.as_str())
        {
            verdict = Err("the manifest is not sorted by path".into());
            continue;
        }
        verdict = match mine.get(i) {
            Some(m) => entry_same(&theirs, m),
            None => Err(format!("{}: not in the home", theirs.path)),
        };
        previous = Some(theirs.path);
    }
    if verdict.is_ok() && mine.len() > entries.unwrap_or(0) {
        verdict = Err(format!(
            "{}: only in the home",
            mine[entries.unwrap_or(0)].path
        ));
    }
    let Some(t) = target else {
        return Ok(Err("send begin first".into()));
    };
    Ok(t.claim
        .exclusive()
        .and_then(|_guard| remove_after_abort(t, local.is_some(), verdict)))
}

/// Removes staging, then the home when one was compared and `verdict` says it matches.
fn remove_after_abort(
    t: &Target,
    compared: bool,
    verdict: Result<(), Refusal>,
) -> Result<(), Refusal> {
    match fs::symlink_metadata(&t.staging) {
        Ok(m) if m.file_type().is_dir() => fs::remove_dir_all(&t.staging),
        Ok(_) => fs::remove_file(&t.staging),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| fs_err(&t.staging, e))?;
    if !compared {
        return Ok(());
    }
    match verdict {
        Ok(()) => {
            fs::remove_dir_all(&t.home).map_err(|e| fs_err(&t.home, e))?;
            if let Some(parent) = t.home.parent() {
                fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(why) => Err(format!(
            "{}: the home differs from the source ({why}); left in place",
            t.home.display()
        )),
    }
}
