//! Running a short-lived command with a deadline (mailctl, postfix, postmap, python3).

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Default deadline for one short-lived command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait for a command's output pipes to close once it has exited (a daemon
/// it started may hold them).
const PIPE_GRACE: Duration = Duration::from_secs(5);

/// Runs `cmd` to completion, feeding it `stdin` (or /dev/null) and capturing its output.
/// Panics when it cannot be started or runs past `timeout` (it is killed then).
pub fn run_command(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));

    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        // A command that exits without reading gives EPIPE; that is its business.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let status = child.wait().ok();
                let out = Output {
                    status: status.unwrap_or_default(),
                    stdout: stdout.take(),
                    stderr: stderr.take(),
                };
                panic!(
                    "{what} did not finish within {timeout:?}; killed\n{}",
                    describe_output(&out)
                );
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    Output {
        status,
        stdout: stdout.take(),
        stderr: stderr.take(),
    }
}

/// Exit status, stdout and stderr of a finished command, for panic messages.
pub fn describe_output(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// A pipe read to its end by a background thread.
struct Collected {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Option<thread::JoinHandle<()>>,
}

impl Collected {
    /// What was read: all of it once the pipe closes, or what arrived within [`PIPE_GRACE`].
    fn take(mut self) -> Vec<u8> {
        if let Some(handle) = self.done.take() {
            let deadline = Instant::now() + PIPE_GRACE;
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> Collected {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let done = pipe.map(|mut pipe| {
        let buf = Arc::clone(&buf);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&chunk[..n]),
                }
            }
        })
    });
    Collected { buf, done }
}
