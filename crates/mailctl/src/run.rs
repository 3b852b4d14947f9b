//! `mailctl run`: a foreground supervisor for small installs and trying Postern out. It
//! starts every Postern daemon binary found beside `mailctl` (authd first), restarts one
//! that exits, and stops them all on Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// The daemons in start order.
pub(crate) const DAEMONS: [&str; 4] = ["authd", "lmtp-deliver", "smtpd", "imapd"];
/// Quick exits in a row after which a daemon is given up on.
const MAX_QUICK_FAILURES: u32 = 5;
/// A run this long counts as healthy and resets the failure count.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long stopping waits before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

struct Supervised {
    name: &'static str,
    path: PathBuf,
    child: Option<Child>,
    started: Instant,
    failures: u32,
    restart_at: Option<Instant>,
}

/// Where the daemon binaries are: `POSTERN_BIN_DIR`, else beside this executable.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("POSTERN_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe().context("finding mailctl's own path")?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

pub(crate) fn run(config: &Path) -> anyhow::Result<()> {
    // Fail early on a broken config rather than in every child.
    let cfg = postern_config::Config::load(config)?;
    let config = std::fs::canonicalize(config)?;
    let dir = bin_dir()?;
    let found: Vec<_> = DAEMONS
        .iter()
        .filter_map(|n| {
            let p = dir.join(n);
            p.is_file().then_some((*n, p))
        })
        .collect();
    if found.is_empty() {
        anyhow::bail!(
            "no Postern daemon binaries in {} (build them with `cargo build --workspace --bins`)",
            dir.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(supervise(found, config, cfg))
}

fn spawn(s: &mut Supervised, config: &Path) -> anyhow::Result<()> {
    let child = Command::new(&s.path)
        .arg("--config")
        .arg(config)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", s.path.display()))?;
    eprintln!(
        "mailctl: started {} (pid {})",
        s.name,
        child.id().unwrap_or(0)
    );
    s.child = Some(child);
    s.started = Instant::now();
    s.restart_at = None;
    Ok(())
}

async fn supervise(
    found: Vec<(&'static str, PathBuf)>,
    config: PathBuf,
    cfg: postern_config::Config,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut all: Vec<Supervised> = found
        .into_iter()
        .map(|(name, path)| Supervised {
            name,
            path,
            child: None,
            started: Instant::now(),
            failures: 0,
            restart_at: None,
        })
        .collect();
    for s in &mut all {
        spawn(s, &config)?;
        if s.name == "authd" {
            // Others ask authd from their first connection on: give it a moment to bind.
            let sock = cfg.socket_path(&cfg.authd.auth_socket);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !sock.exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let mut given_up = None;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for s in &mut all {
            if let Some(at) = s.restart_at {
                if Instant::now() >= at {
                    spawn(s, &config)?;
                }
                continue;
            }
            let Some(child) = s.child.as_mut() else {
                continue;
            };
            let Some(status) = child.try_wait()? else {
                continue;
            };
            s.child = None;
            if s.started.elapsed() >= HEALTHY_AFTER {
                s.failures = 0;
            }
            s.failures += 1;
            if s.failures > MAX_QUICK_FAILURES {
                eprintln!("mailctl: {} keeps exiting ({status}); giving up", s.name);
                given_up = Some(s.name);
                break;
            }
            let backoff = Duration::from_secs(1 << (s.failures - 1).min(5));
            eprintln!(
                "mailctl: {} exited ({status}); restarting in {backoff:?}",
                s.name
            );
            s.restart_at = Some(Instant::now() + backoff);
        }
        if given_up.is_some() {
            break;
        }
    }
    eprintln!("mailctl: stopping");
    // Stop in reverse order, so authd goes last.
    for s in all.iter_mut().rev() {
        if let Some(child) = s.child.as_mut()
            && let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok())
        {
            kill(Pid::from_raw(pid), Signal::SIGTERM).ok();
        }
    }
    for s in all.iter_mut().rev() {
        if let Some(mut child) = s.child.take() {
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(Ok(st)) => eprintln!("mailctl: {} stopped ({st})", s.name),
                _ => {
                    eprintln!(
                        "mailctl: {} did not stop in {STOP_GRACE:?}; killing it",
                        s.name
                    );
                    drop(child.kill().await);
                }
            }
        }
    }
    match given_up {
        Some(name) => anyhow::bail!("{name} could not be kept running; see its log above"),
        None => Ok(()),
    }
}
