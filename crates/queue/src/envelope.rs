//! What the spool knows about a message and each of its recipients.

use std::time::{SystemTime, UNIX_EPOCH};

use postern_mail_types::Domain;
pub use postern_mail_types::{Notify, Ret};
use serde::{Deserialize, Serialize};

use crate::id::QueueId;
use crate::records::DeliveryReply;

/// A queued message's envelope: the SMTP transaction it arrived in, and delivery progress.
///
/// The fields up to `body_8bit` are fixed at commit; `recipients`' statuses and the fields
/// after `body_8bit` change with delivery attempts and are saved with
/// [`Spool::save_state`](crate::Spool::save_state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Queue id, assigned at commit.
    pub id: QueueId,
    /// `MAIL FROM` address; `None` for the null sender `<>`.
    pub sender: Option<String>,
    /// The accepted recipients, in `RCPT TO` order.
    pub recipients: Vec<Recipient>,
    /// Arrival time, seconds since the Unix epoch.
    pub arrival: i64,
    /// Message size in bytes, as stored (set at commit).
    pub size: u64,
    /// SASL identity of the submitter, if authenticated.
    #[serde(default)]
    pub authenticated: Option<String>,
    /// Client IP address.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// `HELO`/`EHLO` name given by the client.
    #[serde(default)]
    pub helo: Option<String>,
    /// DSN `RET=` (RFC 3461).
    #[serde(default)]
    pub ret: Option<Ret>,
    /// DSN `ENVID=` (RFC 3461), as given (xtext-decoded).
    #[serde(default)]
    pub envid: Option<String>,
    /// `SMTPUTF8` was given on `MAIL FROM`.
    #[serde(default)]
    pub smtputf8: bool,
    /// `BODY=8BITMIME` was given on `MAIL FROM`.
    #[serde(default)]
    pub body_8bit: bool,
    /// Delivery attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// When to try next, seconds since the Unix epoch.
    #[serde(default)]
    pub next_attempt: i64,
    /// Held by the administrator: not delivered until released.
    #[serde(default)]
    pub held: bool,
    /// The error of the last failed attempt, for `mailctl queue list`.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Who handed the message to us, decided at intake: what may be DKIM-signed and what
    /// is forwarded (SRS). `None` in queue files written before it existed: never signed.
    #[serde(default)]
    pub origin: Option<Origin>,
}

pub use postern_mail_types::Origin;

/// One recipient of a queued message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address from `RCPT TO`.
    pub address: String,
    /// DSN `ORCPT=` (RFC 3461), as given (`type;address`).
    #[serde(default)]
    pub orcpt: Option<String>,
    /// DSN `NOTIFY=`.
    #[serde(default)]
    pub notify: Notify,
    /// Delivery status.
    #[serde(default)]
    pub status: RcptStatus,
    /// The last reply received for this recipient (temporary failures included).
    #[serde(default)]
    pub last_reply: Option<DeliveryReply>,
    /// A delay warning was sent for this recipient.
    #[serde(default)]
    pub delay_warned: bool,
    /// Where the recipient goes, decided when it was accepted (`RCPT TO`); `None` in
    /// queue files from before it was recorded (and for recipients queued without the
    /// decision): the queue manager asks which domains are local at delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
}

/// Where a recipient is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// A domain of ours: LMTP to the local delivery agent.
    Local,
    /// Another domain: a `transports` entry, the relayhost, or its MX hosts.
    Remote,
}

/// Delivery status of one recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RcptStatus {
    /// Not delivered yet (never tried, or temporary failures).
    #[default]
    Pending,
    /// Delivered (or relayed) successfully.
    Delivered,
    /// Failed permanently (or expired); a bounce is due or was sent.
    Bounced {
        /// The reply or reason, for the bounce.
        reply: DeliveryReply,
    },
}

impl Recipient {
    /// A pending recipient with default DSN options.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            orcpt: None,
            notify: Notify::default(),
            status: RcptStatus::Pending,
            last_reply: None,
            delay_warned: false,
            destination: None,
        }
    }

    /// Whether delivery to this recipient is still to be done.
    pub fn is_pending(&self) -> bool {
        self.status == RcptStatus::Pending
    }

    /// The domain part of the address (after the last `@`), empty if there is none.
    pub fn domain(&self) -> &str {
        postern_mail_types::split(&self.address).1
    }

    /// The domain of the address, for comparing and routing.
    pub fn domain_name(&self) -> Domain {
        Domain::new(self.domain())
    }
}

impl Envelope {
    /// An envelope for a new message, arriving now, with nothing else set. The id and size are
    /// assigned at commit.
    pub fn new(sender: Option<String>, recipients: Vec<Recipient>) -> Self {
        let now = unix_now();
        Self {
            id: QueueId::default(),
            sender,
            recipients,
            arrival: now,
            size: 0,
            authenticated: None,
            client_ip: None,
            helo: None,
            ret: None,
            envid: None,
            smtputf8: false,
            body_8bit: false,
            attempts: 0,
            next_attempt: now,
            held: false,
            last_error: None,
            origin: None,
        }
    }

    /// The recipients still to deliver to.
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.is_pending())
    }

    /// Whether every recipient is delivered or bounced (the message can be removed once any
    /// bounce is queued).
    pub fn is_done(&self) -> bool {
        self.pending().next().is_none()
    }

    /// The sender as written in SMTP: the address, or empty for `<>`.
    pub fn sender_str(&self) -> &str {
        self.sender.as_deref().unwrap_or("")
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_defaults() {
        let mut env = Envelope::new(None, vec![Recipient::new("a@example.org")]);
        env.recipients[0].status = RcptStatus::Bounced {
            reply: "550 5.1.1 no".into(),
        };
        env.ret = Some(Ret::Headers);
        env.recipients.push(Recipient {
            notify: Notify::NEVER,
            ..Recipient::new("b@x")
        });
        let json = serde_json::to_string(&env).unwrap();
        assert_eq!(serde_json::from_str::<Envelope>(&json).unwrap(), env);
        assert!(!env.is_done());
        assert_eq!(env.pending().count(), 1);
        assert_eq!(env.recipients[1].domain(), "x");

        let minimal = r#"{"id":"00000000000000000000","sender":null,"recipients":[{"address":"c@d"}],"arrival":5,"size":0}"#;
        let env: Envelope = serde_json::from_str(minimal).unwrap();
        assert_eq!(env.recipients[0].notify, Notify::default());
        assert!(env.recipients[0].is_pending());
        assert_eq!(env.sender_str(), "");
        assert_eq!(env.origin, None, "old queue files load without an origin");
    }

    #[test]
    fn origin_round_trips() {
        for o in [
            Origin::Mx,
            Origin::Submission {
                login: "a@b".into(),
            },
            Origin::Trusted,
            Origin::Local {
                uid: 33,
                user: Some("www-data".into()),
            },
            Origin::Forward {
                by: Some("a@b".into()),
            },
            Origin::AutoReply { user: "a@b".into() },
            Origin::Dsn,
        ] {
            let mut env = Envelope::new(None, vec![Recipient::new("c@d")]);
            env.origin = Some(o);
            let json = serde_json::to_string(&env).unwrap();
            assert_eq!(serde_json::from_str::<Envelope>(&json).unwrap(), env);
        }
    }
}
