//! Hands a new message (Sieve `redirect`, `vacation`) to the MTA: by default over smtpd's
//! control socket as a `forward`/`auto_reply` submission (smtpd then knows it is not ours
//! to sign and rewrites the sender with SRS), or to any MTA over SMTP with
//! `postern-smtp-client` (the client smtpd's queue uses): EHLO, MAIL, RCPT, DATA with
//! dot-stuffing, QUIT — each step under a time limit, replies read with a bounded buffer.

use std::path::PathBuf;
use std::time::Duration;

use postern_smtp_client::{Client, ClientError, Flavor, OutRcpt, Outgoing, Target, Timeouts};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Where `[lmtp] submit_to` sends new messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubmitTo {
    /// smtpd's control socket at this path.
    Control(PathBuf),
    /// An SMTP server, `host:port`.
    Smtp(String),
}

impl SubmitTo {
    /// `[lmtp] submit_to`: `"control"` (smtpd's control socket from `[smtpd]
    /// control_socket`), `"unix:PATH"` (relative to the run directory), or `host:port`.
    pub(crate) fn of(config: &postern_config::Config) -> Option<Self> {
        let v = config.lmtp.submit_to.as_deref()?.trim();
        if v.is_empty() {
            return None;
        }
        if v.eq_ignore_ascii_case("control") {
            return Some(Self::Control(
                config.socket_path(&config.smtpd.control_socket),
            ));
        }
        if let Some(p) = v.strip_prefix("unix:") {
            let p = PathBuf::from(p);
            return Some(Self::Control(if p.is_absolute() {
                p
            } else {
                config.run_dir().join(p)
            }));
        }
        Some(Self::Smtp(v.to_owned()))
    }
}

/// What kind of message is handed over (the control socket's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Sieve `redirect`.
    Forward,
    /// Sieve `vacation`.
    AutoReply,
}

/// Sends `sub` to `to`; `mailbox` is the recipient whose script made it.
pub(crate) async fn hand_over(
    to: &SubmitTo,
    helo: &str,
    kind: Kind,
    mailbox: &str,
    sub: &Submission<'_>,
) -> Result<(), SubmitError> {
    match to {
        SubmitTo::Smtp(addr) => submit(addr, helo, sub).await,
        SubmitTo::Control(path) => submit_control(path, kind, mailbox, sub).await,
    }
}

/// Longest response line read from the control socket.
const MAX_CONTROL_LINE: usize = 64 * 1024;

/// One submission over smtpd's control socket (JSON lines; see smtpd's `control` module).
async fn submit_control(
    path: &std::path::Path,
    kind: Kind,
    mailbox: &str,
    sub: &Submission<'_>,
) -> Result<(), SubmitError> {
    let stream = tokio::time::timeout(STEP_TIMEOUT, UnixStream::connect(path))
        .await
        .map_err(|_| SubmitError::Timeout("connect"))?
        .map_err(|e| SubmitError::Connect(path.display().to_string(), e))?;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let req = serde_json::json!({
        "op": "submit",
        "sender": sub.from,
        "recipients": [sub.to],
        "size": sub.message.len(),
        "kind": match kind { Kind::Forward => "forward", Kind::AutoReply => "auto_reply" },
        "on_behalf_of": mailbox,
    });
    let mut line = req.to_string().into_bytes();
    line.push(b'\n');
    tokio::time::timeout(STEP_TIMEOUT, wr.write_all(&line))
        .await
        .map_err(|_| SubmitError::Timeout("submit"))??;
    control_reply(&mut rd, "submit").await?;
    tokio::time::timeout(STEP_TIMEOUT, wr.write_all(sub.message))
        .await
        .map_err(|_| SubmitError::Timeout("message"))??;
    control_reply(&mut rd, "message").await?;
    Ok(())
}

/// Reads one control response; `ok: false` is a refusal.
async fn control_reply<R: AsyncBufReadExt + Unpin>(
    rd: &mut R,
    step: &'static str,
) -> Result<(), SubmitError> {
    let mut line = Vec::new();
    let n = tokio::time::timeout(STEP_TIMEOUT, read_line_max(rd, &mut line, MAX_CONTROL_LINE))
        .await
        .map_err(|_| SubmitError::Timeout(step))??;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(SubmitError::Malformed(format!(
            "connection closed during {step}"
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&line)
        .map_err(|_| SubmitError::Malformed(String::from_utf8_lossy(&line).into_owned()))?;
    if v.get("ok").and_then(serde_json::Value::as_bool) == Some(true) {
        return Ok(());
    }
    let error = v
        .get("error")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("refused");
    let kind = v
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    Err(SubmitError::Refused {
        step,
        reply: format!("{kind}: {error}"),
    })
}

/// Time limit for each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

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
    #[error("{0}")]
    Smtp(#[from] ClientError),
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
    let target = Target::Tcp(addr.to_owned());
    let mut client =
        Client::connect(&target, Flavor::Smtp, helo, Timeouts::all(STEP_TIMEOUT)).await?;
    let from = (!sub.from.is_empty()).then(|| sub.from.to_owned());
    let tx = Outgoing::new(from, vec![OutRcpt::new(sub.to)], sub.message);
    let reply = client.send(&tx).await?.into_iter().next().map(|r| r.reply);
    // Accepted or not, the transaction is over; a failed QUIT changes nothing.
    let _ = client.quit().await;
    match reply {
        Some(reply) if reply.is_positive() => Ok(()),
        Some(reply) => Err(SubmitError::Refused {
            step: "message",
            reply: reply.to_string(),
        }),
        None => Err(SubmitError::Malformed("no reply for the recipient".into())),
    }
}

/// Reads up to LF, keeping at most `max` bytes.
async fn read_line_max<R: AsyncBufReadExt + Unpin>(
    rd: &mut R,
    out: &mut Vec<u8>,
    max: usize,
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
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&buf[..take.min(room)]);
        rd.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn submit_to_values() {
        let c = |v: &str| {
            let text = format!(
                "hostname = \"mx.example\"\n[paths]\nrun_dir = \"/r\"\n[lmtp]\nsubmit_to = \"{v}\"\n"
            );
            postern_config::Config::parse(&text, std::path::Path::new("/base")).unwrap()
        };
        assert_eq!(
            SubmitTo::of(&c("control")),
            Some(SubmitTo::Control("/r/smtpd".into()))
        );
        assert_eq!(
            SubmitTo::of(&c("unix:/x/s")),
            Some(SubmitTo::Control("/x/s".into()))
        );
        assert_eq!(
            SubmitTo::of(&c("unix:s2")),
            Some(SubmitTo::Control("/r/s2".into()))
        );
        assert_eq!(
            SubmitTo::of(&c("127.0.0.1:25")),
            Some(SubmitTo::Smtp("127.0.0.1:25".into()))
        );
        assert_eq!(SubmitTo::of(&c("")), None);
    }

    #[tokio::test]
    async fn hands_over_on_the_control_socket_marked_as_forwarded() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smtpd");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (rd, mut wr) = s.into_split();
            let mut rd = BufReader::new(rd);
            let mut line = String::new();
            rd.read_line(&mut line).await.unwrap();
            let req: serde_json::Value = serde_json::from_str(&line).unwrap();
            wr.write_all(b"{\"ok\":true,\"text\":\"go ahead\"}\n")
                .await
                .unwrap();
            let size = usize::try_from(req["size"].as_u64().unwrap()).unwrap();
            let mut body = vec![0u8; size];
            rd.read_exact(&mut body).await.unwrap();
            wr.write_all(b"{\"ok\":true,\"id\":\"1\",\"text\":\"queued as 1\"}\n")
                .await
                .unwrap();
            (req, body)
        });
        let sub = Submission {
            from: "a@remote.test",
            to: "carol@elsewhere.test",
            message: b"Subject: x\r\n\r\nhi\r\n",
        };
        hand_over(
            &SubmitTo::Control(path.clone()),
            "mx",
            Kind::Forward,
            "alice@example.org",
            &sub,
        )
        .await
        .unwrap();
        let (req, body) = server.await.unwrap();
        assert_eq!(req["op"], "submit");
        assert_eq!(req["kind"], "forward");
        assert_eq!(req["on_behalf_of"], "alice@example.org");
        assert_eq!(req["sender"], "a@remote.test");
        assert_eq!(req["recipients"][0], "carol@elsewhere.test");
        assert_eq!(body, sub.message);

        // A refusal (e.g. not in forward_users) is an error, so the message is kept.
        let l = tokio::net::UnixListener::bind(dir.path().join("s2")).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"{\"ok\":false,\"kind\":\"denied\",\"error\":\"no\"}\n")
                .await
                .unwrap();
        });
        let e = hand_over(
            &SubmitTo::Control(dir.path().join("s2")),
            "mx",
            Kind::AutoReply,
            "alice@example.org",
            &sub,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("denied: no"), "{e}");
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
