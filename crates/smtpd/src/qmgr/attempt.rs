//! One delivery attempt's decisions, without I/O: where each pending recipient goes
//! ([`plan`]), what a result does to it ([`apply`]), what the attempt leaves (retry with
//! backoff, expiry: [`finish`]), and who gets which delivery status notification
//! ([`notices`]). The queue manager ([`super`]) does the talking: authd, LMTP, SMTP, spool.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use postern_dsn::{Action, RecipientReport};
use postern_queue::{Backoff, DeliveryReply, Destination, Domain, Envelope, RcptStatus, Recipient};
use postern_smtp_client::{OutRcpt, Outgoing};

use crate::outbound::Outcome;

/// Where this attempt sends the pending recipients (indices into `env.recipients`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Our own domains: LMTP to the delivery agent, in one transaction.
    pub(crate) local: Vec<usize>,
    /// Other domains, each in one transaction: a `transports` entry, the relayhost or the
    /// domain's MX hosts.
    pub(crate) remote: BTreeMap<Domain, Vec<usize>>,
    /// Not routed this time (whether the domain is ours could not be learnt): why.
    pub(crate) unrouted: Vec<(usize, DeliveryReply)>,
}

/// The domains that authd must be asked about: those of pending recipients without a
/// `transports` entry whose destination was not recorded at `RCPT`.
pub(crate) fn domains_to_ask(
    env: &Envelope,
    has_transport: impl Fn(&Domain) -> bool,
) -> BTreeSet<Domain> {
    env.pending()
        .filter(|r| r.destination.is_none())
        .map(Recipient::domain_name)
        .filter(|d| !has_transport(d))
        .collect()
}

/// Routes the pending recipients: a `transports` entry first, then the destination
/// recorded at `RCPT`, then authd's answer about the domain (`answers`; a missing answer
/// counts as an error).
pub(crate) fn plan(
    env: &Envelope,
    has_transport: impl Fn(&Domain) -> bool,
    answers: &HashMap<Domain, Result<bool, String>>,
) -> Plan {
    let mut plan = Plan::default();
    for (i, r) in env.recipients.iter().enumerate() {
        if !r.is_pending() {
            continue;
        }
        let domain = r.domain_name();
        let local = if has_transport(&domain) {
            Ok(false)
        } else {
            match r.destination {
                Some(d) => Ok(d == Destination::Local),
                None => answers
                    .get(&domain)
                    .cloned()
                    .unwrap_or_else(|| Err("local domains not known".to_owned())),
            }
        };
        match local {
            Ok(true) => plan.local.push(i),
            Ok(false) => plan.remote.entry(domain).or_default().push(i),
            Err(why) => plan
                .unrouted
                .push((i, DeliveryReply::new(451, (4, 3, 0), why))),
        }
    }
    plan
}

/// What this attempt did so far (indices of recipients).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Delivered now.
    pub(crate) delivered: Vec<usize>,
    /// Bounced now (refused for good, or expired).
    pub(crate) bounced: Vec<usize>,
}

/// Records one recipient's result: its last reply, and its status when final.
pub(crate) fn apply(env: &mut Envelope, progress: &mut Progress, i: usize, outcome: Outcome) {
    let r = &mut env.recipients[i];
    crate::metrics::delivery(r.destination, &outcome);
    match outcome {
        Outcome::Delivered(reply) => {
            r.last_reply = Some(reply);
            r.status = RcptStatus::Delivered;
            progress.delivered.push(i);
        }
        Outcome::Bounced(reply) => {
            r.last_reply = Some(reply.clone());
            r.status = RcptStatus::Bounced { reply };
            progress.bounced.push(i);
        }
        Outcome::Deferred(reply) => r.last_reply = Some(reply),
    }
}

/// The outcome of a reply of an LMTP (or SMTP) server that names no remote MTA.
pub(crate) fn outcome(reply: DeliveryReply) -> Outcome {
    if reply.is_positive() {
        Outcome::Delivered(reply)
    } else if reply.is_permanent() {
        Outcome::Bounced(reply)
    } else {
        Outcome::Deferred(reply)
    }
}

/// Which recipients a notification is due for after an attempt.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Notices {
    /// Bounced by this attempt (a failure DSN if they asked for one).
    pub(crate) failed: Vec<usize>,
    /// Still pending and due a delay warning.
    pub(crate) delayed: Vec<usize>,
    /// Delivered by this attempt and asked for `NOTIFY=SUCCESS`.
    pub(crate) delivered: Vec<usize>,
}

/// Ends an attempt at `now`: counts it, bounces what expired (`4.4.7`, with the last
/// reply), marks delay warnings as sent, and, while anything is pending, schedules the
/// next attempt by `backoff` and notes the first pending reply as the message's error.
/// Returns the notices due and whether every recipient is done.
pub(crate) fn finish(
    env: &mut Envelope,
    mut progress: Progress,
    backoff: &Backoff,
    now: i64,
) -> (Notices, bool) {
    env.attempts += 1;
    if env.recipients.iter().any(Recipient::is_pending) && backoff.expired(env, now) {
        for (i, r) in env.recipients.iter_mut().enumerate() {
            if r.is_pending() {
                r.status = RcptStatus::Bounced {
                    reply: expired(r.last_reply.as_ref()),
                };
                progress.bounced.push(i);
            }
        }
    }
    let delayed: Vec<usize> = env
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_pending() && backoff.should_warn(env, r, now))
        .map(|(i, _)| i)
        .collect();
    for &i in &delayed {
        env.recipients[i].delay_warned = true;
    }
    let delivered = progress
        .delivered
        .into_iter()
        .filter(|&i| env.recipients[i].notify.success)
        .collect();
    let notices = Notices {
        failed: progress.bounced,
        delayed,
        delivered,
    };
    if env.is_done() {
        return (notices, true);
    }
    env.next_attempt = backoff.next_attempt(env.attempts, now);
    let last_error = env
        .pending()
        .find_map(|r| r.last_reply.as_ref().map(ToString::to_string));
    env.last_error = last_error;
    (notices, false)
}

/// The bounce reason of a recipient that expired in the queue.
fn expired(last: Option<&DeliveryReply>) -> DeliveryReply {
    DeliveryReply {
        code: None,
        status: Some((4, 4, 7).into()),
        text: format!(
            "message expired in the queue; last error: {}",
            last.map(DeliveryReply::diagnostic).unwrap_or_default()
        ),
        remote_mta: last.and_then(|l| l.remote_mta.clone()),
    }
}

/// One delivery status notification to send: to the envelope sender, about these recipients.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) to: String,
    pub(crate) recipients: Vec<RecipientReport>,
}

/// The notifications due (failures, delays, successes: one message for each kind that has
/// recipients), never to the null sender and only for what each recipient's `NOTIFY=`
/// asked. `lifetime` gives a delay warning its `Will-Retry-Until`.
pub(crate) fn notices(env: &Envelope, due: &Notices, now: i64, lifetime: Duration) -> Vec<Notice> {
    let Some(to) = env.sender.clone().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
    let report = |r: &Recipient, action, status: (u8, u16, u16), reply: Option<&DeliveryReply>| {
        RecipientReport {
            final_recipient: r.address.clone(),
            original_recipient: r.orcpt.clone(),
            action,
            status,
            remote_mta: reply.and_then(|x| x.remote_mta.as_ref().map(|m| m.host.clone())),
            diagnostic: reply.map(DeliveryReply::diagnostic),
            last_attempt: Some(now),
            will_retry_until: None,
        }
    };
    let failed = due.failed.iter().filter_map(|&i| {
        let r = &env.recipients[i];
        let RcptStatus::Bounced { reply } = &r.status else {
            return None;
        };
        r.notify.failure.then(|| {
            report(
                r,
                Action::Failed,
                reply.status_or((5, 0, 0)).tuple(),
                Some(reply),
            )
        })
    });
    let failed: Vec<_> = failed.collect();
    let delayed: Vec<_> = due
        .delayed
        .iter()
        .map(|&i| {
            let r = &env.recipients[i];
            let last = r.last_reply.as_ref();
            let status = last.map_or((4, 0, 0), |l| l.status_or((4, 0, 0)).tuple());
            RecipientReport {
                will_retry_until: Some(env.arrival.saturating_add(lifetime)),
                ..report(r, Action::Delayed, status, last)
            }
        })
        .collect();
    let delivered: Vec<_> = due
        .delivered
        .iter()
        .map(|&i| {
            let r = &env.recipients[i];
            report(r, Action::Delivered, (2, 0, 0), r.last_reply.as_ref())
        })
        .collect();
    [failed, delayed, delivered]
        .into_iter()
        .filter(|v| !v.is_empty())
        .map(|recipients| Notice {
            to: to.clone(),
            recipients,
        })
        .collect()
}

/// The transaction for the recipients at `idx`, with their DSN parameters.
pub(crate) fn outgoing<'a>(env: &Envelope, idx: &[usize], message: &'a [u8]) -> Outgoing<'a> {
    let rcpts: Vec<OutRcpt> = idx
        .iter()
        .map(|&i| {
            let r = &env.recipients[i];
            OutRcpt {
                address: r.address.clone(),
                notify: Some(r.notify),
                orcpt: r.orcpt.clone(),
            }
        })
        .collect();
    let mut out = Outgoing::new(env.sender.clone(), rcpts, message);
    out.body_8bit = env.body_8bit;
    out.smtputf8 = env.smtputf8;
    out.ret = env.ret;
    out.envid = env.envid.clone();
    out
}

#[cfg(test)]
mod tests;
