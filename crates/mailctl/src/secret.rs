//! Reading a new password: prompted twice without echo on a terminal, one line from stdin
//! otherwise. Never from the command line.

use std::io::{BufRead, IsTerminal};

/// Reads a password for a new account or a password change.
pub(crate) fn read_new_password(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            anyhow::bail!("the passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    let n = stdin.lock().take_line(&mut line)?;
    if n == 0 {
        anyhow::bail!("no password on stdin");
    }
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    if pw.is_empty() {
        anyhow::bail!("empty password on stdin");
    }
    Ok(pw.to_owned())
}

/// Reads one line, at most 4 KiB.
trait TakeLine {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        let mut limited = self.take(4096);
        let mut buf = Vec::new();
        let n = limited.read_until(b'\n', &mut buf)?;
        *out = String::from_utf8(buf).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the password is not UTF-8")
        })?;
        Ok(n)
    }
}
