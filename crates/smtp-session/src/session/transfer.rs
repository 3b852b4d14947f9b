//! The end of a message, and the driver's answers to pending actions.

use super::{Envelope, Helo, Pending, Read, Session, SessionError, State};
use crate::action::{Action, Completion, Transaction, Verdict};
use crate::config::Flavor;
use crate::data::BodyError;
use crate::params::BodyType;
use crate::reply::Reply;

impl Session {
    /// `CRLF . CRLF` was read.
    pub(super) fn end_of_data(&mut self, out: &mut Vec<Action>) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Data(helo, tx, reader) => {
                self.end_of_message(helo, *tx, reader.finish(), false, out)
            }
            state => self.state = state,
        }
    }

    /// A `BDAT` chunk was read.
    pub(super) fn end_of_chunk(&mut self, out: &mut Vec<Action>) {
        let State::Chunking(_, _, _, reading) = &mut self.state else {
            return;
        };
        let Some(chunk) = reading.take() else {
            return;
        };
        if !chunk.last {
            let text = format!("Ok: {} octets received", chunk.size);
            return self.emit(Reply::new(250, (2, 0, 0), text), out);
        }
        if let State::Chunking(helo, tx, chunks, _) =
            std::mem::replace(&mut self.state, State::Closed)
        {
            self.end_of_message(helo, *tx, chunks.finish(), true, out);
        }
    }

    /// Hands a complete message to the driver, or refuses it; either way the transaction ends.
    fn end_of_message(
        &mut self,
        helo: Helo,
        tx: Envelope,
        message: Result<Vec<u8>, BodyError>,
        chunked: bool,
        out: &mut Vec<Action>,
    ) {
        self.state = State::Greeted(helo.clone());
        let rcpts = tx.rcpts.len();
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                for _ in 0..self.per_message_replies(rcpts) {
                    self.emit(error.reply(), out);
                }
                return;
            }
        };
        let transaction = Transaction {
            flavor: self.config.flavor,
            helo: helo.name,
            esmtp: helo.esmtp,
            body_type: tx.params.body.unwrap_or(BodyType::SevenBit),
            smtputf8: tx.params.smtputf8,
            mail_from: tx.from,
            mail_params: tx.params,
            recipients: tx.rcpts,
            message,
            chunked,
            peer: self.peer.clone(),
            authenticated: self.authenticated.clone(),
            tls: self.peer.tls,
        };
        out.push(Action::Deliver(Box::new(transaction)));
        self.pending = Some(Pending::Delivery(rcpts));
    }

    /// SMTP answers a message once; LMTP once per accepted recipient.
    fn per_message_replies(&self, rcpts: usize) -> usize {
        match self.config.flavor {
            Flavor::Smtp => 1,
            Flavor::Lmtp => rcpts,
        }
    }

    /// Applies the driver's answer to the pending action.
    pub(super) fn complete(
        &mut self,
        completion: Completion,
        out: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        match (self.pending.take(), completion) {
            (Some(Pending::Sender(from, params)), Completion::Sender(verdict)) => {
                let Some(reply) = self.verdict(verdict, Reply::sender_ok(), out) else {
                    return Ok(());
                };
                if let State::Greeted(helo) = std::mem::replace(&mut self.state, State::Closed) {
                    let rcpts = Vec::new();
                    let tx = Envelope {
                        from,
                        params,
                        rcpts,
                    };
                    self.state = State::Mail(helo, Box::new(tx));
                    self.idle_commands = 0;
                }
                self.emit(reply, out);
            }
            (Some(Pending::Recipient(address, params)), Completion::Recipient(verdict)) => {
                let Some(reply) = self.verdict(verdict, Reply::recipient_ok(), out) else {
                    return Ok(());
                };
                if let State::Mail(_, tx) = &mut self.state {
                    tx.rcpts.push((address, params));
                }
                self.emit(reply, out);
            }
            (Some(Pending::Auth), Completion::AuthChallenge(challenge)) => {
                self.read = Read::SaslLine;
                self.emit(Reply::plain(334, challenge), out);
            }
            (Some(Pending::Auth), Completion::AuthDone(Ok(user))) => {
                self.authenticated = Some(user);
                self.emit(Reply::auth_ok(), out);
            }
            (Some(Pending::Auth), Completion::AuthDone(Err(reply))) => self.fail(reply, out),
            (Some(Pending::Delivery(rcpts)), Completion::Delivered(replies)) => {
                let mut replies = replies.into_iter();
                for _ in 0..self.per_message_replies(rcpts) {
                    self.emit(replies.next().unwrap_or_else(Reply::temp_fail), out);
                }
            }
            (pending, _) => {
                let name = pending.as_ref().map_or("nothing", Pending::name);
                self.pending = pending;
                return Err(SessionError::UnexpectedCompletion { pending: name });
            }
        }
        Ok(())
    }

    /// The reply for an accepted sender or recipient; a refusal is sent and counted here.
    fn verdict(&mut self, verdict: Verdict, ok: Reply, out: &mut Vec<Action>) -> Option<Reply> {
        match verdict {
            Verdict::Accept => Some(ok),
            Verdict::AcceptWith(reply) => Some(reply),
            Verdict::Reject(reply) => {
                self.fail(reply, out);
                None
            }
        }
    }
}
