//! Any input, split anywhere: no panic, and the same replies however the bytes arrive.

use std::sync::Arc;

use postern_smtp_session::{Action, Completion, PeerInfo, Reply, Session, SessionConfig, Verdict};

use crate::common::{Driver, lmtp_config, smtp_config};

/// Small limits, so that scripts reach them; no STARTTLS, whose effect depends on timing.
fn tight(mut config: SessionConfig) -> SessionConfig {
    config.max_line_length = 64;
    config.max_message_size = 200;
    config.max_body_line_length = 40;
    config.max_recipients = 3;
    config.extensions.starttls = false;
    config
}

const SMTP_SCRIPT: &str = "EHLO client.example\r\n\
    MAIL FROM:<sender@client.example> SIZE=100 BODY=8BITMIME\r\n\
    RCPT TO:<one@example.org> NOTIFY=NEVER\r\n\
    RCPT TO:<unknown@example.org>\r\n\
    RCPT TO:<\"quoted local\"@example.org>\r\n\
    DATA\r\n\
    Subject: split\r\n\r\n..stuffed\r\nbare\nlf\r\na\n.\nsmuggled\r\n\r\n.\r\n\
    NOOP this line is much too long for the tight limit of sixty-four octets\r\n\
    NO\0OP\r\n\
    MAIL FROM:<>\r\nRCPT TO:<r@example.org>\r\nBDAT 5\r\n\r\n.\r\nBDAT 3 LAST\r\nxyz\
    MAIL FROM:<>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n\
    0123456789012345678901234567890123456789012345\r\n.\r\n\
    AUTH LOGIN\r\ndGVzdA==\r\nc2VjcmV0\r\n\
    RSET\r\nVRFY x\r\nHELP\r\nQUIT\r\nNOOP\r\n";

const LMTP_SCRIPT: &str = "LHLO client.example\r\nEHLO client.example\r\n\
    MAIL FROM:<s@client.example>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<full@example.org>\r\n\
    RCPT TO:<unknown@example.org>\r\nDATA\r\nhello\r\n.\r\n\
    MAIL FROM:<s@client.example>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n\
    DATA\r\n00000000000000000000000000000000000000000000000000000000000000000000000000\r\n\
    11111111111111111111111111111111111111111111111111111111111111111111111111\r\n\
    22222222222222222222222222222222222222222222222222222222222222222222222222\r\n.\r\n\
    MAIL FROM:<>\r\nRCPT TO:<a@example.org>\r\nBDAT 4 LAST\r\nabcdQUIT\r\n";

/// Everything the driver saw, as text.
fn transcript(config: &SessionConfig, pieces: &[&[u8]]) -> String {
    let mut d = Driver::new(config.clone());
    for piece in pieces {
        d.send(piece);
    }
    let mut out: String = d.replies.iter().map(Reply::to_string).collect();
    for tx in &d.delivered {
        out.push_str(&format!("DELIVER {tx:?} {:?}\n", tx.message));
    }
    out.push_str(&format!("{:?}", d.events));
    out
}

fn assert_split_invariant(config: &SessionConfig, script: &[u8]) {
    let whole = transcript(config, &[script]);
    for k in 0..=script.len() {
        let (a, b) = script.split_at(k);
        assert_eq!(transcript(config, &[a, b]), whole, "split at {k}");
    }
    let bytes: Vec<&[u8]> = script.chunks(1).collect();
    assert_eq!(transcript(config, &bytes), whole, "byte by byte");
}

#[test]
fn smtp_script_split_at_every_byte() {
    let config = tight(smtp_config());
    let whole = transcript(&config, &[SMTP_SCRIPT.as_bytes()]);
    // The script does reach every path it is meant to.
    for needle in [
        "354 ",
        "550 5.1.1",
        "500 5.5.2 Error: line too long",
        "NUL",
        "Ok: 5 octets",
        "552 5.3.4 Message line too long",
        "235 ",
        "221 ",
    ] {
        assert!(whole.contains(needle), "{needle} missing from\n{whole}");
    }
    assert_split_invariant(&config, SMTP_SCRIPT.as_bytes());
}

#[test]
fn lmtp_script_split_at_every_byte() {
    let config = tight(lmtp_config());
    let whole = transcript(&config, &[LMTP_SCRIPT.as_bytes()]);
    assert!(whole.contains("452 4.2.2") && whole.contains("552 5.3.4") && whole.contains("221 "));
    assert_split_invariant(&config, LMTP_SCRIPT.as_bytes());
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const FRAGMENTS: &[&str] = &[
    "EHLO c\r\n",
    "HELO c\r\n",
    "LHLO c\r\n",
    "MAIL FROM:<a@b.example>\r\n",
    "MAIL FROM:<>\r\n",
    "MAIL FROM:<rejected@b.example>\r\n",
    "RCPT TO:<r@example.org>\r\n",
    "RCPT TO:<unknown@example.org>\r\n",
    "RCPT TO:<full@example.org>\r\n",
    "DATA\r\n",
    ".\r\n",
    "..\r\n",
    "\r\n",
    "\n",
    "\r",
    ".",
    "\n.\n",
    "BDAT 3\r\n",
    "BDAT 2 LAST\r\n",
    "BDAT 0 LAST\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "QUIT\r\n",
    "AUTH LOGIN\r\n",
    "AUTH PLAIN dGVzdA==\r\n",
    "*\r\n",
    "STARTTLS\r\n",
    "VRFY x\r\n",
    "SIZE=999999 ",
    "\0",
    "<",
    ">",
    "\"",
    "@",
    " ",
    "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz",
];

/// A session of random phrases: whole transactions (`DATA` or `BDAT`) with random bodies,
/// and soups of fragments and random bytes.
fn random_input(rng: &mut Rng) -> Vec<u8> {
    let mut input = Vec::new();
    if rng.below(5) > 0 {
        input.extend_from_slice(b"EHLO c\r\nLHLO c\r\n");
    }
    for _ in 0..rng.below(8) + 1 {
        match rng.below(4) {
            0 => {
                input.extend_from_slice(b"MAIL FROM:<a@b.example>\r\n");
                for _ in 0..rng.below(4) {
                    input.extend_from_slice(fragment(rng, &FRAGMENTS[6..9]));
                }
                input.extend_from_slice(b"DATA\r\n");
                soup(rng, &mut input, 30);
                input.extend_from_slice(b"\r\n.\r\n");
            }
            1 => {
                input.extend_from_slice(b"MAIL FROM:<>\r\nRCPT TO:<r@example.org>\r\n");
                for _ in 0..rng.below(3) + 1 {
                    let mut chunk = Vec::new();
                    soup(rng, &mut chunk, 5);
                    let last = if rng.below(2) == 0 { " LAST" } else { "" };
                    input.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
                    input.extend_from_slice(&chunk);
                }
            }
            _ => soup(rng, &mut input, 20),
        }
    }
    input
}

fn soup(rng: &mut Rng, input: &mut Vec<u8>, max: usize) {
    for _ in 0..rng.below(max) + 1 {
        if rng.below(5) == 0 {
            for _ in 0..rng.below(20) {
                input.push(rng.next() as u8);
            }
        } else {
            input.extend_from_slice(fragment(rng, FRAGMENTS));
        }
    }
}

fn fragment<'a>(rng: &mut Rng, fragments: &[&'a str]) -> &'a [u8] {
    fragments[rng.below(fragments.len())].as_bytes()
}

fn random_pieces<'a>(rng: &mut Rng, input: &'a [u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(rng.below(rest.len().min(30)) + 1);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[test]
fn random_input_random_splits() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000 {
        let mut config = tight(if round % 2 == 0 {
            smtp_config()
        } else {
            lmtp_config()
        });
        config.max_errors = if round % 3 == 0 { 5 } else { 1000 };
        config.max_commands_before_mail = if round % 5 == 0 { 4 } else { 1000 };
        let input = random_input(&mut rng);
        let whole = transcript(&config, &[&input]);
        let pieces = random_pieces(&mut rng, &input);
        assert_eq!(
            transcript(&config, &pieces),
            whole,
            "round {round}: {input:?}"
        );
    }
}

/// Random completions too, right or wrong: errors, never panics.
#[test]
fn random_completions() {
    let mut rng = Rng(42);
    for round in 0..2000 {
        let mut config = tight(if round % 2 == 0 {
            smtp_config()
        } else {
            lmtp_config()
        });
        config.extensions.starttls = true;
        config.extensions.auth = vec!["PLAIN".into(), "LOGIN".into()];
        config.extensions.auth_requires_tls = false;
        let max_size = config.max_message_size;
        let mut s = Session::new(Arc::new(config), PeerInfo::default());
        let input = random_input(&mut rng);
        let mut closed = false;
        for piece in random_pieces(&mut rng, &input) {
            let mut actions = s.input(piece);
            let mut tries = 0;
            loop {
                for action in actions.drain(..) {
                    assert!(!closed, "action after Close");
                    match action {
                        Action::Close => closed = true,
                        Action::Deliver(tx) => assert!(tx.message.len() as u64 <= max_size),
                        Action::StartTls if rng.below(2) == 0 => s.tls_started().unwrap(),
                        _ => {}
                    }
                }
                if s.wants_input() || s.is_closed() || tries > 20 {
                    break;
                }
                tries += 1;
                if let Ok(more) = s.completed(random_completion(&mut rng)) {
                    actions = more;
                }
            }
            assert_eq!(closed, s.is_closed());
        }
        let _ = s.timeout();
        assert!(s.is_closed());
    }
}

fn random_completion(rng: &mut Rng) -> Completion {
    let reply = match rng.below(3) {
        0 => Reply::ok(),
        1 => Reply::temp_fail(),
        _ => Reply::user_unknown(),
    };
    let verdict = match rng.below(3) {
        0 => Verdict::Accept,
        1 => Verdict::AcceptWith(reply.clone()),
        _ => Verdict::Reject(reply.clone()),
    };
    match rng.below(6) {
        0 => Completion::Sender(verdict),
        1 => Completion::Recipient(verdict),
        2 => Completion::AuthChallenge("Zm9v".into()),
        3 => Completion::AuthDone(if rng.below(2) == 0 {
            Ok("u".into())
        } else {
            Err(reply)
        }),
        _ => Completion::Delivered(vec![reply; rng.below(4)]),
    }
}
