//! End of DATA/BDAT: the `Received` header, recipients expanded to their final addresses,
//! the message committed to the durable queue — and only then the `250`.

use std::collections::HashMap;
use std::net::SocketAddr;

use postern_queue::{Envelope, Notify, QueueError, Recipient, Ret};
use postern_smtp_session::{BodyType, Reply, Transaction};
use tracing::{info, warn};

use crate::Ctx;
use crate::access::Decision;

/// Received headers beyond which a message is taken to be looping.
const MAX_HOPS: usize = 50;

/// Commits `tx`; returns the reply for the client.
pub(crate) async fn accept(
    ctx: &Ctx,
    tx: &Transaction,
    targets: &HashMap<String, Vec<String>>,
    peer: SocketAddr,
    tls: Option<&str>,
    access: &Decision,
    added: &str,
) -> Reply {
    if *access == Decision::Discard {
        info!(client = %peer, from = tx.mail_from.as_ref().map_or("<>", |a| a.as_str()), "discarded by an access rule");
        return Reply::new(250, (2, 0, 0), "Ok");
    }
    if hops(&tx.message) > MAX_HOPS {
        warn!(%peer, "too many Received headers: mail loop");
        return Reply::new(554, (5, 4, 6), "Too many hops: mail loop detected");
    }
    let mut recipients: Vec<Recipient> = Vec::new();
    for (addr, params) in &tx.recipients {
        let finals = targets
            .get(addr.as_str())
            .cloned()
            .unwrap_or_else(|| vec![addr.as_str().to_owned()]);
        for target in finals {
            if recipients
                .iter()
                .any(|r| r.address.eq_ignore_ascii_case(&target))
            {
                continue;
            }
            let mut r = Recipient::new(target.clone());
            r.orcpt = match &params.orcpt {
                Some(o) => Some(format!("{};{}", o.addr_type, o.value)),
                None if !target.eq_ignore_ascii_case(addr.as_str()) => {
                    Some(format!("rfc822;{}", addr.as_str()))
                }
                None => None,
            };
            if let Some(n) = &params.notify {
                r.notify = Notify {
                    success: n.success,
                    failure: n.failure,
                    delay: n.delay,
                };
            }
            recipients.push(r);
        }
    }
    let mut env = Envelope::new(
        tx.mail_from.as_ref().map(|a| a.as_str().to_owned()),
        recipients,
    );
    env.authenticated = tx.authenticated.clone();
    env.origin = Some(crate::policy::smtp_origin(
        &ctx.config,
        tx.authenticated.as_deref(),
        peer.ip(),
    ));
    env.client_ip = Some(peer.ip().to_string());
    env.helo = Some(tx.helo.clone());
    env.ret = tx.mail_params.ret.map(|r| match r {
        postern_smtp_session::Ret::Full => Ret::Full,
        postern_smtp_session::Ret::Hdrs => Ret::Headers,
    });
    env.envid = tx.mail_params.envid.clone();
    env.smtputf8 = tx.smtputf8;
    env.body_8bit = !matches!(tx.body_type, BodyType::SevenBit);
    env.held = *access == Decision::Hold;
    let single = (tx.recipients.len() == 1).then(|| tx.recipients[0].0.as_str().to_owned());
    let mut message = received(ctx, tx, peer, tls, single.as_deref()).into_bytes();
    message.extend_from_slice(added.as_bytes());
    // Results claiming to be ours, and our own markers, come only from us.
    match crate::checks::spf_dkim_dmarc::strip_forged(&tx.message, &ctx.config.hostname) {
        Some(clean) => {
            info!(client = %peer, "removed a forged Authentication-Results or X-Postern- header");
            message.extend_from_slice(&clean);
        }
        None => message.extend_from_slice(&tx.message),
    }
    match ctx.queue.committer.commit(env, message).await {
        Ok(env) => {
            info!(id = %env.id, from = env.sender_str(), rcpts = env.recipients.len(), size = env.size,
                client = %peer, user = env.authenticated.as_deref().unwrap_or("-"), "queued");
            let id = env.id;
            ctx.queue.enqueue(env);
            Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}"))
        }
        Err(QueueError::TooLarge { .. }) => {
            Reply::new(552, (5, 3, 4), "Message too big for system")
        }
        Err(e) => {
            warn!(error = %e, "queue commit failed");
            Reply::new(451, (4, 3, 0), "Local error in processing, try again later")
        }
    }
}

/// Counts `Received:` fields in the header.
fn hops(message: &[u8]) -> usize {
    let mut n = 0;
    for line in message.split(|&b| b == b'\n') {
        if line.is_empty() || line == b"\r" {
            break;
        }
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            n += 1;
        }
    }
    n
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(255).collect()
}

/// Our trace field (RFC 5321 §4.4), with the TLS details; the login only when configured.
fn received(
    ctx: &Ctx,
    tx: &Transaction,
    peer: SocketAddr,
    tls: Option<&str>,
    rcpt: Option<&str>,
) -> String {
    let mut r = format!(
        "Received: from {} ([{}])\r\n\tby {} (Postern) with {}",
        clean(&tx.helo),
        peer.ip(),
        ctx.config.hostname,
        tx.protocol()
    );
    if let Some(t) = tls {
        r.push_str(&format!("\r\n\t(using {})", clean(t)));
    }
    if ctx.config.smtpd.received_show_auth
        && let Some(user) = &tx.authenticated
    {
        r.push_str(&format!("\r\n\t(authenticated as {})", clean(user)));
    }
    if let Some(rcpt) = rcpt {
        r.push_str(&format!("\r\n\tfor <{}>", clean(rcpt)));
    }
    r.push_str(&format!(
        ";\r\n\t{}\r\n",
        mail_builder::headers::date::Date::now().to_rfc822()
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::hops;

    #[test]
    fn counts_received_fields_in_the_header_only() {
        assert_eq!(
            hops(b"Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: body\r\n"),
            2
        );
        assert_eq!(hops(b""), 0);
    }
}
