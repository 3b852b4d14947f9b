//! Cluster routing (`[proxy]`): a local recipient whose account lives on another node goes
//! over LMTP/TCP to that backend's lmtp-deliver instead of to this node's delivery agent.
//!
//! authd's socketmap map `transport` says where an account lives (`lmtp:[host]:port`, the
//! answer Postfix's `transport_maps` reads too; not found = here). That answer is parsed
//! once, here, into a [`Hop`]; the rest of the queue manager only sees the typed value.
//! A lookup that fails (authd down, database down) defers the recipient (`451 4.3.0`):
//! delivering it here could put its mail in a mailbox nobody reads.
//!
//! The lookup is an authd round trip per recipient per attempt, so it is made only where
//! it can pay off ([`routes`], `[proxy] smtpd_routing`): on a cluster member. Elsewhere
//! every local recipient goes to this node's lmtp-deliver, whose LMTP proxy
//! (`lmtp-deliver/src/proxy.rs`) forwards a recipient whose userdb `host` names another
//! node from the userdb answer it reads anyway: still never delivered on the wrong node,
//! one hop longer for a remote account, and a single-node install pays nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use postern_config::{Config, SmtpdRouting};
use postern_queue::{DeliveryReply, Envelope};
use postern_smtp_client::Target;
use tracing::{debug, warn};

use crate::outbound::route::join_host_port;
use crate::policy::Directory;

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

/// Whether this node's queue manager asks where each local recipient lives
/// (`[proxy] smtpd_routing`). `auto`: when the node is a cluster member (`[proxy] self`
/// is set), or when local mail goes to a delivery agent named by `[smtpd] lmtp` (maybe
/// not Postern's lmtp-deliver, so maybe without its LMTP proxy).
pub(crate) fn routes(config: &Config) -> bool {
    match config.proxy.smtpd_routing {
        SmtpdRouting::Always => true,
        SmtpdRouting::Never => false,
        SmtpdRouting::Auto => {
            !config.proxy.self_name.trim().is_empty() || config.smtpd.lmtp.is_some()
        }
    }
}

/// Splits the local recipients at `idx` by the node their account lives on; all to this
/// node's delivery agent, without asking authd, when this node does not route ([`routes`]).
pub(crate) async fn hops(
    config: &Config,
    directory: &Arc<Directory>,
    env: &Envelope,
    idx: &[usize],
) -> Hops {
    let mut out = Hops::default();
    if !routes(config) {
        out.groups.insert(Hop::Here, idx.to_vec());
        return out;
    }
    let mut lookups = directory.lookups();
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
    fn only_cluster_members_route_by_default() {
        let parse = |extra: &str| {
            Config::parse(
                &format!("hostname = \"a.example\"\n{extra}"),
                std::path::Path::new("/"),
            )
            .unwrap()
        };
        assert!(!routes(&parse("")), "a single node");
        assert!(
            routes(&parse("[proxy]\nself = \"f1\"\n")),
            "a cluster member"
        );
        assert!(
            routes(&parse("[smtpd]\nlmtp = \"127.0.0.1:24\"\n")),
            "another agent"
        );
        assert!(routes(&parse("[proxy]\nsmtpd_routing = \"always\"\n")));
        assert!(!routes(&parse(
            "[proxy]\nself = \"f1\"\nsmtpd_routing = \"never\"\n"
        )));
    }

    #[tokio::test]
    async fn a_node_that_does_not_route_asks_nobody() {
        // authd's socket does not exist: any lookup would fail and defer.
        let config =
            Config::parse("hostname = \"a.example\"\n", std::path::Path::new("/")).unwrap();
        let env = Envelope::new(
            Some("s@x.example".into()),
            vec![
                postern_queue::Recipient::new("a@a.example"),
                postern_queue::Recipient::new("b@a.example"),
            ],
        );
        let directory = Directory::new(config.socket_path(&config.authd.socketmap_socket));
        let h = hops(&config, &directory, &env, &[0, 1]).await;
        assert_eq!(h.groups.get(&Hop::Here), Some(&vec![0, 1]));
        assert!(h.unrouted.is_empty());
    }

    /// authd answers `transport` with TEMP for an account `mailctl user move` is moving:
    /// the recipient is deferred (451 4.3.0, the reason kept), never delivered here.
    #[tokio::test]
    async fn a_temporary_transport_answer_defers_the_recipient() {
        use postern_auth_proto::socketmap::{NetstringDecoder, Reply};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(
            &format!(
                "hostname = \"f1.example\"\n[paths]\nrun_dir = \"{}\"\n[proxy]\nself = \"f1\"\n",
                dir.path().display()
            ),
            dir.path(),
        )
        .unwrap();
        let path = config.socket_path(&config.authd.socketmap_socket);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut dec = NetstringDecoder::new(10_000);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        dec.push(&buf[..n]);
                        for req in dec.by_ref().flatten() {
                            seen.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&req).into_owned());
                            let reply = Reply::Temp("mailbox being moved".into()).encode();
                            if s.write_all(&reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let env = Envelope::new(
            Some("s@x.example".into()),
            vec![postern_queue::Recipient::new("bob@a.example")],
        );
        let directory = Directory::new(path);
        let h = hops(&config, &directory, &env, &[0]).await;
        assert!(h.groups.is_empty(), "{:?}", h.groups);
        let [(0, reply)] = h.unrouted.as_slice() else {
            panic!("{:?}", h.unrouted);
        };
        assert_eq!(reply.code, Some(451), "{reply:?}");
        assert!(reply.text.contains("being moved"), "{reply:?}");
        assert_eq!(*asked.lock().unwrap(), ["transport bob@a.example"]);
    }

    #[test]
    fn here_sorts_first() {
        let mut m = BTreeMap::new();
        m.insert(Hop::Backend(Backend::parse("lmtp:[a]:24").unwrap()), 1);
        m.insert(Hop::Here, 0);
        assert_eq!(m.keys().next(), Some(&Hop::Here));
    }
}
