//! A minimal SMTP server on 127.0.0.1 that accepts everything and records each message:
//! the receiving end for mail Postern sends (Sieve redirect and vacation, later outbound
//! delivery). Bounded: lines and messages are capped, every read has a timeout.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SunkMessage {
    /// MAIL FROM (empty for `<>`).
    pub from: String,
    /// RCPT TO addresses.
    pub to: Vec<String>,
    /// The data, dot-unstuffed, CRLF line ends.
    pub data: String,
}

/// The running sink; stops accepting when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    got: Arc<(Mutex<Vec<SunkMessage>>, Condvar)>,
}

const MAX_LINE: usize = 64 * 1024;
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

impl SmtpSink {
    /// Starts the sink on an ephemeral port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        let addr = listener.local_addr().expect("sink address");
        let got: Arc<(Mutex<Vec<SunkMessage>>, Condvar)> = Arc::default();
        let g = got.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let g = g.clone();
                thread::spawn(move || {
                    drop(session(stream, &g));
                });
            }
        });
        Self { addr, got }
    }

    /// `host:port` for configs.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<SunkMessage> {
        self.got.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` messages arrived; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SunkMessage> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.got;
        let mut v = lock.lock().expect("sink lock");
        while v.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the SMTP sink got {} message(s), expected {n}: {v:?}",
                v.len()
            );
            v = cv.wait_timeout(v, left).expect("sink lock").0;
        }
        v.clone()
    }
}

fn session(stream: TcpStream, got: &(Mutex<Vec<SunkMessage>>, Condvar)) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 sink.test ESMTP\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let line = read_line(&mut r)?;
        if line.is_empty() {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let arg = |prefix: &str| {
            line[prefix.len()..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_owned()
        };
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = arg("MAIL FROM:");
            to.clear();
            w.write_all(b"250 2.1.0 Ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(arg("RCPT TO:"));
            w.write_all(b"250 2.1.5 Ok\r\n")?;
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go\r\n")?;
            let mut data = String::new();
            loop {
                let l = read_line(&mut r)?;
                if l.is_empty() || l == ".\r\n" {
                    break;
                }
                let l = l.strip_prefix('.').unwrap_or(&l);
                if data.len() < MAX_MESSAGE {
                    data.push_str(l);
                }
            }
            let (lock, cv) = got;
            if let Ok(mut v) = lock.lock() {
                v.push(SunkMessage {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                });
                cv.notify_all();
            }
            w.write_all(b"250 2.0.0 Ok: queued\r\n")?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"250 Ok\r\n")?;
        }
    }
}

fn read_line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut limited = std::io::Read::take(r, MAX_LINE as u64);
    BufRead::read_until(&mut limited, b'\n', &mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
