//! `postern-bench imap`: an IMAP load generator in the spirit of Dovecot's imaptest stress
//! mode, usable against any server (Dovecot's baseline and Postern's imapd, same load).
//!
//! Each client picks a user from the range and runs sessions:
//! - `mixed`: connect, LOGIN, LIST, STATUS, SELECT, FETCH of FLAGS for all, FETCH of one whole
//!   message, STORE of a flag, SEARCH UNSEEN, LOGOUT — then again (a webmail-like pattern);
//! - `logged-in`: one LOGIN per client, then cycles of SELECT, FETCH of FLAGS for all, FETCH of
//!   ENVELOPE and one whole message, STORE of a flag, APPEND + STORE \Deleted + EXPUNGE, LIST,
//!   STATUS (the mix of issue 13 §3: a caching client's pattern; no login cost).
//!
//! `--weights` says how many times each step runs per cycle (0 leaves it out), e.g.
//! `select=1,fetch-flags=2,search=0`. Results: ops/s and p50/p99 overall and per command.
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
    pub(crate) weights: Weights,
    pub(crate) label: String,
}

/// The commands timed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Login,
    List,
    Status,
    Select,
    FetchFlags,
    FetchBody,
    Store,
    Search,
    Append,
    StoreDeleted,
    Expunge,
    Logout,
}

impl Op {
    const ALL: [Self; 12] = [
        Self::Login,
        Self::List,
        Self::Status,
        Self::Select,
        Self::FetchFlags,
        Self::FetchBody,
        Self::Store,
        Self::Search,
        Self::Append,
        Self::StoreDeleted,
        Self::Expunge,
        Self::Logout,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Login => "LOGIN",
            Self::List => "LIST",
            Self::Status => "STATUS",
            Self::Select => "SELECT",
            Self::FetchFlags => "FETCH-flags",
            Self::FetchBody => "FETCH-body",
            Self::Store => "STORE",
            Self::Search => "SEARCH",
            Self::Append => "APPEND",
            Self::StoreDeleted => "STORE-deleted",
            Self::Expunge => "EXPUNGE",
            Self::Logout => "LOGOUT",
        }
    }
}

/// How many times each step of a cycle runs (0: left out).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Weights {
    list: u32,
    status: u32,
    select: u32,
    fetch_flags: u32,
    fetch_body: u32,
    store: u32,
    search: u32,
    /// APPEND, then STORE \Deleted and UID EXPUNGE of the appended message.
    append: u32,
}

impl Weights {
    /// The default mix of a mode: `mixed` as before (with SEARCH), `logged-in` the issue's mix
    /// (LIST and STATUS, no SEARCH).
    pub(crate) fn defaults(mode: Mode) -> Self {
        Self {
            list: 1,
            status: 1,
            select: 1,
            fetch_flags: 1,
            fetch_body: 1,
            store: 1,
            search: u32::from(mode == Mode::Mixed),
            append: 1,
        }
    }

    /// Applies `name=n,…` on top of `self`; at most 100 per step (a cycle stays bounded).
    pub(crate) fn parse_over(mut self, spec: &str) -> anyhow::Result<Self> {
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .with_context(|| format!("weight {item:?}: want name=n"))?;
            let n: u32 = v
                .trim()
                .parse()
                .with_context(|| format!("weight {item:?}"))?;
            if n > 100 {
                bail!("weight {item:?}: at most 100");
            }
            let slot = match k.trim() {
                "list" => &mut self.list,
                "status" => &mut self.status,
                "select" => &mut self.select,
                "fetch-flags" => &mut self.fetch_flags,
                "fetch-body" => &mut self.fetch_body,
                "store" => &mut self.store,
                "search" => &mut self.search,
                "append" => &mut self.append,
                other => bail!(
                    "unknown weight {other:?} (list, status, select, fetch-flags, fetch-body, store, search, append)"
                ),
            };
            *slot = n;
        }
        Ok(self)
    }
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

/// Runs the load and prints one line of results, then one per command.
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
    let mut logins = 0u64;
    let mut lat: Vec<(Op, Duration)> = Vec::new();
    for t in tasks {
        let (l, mut v) = t.await??;
        logins += l;
        lat.append(&mut v);
    }
    let wall = started.elapsed().as_secs_f64();
    let ops = lat.len() as u64;
    let pct = |v: &[Duration], p: f64| {
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
    };
    let mut all: Vec<Duration> = lat.iter().map(|(_, d)| *d).collect();
    all.sort();
    println!(
        "{}: {} clients, {ops} ops ({logins} logins) in {wall:.2} s = {:.0} ops/s; latency p50 {:.2} ms, p99 {:.2} ms",
        opts.label,
        opts.clients,
        ops as f64 / wall,
        pct(&all, 0.5),
        pct(&all, 0.99)
    );
    for op in Op::ALL {
        let mut v: Vec<Duration> = lat
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, d)| *d)
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort();
        println!(
            "  {:<14} {:>7} ops  p50 {:>7.2} ms  p99 {:>7.2} ms",
            op.name(),
            v.len(),
            pct(&v, 0.5),
            pct(&v, 0.99)
        );
    }
    Ok(())
}

fn take(budget: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering;
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
        .is_ok()
}

/// One client's share of the run: logins done, and every command's latency.
async fn client_loop(
    client: usize,
    opts: &Opts,
    deadline: Instant,
    budget: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<(u64, Vec<(Op, Duration)>)> {
    let mut logins = 0u64;
    let mut lat = Vec::new();
    let mut rng = (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let w = opts.weights;
    let mut session: Option<Conn> = None;
    // True when the deadline or the operation budget ends the run.
    let over = |budget: &std::sync::atomic::AtomicU64| Instant::now() >= deadline || !take(budget);
    'run: while Instant::now() < deadline {
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
                lat.push((Op::Login, t.elapsed()));
                logins += 1;
                // The logged-in mode's cycles all run in the selected state.
                if opts.mode == Mode::LoggedIn && w.select == 0 {
                    let t = Instant::now();
                    c.cmd("SELECT INBOX").await?;
                    lat.push((Op::Select, t.elapsed()));
                }
                c
            }
        };
        let mut stopped = false;
        // One timed command; `stopped` and the loop's end when the run is over.
        macro_rules! step {
            ($op:expr, $cmd:expr) => {{
                if over(budget) {
                    stopped = true;
                    None
                } else {
                    let t = Instant::now();
                    let r = c.cmd(&$cmd).await?;
                    lat.push(($op, t.elapsed()));
                    Some(r)
                }
            }};
        }
        // The webmail pair, LISTs then STATUSes: `false` when the run is over.
        macro_rules! list_and_status {
            () => {
                'pair: {
                    for _ in 0..w.list {
                        if step!(Op::List, "LIST \"\" \"*\"").is_none() {
                            break 'pair false;
                        }
                    }
                    for _ in 0..w.status {
                        if step!(Op::Status, "STATUS INBOX (MESSAGES UNSEEN UIDNEXT)").is_none() {
                            break 'pair false;
                        }
                    }
                    true
                }
            };
        }
        let mut exists = 0u32;
        'cycle: {
            // The mixed (webmail) session lists and checks first; a logged-in client ends its
            // cycle with them.
            if opts.mode == Mode::Mixed && !list_and_status!() {
                break 'cycle;
            }
            for _ in 0..w.select {
                match step!(Op::Select, "SELECT INBOX") {
                    Some(r) => exists = r.exists.unwrap_or(0),
                    None => break 'cycle,
                }
            }
            if w.select == 0 {
                // Without SELECT in the cycle, NOOP learns the current size (not timed).
                exists = c.cmd("NOOP").await?.exists.unwrap_or(exists);
                exists = exists.max(1);
            }
            if exists > 0 {
                for _ in 0..w.fetch_flags {
                    if step!(Op::FetchFlags, "FETCH 1:* (UID FLAGS)").is_none() {
                        break 'cycle;
                    }
                }
                for _ in 0..w.fetch_body {
                    let n = 1 + (next() % u64::from(exists)) as u32;
                    let cmd =
                        format!("FETCH {n} (UID RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[])");
                    if step!(Op::FetchBody, cmd).is_none() {
                        break 'cycle;
                    }
                }
                for _ in 0..w.store {
                    let m = 1 + (next() % u64::from(exists)) as u32;
                    let flag =
                        ["\\Seen", "\\Flagged", "\\Answered", "$Work"][(next() % 4) as usize];
                    let sign = if next() % 2 == 0 { '+' } else { '-' };
                    if step!(Op::Store, format!("STORE {m} {sign}FLAGS.SILENT ({flag})")).is_none()
                    {
                        break 'cycle;
                    }
                }
                for _ in 0..w.search {
                    if step!(Op::Search, "SEARCH UNSEEN").is_none() {
                        break 'cycle;
                    }
                }
            }
            // APPEND one message, then flag it \Deleted and expunge it by UID: every cycle
            // adds and removes one, so the mailbox keeps its size.
            for _ in 0..w.append {
                if over(budget) {
                    stopped = true;
                    break 'cycle;
                }
                let t = Instant::now();
                let uid = c.append(APPENDED).await?;
                lat.push((Op::Append, t.elapsed()));
                if let Some(uid) = uid {
                    if step!(
                        Op::StoreDeleted,
                        format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
                    )
                    .is_none()
                    {
                        break 'cycle;
                    }
                    if step!(Op::Expunge, format!("UID EXPUNGE {uid}")).is_none() {
                        break 'cycle;
                    }
                }
            }
            if opts.mode == Mode::LoggedIn && !list_and_status!() {
                break 'cycle;
            }
        }
        if opts.mode == Mode::Mixed || stopped {
            if take(budget) {
                let t = Instant::now();
                c.cmd("LOGOUT").await?;
                lat.push((Op::Logout, t.elapsed()));
            }
            if stopped {
                break 'run;
            }
        } else {
            session = Some(c);
        }
    }
    Ok((logins, lat))
}

/// Appends messages from an mbox file to INBOX of every user until each has `count` (the users
/// in parallel, at most 20 at a time).
pub(crate) async fn prefill(opts: &Opts, mbox: &std::path::Path, count: u32) -> anyhow::Result<()> {
    let text = std::fs::read(mbox).with_context(|| format!("reading {}", mbox.display()))?;
    let msgs = std::sync::Arc::new(split_mbox(&text));
    if msgs.is_empty() {
        bail!("{} holds no messages", mbox.display());
    }
    let users: Vec<u32> = (1..=opts.users.max(1)).collect();
    for chunk in users.chunks(20) {
        let mut tasks = Vec::new();
        for &n in chunk {
            let user = opts.user.replace("%d", &n.to_string());
            let (addr, password, msgs) = (opts.addr.clone(), opts.password.clone(), msgs.clone());
            tasks.push(tokio::spawn(async move {
                prefill_one(&addr, &user, &password, &msgs, count).await
            }));
        }
        for t in tasks {
            t.await??;
        }
    }
    Ok(())
}

async fn prefill_one(
    addr: &str,
    user: &str,
    password: &str,
    msgs: &[Vec<u8>],
    count: u32,
) -> anyhow::Result<()> {
    let mut c = Conn::connect(addr).await?;
    c.cmd(&format!("LOGIN \"{user}\" \"{password}\"")).await?;
    let have = c.cmd("SELECT INBOX").await?.exists.unwrap_or(0);
    for i in have..count {
        c.append(&msgs[i as usize % msgs.len()]).await?;
    }
    c.cmd("LOGOUT").await?;
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
