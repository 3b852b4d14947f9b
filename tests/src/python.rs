//! `python3` for tests that drive a server through Python's smtplib, imaplib or poplib:
//! real-world client libraries with their own ideas of the protocols.

use std::process::{Command, Output};
use std::time::Duration;

use crate::process::{COMMAND_TIMEOUT, run_command};

/// Runs `python3 -c SCRIPT ARGS…` (the script sees `sys.argv[1:] == ARGS`) and returns its
/// output. Panics if python3 cannot be started or runs past [`COMMAND_TIMEOUT`].
pub fn run_python(script: &str, args: &[&str]) -> Output {
    run_python_with_timeout(script, args, COMMAND_TIMEOUT)
}

/// [`run_python`] with a deadline of the caller's choosing.
pub fn run_python_with_timeout(script: &str, args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    run_command(&mut cmd, None, timeout)
}
