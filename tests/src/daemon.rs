//! One long-running child process with its log captured.
//!
//! Background threads read the child's stderr and stdout line by line into a shared buffer.
//! Tests wait on log lines ([`Daemon::wait_for`]), read the addresses it logged
//! (`listening on ADDR`), and stop it with SIGTERM ([`Daemon::stop`], which asserts exit
//! status 0). Dropping a `Daemon` kills the child if it still runs and prints everything it
//! logged, each line prefixed `SRV:`, which cargo shows for failing tests.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a daemon may take to log what a test waits for (startup included).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a daemon may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for the output pipes to close after the child has exited.
const PIPE_GRACE: Duration = Duration::from_secs(5);

/// A spawned daemon.
pub struct Daemon {
    name: String,
    child: Mutex<Option<Child>>,
    log: Arc<Log>,
    exit: Mutex<Option<ExitStatus>>,
}

impl Daemon {
    /// Spawns `cmd` (stdin from /dev/null, stdout and stderr captured). `name` labels its
    /// output. Panics if it cannot be started.
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let log = Arc::new(Log::default());
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            log.state().open_streams += 1;
            let log = Arc::clone(&log);
            thread::spawn(move || read_lines(stream, &log));
        }
        Self {
            name: name.to_owned(),
            child: Mutex::new(Some(child)),
            log,
            exit: Mutex::new(None),
        }
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child_guard()
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("{} has been stopped", self.name))
    }

    /// Every line logged so far (stderr and stdout interleaved as they arrived).
    pub fn lines(&self) -> Vec<String> {
        self.log.state().lines.clone()
    }

    /// The log so far as one text.
    pub fn log_text(&self) -> String {
        self.log.state().lines.join("\n")
    }

    /// A position in the log, for [`Daemon::wait_for_since`]: the number of lines so far.
    pub fn mark(&self) -> usize {
        self.log.state().lines.len()
    }

    /// Waits for a line containing `pattern`, returns it. Panics with the captured log if
    /// the daemon exits first or `timeout` passes.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> String {
        self.wait_for_since(0, pattern, timeout)
    }

    /// Like [`Daemon::wait_for`], looking only at lines after `mark` (from [`Daemon::mark`]).
    pub fn wait_for_since(&self, mark: usize, pattern: &str, timeout: Duration) -> String {
        self.wait_for_line(
            mark,
            &format!("a line containing {pattern:?}"),
            timeout,
            |l| l.contains(pattern),
        )
    }

    /// Waits for the `ready` log line every daemon writes once all its listeners are bound.
    pub fn wait_ready(&self) {
        self.wait_for_line(0, "the `ready` line", STARTUP_TIMEOUT, is_ready_line);
    }

    /// Waits for a line after `mark` that `matches`; `what` describes it in the panic message.
    pub fn wait_for_line(
        &self,
        mark: usize,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut state = self.log.state();
        loop {
            if let Some(line) = state.lines.iter().skip(mark).find(|l| matches(l)) {
                return line.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                self.fail(&format!("did not log {what} within {timeout:?}"));
            }
            if state.open_streams == 0 || self.exited().is_some() {
                // Exited (or closed its output): take what is still in the pipes, look once more.
                drop(state);
                let status = self.wait_exit(PIPE_GRACE);
                self.log.wait_closed(PIPE_GRACE);
                state = self.log.state();
                if let Some(line) = state.lines.iter().skip(mark).find(|l| matches(l)) {
                    return line.clone();
                }
                drop(state);
                let problem = match status {
                    Some(status) => format!("exited ({status}) before logging {what}"),
                    None => format!("closed its output before logging {what}"),
                };
                self.fail(&problem);
            }
            let step = (deadline - now).min(Duration::from_millis(50));
            state = self
                .log
                .changed
                .wait_timeout(state, step)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Every TCP address the daemon logged as `listening on ADDR`, in log order.
    pub fn listening_addrs(&self) -> Vec<SocketAddr> {
        self.listening_addrs_matching("")
    }

    /// The TCP addresses from `listening on ADDR` lines that also contain `pattern`
    /// (to tell a daemon's listeners apart, say `submission`).
    pub fn listening_addrs_matching(&self, pattern: &str) -> Vec<SocketAddr> {
        self.listening_tokens(pattern)
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect()
    }

    /// Every Unix socket path the daemon logged as `listening on PATH`, in log order.
    pub fn listening_paths(&self) -> Vec<PathBuf> {
        self.listening_tokens("")
            .into_iter()
            .filter(|t| t.starts_with('/'))
            .map(PathBuf::from)
            .collect()
    }

    /// Sends `signal` to the daemon; panics if it has already exited.
    pub fn signal(&self, signal: Signal) {
        if let Some(status) = self.exited() {
            self.fail(&format!(
                "exited ({status}) before it could be sent {signal}"
            ));
        }
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("pids fit in i32"));
        kill(pid, signal).unwrap_or_else(|e| panic!("kill -{signal} {}: {e}", self.name));
    }

    /// Waits up to `timeout` for the daemon to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits for the exit; panics (with the log) unless the status is 0.
    pub fn stop(&self) {
        let status = self.terminate();
        if !status.success() {
            self.fail(&format!("exited with {status} after SIGTERM, expected 0"));
        }
    }

    /// Sends SIGTERM and returns the exit status; panics if it does not exit within
    /// [`STOP_TIMEOUT`] (it is killed then).
    pub fn terminate(&self) -> ExitStatus {
        if self.exited().is_none() {
            self.signal(Signal::SIGTERM);
        }
        match self.wait_exit(STOP_TIMEOUT) {
            Some(status) => {
                self.log.wait_closed(PIPE_GRACE);
                status
            }
            None => {
                self.kill();
                self.fail(&format!("did not exit within {STOP_TIMEOUT:?} of SIGTERM"));
            }
        }
    }

    /// True while the child has not exited.
    pub fn is_running(&self) -> bool {
        self.exited().is_none()
    }

    /// Panics with `problem` and the daemon's log so far.
    pub fn fail(&self, problem: &str) -> ! {
        panic!(
            "{} {problem}\n--- {} log ---\n{}\n--- end of {} log ---",
            self.name,
            self.name,
            self.log_text(),
            self.name
        )
    }

    fn listening_tokens(&self, pattern: &str) -> Vec<String> {
        const MARKER: &str = "listening on ";
        let state = self.log.state();
        state
            .lines
            .iter()
            .filter(|l| l.contains(pattern))
            .filter_map(|l| {
                let rest = &l[l.find(MARKER)? + MARKER.len()..];
                let token = rest.split_whitespace().next()?;
                // Tolerate `listening on addr=…`, quotes and a trailing comma.
                let token = token.rsplit_once('=').map_or(token, |(_, v)| v);
                let token = token.trim_matches(|c| matches!(c, '"' | '\'' | '`'));
                let token = token.trim_end_matches([',', ';']);
                Some(token.to_owned())
            })
            .collect()
    }

    /// The exit status once the child has exited (reaping it).
    fn exited(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_none()
            && let Some(child) = self.child_guard().as_mut()
        {
            *exit = child.try_wait().ok().flatten();
        }
        *exit
    }

    fn kill(&self) {
        if let Some(child) = self.child_guard().as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn child_guard(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
        self.log.wait_closed(PIPE_GRACE);
        let state = self.log.state();
        for line in &state.lines {
            eprintln!("SRV:{}: {line}", self.name);
        }
    }
}

/// A `ready` line: the word `ready` on its own (not inside a path or another word).
fn is_ready_line(line: &str) -> bool {
    line.split_whitespace()
        .any(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric()) == "ready")
}

/// The captured output of one daemon.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    /// Output pipes not yet at end of file.
    open_streams: usize,
}

impl Log {
    fn state(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (at most `timeout`) until the reader threads have seen end of file.
    fn wait_closed(&self, timeout: Duration) {
        let state = self.state();
        let _ = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.open_streams > 0);
    }
}

fn read_lines(stream: Box<dyn Read + Send>, log: &Log) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = strip_ansi(&String::from_utf8_lossy(&buf));
                log.state().lines.push(line.trim_end().to_owned());
                log.changed.notify_all();
            }
        }
    }
    log.state().open_streams -= 1;
    log.changed.notify_all();
}

/// Removes ANSI escape sequences (colours), in case a daemon writes them anyway.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // CSI: parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_is_a_word() {
        assert!(is_ready_line("2025-01-01T00:00:00Z  INFO authd: ready"));
        assert!(is_ready_line("INFO ready sockets=3"));
        assert!(!is_ready_line(
            "listening on /tmp/postern-e2e-ready1/run/auth"
        ));
        assert!(!is_ready_line("already running"));
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m ready"),
            "2025  INFO ready"
        );
    }
}
