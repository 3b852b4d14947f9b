//! Delivery results as values: what a server (or the queue manager itself) answered for
//! one recipient, kept in the queue and turned into a DSN without parsing text back.
//!
//! Queue files written before these types existed hold the reply as one string,
//! `"550 5.1.1 text (remote-mta host[ip])"`; they are read with
//! [`DeliveryReply::from_legacy`], which takes the string apart once, at load.

use std::fmt;
use std::net::IpAddr;

use postern_mail_types::EnhancedStatus;
use serde::{Deserialize, Serialize};

/// Put after a reply from a remote server in the text form: `… (remote-mta host[ip])`.
const LEGACY_REMOTE_MARK: &str = " (remote-mta ";

/// The reply that decided (or last delayed) a recipient's delivery.
///
/// Its [`Display`](fmt::Display) form is the one logs, `mailctl queue` and earlier queue
/// files show: `550 5.1.1 text (remote-mta mx.example[192.0.2.1])`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ReplyRepr")]
pub struct DeliveryReply {
    /// The SMTP/LMTP reply code; `None` for a verdict of ours without one (expiry: `4.4.7`).
    pub code: Option<u16>,
    /// The enhanced status code, when the reply had one.
    pub status: Option<EnhancedStatus>,
    /// The reply text (after the codes; lines joined with spaces).
    pub text: String,
    /// The remote server that gave the reply; `None` for LMTP and our own verdicts.
    #[serde(default)]
    pub remote_mta: Option<RemoteMta>,
}

/// The remote server a reply came from (the DSN's `Remote-MTA:` is its host name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteMta {
    /// The host name (MX or relay name) we connected to.
    pub host: String,
    /// The address we connected to.
    #[serde(default)]
    pub ip: Option<IpAddr>,
}

impl DeliveryReply {
    /// A reply with code and enhanced status (ours, or a server's without a remote name).
    pub fn new(code: u16, status: impl Into<EnhancedStatus>, text: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            status: Some(status.into()),
            text: text.into(),
            remote_mta: None,
        }
    }

    /// The same reply, naming the remote server that gave it.
    #[must_use]
    pub fn from_remote(mut self, host: impl Into<String>, ip: Option<IpAddr>) -> Self {
        self.remote_mta = Some(RemoteMta {
            host: host.into(),
            ip,
        });
        self
    }

    /// `2xx`.
    pub fn is_positive(&self) -> bool {
        self.code.is_some_and(|c| (200..300).contains(&c))
    }

    /// `5xx`, or a permanent enhanced status without a code.
    pub fn is_permanent(&self) -> bool {
        match self.code {
            Some(c) => c >= 500,
            None => self.status.is_some_and(|s| s.class == 5),
        }
    }

    /// The enhanced status, or `default` when the reply had none.
    pub fn status_or(&self, default: impl Into<EnhancedStatus>) -> EnhancedStatus {
        self.status.unwrap_or_else(|| default.into())
    }

    /// The reply without the remote server: a DSN's `Diagnostic-Code: smtp;` value.
    pub fn diagnostic(&self) -> String {
        let mut s = String::new();
        self.write_reply(&mut s).ok();
        s
    }

    fn write_reply(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        if let Some(code) = self.code {
            write!(f, "{code} ")?;
        }
        if let Some(status) = self.status {
            write!(f, "{status} ")?;
        }
        f.write_str(&self.text)
    }

    /// Reads the text form of earlier queue files (`[code ]x.y.z text[ (remote-mta h[ip])]`).
    /// What is not recognised stays in `text`, so the text form is unchanged.
    pub fn from_legacy(s: &str) -> Self {
        let (rest, remote_mta) = match s.rfind(LEGACY_REMOTE_MARK) {
            Some(i) if s.ends_with(')') => {
                let inside = &s[i + LEGACY_REMOTE_MARK.len()..s.len() - 1];
                let remote = match inside.split_once('[') {
                    Some((host, ip)) => {
                        let ip = ip.strip_suffix(']').and_then(|ip| ip.parse().ok());
                        ip.map(|ip| RemoteMta {
                            host: host.to_owned(),
                            ip: Some(ip),
                        })
                    }
                    None if !inside.contains([' ', ']']) => Some(RemoteMta {
                        host: inside.to_owned(),
                        ip: None,
                    }),
                    None => None,
                };
                match remote {
                    Some(r) => (&s[..i], Some(r)),
                    None => (s, None),
                }
            }
            _ => (s, None),
        };
        let mut reply = Self {
            code: None,
            status: None,
            text: rest.to_owned(),
            remote_mta,
        };
        let mut text = rest;
        if let Some((first, after)) = text.split_once(' ')
            && first.len() == 3
            && let Ok(code) = first.parse::<u16>()
            && (200..600).contains(&code)
        {
            reply.code = Some(code);
            text = after;
        }
        if let Some((first, after)) = text.split_once(' ')
            && let Ok(status) = first.parse::<EnhancedStatus>()
        {
            reply.status = Some(status);
            text = after;
        }
        reply.text = text.to_owned();
        reply
    }
}

impl fmt::Display for DeliveryReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_reply(f)?;
        if let Some(r) = &self.remote_mta {
            match r.ip {
                Some(ip) => write!(f, "{LEGACY_REMOTE_MARK}{}[{ip}])", r.host)?,
                None => write!(f, "{LEGACY_REMOTE_MARK}{})", r.host)?,
            }
        }
        Ok(())
    }
}

/// The text form of earlier queue files (and of tests written against it).
impl From<&str> for DeliveryReply {
    fn from(s: &str) -> Self {
        Self::from_legacy(s)
    }
}

/// How a reply is read from a queue file: today's fields, or the earlier text form.
#[derive(Deserialize)]
#[serde(untagged)]
enum ReplyRepr {
    Legacy(String),
    Typed {
        code: Option<u16>,
        status: Option<EnhancedStatus>,
        text: String,
        #[serde(default)]
        remote_mta: Option<RemoteMta>,
    },
}

impl From<ReplyRepr> for DeliveryReply {
    fn from(r: ReplyRepr) -> Self {
        match r {
            ReplyRepr::Legacy(s) => Self::from_legacy(&s),
            ReplyRepr::Typed {
                code,
                status,
                text,
                remote_mta,
            } => Self {
                code,
                status,
                text,
                remote_mta,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text, code, status, text after the codes, remote host.
    type Case<'a> = (
        &'a str,
        Option<u16>,
        Option<(u8, u16, u16)>,
        &'a str,
        Option<&'a str>,
    );

    /// The text form of every reply the queue manager wrote before, read back: the same
    /// text, and the fields the DSN needs.
    #[test]
    fn legacy_text_is_taken_apart_once_and_prints_the_same() {
        let cases: &[Case<'_>] = &[
            (
                "550 5.1.1 <b@example.net>: no such user (remote-mta mx1.example.net[192.0.2.7])",
                Some(550),
                Some((5, 1, 1)),
                "<b@example.net>: no such user",
                Some("mx1.example.net"),
            ),
            (
                "250 2.0.0 Ok: queued (remote-mta mx2.example.net[2001:db8::25])",
                Some(250),
                Some((2, 0, 0)),
                "Ok: queued",
                Some("mx2.example.net"),
            ),
            (
                "452 too many recipients (remote-mta mx3.example.net[192.0.2.9])",
                Some(452),
                None,
                "too many recipients",
                Some("mx3.example.net"),
            ),
            (
                "4.4.7 message expired in the queue; last error: 421 4.3.2 bye (remote-mta mx1.example.net[192.0.2.7])",
                None,
                Some((4, 4, 7)),
                "message expired in the queue; last error: 421 4.3.2 bye",
                Some("mx1.example.net"),
            ),
            (
                "4.4.7 message expired in the queue; last error: ",
                None,
                Some((4, 4, 7)),
                "message expired in the queue; last error: ",
                None,
            ),
            (
                "451 4.4.1 connect to unix:/run/lmtp: refused (os error 111)",
                Some(451),
                Some((4, 4, 1)),
                "connect to unix:/run/lmtp: refused (os error 111)",
                None,
            ),
            ("250 ", Some(250), None, "", None),
            ("free text (x)", None, None, "free text (x)", None),
            ("451 4.4.1 x (y)", Some(451), Some((4, 4, 1)), "x (y)", None),
        ];
        for &(s, code, status, text, host) in cases {
            let r = DeliveryReply::from_legacy(s);
            assert_eq!(r.code, code, "{s}");
            assert_eq!(r.status.map(EnhancedStatus::tuple), status, "{s}");
            assert_eq!(r.text, text, "{s}");
            assert_eq!(r.remote_mta.as_ref().map(|m| m.host.as_str()), host, "{s}");
            assert_eq!(r.to_string(), s, "prints as before");
            // Today's form round-trips through JSON; the old string form is read too.
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<DeliveryReply>(&json).unwrap(), r);
            let old = serde_json::to_string(s).unwrap();
            assert_eq!(serde_json::from_str::<DeliveryReply>(&old).unwrap(), r);
        }
        let r = DeliveryReply::from_legacy(cases[0].0);
        assert_eq!(r.diagnostic(), "550 5.1.1 <b@example.net>: no such user");
        assert!(r.is_permanent() && !r.is_positive());
        assert!(DeliveryReply::from_legacy(cases[1].0).is_positive());
        assert!(!DeliveryReply::from_legacy(cases[3].0).is_permanent());
    }
}
