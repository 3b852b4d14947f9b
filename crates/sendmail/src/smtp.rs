//! `sendmail -bs`: an SMTP session on stdin/stdout, as some programs (and inetd-style
//! wrappers) use it. The shared `smtp-session` state machine reads the dialogue; each
//! accepted message is handed to smtpd over the control socket exactly as `sendmail`
//! without `-bs` hands it over (a local submission under the caller's uid, so DKIM
//! signing follows the same local-sender rules), and smtpd's answer becomes the reply to
//! the end of the data.
//!
//! No STARTTLS, AUTH or DSN is offered (the control socket carries none of them); the
//! session's own limits apply: command lines of 4096 octets, message lines of 64 KiB, NUL
//! bytes refused, `[smtpd] max_message_size`, `max_recipients` and `max_errors`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;

use postern_control::ErrorKind;
use postern_smtp_session::{
    Action, Completion, Extensions, Flavor, PeerInfo, Reply, Session, SessionConfig, Transaction,
    Verdict,
};

/// A message to hand over: the envelope sender (`None`: `<>`), recipients, message bytes.
pub struct Submission<'a> {
    /// The envelope sender; `None` is the null sender.
    pub sender: Option<&'a str>,
    /// The recipients, in `RCPT` order.
    pub recipients: Vec<String>,
    /// The message, CRLF line ends, dot-stuffing removed.
    pub message: &'a [u8],
}

/// What became of a handed-over message: the queue id, or smtpd's refusal (its kind, `None`
/// when smtpd could not be reached, and text).
pub type Handed = Result<String, (Option<ErrorKind>, String)>;

/// The session settings for `-bs`, from smtpd's limits.
pub fn session_config(config: &postern_config::Config) -> SessionConfig {
    let mut s = SessionConfig::new(config.hostname.clone(), Flavor::Smtp);
    let c = &config.smtpd;
    s.max_message_size = c.max_message_size;
    s.max_recipients = c.max_recipients;
    s.max_errors = c.max_errors;
    s.extensions = Extensions {
        starttls: false,
        auth: Vec::new(),
        dsn: false,
        ..Extensions::default()
    };
    s.greeting_text = "Postern (sendmail -bs)".into();
    s
}

/// The reply to the end of the data for what smtpd said.
pub fn reply_for(handed: &Handed) -> Reply {
    match handed {
        Ok(id) => Reply::queued(id),
        Err((kind, text)) => {
            let text: String = text.chars().filter(|c| !c.is_control()).take(400).collect();
            let (code, status) = match kind {
                Some(ErrorKind::TooLarge) => (552, (5, 3, 4)),
                Some(ErrorKind::BadAddress | ErrorKind::NotFound) => (550, (5, 1, 3)),
                Some(ErrorKind::Data) => (554, (5, 6, 0)),
                Some(ErrorKind::Denied) => (554, (5, 7, 1)),
                Some(ErrorKind::Usage) => (554, (5, 5, 4)),
                Some(ErrorKind::Busy | ErrorKind::TempFail) | None => (451, (4, 3, 0)),
            };
            Reply::new(code, status, text)
        }
    }
}

/// Runs one session: reads SMTP from `input`, writes replies to `output` (flushed before
/// every read), hands each message to `hand_over`. Ends at `QUIT`, when the session closes
/// itself (too many errors), or at the end of the input.
pub fn serve<R: Read, W: Write>(
    config: Arc<SessionConfig>,
    mut input: R,
    mut output: W,
    mut hand_over: impl FnMut(&Submission<'_>) -> Handed,
) -> io::Result<()> {
    let mut session = Session::new(
        config,
        PeerInfo {
            ip: None,
            tls: false,
            authenticated: None,
        },
    );
    output.write_all(&session.greeting().to_bytes())?;
    let mut work: VecDeque<Action> = VecDeque::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(action) = work.pop_front() {
            let completion = match action {
                Action::Reply(r) => {
                    output.write_all(&r.to_bytes())?;
                    continue;
                }
                Action::Close => {
                    output.flush()?;
                    return Ok(());
                }
                Action::CheckSender { .. } => Completion::Sender(Verdict::Accept),
                Action::CheckRecipient { .. } => Completion::Recipient(Verdict::Accept),
                Action::Deliver(tx) => Completion::Delivered(vec![deliver(&tx, &mut hand_over)]),
                // Never offered; refused should a session ask anyway.
                Action::Auth { .. } | Action::AuthResponse(_) => {
                    Completion::AuthDone(Err(Reply::new(502, (5, 5, 1), "AUTH not available")))
                }
                Action::AuthCancel => continue,
                Action::StartTls => {
                    output.write_all(
                        &Reply::new(421, (4, 7, 0), "TLS not available, closing").to_bytes(),
                    )?;
                    output.flush()?;
                    return Ok(());
                }
            };
            match session.completed(completion) {
                Ok(more) => work.extend(more),
                Err(e) => {
                    let r = Reply::new(421, (4, 3, 0), format!("internal error: {e}"));
                    output.write_all(&r.to_bytes())?;
                    output.flush()?;
                    return Ok(());
                }
            }
        }
        if session.is_closed() {
            output.flush()?;
            return Ok(());
        }
        output.flush()?;
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        work.extend(session.input(&buf[..n]));
    }
}

fn deliver(tx: &Transaction, hand_over: &mut impl FnMut(&Submission<'_>) -> Handed) -> Reply {
    let sender = tx.mail_from.as_ref().map(|a| a.as_str());
    let recipients = tx
        .recipients
        .iter()
        .map(|(a, _)| a.as_str().to_owned())
        .collect();
    reply_for(&hand_over(&Submission {
        sender,
        recipients,
        message: &tx.message,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Arc<SessionConfig> {
        let mut c = SessionConfig::new("h.example", Flavor::Smtp);
        c.max_message_size = 1000;
        c.extensions.dsn = false;
        Arc::new(c)
    }

    /// What a test's `hand_over` was given: sender, recipients, message.
    type Given = (Option<String>, Vec<String>, Vec<u8>);

    /// Runs a dialogue; returns the replies (last line of each) and what was handed over.
    fn run(input: &[u8], answer: Handed) -> (Vec<String>, Vec<Given>) {
        let mut out = Vec::new();
        let mut handed = Vec::new();
        serve(config(), input, &mut out, |s| {
            handed.push((
                s.sender.map(str::to_owned),
                s.recipients.clone(),
                s.message.to_vec(),
            ));
            answer.clone()
        })
        .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let lines = text
            .split("\r\n")
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
            .map(str::to_owned)
            .collect();
        (lines, handed)
    }

    fn codes(lines: &[String]) -> Vec<&str> {
        lines.iter().map(|l| &l[..3]).collect()
    }

    #[test]
    fn a_dialogue_hands_the_message_over() {
        let (lines, handed) = run(
            b"EHLO client\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@f.example>\r\nDATA\r\nSubject: s\r\n\r\n..dot\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<g@h.example>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
            Ok("ABC123".into()),
        );
        assert_eq!(
            codes(&lines),
            [
                "220", "250", "250", "250", "250", "354", "250", "250", "250", "354", "250", "221"
            ]
        );
        assert!(lines[6].contains("ABC123"), "{lines:?}");
        assert_eq!(handed.len(), 2);
        assert_eq!(handed[0].0.as_deref(), Some("a@b.example"));
        assert_eq!(handed[0].1, ["c@d.example", "e@f.example"]);
        assert_eq!(handed[0].2, b"Subject: s\r\n\r\n.dot\r\n");
        assert_eq!(handed[1].0, None, "the null sender");
        // No STARTTLS, AUTH or DSN offered.
        let text = lines.join("\n");
        assert!(!text.contains("STARTTLS") && !text.contains("AUTH") && !text.contains("DSN"));
    }

    #[test]
    fn refusals_become_smtp_replies() {
        let msg = b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
        for (kind, code) in [
            (None, "451"),
            (Some(ErrorKind::TempFail), "451"),
            (Some(ErrorKind::TooLarge), "552"),
            (Some(ErrorKind::BadAddress), "550"),
            (Some(ErrorKind::Denied), "554"),
        ] {
            let (lines, _) = run(msg, Err((kind, "no\r\nway".into())));
            assert_eq!(lines[5][..3], *code, "{kind:?}: {lines:?}");
            assert!(
                lines[5].ends_with("noway"),
                "control characters dropped: {lines:?}"
            );
            assert_eq!(lines.last().map(|l| &l[..3]), Some("221"));
        }
    }

    #[test]
    fn hostile_input_gets_replies_and_hands_nothing_over() {
        // A huge line without an end, NUL bytes in a command and in the message, a message
        // over the size limit, commands out of order; then the session still works.
        let mut input = b"EHLO c\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'A', 200_000));
        input.extend_from_slice(b"\r\nNOOP\0x\r\nRCPT TO:<a@b.example>\r\n");
        input.extend_from_slice(
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nnul \0 here\r\n.\r\n",
        );
        input.extend_from_slice(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
        input.extend(std::iter::repeat_n(b'x', 2000));
        input.extend_from_slice(b"\r\n.\r\nNOOP\r\nQUIT\r\n");
        let (lines, handed) = run(&input, Ok("X".into()));
        assert!(handed.is_empty(), "{handed:?}");
        let c = codes(&lines);
        assert_eq!(c.first(), Some(&"220"));
        assert_eq!(c.last(), Some(&"221"), "{lines:?}");
        assert!(c.iter().any(|c| c.starts_with('5')), "{lines:?}");
        assert!(c.contains(&"552"), "too large: {lines:?}");
    }

    #[test]
    fn end_of_input_ends_the_session() {
        let (lines, handed) = run(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n", Ok("X".into()));
        assert_eq!(codes(&lines), ["220", "250", "250"]);
        assert!(handed.is_empty());
    }
}
