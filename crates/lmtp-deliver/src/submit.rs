//! Hands a new message (Sieve `redirect`, `vacation`) to an MTA over SMTP: EHLO, MAIL,
//! RCPT, DATA with dot-stuffing, QUIT — each step under a time limit, replies read with a
//! bounded buffer.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Time limit for each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest reply line read.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 100;

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("{step} refused: {reply}")]
    Refused { step: &'static str, reply: String },
    #[error("malformed reply: {0:?}")]
    Malformed(String),
}

/// One message to send.
pub(crate) struct Submission<'a> {
    /// Envelope sender; empty for the null sender `<>`.
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    /// The message with CRLF line ends.
    pub(crate) message: &'a [u8],
}

/// Sends `sub` through the SMTP server at `addr` (`host:port`).
pub(crate) async fn submit(
    addr: &str,
    helo: &str,
    sub: &Submission<'_>,
) -> Result<(), SubmitError> {
    let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| SubmitError::Timeout("connect"))?
        .map_err(|e| SubmitError::Connect(addr.to_owned(), e))?;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    expect(&mut rd, "greeting", 2).await?;
    command(&mut rd, &mut wr, &format!("EHLO {helo}\r\n"), "EHLO", 2).await?;
    command(
        &mut rd,
        &mut wr,
        &format!("MAIL FROM:<{}>\r\n", sub.from),
        "MAIL FROM",
        2,
    )
    .await?;
    command(
        &mut rd,
        &mut wr,
        &format!("RCPT TO:<{}>\r\n", sub.to),
        "RCPT TO",
        2,
    )
    .await?;
    command(&mut rd, &mut wr, "DATA\r\n", "DATA", 3).await?;
    let body = dot_stuff(sub.message);
    tokio::time::timeout(STEP_TIMEOUT, wr.write_all(&body))
        .await
        .map_err(|_| SubmitError::Timeout("message"))??;
    command(&mut rd, &mut wr, ".\r\n", "end of data", 2).await?;
    // The message is accepted; a failed QUIT changes nothing.
    let _ = command(&mut rd, &mut wr, "QUIT\r\n", "QUIT", 2).await;
    Ok(())
}

async fn command<R, W>(
    rd: &mut R,
    wr: &mut W,
    line: &str,
    step: &'static str,
    class: u8,
) -> Result<String, SubmitError>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    tokio::time::timeout(STEP_TIMEOUT, wr.write_all(line.as_bytes()))
        .await
        .map_err(|_| SubmitError::Timeout(step))??;
    expect(rd, step, class).await
}

/// Reads one (possibly multi-line) reply; its code must start with `class`.
async fn expect<R: AsyncBufReadExt + Unpin>(
    rd: &mut R,
    step: &'static str,
    class: u8,
) -> Result<String, SubmitError> {
    let mut text = String::new();
    for _ in 0..MAX_REPLY_LINES {
        let mut line = Vec::new();
        let n = tokio::time::timeout(STEP_TIMEOUT, read_line(rd, &mut line))
            .await
            .map_err(|_| SubmitError::Timeout(step))??;
        if n == 0 {
            return Err(SubmitError::Malformed(format!(
                "connection closed during {step}"
            )));
        }
        let l = String::from_utf8_lossy(&line).trim_end().to_owned();
        if l.len() < 3 || !l.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
            return Err(SubmitError::Malformed(l));
        }
        text.push_str(&l);
        text.push('\n');
        if l.as_bytes().get(3) != Some(&b'-') {
            return if l.as_bytes()[0] == b'0' + class {
                Ok(text)
            } else {
                Err(SubmitError::Refused {
                    step,
                    reply: text.trim_end().to_owned(),
                })
            };
        }
    }
    Err(SubmitError::Malformed("reply has too many lines".into()))
}

/// Reads up to LF, keeping at most [`MAX_REPLY_LINE`] bytes.
async fn read_line<R: AsyncBufReadExt + Unpin>(
    rd: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = rd.fill_buf().await?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_REPLY_LINE.saturating_sub(out.len());
        out.extend_from_slice(&buf[..take.min(room)]);
        rd.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

/// CRLF line ends, leading dots doubled, and the final CRLF present.
pub(crate) fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 4);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_and_line_ends() {
        assert_eq!(dot_stuff(b"a\n.b\r\n..c"), b"a\r\n..b\r\n...c\r\n");
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n");
    }

    #[tokio::test]
    async fn talks_smtp_to_a_server() {
        use tokio::io::AsyncReadExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"220 hi\r\n").await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            let replies: [&[u8]; 6] = [
                b"250-x\r\n250 ok\r\n",
                b"250 ok\r\n",
                b"250 ok\r\n",
                b"354 go\r\n",
                b"250 queued\r\n",
                b"221 bye\r\n",
            ];
            let mut i = 0;
            while i < replies.len() {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                // One reply per command: count CRLF-terminated commands outside the body.
                let text = String::from_utf8_lossy(&got).to_string();
                let want = match i {
                    0 => text.contains("EHLO"),
                    1 => text.contains("MAIL FROM"),
                    2 => text.contains("RCPT TO"),
                    3 => text.contains("DATA\r\n"),
                    4 => text.contains("\r\n.\r\n"),
                    _ => text.contains("QUIT"),
                };
                if want {
                    s.write_all(replies[i]).await.unwrap();
                    i += 1;
                }
            }
            String::from_utf8(got).unwrap()
        });
        submit(
            &addr,
            "mx.test",
            &Submission {
                from: "",
                to: "b@x.org",
                message: b"Subject: t\n\n.dot\n",
            },
        )
        .await
        .unwrap();
        let seen = server.await.unwrap();
        assert!(
            seen.contains("MAIL FROM:<>\r\n") && seen.contains("RCPT TO:<b@x.org>\r\n"),
            "{seen}"
        );
        assert!(seen.contains("Subject: t\r\n\r\n..dot\r\n.\r\n"), "{seen}");
    }

    #[tokio::test]
    async fn refusal_is_an_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"554 go away\r\n").await.unwrap();
        });
        let e = submit(
            &addr,
            "mx.test",
            &Submission {
                from: "a@x",
                to: "b@x",
                message: b"x",
            },
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("554 go away"), "{e}");
    }
}
