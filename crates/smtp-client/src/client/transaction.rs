//! One transaction: `MAIL`, `RCPT`s and `DATA` (in one write with `PIPELINING`), the body,
//! and the replies after it; `RSET` when it ends early. To an LMTP server with `CHUNKING`,
//! `MAIL`, `RCPT`s and `BDAT … LAST` with the body in one write instead.

use tracing::{debug, warn};

use super::{Client, Flavor};
use crate::error::{ClientError, Step};
use crate::message::{self, Outgoing, RcptResult};
use crate::reply::ServerReply;

impl Client {
    pub(super) async fn transaction(
        &mut self,
        tx: &Outgoing<'_>,
    ) -> Result<Vec<RcptResult>, ClientError> {
        let mut replies: Vec<Option<ServerReply>> = match message::check_envelope(tx, &self.caps) {
            Some(reply) => vec![Some(reply); tx.recipients.len()],
            None => tx.recipients.iter().map(message::check_rcpt).collect(),
        };
        let to_send: Vec<usize> = (0..replies.len())
            .filter(|&i| replies[i].is_none())
            .collect();
        if to_send.is_empty() {
            return Ok(results(tx, replies));
        }
        if self.dirty {
            self.rset().await?;
        }
        let mail = message::mail_command(tx, &self.caps);
        let rcpts: Vec<String> = to_send
            .iter()
            .map(|&i| message::rcpt_command(&tx.recipients[i], &self.caps))
            .collect();
        if self.flavor == Flavor::Lmtp && self.caps.chunking && self.caps.pipelining {
            return self.chunked(tx, mail, &rcpts, &to_send, replies).await;
        }

        let (mail_reply, data_reply) = if self.caps.pipelining {
            let mut batch = mail.into_bytes();
            rcpts
                .iter()
                .for_each(|rcpt| batch.extend_from_slice(rcpt.as_bytes()));
            batch.extend_from_slice(b"DATA\r\n");
            self.conn
                .write(&batch, Step::Mail, self.timeouts.command)
                .await?;
            let mail_reply = self.read(Step::Mail).await?;
            for &i in &to_send {
                if self.broken {
                    break;
                }
                replies[i] = Some(self.read(Step::Rcpt).await?);
            }
            let data_reply = if self.broken {
                None
            } else {
                Some(self.read(Step::Data).await?)
            };
            (mail_reply, data_reply)
        } else {
            let mail_reply = self.command(mail.as_bytes(), Step::Mail).await?.to_reply();
            if mail_reply.is_positive() {
                for (&i, rcpt) in to_send.iter().zip(&rcpts) {
                    if self.broken {
                        break;
                    }
                    replies[i] = Some(self.command(rcpt.as_bytes(), Step::Rcpt).await?.to_reply());
                }
            }
            (mail_reply, None)
        };
        if mail_reply.is_positive()
            && let Some(closing) = self.closing_reply(&replies, data_reply.as_ref())
        {
            // A 421 mid-transaction: the server is going away; it applies to the rest.
            for &i in &to_send {
                let accepted = replies[i].as_ref().is_some_and(ServerReply::is_positive);
                if accepted || replies[i].is_none() {
                    replies[i] = Some(closing.clone());
                }
            }
            return Ok(results(tx, replies));
        }
        if !mail_reply.is_positive() {
            if data_reply
                .as_ref()
                .is_some_and(ServerReply::is_intermediate)
            {
                self.abort_data().await;
            }
            return Err(ClientError::Rejected(mail_reply));
        }
        self.dirty = true;

        let accepted: Vec<usize> = to_send
            .into_iter()
            .filter(|&i| replies[i].as_ref().is_some_and(ServerReply::is_positive))
            .collect();
        if accepted.is_empty() {
            if data_reply
                .as_ref()
                .is_some_and(ServerReply::is_intermediate)
            {
                self.abort_data().await;
            }
            self.rset_quietly().await;
            return Ok(results(tx, replies));
        }
        let data_reply = match data_reply {
            Some(reply) => reply,
            None => self.command(b"DATA\r\n", Step::Data).await?.to_reply(),
        };
        if !data_reply.is_intermediate() {
            for &i in &accepted {
                replies[i] = Some(data_reply.clone());
            }
            self.rset_quietly().await;
            return Ok(results(tx, replies));
        }

        let body = message::dot_stuff_parts(&[tx.trace, tx.message]);
        for block in body.chunks(BODY_BLOCK) {
            self.conn
                .write(block, Step::Body, self.timeouts.data_block)
                .await?;
        }
        match self.flavor {
            Flavor::Smtp => {
                let reply = self.read_final().await?;
                for &i in &accepted {
                    replies[i] = Some(reply.clone());
                }
            }
            Flavor::Lmtp => self.read_lmtp_finals(&accepted, &mut replies).await?,
        }
        self.dirty = false;
        Ok(results(tx, replies))
    }

    /// The whole transaction in one write, its replies in one read (LMTP with `CHUNKING`
    /// and `PIPELINING`): `MAIL`, the `RCPT`s and `BDAT <size> LAST` with the body (RFC
    /// 3030 §4.2 allows a pipelined `BDAT`), then the replies in order: `MAIL`, each `RCPT`,
    /// and one per accepted recipient after the body (RFC 2033 §4.2). Without an accepted
    /// recipient, or after a refused `MAIL`, the server refuses the `BDAT` with one reply and
    /// discards its octets (RFC 3030 §3; lmtp-deliver and Dovecot's LMTP both do).
    async fn chunked(
        &mut self,
        tx: &Outgoing<'_>,
        mail: String,
        rcpts: &[String],
        to_send: &[usize],
        mut replies: Vec<Option<ServerReply>>,
    ) -> Result<Vec<RcptResult>, ClientError> {
        let normalised = message::bdat_body(&[tx.trace, tx.message]);
        let parts: [&[u8]; 2] = match &normalised {
            Some(body) => [body, &[]],
            None => [tx.trace, tx.message],
        };
        let size: usize = parts.iter().map(|p| p.len()).sum();
        let mut batch = mail.into_bytes();
        rcpts
            .iter()
            .for_each(|rcpt| batch.extend_from_slice(rcpt.as_bytes()));
        batch.extend_from_slice(format!("BDAT {size} LAST\r\n").as_bytes());
        // The commands and up to one block of the body go in one write (a whole message of
        // usual size); the rest of a large one is written from where it is, block by block.
        let mut room = BODY_BLOCK.saturating_sub(batch.len());
        let mut rest: Vec<&[u8]> = Vec::new();
        for part in parts {
            let n = part.len().min(room);
            batch.extend_from_slice(&part[..n]);
            room -= n;
            if n < part.len() {
                rest.push(&part[n..]);
            }
        }
        self.conn
            .write(&batch, Step::Mail, self.timeouts.data_block)
            .await?;
        drop(batch);
        for block in rest.iter().flat_map(|part| part.chunks(BODY_BLOCK)) {
            self.conn
                .write(block, Step::Body, self.timeouts.data_block)
                .await?;
        }
        drop(normalised);

        // The server may hold its replies to the commands until the message is delivered
        // (lmtp-deliver does, to answer in one write): each gets the time of a final reply.
        let mail_reply = self
            .read_within(Step::Mail, self.timeouts.final_reply)
            .await?;
        if mail_reply.is_positive() {
            self.dirty = true;
        }
        for &i in to_send {
            if self.broken {
                break;
            }
            replies[i] = Some(
                self.read_within(Step::Rcpt, self.timeouts.final_reply)
                    .await?,
            );
        }
        if self.broken {
            // A 421: the server is going away; it applies to the rest (nothing was delivered:
            // the server said so before it read the body).
            if !mail_reply.is_positive() {
                return Err(ClientError::Rejected(mail_reply));
            }
            let closing = self
                .closing_reply(&replies, None)
                .unwrap_or_else(|| mail_reply.clone());
            for &i in to_send {
                let accepted = replies[i].as_ref().is_some_and(ServerReply::is_positive);
                if accepted || replies[i].is_none() {
                    replies[i] = Some(closing.clone());
                }
            }
            return Ok(results(tx, replies));
        }
        let accepted: Vec<usize> = to_send
            .iter()
            .copied()
            .filter(|&i| {
                mail_reply.is_positive()
                    && replies[i].as_ref().is_some_and(ServerReply::is_positive)
            })
            .collect();
        if accepted.is_empty() {
            let bdat = self.read_final().await?;
            if bdat.is_positive() {
                // A message taken without a recipient: the server is not following the
                // protocol; what it says next cannot be trusted to belong to us.
                warn!(reply = %bdat, "BDAT accepted without a recipient");
                self.broken = true;
            }
            self.in_step();
            if !mail_reply.is_positive() {
                return Err(ClientError::Rejected(mail_reply));
            }
            // MAIL was accepted: the server's transaction is still open.
            self.rset_quietly().await;
            return Ok(results(tx, replies));
        }
        self.read_lmtp_finals(&accepted, &mut replies).await?;
        self.dirty = false;
        self.in_step();
        Ok(results(tx, replies))
    }

    /// After a transaction's last reply the server has nothing more to say; if it did, the
    /// replies were not the ones counted on: the connection is not used again.
    fn in_step(&mut self) {
        if self.conn.has_unread() {
            warn!("the server sent more replies than expected; closing the connection");
            self.broken = true;
        }
    }

    /// One reply per accepted recipient; if the connection fails after the first, the rest
    /// get a made-up `451` so the ones already delivered are not delivered again.
    async fn read_lmtp_finals(
        &mut self,
        accepted: &[usize],
        replies: &mut [Option<ServerReply>],
    ) -> Result<(), ClientError> {
        for (n, &i) in accepted.iter().enumerate() {
            match self.read_final().await {
                Ok(reply) => replies[i] = Some(reply),
                Err(err) if n == 0 => return Err(err),
                Err(err) => {
                    warn!(error = %err, "LMTP connection lost between per-recipient replies");
                    self.broken = true;
                    let lost =
                        ServerReply::new(451, Some((4, 4, 2)), format!("lost connection: {err}"));
                    for &j in &accepted[n..] {
                        replies[j] = Some(lost.clone());
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The `421` that broke the connection during `RCPT` or `DATA`, if one did.
    fn closing_reply(
        &self,
        replies: &[Option<ServerReply>],
        data_reply: Option<&ServerReply>,
    ) -> Option<ServerReply> {
        if !self.broken {
            return None;
        }
        replies
            .iter()
            .flatten()
            .chain(data_reply)
            .find(|reply| reply.code == 421)
            .cloned()
    }

    /// `RSET` after an aborted transaction; a failure only marks the connection unusable.
    async fn rset_quietly(&mut self) {
        if self.broken {
            return;
        }
        if let Err(err) = self.rset().await {
            debug!(error = %err, "RSET failed");
            self.broken = true;
        }
    }

    /// The server said `354` to a `DATA` it should have refused: send an empty body.
    async fn abort_data(&mut self) {
        let sent = self
            .conn
            .write(b".\r\n", Step::Body, self.timeouts.data_block)
            .await;
        if sent.is_err() || self.read_final().await.is_err() {
            self.broken = true;
        }
    }
}

fn results(tx: &Outgoing<'_>, replies: Vec<Option<ServerReply>>) -> Vec<RcptResult> {
    tx.recipients
        .iter()
        .zip(replies)
        .map(|(rcpt, reply)| RcptResult {
            address: rcpt.address.clone(),
            reply: reply.unwrap_or_else(|| ServerReply::new(451, Some((4, 3, 0)), "no reply")),
        })
        .collect()
}

/// How much of the body is written per [`Timeouts::data_block`].
const BODY_BLOCK: usize = 64 * 1024;
