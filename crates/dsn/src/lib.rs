//! Delivery status notifications (DSNs) for Postern.
//!
//! This crate builds the notifications the smtpd queue sends back to an
//! envelope sender: bounces (`Action: failed`), delay warnings
//! (`Action: delayed`) and success notices (`Action: delivered`, `relayed`,
//! `expanded`) when `NOTIFY=SUCCESS` was requested.
//!
//! The generated message follows
//! [RFC 3464](https://www.rfc-editor.org/rfc/rfc3464) (`message/delivery-status`),
//! [RFC 6522](https://www.rfc-editor.org/rfc/rfc6522) (`multipart/report`) and
//! honours the [RFC 3461](https://www.rfc-editor.org/rfc/rfc3461) parameters
//! (`RET`, `ENVID`, `ORCPT`). It is marked `Auto-Submitted: auto-replied`
//! ([RFC 3834](https://www.rfc-editor.org/rfc/rfc3834)) and is never generated
//! for the null reverse-path.
//!
//! Everything here is pure: no I/O is performed. The only ambient inputs are
//! the current time (for the `Date:` field) and a pseudo-unique value for the
//! `Message-ID:` and MIME boundary.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt::Write as _;

use mail_builder::headers::date::Date;
use mail_builder::mime::make_boundary;
use mail_parser::MessageParser;

/// Longest header line we try to produce before folding.
const FOLD_AT: usize = 78;
/// Longest body line we emit as 7bit/8bit before switching to quoted-printable.
const MAX_LINE: usize = 998;

/// What happened to a recipient (RFC 3464 §2.3.3 `Action` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The message could not be delivered and will not be retried.
    Failed,
    /// Delivery has been delayed; the queue will keep trying.
    Delayed,
    /// The message was delivered to the recipient's mailbox.
    Delivered,
    /// The message was relayed to a system that does not send DSNs.
    Relayed,
    /// The recipient was an alias or list and was expanded.
    Expanded,
}

impl Action {
    /// The value written in the `Action:` field.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Delayed => "delayed",
            Self::Delivered => "delivered",
            Self::Relayed => "relayed",
            Self::Expanded => "expanded",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of the original message to return (RFC 3461 `RET`): `Full` (subject to
/// [`Report::max_original`]) or `Headers` (the default).
pub use postern_mail_types::Ret;

/// The per-recipient part of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    /// The recipient address as it was finally attempted (no `rfc822;` prefix needed).
    pub final_recipient: String,
    /// The ORCPT parameter, e.g. `rfc822;bob@example.org` (decoded from xtext).
    pub original_recipient: Option<String>,
    /// What happened to this recipient.
    pub action: Action,
    /// Enhanced status code (RFC 3463), e.g. `(5, 2, 2)`.
    pub status: (u8, u16, u16),
    /// The remote MTA that produced the diagnostic, if any (a host name).
    pub remote_mta: Option<String>,
    /// The remote SMTP reply, e.g. `552 5.2.2 <bob@x> Mailbox is full`.
    /// Written as `Diagnostic-Code: smtp; …`. Multi-line replies are joined.
    pub diagnostic: Option<String>,
    /// Time of the last delivery attempt (Unix seconds).
    pub last_attempt: Option<i64>,
    /// For delayed recipients: when the queue gives up (Unix seconds).
    pub will_retry_until: Option<i64>,
}

/// Everything needed to build one DSN.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Our host name (`Reporting-MTA: dns; …`).
    pub reporting_mta: &'a str,
    /// The `From:` of the DSN, e.g. `Mail Delivery System <MAILER-DAEMON@host>`.
    pub postmaster: &'a str,
    /// The envelope sender of the original message; the DSN goes there.
    pub to: &'a str,
    /// The RFC 3461 ENVID parameter (decoded from xtext), if given.
    pub envid: Option<&'a str>,
    /// When the original message arrived (Unix seconds).
    pub arrival: i64,
    /// One entry per recipient being reported.
    pub recipients: Vec<RecipientReport>,
    /// The whole original message.
    pub original: &'a [u8],
    /// The RET parameter.
    pub ret: Ret,
    /// Include at most this many bytes of the original; beyond it only its headers.
    pub max_original: usize,
}

/// Reasons [`build`] refuses to produce a DSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// The envelope sender is the null reverse-path `<>`; DSNs must never go there.
    #[error("refusing to generate a DSN for the null sender")]
    NullSender,
    /// The report lists no recipients.
    #[error("a DSN needs at least one recipient")]
    NoRecipients,
    /// A status code is not a valid RFC 3463 enhanced status code.
    #[error("invalid enhanced status code {0}.{1}.{2}")]
    InvalidStatus(u8, u16, u16),
}

/// The kind of notification, decided from the recipients' actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// At least one recipient failed.
    Bounce,
    /// No failure, at least one delayed recipient.
    Delay,
    /// Only successful actions (delivered, relayed, expanded).
    Success,
}

impl Kind {
    /// Classifies a set of recipient reports (failures win over delays).
    #[must_use]
    pub fn of(recipients: &[RecipientReport]) -> Self {
        if recipients.iter().any(|r| r.action == Action::Failed) {
            Self::Bounce
        } else if recipients.iter().any(|r| r.action == Action::Delayed) {
            Self::Delay
        } else {
            Self::Success
        }
    }

    /// The `Subject:` used for this kind of notification.
    #[must_use]
    pub const fn subject(self) -> &'static str {
        match self {
            Self::Bounce => "Undelivered Mail Returned to Sender",
            Self::Delay => "Delayed Mail (still being retried)",
            Self::Success => "Successful Mail Delivery Report",
        }
    }
}

/// Returns true when `addr` is the null reverse-path (`<>` or empty).
#[must_use]
pub fn is_null_sender(addr: &str) -> bool {
    let a = addr.trim();
    a.is_empty() || a == "<>"
}

/// Builds the complete DSN message (RFC 5322, CRLF line ends).
///
/// # Errors
///
/// [`DsnError::NullSender`] when `r.to` is the null sender,
/// [`DsnError::NoRecipients`] when there is nothing to report and
/// [`DsnError::InvalidStatus`] for a malformed enhanced status code.
pub fn build(r: &Report<'_>) -> Result<Vec<u8>, DsnError> {
    if is_null_sender(r.to) {
        return Err(DsnError::NullSender);
    }
    if r.recipients.is_empty() {
        return Err(DsnError::NoRecipients);
    }
    for rcpt in &r.recipients {
        let (c, s, d) = rcpt.status;
        if !matches!(c, 2 | 4 | 5) || s > 999 || d > 999 {
            return Err(DsnError::InvalidStatus(c, s, d));
        }
    }

    let kind = Kind::of(&r.recipients);
    let original = Original::new(r);
    let text = human_text(r, kind, &original);
    let status = delivery_status(r);

    // Part bodies, to pick a boundary that occurs in none of them.
    let (text_cte, text_body) = encode_text(&text);
    let (orig_ctype, orig_body) = if original.full {
        ("message/rfc822", normalize_crlf(r.original))
    } else {
        ("text/rfc822-headers", normalize_crlf(original.headers))
    };
    let orig_cte = if orig_body.is_ascii() { "7bit" } else { "8bit" };

    let boundary = pick_boundary(&[&text_body, status.as_bytes(), &orig_body]);

    let mut out = Vec::with_capacity(text_body.len() + status.len() + orig_body.len() + 2048);
    let mut message_id = Vec::new();
    mail_builder::headers::message_id::generate_message_id_header(
        &mut message_id,
        &header_safe(r.reporting_mta),
    );

    write_field(&mut out, "From", &header_safe(r.postmaster));
    write_field(&mut out, "To", &format!("<{}>", address_safe(r.to)));
    write_field(&mut out, "Subject", kind.subject());
    write_field(&mut out, "Date", &Date::now().to_rfc822());
    write_field(
        &mut out,
        "Message-ID",
        &String::from_utf8_lossy(&message_id),
    );
    if let Some(id) = &original.message_id {
        let id = format!("<{id}>");
        write_field(&mut out, "In-Reply-To", &id);
        write_field(&mut out, "References", &id);
    }
    write_field(&mut out, "Auto-Submitted", "auto-replied");
    write_field(&mut out, "MIME-Version", "1.0");
    write_field(
        &mut out,
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    );
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b"This is a MIME-encapsulated delivery status notification.\r\n");

    // 1) Human-readable explanation.
    start_part(&mut out, &boundary);
    write_field(&mut out, "Content-Type", "text/plain; charset=utf-8");
    write_field(&mut out, "Content-Description", "Notification");
    write_field(&mut out, "Content-Transfer-Encoding", text_cte);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&text_body);

    // 2) Machine-readable status.
    start_part(&mut out, &boundary);
    write_field(&mut out, "Content-Type", "message/delivery-status");
    write_field(&mut out, "Content-Description", "Delivery report");
    write_field(&mut out, "Content-Transfer-Encoding", "7bit");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(status.as_bytes());

    // 3) The original message or its headers.
    start_part(&mut out, &boundary);
    write_field(&mut out, "Content-Type", orig_ctype);
    write_field(
        &mut out,
        "Content-Description",
        if original.full {
            "Undelivered message"
        } else {
            "Undelivered message headers"
        },
    );
    write_field(&mut out, "Content-Transfer-Encoding", orig_cte);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&orig_body);

    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    Ok(out)
}

/// What we know about the original message.
struct Original<'a> {
    /// Include the whole message (otherwise headers only).
    full: bool,
    /// True when RET=FULL was asked but the message was too large.
    truncated: bool,
    /// The header section (without the separating blank line).
    headers: &'a [u8],
    /// Its Message-ID, sanitised, without angle brackets.
    message_id: Option<String>,
    /// Its Subject, sanitised.
    subject: Option<String>,
}

impl<'a> Original<'a> {
    fn new(r: &Report<'a>) -> Self {
        let headers = header_section(r.original);
        let wants_full = r.ret == Ret::Full;
        let fits = r.original.len() <= r.max_original;
        let parsed = MessageParser::new().parse_headers(headers);
        let message_id = parsed
            .as_ref()
            .and_then(|m| m.message_id())
            .map(|id| {
                id.chars()
                    .filter(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>'))
                    .map(|c| if c.is_ascii() { c } else { '?' })
                    .collect::<String>()
            })
            .filter(|id| !id.is_empty());
        let subject = parsed
            .as_ref()
            .and_then(|m| m.subject())
            .map(text_safe)
            .filter(|s| !s.is_empty());
        Self {
            full: wants_full && fits,
            truncated: wants_full && !fits,
            headers,
            message_id,
            subject,
        }
    }
}

/// The header section of a raw message, up to (not including) the blank line.
fn header_section(msg: &[u8]) -> &[u8] {
    // A message starting with a blank line has an empty header section.
    if msg.starts_with(b"\r\n") || msg.starts_with(b"\n") {
        return &[];
    }
    let mut i = 0;
    while let Some(pos) = msg
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
    {
        let eol = i + pos + 1; // index just past this line's LF
        let rest = msg.get(eol..).unwrap_or_default();
        if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return msg.get(..eol).unwrap_or(msg);
        }
        i = eol;
    }
    msg
}

/// Converts bare LF / bare CR to CRLF and guarantees a trailing CRLF.
fn normalize_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    let mut iter = data.iter().copied().peekable();
    while let Some(b) = iter.next() {
        match b {
            b'\r' => {
                if iter.peek() == Some(&b'\n') {
                    iter.next();
                }
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Picks a MIME boundary that does not occur in any of `bodies`.
fn pick_boundary(bodies: &[&[u8]]) -> String {
    let mut n = 0u32;
    loop {
        let candidate = format!("=_postern-dsn_{}_{n}", make_boundary("_"));
        let needle = candidate.as_bytes();
        if !bodies
            .iter()
            .any(|b| b.windows(needle.len()).any(|w| w == needle))
        {
            return candidate;
        }
        n += 1;
    }
}

fn start_part(out: &mut Vec<u8>, boundary: &str) {
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes `Name: value` folded at spaces to keep lines near 78 columns.
///
/// `value` must already be free of CR/LF (see [`header_safe`]).
fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    let mut line = String::with_capacity(name.len() + value.len() + 4);
    line.push_str(name);
    line.push(':');
    let mut col = line.len();
    for (i, word) in value.split(' ').enumerate() {
        if word.is_empty() {
            continue;
        }
        // A word longer than a line can hold (a remote reply without spaces) is cut into
        // pieces on lines of their own: no line may exceed 998 octets (RFC 5322 §2.1.1).
        let mut rest = word;
        while !rest.is_empty() {
            if (i > 0 || rest.len() < word.len())
                && col + 1 + rest.len() > FOLD_AT
                && col > name.len() + 1
            {
                line.push_str("\r\n");
                col = 0;
            }
            let mut take = rest.len().min(MAX_LINE.saturating_sub(col + 1).max(1));
            while !rest.is_char_boundary(take) {
                take -= 1;
            }
            if take == 0 {
                take = rest.chars().next().map_or(rest.len(), char::len_utf8);
            }
            let (piece, tail) = rest.split_at(take);
            line.push(' ');
            line.push_str(piece);
            col += 1 + piece.len();
            rest = tail;
        }
    }
    line.push_str("\r\n");
    out.extend_from_slice(line.as_bytes());
}

/// Makes untrusted text safe for a header field value: CR, LF and other
/// control characters become spaces and runs of white space collapse.
fn header_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_control() || c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// Like [`header_safe`] and additionally 7-bit: non-ASCII characters become
/// `\x{HEX}` (the RFC 6533 convention).
fn ascii_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in header_safe(s).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
        }
    }
    out
}

/// An address safe for a header: no controls, white space or angle brackets.
fn address_safe(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s);
    s.chars()
        .filter(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>'))
        .collect()
}

/// Text for the human-readable body: one line, no controls.
fn text_safe(s: &str) -> String {
    header_safe(s)
}

/// `rfc822; addr` for ASCII addresses, `utf-8; addr` (escaped) otherwise.
fn typed_address(addr: &str) -> String {
    let addr = address_safe(addr);
    // Accept an address that already carries its type.
    if let Some((ty, rest)) = addr.split_once(';')
        && !ty.is_empty()
        && ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !ty.contains('@')
    {
        return format!("{}; {}", ty, ascii_safe(rest.trim()));
    }
    if addr.is_ascii() {
        format!("rfc822; {addr}")
    } else {
        format!("utf-8; {}", ascii_safe(&addr))
    }
}

/// ORCPT value `type;addr`; a bare address is taken as `rfc822`.
fn original_recipient(orcpt: &str) -> String {
    let v = header_safe(orcpt);
    match v.split_once(';') {
        Some((ty, addr)) if !ty.trim().is_empty() && !ty.contains('@') => {
            format!("{}; {}", ascii_safe(ty.trim()), ascii_safe(addr.trim()))
        }
        _ => typed_address(&v),
    }
}

/// The SMTP reply as one line (multi-line replies joined by spaces).
fn diagnostic_line(d: &str) -> String {
    let d = header_safe(d);
    // Strip a diagnostic type the caller may already have added.
    let d = d
        .strip_prefix("smtp;")
        .or_else(|| d.strip_prefix("SMTP;"))
        .map_or(d.as_str(), str::trim_start);
    d.to_owned()
}

fn status_str(s: (u8, u16, u16)) -> String {
    format!("{}.{}.{}", s.0, s.1, s.2)
}

/// The `message/delivery-status` body (RFC 3464 §2.1).
fn delivery_status(r: &Report<'_>) -> String {
    let mut buf = Vec::new();
    write_field(
        &mut buf,
        "Reporting-MTA",
        &format!("dns; {}", ascii_safe(r.reporting_mta)),
    );
    if let Some(envid) = r.envid {
        let envid = ascii_safe(envid);
        if !envid.is_empty() {
            write_field(&mut buf, "Original-Envelope-Id", &envid);
        }
    }
    write_field(&mut buf, "Arrival-Date", &Date::new(r.arrival).to_rfc822());

    for rcpt in &r.recipients {
        buf.extend_from_slice(b"\r\n");
        if let Some(orcpt) = &rcpt.original_recipient {
            let v = original_recipient(orcpt);
            if !v.is_empty() {
                write_field(&mut buf, "Original-Recipient", &v);
            }
        }
        write_field(
            &mut buf,
            "Final-Recipient",
            &typed_address(&rcpt.final_recipient),
        );
        write_field(&mut buf, "Action", rcpt.action.as_str());
        write_field(&mut buf, "Status", &status_str(rcpt.status));
        if let Some(mta) = &rcpt.remote_mta {
            let mta = ascii_safe(mta);
            if !mta.is_empty() {
                write_field(&mut buf, "Remote-MTA", &format!("dns; {mta}"));
            }
        }
        if let Some(d) = &rcpt.diagnostic {
            let d = ascii_safe(&diagnostic_line(d));
            if !d.is_empty() {
                write_field(&mut buf, "Diagnostic-Code", &format!("smtp; {d}"));
            }
        }
        if let Some(t) = rcpt.last_attempt {
            write_field(&mut buf, "Last-Attempt-Date", &Date::new(t).to_rfc822());
        }
        if rcpt.action == Action::Delayed
            && let Some(t) = rcpt.will_retry_until
        {
            write_field(&mut buf, "Will-Retry-Until", &Date::new(t).to_rfc822());
        }
    }
    // Everything above is ASCII (ascii_safe / fixed strings / dates).
    String::from_utf8_lossy(&buf).into_owned()
}

/// The human-readable explanation (part 1).
fn human_text(r: &Report<'_>, kind: Kind, original: &Original<'_>) -> String {
    let host = text_safe(r.reporting_mta);
    let mut t = String::new();
    let _ = writeln!(t, "This is the mail system at host {host}.");
    t.push('\n');
    match kind {
        Kind::Bounce => {
            t.push_str(
                "I'm sorry to have to inform you that your message could not\n\
                 be delivered to one or more recipients. The details are below.\n",
            );
        }
        Kind::Delay => {
            t.push_str(
                "This is a warning only; you do not need to resend your message.\n\
                 Delivery to the recipients below has been delayed. The mail\n\
                 system will keep trying, no action is needed on your part.\n",
            );
        }
        Kind::Success => {
            t.push_str(
                "Your message was successfully delivered to the destination(s)\n\
                 listed below.\n",
            );
        }
    }
    if let Some(subject) = &original.subject {
        t.push('\n');
        let _ = writeln!(t, "Subject of your message: {subject}");
    }

    let sections: [(Action, &str); 5] = [
        (
            Action::Failed,
            "Delivery to the following recipients failed permanently:",
        ),
        (
            Action::Delayed,
            "Delivery to the following recipients has been delayed:",
        ),
        (Action::Delivered, "Your message was delivered to:"),
        (
            Action::Relayed,
            "Your message was relayed to a system that does not send\n\
             delivery notifications, for:",
        ),
        (
            Action::Expanded,
            "Your message was delivered to the list or alias:",
        ),
    ];
    for (action, heading) in sections {
        let mut any = false;
        for rcpt in r.recipients.iter().filter(|x| x.action == action) {
            if !any {
                t.push('\n');
                t.push_str(heading);
                t.push('\n');
                any = true;
            }
            t.push('\n');
            let _ = writeln!(
                t,
                "  <{}>: {} (status {})",
                address_safe(&rcpt.final_recipient),
                rcpt.action,
                status_str(rcpt.status)
            );
            if let Some(d) = &rcpt.diagnostic {
                let d = diagnostic_line(d);
                if !d.is_empty() {
                    match &rcpt.remote_mta {
                        Some(mta) if !text_safe(mta).is_empty() => {
                            let _ = writeln!(t, "    host {} said: {d}", text_safe(mta));
                        }
                        _ => {
                            let _ = writeln!(t, "    reason: {d}");
                        }
                    }
                }
            }
            if action == Action::Delayed {
                match rcpt.will_retry_until {
                    Some(until) => {
                        let _ = writeln!(
                            t,
                            "    No action is needed; the mail system will keep trying\n    \
                             until {}.",
                            Date::new(until).to_rfc822()
                        );
                    }
                    None => {
                        t.push_str("    No action is needed; the mail system will keep trying.\n");
                    }
                }
            }
        }
    }

    t.push('\n');
    if original.full {
        t.push_str("Your original message is attached.\n");
    } else if original.truncated {
        t.push_str(
            "Your original message was too large to be returned in full;\n\
             only its headers are attached.\n",
        );
    } else {
        t.push_str("The headers of your original message are attached.\n");
    }
    t
}

/// Encodes the text part: 7bit/8bit would do, but we keep the DSN 7-bit
/// clean, so non-ASCII or over-long text becomes quoted-printable.
/// Returns the transfer encoding and the CRLF body.
fn encode_text(text: &str) -> (&'static str, Vec<u8>) {
    let needs_qp = !text.is_ascii() || text.lines().any(|l| l.len() > MAX_LINE);
    if !needs_qp {
        return ("7bit", normalize_crlf(text.as_bytes()));
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 2);
    for line in text.lines() {
        let bytes = line.as_bytes();
        let mut col = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal = (b == b' ' || b == b'\t') && !last || (b.is_ascii_graphic() && b != b'=');
            let width = if literal { 1 } else { 3 };
            if col + width > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if literal {
                out.push(b);
            } else {
                let _ = write!(HexSink(&mut out), "={b:02X}");
            }
            col += width;
        }
        out.extend_from_slice(b"\r\n");
    }
    ("quoted-printable", out)
}

/// `fmt::Write` adapter onto a byte vector.
struct HexSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for HexSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
