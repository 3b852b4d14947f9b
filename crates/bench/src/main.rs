//! `postern-bench`: load generators for Postern's sockets, printing rates and latencies.
//!
//! - `auth`: PLAIN authentications through a Dovecot-protocol `auth` socket;
//! - `socketmap`: lookups through a Postfix socketmap socket;
//! - `imap`: IMAP sessions against any server (see [`imap`]);
//! - `dns-server`: a loopback DNS server (the e2e harness's) for the MX-path benchmark:
//!   NXDOMAIN for every name, with or without an SOA, optionally dropping 1 query in N;
//! - `fs-floor`: the queue's and the Maildir's durable writes for one message, alone, with
//!   their CPU time per message (see [`floor`]).
//!
//! Each of C workers holds one connection and sends its share of N requests one after the
//! other, as Postfix's smtpd processes do. Every answer is checked: a wrong answer aborts.
#![forbid(unsafe_code)]

mod floor;
mod imap;
/// The e2e harness's loopback DNS server (std only), shared rather than copied.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../tests/src/dns.rs"]
mod test_dns;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use postern_auth_proto::client::{AuthClient, AuthOutcome, SocketmapClient};
use postern_auth_proto::dovecot::AuthParams;
use postern_auth_proto::socketmap::Reply;

#[derive(Parser)]
#[command(
    name = "postern-bench",
    about = "Load generators for Postern's sockets"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// PLAIN authentications per second through an auth socket.
    Auth {
        /// The auth socket.
        #[arg(long)]
        socket: PathBuf,
        /// The login.
        #[arg(long)]
        user: String,
        /// Its password (a benchmark account's).
        #[arg(long)]
        password: String,
        /// Requests in all.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// A label for the output line.
        #[arg(long, default_value = "auth")]
        label: String,
    },
    /// Lookups per second through a socketmap socket.
    Socketmap {
        /// The socketmap socket.
        #[arg(long)]
        socket: PathBuf,
        /// The map name.
        #[arg(long, default_value = "mailboxes")]
        map: String,
        /// Keys, cycled through.
        #[arg(long, required = true, num_args = 1..)]
        key: Vec<String>,
        /// Requests in all.
        #[arg(long, default_value_t = 20000)]
        requests: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// A label for the output line.
        #[arg(long, default_value = "socketmap")]
        label: String,
    },
    /// IMAP operations per second (imaptest-like sessions).
    Imap {
        /// Server `host:port`.
        #[arg(long)]
        addr: String,
        /// Login name; `%d` is replaced by a user number from 1 to `--users`.
        #[arg(long)]
        user: String,
        /// How many users `%d` ranges over.
        #[arg(long, default_value_t = 1)]
        users: u32,
        /// The password (the same for every user).
        #[arg(long)]
        password: String,
        /// Concurrent clients.
        #[arg(long, default_value_t = 20)]
        clients: usize,
        /// Duration of the run.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Upper bound on operations in the run.
        #[arg(long, default_value_t = 2_000_000)]
        max_ops: u64,
        /// `mixed` (log in and out every session) or `logged-in`.
        #[arg(long, value_enum, default_value = "mixed")]
        mode: imap::Mode,
        /// How many times each step runs per cycle, `name=n,…` over the mode's defaults
        /// (list, status, select, fetch-flags, fetch-body, store, search, append; 0 leaves a
        /// step out; append includes STORE \Deleted and UID EXPUNGE of the appended message).
        #[arg(long, default_value = "")]
        weights: String,
        /// Before the run, APPEND messages from this mbox until each user's INBOX has `--msgs`.
        #[arg(long)]
        mbox: Option<PathBuf>,
        /// Messages per INBOX for `--mbox`.
        #[arg(long, default_value_t = 100)]
        msgs: u32,
        /// Instead of the load: SELECT + `UID FETCH 1:* (FLAGS)` on user 1's INBOX, this many
        /// rounds (the first is cold if the server has no index yet).
        #[arg(long)]
        select_all: Option<u32>,
        /// Instead of the load: `--clients` connections idling in IDLE for `--secs`.
        #[arg(long)]
        idle: bool,
        /// A label for the output line.
        #[arg(long, default_value = "imap")]
        label: String,
    },
    /// A DNS server on a loopback UDP port answering every name NXDOMAIN (plus the TXT
    /// records given), until killed or `--secs` have passed. Prints `listening on ADDR`,
    /// then the counts of queries seen and dropped every second.
    DnsServer {
        /// Loopback address to listen on (port 0: an ephemeral port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Negative answers carry an SOA (cacheable, RFC 2308).
        #[arg(long)]
        soa: bool,
        /// Drop every Nth query unanswered (0: none).
        #[arg(long, default_value_t = 0)]
        drop_one_in: u64,
        /// `NAME=TEXT`: a TXT record to publish (repeatable).
        #[arg(long)]
        txt: Vec<String>,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 3600)]
        secs: u64,
    },
    /// The durable writes one message needs (queue slot, Maildir), done alone `--count`
    /// times in `--dir`, with CPU time and context switches per message.
    FsFloor {
        /// A directory to create on the file system to measure (removed afterwards).
        #[arg(long)]
        dir: PathBuf,
        /// Messages.
        #[arg(long, default_value_t = 3000)]
        count: u32,
        /// Message size in bytes.
        #[arg(long, default_value_t = 5120)]
        size: usize,
        /// Leave the files in `--dir` (see [`floor::run`]).
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Cmd::DnsServer {
        listen,
        soa,
        drop_one_in,
        txt,
        secs,
    } = &args.cmd
    {
        return dns_server(*listen, *soa, *drop_one_in, txt, *secs);
    }
    if let Cmd::FsFloor {
        dir,
        count,
        size,
        keep,
    } = &args.cmd
    {
        return floor::run(dir, *count, *size, *keep);
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match args.cmd {
            Cmd::Auth {
                socket,
                user,
                password,
                requests,
                concurrency,
                label,
            } => {
                let per = requests.div_ceil(concurrency.max(1));
                let started = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..concurrency.max(1) {
                    let (socket, user, password) = (socket.clone(), user.clone(), password.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut c = AuthClient::connect(&socket).await.context("connecting")?;
                        let mut params = AuthParams::new("smtp");
                        params.rip = Some([127, 0, 0, 1].into());
                        params.lip = params.rip;
                        params.nologin = true;
                        let mut lat = Vec::with_capacity(per);
                        for _ in 0..per {
                            let t = Instant::now();
                            match c.plain(&user, &password, &params).await? {
                                AuthOutcome::Ok { .. } => {}
                                other => bail!("authentication refused: {other:?}"),
                            }
                            lat.push(t.elapsed());
                        }
                        Ok::<_, anyhow::Error>(lat)
                    }));
                }
                report(&label, started, tasks).await
            }
            Cmd::Socketmap {
                socket,
                map,
                key,
                requests,
                concurrency,
                label,
            } => {
                let per = requests.div_ceil(concurrency.max(1));
                let started = Instant::now();
                let mut tasks = Vec::new();
                for w in 0..concurrency.max(1) {
                    let (socket, map, keys) = (socket.clone(), map.clone(), key.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut c = SocketmapClient::connect(&socket)
                            .await
                            .context("connecting")?;
                        let mut lat = Vec::with_capacity(per);
                        for i in 0..per {
                            let k = &keys[(w + i) % keys.len()];
                            let t = Instant::now();
                            match c.lookup(&map, k).await? {
                                Reply::Ok(_) => {}
                                other => bail!("lookup of {k} in {map}: {other:?}"),
                            }
                            lat.push(t.elapsed());
                        }
                        Ok::<_, anyhow::Error>(lat)
                    }));
                }
                report(&label, started, tasks).await
            }
            Cmd::Imap {
                addr,
                user,
                users,
                password,
                clients,
                secs,
                max_ops,
                mode,
                weights,
                mbox,
                msgs,
                select_all,
                idle,
                label,
            } => {
                let weights = imap::Weights::defaults(mode).parse_over(&weights)?;
                let opts = imap::Opts {
                    addr,
                    user,
                    users,
                    password,
                    clients,
                    secs,
                    max_ops,
                    mode,
                    weights,
                    label,
                };
                if let Some(mbox) = mbox {
                    imap::prefill(&opts, &mbox, msgs).await?;
                }
                if let Some(rounds) = select_all {
                    return imap::select_all(&opts, rounds).await;
                }
                if idle {
                    return imap::idle(&opts).await;
                }
                imap::run(opts).await
            }
            // Run above, without the runtime.
            Cmd::DnsServer { .. } | Cmd::FsFloor { .. } => Ok(()),
        }
    })
}

async fn report(
    label: &str,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>,
) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all.get(i).copied().unwrap_or_default()
    };
    println!(
        "{label}: {} requests in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        wall.as_secs_f64(),
        all.len() as f64 / wall.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}

fn dns_server(
    listen: std::net::SocketAddr,
    soa: bool,
    drop_one_in: u64,
    txt: &[String],
    secs: u64,
) -> anyhow::Result<()> {
    use std::io::Write;
    let server = test_dns::DnsServer::start_on(listen).context("starting the DNS server")?;
    server.set_soa(soa).set_drop_one_in(drop_one_in);
    for t in txt {
        let (name, text) = t.split_once('=').context("--txt NAME=TEXT")?;
        server.txt(name, text);
    }
    println!("listening on {}", server.addr());
    let end = Instant::now() + Duration::from_secs(secs);
    let mut last = (u64::MAX, 0);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        let counts = server.counts();
        if counts != last {
            println!("queries {} dropped {}", counts.0, counts.1);
            std::io::stdout().flush()?;
            last = counts;
        }
    }
    Ok(())
}
