//! `postern-bench imap`: an IMAP load generator in the spirit of Dovecot's imaptest stress
//! mode, usable against any server (Dovecot's baseline and Postern's imapd, same load).
//!
//! Each client picks a user from the range and runs sessions:
//! - `mixed`: connect, LOGIN, LIST, STATUS, SELECT, FETCH of FLAGS for all, FETCH of one whole
//!   message, STORE of a flag, SEARCH UNSEEN, LOGOUT — then again (a webmail-like pattern);
//! - `logged-in`: one LOGIN per client, then the same commands from STATUS to SEARCH in a loop
//!   (a caching client's pattern; no login cost).
//!
//! Every command counts as one operation; every reply is checked (a `NO`/`BAD` aborts, except
//! `NO [EXPUNGEISSUED]`: another client expunged a message being fetched).
//! The run is bounded by `--secs` and `--max-ops`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    Mixed,
    LoggedIn,
}

/// Options of one run.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    pub(crate) addr: String,
    pub(crate) user: String,
    pub(crate) users: u32,
    pub(crate) password: String,
    pub(crate) clients: usize,
    pub(crate) secs: u64,
    pub(crate) max_ops: u64,
    pub(crate) mode: Mode,
    pub(crate) label: String,
}

struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    tag: u64,
    line: Vec<u8>,
}

/// The untagged data of one command: the number in `* N EXISTS` if any.
#[derive(Default)]
struct Reply {
    exists: Option<u32>,
    search_hits: usize,
    /// The tagged OK line.
    ok: String,
}

impl Conn {
    async fn connect(addr: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Self {
            r: BufReader::with_capacity(64 * 1024, r),
            w,
            tag: 0,
            line: Vec::new(),
        };
        c.read_line().await?;
        if !c.line.starts_with(b"* OK") {
            bail!("greeting: {}", String::from_utf8_lossy(&c.line));
        }
        Ok(c)
    }

    /// Reads one line (with CRLF) into `self.line`, then any literal it announces.
    async fn read_line(&mut self) -> anyhow::Result<()> {
        self.line.clear();
        loop {
            let n = self.r.read_until(b'\n', &mut self.line).await?;
            if n == 0 {
                bail!("connection closed by the server");
            }
            // `{123}\r\n` at the end: a literal follows, then the line goes on.
            let body = self.line.strip_suffix(b"\r\n").unwrap_or(&self.line);
            let lit = body
                .strip_suffix(b"}")
                .and_then(|b| b.iter().rposition(|&c| c == b'{').map(|i| &b[i + 1..]))
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.trim_end_matches('+').parse::<usize>().ok());
            match lit {
                Some(len) => {
                    let start = self.line.len();
                    self.line.resize(start + len, 0);
                    self.r.read_exact(&mut self.line[start..]).await?;
                }
                None => return Ok(()),
            }
        }
    }

    /// Sends `cmd` with a fresh tag and reads until its tagged reply, which must be OK.
    async fn cmd(&mut self, cmd: &str) -> anyhow::Result<Reply> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.w
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await?;
        let mut reply = Reply::default();
        loop {
            self.read_line().await?;
            if self.line.starts_with(tag.as_bytes()) && self.line.get(tag.len()) == Some(&b' ') {
                let rest = &self.line[tag.len() + 1..];
                // A message another client expunged meanwhile (RFC 9051 §7.1: the readable
                // ones were answered) is what a concurrent load produces, not a failure.
                if rest.starts_with(b"OK") || rest.starts_with(b"NO [EXPUNGEISSUED]") {
                    reply.ok = String::from_utf8_lossy(rest).trim_end().to_owned();
                    return Ok(reply);
                }
                bail!(
                    "{cmd:?} → {}",
                    String::from_utf8_lossy(&self.line).trim_end()
                );
            }
            if let Some(rest) = self.line.strip_prefix(b"* ") {
                let text = String::from_utf8_lossy(rest);
                let mut words = text.split_ascii_whitespace();
                match (words.next(), words.next()) {
                    (Some(n), Some("EXISTS")) => reply.exists = n.parse().ok(),
                    (Some("SEARCH"), _) => {
                        reply.search_hits = text.split_ascii_whitespace().count() - 1;
                    }
                    _ => {}
                }
            }
        }
    }
}

impl Conn {
    /// APPENDs `msg` to INBOX with a synchronizing literal; returns the new UID (UIDPLUS).
    async fn append(&mut self, msg: &[u8]) -> anyhow::Result<Option<u32>> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.w
            .write_all(format!("{tag} APPEND INBOX {{{}}}\r\n", msg.len()).as_bytes())
            .await?;
        self.read_line().await?;
        if !self.line.starts_with(b"+") {
            bail!("APPEND: {}", String::from_utf8_lossy(&self.line));
        }
        self.w.write_all(msg).await?;
        self.w.write_all(b"\r\n").await?;
        loop {
            self.read_line().await?;
            if self.line.starts_with(tag.as_bytes()) {
                let rest = String::from_utf8_lossy(&self.line[tag.len()..]).into_owned();
                if !rest.starts_with(" OK") {
                    bail!("APPEND: {rest}");
                }
                // `OK [APPENDUID <validity> <uid>] …`
                return Ok(rest
                    .split_once("APPENDUID ")
                    .and_then(|(_, r)| r.split_ascii_whitespace().nth(1))
                    .and_then(|u| u.trim_end_matches(']').parse().ok()));
            }
        }
    }
}

/// A small message for the APPEND step.
const APPENDED: &[u8] = b"From: Bench <bench@example.test>\r\nTo: user@example.test\r\nSubject: appended by the benchmark\r\nMessage-ID: <bench@example.test>\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n\r\nA short body line.\r\n";

/// Runs the load and prints one line of results.
pub(crate) async fn run(opts: Opts) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(opts.secs);
    let started = Instant::now();
    let ops_budget = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(opts.max_ops));
    let mut tasks = Vec::new();
    for client in 0..opts.clients.max(1) {
        let opts = opts.clone();
        let budget = ops_budget.clone();
        tasks.push(tokio::spawn(async move {
            client_loop(client, &opts, deadline, &budget).await
        }));
    }
    let mut ops = 0u64;
    let mut logins = 0u64;
    let mut lat = Vec::new();
    for t in tasks {
        let (o, l, mut v) = t.await??;
        ops += o;
        logins += l;
        lat.append(&mut v);
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
    };
    println!(
        "{}: {} clients, {ops} ops ({logins} logins) in {wall:.2} s = {:.0} ops/s; latency p50 {:.2} ms, p99 {:.2} ms",
        opts.label,
        opts.clients,
        ops as f64 / wall,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

fn take(budget: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering;
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
        .is_ok()
}

async fn client_loop(
    client: usize,
    opts: &Opts,
    deadline: Instant,
    budget: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<(u64, u64, Vec<Duration>)> {
    let mut ops = 0u64;
    let mut logins = 0u64;
    let mut lat = Vec::new();
    let mut rng = (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut session: Option<Conn> = None;
    while Instant::now() < deadline {
        let mut c = match session.take() {
            Some(c) => c,
            None => {
                let n = 1 + (next() % u64::from(opts.users.max(1))) as u32;
                let user = opts.user.replace("%d", &n.to_string());
                let t = Instant::now();
                let mut c = Conn::connect(&opts.addr).await?;
                if !take(budget) {
                    break;
                }
                c.cmd(&format!("LOGIN \"{user}\" \"{}\"", opts.password))
                    .await?;
                lat.push(t.elapsed());
                ops += 1;
                logins += 1;
                c
            }
        };
        let mut steps: Vec<String> = Vec::new();
        if opts.mode == Mode::Mixed {
            steps.push("LIST \"\" \"*\"".into());
        }
        steps.push("STATUS INBOX (MESSAGES UNSEEN UIDNEXT)".into());
        steps.push("SELECT INBOX".into());
        let mut exists = 0u32;
        let mut stopped = false;
        for (i, step) in steps.iter().enumerate() {
            if Instant::now() >= deadline || !take(budget) {
                stopped = true;
                break;
            }
            let t = Instant::now();
            let r = c.cmd(step).await?;
            lat.push(t.elapsed());
            ops += 1;
            if i == steps.len() - 1 {
                exists = r.exists.unwrap_or(0);
            }
        }
        if !stopped && exists > 0 {
            let n = 1 + (next() % u64::from(exists)) as u32;
            let m = 1 + (next() % u64::from(exists)) as u32;
            let flag = ["\\Seen", "\\Flagged", "\\Answered", "$Work"][(next() % 4) as usize];
            let sign = if next() % 2 == 0 { '+' } else { '-' };
            for cmd in [
                "FETCH 1:* (UID FLAGS)".to_owned(),
                format!("FETCH {n} (UID RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[])"),
                format!("STORE {m} {sign}FLAGS.SILENT ({flag})"),
                "SEARCH UNSEEN".to_owned(),
            ] {
                if Instant::now() >= deadline || !take(budget) {
                    stopped = true;
                    break;
                }
                let t = Instant::now();
                c.cmd(&cmd).await?;
                lat.push(t.elapsed());
                ops += 1;
            }
            // APPEND one message, then flag it \Deleted and expunge it by UID: every
            // session adds and removes one, so the mailbox keeps its size.
            if !stopped && Instant::now() < deadline && take(budget) {
                let t = Instant::now();
                let uid = c.append(APPENDED).await?;
                lat.push(t.elapsed());
                ops += 1;
                if let Some(uid) = uid {
                    for cmd in [
                        format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
                        format!("UID EXPUNGE {uid}"),
                    ] {
                        if !take(budget) {
                            stopped = true;
                            break;
                        }
                        let t = Instant::now();
                        c.cmd(&cmd).await?;
                        lat.push(t.elapsed());
                        ops += 1;
                    }
                }
            }
        }
        if opts.mode == Mode::Mixed || stopped {
            if take(budget) {
                let t = Instant::now();
                c.cmd("LOGOUT").await?;
                lat.push(t.elapsed());
                ops += 1;
            }
            if stopped {
                break;
            }
        } else {
            session = Some(c);
        }
    }
    Ok((ops, logins, lat))
}

/// Appends messages from an mbox file to INBOX of every user until each has `count`.
pub(crate) async fn prefill(opts: &Opts, mbox: &std::path::Path, count: u32) -> anyhow::Result<()> {
    let text = std::fs::read(mbox).with_context(|| format!("reading {}", mbox.display()))?;
    let msgs = split_mbox(&text);
    if msgs.is_empty() {
        bail!("{} holds no messages", mbox.display());
    }
    for n in 1..=opts.users.max(1) {
        let user = opts.user.replace("%d", &n.to_string());
        let mut c = Conn::connect(&opts.addr).await?;
        c.cmd(&format!("LOGIN \"{user}\" \"{}\"", opts.password))
            .await?;
        let have = c.cmd("SELECT INBOX").await?.exists.unwrap_or(0);
        for i in have..count {
            let m = &msgs[i as usize % msgs.len()];
            c.tag += 1;
            let tag = format!("a{}", c.tag);
            c.w.write_all(format!("{tag} APPEND INBOX {{{}}}\r\n", m.len()).as_bytes())
                .await?;
            c.read_line().await?;
            if !c.line.starts_with(b"+") {
                bail!("APPEND: {}", String::from_utf8_lossy(&c.line));
            }
            c.w.write_all(m).await?;
            c.w.write_all(b"\r\n").await?;
            loop {
                c.read_line().await?;
                if c.line.starts_with(tag.as_bytes()) {
                    if !c.line[tag.len()..].starts_with(b" OK") {
                        bail!("APPEND: {}", String::from_utf8_lossy(&c.line));
                    }
                    break;
                }
            }
        }
        c.cmd("LOGOUT").await?;
    }
    Ok(())
}

/// Splits an mbox at `From ` lines, un-escaping `>From ` and converting to CRLF.
fn split_mbox(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            if let Some(m) = cur.take() {
                out.push(m);
            }
            cur = Some(Vec::new());
            continue;
        }
        let Some(m) = cur.as_mut() else { continue };
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let body = if body.starts_with(b">From ") {
            &body[1..]
        } else {
            body
        };
        m.extend_from_slice(body);
        m.extend_from_slice(b"\r\n");
    }
    if let Some(m) = cur {
        out.push(m);
    }
    // The blank line mboxes put before each `From ` belongs to the format, not the message.
    for m in &mut out {
        if m.ends_with(b"\r\n\r\n") {
            m.truncate(m.len() - 2);
        }
    }
    out
}

/// SELECT + `UID FETCH 1:* (FLAGS)` on one user's INBOX, `rounds` times on fresh connections;
/// prints the time of each round (the first is cold when the server has no index yet).
pub(crate) async fn select_all(opts: &Opts, rounds: u32) -> anyhow::Result<()> {
    let user = opts.user.replace("%d", "1");
    for round in 1..=rounds.max(1) {
        let mut c = Conn::connect(&opts.addr).await?;
        c.cmd(&format!("LOGIN \"{user}\" \"{}\"", opts.password))
            .await?;
        let t = Instant::now();
        let exists = c.cmd("SELECT INBOX").await?.exists.unwrap_or(0);
        let selected = t.elapsed();
        c.cmd("UID FETCH 1:* (FLAGS)").await?;
        let total = t.elapsed();
        c.cmd("LOGOUT").await?;
        println!(
            "{}: round {round}: {exists} messages: SELECT {:.0} ms, SELECT + UID FETCH 1:* (FLAGS) {:.0} ms",
            opts.label,
            selected.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Opens `opts.clients` connections, each logged in with INBOX selected and in IDLE, holds them
/// for `opts.secs`, then closes them. Prints when all are idling (for a memory probe).
pub(crate) async fn idle(opts: &Opts) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(opts.clients);
    let started = Instant::now();
    for i in 0..opts.clients {
        let n = 1 + (i as u32 % opts.users.max(1));
        let user = opts.user.replace("%d", &n.to_string());
        let mut c = Conn::connect(&opts.addr)
            .await
            .with_context(|| format!("connection {i}"))?;
        c.cmd(&format!("LOGIN \"{user}\" \"{}\"", opts.password))
            .await?;
        c.cmd("SELECT INBOX").await?;
        c.tag += 1;
        c.w.write_all(format!("a{} IDLE\r\n", c.tag).as_bytes())
            .await?;
        c.read_line().await?;
        if !c.line.starts_with(b"+") {
            bail!("IDLE: {}", String::from_utf8_lossy(&c.line));
        }
        conns.push(c);
    }
    println!(
        "{}: {} connections idling (set up in {:.1} s); holding {} s",
        opts.label,
        conns.len(),
        started.elapsed().as_secs_f64(),
        opts.secs
    );
    tokio::time::sleep(Duration::from_secs(opts.secs)).await;
    drop(conns);
    Ok(())
}
