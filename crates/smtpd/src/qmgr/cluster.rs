//! Cluster routing (`[proxy]`): a local recipient whose account lives on another node goes
//! over LMTP/TCP to that backend's lmtp-deliver instead of to this node's delivery agent.
//!
//! authd's socketmap map `transport` says where an account lives (`lmtp:[host]:port`, the
//! answer Postfix's `transport_maps` reads too; not found = here). That answer is parsed
//! once, here, into a [`Hop`]; the rest of the queue manager only sees the typed value.
//! A lookup that fails (authd down, database down) defers the recipient (`451 4.3.0`):
//! delivering it here could put its mail in a mailbox nobody reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use postern_config::{Config, HopTls};
use postern_queue::{DeliveryReply, Envelope};
use postern_smtp_client::Target;
use postern_smtp_client::tls::{CertCheck, connector};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use crate::outbound::route::join_host_port;
use crate::policy::Lookups;

/// A backend's LMTP server: where a remote account's mail goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Backend {
    /// Host name or IP address (no brackets).
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
}

impl Backend {
    /// Reads authd's `transport` answer, `lmtp:[host]:port`. Anything else is `None`.
    pub(crate) fn parse(answer: &str) -> Option<Self> {
        let rest = answer.trim().strip_prefix("lmtp:")?;
        let rest = rest.strip_prefix('[')?;
        let (host, port) = rest.split_once("]:")?;
        if !postern_config::valid_host(host) {
            return None;
        }
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        Some(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The connection target.
    pub(crate) fn target(&self) -> Target {
        Target::Tcp(join_host_port(&self.host, self.port))
    }
}

/// Where one local recipient's mail is delivered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Hop {
    /// This node's delivery agent.
    Here,
    /// Another node's.
    Backend(Backend),
}

/// The local recipients of one attempt, by hop.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Hops {
    /// One LMTP transaction per hop (this node first).
    pub(crate) groups: BTreeMap<Hop, Vec<usize>>,
    /// Where it lives could not be learnt now: why.
    pub(crate) unrouted: Vec<(usize, DeliveryReply)>,
}

/// Splits the local recipients at `idx` by the node their account lives on.
pub(crate) async fn hops(config: &Config, env: &Envelope, idx: &[usize]) -> Hops {
    let mut out = Hops::default();
    let mut lookups = Lookups::new(config.socket_path(&config.authd.socketmap_socket));
    let delimiter = config.lmtp.recipient_delimiter.as_str();
    for &i in idx {
        let rcpt = env.recipients[i].address.as_str();
        match lookups.transport(rcpt, delimiter).await {
            Ok(None) => out.groups.entry(Hop::Here).or_default().push(i),
            Ok(Some(answer)) => match Backend::parse(&answer) {
                Some(b) => {
                    debug!(rcpt = %rcpt, backend = %b.host, port = b.port, "account on another node");
                    out.groups.entry(Hop::Backend(b)).or_default().push(i);
                }
                None => {
                    warn!(rcpt = %rcpt, answer = %answer.escape_debug(), "unusable transport answer from authd");
                    out.unrouted.push((
                        i,
                        DeliveryReply::new(451, (4, 3, 5), "unusable cluster route for recipient"),
                    ));
                }
            },
            Err(why) => {
                warn!(rcpt = %rcpt, reason = %why, "where the account lives could not be learnt");
                out.unrouted.push((
                    i,
                    DeliveryReply::new(
                        451,
                        (4, 3, 0),
                        format!("cluster route lookup failed: {why}"),
                    ),
                ));
            }
        }
    }
    out
}

/// The TLS client for the hop to the backends (`[proxy] tls`): `None` for plain text.
pub(crate) fn hop_connector(config: &Config) -> anyhow::Result<Option<TlsConnector>> {
    let p = &config.proxy;
    match p.tls {
        HopTls::None => Ok(None),
        HopTls::May => Ok(Some(connector(CertCheck::Any))),
        HopTls::Verify => {
            let file = p
                .ca_file
                .as_deref()
                .context("proxy.tls = \"verify\" needs proxy.ca_file")?;
            let file = config.resolve(file);
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(&file)
                .with_context(|| format!("reading proxy.ca_file {}", file.display()))?;
            for cert in certs {
                let cert =
                    cert.with_context(|| format!("reading proxy.ca_file {}", file.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a certificate in {}", file.display()))?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Some(TlsConnector::from(Arc::new(tls))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_answers_become_backends() {
        assert_eq!(
            Backend::parse("lmtp:[b2.example]:24"),
            Some(Backend {
                host: "b2.example".into(),
                port: 24
            })
        );
        let v6 = Backend::parse("lmtp:[2001:db8::2]:2424").unwrap();
        assert_eq!(v6.host, "2001:db8::2");
        assert_eq!(v6.target(), Target::Tcp("[2001:db8::2]:2424".into()));
        assert_eq!(
            Backend::parse("lmtp:[10.0.0.2]:24").unwrap().target(),
            Target::Tcp("10.0.0.2:24".into())
        );
        for bad in [
            "",
            "smtp:[b2]:25",
            "lmtp:b2:24",
            "lmtp:[b2]",
            "lmtp:[b2]:0",
            "lmtp:[b2]:99999",
            "lmtp:[b 2]:24",
            "lmtp:[]:24",
            "lmtp:unix:/run/lmtp",
        ] {
            assert_eq!(Backend::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn here_sorts_first() {
        let mut m = BTreeMap::new();
        m.insert(Hop::Backend(Backend::parse("lmtp:[a]:24").unwrap()), 1);
        m.insert(Hop::Here, 0);
        assert_eq!(m.keys().next(), Some(&Hop::Here));
    }
}
