//! The client of imapd's kick socket `imapd` in the run directory (the server is
//! `postern_imapd::kick`): `mailctl user move` ends a user's IMAP, POP3 and ManageSieve
//! sessions on the source node before it copies the home.
//!
//! One JSON object per line: `{"op":"kick","user":"a@b"}` → `{"ok":true,"count":N}` (the
//! answer comes once those sessions have closed, or after imapd's wait of 10 s), a failure
//! `{"ok":false,"error":"…"}`. The peer must be root or imapd's own user.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket's name in the run directory.
pub const SOCKET_NAME: &str = "imapd";

/// How long the client waits for the answer (imapd waits up to 10 s for the sessions).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Longest answer line read.
const MAX_RESPONSE: u64 = 64 * 1024;

/// The kick socket's path for `config`.
pub fn socket_path(config: &postern_config::Config) -> PathBuf {
    config.run_dir().join(SOCKET_NAME)
}

/// Ends every session of `user` (case-insensitive) on the imapd listening at
/// `socket_path`; returns how many there were. A missing socket (imapd not running) is an
/// error of kind `NotFound` or `ConnectionRefused`; a refusal by imapd is `PermissionDenied`
/// (not root or imapd's user) or `Other`.
pub fn kick(socket_path: &Path, user: &str) -> io::Result<usize> {
    let stream = UnixStream::connect(socket_path)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut line = serde_json::to_vec(&serde_json::json!({"op": "kick", "user": user}))
        .map_err(io::Error::other)?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut answer = Vec::new();
    BufReader::new(&stream)
        .take(MAX_RESPONSE)
        .read_until(b'\n', &mut answer)?;
    if answer.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "imapd closed the kick socket without an answer",
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("imapd: {e}")))?;
    if v["ok"].as_bool() == Some(true) {
        let count = v["count"].as_u64().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "imapd: no count in the answer")
        })?;
        return Ok(usize::try_from(count).unwrap_or(usize::MAX));
    }
    let error = v["error"].as_str().unwrap_or("refused").to_owned();
    let kind = if error.contains("only root") {
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::Other
    };
    Err(io::Error::new(kind, format!("imapd: {error}")))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A one-request server with a canned answer; returns what it received.
    fn serve_once(path: &Path, answer: &'static [u8]) -> std::thread::JoinHandle<String> {
        let l = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            (&s).write_all(answer).unwrap();
            line
        })
    }

    #[test]
    fn kick_sends_the_request_and_reads_the_count() {
        let dir = std::env::temp_dir().join(format!("postern-kick-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("imapd");
        let _ = std::fs::remove_file(&path);
        let server = serve_once(&path, b"{\"ok\":true,\"count\":2}\n");
        assert_eq!(kick(&path, "bob@example.org").unwrap(), 2);
        let sent: serde_json::Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"op": "kick", "user": "bob@example.org"})
        );
        std::fs::remove_file(&path).unwrap();
        let server = serve_once(
            &path,
            b"{\"ok\":false,\"error\":\"only root and imapd's own user may kick\"}\n",
        );
        let err = kick(&path, "bob@example.org").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        server.join().unwrap();
        std::fs::remove_file(&path).unwrap();
        // No imapd: the caller can tell (a warning in mailctl).
        let err = kick(&path, "bob@example.org").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
