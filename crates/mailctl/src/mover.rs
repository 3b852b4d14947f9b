//! `mailctl user move ADDRESS --to HOST` and `mailctl user move ADDRESS --abort`: moving a
//! mailbox between cluster nodes without losing or duplicating mail (issue 14 §3).
//!
//! Run on the source node (the one whose `[proxy] self` the account's `host` names). The
//! database is the only record of a move, and every step can be repeated, so running the
//! same command again after any interruption carries on where it stopped:
//!
//! | host | moving_to | meaning |
//! |---|---|---|
//! | S | '' | normal, lives on S |
//! | S | D | moving S → D: every node answers temporary failure; copy in progress, or committed on D but not switched |
//! | D | D | switched, waiting out the caches before release: still temporary failure everywhere |
//! | D | '' | done, lives on D |
//!
//! Steps: mark (`moving_to = D`, wait out `[authd] cache_ttl_secs` so that no node still
//! answers from before), kick the user's IMAP/POP3/ManageSieve sessions on this node, copy
//! the home to D's imapd (`postern-transfer`: passes until one finds nothing changed, then a
//! hashed comparison, then D renames its staging directory into place), switch (`host = D`,
//! still moving; the old home renamed aside to `<home>.moved-<time>`), wait out the caches
//! again, release (`moving_to = ''`). `--abort` undoes a move that was not switched yet.
//!
//! The decisions (which step to take from the state, what to send in a pass) are plain
//! functions, tested without a network; the e2e test `cluster_move` runs the whole thing.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use postern_config::Config;
use postern_directory::{Directory, MoveState};
use postern_transfer::{Action, Client, Entry, Kind, Manifest, Status, TransferError};
use serde_json::json;

/// Copy passes before giving up on a mailbox that keeps changing.
pub(crate) const MAX_PASSES: usize = 20;
/// Copy-and-verify rounds before giving up on a copy that does not verify.
pub(crate) const MAX_VERIFY_ROUNDS: usize = 3;
/// Longest wait for one answer from the destination (hashing a big home takes a while).
const IO_TIMEOUT: Duration = Duration::from_secs(600);

/// What `mailctl user move ADDRESS --to D` does, from the account's state in the database as
/// this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Lives here (on `from`), not moving: mark it, then copy, switch, release.
    Mark { from: String },
    /// Lives here, already moving to D (an interrupted run): copy (what D's staging lacks),
    /// switch, release.
    Resume { from: String },
    /// Switched to D already, still marked: wait out the caches and release.
    Release,
    /// Lives on D and is not moving: nothing to do.
    AlreadyThere,
}

/// Decides the step to take for a move of the account in `state` to `to`, run on the node
/// whose `[proxy]` config is `proxy`; `Err` says why it cannot be done here (and what to do).
pub(crate) fn plan(
    proxy: &postern_config::Proxy,
    state: &MoveState,
    to: &str,
) -> Result<Plan, String> {
    let to = to.trim().to_ascii_lowercase();
    let (address, host, moving) = (&state.address, &state.host, &state.moving_to);
    if to.is_empty() {
        return Err("--to needs the host name (or address) of the destination node".into());
    }
    if *host == to {
        return match moving.as_str() {
            "" => Ok(Plan::AlreadyThere),
            m if m == to => Ok(Plan::Release),
            m => Err(format!(
                "{address} lives on {to} and is being moved to {m}: finish that move \
                 (mailctl user move {address} --to {m}) on {to}, or abort it there (--abort)"
            )),
        };
    }
    if proxy.remote_host(&to).is_none() {
        return Err(format!(
            "{to} is this node ([proxy] self = {:?}): run the move on the node {address} lives on \
             ({}), with --to naming this one",
            proxy.self_name,
            shown_host(host)
        ));
    }
    if let Some(h) = proxy.remote_host(host) {
        return Err(format!(
            "{address} lives on {h}, not on this node ([proxy] self = {:?}): run \
             `mailctl user move` on {h}, where its home is",
            proxy.self_name
        ));
    }
    match moving.as_str() {
        "" => Ok(Plan::Mark { from: host.clone() }),
        m if m == to => Ok(Plan::Resume { from: host.clone() }),
        m => Err(format!(
            "{address} is being moved to {m}: finish that move (mailctl user move {address} \
             --to {m}) or abort it first (mailctl user move {address} --abort)"
        )),
    }
}

/// What `--abort` does: `Ok(Some((from, to)))` cancels a move that was not switched,
/// `Ok(None)` when there is nothing to abort, `Err` when it cannot be aborted (here).
pub(crate) fn plan_abort(
    proxy: &postern_config::Proxy,
    state: &MoveState,
) -> Result<Option<(String, String)>, String> {
    let (address, host, moving) = (&state.address, &state.host, &state.moving_to);
    if moving.is_empty() {
        return Ok(None);
    }
    if host == moving {
        return Err(format!(
            "the move of {address} to {moving} was switched already: it lives on {moving} now. \
             Finish it (mailctl user move {address} --to {moving}) and move it back instead"
        ));
    }
    if let Some(h) = proxy.remote_host(host) {
        return Err(format!(
            "{address} lives on {h}: run `mailctl user move {address} --abort` on {h}, where \
             its home is"
        ));
    }
    Ok(Some((host.clone(), moving.clone())))
}

fn shown_host(h: &str) -> &str {
    if h.is_empty() { "host \"\"" } else { h }
}

/// `mailctl user move …`.
pub(crate) async fn run(
    config: &Config,
    dir: &Directory,
    address: &str,
    to: Option<&str>,
    abort: bool,
    json: bool,
) -> anyhow::Result<()> {
    let state = dir.move_state(address).await?;
    let address = state.address.clone();
    let _lock = lock(config, &address)?;
    let home = home_of(config, &address)?;
    if abort {
        return abort_move(config, dir, &state, &home, json).await;
    }
    let to = to
        .map(|t| t.trim().to_ascii_lowercase())
        .ok_or_else(|| anyhow!("name the destination with --to HOST (or give --abort)"))?;
    let started = Instant::now();
    let wait = config.authd.cache_ttl_secs.duration() + Duration::from_secs(1);
    let plan = plan(&config.proxy, &state, &to).map_err(|e| anyhow!(e))?;
    let mut summary = Summary::default();
    let from = match plan {
        Plan::AlreadyThere => {
            let msg = format!("{address} lives on {to} already; nothing to do");
            return report(
                json,
                &msg,
                &json!({"address": address, "to": to, "moved": false}),
            );
        }
        Plan::Release => None,
        Plan::Mark { from } => {
            preflight(config, &address, &to, &home).await?;
            if !dir.mark_moving(&address, &from, &to).await? {
                let now = dir.move_state(&address).await?;
                bail!(
                    "the account changed while this command started (another `mailctl user move`?): \
                     it now lives on {} and is moving to {:?}; run the command again",
                    shown_host(&now.host),
                    now.moving_to
                );
            }
            progress(&format!(
                "{address}: marked as moving to {to}; deliveries and logins wait (temporary failures)"
            ));
            Some(from)
        }
        Plan::Resume { from } => {
            progress(&format!("{address}: resuming the move to {to}"));
            Some(from)
        }
    };
    if let Some(from) = from {
        progress(&format!(
            "waiting {} s for every node's cached answers ([authd] cache_ttl_secs) to expire",
            wait.as_secs()
        ));
        tokio::time::sleep(wait).await;
        let copy = {
            let config = config.clone();
            let (a, t, h) = (address.clone(), to.clone(), home.clone());
            tokio::task::spawn_blocking(move || copy_home(&config, &a, &t, &h))
                .await
                .context("the copy thread failed")?
                .with_context(|| {
                    format!(
                        "the copy to {to} stopped; {address} stays marked as moving (its mail \
                         waits in the queues, its logins are refused for now): run the same \
                         command again to resume, or `mailctl user move {address} --abort`"
                    )
                })?
        };
        summary.copy = copy;
        if !dir.switch_moving_host(&address, &from, &to).await? {
            let now = dir.move_state(&address).await?;
            bail!(
                "the account changed during the copy: it lives on {} and is moving to {:?}; \
                 nothing was switched (run the command again)",
                shown_host(&now.host),
                now.moving_to
            );
        }
        progress(&format!(
            "{address}: switched to {to} (still marked as moving)"
        ));
    } else {
        progress(&format!("{address}: switched to {to} already; releasing"));
    }
    // The old home is kept under another name (never on the destination itself).
    if config.proxy.remote_host(&to).is_some() {
        summary.old_home = set_aside(&home)?;
        if let Some(p) = &summary.old_home {
            progress(&format!("the old home is kept as {}", p.display()));
        }
    }
    progress(&format!(
        "waiting {} s for every node's cached answers to expire before the release",
        wait.as_secs()
    ));
    tokio::time::sleep(wait).await;
    // Anything written to the old home after the copy (only a delivery that began before
    // the mark and lasted past both waits could) is named, never silently left behind.
    let late = match (&summary.old_home, &summary.copy.copied) {
        (Some(aside), Some(copied)) => match scan_home(aside, false) {
            Ok(now) => late_changes(&now, copied),
            Err(e) => {
                eprintln!(
                    "warning: the old home {} could not be compared with the copy: {e:#}",
                    aside.display()
                );
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    if !late.is_empty() {
        eprintln!(
            "warning: {} entries of the old home {} changed after the copy (a delivery or \
             session that began before the move); they are not on {to}: look at them there:",
            late.len(),
            summary
                .old_home
                .as_deref()
                .map_or_else(String::new, |p| p.display().to_string())
        );
        for p in late.iter().take(50) {
            eprintln!("  {p}");
        }
    }
    if !dir.release_move(&address, &to).await? {
        let now = dir.move_state(&address).await?;
        bail!(
            "the account changed before its release: it lives on {} and is moving to {:?}",
            shown_host(&now.host),
            now.moving_to
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let c = &summary.copy;
    let msg = format!(
        "{address} moved to {to}: {} files, {} bytes sent in {} passes, {secs:.1} s{}{}",
        c.files,
        c.bytes,
        c.passes,
        summary
            .old_home
            .as_ref()
            .map(|p| format!("; the old home is kept as {}", p.display()))
            .unwrap_or_default(),
        if late.is_empty() {
            String::new()
        } else {
            format!(
                "; WARNING: {} entries changed there after the copy (see above)",
                late.len()
            )
        }
    );
    report(
        json,
        &msg,
        &json!({"address": address, "to": to, "moved": true, "files": c.files, "bytes": c.bytes,
                "passes": c.passes, "seconds": secs, "late_changes": late,
                "old_home": summary.old_home.as_ref().map(|p| p.display().to_string())}),
    )
}

/// Before anything is marked: the home can be sent (only files, directories and symbolic
/// links that stay inside it, like ManageSieve's `.dovecot.sieve` → `sieve/NAME.sieve`) and
/// the destination answers and shares the secret. A mistake (a typo in `--to`, a receiver
/// not configured, a link pointing outside the home) then fails here, with nobody's mail
/// waiting.
async fn preflight(config: &Config, address: &str, to: &str, home: &Path) -> anyhow::Result<()> {
    let config = config.clone();
    let (address, to, home) = (address.to_owned(), to.to_owned(), home.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let m = scan_home(&home, false)?;
        progress(&format!(
            "{address}: {} entries in {}; checking the receiver on {to}",
            m.entries.len(),
            home.display()
        ));
        connect(&config, &to)?.get_mut().close();
        Ok(())
    })
    .await
    .context("the check thread failed")?
    .context("nothing was changed")
}

async fn abort_move(
    config: &Config,
    dir: &Directory,
    state: &MoveState,
    home: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let address = &state.address;
    let Some((from, to)) = plan_abort(&config.proxy, state).map_err(|e| anyhow!(e))? else {
        let msg = format!("{address} is not being moved; nothing to abort");
        return report(json, &msg, &json!({"address": address, "aborted": false}));
    };
    let cleaned = {
        let config = config.clone();
        let (address, to, home) = (address.clone(), to.clone(), home.to_owned());
        tokio::task::spawn_blocking(move || abort_destination(&config, &address, &to, &home))
            .await
            .context("the abort thread failed")?
    };
    if let Err(e) = &cleaned {
        // The source home is intact: serving it again loses nothing. What the destination
        // holds (a staging directory, or a committed copy never switched to) stays there.
        eprintln!(
            "warning: the destination {to} could not clean up ({e:#}); its staging directory \
             (or an unswitched copy) for {address} stays there: remove it on {to} by hand"
        );
    }
    if !dir.cancel_move(address, &from, &to).await? {
        let now = dir.move_state(address).await?;
        bail!(
            "the account changed meanwhile: it lives on {} and is moving to {:?}; nothing aborted",
            shown_host(&now.host),
            now.moving_to
        );
    }
    let msg = format!(
        "the move of {address} to {to} is aborted; it is served on this node again{}",
        if cleaned.is_ok() {
            format!(" ({to} removed its copy)")
        } else {
            String::new()
        }
    );
    report(
        json,
        &msg,
        &json!({"address": address, "to": to, "aborted": true, "destination_cleaned": cleaned.is_ok()}),
    )
}

/// Asks the destination to remove what it holds of an unswitched move: its staging
/// directory, and a committed home only when it equals this node's home byte for byte.
fn abort_destination(config: &Config, address: &str, to: &str, home: &Path) -> anyhow::Result<()> {
    let mut client = connect(config, to)?;
    let status = client.begin(address)?;
    match status {
        Status::HomeExists(_) => {
            let source = scan_home(home, true)?;
            client.abort(Some(&source))?;
        }
        Status::Fresh | Status::Staging(_) => client.abort(None)?,
    }
    client.get_mut().close();
    Ok(())
}

#[derive(Debug, Default)]
struct Summary {
    copy: CopyStats,
    old_home: Option<PathBuf>,
}

/// What a copy sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CopyStats {
    /// Passes that sent something.
    pub(crate) passes: usize,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    /// The source home as it was verified equal to the destination's (with hashes).
    pub(crate) copied: Option<Manifest>,
}

fn report(json: bool, text: &str, value: &serde_json::Value) -> anyhow::Result<()> {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
    Ok(())
}

fn progress(line: &str) {
    eprintln!("mailctl user move: {line}");
}

/// One `mailctl user move` per account at a time on this node (a lock file in the state
/// directory, held until the command ends).
fn lock(config: &Config, address: &str) -> anyhow::Result<std::fs::File> {
    let path = config.state_dir().join(lock_name(address));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("another `mailctl user move {address}` is running on this node")
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).context(format!("{}", path.display())),
    }
}

/// The lock file's name for `address`: its bytes in hex (no path tricks), shortened with a
/// hash of the whole when that would pass the file-name limit (an address may be 254 bytes).
fn lock_name(address: &str) -> String {
    use std::hash::{Hash, Hasher};
    let hex: String = address.bytes().map(|b| format!("{b:02x}")).collect();
    if hex.len() <= 200 {
        return format!("move-{hex}.lock");
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    address.hash(&mut h);
    format!("move-{}-{:016x}.lock", &hex[..160], h.finish())
}

/// The account's home on this node (`[authd.userdb] home`); its Maildir must be inside it
/// (the whole home is what moves).
fn home_of(config: &Config, address: &str) -> anyhow::Result<PathBuf> {
    let home = PathBuf::from(postern_config::expand_template(
        &config.home_template(),
        address,
    ));
    let sane = home.is_absolute()
        && home
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir));
    if !sane {
        bail!(
            "the home of {address} ({}) is not an absolute path without '..'",
            home.display()
        );
    }
    let mail = postern_config::expand_template(&config.mail_template(), address);
    let loc = mail.strip_prefix("maildir:").unwrap_or(&mail);
    let loc = loc.split(':').next().unwrap_or("");
    let inside = loc == "~" || loc.starts_with("~/") || Path::new(loc).starts_with(&home);
    if !inside {
        bail!(
            "the Maildir of {address} ({loc}) is not inside its home ({}): `mailctl user move` \
             copies the home, so it cannot move this layout",
            home.display()
        );
    }
    Ok(home)
}

/// Renames the source home aside, `<home>.moved-<YYYYmmddTHHMMSSZ>`; `None` when there is
/// no home (nothing was ever stored, or an earlier run set it aside already).
fn set_aside(home: &Path) -> anyhow::Result<Option<PathBuf>> {
    match std::fs::symlink_metadata(home) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(format!("{}", home.display())),
        Ok(_) => {}
    }
    let stamp = postern_control::format_time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)),
    )
    .replace(['-', ':'], "")
    .replace(' ', "T");
    let mut name = home.as_os_str().to_owned();
    name.push(format!(".moved-{stamp}Z"));
    let aside = PathBuf::from(name);
    if aside.exists() {
        bail!("{} exists already", aside.display());
    }
    std::fs::rename(home, &aside).with_context(|| format!("renaming {} aside", home.display()))?;
    if let Some(parent) = home.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(Some(aside))
}

/// The home's manifest; a home that does not exist (no mail ever stored) is empty.
fn scan_home(home: &Path, hashes: bool) -> anyhow::Result<Manifest> {
    if !home.exists() {
        return Ok(Manifest::default());
    }
    postern_transfer::scan(home, hashes).with_context(|| format!("reading {}", home.display()))
}

/// Kicks the user's sessions on this node's imapd. No imapd (no socket, or nobody listening
/// on it) holds no session: a warning. Any other failure stops the move, since a session
/// left open could still change the home.
fn kick(config: &Config, address: &str) -> anyhow::Result<()> {
    let socket = postern_control::imapd::socket_path(config);
    match postern_control::imapd::kick(&socket, address) {
        Ok(n) => {
            if n > 0 {
                progress(&format!("closed {n} session(s) of {address} on this node"));
            }
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            eprintln!(
                "warning: imapd's control socket {} does not answer ({e}); assuming imapd is not running here",
                socket.display()
            );
            Ok(())
        }
        Err(e) => Err(e).context(format!(
            "closing {address}'s sessions through {}",
            socket.display()
        )),
    }
}

/// The connection to the destination's move receiver: plain TCP, or TLS per `[proxy] tls`.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// Ends the connection politely (a TLS close_notify, then the TCP FIN), so that the
    /// receiver sees a clean end rather than a truncation.
    fn close(&mut self) {
        let tcp = match self {
            Self::Plain(s) => s,
            Self::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
                &mut s.sock
            }
        };
        let _ = tcp.shutdown(std::net::Shutdown::Write);
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// Connects to `to`'s move receiver (`[proxy] move_port`) and authenticates both ways with
/// the shared secret (`[proxy] move_secret_file`).
fn connect(config: &Config, to: &str) -> anyhow::Result<Client<Stream>> {
    let p = &config.proxy;
    if p.move_secret_file.as_os_str().is_empty() {
        bail!(
            "[proxy] move_secret_file is not set: the nodes need a shared secret to move mailboxes"
        );
    }
    let secret = postern_transfer::read_secret(&config.resolve(&p.move_secret_file))?;
    let port = p.move_port;
    let timeout = p.connect_timeout_secs.duration();
    let addrs: Vec<_> = (to, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {to}"))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        anyhow!(
            "cannot connect to {to} port {port} ([proxy] move_port): {}",
            last.map_or_else(|| "no address".to_owned(), |e| e.to_string())
        )
    })?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let stream = match postern_smtp_client::tls::hop_connector(config).map_err(|e| anyhow!(e))? {
        None => Stream::Plain(tcp),
        Some(connector) => {
            let name = postern_smtp_client::tls::server_name(to)
                .ok_or_else(|| anyhow!("{to} is not usable as a TLS server name"))?;
            let conn = rustls::ClientConnection::new(Arc::clone(connector.config()), name)
                .context("TLS setup")?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    Client::handshake(stream, &secret).with_context(|| format!("the move receiver on {to}"))
}

/// Copies `home` to `to` and commits it there (step 3-6). Returns what was sent.
fn copy_home(config: &Config, address: &str, to: &str, home: &Path) -> anyhow::Result<CopyStats> {
    kick(config, address)?;
    let mut client = connect(config, to)?;
    let status = client.begin(address)?;
    match &status {
        Status::Fresh => progress(&format!("{to} holds nothing of {address} yet")),
        Status::Staging(m) => progress(&format!(
            "{to} holds a partial copy of {} entries from an earlier attempt: sending only what differs",
            m.entries.len()
        )),
        Status::HomeExists(_) => progress(&format!(
            "{to} holds a home for {address} already: comparing it with this one"
        )),
    }
    let mut kicks = || kick(config, address);
    let mut sender = Sender {
        client: &mut client,
        home,
    };
    let stats = sync_home(&mut sender, status, &mut kicks)?;
    client.get_mut().close();
    Ok(stats)
}

/// What the copy loop needs from the connection and the source home (a trait so that the
/// loop is tested without a network).
pub(crate) trait Destination {
    fn scan(&mut self, hashes: bool) -> anyhow::Result<Manifest>;
    fn mkdir(&mut self, e: &Entry) -> anyhow::Result<()>;
    /// `Ok(false)`: the source file vanished or changed while it was sent (sent again in
    /// the next pass).
    fn put(&mut self, e: &Entry) -> anyhow::Result<bool>;
    fn delete(&mut self, path: &str) -> anyhow::Result<()>;
    fn verify(&mut self) -> anyhow::Result<Manifest>;
    fn commit(&mut self) -> anyhow::Result<()>;
}

struct Sender<'a, S: Read + Write> {
    client: &'a mut Client<S>,
    home: &'a Path,
}

impl<S: Read + Write> Destination for Sender<'_, S> {
    fn scan(&mut self, hashes: bool) -> anyhow::Result<Manifest> {
        scan_home(self.home, hashes)
    }
    fn mkdir(&mut self, e: &Entry) -> anyhow::Result<()> {
        Ok(self.client.mkdir(e)?)
    }
    fn put(&mut self, e: &Entry) -> anyhow::Result<bool> {
        if e.kind == Kind::Symlink {
            // The link as scanned (never followed); a later change shows in the next pass.
            self.client
                .symlink(e)
                .with_context(|| format!("sending the link {}", e.path))?;
            return Ok(true);
        }
        let path = self.home.join(&e.path);
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).context(format!("{}", path.display())),
        };
        match self.client.put(e, &mut f) {
            Ok(()) => Ok(true),
            Err(TransferError::Changed(_)) => Ok(false),
            Err(err) => Err(err).context(format!("sending {}", e.path)),
        }
    }
    fn delete(&mut self, path: &str) -> anyhow::Result<()> {
        Ok(self.client.delete(path)?)
    }
    fn verify(&mut self) -> anyhow::Result<Manifest> {
        Ok(self.client.verify()?)
    }
    fn commit(&mut self) -> anyhow::Result<()> {
        Ok(self.client.commit()?)
    }
}

/// The copy (steps 4-6): passes until one sends nothing (at most [`MAX_PASSES`]), then the
/// hashed comparison; a difference starts the passes again from what the destination
/// really holds (at most [`MAX_VERIFY_ROUNDS`] rounds); equal → commit. A destination that
/// already has a home equal to the source (committed by an interrupted run) needs nothing;
/// one that differs is never overwritten. `kick` runs before every pass after the first.
pub(crate) fn sync_home(
    dest: &mut dyn Destination,
    status: Status,
    kick: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<CopyStats> {
    let mut stats = CopyStats::default();
    let mut known: BTreeMap<String, Entry> = match status {
        Status::Fresh => BTreeMap::new(),
        Status::Staging(m) => by_path(m),
        Status::HomeExists(there) => {
            let here = dest.scan(true)?;
            Manifest::same_content(&here, &there).map_err(|d| {
                anyhow!(
                    "the destination has a home for this account already and it differs from \
                     this node's ({d}); it is not overwritten: look at it there and remove it \
                     if it is stale, then run the command again"
                )
            })?;
            progress("the destination's home equals this one: the copy was committed already");
            stats.copied = Some(here);
            return Ok(stats);
        }
    };
    let mut first = true;
    for round in 1..=MAX_VERIFY_ROUNDS {
        let mut settled = false;
        for _ in 0..MAX_PASSES {
            if !first {
                kick()?;
            }
            first = false;
            let source = dest.scan(false)?;
            let have = Manifest {
                entries: known.values().cloned().collect(),
            };
            let actions = Manifest::diff(&source, &have);
            if actions.is_empty() {
                settled = true;
                break;
            }
            stats.passes += 1;
            let (mut files, mut bytes) = (0u64, 0u64);
            for a in actions {
                match a {
                    Action::Mkdir(e) => {
                        dest.mkdir(&e)?;
                        known.insert(e.path.clone(), e);
                    }
                    Action::Put(e) => {
                        if dest.put(&e)? {
                            files += 1;
                            bytes += e.size;
                            known.insert(e.path.clone(), e);
                        } else {
                            known.remove(&e.path);
                        }
                    }
                    Action::Delete(p) => {
                        dest.delete(&p)?;
                        known.remove(&p);
                    }
                }
            }
            stats.files += files;
            stats.bytes += bytes;
            progress(&format!(
                "pass {}: {files} files, {bytes} bytes sent",
                stats.passes
            ));
        }
        if !settled {
            bail!(
                "the mailbox keeps changing: still changes after {MAX_PASSES} passes (a session or \
                 delivery still writing?); the account stays marked as moving: run the command \
                 again later, or abort with --abort"
            );
        }
        let here = dest.scan(true)?;
        let there = dest.verify()?;
        match Manifest::same_content(&here, &there) {
            Ok(()) => {
                dest.commit()?;
                progress(&format!(
                    "verified {} entries (SHA-256) and committed on the destination",
                    here.entries.len()
                ));
                stats.copied = Some(here);
                return Ok(stats);
            }
            Err(d) => {
                progress(&format!(
                    "verify round {round}: the copy differs ({d}); copying again"
                ));
                known = after_verify(&here, there);
            }
        }
    }
    bail!(
        "the copy did not verify after {MAX_VERIFY_ROUNDS} rounds; the account stays marked as \
         moving: run the command again, or abort with --abort"
    )
}

/// What the destination holds after a verify that differed, as the next pass compares it:
/// entries equal to the source's (content included) are kept; entries whose content or
/// mode differs are dropped, so that they are sent again; entries the source does not have
/// are kept, so that they are deleted.
fn after_verify(here: &Manifest, there: Manifest) -> BTreeMap<String, Entry> {
    let here: BTreeMap<&str, &Entry> = here.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = BTreeMap::new();
    for mut e in there.entries {
        let keep = match here.get(e.path.as_str()) {
            None => true,
            Some(h) => {
                h.kind == e.kind && h.mode == e.mode && h.size == e.size && h.sha256 == e.sha256
            }
        };
        if keep {
            e.sha256 = None;
            out.insert(e.path.clone(), e);
        }
    }
    out
}

/// The paths of `now` (the old home, set aside) that are new or differ (size, mtime, mode)
/// from what was `copied`, or are gone from it.
pub(crate) fn late_changes(now: &Manifest, copied: &Manifest) -> Vec<String> {
    let copied = Manifest {
        entries: copied
            .entries
            .iter()
            .map(|e| Entry {
                sha256: None,
                ..e.clone()
            })
            .collect(),
    };
    Manifest::diff(now, &copied)
        .into_iter()
        .map(|a| match a {
            Action::Mkdir(e) | Action::Put(e) => e.path,
            Action::Delete(p) => p,
        })
        .collect()
}

fn by_path(m: Manifest) -> BTreeMap<String, Entry> {
    m.entries.into_iter().map(|e| (e.path.clone(), e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_transfer::Kind;

    fn proxy(self_name: &str) -> postern_config::Proxy {
        postern_config::Proxy {
            self_name: self_name.into(),
            ..Default::default()
        }
    }

    fn st(host: &str, moving: &str) -> MoveState {
        MoveState {
            address: "bob@example.org".into(),
            host: host.into(),
            moving_to: moving.into(),
        }
    }

    #[test]
    fn the_state_table_decides_the_step() {
        let b1 = proxy("b1");
        let from = |f: &str| f.to_owned();
        assert_eq!(
            plan(&b1, &st("b1", ""), "B2"),
            Ok(Plan::Mark { from: from("b1") })
        );
        assert_eq!(
            plan(&b1, &st("b1", "b2"), "b2"),
            Ok(Plan::Resume { from: from("b1") })
        );
        assert_eq!(plan(&b1, &st("b2", "b2"), "b2"), Ok(Plan::Release));
        assert_eq!(plan(&b1, &st("b2", ""), "b2"), Ok(Plan::AlreadyThere));
        // An empty host is "this node" on every node.
        assert_eq!(
            plan(&b1, &st("", ""), "b2"),
            Ok(Plan::Mark { from: from("") })
        );
        assert_eq!(
            plan(&proxy(""), &st("", "b2"), "b2"),
            Ok(Plan::Resume { from: from("") })
        );
        // Refusals name what to do.
        let e = plan(&b1, &st("b3", ""), "b2").unwrap_err();
        assert!(e.contains("lives on b3") && e.contains("on b3"), "{e}");
        let e = plan(&b1, &st("b1", "b3"), "b2").unwrap_err();
        assert!(e.contains("--abort") && e.contains("b3"), "{e}");
        assert_eq!(plan(&b1, &st("b1", ""), "B1"), Ok(Plan::AlreadyThere));
        let e = plan(&b1, &st("", ""), "b1").unwrap_err();
        assert!(e.contains("this node"), "{e}");
        let e = plan(&b1, &st("b2", "b3"), "b2").unwrap_err();
        assert!(e.contains("being moved to b3"), "{e}");
        assert!(plan(&b1, &st("b1", ""), " ").is_err());
    }

    #[test]
    fn abort_only_before_the_switch_and_only_on_the_source() {
        let b1 = proxy("b1");
        assert_eq!(
            plan_abort(&b1, &st("b1", "b2")),
            Ok(Some(("b1".into(), "b2".into())))
        );
        assert_eq!(plan_abort(&b1, &st("b1", "")), Ok(None));
        assert_eq!(plan_abort(&b1, &st("b2", "")), Ok(None));
        let e = plan_abort(&b1, &st("b2", "b2")).unwrap_err();
        assert!(
            e.contains("switched already") && e.contains("move it back"),
            "{e}"
        );
        let e = plan_abort(&proxy("b2"), &st("b2", "b2")).unwrap_err();
        assert!(e.contains("switched already"), "{e}");
        let e = plan_abort(&proxy("b3"), &st("b1", "b2")).unwrap_err();
        assert!(e.contains("on b1"), "{e}");
    }

    fn file(path: &str, size: u64, mtime: i64, body: &str) -> (Entry, String) {
        (
            Entry {
                path: path.into(),
                kind: Kind::File,
                size,
                mtime,
                mode: 0o600,
                sha256: None,
                target: None,
            },
            body.into(),
        )
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Dir,
            size: 0,
            mtime: 1,
            mode: 0o700,
            sha256: None,
            target: None,
        }
    }

    /// A source home and a destination in memory. `changes` are applied to the source
    /// before each scan (one per pass): a mailbox still being written to.
    #[derive(Default)]
    struct Fake {
        source: BTreeMap<String, (Entry, String)>,
        staged: BTreeMap<String, (Entry, String)>,
        changes: Vec<Vec<(Entry, String)>>,
        scans: usize,
        puts: Vec<String>,
        /// Paths whose put reports "changed while sent" once.
        flaky: Vec<String>,
        /// Corrupts this staged file once (verify must catch it).
        corrupt: Option<String>,
        committed: bool,
    }

    fn manifest(m: &BTreeMap<String, (Entry, String)>, hashes: bool) -> Manifest {
        Manifest {
            entries: m
                .values()
                .map(|(e, body)| Entry {
                    sha256: (hashes && e.kind == Kind::File).then(|| format!("h:{body}")),
                    ..e.clone()
                })
                .collect(),
        }
    }

    impl Destination for Fake {
        fn scan(&mut self, hashes: bool) -> anyhow::Result<Manifest> {
            if !hashes && self.scans < self.changes.len() {
                for (e, b) in self.changes[self.scans].clone() {
                    self.source.insert(e.path.clone(), (e, b));
                }
            }
            if !hashes {
                self.scans += 1;
            }
            Ok(manifest(&self.source, hashes))
        }
        fn mkdir(&mut self, e: &Entry) -> anyhow::Result<()> {
            self.staged
                .insert(e.path.clone(), (e.clone(), String::new()));
            Ok(())
        }
        fn put(&mut self, e: &Entry) -> anyhow::Result<bool> {
            self.puts.push(e.path.clone());
            if let Some(i) = self.flaky.iter().position(|p| *p == e.path) {
                self.flaky.remove(i);
                return Ok(false);
            }
            let mut body = self.source[&e.path].1.clone();
            if self.corrupt.as_deref() == Some(e.path.as_str()) {
                self.corrupt = None;
                body.push('!');
            }
            self.staged.insert(e.path.clone(), (e.clone(), body));
            Ok(true)
        }
        fn delete(&mut self, path: &str) -> anyhow::Result<()> {
            self.staged.remove(path);
            Ok(())
        }
        fn verify(&mut self) -> anyhow::Result<Manifest> {
            Ok(manifest(&self.staged, true))
        }
        fn commit(&mut self) -> anyhow::Result<()> {
            self.committed = true;
            Ok(())
        }
    }

    fn home() -> BTreeMap<String, (Entry, String)> {
        [
            (dir("Maildir"), String::new()),
            (dir("Maildir/cur"), String::new()),
            file("Maildir/cur/1:2,S", 3, 10, "one"),
            file("Maildir/dovecot-uidlist", 5, 10, "uids1"),
            file("sieve/x.sieve", 4, 10, "keep"),
        ]
        .into_iter()
        .map(|(e, b)| (e.path.clone(), (e, b)))
        .collect()
    }

    fn no_kick() -> impl FnMut() -> anyhow::Result<()> {
        || Ok(())
    }

    #[test]
    fn passes_repeat_until_nothing_changes_then_verify_and_commit() {
        let mut f = Fake {
            source: home(),
            // A delivery lands during pass 1 (seen by the 2nd scan), the uidlist grows.
            changes: vec![
                vec![],
                vec![
                    file("Maildir/cur/2:2,", 3, 11, "two"),
                    file("Maildir/dovecot-uidlist", 9, 11, "uids1+2"),
                ],
            ],
            ..Default::default()
        };
        let mut kicks = 0;
        let mut kick = || {
            kicks += 1;
            Ok(())
        };
        let stats = sync_home(&mut f, Status::Fresh, &mut kick).unwrap();
        assert!(f.committed);
        assert_eq!(stats.passes, 2);
        assert_eq!(stats.files, 3 + 2);
        assert_eq!(stats.bytes, 3 + 5 + 4 + 3 + 9);
        // Kicked before every pass after the first (pass 2 and the empty pass 3).
        assert_eq!(kicks, 2);
        assert_eq!(manifest(&f.staged, true), manifest(&f.source, true));
    }

    #[test]
    fn a_staging_directory_from_before_is_reused() {
        let mut f = Fake {
            source: home(),
            ..Default::default()
        };
        // The earlier attempt copied everything but the uidlist (and left a stray file).
        let mut staged = home();
        staged.remove("Maildir/dovecot-uidlist");
        let (stray, body) = file("Maildir/cur/9:2,", 1, 5, "x");
        staged.insert(stray.path.clone(), (stray, body));
        f.staged = staged.clone();
        let status = Status::Staging(manifest(&staged, false));
        let stats = sync_home(&mut f, status, &mut no_kick()).unwrap();
        assert_eq!(f.puts, ["Maildir/dovecot-uidlist"]);
        assert_eq!(stats.files, 1);
        assert!(!f.staged.contains_key("Maildir/cur/9:2,"), "stray removed");
        assert!(f.committed);
    }

    #[test]
    fn a_file_that_changed_while_sent_is_sent_again_and_verify_catches_the_rest() {
        let mut f = Fake {
            source: home(),
            flaky: vec!["Maildir/dovecot-uidlist".into()],
            corrupt: Some("sieve/x.sieve".into()),
            ..Default::default()
        };
        sync_home(&mut f, Status::Fresh, &mut no_kick()).unwrap();
        assert!(f.committed);
        assert_eq!(manifest(&f.staged, true), manifest(&f.source, true));
        // The uidlist twice (changed while sent), the corrupted script twice (verify).
        assert_eq!(
            f.puts
                .iter()
                .filter(|p| *p == "Maildir/dovecot-uidlist")
                .count(),
            2
        );
        assert_eq!(f.puts.iter().filter(|p| *p == "sieve/x.sieve").count(), 2);
    }

    #[test]
    fn a_mailbox_that_never_settles_fails_without_committing() {
        let changes = (0..=MAX_PASSES as i64)
            .map(|k| vec![file("Maildir/dovecot-uidlist", 5, 100 + k, "uids1")])
            .collect();
        let mut f = Fake {
            source: home(),
            changes,
            ..Default::default()
        };
        let e = sync_home(&mut f, Status::Fresh, &mut no_kick()).unwrap_err();
        assert!(e.to_string().contains("keeps changing"), "{e}");
        assert!(!f.committed);
    }

    #[test]
    fn a_failed_kick_stops_the_copy() {
        let mut f = Fake {
            source: home(),
            changes: vec![vec![], vec![file("Maildir/cur/2:2,", 3, 11, "two")]],
            ..Default::default()
        };
        let mut kick = || Err(anyhow!("permission denied"));
        assert!(sync_home(&mut f, Status::Fresh, &mut kick).is_err());
        assert!(!f.committed);
    }

    #[test]
    fn a_committed_home_is_accepted_only_when_equal() {
        let mut f = Fake {
            source: home(),
            ..Default::default()
        };
        let same = manifest(&home(), true);
        let stats = sync_home(&mut f, Status::HomeExists(same.clone()), &mut no_kick()).unwrap();
        assert_eq!((stats.passes, stats.files, stats.bytes), (0, 0, 0));
        assert_eq!(stats.copied, Some(same));
        assert!(f.puts.is_empty() && !f.committed);
        let mut other = home();
        other.get_mut("sieve/x.sieve").unwrap().1 = "else".into();
        let e = sync_home(
            &mut f,
            Status::HomeExists(manifest(&other, true)),
            &mut no_kick(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not overwritten"), "{e}");
    }

    #[test]
    fn late_writes_to_the_old_home_are_named() {
        let copied = manifest(&home(), true);
        let now = manifest(&home(), false);
        assert!(late_changes(&now, &copied).is_empty());
        let mut later = home();
        let (e, b) = file("Maildir/new/9:2,", 3, 20, "new");
        later.insert(e.path.clone(), (e, b));
        later.get_mut("Maildir/dovecot-uidlist").unwrap().0.mtime = 30;
        later.remove("sieve/x.sieve");
        let mut got = late_changes(&manifest(&later, false), &copied);
        got.sort();
        assert_eq!(
            got,
            [
                "Maildir/dovecot-uidlist",
                "Maildir/new/9:2,",
                "sieve/x.sieve"
            ]
        );
    }

    #[test]
    fn lock_names_are_plain_and_short() {
        assert_eq!(lock_name("a/b@c"), "move-612f624063.lock");
        let long = format!("{}@example.org", "x".repeat(240));
        let other = format!("{}y@example.org", "x".repeat(239));
        let (a, b) = (lock_name(&long), lock_name(&other));
        assert!(a.len() <= 255 && b.len() <= 255, "{a}");
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        );
    }

    #[test]
    fn homes_must_hold_their_maildir() {
        let parse = |extra: &str| {
            Config::parse(
                &format!("hostname = \"a.example\"\n{extra}"),
                Path::new("/srv/p"),
            )
            .unwrap()
        };
        let c = parse("");
        let h = home_of(&c, "bob@example.org").unwrap();
        assert!(h.ends_with("example.org/bob"), "{}", h.display());
        let c = parse("[authd.userdb]\nhome = \"/home/%d/%n\"\nmail = \"maildir:~/Maildir\"\n");
        assert_eq!(
            home_of(&c, "bob@example.org").unwrap(),
            Path::new("/home/example.org/bob")
        );
        let c =
            parse("[authd.userdb]\nhome = \"/home/%d/%n\"\nmail = \"maildir:/var/mail/%d/%n\"\n");
        let e = home_of(&c, "bob@example.org").unwrap_err();
        assert!(e.to_string().contains("not inside its home"), "{e}");
        let c = parse("[authd.userdb]\nhome = \"/home/%d/%n\"\nmail = \"maildir:~/Maildir\"\n");
        assert!(home_of(&c, "..@example.org").is_err());
    }
}
