//! After DATA: for each accepted recipient, trace headers, the quota, the user's Sieve
//! script, then the Maildir — one LMTP reply per recipient. A broken or failing script
//! never loses mail: the message goes to INBOX and the reason is logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use postern_maildir::{
    Destination, Flags, Maildir, MaildirError, MessageCopy, QuotaLimit, QuotaPolicy,
    RecipientDelivery, StoredCopies, crlf_to_lf,
};
use postern_sieve::{Action as SieveAction, Envelope, HeaderEdits, vacation};
use postern_smtp_session::{Reply, Transaction};
use tracing::{Instrument, info, warn};

use crate::Ctx;
use crate::rcpt::{Lookup, Rcpt, Recipients};
use crate::submit::{Kind, Submission, SubmitTo, hand_over};
use crate::vacation_log::VacationLog;
use crate::view::MailView;

/// Largest Sieve script read.
const MAX_SCRIPT: u64 = 1 << 20;

/// Delivers `tx` to each recipient; one reply each, in RCPT order. Logged in the span
/// `deliver{id=QUEUE-ID}`, with the id of the topmost `Received:` field (smtpd's queue id,
/// or another MTA's), so that grepping smtpd's queue id finds the stores too.
pub(crate) async fn deliver_all(
    ctx: &Ctx,
    recipients: &mut Recipients,
    tx: &Transaction,
    peer: &str,
) -> Vec<Reply> {
    let span = tracing::info_span!("deliver", id = tracing::field::Empty);
    if let Some(id) = trace_id(&tx.message) {
        span.record("id", tracing::field::display(&id));
    }
    deliver_each(ctx, recipients, tx, peer)
        .instrument(span)
        .await
}

/// The `id` clause of the message's topmost `Received:` field (RFC 5321 §4.4), if it is a
/// plain token (letters, digits, `.`, `-`, `_`; at most 64 characters).
pub(crate) fn trace_id(message: &[u8]) -> Option<String> {
    let lines = message
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut field: Vec<u8> = Vec::new();
    let mut inside = false;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let folded = line[0] == b' ' || line[0] == b'\t';
        if inside {
            if !folded {
                break;
            }
            field.push(b' ');
            field.extend_from_slice(line);
        } else if !folded && line.len() > 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            inside = true;
            field.extend_from_slice(&line[9..]);
        }
    }
    if !inside {
        return None;
    }
    // The clauses come before the `;` and the date.
    let clauses = field.split(|&b| b == b';').next().unwrap_or(&[]);
    let token = {
        let mut words = clauses
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        loop {
            let w = words.next()?;
            if w.eq_ignore_ascii_case(b"id") {
                break words.next()?;
            }
        }
    };
    let ok = !token.is_empty()
        && token.len() <= 64
        && token
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    ok.then(|| String::from_utf8_lossy(token).into_owned())
}

async fn deliver_each(
    ctx: &Ctx,
    recipients: &mut Recipients,
    tx: &Transaction,
    peer: &str,
) -> Vec<Reply> {
    let view = Arc::new(MailView::parse(&tx.message));
    let mut replies = Vec::with_capacity(tx.recipients.len());
    for (address, _) in &tx.recipients {
        let rcpt = match recipients.accepted(address.as_str()) {
            Some(r) => r.clone(),
            // Not remembered (should not happen): ask again rather than guess.
            None => match recipients.lookup(address).await {
                Lookup::Found(r) => r,
                Lookup::Unknown => {
                    replies.push(Reply::new(
                        550,
                        (5, 1, 1),
                        format!("<{address}> User doesn't exist"),
                    ));
                    continue;
                }
                Lookup::Unavailable(_) => {
                    replies.push(Reply::new(
                        451,
                        (4, 3, 0),
                        format!("<{address}> Temporary user lookup failure"),
                    ));
                    continue;
                }
            },
        };
        let one = One {
            ctx,
            tx,
            view: &view,
            address: address.as_str(),
            rcpt: &rcpt,
            peer,
        };
        let started = std::time::Instant::now();
        let reply = match one.deliver().await {
            Ok(r) => r,
            Err(DeliverError::Quota) => {
                crate::metrics::quota();
                recipients.quota_reply(address)
            }
            Err(DeliverError::Store(e)) => {
                warn!(rcpt = %address, error = %e, "delivery failed");
                if e.io_kind() == Some(std::io::ErrorKind::StorageFull) {
                    Reply::new(
                        452,
                        (4, 3, 1),
                        format!("<{address}> Insufficient system storage"),
                    )
                } else {
                    Reply::new(
                        451,
                        (4, 3, 0),
                        format!("<{address}> Temporary delivery failure"),
                    )
                }
            }
        };
        crate::metrics::delivery(reply.code(), started);
        replies.push(reply);
    }
    replies
}

enum DeliverError {
    Quota,
    Store(MaildirError),
}

/// One recipient's delivery.
struct One<'a> {
    ctx: &'a Ctx,
    tx: &'a Transaction,
    view: &'a Arc<MailView>,
    address: &'a str,
    rcpt: &'a Rcpt,
    peer: &'a str,
}

static QUEUE_ID: AtomicU64 = AtomicU64::new(1);

/// The header smtpd adds to a message that DMARC quarantines (smtpd removes any copy that
/// came from outside).
pub(crate) const JUNK_HEADER: &str = "X-Postern-Junk";

/// Whether the message header has a field `name`.
fn has_header(message: &[u8], name: &str) -> bool {
    for line in message.split(|&b| b == b'\n') {
        if line.is_empty() || line == b"\r" {
            return false;
        }
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
        {
            return true;
        }
    }
    false
}

/// This process's id for [`One::trace`], asked of the kernel once (not per message).
static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

impl One<'_> {
    /// The trace header fields this recipient's copy starts with.
    fn trace(&self) -> Vec<u8> {
        let from = self.tx.mail_from.as_ref().map_or("", |a| a.as_str());
        let id = format!(
            "{:x}{:04x}",
            *PID.get_or_init(std::process::id),
            QUEUE_ID.fetch_add(1, Ordering::Relaxed)
        );
        let date = mail_builder::headers::date::Date::now().to_rfc822();
        format!(
            "Return-Path: <{from}>\r\nDelivered-To: {to}\r\nReceived: from {helo} ({peer})\r\n\tby {host} (Postern) with {proto} id {id}\r\n\tfor <{to}>; {date}\r\n",
            to = self.address,
            helo = sanitize(&self.tx.helo),
            peer = sanitize(self.peer),
            host = self.ctx.config.hostname,
            proto = self.tx.protocol(),
        )
        .into_bytes()
    }

    /// The quota, the Sieve script, the folders and the stores all happen in one trip to the
    /// blocking pool ([`Plan::run`]); redirects and vacation replies go out afterwards, and
    /// only a redirect that fails costs a second trip (to keep a copy in INBOX).
    async fn deliver(&self) -> Result<Reply, DeliverError> {
        // The message as it is stored for this recipient: trace headers, then the message.
        let trace = self.trace();
        // Stored with LF line ends, built in one pass (the trace ends in CRLF, so converting
        // the two apart is converting them together).
        let trace_lf = crlf_to_lf(&trace);
        let body_lf = crlf_to_lf(&self.tx.message);
        let mut stored = Vec::with_capacity(trace_lf.len() + body_lf.len());
        stored.extend_from_slice(&trace_lf);
        stored.extend_from_slice(&body_lf);
        drop(body_lf);
        let plan = Plan {
            trace_len: trace_lf.len(),
            maildir: self.rcpt.maildir.clone(),
            quota: self.rcpt.quota,
            script: self
                .ctx
                .config
                .sieve_script_path(&self.rcpt.user, &self.rcpt.home.to_string_lossy()),
            envelope: Envelope {
                from: self.tx.mail_from.as_ref().map(|a| a.as_str().to_owned()),
                to: self.address.to_owned(),
            },
            view: Arc::clone(self.view),
            address: self.address.to_owned(),
            detail: self.rcpt.detail.clone(),
            junk: has_header(&self.tx.message, JUNK_HEADER),
            allow_special_use: self.ctx.config.lmtp.plus_address_special_use,
        };
        let planned = if crate::busy::alone().await && plan.small(stored.len()) {
            // The only connection at work: nothing else needs this thread meanwhile.
            plan.run(stored)
        } else {
            blocking(move || Ok(plan.run(stored)))
                .await
                .map_err(DeliverError::Store)?
        };
        let Planned {
            delivery,
            later,
            reject,
            stored,
            header_edits,
        } = planned;
        // What redirects send (CRLF, with the trace fields), made only when there is one;
        // as the script edited it (RFC 5293 §7).
        let message = if !later.iter().any(|l| matches!(l, Later::Redirect(_))) {
            Vec::new()
        } else if header_edits.is_empty() {
            [&trace[..], &self.tx.message[..]].concat()
        } else {
            [&trace[..], &header_edits.apply(&self.tx.message)[..]].concat()
        };
        let mut done = match delivery {
            Ok(RecipientDelivery::Stored(done)) => done,
            Ok(RecipientDelivery::OverQuota) => {
                info!(rcpt = %self.address, "mailbox over quota");
                return Err(DeliverError::Quota);
            }
            Err(e) => return Err(DeliverError::Store(e)),
        };
        let mut failed_redirects = 0;
        for action in later {
            match action {
                Later::Redirect(address) => {
                    if !self.redirect(&address, &message).await {
                        failed_redirects += 1;
                    }
                }
                Later::Vacation(v) => self.vacation(&v).await,
            }
        }
        if failed_redirects > 0 {
            // Never lose it: keep a copy in INBOX for each redirect that failed (the quota
            // was checked already).
            let dir = self.rcpt.maildir.clone();
            let quota = match self.rcpt.quota {
                0 => QuotaPolicy::Unlimited,
                q => QuotaPolicy::Record(QuotaLimit::from(q)),
            };
            let copies = vec![MessageCopy::to(Destination::Inbox); failed_redirects];
            let kept = blocking(move || {
                Maildir::at(&dir, Maildir::DEFAULT_DIR_MODE).deliver_copies(&stored, &copies, quota)
            })
            .await;
            match kept {
                Ok(RecipientDelivery::Stored(more)) => {
                    done.copies.extend(more.copies);
                    if let Some(e) = more.first_error {
                        done.first_error.get_or_insert(e);
                    }
                    if let Some(e) = more.quota_error {
                        done.quota_error.get_or_insert(e);
                    }
                }
                Ok(RecipientDelivery::OverQuota) => {}
                Err(e) => {
                    done.first_error.get_or_insert(e);
                }
            }
        }
        if let Some(reason) = reject {
            info!(rcpt = %self.address, "rejected by Sieve");
            let reason = sanitize(&reason);
            return Ok(Reply::new(
                550,
                (5, 7, 1),
                format!(
                    "<{}> {}",
                    self.address,
                    if reason.is_empty() {
                        "Rejected"
                    } else {
                        &reason
                    }
                ),
            ));
        }
        let StoredCopies {
            copies,
            first_error,
            quota_error,
        } = done;
        if copies.is_empty() {
            if let Some(e) = first_error {
                return Err(DeliverError::Store(e));
            }
        } else if let Some(e) = first_error {
            warn!(rcpt = %self.address, error = %e, "one copy could not be stored; others were");
        }
        for (folder, d) in &copies {
            info!(rcpt = %self.address, user = %self.rcpt.user, folder = %folder, size = d.size, "saved");
        }
        if let Some(e) = quota_error {
            warn!(rcpt = %self.address, error = %e, "maildirsize not updated");
        }
        Ok(Reply::new(
            250,
            (2, 0, 0),
            format!("<{}> Saved", self.address),
        ))
    }

    /// Forwards the message; false when it could not be handed over.
    async fn redirect(&self, to: &str, message: &[u8]) -> bool {
        let Some(target) = SubmitTo::of(&self.ctx.config) else {
            warn!(
                rcpt = %self.address,
                to, "Sieve redirect, but [lmtp] submit_to is not set; keeping"
            );
            return false;
        };
        if self
            .view
            .values("delivered-to")
            .iter()
            .any(|d| d.trim().eq_ignore_ascii_case(to))
        {
            warn!(
                rcpt = %self.address,
                to, "Sieve redirect loop (Delivered-To already names the target); keeping"
            );
            return false;
        }
        // Forward without our Return-Path (it is set at final delivery).
        let body = message
            .strip_prefix(b"Return-Path: ")
            .map_or(message, |rest| {
                rest.iter()
                    .position(|&b| b == b'\n')
                    .map_or(message, |i| &rest[i + 1..])
            });
        let from = self.tx.mail_from.as_ref().map_or("", |a| a.as_str());
        match hand_over(
            &target,
            &self.ctx.config.hostname,
            Kind::Forward,
            self.address,
            &Submission {
                from,
                to,
                message: body,
            },
        )
        .await
        {
            Ok(()) => {
                info!(rcpt = %self.address, target = to, "redirected by Sieve");
                true
            }
            Err(e) => {
                warn!(rcpt = %self.address, target = to, error = %e, "Sieve redirect failed; keeping");
                false
            }
        }
    }

    async fn vacation(&self, v: &vacation::Vacation) {
        let sender = self.tx.mail_from.as_ref().map(|a| a.as_str().to_owned());
        let mut ours = vec![self.address.to_owned(), self.rcpt.user.clone()];
        ours.extend(v.addresses.iter().cloned());
        let check = vacation::VacationCheck {
            envelope_from: sender.as_deref(),
            recipient_addresses: &ours,
            message: &**self.view,
        };
        if let Err(skip) = vacation::should_respond(check) {
            info!(rcpt = %self.address, reason = %skip, "vacation: no reply");
            return;
        }
        let Some(sender) = sender else { return };
        let key = vacation::dedup_key(&sender, &v.handle);
        let log = VacationLog::new(&self.rcpt.home);
        if log.recently(&key, v.days) {
            info!(rcpt = %self.address, sender = %sender, "vacation: already answered recently");
            return;
        }
        let Some(target) = SubmitTo::of(&self.ctx.config) else {
            warn!(
                rcpt = %self.address,
                "vacation, but [lmtp] submit_to is not set"
            );
            return;
        };
        let reply = match self.vacation_message(v, &sender) {
            Ok(m) => m,
            Err(e) => {
                warn!(rcpt = %self.address, error = %e, "vacation message could not be built");
                return;
            }
        };
        // RFC 5230 §5.1 / RFC 3834: replies go out with the null sender.
        match hand_over(
            &target,
            &self.ctx.config.hostname,
            Kind::AutoReply,
            &self.rcpt.user,
            &Submission {
                from: "",
                to: &sender,
                message: &reply,
            },
        )
        .await
        {
            Ok(()) => {
                info!(rcpt = %self.address, sender = %sender, "vacation reply sent");
                if let Err(e) = log.record(&key) {
                    warn!(error = %e, "vacation memory not written");
                }
            }
            Err(e) => warn!(rcpt = %self.address, error = %e, "vacation reply failed"),
        }
    }

    fn vacation_message(&self, v: &vacation::Vacation, to: &str) -> std::io::Result<Vec<u8>> {
        let from = v.from.clone().unwrap_or_else(|| self.rcpt.user.clone());
        let mut b = MessageBuilder::new()
            .from(from.as_str())
            .to(to)
            .subject(v.subject.as_str())
            .header("Auto-Submitted", Raw::new("auto-replied (vacation)"))
            .header("Precedence", Raw::new("bulk"));
        if let Some(id) = self.view.first("message-id") {
            let id = id
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned();
            if !id.is_empty() && !id.contains(['\r', '\n']) {
                b = b.in_reply_to(id.clone()).references(id);
            }
        }
        if v.mime {
            // `reason` is a MIME entity (its own headers, a blank line, the body): keep
            // mail-builder's header lines except the content ones, then append the entity.
            let built = b.text_body("").write_to_vec()?;
            let head_end = built
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(built.len(), |i| i + 2);
            let head = String::from_utf8_lossy(&built[..head_end]).into_owned();
            let mut out = String::new();
            let mut skip = false;
            for line in head.split_inclusive("\r\n") {
                if !line.starts_with([' ', '\t']) {
                    let lower = line.to_ascii_lowercase();
                    skip = lower.starts_with("content-type:")
                        || lower.starts_with("content-transfer-encoding:");
                }
                if !skip {
                    out.push_str(line);
                }
            }
            out.push_str(&v.reason.replace("\r\n", "\n").replace('\n', "\r\n"));
            return Ok(out.into_bytes());
        }
        b.text_body(v.reason.as_str()).write_to_vec()
    }
}

/// What the blocking part of one recipient's delivery needs (all owned: it runs on the
/// blocking pool).
struct Plan {
    /// Bytes of the stored message that are the trace fields (before the message itself;
    /// Sieve neither sees nor edits them).
    trace_len: usize,
    maildir: PathBuf,
    /// Bytes; 0 = none.
    quota: u64,
    script: PathBuf,
    envelope: Envelope,
    view: Arc<MailView>,
    address: String,
    detail: Option<String>,
    /// smtpd marked the message as junk (`X-Postern-Junk`).
    junk: bool,
    allow_special_use: bool,
}

/// What the blocking part did, and what is left for the async part.
struct Planned {
    /// The stores (or the quota refusal, or why the quota could not be read).
    delivery: Result<RecipientDelivery, MaildirError>,
    /// Redirects and vacation replies, in script order.
    later: Vec<Later>,
    /// The script rejected the message, with this reason.
    reject: Option<String>,
    /// The message as stored (for a copy kept when a redirect fails).
    stored: Vec<u8>,
    /// The script's `editheader` changes (already made to `stored`).
    header_edits: HeaderEdits,
}

/// A Sieve action that needs the network.
enum Later {
    Redirect(String),
    Vacation(vacation::Vacation),
}

impl Plan {
    /// Whether a delivery of `len` bytes is small enough to run on the runtime's thread when
    /// it is alone ([`crate::busy`]): its write and fsync take about as long as a slot
    /// commit in smtpd's queue, and a Sieve script is bounded by the run limits.
    fn small(&self, len: usize) -> bool {
        len <= INLINE_MAX
    }

    /// Opens the Maildir once, runs the user's script, resolves the default folder and
    /// hands every copy to [`Maildir::deliver_copies`], which checks the quota first.
    fn run(self, mut stored: Vec<u8>) -> Planned {
        let quota = match self.quota {
            0 => QuotaPolicy::Unlimited,
            q => QuotaPolicy::Enforce(QuotaLimit::from(q)),
        };
        // Nothing is looked at on disk here: the delivery creates what is missing (a user's
        // first message makes the Maildir) and quota counts a missing Maildir as empty.
        let maildir = Maildir::at(&self.maildir, Maildir::DEFAULT_DIR_MODE);
        let (actions, header_edits) = self.sieve_actions(Some(&maildir));
        if !header_edits.is_empty() {
            // The script's header edits, below the trace fields (RFC 5293: every copy
            // stored or redirected carries them).
            let at = self.trace_len.min(stored.len());
            let edited = header_edits.apply(&stored[at..]);
            stored.truncate(at);
            stored.extend_from_slice(&edited);
        }
        let default_folder = self.default_folder(&maildir);
        let mut copies = Vec::new();
        let mut later = Vec::new();
        let mut reject = None;
        for action in actions {
            crate::metrics::sieve_action(&action);
            match action {
                SieveAction::Keep { flags } => copies.push(MessageCopy {
                    destination: default_folder
                        .clone()
                        .map_or(Destination::Inbox, Destination::Folder),
                    flags: to_flags(&flags),
                }),
                SieveAction::FileInto {
                    mailbox,
                    create,
                    flags,
                    ..
                } => {
                    let destination = if postern_maildir::folder::dir_name(&mailbox).is_err() {
                        warn!(rcpt = %self.address, folder = %mailbox, "fileinto: bad folder name; keeping in INBOX");
                        Destination::Inbox
                    } else if create {
                        Destination::CreateFolder(mailbox)
                    } else {
                        Destination::Folder(mailbox)
                    };
                    copies.push(MessageCopy {
                        destination,
                        flags: to_flags(&flags),
                    });
                }
                SieveAction::Redirect { address, .. } => later.push(Later::Redirect(address)),
                SieveAction::Discard => info!(rcpt = %self.address, "discarded by Sieve"),
                SieveAction::Reject { reason, .. } => reject = Some(reason),
                SieveAction::Vacation(v) => later.push(Later::Vacation(v)),
            }
        }
        let delivery = maildir.deliver_copies(&stored, &copies, quota);
        Planned {
            delivery,
            later,
            reject,
            stored,
            header_edits,
        }
    }

    /// `user+detail` files into the folder named `detail` (compared without regard to
    /// case, as addresses are) when it exists and is not a special-use folder (unless
    /// `lmtp.plus_address_special_use`), else INBOX.
    ///
    /// A message smtpd marked as junk (the `X-Postern-Junk` header, from a DMARC
    /// `p=quarantine`) goes to the `Junk` folder instead, when the user has one.
    fn default_folder(&self, m: &Maildir) -> Option<String> {
        if self.junk {
            let junk = m
                .list_folders()
                .ok()
                .and_then(|all| all.into_iter().find(|f| f.eq_ignore_ascii_case("Junk")));
            if junk.is_some() {
                info!(
                    rcpt = %self.address,
                    "marked as junk by smtpd: filed into Junk"
                );
                return junk;
            }
        }
        let detail = self.detail.as_deref()?;
        crate::rcpt::plus_folder(m, detail, self.allow_special_use)
    }

    /// The user's script's actions and header edits, or a plain keep (and the message
    /// unchanged, RFC 5293 §7) when there is no script or it fails.
    fn sieve_actions(&self, maildir: Option<&Maildir>) -> (Vec<SieveAction>, HeaderEdits) {
        let keep = (
            vec![SieveAction::Keep { flags: Vec::new() }],
            HeaderEdits::default(),
        );
        let path = &self.script;
        let Some(source) = read_script(path) else {
            return keep;
        };
        let script = match postern_sieve::compile(&source) {
            Ok(s) => s,
            Err(e) => {
                warn!(rcpt = %self.address, script = %path.display(), error = %e, "Sieve script does not compile; delivering to INBOX");
                return keep;
            }
        };
        let exists = |name: &str| {
            name.eq_ignore_ascii_case("INBOX")
                || maildir.is_some_and(|m| m.folder_exists(name).unwrap_or(false))
        };
        let ctx = postern_sieve::Context {
            message: &*self.view,
            envelope: &self.envelope,
            mailbox_exists: &exists,
        };
        // `include :personal "x"` (RFC 6609) reads x.sieve next to the active script, in the
        // user's ManageSieve storage (~/sieve, Pigeonhole's layout); no global scripts.
        let scripts = include_dir(path);
        let load = |name: &str, loc: postern_sieve::IncludeLocation| match loc {
            postern_sieve::IncludeLocation::Personal => {
                read_script(&scripts.join(format!("{name}.sieve")))
            }
            postern_sieve::IncludeLocation::Global => None,
        };
        match postern_sieve::execute_with_includes(&script, &ctx, &load) {
            Ok(outcome) => {
                for w in &outcome.warnings {
                    warn!(rcpt = %self.address, "Sieve: {w}");
                }
                if !outcome.header_edits.is_empty() {
                    info!(rcpt = %self.address, edits = outcome.header_edits.len(), "Sieve edited the header");
                }
                (outcome.actions, outcome.header_edits)
            }
            Err(e) => {
                warn!(rcpt = %self.address, script = %path.display(), error = %e, "Sieve script failed; delivering to INBOX");
                keep
            }
        }
    }
}

fn to_flags(flags: &[String]) -> Flags {
    let mut f = Flags::default();
    for flag in flags {
        match flag.to_ascii_lowercase().as_str() {
            "\\seen" => f.seen = true,
            "\\answered" => f.answered = true,
            "\\flagged" => f.flagged = true,
            "\\deleted" => f.deleted = true,
            "\\draft" => f.draft = true,
            s if s.starts_with('\\') => {}
            _ => f.keywords.push(flag.clone()),
        }
    }
    f
}

/// Where `include :personal` looks: the directory of the script the active link points at
/// (`~/sieve`), or `sieve/` beside an active script that is a plain file.
fn include_dir(active: &Path) -> PathBuf {
    match std::fs::canonicalize(active) {
        Ok(real) if std::fs::symlink_metadata(active).is_ok_and(|m| m.file_type().is_symlink()) => {
            real.parent()
                .map_or_else(|| PathBuf::from("/nonexistent"), Path::to_path_buf)
        }
        _ => active.parent().unwrap_or(Path::new("/")).join("sieve"),
    }
}

fn read_script(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    if f.take(MAX_SCRIPT + 1).read_to_string(&mut text).is_err() || text.len() as u64 > MAX_SCRIPT {
        warn!(script = %path.display(), "Sieve script unreadable or too large; ignoring it");
        return None;
    }
    Some(text)
}

/// Keeps header text on one line of printable characters.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Largest message delivered on the runtime's thread ([`Plan::small`]).
const INLINE_MAX: usize = 256 << 10;

/// Runs `f` on the blocking pool, inside the caller's span (so its events carry the queue id).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MaildirError> + Send + 'static,
) -> Result<T, MaildirError> {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(r) => r,
        Err(e) => Err(MaildirError::Io {
            op: "delivery task",
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

#[cfg(test)]
mod junk_tests {
    use super::*;

    #[test]
    fn junk_header_in_the_header_only() {
        assert!(has_header(
            b"Subject: x\r\nX-Postern-Junk: dmarc\r\n\r\nbody",
            JUNK_HEADER
        ));
        assert!(has_header(b"x-postern-junk: y\n\n", JUNK_HEADER));
        assert!(!has_header(
            b"Subject: x\r\n\r\nX-Postern-Junk: body\r\n",
            JUNK_HEADER
        ));
        assert!(!has_header(b"X-Postern-Junkmail: no\r\n\r\n", JUNK_HEADER));
    }
}

#[cfg(test)]
mod trace_id_tests {
    use super::trace_id;

    #[test]
    fn the_topmost_received_fields_id() {
        let m = b"Received: from c.example ([192.0.2.1])\r\n\tby mx.example (Postern) with ESMTPS id 0006112233445566aa01\r\n\tfor <a@example.org>;\r\n\tSun, 6 Dec 2026 12:00:00 +0000\r\nReceived: from x by y with SMTP id OLDER;\r\n d\r\nSubject: s\r\n\r\nbody";
        assert_eq!(trace_id(m).as_deref(), Some("0006112233445566aa01"));
        // Postfix's form, LF only, after other fields.
        let m = b"X-Other: 1\nReceived: from a (a [192.0.2.2]) by b (Postfix) with ESMTP id 4Ab1Cd2;\n\tdate\n\nbody";
        assert_eq!(trace_id(m).as_deref(), Some("4Ab1Cd2"));
        let local = b"Received: from local uid 1000 by mx.example (Postern) with local id 0006aa;\r\n\tdate\r\n\r\n";
        assert_eq!(trace_id(local).as_deref(), Some("0006aa"));
    }

    #[test]
    fn no_id_or_a_strange_one() {
        // The topmost field has no id: a later one is not ours to name.
        assert_eq!(
            trace_id(b"Received: from a by b;\r\n d\r\nReceived: by c id X;\r\n d\r\n\r\n"),
            None
        );
        assert_eq!(
            trace_id(b"Subject: id 5\r\n\r\nReceived: by c id X;\r\n"),
            None
        );
        assert_eq!(trace_id(b"Received: by c id \"a b\"\r\n\r\n"), None);
        assert_eq!(trace_id(b"Received: by c id a\x1b[31m;\r\n\r\n"), None);
        assert_eq!(trace_id(b"Received: by c id\r\n\r\n"), None);
        assert_eq!(
            trace_id(format!("Received: by c id {};\r\n\r\n", "a".repeat(65)).as_bytes()),
            None
        );
        // `id` after the `;` is part of the date, not a clause.
        assert_eq!(trace_id(b"Received: by c; id 7\r\n\r\n"), None);
    }
}
