//! `mailctl check [DOMAIN]`: the live DNS (through `[dns]`) and the config, checked the way
//! deliverability checklists do. One line per check, `OK`, `WARN` or `FAIL`, with the fix;
//! the exit status is non-zero when anything FAILs (for monitoring).

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use clap::Args;
use postern_config::Config;
use postern_dns::{self as dns, TokioResolver, records};
use serde::Serialize;

/// `mailctl check [DOMAIN] [--ip IP]…`
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The mail domain (default: the host name without its first label).
    pub domain: Option<String>,
    /// This server's public address(es) (default: the non-local `[smtpd] listen` addresses,
    /// else the host name's A/AAAA records).
    #[arg(long)]
    pub ip: Vec<IpAddr>,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Status {
    /// Fine.
    Ok,
    /// Works, but should be improved (or could not be checked).
    Warn,
    /// Broken.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Line {
    /// The check's name.
    pub(crate) check: String,
    /// Its outcome.
    pub(crate) status: Status,
    /// What was found.
    pub(crate) detail: String,
    /// How to fix it (empty when OK).
    pub(crate) fix: String,
}

#[derive(Default)]
struct Report(Vec<Line>);

impl Report {
    fn add(
        &mut self,
        check: &str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Line {
            check: check.to_owned(),
            status,
            detail: detail.into(),
            fix: if status == Status::Ok {
                String::new()
            } else {
                fix.into()
            },
        });
    }
    fn ok(&mut self, check: &str, detail: impl Into<String>) {
        self.add(check, Status::Ok, detail, "");
    }
}

/// The value of the first TXT record at `name` starting with `prefix` (case-insensitive).
async fn txt_with(r: &TokioResolver, name: &str, prefix: &str) -> Result<Option<String>, String> {
    Ok(dns::txt_records(r, name)
        .await?
        .into_iter()
        .find(|t| t.trim_start().to_ascii_lowercase().starts_with(prefix)))
}

/// DNS lookups an SPF record causes (RFC 7208 §4.6.4), following include/redirect.
fn spf_lookups<'a>(
    r: &'a TokioResolver,
    record: String,
    depth: u32,
) -> std::pin::Pin<Box<dyn Future<Output = u32> + 'a>> {
    Box::pin(async move {
        let mut n = 0;
        for term in record.split_whitespace().skip(1) {
            let t = term
                .trim_start_matches(['+', '-', '~', '?'])
                .to_ascii_lowercase();
            let (mech, arg) = match t.split_once([':', '=']) {
                Some((m, a)) => (m.to_owned(), Some(a.to_owned())),
                None => (t.split('/').next().unwrap_or("").to_owned(), None),
            };
            match mech.as_str() {
                "a" | "mx" | "ptr" | "exists" => n += 1,
                "include" | "redirect" => {
                    n += 1;
                    if depth < 10
                        && let Some(dom) = arg
                        && let Ok(Some(sub)) = txt_with(r, &dom, "v=spf1").await
                    {
                        n += spf_lookups(r, sub, depth + 1).await;
                    }
                }
                _ => {}
            }
        }
        n
    })
}

/// What `mailctl check` looks at: this host, the mail domain, and a resolver through `[dns]`.
struct Target {
    /// The host name, lowercase, without a final dot.
    host: String,
    /// The mail domain, lowercase, without a final dot.
    domain: String,
    /// The resolver.
    r: TokioResolver,
}

impl Target {
    /// The host name from the config; the domain from the command line, else the host name
    /// without its first label.
    fn new(config: &Config, a: &CheckArgs) -> anyhow::Result<Self> {
        let host = config.hostname.trim_end_matches('.').to_ascii_lowercase();
        let domain = a
            .domain
            .clone()
            .or_else(|| host.split_once('.').map(|(_, d)| d.to_owned()))
            .unwrap_or_else(|| host.clone())
            .trim_end_matches('.')
            .to_ascii_lowercase();
        Ok(Self {
            host,
            domain,
            r: dns::resolver(config)?,
        })
    }
}

/// Every check, in the order the report lists them.
async fn checks(config: &Config, a: &CheckArgs, report: &mut Report) -> anyhow::Result<()> {
    let t = Target::new(config, a)?;
    hostname_checks(&t, report);
    let check_ips = address_checks(config, &t, &a.ip, report).await;
    mx_check(&t, report).await;
    spf_checks(&t, &check_ips, report).await;
    dkim_checks(config, &t, report).await?;
    dmarc_check(&t, report).await;
    dnsbl_checks(config, &t, &check_ips, report).await;
    tls_check(config, &t.host, report);
    port_checks(config, report);
    Ok(())
}

/// `hostname` (a public FQDN) and `helo`.
fn hostname_checks(t: &Target, report: &mut Report) {
    let h = &t.host;
    if h == "localhost" || h == "localhost.localdomain" || !h.contains('.') {
        report.add(
            "hostname",
            Status::Fail,
            format!("hostname = {h:?} is not a public fully qualified name"),
            "set `hostname` in postern.toml to this server's FQDN, e.g. mail.example.org",
        );
    } else {
        report.ok("hostname", format!("{h} is a fully qualified name"));
    }
    report.ok(
        "helo",
        format!("smtpd says EHLO {h} (it always uses `hostname`)"),
    );
}

/// `a` (the host name resolves to this server) and `ptr` (each address's reverse DNS names
/// the host). Returns the addresses the later checks use: `ips` (given, or the configured
/// listeners'), else what the host name resolves to.
async fn address_checks(
    config: &Config,
    t: &Target,
    given: &[IpAddr],
    report: &mut Report,
) -> Vec<IpAddr> {
    let (h, domain) = (&t.host, &t.domain);
    let addrs = match dns::addresses(&t.r, h).await {
        Ok(v) => v,
        Err(e) => {
            report.add("a", Status::Fail, e, "check [dns] nameservers and the zone");
            Vec::new()
        }
    };
    let ips = crate::dnsrec::server_ips(config, given).await;
    if addrs.is_empty() {
        report.add(
            "a",
            Status::Fail,
            format!("{h} has no A/AAAA record"),
            format!("publish `{h}. IN A <this server's IP>` (mailctl dns {domain})"),
        );
    } else if let Some(missing) = ips.iter().find(|ip| !addrs.contains(ip)) {
        report.add(
            "a",
            Status::Fail,
            format!("{h} resolves to {addrs:?}, not to this server's {missing}"),
            format!("point {h} at {missing}"),
        );
    } else {
        report.ok("a", format!("{h} resolves to {addrs:?}"));
    }
    let check_ips = if ips.is_empty() { addrs } else { ips };
    for ip in &check_ips {
        match dns::ptr_names(&t.r, *ip).await {
            Ok(names) if names.contains(h) => {
                report.ok("ptr", format!("{ip} has PTR {h}, and {h} resolves to it"));
            }
            Ok(names) => report.add(
                "ptr",
                Status::Fail,
                if names.is_empty() {
                    format!("{ip} has no PTR record")
                } else {
                    format!("{ip} has PTR {}, not {h}", names.join(", "))
                },
                format!("ask your hosting provider to set the reverse DNS of {ip} to {h}"),
            ),
            Err(e) => report.add("ptr", Status::Fail, e, "check [dns] nameservers"),
        }
    }
    check_ips
}

/// `mx`: the domain's MX hosts include this host.
async fn mx_check(t: &Target, report: &mut Report) {
    let (h, domain) = (&t.host, &t.domain);
    match dns::mx_hosts(&t.r, domain).await {
        Ok(mx) if mx.iter().any(|(_, n)| n == h) => {
            report.ok("mx", format!("{domain} MX includes {h}"));
        }
        Ok(mx) => report.add(
            "mx",
            Status::Fail,
            if mx.is_empty() {
                format!("{domain} has no MX record")
            } else {
                format!(
                    "{domain} MX is {}, not {h}",
                    mx.iter()
                        .map(|(p, n)| format!("{p} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            format!("publish `{domain}. IN MX 10 {h}.`"),
        ),
        Err(e) => report.add("mx", Status::Fail, e, "check [dns] nameservers"),
    }
}

/// `spf`: the domain has an SPF record that parses; then [`spf_record_checks`].
async fn spf_checks(t: &Target, check_ips: &[IpAddr], report: &mut Report) {
    let domain = &t.domain;
    let spf_fix = format!(
        "publish `{domain}. IN TXT \"{}\"`",
        crate::dnsrec::spf_value(check_ips)
    );
    match txt_with(&t.r, domain, "v=spf1").await {
        Err(e) => report.add("spf", Status::Fail, e, "check [dns] nameservers"),
        Ok(None) => report.add(
            "spf",
            Status::Fail,
            format!("{domain} has no SPF record"),
            spf_fix,
        ),
        Ok(Some(rec)) if !records::spf_parses(&rec) => report.add(
            "spf",
            Status::Fail,
            format!("SPF record does not parse: {rec}"),
            spf_fix,
        ),
        Ok(Some(rec)) => {
            report.ok("spf", format!("{domain}: {rec}"));
            spf_record_checks(t, check_ips, &rec, &spf_fix, report).await;
        }
    }
}

/// `spf-ip` (the record allows each address), `spf-all` (it ends in `-all`/`~all`) and
/// `spf-lookups` (at most 10 DNS lookups) for the domain's parsed SPF record `rec`.
async fn spf_record_checks(
    t: &Target,
    check_ips: &[IpAddr],
    rec: &str,
    spf_fix: &str,
    report: &mut Report,
) {
    let (h, domain) = (&t.host, &t.domain);
    for ip in check_ips {
        let sender = format!("postmaster@{domain}");
        match records::spf_allows(&t.r, *ip, h, h, &sender).await {
            Ok(()) => report.ok("spf-ip", format!("SPF of {domain} allows {ip}")),
            Err(result) => report.add(
                "spf-ip",
                Status::Fail,
                format!("SPF of {domain} does not allow {ip} (result {result})"),
                spf_fix,
            ),
        }
    }
    let last = rec
        .split_whitespace()
        .last()
        .unwrap_or("")
        .to_ascii_lowercase();
    if last == "-all" || last == "~all" || last.starts_with("redirect=") {
        report.ok("spf-all", format!("SPF ends in {last}"));
    } else {
        report.add(
            "spf-all",
            Status::Warn,
            format!("SPF ends in {last:?}: others may send as {domain}"),
            "end the SPF record with -all (or ~all)",
        );
    }
    let n = spf_lookups(&t.r, rec.to_owned(), 0).await;
    if n > 10 {
        report.add(
            "spf-lookups",
            Status::Fail,
            format!("SPF needs {n} DNS lookups (more than 10 is a permerror)"),
            "replace include:/a/mx terms with ip4:/ip6: ones",
        );
    } else {
        report.ok(
            "spf-lookups",
            format!("SPF needs {n} DNS lookup(s), at most 10"),
        );
    }
}

/// `dkim`: a key on disk for the domain, and each key's published record matches it.
async fn dkim_checks(config: &Config, t: &Target, report: &mut Report) -> anyhow::Result<()> {
    let domain = &t.domain;
    let keys = postern_dns::dkim::load_domain(&config.dkim_key_dir(), domain)?;
    if keys.is_empty() {
        report.add(
            "dkim",
            Status::Warn,
            format!("no DKIM key for {domain} on disk: outgoing mail is not signed"),
            format!("mailctl dkim generate {domain}, then publish its record"),
        );
    }
    for k in &keys {
        let name = format!("{}._domainkey.{domain}", k.selector);
        let want: String = k
            .dns_record(domain)
            .split_once(" IN TXT ")
            .map(|(_, v)| v.split('"').skip(1).step_by(2).collect())
            .unwrap_or_default();
        match txt_with(&t.r, &name, "v=dkim1").await {
            Ok(Some(rec))
                if dkim_key_of(&rec) == dkim_key_of(&want) && records::dkim_parses(&rec) =>
            {
                report.ok("dkim", format!("{name} matches the key on disk"));
            }
            Ok(Some(_)) => report.add(
                "dkim",
                Status::Fail,
                format!("{name} does not match the key on disk"),
                format!("publish `{name}. IN TXT \"{want}\"` (mailctl dkim show {domain})"),
            ),
            Ok(None) => report.add(
                "dkim",
                Status::Fail,
                format!("{name} has no DKIM record"),
                format!("publish `{name}. IN TXT \"{want}\"` (mailctl dkim show {domain})"),
            ),
            Err(e) => report.add("dkim", Status::Fail, e, "check [dns] nameservers"),
        }
    }
    Ok(())
}

/// The public key (`p=`, whitespace removed) of a DKIM record.
fn dkim_key_of(record: &str) -> Option<String> {
    record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| k.trim() == "p")
        .map(|(_, v)| v.split_whitespace().collect::<String>())
}

/// `dmarc`: the domain publishes a DMARC record that parses.
async fn dmarc_check(t: &Target, report: &mut Report) {
    let domain = &t.domain;
    let dmarc_fix = format!(
        "publish `_dmarc.{domain}. IN TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}\"`"
    );
    match txt_with(&t.r, &format!("_dmarc.{domain}"), "v=dmarc1").await {
        Ok(Some(rec)) if records::dmarc_parses(&rec) => {
            report.ok("dmarc", format!("_dmarc.{domain}: {rec}"));
        }
        Ok(Some(rec)) => report.add(
            "dmarc",
            Status::Fail,
            format!("DMARC record does not parse: {rec}"),
            dmarc_fix,
        ),
        Ok(None) => report.add(
            "dmarc",
            Status::Fail,
            format!("_dmarc.{domain} has no DMARC record"),
            dmarc_fix,
        ),
        Err(e) => report.add("dmarc", Status::Fail, e, "check [dns] nameservers"),
    }
}

/// `dnsbl`: none of the addresses is listed at the configured `[checks] dnsbl_zones`.
async fn dnsbl_checks(config: &Config, t: &Target, check_ips: &[IpAddr], report: &mut Report) {
    let zones = &config.checks.dnsbl_zones;
    if zones.is_empty() {
        report.add(
            "dnsbl",
            Status::Warn,
            "no [checks] dnsbl_zones configured: blocklists not checked",
            "set [checks] dnsbl_zones (e.g. zen.spamhaus.org)",
        );
    }
    for ip in check_ips {
        for zone in zones {
            let q = dnsbl_name(*ip, zone);
            match dns::a_records(&t.r, &q).await {
                Ok((a, _))
                    if a.iter()
                        .any(|x| x.octets()[0] == 127 && x.octets()[1] != 255) =>
                {
                    report.add(
                        "dnsbl",
                        Status::Fail,
                        format!("{ip} is listed at {zone} ({a:?})"),
                        format!("request delisting at {zone}'s web site after fixing the cause"),
                    )
                }
                Ok(_) => report.ok("dnsbl", format!("{ip} is not listed at {zone}")),
                Err(e) => report.add("dnsbl", Status::Warn, e, "check [dns] nameservers"),
            }
        }
    }
}

/// `port-25`, `port-587`, `port-465`, `port-993`: the first listener of each accepts a TCP
/// connection (an unspecified address is tried on loopback).
fn port_checks(config: &Config, report: &mut Report) {
    let targets: Vec<(&str, SocketAddr)> = [
        ("25", config.smtpd.listen.first()),
        ("587", config.smtpd.submission.first()),
        ("465", config.smtpd.submissions.first()),
        ("993", config.imapd.imaps.first()),
    ]
    .into_iter()
    .filter_map(|(n, a)| a.map(|a| (n, *a)))
    .collect();
    for (name, mut addr) in targets {
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            });
        }
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(_) => report.ok(&format!("port-{name}"), format!("{addr} accepts connections")),
            Err(e) => report.add(
                &format!("port-{name}"),
                Status::Fail,
                format!("{addr}: {e}"),
                "start the daemon (systemctl start postern.target) and open the port in the firewall",
            ),
        }
    }
}

fn dnsbl_name(ip: IpAddr, zone: &str) -> String {
    let rev = crate::dnsrec::reverse_name(ip);
    let base = rev
        .trim_end_matches(".in-addr.arpa")
        .trim_end_matches(".ip6.arpa");
    format!("{base}.{}", zone.trim_matches('.'))
}

fn tls_check(config: &Config, h: &str, report: &mut Report) {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let Some(tls) = &config.tls else {
        report.add(
            "tls",
            Status::Fail,
            "no [tls] certificate configured",
            "set [tls] cert and key (e.g. from Let's Encrypt)",
        );
        return;
    };
    let path = config.resolve(&tls.cert);
    let der = match CertificateDer::pem_file_iter(&path)
        .and_then(|mut i| i.next().ok_or(rustls_pki_types::pem::Error::NoItemsFound)?)
    {
        Ok(d) => d,
        Err(e) => {
            report.add(
                "tls",
                Status::Fail,
                format!("{}: {e}", path.display()),
                "point [tls] cert at a PEM certificate chain",
            );
            return;
        }
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        report.add(
            "tls",
            Status::Fail,
            format!("{}: not an X.509 certificate", path.display()),
            "point [tls] cert at a PEM certificate chain",
        );
        return;
    };
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(n) => {
                        Some(n.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let matches = names.iter().any(|n| {
        n == h
            || n.strip_prefix("*.")
                .is_some_and(|s| h.split_once('.').is_some_and(|(_, r)| r == s))
    });
    if matches {
        report.ok("tls-name", format!("the certificate is valid for {h}"));
    } else {
        report.add(
            "tls-name",
            Status::Fail,
            format!("the certificate names {names:?}, not {h}"),
            format!("get a certificate for {h}"),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let not_after = cert.validity().not_after.timestamp();
    let not_before = cert.validity().not_before.timestamp();
    let days = (not_after - now) / 86_400;
    if now < not_before || now > not_after {
        report.add(
            "tls-expiry",
            Status::Fail,
            "the certificate is not valid now (expired or not yet valid)",
            "renew the certificate",
        );
    } else if days < 14 {
        report.add(
            "tls-expiry",
            Status::Warn,
            format!("the certificate expires in {days} days"),
            "renew the certificate (certbot renew), then systemctl reload",
        );
    } else {
        report.ok(
            "tls-expiry",
            format!("the certificate is valid for {days} more days"),
        );
    }
    if cert.subject() == cert.issuer() {
        report.add(
            "tls-issuer",
            Status::Warn,
            "the certificate is self-signed",
            "use a certificate from a public CA (Let's Encrypt) so clients and MTA-STS trust it",
        );
    }
}

/// Runs `mailctl check`; an error when anything failed.
pub(crate) async fn run(a: &CheckArgs, config: &Config, json: bool) -> anyhow::Result<()> {
    let mut report = Report::default();
    checks(config, a, &mut report).await?;
    let fails = report.0.iter().filter(|l| l.status == Status::Fail).count();
    if json {
        println!("{}", serde_json::to_string(&report.0)?);
    } else {
        for l in &report.0 {
            let s = match l.status {
                Status::Ok => "OK  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("{s} {:<12} {}", l.check, l.detail);
            if !l.fix.is_empty() {
                println!("     {:<12} fix: {}", "", l.fix);
            }
        }
    }
    if fails > 0 {
        anyhow::bail!("{fails} check(s) failed");
    }
    Ok(())
}
