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
use postern_smtp_session::Reply;

use super::{Checks, clean};

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
}

impl Spf {
    /// The domain whose SPF was checked (DMARC's RFC5321.MailFrom domain).
    pub(crate) fn domain(&self) -> &str {
        self.output.domain()
    }
}

/// Checks SPF for a transaction.
pub(crate) async fn spf(checks: &Checks, ip: IpAddr, helo: &str, sender: Option<&str>) -> Spf {
    let host = checks.hostname.as_str();
    let output = match sender {
        Some(s) => {
            checks
                .auth
                .verify_spf(SpfParameters::verify_mail_from(ip, helo, host, s))
                .await
        }
        None => {
            checks
                .auth
                .verify_spf(SpfParameters::verify_ehlo(ip, helo, host))
                .await
        }
    };
    Spf {
        output,
        mail_from: sender.map(str::to_owned),
        helo: helo.to_owned(),
    }
}

/// The `550 5.7.23` of `spf = "reject"` for an SPF `fail`.
pub(crate) fn spf_refusal(spf: &Spf, ip: IpAddr) -> Option<Reply> {
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

/// The checks after DATA. `tags` are findings of checks in `tag` mode.
pub(crate) async fn after_data(
    checks: &Checks,
    message: &[u8],
    spf: Option<&Spf>,
    tags: &[String],
) -> AfterData {
    let cfg = &checks.cfg;
    let mut out = AfterData::default();
    let mut results: Vec<String> = Vec::new();
    if cfg.spf.on()
        && let Some(s) = spf
    {
        let r = spf_text(s.output.result());
        results.push(match &s.mail_from {
            Some(from) => format!("spf={r} smtp.mailfrom={}", clean(from)),
            None => format!("spf={r} smtp.helo={}", clean(&s.helo)),
        });
    }
    let parsed = AuthenticatedMessage::parse(message);
    let dkim: Vec<DkimOutput<'_>> = match &parsed {
        Some(m) if cfg.dkim.on() || cfg.dmarc.on() => checks.auth.verify_dkim(m).await,
        _ => Vec::new(),
    };
    if cfg.dkim.on() {
        if dkim.is_empty() {
            results.push("dkim=none".into());
        }
        for o in &dkim {
            let (r, why) = dkim_text(o.result());
            let mut t = format!("dkim={r}");
            if let Some(why) = why.filter(|_| r != "pass") {
                t.push_str(&format!(" ({})", clean(&why).replace(['(', ')'], "")));
            }
            if let Some(sig) = o.signature() {
                t.push_str(&format!(
                    " header.d={} header.s={}",
                    clean(&sig.d),
                    clean(&sig.s)
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
        let dmarc = match (&parsed, spf) {
            (Some(m), Some(s)) => Some(
                checks
                    .auth
                    .verify_dmarc(DmarcParameters::new(m, &dkim, s.domain(), &s.output))
                    .await,
            ),
            _ => None,
        };
        match &dmarc {
            Some(d) if !d.domain().is_empty() => {
                let result = d.result();
                let mut t = format!(
                    "dmarc={} header.from={}",
                    dmarc_text(&result),
                    clean(d.domain())
                );
                if d.dmarc_record().is_some() {
                    t.push_str(&format!(" policy.dmarc={}", d.policy()));
                }
                results.push(t);
                if cfg.dmarc == CheckMode::Reject
                    && matches!(result, DmarcResult::Fail(_))
                    && out.refuse.is_none()
                {
                    apply_policy(checks, d, &mut out).await;
                }
            }
            _ => results.push("dmarc=none".into()),
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

/// DMARC failed: what the domain's policy (and `pct`) asks for.
async fn apply_policy(checks: &Checks, d: &DmarcOutput, out: &mut AfterData) {
    let policy = d.policy();
    if !matches!(policy, Policy::Reject | Policy::Quarantine) {
        return;
    }
    let pct = dmarc_pct(checks, d.domain()).await;
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
            crate::dns::txt_records(checks.resolver(), &format!("_dmarc.{d}")).await
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
/// is `hostname` (RFC 8601 §5: a forged result claiming to be ours) and every `X-Postern-`
/// field (our own markers), with their continuation lines.
pub(crate) fn strip_forged(message: &[u8], hostname: &str) -> Option<Vec<u8>> {
    let end = header_end(message);
    let mut out = Vec::with_capacity(message.len());
    let mut removed = false;
    let mut skipping = false;
    let mut i = 0;
    while i < end {
        let line_end = message[i..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |p| i + p + 1);
        let line = &message[i..line_end];
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            skipping = is_ours(line, hostname);
        }
        if skipping {
            removed = true;
        } else {
            out.extend_from_slice(line);
        }
        i = line_end;
    }
    if !removed {
        return None;
    }
    out.extend_from_slice(&message[end..]);
    Some(out)
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

fn is_ours(line: &[u8], hostname: &str) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = String::from_utf8_lossy(&line[..colon])
        .trim()
        .to_ascii_lowercase();
    if name.starts_with("x-postern-") {
        return true;
    }
    if name != "authentication-results" {
        return false;
    }
    // The authserv-id: the first token of the value (comments aside), up to `;`.
    let value = String::from_utf8_lossy(&line[colon + 1..]);
    let mut v = value.trim_start();
    while let Some(rest) = v.strip_prefix('(') {
        v = rest.split_once(')').map_or("", |(_, r)| r).trim_start();
    }
    let id: String = v
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ';' && *c != '(')
        .collect();
    id.trim_end_matches('.')
        .eq_ignore_ascii_case(hostname.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
