//! LMTP transactions: to the local delivery agent (connections pooled) and to `transports`
//! entries that name an LMTP server. One result per recipient (RFC 2033), turned into an
//! [`Outcome`] for [`super::attempt::apply`].

use std::time::{Duration, Instant};

use postern_queue::{DeliveryReply, Envelope};
use postern_smtp_client::{Client, Flavor, RcptResult, Target, Timeouts};
use tracing::{info, warn};

use super::Manager;
use super::attempt::{self, outgoing};
use crate::outbound::{Outcome, delivery_reply};

/// How long an idle pooled LMTP connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);

impl Manager {
    /// One transaction to `target` for the recipients at `idx`: the outcome for each
    /// (recipient index, outcome); all deferred when the server could not be reached or the
    /// transaction broke.
    pub(super) async fn lmtp(
        &self,
        env: &Envelope,
        message: &[u8],
        idx: &[usize],
        target: &Target,
    ) -> Vec<(usize, Outcome)> {
        let out = outgoing(env, idx, message);
        let pooled = *target == self.lmtp;
        let result: Result<Vec<RcptResult>, String> = async {
            // A pooled connection first; if it has gone stale, once more on a fresh one.
            if pooled
                && let Some(mut c) = self.take_pooled()
                && let Ok(r) = c.send(&out).await
            {
                self.give_back(c);
                return Ok(r);
            }
            let mut c = Client::connect(
                target,
                Flavor::Lmtp,
                &self.config.hostname,
                Timeouts::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
            let r = c.send(&out).await.map_err(|e| e.to_string())?;
            if pooled {
                self.give_back(c);
            } else {
                drop(c.quit().await);
            }
            Ok(r)
        }
        .await;
        match result {
            Ok(results) => idx
                .iter()
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
            Err(e) => {
                warn!(target = ?target, error = %e, "delivery attempt failed");
                let reply = DeliveryReply::new(451, (4, 4, 1), e);
                idx.iter()
                    .map(|&i| (i, Outcome::Deferred(reply.clone())))
                    .collect()
            }
        }
    }

    fn take_pooled(&self) -> Option<Client> {
        let mut pool = self.lmtp_pool.lock().ok()?;
        while let Some((c, at)) = pool.pop() {
            if at.elapsed() < POOL_IDLE && c.is_usable() {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, c: Client) {
        if !c.is_usable() {
            return;
        }
        if let Ok(mut pool) = self.lmtp_pool.lock()
            && pool.len() < self.config.smtpd.delivery_concurrency.get()
        {
            pool.push((c, Instant::now()));
        }
    }
}
