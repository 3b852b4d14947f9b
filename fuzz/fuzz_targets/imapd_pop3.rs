//! imapd: the POP3 session (a sans-I/O state machine) on a client's lines, with logins,
//! SASL steps, fetches and the UPDATE state answered as the driver would.
//!
//! Input: 8 bytes of settings and driver choices, then the client's bytes (lines split and
//! limited as `pop3::conn` does).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_imapd::login::LoginError;
use postern_imapd::pop3::session::{Action, FetchError, Maildrop, Session, Settings};

const MAX_STEPS: usize = 2_000;
const HEAD: usize = 8;

/// xorshift64*: the driver's choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn check(bytes: &[u8]) {
    assert!(bytes.ends_with(b"\r\n"), "reply without CRLF");
    assert!(
        bytes.starts_with(b"+OK") || bytes.starts_with(b"-ERR") || bytes.starts_with(b"+ "),
        "bad status indicator: {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
    );
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    assert!(
        !first[..first.len().saturating_sub(1)].contains(&b'\r'),
        "bare CR in a status line"
    );
}

fn run(data: &[u8]) {
    let mut head = [0u8; HEAD];
    let split = data.len().min(HEAD);
    head[..split].copy_from_slice(&data[..split]);
    let mut text = &data[split..];
    let mut rng = Rng(u64::from_le_bytes(head) | 1);
    let mut s = Session::new(Settings {
        secured: head[0] & 1 == 1,
        trusted: head[0] & 2 == 2,
        stls: head[0] & 4 == 4,
        max_auth_failures: u32::from(head[0] >> 6) + 1,
    });
    let mut queue: Vec<Action> = vec![s.greeting()];
    for _ in 0..MAX_STEPS {
        if s.is_done() {
            break;
        }
        let mut next = Vec::new();
        for action in queue.drain(..) {
            next.extend(match action {
                Action::Reply(bytes) => {
                    check(&bytes);
                    Vec::new()
                }
                Action::StartTls => s.tls_started(),
                Action::Login { .. } | Action::AuthStart { .. } | Action::AuthContinue(_) => {
                    match rng.below(4) {
                        0 => s.auth_challenge(b"VXNlcm5hbWU6"),
                        1 => s.login_done(Err(LoginError::Failed(Some("no".into())))),
                        2 => s.login_done(Err(LoginError::Temporary("later".into()))),
                        _ => {
                            let n = rng.below(5) as u32;
                            let msgs: Vec<(u32, u64, bool)> = (0..n)
                                .map(|i| (i * 2 + 1, u64::from(i) * 100 + 1, i % 2 == 0))
                                .collect();
                            s.login_done(Ok(Maildrop::new(0x5f00_0001, msgs)))
                        }
                    }
                }
                Action::AuthCancel => Vec::new(),
                Action::Fetch {
                    msg, body_lines, ..
                } => {
                    let result = match rng.below(4) {
                        0 => Err(FetchError::Gone),
                        1 => Err(FetchError::Temporary("disk\r\nerror".into())),
                        _ => Ok(postern_fuzz::MESSAGES[rng.below(3) as usize].to_vec()),
                    };
                    s.fetched(msg, body_lines, result)
                }
                Action::Update { .. } => {
                    if rng.below(2) == 0 {
                        s.updated(Ok(()))
                    } else {
                        s.updated(Err("rename\nfailed".into()))
                    }
                }
                Action::Close => return,
            });
        }
        if next.is_empty() {
            if text.is_empty() {
                break;
            }
            let max = s.max_line();
            next = match text.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let line = &text[..end];
                    text = &text[end + 1..];
                    if end + 1 > max {
                        s.line_too_long()
                    } else {
                        s.line(line.strip_suffix(b"\r").unwrap_or(line))
                    }
                }
                None => {
                    text = &[];
                    if rng.below(2) == 0 {
                        s.timed_out()
                    } else {
                        s.flooded()
                    }
                }
            };
        }
        queue = next;
    }
    let _ = s.seen_on_disconnect();
}

fuzz_target!(|data: &[u8]| run(data));
