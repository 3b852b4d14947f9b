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
    /// The EHLO/HELO name the client gave.
    pub helo: String,
}

/// How a sink answers (all settable while it runs, see [`SmtpSink::set_behaviour`]).
#[derive(Debug, Clone, Default)]
pub struct SinkBehaviour {
    /// The greeting instead of `220 sink.test ESMTP` (e.g. `554 5.7.1 go away`).
    pub greeting: Option<String>,
    /// The reply to every RCPT instead of `250` (e.g. `450 4.2.0 try later`).
    pub rcpt_reply: Option<String>,
    /// Extra EHLO keywords (e.g. `SIZE 1000`); `8BITMIME` is always there unless
    /// `no_8bitmime`.
    pub ehlo: Vec<String>,
    /// Leave `8BITMIME` out of the EHLO reply.
    pub no_8bitmime: bool,
}

/// The running sink; stops accepting when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    got: Arc<(Mutex<Vec<SunkMessage>>, Condvar)>,
    behaviour: Arc<Mutex<SinkBehaviour>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

const MAX_LINE: usize = 64 * 1024;
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

impl SmtpSink {
    /// Starts the sink on an ephemeral port.
    pub fn start() -> Self {
        Self::start_on(
            "127.0.0.1:0".parse().expect("an address"),
            SinkBehaviour::default(),
        )
        .expect("bind the sink")
    }

    /// Starts the sink on `addr` (any 127.x.y.z; port 0 for an ephemeral one) answering as
    /// `behaviour` says. Fails when the address is taken.
    pub fn start_on(addr: SocketAddr, behaviour: SinkBehaviour) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let got: Arc<(Mutex<Vec<SunkMessage>>, Condvar)> = Arc::default();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let connections: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (g, b, c) = (got.clone(), behaviour.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (g, b) = (g.clone(), b.clone());
                thread::spawn(move || {
                    drop(session(stream, &g, &b));
                });
            }
        });
        Ok(Self {
            addr,
            got,
            behaviour,
            connections,
        })
    }

    /// Changes how the sink answers from the next command on.
    pub fn set_behaviour(&self, behaviour: SinkBehaviour) {
        *self.behaviour.lock().expect("sink lock") = behaviour;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
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

fn session(
    stream: TcpStream,
    got: &(Mutex<Vec<SunkMessage>>, Condvar),
    behaviour: &Mutex<SinkBehaviour>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let now = || behaviour.lock().map(|b| b.clone()).unwrap_or_default();
    match now().greeting {
        Some(g) => {
            w.write_all(format!("{g}\r\n").as_bytes())?;
            if !g.starts_with('2') {
                // Like Postfix after a refusing greeting: answer 503 until QUIT.
                loop {
                    let line = read_line(&mut r)?;
                    if line.is_empty() || line.to_ascii_uppercase().starts_with("QUIT") {
                        w.write_all(b"221 2.0.0 Bye\r\n")?;
                        return Ok(());
                    }
                    w.write_all(b"503 5.5.1 Error: refusing service\r\n")?;
                }
            }
        }
        None => w.write_all(b"220 sink.test ESMTP\r\n")?,
    }
    let (mut from, mut to, mut helo) = (String::new(), Vec::new(), String::new());
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
            helo = line[4..].trim().to_owned();
            let b = now();
            let mut keywords: Vec<String> = b.ehlo.clone();
            if !b.no_8bitmime {
                keywords.push("8BITMIME".into());
            }
            let mut reply = String::from("250");
            if keywords.is_empty() {
                reply.push_str(" sink.test\r\n");
            } else {
                reply.push_str("-sink.test\r\n");
                for (i, k) in keywords.iter().enumerate() {
                    let sep = if i + 1 == keywords.len() { ' ' } else { '-' };
                    reply.push_str(&format!("250{sep}{k}\r\n"));
                }
            }
            w.write_all(reply.as_bytes())?;
        } else if upper.starts_with("MAIL FROM:") {
            from = arg("MAIL FROM:");
            to.clear();
            w.write_all(b"250 2.1.0 Ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            match now().rcpt_reply {
                Some(reply) => w.write_all(format!("{reply}\r\n").as_bytes())?,
                None => {
                    to.push(arg("RCPT TO:"));
                    w.write_all(b"250 2.1.5 Ok\r\n")?;
                }
            }
        } else if upper.starts_with("DATA") && to.is_empty() {
            w.write_all(b"554 5.5.1 Error: no valid recipients\r\n")?;
        } else if upper.starts_with("RSET") {
            from.clear();
            to.clear();
            w.write_all(b"250 2.0.0 Ok\r\n")?;
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
                    helo: helo.clone(),
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
