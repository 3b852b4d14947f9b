//! Entry points for the fuzz targets in `fuzz/` (not an API: nothing else may use them).
//! Each runs a parser that reads bytes from the network on `input` and checks what must
//! hold of its result (a failed check panics, which the fuzzer reports).

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::autoconfig;
use crate::checks::spf_dkim_dmarc;
use crate::outbound::sts;

/// The autoconfig/autodiscover HTTP request reader on `input` (as if a client sent it),
/// then what is done with the request before the domain lookup: the query or the POX body,
/// the address check and both XML documents. Returns the address it would look up.
pub fn autoconfig(input: &[u8]) -> Option<String> {
    let mut reader = input;
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(autoconfig::read_request(&mut reader));
    let Poll::Ready(req) = fut.as_mut().poll(&mut cx) else {
        panic!("reading a request from memory never waits");
    };
    let req = req.ok()?;
    assert!(
        req.body.len() <= autoconfig::MAX_BODY,
        "body over the limit"
    );
    let address = match autoconfig::query_param(&req.query, "emailaddress") {
        Ok(Some(a)) => a,
        _ => autoconfig::pox_email(&req.body)?,
    };
    let (address, domain) = autoconfig::valid_address(&address)?;
    let settings = autoconfig::Settings {
        hostname: "mx.example.test".into(),
        imap: Some(143),
        imaps: Some(993),
        pop3: None,
        pop3s: Some(995),
        submission: Some(587),
        submissions: Some(465),
        directory: crate::policy::Directory::new(PathBuf::from("/nonexistent")),
    };
    for xml in [
        autoconfig::thunderbird_xml(&settings, &domain),
        autoconfig::autodiscover_xml(&settings, &address),
    ] {
        assert!(
            !xml.contains(&format!("<{address}")) && !xml.contains("<script"),
            "markup from the request in {xml}"
        );
    }
    Some(address)
}

/// The MTA-STS pieces that read what a remote domain serves: the `_mta-sts` TXT records
/// (one per line of the first part), the HTTPS response and the policy in it.
pub fn mta_sts(input: &[u8]) {
    let (txt, http) = match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (&[][..], input),
    };
    let records: Vec<String> = String::from_utf8_lossy(txt)
        .lines()
        .map(str::to_owned)
        .collect();
    if let Some(id) = sts::txt_id(&records) {
        assert!(!id.is_empty() && id.len() <= 32, "policy id {id:?}");
    }
    let bodies = [
        sts::parse_response(http).ok(),
        Some(String::from_utf8_lossy(http).into_owned()),
    ];
    for body in bodies.into_iter().flatten() {
        if let Ok(policy) = sts::parse(&body) {
            assert!(
                policy.max_age <= sts::MAX_AGE_LIMIT,
                "max_age {}",
                policy.max_age
            );
            for host in ["mx.example.test", "a.b", "", "."] {
                let _ = policy.matches(host);
            }
            for pattern in &policy.mx {
                let _ = sts::mx_matches(pattern, "mx1.example.test");
            }
        }
    }
}

/// Authentication-Results stripping on a message that claims results from `hostname`.
/// What is left must hold no field of ours: stripping again changes nothing.
pub fn strip_auth_results(message: &[u8], hostname: &str) {
    let Some(out) = spf_dkim_dmarc::strip_forged(message, hostname) else {
        return;
    };
    assert!(out.len() < message.len(), "nothing was removed");
    assert!(
        spf_dkim_dmarc::strip_forged(&out, hostname).is_none(),
        "a forged field survived stripping"
    );
}
