//! LMTP transactions: to the local delivery agent (connections pooled), to cluster
//! backends (`[proxy]`: its connect timeout and TLS policy) and to `transports` entries
//! that name an LMTP server. One result per recipient (RFC 2033), turned into an
//! [`Outcome`] for [`super::attempt::apply`], and how the connection went ([`Link`]).

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use postern_queue::{DeliveryReply, Envelope};
use postern_smtp_client::{
    Client, ClientError, Flavor, Outgoing, RcptResult, Step, Target, Timeouts,
};
use tracing::{info, warn};

use postern_config::HopTls;
use postern_smtp_client::tls::server_name;

use super::Manager;
use super::attempt::{self, outgoing};
use super::cluster::Backend;
use crate::outbound::{Outcome, delivery_reply};

/// How long an idle pooled LMTP connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// How an LMTP transaction went, for quick recovery ([`super::recovery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// The server answered for each recipient.
    Answered,
    /// The server refused the connection (`ECONNREFUSED`, or no socket file): it is down,
    /// maybe being restarted.
    Refused,
    /// The connection failed otherwise, the transaction broke, or the server answered 421
    /// (closing the channel).
    Broken,
}

/// Why a transaction did not give per-recipient replies.
struct Failed {
    refused: bool,
    text: String,
}

impl Failed {
    fn of(e: &ClientError) -> Self {
        let refused = matches!(e, ClientError::Connect(io)
            if matches!(io.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound));
        Self {
            refused,
            text: e.to_string(),
        }
    }
}

impl Manager {
    /// One transaction to `target` for the recipients at `idx`: the outcome for each
    /// (recipient index, outcome), and how the connection went; all deferred when the server
    /// could not be reached or the transaction broke.
    pub(super) async fn lmtp(
        &self,
        env: &Envelope,
        message: &[u8],
        idx: &[usize],
        target: &Target,
        backend: Option<&Backend>,
    ) -> (Link, Vec<(usize, Outcome)>) {
        let out = outgoing(env, idx, message);
        match self.lmtp_transaction(&out, target, backend).await {
            Ok(results) => (
                // 421 is the server closing the channel (RFC 5321 §3.8: shutting down, as
                // lmtp-deliver answers when it is stopped mid-transaction): the destination
                // went away, it said nothing about these recipients.
                if results.iter().any(|r| r.reply.code == 421) {
                    Link::Broken
                } else {
                    Link::Answered
                },
                idx.iter()
                    .zip(&results)
                    .map(|(&i, res)| {
                        let o = attempt::outcome(delivery_reply(&res.reply));
                        let (what, reply) = match &o {
                            Outcome::Delivered(r) => ("delivered", r),
                            Outcome::Bounced(r) => ("bounced", r),
                            Outcome::Deferred(r) => ("deferred", r),
                        };
                        let rcpt = &env.recipients[i].address;
                        info!(rcpt = %rcpt, reply = %reply, "{what}");
                        (i, o)
                    })
                    .collect(),
            ),
            Err(e) => {
                warn!(target = ?target, error = %e.text, "delivery attempt failed");
                let reply = DeliveryReply::new(451, (4, 4, 1), e.text);
                let link = if e.refused {
                    Link::Refused
                } else {
                    Link::Broken
                };
                let deferred = idx
                    .iter()
                    .map(|&i| (i, Outcome::Deferred(reply.clone())))
                    .collect();
                (link, deferred)
            }
        }
    }

    /// The transaction itself: on a pooled connection first (to the delivery agent); if that
    /// one has gone stale, once more on a fresh one.
    async fn lmtp_transaction(
        &self,
        out: &Outgoing<'_>,
        target: &Target,
        backend: Option<&Backend>,
    ) -> Result<Vec<RcptResult>, Failed> {
        // The delivery agent and cluster backends: many messages, kept connections.
        let pooled = *target == self.lmtp || backend.is_some();
        if pooled
            && let Some(mut c) = self.take_pooled(target)
            && let Ok(r) = c.send(out).await
        {
            self.give_back(target, c);
            return Ok(r);
        }
        let mut timeouts = Timeouts::default();
        if backend.is_some() {
            timeouts.connect = self.config.proxy.connect_timeout_secs.duration();
        }
        let mut c = match target {
            // The local delivery agent's Unix socket, registered for reading only: each
            // command and body lmtp-deliver reads would otherwise wake smtpd for nothing.
            Target::Unix(path) if backend.is_none() => {
                let stream = tokio::time::timeout(timeouts.connect, async {
                    postern_auth_proto::client::QuietUnixStream::from_tokio(
                        tokio::net::UnixStream::connect(path).await?,
                    )
                })
                .await
                .map_err(|_| ClientError::Timeout(Step::Connect))
                .and_then(|r| r.map_err(ClientError::Connect))
                .map_err(|e| Failed::of(&e))?;
                Client::over(stream, Flavor::Lmtp, &self.config.hostname, timeouts).await
            }
            _ => Client::connect(target, Flavor::Lmtp, &self.config.hostname, timeouts).await,
        }
        .map_err(|e| Failed::of(&e))?;
        if let Some(b) = backend {
            self.secure_hop(&mut c, b).await?;
        }
        let r = c.send(out).await.map_err(|e| Failed::of(&e))?;
        if pooled {
            self.give_back(target, c);
        } else {
            drop(c.quit().await);
        }
        Ok(r)
    }

    /// `[proxy] tls` on a fresh connection to a backend: `may` uses STARTTLS when it is
    /// offered (any certificate; a refusal leaves plain text), `verify` requires it with a
    /// certificate from `ca_file` valid for the backend's name (else the recipients are
    /// deferred).
    async fn secure_hop(&self, c: &mut Client, b: &Backend) -> Result<(), Failed> {
        let Some(connector) = &self.hop_tls else {
            return Ok(());
        };
        let in_backend = |e: ClientError| {
            let mut f = Failed::of(&e);
            f.text = format!("backend {}: {}", b.host, f.text);
            f
        };
        let name = server_name(&b.host)
            .ok_or_else(|| in_backend(ClientError::Tls("no TLS server name".into())))?;
        let required = self.config.proxy.tls == HopTls::Verify;
        c.starttls_policy(connector, name, required)
            .await
            .map_err(in_backend)
    }

    /// An idle connection to `target` young enough to reuse.
    fn take_pooled(&self, target: &Target) -> Option<Client> {
        let mut pool = self.lmtp_pool.lock().ok()?;
        pool.retain(|(_, c, at)| at.elapsed() < POOL_IDLE && c.is_usable());
        let i = pool.iter().rposition(|(t, _, _)| t == target)?;
        Some(pool.swap_remove(i).1)
    }

    /// Keeps `c` for the next transaction to `target` (at most `delivery_concurrency` idle
    /// connections in all).
    fn give_back(&self, target: &Target, c: Client) {
        if !c.is_usable() {
            return;
        }
        if let Ok(mut pool) = self.lmtp_pool.lock()
            && pool.len() < self.config.smtpd.delivery_concurrency.get()
        {
            pool.push((target.clone(), c, Instant::now()));
        }
    }
}
