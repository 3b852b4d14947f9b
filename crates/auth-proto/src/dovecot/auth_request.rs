//! The `AUTH` line's parameters, as the server reads them.
//!
//! Unknown parameters are kept, not refused; a known one whose value doesn't parse (an
//! `rip=` that isn't an address) is kept with them and its field left `None`, so a client
//! that sends something odd is not locked out. `resp=` ends the line: whatever follows it
//! is ignored, unparsed.

use std::net::IpAddr;

use crate::params::parse_field;
use crate::{ProtoError, unescape};

/// An `AUTH` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthRequest {
    /// Request id, echoed in the reply.
    pub id: u32,
    /// Mechanism name, upper-cased; not checked against any list here.
    pub mechanism: String,
    /// `service=` (or Dovecot 2.4's `protocol=`): smtp, imap, pop3, …
    pub service: Option<String>,
    /// `lip=`: our address.
    pub lip: Option<IpAddr>,
    /// `rip=`: the remote client's address.
    pub rip: Option<IpAddr>,
    /// `lport=`.
    pub lport: Option<u16>,
    /// `rport=`.
    pub rport: Option<u16>,
    /// `secured` or `secured=…`: the client connection is TLS or otherwise trusted.
    pub secured: bool,
    /// `transport=`: insecure, trusted or TLS.
    pub transport: Option<String>,
    /// `no-penalty`: don't delay failures for this request.
    pub no_penalty: bool,
    /// `nologin`: only verify, the client won't log in.
    pub nologin: bool,
    /// `session=`: the client's session id, for logs.
    pub session: Option<String>,
    /// `local_name=`: the TLS SNI name.
    pub local_name: Option<String>,
    /// `resp=`: the base64 initial response; `Some("")` is an empty one.
    pub initial_response: Option<String>,
    /// Every other parameter, in order.
    pub other: Vec<(String, Option<String>)>,
}

/// Builds the request from the fields after `AUTH\t<id>\t<mech>`.
pub(super) fn parse_auth<'a>(
    id: u32,
    mechanism: &str,
    fields: impl Iterator<Item = &'a str>,
) -> Result<AuthRequest, ProtoError> {
    if mechanism.is_empty() {
        return Err(ProtoError::Missing("mechanism"));
    }
    let mut req = AuthRequest {
        id,
        mechanism: mechanism.to_ascii_uppercase(),
        ..AuthRequest::default()
    };
    for field in fields {
        if let Some(resp) = field.strip_prefix("resp=") {
            // `resp=` is last by definition: whatever follows is ignored.
            req.initial_response = Some(unescape(resp)?);
            break;
        }
        apply_param(&mut req, field)?;
    }
    Ok(req)
}

/// Sets the field of `req` that one `AUTH` parameter names, or keeps it in `other`.
fn apply_param(req: &mut AuthRequest, field: &str) -> Result<(), ProtoError> {
    if field.is_empty() {
        return Ok(());
    }
    let (name, value) = parse_field(field)?;
    let handled = match (name.as_str(), value.as_deref()) {
        ("service", Some(v)) => {
            req.service = Some(v.to_owned());
            true
        }
        ("protocol", Some(v)) => {
            req.service.get_or_insert_with(|| v.to_owned());
            true
        }
        ("lip", Some(v)) => set(&mut req.lip, v.parse().ok()),
        ("rip", Some(v)) => set(&mut req.rip, v.parse().ok()),
        ("lport", Some(v)) => set(&mut req.lport, v.parse().ok()),
        ("rport", Some(v)) => set(&mut req.rport, v.parse().ok()),
        ("secured", _) => {
            req.secured = true;
            true
        }
        ("transport", Some(v)) => set(&mut req.transport, Some(v.to_owned())),
        ("no-penalty", None) => {
            req.no_penalty = true;
            true
        }
        ("nologin", None) => {
            req.nologin = true;
            true
        }
        ("session", Some(v)) => set(&mut req.session, Some(v.to_owned())),
        ("local_name", Some(v)) => set(&mut req.local_name, Some(v.to_owned())),
        _ => false,
    };
    if !handled {
        req.other.push((name, value));
    }
    Ok(())
}

/// Stores a parsed value; `false` (keep the raw field) when it didn't parse.
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    let parsed = value.is_some();
    if parsed {
        *slot = value;
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dovecot::{ClientCommand, parse_client_line};

    fn auth(line: &str) -> AuthRequest {
        match parse_client_line(line) {
            Ok(ClientCommand::Auth(req)) => *req,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn postfix_auth_line() {
        let req = auth(
            "AUTH\t1\tplain\tservice=smtp\tnologin\tlip=192.0.2.1\trip=198.51.100.7\tsecured\t\
             resp=AGFsaWNlAHNlY3JldA==",
        );
        assert_eq!(req.id, 1);
        assert_eq!(req.mechanism, "PLAIN");
        assert_eq!(req.service.as_deref(), Some("smtp"));
        assert!(req.nologin && req.secured && !req.no_penalty);
        assert_eq!(req.lip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(req.rip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(
            req.initial_response.as_deref(),
            Some("AGFsaWNlAHNlY3JldA==")
        );
        assert!(req.other.is_empty());
    }

    #[test]
    fn dovecot_24_and_chasquid_params() {
        let req = auth(
            "AUTH\t9\tLOGIN\tprotocol=imap\tsecured=tls\tno-penalty\tlport=993\trport=50000\t\
             rip=2001:db8::7\ttransport=TLS\tsession=abc\tlocal_name=mail.example.org\t\
             final-resp-ok\tclient_id=x\x01ty",
        );
        assert_eq!(req.service.as_deref(), Some("imap"));
        assert!(req.secured && req.no_penalty);
        assert_eq!((req.lport, req.rport), (Some(993), Some(50000)));
        assert_eq!(req.rip, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(req.transport.as_deref(), Some("TLS"));
        assert_eq!(req.session.as_deref(), Some("abc"));
        assert_eq!(req.local_name.as_deref(), Some("mail.example.org"));
        assert_eq!(req.initial_response, None);
        let other = vec![
            ("final-resp-ok".to_owned(), None),
            ("client_id".to_owned(), Some("x\ty".to_owned())),
        ];
        assert_eq!(req.other, other);
    }

    #[test]
    fn resp_is_last_and_the_rest_ignored() {
        let req = auth("AUTH\t2\tPLAIN\tresp=\tservice=evil\tnologin\tgarbage\x01");
        assert_eq!(req.initial_response.as_deref(), Some(""));
        assert_eq!(req.service, None);
        assert!(!req.nologin && req.other.is_empty());
    }

    #[test]
    fn service_wins_over_protocol() {
        assert_eq!(
            auth("AUTH\t1\tX\tservice=smtp\tprotocol=imap")
                .service
                .as_deref(),
            Some("smtp")
        );
        assert_eq!(
            auth("AUTH\t1\tX\tprotocol=imap\tservice=smtp")
                .service
                .as_deref(),
            Some("smtp")
        );
    }

    #[test]
    fn unparsable_known_values_are_kept() {
        let req = auth("AUTH\t1\tPLAIN\trip=fe80::1%eth0\tlport=99999\tsecured");
        assert_eq!((req.rip, req.lport), (None, None));
        assert!(req.secured);
        let names: Vec<&str> = req.other.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["rip", "lport"]);
    }

    #[test]
    fn unknown_mechanism_is_just_a_string() {
        assert_eq!(
            auth("AUTH\t1\txoauth-frobnicate").mechanism,
            "XOAUTH-FROBNICATE"
        );
    }
}
