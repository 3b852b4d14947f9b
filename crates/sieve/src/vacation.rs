//! RFC 5230 vacation: the action the interpreter produces, and pure helpers for the caller
//! that sends the reply: [`should_respond`] (whom never to answer) and [`dedup_key`] (the
//! key of the once-per-`:days`-per-sender memory the caller keeps).

use crate::Message;
use crate::address::parse_address_list;

/// `:days` when the script gives none.
pub const DEFAULT_DAYS: u32 = 7;
/// Smallest `:days` honoured.
pub const MIN_DAYS: u32 = 1;
/// Largest `:days` honoured.
pub const MAX_DAYS: u32 = 30;

/// A vacation auto-reply to send (if [`should_respond`] agrees and the sender was not
/// answered for this handle within `days`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacation {
    /// Days to wait before answering the same sender again (clamped to 1..=30, default 7).
    pub days: u32,
    /// The subject of the reply: `:subject`, or "Auto: " + the original subject.
    pub subject: String,
    /// `:from`: the From of the reply, as written; `None` means the recipient's address.
    pub from: Option<String>,
    /// `:addresses`: more addresses of the user, for the "was it addressed to me" check.
    pub addresses: Vec<String>,
    /// `:mime`: `reason` is a MIME entity (headers and body), not plain text.
    pub mime: bool,
    /// `:handle`, or one derived from the reason, subject, from and mime flag.
    pub handle: String,
    /// The reply body.
    pub reason: String,
}

/// Clamps a script's `:days` into `MIN_DAYS..=MAX_DAYS`.
pub fn clamp_days(days: Option<u64>) -> u32 {
    days.map_or(DEFAULT_DAYS, |d| {
        u32::try_from(d)
            .unwrap_or(MAX_DAYS)
            .clamp(MIN_DAYS, MAX_DAYS)
    })
}

/// "Auto: " + the original subject (or "Auto: (no subject)").
pub fn default_subject(original: Option<&str>) -> String {
    match original.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => format!("Auto: {s}"),
        None => "Auto: (no subject)".to_owned(),
    }
}

/// 64-bit FNV-1a: stable across releases, so stored keys stay valid.
fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The handle used when the script gives no `:handle` (RFC 5230 section 4.2): a hash of
/// the reason, the `:subject` and `:from` arguments and the `:mime` flag.
pub fn auto_handle(reason: &str, subject: Option<&str>, from: Option<&str>, mime: bool) -> String {
    let h = fnv64(&[
        reason,
        subject.unwrap_or(""),
        from.unwrap_or(""),
        if mime { "1" } else { "0" },
    ]);
    format!("auto-{h:016x}")
}

/// The key under which the caller remembers "answered `sender` for `handle`", so that it
/// answers at most once per [`Vacation::days`]: the lower-cased bare sender address, `|`,
/// the handle.
pub fn dedup_key(sender: &str, handle: &str) -> String {
    format!("{}|{handle}", bare(sender).to_lowercase())
}

fn bare(addr: &str) -> &str {
    let a = addr.trim();
    a.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a)
        .trim()
}

/// What [`should_respond`] looks at.
#[derive(Clone, Copy)]
pub struct VacationCheck<'a> {
    /// The envelope sender (`MAIL FROM`), `None` for `<>`. Replies go there.
    pub envelope_from: Option<&'a str>,
    /// Every address of the user: the envelope recipient, the `:addresses`, aliases.
    pub recipient_addresses: &'a [String],
    /// The message header.
    pub message: &'a dyn Message,
}

/// Why no reply is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// The envelope sender is null (a bounce).
    #[error("null envelope sender")]
    NullSender,
    /// The sender looks like a daemon or list robot (MAILER-DAEMON, owner-*, *-request ...).
    #[error("automated sender {0}")]
    AutomatedSender(String),
    /// The sender is the user.
    #[error("sender is the recipient")]
    OwnAddress,
    /// `Auto-Submitted` is present and not `no`.
    #[error("message is auto-submitted ({0})")]
    AutoSubmitted(String),
    /// A mailing-list header is present.
    #[error("mailing list message ({0} present)")]
    MailingList(String),
    /// `Precedence: bulk`, `list` or `junk`.
    #[error("precedence {0}")]
    Precedence(String),
    /// None of the user's addresses is in To, Cc, Bcc or their Resent- forms.
    #[error("not addressed to the recipient")]
    NotAddressed,
}

const LIST_HEADERS: &[&str] = &[
    "List-Id",
    "List-Post",
    "List-Unsubscribe",
    "List-Subscribe",
    "List-Help",
    "List-Owner",
    "List-Archive",
];
const RECIPIENT_HEADERS: &[&str] = &["To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc"];

/// Is this local part a daemon, list robot or no-reply address.
fn automated_local(local: &str) -> bool {
    let l = local.to_ascii_lowercase();
    matches!(
        l.as_str(),
        "mailer-daemon"
            | "listserv"
            | "majordomo"
            | "noreply"
            | "no-reply"
            | "donotreply"
            | "do-not-reply"
    ) || l.starts_with("owner-")
        || ["-request", "-owner", "-bounces", "-bounce"]
            .iter()
            .any(|s| l.ends_with(s))
}

/// Decides whether a vacation reply may be sent (RFC 5230 sections 4.5 and 4.6).
pub fn should_respond(c: VacationCheck<'_>) -> Result<(), Skip> {
    let sender = c
        .envelope_from
        .map(bare)
        .filter(|s| !s.is_empty())
        .ok_or(Skip::NullSender)?;
    // The mailbox the local part names: `"MAILER-DAEMON"@x` is MAILER-DAEMON.
    let local = postern_mail_types::unquote_local(postern_mail_types::split(sender).0);
    if automated_local(&local) {
        return Err(Skip::AutomatedSender(sender.to_owned()));
    }
    let ours = |a: &str| {
        c.recipient_addresses
            .iter()
            .any(|r| bare(r).eq_ignore_ascii_case(a))
    };
    if ours(sender) {
        return Err(Skip::OwnAddress);
    }
    let msg = c.message;
    if let Some(v) = msg.header("Auto-Submitted").into_iter().next() {
        let token = v
            .split([';', '('])
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if token != "no" {
            return Err(Skip::AutoSubmitted(token));
        }
    }
    if let Some(h) = LIST_HEADERS.iter().find(|h| !msg.header(h).is_empty()) {
        return Err(Skip::MailingList((*h).to_owned()));
    }
    for v in msg.header("Precedence") {
        let p = v.trim().to_ascii_lowercase();
        if matches!(p.as_str(), "bulk" | "list" | "junk") {
            return Err(Skip::Precedence(p));
        }
    }
    let addressed = RECIPIENT_HEADERS
        .iter()
        .flat_map(|h| msg.header(h))
        .any(|v| {
            parse_address_list(&v)
                .unwrap_or_default()
                .iter()
                .any(|a| a.domain.is_some() && ours(&a.addr_spec()))
        });
    if addressed {
        Ok(())
    } else {
        Err(Skip::NotAddressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(clamp_days(None), 7);
        assert_eq!(clamp_days(Some(0)), 1);
        assert_eq!(clamp_days(Some(365)), 30);
        assert_eq!(clamp_days(Some(u64::MAX)), 30);
        assert_eq!(default_subject(Some(" Hi ")), "Auto: Hi");
        assert_eq!(default_subject(None), "Auto: (no subject)");
        assert_eq!(dedup_key(" <Bob@X.org> ", "h"), "bob@x.org|h");
        assert_ne!(
            auto_handle("a", None, None, false),
            auto_handle("a", None, None, true)
        );
        assert_ne!(
            auto_handle("ab", Some("c"), None, false),
            auto_handle("a", Some("bc"), None, false)
        );
        assert_eq!(
            auto_handle("x", None, None, false),
            auto_handle("x", None, None, false)
        );
        for l in [
            "MAILER-DAEMON",
            "owner-list",
            "list-request",
            "users-bounces",
            "noreply",
        ] {
            assert!(automated_local(l), "{l}");
        }
        assert!(!automated_local("alice"));
    }

    struct NoHeaders;

    impl Message for NoHeaders {
        fn header(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
        fn size(&self) -> u64 {
            0
        }
    }

    fn respond(from: &str) -> Result<(), Skip> {
        should_respond(VacationCheck {
            envelope_from: Some(from),
            recipient_addresses: &["me@example.com".to_owned()],
            message: &NoHeaders,
        })
    }

    #[test]
    fn quoted_robot_senders_are_robots() {
        // The local part was compared with its quotes, so `"MAILER-DAEMON"@x.org` (the same
        // mailbox as MAILER-DAEMON@x.org) got an auto-reply.
        for robot in [
            "\"MAILER-DAEMON\"@x.org",
            "<\"owner-list\"@x.org>",
            "\"no\\-reply\"@x.org",
        ] {
            assert!(
                matches!(respond(robot), Err(Skip::AutomatedSender(_))),
                "{robot}"
            );
        }
        // An `@` inside the quotes belongs to the local part.
        assert!(matches!(respond("\"x@y\"@x.org"), Err(Skip::NotAddressed)));
        assert!(matches!(
            respond("\"noreply@y\"@x.org"),
            Err(Skip::NotAddressed)
        ));
        assert!(matches!(
            respond("noreply@x.org"),
            Err(Skip::AutomatedSender(_))
        ));
    }
}
