//! SPF (RFC 7208) at MAIL; DKIM (RFC 6376) and DMARC (RFC 7489) after DATA, with mail-auth
//! over the `[dns]` resolver; the `Authentication-Results` header (RFC 8601) with our host
//! name as authserv-id; and what DMARC asks for: `p=reject` refuses with `550 5.7.1`,
//! `p=quarantine` marks the message for the Junk folder (`X-Postern-Junk`), `pct` honoured
//! (a message not selected gets the next lower policy, RFC 7489 §6.6.4).

use std::net::IpAddr;

use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, SpfOutput, SpfResult,
};
use postern_config::CheckMode;
use postern_mail_types::try_split;
use postern_smtp_session::Reply;

use super::{Budget, Checks, clean};

/// The header lmtp-deliver reads to file a message into the recipient's Junk folder.
pub const JUNK_HEADER: &str = "X-Postern-Junk";
/// The header of checks in `tag` mode (HELO, DNSBL) that found something.
pub(crate) const TAG_HEADER: &str = "X-Postern-Tag";

/// SPF's verdict on the MAIL FROM identity (or HELO, for `<>`).
pub(crate) struct Spf {
    pub(crate) output: SpfOutput,
    /// The reverse-path; `None` for `<>` (then the HELO name was checked).
    pub(crate) mail_from: Option<String>,
    pub(crate) helo: String,
    /// The message's DNS time budget ran out before SPF had an answer (a `temperror`).
    pub(crate) late: bool,
}

impl Spf {
    /// The domain whose SPF was checked (DMARC's RFC5321.MailFrom domain).
    pub(crate) fn domain(&self) -> &str {
        self.output.domain()
    }
}

/// Checks SPF for a transaction, within the message's DNS time `budget` (past it: a
/// `temperror`, RFC 7208 §2.6.6).
pub(crate) async fn spf(
    checks: &Checks,
    budget: &Budget,
    ip: IpAddr,
    helo: &str,
    sender: Option<&str>,
) -> Spf {
    let host = checks.hostname.as_str();
    let temporary = |o: &SpfOutput| o.result() == SpfResult::TempError;
    let output = match sender {
        Some(s) => {
            budget
                .retrying(
                    || {
                        checks
                            .auth
                            .verify_spf(SpfParameters::verify_mail_from(ip, helo, host, s))
                    },
                    temporary,
                )
                .await
        }
        None => {
            budget
                .retrying(
                    || {
                        checks
                            .auth
                            .verify_spf(SpfParameters::verify_ehlo(ip, helo, host))
                    },
                    temporary,
                )
                .await
        }
    };
    let late = output.is_none();
    let output = output.unwrap_or_else(|| {
        let domain = match sender {
            Some(s) => try_split(s).map_or(s, |(_, d)| d),
            None => helo,
        };
        SpfOutput::new(domain.to_ascii_lowercase()).with_result(SpfResult::TempError)
    });
    Spf {
        output,
        mail_from: sender.map(str::to_owned),
        helo: helo.to_owned(),
        late,
    }
}

/// The refusal of `spf = "reject"`: `550 5.7.23` for an SPF `fail`, `451 4.7.24` when the
/// message's DNS time budget ran out before SPF had an answer.
pub(crate) fn spf_refusal(spf: &Spf, ip: IpAddr) -> Option<Reply> {
    if spf.late {
        return Some(Reply::new(
            451,
            (4, 7, 24),
            format!(
                "SPF check of {} could not be completed in time (temperror); try again later",
                clean(spf.domain())
            ),
        ));
    }
    (spf.output.result() == SpfResult::Fail).then(|| {
        Reply::new(
            550,
            (5, 7, 23),
            format!(
                "SPF check failed: {} does not designate {ip} as permitted sender",
                clean(spf.domain())
            ),
        )
    })
}

pub(crate) fn spf_text(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_text(r: &DkimResult) -> (&'static str, Option<String>) {
    match r {
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(e) => ("neutral", Some(e.to_string())),
        DkimResult::Fail(e) => ("fail", Some(e.to_string())),
        DkimResult::PermError(e) => ("permerror", Some(e.to_string())),
        DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
        DkimResult::None => ("none", None),
    }
}

fn dmarc_text(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

/// What the end-of-data checks decided.
#[derive(Debug, Default)]
pub(crate) struct AfterData {
    /// Header fields to add (each ending in CRLF).
    pub(crate) headers: String,
    /// Refuse the message: the reply, and the reason for logs and statistics.
    pub(crate) refuse: Option<(Reply, &'static str)>,
    /// DMARC quarantine: marked for the Junk folder.
    pub(crate) junk: bool,
}

/// Whether the checks after DATA need the message's body: only DKIM signatures do (their
/// body hashes). For a header section in which mail-auth finds no DKIM signature it can
/// parse, the DKIM results (none, or neutral for each malformed signature) and so the
/// DMARC result are the same without the body, so a spooled body is not read back into
/// memory for them.
pub(crate) fn body_needed(head: &[u8]) -> bool {
    AuthenticatedMessage::parse(head).is_some_and(|m| !m.dkim_headers.is_empty())
}

/// The checks after DATA, within what is left of the message's DNS time `budget`. `tags`
/// are findings of checks in `tag` mode.
pub(crate) async fn after_data(
    checks: &Checks,
    budget: &Budget,
    message: &[u8],
    spf: Option<&Spf>,
    tags: &[String],
) -> AfterData {
    const LATE: &str = "DNS time budget exceeded";
    let cfg = &checks.cfg;
    let mut out = AfterData::default();
    let mut results: Vec<String> = Vec::new();
    if cfg.spf.on()
        && let Some(s) = spf
    {
        let r = spf_text(s.output.result());
        let late = if s.late {
            format!(" ({LATE})")
        } else {
            String::new()
        };
        results.push(match &s.mail_from {
            Some(from) => format!("spf={r}{late} smtp.mailfrom={}", ar_value(from)),
            None => format!("spf={r}{late} smtp.helo={}", ar_value(&s.helo)),
        });
    }
    let parsed = AuthenticatedMessage::parse(message);
    let (dkim, dkim_late): (Vec<DkimOutput<'_>>, bool) = match &parsed {
        Some(m) if cfg.dkim.on() || cfg.dmarc.on() => {
            let temporary = |d: &Vec<DkimOutput<'_>>| {
                d.iter()
                    .any(|o| matches!(o.result(), DkimResult::TempError(_)))
            };
            match budget
                .retrying(|| checks.auth.verify_dkim(m), temporary)
                .await
            {
                Some(d) => (d, false),
                None => (Vec::new(), true),
            }
        }
        _ => (Vec::new(), false),
    };
    if cfg.dkim.on() {
        if dkim_late {
            results.push(format!("dkim=temperror ({LATE})"));
        } else if dkim.is_empty() {
            results.push("dkim=none".into());
        }
        for o in &dkim {
            let (r, why) = dkim_text(o.result());
            let mut t = format!("dkim={r}");
            if let Some(why) = why.filter(|_| r != "pass") {
                t.push_str(&format!(" ({})", clean(&why).replace(['(', ')', '\\'], "")));
            }
            if let Some(sig) = o.signature() {
                t.push_str(&format!(
                    " header.d={} header.s={}",
                    ar_value(&sig.d),
                    ar_value(&sig.s)
                ));
            }
            results.push(t);
        }
        if cfg.dkim == CheckMode::Reject
            && !dkim.is_empty()
            && !dkim.iter().any(|o| *o.result() == DkimResult::Pass)
            && dkim
                .iter()
                .any(|o| matches!(o.result(), DkimResult::Fail(_)))
        {
            out.refuse = Some((
                Reply::new(
                    550,
                    (5, 7, 20),
                    "Message rejected: no valid DKIM signature (RFC 7372)",
                ),
                "dkim_fail",
            ));
        }
    }
    if cfg.dmarc.on() {
        let from_domain = || {
            parsed
                .as_ref()
                .and_then(|m| m.from.first())
                .and_then(|f| try_split(f))
                .map(|(_, d)| d.to_ascii_lowercase())
        };
        let dmarc = match (&parsed, spf) {
            (Some(m), Some(s)) => budget
                .retrying(
                    || {
                        checks.auth.verify_dmarc(DmarcParameters::new(
                            m,
                            &dkim,
                            s.domain(),
                            &s.output,
                        ))
                    },
                    |d| matches!(d.result(), DmarcResult::TempError(_)),
                )
                .await
                .ok_or(()),
            _ => Ok(DmarcOutput::default()),
        };
        let late = dmarc.is_err() || spf.is_some_and(|s| s.late) || dkim_late;
        match &dmarc {
            Err(()) => {
                let mut t = format!("dmarc=temperror ({LATE})");
                if let Some(d) = from_domain() {
                    t.push_str(&format!(" header.from={}", ar_value(&d)));
                }
                results.push(t);
                if cfg.dmarc == CheckMode::Reject && out.refuse.is_none() {
                    out.refuse = Some((dmarc_late_reply(), "dmarc_temperror"));
                }
            }
            Ok(d) if !d.domain().is_empty() => {
                // A `fail` is not known to be one when a check that could have aligned ran
                // out of time: DKIM, or SPF of a domain aligned with the From: domain.
                let mut result = d.result();
                if matches!(result, DmarcResult::Fail(_))
                    && (dkim_late || spf.is_some_and(|s| s.late && aligned(s.domain(), d.domain())))
                {
                    result = DmarcResult::TempError(mail_auth::Error::Dns(
                        mail_auth::DnsError::Resolver(LATE.into()),
                    ));
                }
                let mut t = format!(
                    "dmarc={} header.from={}",
                    dmarc_text(&result),
                    ar_value(d.domain())
                );
                if d.dmarc_record().is_some() {
                    t.push_str(&format!(" policy.dmarc={}", d.policy()));
                }
                results.push(t);
                if cfg.dmarc == CheckMode::Reject && out.refuse.is_none() {
                    if matches!(result, DmarcResult::Fail(_)) {
                        apply_policy(checks, budget, d, &mut out).await;
                    } else if matches!(result, DmarcResult::TempError(_))
                        && late
                        && matches!(d.policy(), Policy::Reject | Policy::Quarantine)
                    {
                        out.refuse = Some((dmarc_late_reply(), "dmarc_temperror"));
                    }
                }
            }
            Ok(_) => results.push("dmarc=none".into()),
        }
    }
    if !results.is_empty() {
        out.headers = format!(
            "Authentication-Results: {};\r\n\t{}\r\n",
            checks.hostname,
            results.join(";\r\n\t")
        ) + &out.headers;
    }
    for t in tags {
        out.headers
            .push_str(&format!("{TAG_HEADER}: {}\r\n", clean(t)));
    }
    out
}

/// Relaxed alignment, roughly: one domain is the other or below it.
fn aligned(a: &str, b: &str) -> bool {
    let (a, b) = (
        a.trim_end_matches('.').to_ascii_lowercase(),
        b.trim_end_matches('.').to_ascii_lowercase(),
    );
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

/// `dmarc = "reject"` and the message's DNS time budget ran out before DMARC was known.
fn dmarc_late_reply() -> Reply {
    Reply::new(
        451,
        (4, 7, 1),
        "DMARC check could not be completed in time (temperror); try again later",
    )
}

/// DMARC failed: what the domain's policy (and `pct`) asks for.
async fn apply_policy(checks: &Checks, budget: &Budget, d: &DmarcOutput, out: &mut AfterData) {
    let policy = d.policy();
    if !matches!(policy, Policy::Reject | Policy::Quarantine) {
        return;
    }
    let pct = budget
        .within(dmarc_pct(checks, d.domain()))
        .await
        .unwrap_or(100);
    let selected = pct >= 100 || rand::random_range(0..100u8) < pct;
    let effective = match (policy, selected) {
        (Policy::Reject, true) => Policy::Reject,
        (Policy::Reject, false) | (Policy::Quarantine, true) => Policy::Quarantine,
        _ => Policy::None,
    };
    let domain = clean(d.domain());
    match effective {
        Policy::Reject => {
            out.refuse = Some((
                Reply::new(
                    550,
                    (5, 7, 1),
                    format!(
                        "Message rejected: the DMARC policy of {domain} is reject, and the message is neither SPF- nor DKIM-aligned with From: {domain}"
                    ),
                ),
                "dmarc_reject",
            ));
        }
        Policy::Quarantine => {
            out.junk = true;
            out.headers
                .push_str(&format!("{JUNK_HEADER}: dmarc-quarantine ({domain})\r\n"));
        }
        _ => {}
    }
}

/// The `pct` of the DMARC record that applies to `domain` (its own, or an ancestor's);
/// 100 when absent or unreadable.
async fn dmarc_pct(checks: &Checks, domain: &str) -> u8 {
    let mut d = domain.trim_end_matches('.');
    loop {
        if let Ok(records) =
            postern_dns::txt_records(checks.resolver(), &format!("_dmarc.{d}")).await
            && let Some(r) = records
                .iter()
                .find(|r| r.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
        {
            return parse_pct(r);
        }
        match d.split_once('.') {
            Some((_, rest)) if rest.contains('.') => d = rest,
            _ => return 100,
        }
    }
}

/// `pct=N` of a DMARC record (0–100; anything else is 100).
pub(crate) fn parse_pct(record: &str) -> u8 {
    record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("pct"))
        .and_then(|(_, v)| v.trim().parse::<u8>().ok())
        .filter(|p| *p <= 100)
        .unwrap_or(100)
}

/// Removes from the message header every `Authentication-Results` field whose authserv-id
/// is `hostname` (RFC 8601 §5: a forged result claiming to be ours) or cannot be parsed
/// (a field other software might read differently), and every `X-Postern-` field (our own
/// markers), with their continuation lines. `None` when nothing was removed.
pub(crate) fn strip_forged(message: &[u8], hostname: &str) -> Option<Vec<u8>> {
    let end = header_end(message);
    let mut out = Vec::with_capacity(message.len());
    let mut removed = false;
    let mut i = 0;
    while i < end {
        // One field: its first line and every continuation line (starting with SP or HT).
        let mut field_end = line_end(message, i, end);
        while field_end < end && matches!(message[field_end], b' ' | b'\t') {
            field_end = line_end(message, field_end, end);
        }
        let field = &message[i..field_end];
        if is_ours(field, hostname) {
            removed = true;
        } else {
            out.extend_from_slice(field);
        }
        i = field_end;
    }
    if !removed {
        return None;
    }
    out.extend_from_slice(&message[end..]);
    Some(out)
}

/// The offset just after the line starting at `i` (its LF included), at most `end`.
fn line_end(message: &[u8], i: usize, end: usize) -> usize {
    message[i..end]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(end, |p| i + p + 1)
}

/// The offset just after the header's last line (before the empty line).
fn header_end(message: &[u8]) -> usize {
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'\n' || message[i..].starts_with(b"\r\n") {
            return i;
        }
        match message[i..].iter().position(|&b| b == b'\n') {
            Some(p) => i += p + 1,
            None => return message.len(),
        }
    }
    message.len()
}

/// Whether a whole header field (folded lines included) is one we remove: an
/// `X-Postern-` field, or an `Authentication-Results` field with our authserv-id or with
/// none that parses.
fn is_ours(field: &[u8], hostname: &str) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = String::from_utf8_lossy(&field[..colon])
        .trim()
        .to_ascii_lowercase();
    if name.starts_with("x-postern-") {
        return true;
    }
    if name != "authentication-results" {
        return false;
    }
    // Unfolded: line breaks removed (RFC 5322 §2.2.3); the folding whitespace stays.
    let value: Vec<u8> = field[colon + 1..]
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    match authserv_id(&value) {
        Some(id) => id
            .trim_end_matches('.')
            .eq_ignore_ascii_case(hostname.trim_end_matches('.')),
        None => true,
    }
}

/// Skips CFWS (RFC 5322 §3.2.2: whitespace and comments, nested, with quoted-pairs) from
/// `i`; `None` for an unterminated comment.
fn skip_cfws(v: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match v.get(i) {
            Some(b' ' | b'\t') => i += 1,
            Some(b'(') => {
                let mut depth = 0usize;
                loop {
                    match v.get(i)? {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        b'\\' => i += 1,
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => return Some(i),
        }
    }
}

/// The authserv-id of an unfolded `Authentication-Results` value (RFC 8601 §2.2:
/// `[CFWS] authserv-id [CFWS authres-version] ";" …` or `… ; none`), a token or a
/// quoted-string; `None` when the value does not have that shape.
fn authserv_id(v: &[u8]) -> Option<String> {
    let mut i = skip_cfws(v, 0)?;
    let id = if v.get(i) == Some(&b'"') {
        i += 1;
        let mut id = Vec::new();
        loop {
            match *v.get(i)? {
                b'"' => break,
                b'\\' => {
                    i += 1;
                    id.push(*v.get(i)?);
                }
                b => id.push(b),
            }
            i += 1;
        }
        i += 1;
        id
    } else {
        let start = i;
        while v
            .get(i)
            .is_some_and(|&b| b >= 0x80 || (b.is_ascii_graphic() && !b"();\"\\".contains(&b)))
        {
            i += 1;
        }
        v[start..i].to_vec()
    };
    if id.is_empty() || id.iter().any(|b| b.is_ascii_control()) {
        return None;
    }
    // An optional version (digits), then the `;` that every form has.
    let mut j = skip_cfws(v, i)?;
    if j > i && v.get(j).is_some_and(u8::is_ascii_digit) {
        while v.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j = skip_cfws(v, j)?;
    }
    if v.get(j) != Some(&b';') {
        return None;
    }
    String::from_utf8(id).ok()
}

/// A value we write into `Authentication-Results` that came from the client (an address,
/// a domain, a selector): as it is when it is made only of characters that cannot end the
/// value (letters, digits and `.-_@+=` and the like: RFC 5322 atext without `;`), else as a
/// quoted-string (RFC 8601 `value`), control characters dropped, at most 200 characters.
pub(crate) fn ar_value(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@+=!#$%&'*/?^`{|}~".contains(&b));
    if plain {
        return s;
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spooled body is read back only when a DKIM signature needs it; without one, what
    /// DKIM and DMARC look at (signatures, malformed ones, From:) is the same in the header
    /// section alone as in the whole message.
    #[test]
    fn the_body_is_needed_only_for_dkim_signatures() {
        let body = b"\r\nDKIM-Signature: v=1; in the body, not a header\r\nhello\r\n".repeat(100);
        let whole = |head: &[u8]| [head, &body[..]].concat();
        let unsigned: &[u8] = b"From: Alice <alice@example.net>\r\nSubject: hi\r\n";
        let malformed: &[u8] =
            b"From: <alice@example.net>\r\nDKIM-Signature: v=1; garbage\r\nSubject: hi\r\n";
        let signed: &[u8] = b"From: <alice@example.net>\r\n\
dkim-signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=s1;\r\n\
\th=from:subject; bh=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=; b=AAAA\r\n\
Subject: hi\r\n";
        assert!(!body_needed(unsigned));
        assert!(!body_needed(malformed));
        assert!(body_needed(signed));
        assert!(!body_needed(b""));
        for head in [unsigned, malformed] {
            let (h, w) = (AuthenticatedMessage::parse(head).unwrap(), whole(head));
            let w = AuthenticatedMessage::parse(&w).unwrap();
            assert!(h.dkim_headers.is_empty() && w.dkim_headers.is_empty());
            assert_eq!(h.from, w.from);
            assert_eq!(h.errors.len(), w.errors.len());
            assert_eq!(h.has_dkim_errors, w.has_dkim_errors);
        }
        let w = whole(signed);
        assert_eq!(
            AuthenticatedMessage::parse(&w).unwrap().dkim_headers.len(),
            1
        );
    }

    #[test]
    fn pct_values() {
        assert_eq!(parse_pct("v=DMARC1; p=reject"), 100);
        assert_eq!(parse_pct("v=DMARC1; p=reject; pct=20"), 20);
        assert_eq!(parse_pct("v=DMARC1;p=quarantine;PCT = 0"), 0);
        assert_eq!(parse_pct("v=DMARC1; pct=150"), 100);
        assert_eq!(parse_pct("v=DMARC1; pct=x"), 100);
    }

    #[test]
    fn forged_results_are_removed() {
        let m = b"Authentication-Results: MX.example.org;\r\n\tdkim=pass header.d=bank.test\r\n\
Authentication-Results: other.test; spf=fail\r\n\
Subject: hi\r\n\
Authentication-Results: (comment) mx.example.org. ; spf=pass\r\n\
X-Postern-Junk: no\r\n\
\r\n\
Authentication-Results: mx.example.org; in the body stays\r\n";
        let out = String::from_utf8(strip_forged(m, "mx.example.org").unwrap()).unwrap();
        assert_eq!(
            out,
            "Authentication-Results: other.test; spf=fail\r\nSubject: hi\r\n\r\n\
Authentication-Results: mx.example.org; in the body stays\r\n"
        );
        assert!(strip_forged(b"Subject: x\r\n\r\nbody\r\n", "mx.example.org").is_none());
        assert!(
            strip_forged(
                b"Authentication-Results: mx.example.org.evil; x\r\n\r\n",
                "mx.example.org"
            )
            .is_none()
        );
    }

    /// Issue 11 §4: forms that survived the old first-line, flat-comment parse.
    #[test]
    fn forged_results_folded_or_nested_are_removed() {
        let host = "mx.example.org";
        let cases: &[&[u8]] = &[
            // The authserv-id on a continuation line.
            b"Authentication-Results:\r\n\tmx.example.org; dkim=pass header.d=bank.test\r\n",
            b"Authentication-Results:\n mx.example.org; dkim=pass\n",
            // Nested comments before it.
            b"Authentication-Results: (a(b)c) mx.example.org; dkim=pass\r\n",
            b"Authentication-Results: (a\\)b) mx.example.org; dkim=pass\r\n",
            b"Authentication-Results: (a\r\n (b)\r\n c)\r\n mx.example.org\r\n ; dkim=pass\r\n",
            // As a quoted-string, with a version.
            b"Authentication-Results: \"mx.example.org\" 1; spf=pass\r\n",
            // Unparseable: dropped whoever they claim to be.
            b"Authentication-Results: (unterminated mx.example.org; dkim=pass\r\n",
            b"Authentication-Results: ; dkim=pass\r\n",
            b"Authentication-Results:\r\n",
            b"Authentication-Results: mx.example.org\x00evil; dkim=pass\r\n",
            b"Authentication-Results: mx.example.org dkim=pass\r\n",
            b"Authentication-Results: \"mx.example.org; dkim=pass\r\n",
        ];
        for forged in cases {
            let mut m = forged.to_vec();
            m.extend_from_slice(b"Subject: hi\r\n\r\nbody\r\n");
            let out = strip_forged(&m, host)
                .unwrap_or_else(|| panic!("kept {:?}", String::from_utf8_lossy(forged)));
            assert_eq!(
                out,
                b"Subject: hi\r\n\r\nbody\r\n",
                "{:?}",
                String::from_utf8_lossy(forged)
            );
        }
        // Another host's results, folded and commented, stay.
        let theirs = b"Authentication-Results: (x (y)) other.test\r\n\t1; spf=pass\r\n\r\n";
        assert!(strip_forged(theirs, host).is_none());
    }

    #[test]
    fn client_values_cannot_add_results() {
        assert_eq!(ar_value("user@example.net"), "user@example.net");
        assert_eq!(ar_value("bank.test"), "bank.test");
        assert_eq!(ar_value("a+b=c@x.test"), "a+b=c@x.test");
        assert_eq!(
            ar_value("\"x dkim=pass\"@evil.test"),
            "\"\\\"x dkim=pass\\\"@evil.test\""
        );
        assert_eq!(ar_value("evil.test; dkim=pass"), "\"evil.test; dkim=pass\"");
        assert_eq!(ar_value("a\\\"b"), "\"a\\\\\\\"b\"");
        assert_eq!(ar_value(""), "\"\"");
        // Whatever the value, the header parses back to one resinfo per result.
        for v in [
            "x dkim=pass",
            "x;dkim=pass",
            "x\\\"; dkim=pass",
            "(x",
            "x\r\n\tdkim=pass",
        ] {
            let q = ar_value(v);
            let mut in_quotes = false;
            let mut escaped = false;
            for c in q.chars() {
                match (escaped, in_quotes, c) {
                    (true, _, _) => escaped = false,
                    (false, true, '\\') => escaped = true,
                    (false, _, '"') => in_quotes = !in_quotes,
                    (false, false, ';' | ' ' | '(' | '\\') => panic!("{v:?} broke out as {q:?}"),
                    (_, _, '\r' | '\n') => panic!("{v:?} kept a line break: {q:?}"),
                    _ => {}
                }
            }
            assert!(!in_quotes, "{v:?} left a quote open: {q:?}");
        }
    }
}
