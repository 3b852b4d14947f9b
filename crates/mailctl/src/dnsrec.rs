//! `mailctl dns DOMAIN`: every DNS record to publish for mail of DOMAIN on this server —
//! MX, A/AAAA of the host name, SPF, DKIM (the keys on disk), DMARC, MTA-STS, TLS-RPT, SRV
//! and autoconfig names for mail clients — and the PTR record to ask the provider for. Zone
//! file lines, or `--json`.

use std::net::{IpAddr, SocketAddr};

use clap::Args;
use postern_config::Config;
use serde::Serialize;

/// `mailctl dns DOMAIN [--ip IP]…`
#[derive(Args, Debug)]
pub struct DnsArgs {
    /// The mail domain.
    pub domain: String,
    /// This server's public address(es) (default: the non-local `[smtpd] listen` addresses,
    /// else the host name's A/AAAA records).
    #[arg(long)]
    pub ip: Vec<IpAddr>,
}

/// One record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Record {
    /// Owner name, without the final dot.
    pub(crate) name: String,
    /// `MX`, `A`, `TXT`, …
    #[serde(rename = "type")]
    pub(crate) rtype: String,
    /// The value as in a zone file (TXT: the text itself, unquoted).
    pub(crate) value: String,
    /// What it is for.
    pub(crate) note: String,
}

impl Record {
    fn new(name: &str, rtype: &str, value: impl Into<String>, note: &str) -> Self {
        Self {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            rtype: rtype.to_owned(),
            value: value.into(),
            note: note.to_owned(),
        }
    }

    /// The zone file line.
    pub(crate) fn zone_line(&self) -> String {
        let value = if self.rtype == "TXT" {
            self.value
                .as_bytes()
                .chunks(255)
                .map(|c| format!("\"{}\"", String::from_utf8_lossy(c).replace('"', "\\\"")))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            self.value.clone()
        };
        format!("{}.\t3600\tIN\t{}\t{value}", self.name, self.rtype)
    }
}

fn port_of(addrs: &[SocketAddr], default: u16) -> u16 {
    addrs
        .first()
        .map(SocketAddr::port)
        .filter(|p| *p != 0)
        .unwrap_or(default)
}

/// The reverse name of `ip`.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// The SPF record for `ips` (`mx -all` when none is known).
pub(crate) fn spf_value(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        return "v=spf1 mx -all".into();
    }
    let mut v = String::from("v=spf1");
    for ip in ips {
        match ip {
            IpAddr::V4(a) => v.push_str(&format!(" ip4:{a}")),
            IpAddr::V6(a) => v.push_str(&format!(" ip6:{a}")),
        }
    }
    v.push_str(" -all");
    v
}

/// The MTA-STS policy file, served at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`.
pub(crate) fn mta_sts_policy(hostname: &str) -> String {
    format!("version: STSv1\nmode: testing\nmx: {hostname}\nmax_age: 86400\n")
}

/// Every record for `domain`.
pub(crate) fn records(
    config: &Config,
    domain: &str,
    ips: &[IpAddr],
) -> anyhow::Result<Vec<Record>> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let h = config.hostname.trim_end_matches('.').to_ascii_lowercase();
    let mut r = vec![Record::new(
        &d,
        "MX",
        format!("10 {h}."),
        "mail for the domain comes here",
    )];
    for ip in ips {
        let t = if ip.is_ipv4() { "A" } else { "AAAA" };
        r.push(Record::new(&h, t, ip.to_string(), "this server's address"));
    }
    r.push(Record::new(
        &d,
        "TXT",
        spf_value(ips),
        "SPF: only this server sends for the domain",
    ));
    r.push(Record::new(
        &h,
        "TXT",
        "v=spf1 a -all",
        "SPF for the HELO name",
    ));
    let keys = postern_dns::dkim::load_domain(&config.dkim_key_dir(), &d)?;
    for k in &keys {
        let line = k.dns_record(&d);
        let value: String = line
            .split_once(" IN TXT ")
            .map(|(_, v)| v.split('"').skip(1).step_by(2).collect())
            .unwrap_or_default();
        r.push(Record::new(
            &format!("{}._domainkey.{d}", k.selector),
            "TXT",
            value,
            "DKIM public key (mailctl dkim show)",
        ));
    }
    r.push(Record::new(
        &format!("_dmarc.{d}"),
        "TXT",
        format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{d}"),
        "DMARC: start with p=none, read the reports, then quarantine/reject",
    ));
    r.push(Record::new(
        &format!("_mta-sts.{d}"),
        "TXT",
        format!("v=STSv1; id={}", policy_id()),
        "MTA-STS: change id whenever the policy file changes",
    ));
    r.push(Record::new(
        &format!("mta-sts.{d}"),
        "CNAME",
        format!("{h}."),
        "serves https://mta-sts.DOMAIN/.well-known/mta-sts.txt (the policy below)",
    ));
    r.push(Record::new(
        &format!("_smtp._tls.{d}"),
        "TXT",
        format!("v=TLSRPTv1; rua=mailto:tls-reports@{d}"),
        "TLS-RPT: where others report TLS failures",
    ));
    let s = &config.smtpd;
    let i = &config.imapd;
    for (service, port) in [
        ("_submission._tcp", port_of(&s.submission, 587)),
        ("_submissions._tcp", port_of(&s.submissions, 465)),
        ("_imap._tcp", port_of(&i.imap, 143)),
        ("_imaps._tcp", port_of(&i.imaps, 993)),
        ("_pop3s._tcp", port_of(&i.pop3s, 995)),
    ] {
        r.push(Record::new(
            &format!("{service}.{d}"),
            "SRV",
            format!("0 1 {port} {h}."),
            "mail clients find the server (RFC 6186/8314)",
        ));
    }
    for name in ["autoconfig", "autodiscover"] {
        r.push(Record::new(
            &format!("{name}.{d}"),
            "CNAME",
            format!("{h}."),
            "mail client autoconfiguration ([autoconfig] listener)",
        ));
    }
    for ip in ips {
        r.push(Record::new(
            &reverse_name(*ip),
            "PTR",
            format!("{h}."),
            "ask your hosting provider for this one (reverse DNS)",
        ));
    }
    Ok(r)
}

fn policy_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    postern_control::format_time(t as i64)
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

/// This server's public addresses: `--ip`, else non-local listen addresses, else DNS.
pub(crate) async fn server_ips(config: &Config, given: &[IpAddr]) -> Vec<IpAddr> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let mut ips: Vec<IpAddr> = config
        .smtpd
        .listen
        .iter()
        .map(SocketAddr::ip)
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
        .collect();
    ips.dedup();
    if ips.is_empty()
        && let Ok(r) = postern_dns::resolver(config)
        && let Ok(a) = postern_dns::addresses(&r, &config.hostname).await
    {
        ips = a;
    }
    ips
}

/// Runs `mailctl dns`.
pub(crate) async fn run(a: &DnsArgs, config: &Config, json: bool) -> anyhow::Result<()> {
    let ips = server_ips(config, &a.ip).await;
    let recs = records(config, &a.domain, &ips)?;
    let h = config.hostname.trim_end_matches('.');
    let policy = mta_sts_policy(h);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "domain": a.domain.trim_end_matches('.').to_ascii_lowercase(),
                "hostname": h,
                "ips": ips,
                "records": recs,
                "mta_sts_policy": policy,
            })
        );
        return Ok(());
    }
    println!("; DNS records for {} on {h}", a.domain);
    if ips.is_empty() {
        println!("; no public address known: pass --ip ADDRESS (SPF falls back to `mx`)");
    }
    let mut last = String::new();
    for r in &recs {
        if r.note != last {
            println!("; {}", r.note);
            last = r.note.clone();
        }
        println!("{}", r.zone_line());
    }
    println!(";");
    println!(
        "; MTA-STS policy file (https://mta-sts.{}/.well-known/mta-sts.txt):",
        a.domain
    );
    for l in policy.lines() {
        println!(";   {l}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_lines_and_spf() {
        let ips: Vec<IpAddr> = vec![
            "192.0.2.25".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
        ];
        assert_eq!(
            spf_value(&ips),
            "v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all"
        );
        assert_eq!(spf_value(&[]), "v=spf1 mx -all");
        let long = Record::new("s._domainkey.Example.org.", "TXT", "x".repeat(300), "");
        let line = long.zone_line();
        assert!(
            line.starts_with("s._domainkey.example.org.\t3600\tIN\tTXT\t\""),
            "{line}"
        );
        assert_eq!(line.matches('"').count(), 4, "two strings: {line}");
        assert_eq!(reverse_name(ips[0]), "25.2.0.192.in-addr.arpa");
        assert!(reverse_name(ips[1]).ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"));
        assert!(postern_dns::records::spf_parses(&spf_value(&ips)));
    }
}
