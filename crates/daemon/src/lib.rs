//! What every Postern daemon does the same way: logging, Unix listeners with the
//! configured owner and mode, readiness and stopping notices to systemd, and a shutdown
//! token cancelled by SIGTERM or SIGINT.
//!
//! The TCP accept loop with its limits ([`accept`]) is shared; protocol handling is left
//! to each daemon.
#![forbid(unsafe_code)]

pub mod accept;
pub mod metrics;
pub mod per_ip;
pub mod stream;
pub mod tls;

pub use per_ip::PerIp;
pub use stream::Stream;
pub use tls::Tls;

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Errors while setting a daemon up.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A socket could not be created or prepared.
    #[error("{path}: {source}")]
    Socket {
        /// The socket path.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A user or group name does not exist.
    #[error("no such {kind} {name:?}")]
    NoSuchOwner {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
    },
}

/// Sets up `tracing`: human-readable on a terminal, one line per event without colours
/// otherwise (systemd's journal). `RUST_LOG` overrides `default_level`. Logs go to stderr.
///
/// Without `RUST_LOG` a plain level (`default_level`, e.g. `info`) is a static maximum
/// level: an `EnvFilter` takes a lock and a hash lookup at every entry into and exit from a
/// span (each poll of an instrumented task, dozens per message; 1–3% of the CPU per message
/// of smtpd + lmtp-deliver, issue 17). `RUST_LOG` keeps the full directive syntax (targets,
/// spans, fields) for debugging.
pub fn init_logging(default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let terminal = io::stderr().is_terminal();
    let base = || {
        tracing_subscriber::fmt()
            .with_writer(io::stderr)
            .with_ansi(terminal)
            .with_target(false)
    };
    // Under systemd the journal adds its own timestamps. A second call (tests) keeps the
    // first subscriber: try_init's error is dropped.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    macro_rules! init {
        ($builder:expr) => {
            if journal {
                drop($builder.without_time().try_init())
            } else {
                drop($builder.try_init())
            }
        };
    }
    match EnvFilter::try_from_default_env() {
        Ok(filter) => init!(base().with_env_filter(filter)),
        Err(_) => match default_level.parse::<LevelFilter>() {
            Ok(level) => init!(base().with_max_level(level)),
            Err(_) => init!(base().with_env_filter(EnvFilter::new(default_level))),
        },
    }
}

/// Binds a Unix listener at `path`, replacing a stale socket (never a regular file), with
/// `mode` and the optional owner and group.
///
/// There is no window in which the socket is reachable with other permissions: it is bound
/// inside a fresh directory of mode 0700 next to `path` (whatever the umask), gets its mode,
/// owner and group there, and only then is renamed into place.
pub fn bind_unix(
    path: &Path,
    mode: u32,
    owner: Option<&str>,
    group: Option<&str>,
) -> Result<UnixListener, DaemonError> {
    let err = |source| DaemonError::Socket {
        path: path.display().to_string(),
        source,
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(err)?;
    let Some(file_name) = path.file_name() else {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a socket path needs a file name",
        )));
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A live daemon answers; a stale socket refuses.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is listening on this socket",
                )));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        Ok(_) => {
            return Err(err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket; refusing to remove it",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let uid = match owner {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| DaemonError::NoSuchOwner {
                    kind: "user",
                    name: name.to_owned(),
                })?
                .uid,
        ),
        None => None,
    };
    let gid = match group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| DaemonError::NoSuchOwner {
                    kind: "group",
                    name: name.to_owned(),
                })?
                .gid,
        ),
        None => None,
    };
    // A private directory (0700, created exclusively) beside the final path.
    let private = parent.join(format!(".bind-{}-{}", std::process::id(), unique()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(err)?;
    }
    let staged = private.join(file_name);
    let result = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        if uid.is_some() || gid.is_some() {
            nix::unistd::chown(&staged, uid, gid).map_err(io::Error::from)?;
        }
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    drop(std::fs::remove_file(&staged));
    drop(std::fs::remove_dir(&private));
    result.map_err(err)
}

/// A number that differs between calls in one process.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A token cancelled on SIGTERM or SIGINT (after telling systemd we are stopping).
pub fn shutdown_on_signals() -> io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: finishing what is in flight"),
            _ = int.recv() => info!("SIGINT: finishing what is in flight"),
        }
        notify_stopping();
        t.cancel();
    });
    Ok(token)
}

/// The body of a daemon's `main` after its config is loaded: starts a multi-threaded
/// runtime, makes the shutdown token (SIGTERM/SIGINT), runs `serve`, and turns an error into
/// `Error: …` on stderr and a failure exit code.
pub fn run_daemon<F, Fut>(serve: F) -> std::process::ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    run_on(tokio::runtime::Runtime::new(), serve)
}

/// [`run_daemon`] on a current-thread runtime (plus tokio's blocking pool): for a daemon whose
/// async work is I/O-bound and whose blocking work (fsync, password hashing, SQLite, Sieve)
/// all goes through `spawn_blocking`. One thread runs every task, so a message costs fewer
/// wake-ups and context switches than on a work-stealing pool (issue 17). Never call
/// `block_in_place` from such a daemon: it panics on this runtime.
pub fn run_daemon_current_thread<F, Fut>(serve: F) -> std::process::ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    run_on(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        serve,
    )
}

fn run_on<F, Fut>(rt: io::Result<tokio::runtime::Runtime>, serve: F) -> std::process::ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let shutdown = shutdown_on_signals()?;
        serve(shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Tells systemd (when run under it with `Type=notify`) that the daemon is ready, and logs
/// the stable `ready` line test harnesses wait for.
pub fn notify_ready(daemon: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready])
    {
        warn!(error = %e, "sd_notify READY failed");
    }
    info!(daemon, "ready");
}

/// Tells systemd that the daemon is stopping.
pub fn notify_stopping() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        drop(sd_notify::notify(&[sd_notify::NotifyState::Stopping]));
    }
}

/// Waits for the tasks of `set` (sessions, connections) to end, at most `grace`; what is
/// still running then is dropped (aborted) with a warning naming `what`.
pub async fn finish_within<T: 'static>(
    set: &mut tokio::task::JoinSet<T>,
    grace: std::time::Duration,
    what: &str,
) {
    if tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        warn!("{what} still running after {grace:?}; stopping anyway");
        set.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_thread_daemon_runs_tasks_and_blocking_work() {
        let code = run_daemon_current_thread(|_shutdown| async {
            let flavor = tokio::runtime::Handle::current().runtime_flavor();
            anyhow::ensure!(flavor == tokio::runtime::RuntimeFlavor::CurrentThread);
            let spawned = tokio::spawn(async { 1 }).await?;
            let blocking = tokio::task::spawn_blocking(|| 2).await?;
            anyhow::ensure!(spawned + blocking == 3);
            Ok(())
        });
        assert_eq!(code, std::process::ExitCode::SUCCESS);
        let failed = run_daemon_current_thread(|_| async { anyhow::bail!("no") });
        assert_eq!(failed, std::process::ExitCode::FAILURE);
    }

    #[tokio::test]
    async fn binds_replaces_stale_socket_and_refuses_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sock");
        let l = bind_unix(&p, 0o600, None, None).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        // Live: refused.
        assert!(bind_unix(&p, 0o600, None, None).is_err());
        drop(l);
        // Stale: replaced.
        let _l2 = bind_unix(&p, 0o660, None, None).unwrap();
        let f = dir.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(bind_unix(&f, 0o600, None, None).is_err());
        assert!(f.exists());
        assert!(matches!(
            bind_unix(
                &dir.path().join("s2"),
                0o600,
                Some("no-such-user-xyz"),
                None
            ),
            Err(DaemonError::NoSuchOwner { .. })
        ));
    }

    #[tokio::test]
    async fn socket_appears_with_its_final_mode_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sock");
        let l = bind_unix(&p, 0o660, None, None).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o7777, 0o660);
        // Only the socket: the private staging directory is gone.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sock")]);
        // The renamed socket is the listening one.
        let c = tokio::net::UnixStream::connect(&p).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        drop((c, s));
        // A path without a file name is refused.
        assert!(bind_unix(Path::new(""), 0o600, None, None).is_err());
    }
}
