//! A fake driver: feeds bytes, answers actions with a fixed policy, records what came out.

use std::collections::VecDeque;
use std::sync::Arc;

use postern_smtp_session::{
    Action, Completion, Flavor, PeerInfo, Reply, Session, SessionConfig, Transaction, Verdict,
};

/// What the fake driver decides.
///
/// - senders whose local part is `rejected` get `550 5.7.1`;
/// - recipients whose local part starts with `unknown` get `550 5.1.1`, `later` gets `451`;
/// - LMTP delivery: `full@` gets `452 4.2.2`, `broken@` `451 4.3.0`, others `250 … Saved`;
/// - SASL: `PLAIN` with `dGVzdA==` is user `test`; `LOGIN` asks two questions and accepts the
///   password `c2VjcmV0`; everything else fails.
pub(crate) struct Driver {
    pub(crate) session: Session,
    pub(crate) delivered: Vec<Transaction>,
    pub(crate) closed: bool,
    /// Every reply so far, in order.
    pub(crate) replies: Vec<Reply>,
    /// Names of non-reply actions, in order.
    pub(crate) events: Vec<String>,
    /// Call `tls_started` as soon as `StartTls` is seen.
    pub(crate) auto_tls: bool,
    /// Overrides the delivery replies.
    pub(crate) delivery: Option<Vec<Reply>>,
    login_step: u8,
}

impl Driver {
    pub(crate) fn new(config: SessionConfig) -> Self {
        Self::with_peer(config, PeerInfo::default())
    }

    pub(crate) fn with_peer(config: SessionConfig, peer: PeerInfo) -> Self {
        Self {
            session: Session::new(Arc::new(config), peer),
            delivered: Vec::new(),
            closed: false,
            replies: Vec::new(),
            events: Vec::new(),
            auto_tls: true,
            delivery: None,
            login_step: 0,
        }
    }

    pub(crate) fn smtp() -> Self {
        Self::new(smtp_config())
    }

    pub(crate) fn lmtp() -> Self {
        Self::new(lmtp_config())
    }

    /// Feeds `bytes`, runs the actions; returns the replies this produced.
    pub(crate) fn send(&mut self, bytes: impl AsRef<[u8]>) -> Vec<Reply> {
        let actions = self.session.input(bytes.as_ref());
        self.drive(actions)
    }

    /// `send`, then only the codes.
    pub(crate) fn codes(&mut self, bytes: impl AsRef<[u8]>) -> Vec<u16> {
        codes(&self.send(bytes))
    }

    /// `send`, then the first line of each reply as on the wire (without CRLF).
    pub(crate) fn lines(&mut self, bytes: impl AsRef<[u8]>) -> Vec<String> {
        self.send(bytes).iter().map(first_line).collect()
    }

    pub(crate) fn drive(&mut self, actions: Vec<Action>) -> Vec<Reply> {
        let mut queue = VecDeque::from(actions);
        let mut replies = Vec::new();
        while let Some(action) = queue.pop_front() {
            assert!(!self.closed, "action after Close: {action:?}");
            let completion = match action {
                Action::Reply(reply) => {
                    replies.push(reply);
                    None
                }
                Action::Close => {
                    self.closed = true;
                    self.events.push("Close".into());
                    None
                }
                other => self.respond(other),
            };
            if let Some(completion) = completion {
                queue.extend(
                    self.session
                        .completed(completion)
                        .expect("completion matches"),
                );
            }
        }
        self.replies.extend(replies.iter().cloned());
        replies
    }

    fn respond(&mut self, action: Action) -> Option<Completion> {
        let event = match &action {
            Action::CheckSender { .. } => "CheckSender",
            Action::CheckRecipient { .. } => "CheckRecipient",
            Action::StartTls => "StartTls",
            Action::Auth { .. } => "Auth",
            Action::AuthResponse(_) => "AuthResponse",
            Action::AuthCancel => "AuthCancel",
            Action::Deliver(_) => "Deliver",
            Action::Reply(_) | Action::Close => "",
        };
        self.events.push(event.into());
        Some(match action {
            Action::CheckSender { address, .. } => {
                Completion::Sender(match address.as_ref().map(|a| a.local_part()) {
                    Some("rejected") => Verdict::Reject(Reply::new(550, (5, 7, 1), "Go away")),
                    _ => Verdict::Accept,
                })
            }
            Action::CheckRecipient { address, .. } => {
                Completion::Recipient(match address.local_part() {
                    l if l.starts_with("unknown") => Verdict::Reject(Reply::user_unknown()),
                    "later" => Verdict::Reject(Reply::temp_fail()),
                    _ => Verdict::Accept,
                })
            }
            Action::StartTls => {
                if self.auto_tls {
                    self.session.tls_started().expect("STARTTLS pending");
                }
                return None;
            }
            Action::Auth {
                mechanism,
                initial_response,
            } => match (mechanism.as_str(), initial_response.as_deref()) {
                ("PLAIN", Some("dGVzdA==")) => Completion::AuthDone(Ok("test".into())),
                ("PLAIN", None) => Completion::AuthChallenge(String::new()),
                ("LOGIN", None) => {
                    self.login_step = 1;
                    Completion::AuthChallenge("VXNlcm5hbWU6".into())
                }
                _ => Completion::AuthDone(Err(Reply::auth_failed())),
            },
            Action::AuthResponse(line) => match (self.login_step, line.as_str()) {
                (1, _) => {
                    self.login_step = 2;
                    Completion::AuthChallenge("UGFzc3dvcmQ6".into())
                }
                (2, "c2VjcmV0") | (0, "dGVzdA==") => Completion::AuthDone(Ok("test".into())),
                _ => Completion::AuthDone(Err(Reply::auth_failed())),
            },
            Action::AuthCancel => {
                self.login_step = 0;
                return None;
            }
            Action::Deliver(tx) => {
                let replies = self.delivery.clone().unwrap_or_else(|| match tx.flavor {
                    Flavor::Smtp => vec![Reply::queued("TEST")],
                    Flavor::Lmtp => tx
                        .recipients
                        .iter()
                        .map(|(a, _)| lmtp_result(a.as_str()))
                        .collect(),
                });
                self.delivered.push(*tx);
                Completion::Delivered(replies)
            }
            Action::Reply(_) | Action::Close => return None,
        })
    }
}

fn lmtp_result(rcpt: &str) -> Reply {
    match rcpt.split('@').next() {
        Some("full") => Reply::mailbox_full_temp(),
        Some("broken") => Reply::temp_fail(),
        _ => Reply::saved(rcpt),
    }
}

pub(crate) fn smtp_config() -> SessionConfig {
    let mut config = SessionConfig::new("mx.example", Flavor::Smtp);
    config.extensions.auth = vec!["PLAIN".into(), "LOGIN".into()];
    config.extensions.auth_requires_tls = false;
    config.extensions.starttls = true;
    config
}

pub(crate) fn lmtp_config() -> SessionConfig {
    let mut config = SessionConfig::new("lmtp.example", Flavor::Lmtp);
    config.extensions.enhanced_status_codes = false;
    config
}

pub(crate) fn codes(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(Reply::code).collect()
}

pub(crate) fn first_line(reply: &Reply) -> String {
    let text = reply.to_string();
    text.split("\r\n").next().unwrap_or_default().to_owned()
}

/// `EHLO` (or `LHLO`), `MAIL`, `RCPT` for each recipient; asserts they all succeed.
pub(crate) fn open_transaction(d: &mut Driver, rcpts: &[&str]) {
    let hello = match d.session.config().flavor {
        Flavor::Smtp => "EHLO client.example\r\n",
        Flavor::Lmtp => "LHLO client.example\r\n",
    };
    let mut script = format!("{hello}MAIL FROM:<sender@client.example>\r\n");
    for rcpt in rcpts {
        script.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
    }
    let got = d.codes(script);
    assert_eq!(got, vec![250; rcpts.len() + 2], "{:?}", d.replies);
}
