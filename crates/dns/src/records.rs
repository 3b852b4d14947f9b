//! Checks of published records (`mailctl check`, `mailctl dns`): does an SPF, DKIM or DMARC
//! TXT value parse as mail-auth (the verifier smtpd uses) reads it, and does a domain's SPF
//! allow an address.

use std::net::IpAddr;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfResult};

use crate::TokioResolver;

/// Whether `record` is an SPF record mail-auth can use.
pub fn spf_parses(record: &str) -> bool {
    mail_auth::spf::Spf::parse(record.as_bytes()).is_ok()
}

/// Whether `record` is a DKIM key record (`v=DKIM1; k=…; p=…`) mail-auth can use.
pub fn dkim_parses(record: &str) -> bool {
    mail_auth::common::verify::DomainKey::parse(record.as_bytes()).is_ok()
}

/// Whether `record` is a DMARC record mail-auth can use.
pub fn dmarc_parses(record: &str) -> bool {
    mail_auth::dmarc::Dmarc::parse(record.as_bytes()).is_ok()
}

/// Whether the SPF of `sender`'s domain lets `ip` (saying `helo`) send its mail: `Ok` for
/// `pass`, otherwise the result's name (`Fail`, `SoftFail`, `TempError`…).
pub async fn spf_allows(
    resolver: &TokioResolver,
    ip: IpAddr,
    helo: &str,
    host: &str,
    sender: &str,
) -> Result<(), String> {
    let auth = MessageAuthenticator(resolver.clone());
    let out = auth
        .verify_spf(SpfParameters::verify_mail_from(ip, helo, host, sender))
        .await;
    if out.result() == SpfResult::Pass {
        Ok(())
    } else {
        Err(format!("{:?}", out.result()))
    }
}
