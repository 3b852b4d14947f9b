//! smtp-session: arbitrary chunked input in every state, SMTP and LMTP, before and after
//! AUTH, through DATA and BDAT, with the driver's answers (sender/recipient verdicts, SASL
//! steps, STARTTLS, delivery results) chosen by the fuzzer too.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use postern_smtp_session::{
    Action, Completion, Extensions, Flavor, PeerInfo, Reply, Session, SessionConfig, Verdict,
};

/// Inputs and completions handled per run.
const MAX_STEPS: usize = 2_000;
/// Bytes of settings before the client's bytes.
const HEAD: usize = 16;

/// The settings from 64 bits of the input.
fn config(bits: u64) -> SessionConfig {
    let bit = |n: u32| bits >> n & 1 == 1;
    let pick = |n: u32, from: &[u64]| from[(bits >> n) as usize % from.len()];
    let flavor = if bit(0) { Flavor::Lmtp } else { Flavor::Smtp };
    let mut c = SessionConfig::new("mx.example.test", flavor);
    c.max_message_size = pick(1, &[0, 10, 300, 1 << 20]);
    c.max_recipients = pick(3, &[1, 3, 1000, 1000]) as usize;
    c.max_line_length = pick(5, &[64, 512, 4096, 4096]) as usize;
    c.max_body_line_length = pick(7, &[80, 1000, 65536, 65536]) as usize;
    c.max_errors = pick(9, &[1, 3, 20, 20]) as u32;
    c.max_commands_before_mail = pick(11, &[2, 100]) as u32;
    c.extensions = Extensions {
        starttls: bit(12),
        auth: if bit(13) {
            vec!["PLAIN".into(), "LOGIN".into()]
        } else {
            Vec::new()
        },
        auth_requires_tls: bit(14),
        dsn: bit(15),
        chunking: !bit(16),
        binarymime: bit(17),
        smtputf8: !bit(18),
        eightbitmime: !bit(19),
        pipelining: !bit(20),
        enhanced_status_codes: !bit(21),
        vrfy: bit(22),
        size: !bit(23),
    };
    c.reject_bare_newline = bit(24);
    c
}

fn reply(rng: &mut Rng) -> Reply {
    match rng.below(5) {
        0 => Reply::user_unknown(),
        1 => Reply::temp_fail(),
        2 => Reply::mailbox_full(),
        3 => Reply::new(250, (2, 0, 0), "Ok: queued as X"),
        _ => Reply::multiline(550, None, ["first line", "second line"]),
    }
}

fn verdict(rng: &mut Rng) -> Verdict {
    match rng.below(3) {
        0 => Verdict::Accept,
        1 => Verdict::AcceptWith(reply(rng)),
        _ => Verdict::Reject(reply(rng)),
    }
}

/// What the last action asked the driver to do.
enum Asked {
    Sender,
    Recipient,
    Tls,
    Auth,
    Delivery(usize),
}

fn check_reply(r: &Reply) {
    assert!((200..=599).contains(&r.code()), "reply code {}", r.code());
    let bytes = r.to_bytes();
    assert!(bytes.ends_with(b"\r\n"), "reply not CRLF-terminated");
    let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    for line in lines {
        assert!(line.ends_with(b"\r"), "bare LF in a reply: {bytes:?}");
        assert!(
            !line[..line.len() - 1].contains(&b'\r'),
            "bare CR in a reply: {bytes:?}"
        );
        assert!(
            line.len() >= 4 && line[..3] == r.code().to_string().as_bytes()[..],
            "reply line without its code: {bytes:?}"
        );
    }
}

/// xorshift64*: the driver's choices (chunk sizes, verdicts) from the input's first bytes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Input: 16 bytes of settings and driver choices, then the client's bytes.
fn run(data: &[u8]) {
    let mut head = [0u8; HEAD];
    let split = data.len().min(HEAD);
    head[..split].copy_from_slice(&data[..split]);
    let mut text = &data[split..];
    let config = Arc::new(config(u64::from_le_bytes(
        head[..8].try_into().unwrap_or_default(),
    )));
    let peer = PeerInfo {
        ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        tls: head[8] & 1 == 1,
        authenticated: (head[8] & 2 == 2).then(|| "alice@example.test".to_owned()),
    };
    let seed = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
    let mut rng = Rng(seed | 1);
    let mut s = Session::new(config.clone(), peer);
    check_reply(&s.greeting());
    let mut asked = None;
    // A driver that spools the message as it arrives (`take_body`) or not.
    let spool = head[8] & 4 == 4;
    let mut taken: Vec<u8> = Vec::new();
    for _ in 0..MAX_STEPS {
        if s.is_closed() {
            break;
        }
        let actions = if s.wants_input() {
            if text.is_empty() {
                if rng.below(2) == 0 {
                    s.timeout()
                } else {
                    s.shutdown()
                }
            } else {
                let len = match rng.below(4) {
                    0 => text.len(),
                    1 => 1,
                    _ => 1 + rng.below(64) as usize,
                };
                let (chunk, rest) = text.split_at(len.min(text.len()));
                text = rest;
                s.input(chunk)
            }
        } else {
            let completion = match asked.take() {
                Some(Asked::Sender) => Completion::Sender(verdict(&mut rng)),
                Some(Asked::Recipient) => Completion::Recipient(verdict(&mut rng)),
                Some(Asked::Tls) => {
                    s.tls_started().expect("STARTTLS was pending");
                    continue;
                }
                Some(Asked::Auth) => match rng.below(3) {
                    0 => Completion::AuthChallenge(String::new()),
                    1 => Completion::AuthDone(Ok("bob@example.test".into())),
                    _ => Completion::AuthDone(Err(Reply::new(
                        535,
                        (5, 7, 8),
                        "Authentication failed",
                    ))),
                },
                Some(Asked::Delivery(n)) => {
                    let count = if rng.below(4) > 0 {
                        n
                    } else {
                        n.saturating_sub(1)
                    };
                    let mut replies = Vec::new();
                    for _ in 0..count {
                        replies.push(reply(&mut rng));
                    }
                    Completion::Delivered(replies)
                }
                None => panic!("the session waits, but asked for nothing"),
            };
            s.completed(completion)
                .expect("a completion for what the session asked")
        };
        if spool {
            taken.extend_from_slice(&s.take_body());
        }
        for action in actions {
            match action {
                Action::Reply(r) => check_reply(&r),
                Action::CheckSender { .. } => {
                    taken.clear();
                    asked = Some(Asked::Sender);
                }
                Action::CheckRecipient { .. } => asked = Some(Asked::Recipient),
                Action::StartTls => asked = Some(Asked::Tls),
                Action::Auth { .. } | Action::AuthResponse(_) => asked = Some(Asked::Auth),
                Action::AuthCancel => {}
                Action::Deliver(tx) => {
                    assert!(!tx.recipients.is_empty(), "a delivery without recipients");
                    assert!(
                        tx.recipients.len() <= config.max_recipients,
                        "{} recipients, limit {}",
                        tx.recipients.len(),
                        config.max_recipients
                    );
                    let size = taken.len() + tx.message.len();
                    assert!(
                        size as u64 <= config.max_message_size,
                        "{size}-byte message, limit {}",
                        config.max_message_size
                    );
                    taken.clear();
                    asked = Some(Asked::Delivery(tx.recipients.len()));
                }
                Action::Close => {}
            }
        }
    }
}

fuzz_target!(|data: &[u8]| run(data));
