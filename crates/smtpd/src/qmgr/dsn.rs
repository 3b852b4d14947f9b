//! Delivery status notifications: a [`Notice`] decided by [`super::attempt::notices`]
//! becomes an RFC 3464 message ([`postern_dsn`]) queued to the envelope sender, from the
//! null sender, never asking for DSNs itself, signed as ours ([`Origin::Dsn`]), with a
//! `Received:` field naming its queue id.

use postern_queue::{Envelope, Notify, Origin, Recipient};
use tracing::{info, warn};

use super::Manager;
use super::attempt::Notice;

impl Manager {
    /// Builds and queues the notification `notice` about `env` (whose bytes are `message`).
    pub(super) async fn send_notice(&self, env: &Envelope, message: &[u8], notice: Notice) {
        let Notice { to, recipients } = notice;
        let postmaster = format!(
            "Mail Delivery System <MAILER-DAEMON@{}>",
            self.config.hostname
        );
        let report = postern_dsn::Report {
            reporting_mta: &self.config.hostname,
            postmaster: &postmaster,
            to: &to,
            envid: env.envid.as_deref(),
            arrival: env.arrival,
            recipients,
            original: message,
            ret: env.ret.unwrap_or_default(),
            max_original: 1024 * 1024,
        };
        let dsn = match postern_dsn::build(&report) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "DSN not built");
                return;
            }
        };
        let mut r = Recipient::new(to.clone());
        r.notify = Notify::NEVER;
        let mut bounce = Envelope::new(None, vec![r]);
        bounce.origin = Some(Origin::Dsn);
        // Our trace field names the notification's own queue id, as on a message we accept
        // (Postfix's bounces carry one too): lmtp-deliver logs it when storing.
        bounce.id = self.committer.reserve_id();
        let mut message = format!(
            "Received: by {} (Postern) id {};\r\n\t{}\r\n",
            self.config.hostname,
            bounce.id,
            mail_builder::headers::date::Date::now().to_rfc822()
        )
        .into_bytes();
        message.extend_from_slice(&dsn);
        drop(dsn);
        match self.committer.commit(bounce, message).await {
            Ok(b) => {
                crate::metrics::dsn();
                info!(dsn = %b.id, rcpt = %to, "delivery status notification queued");
                drop(self.requeue.send(b));
            }
            Err(e) => warn!(error = %e, "DSN not queued"),
        }
    }
}
