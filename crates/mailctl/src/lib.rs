//! mailctl: Postern's admin command. Domains, users, aliases, sender permissions and
//! lockouts in the directory; `queue` talks to smtpd's control socket; `init` lays out a self-contained install; `run` supervises
//! the daemons in the foreground.
#![forbid(unsafe_code)]

mod admin;
mod check;
mod dkim;
mod dnsrec;
mod init;
mod migrate;
mod mover;
mod output;
mod queue;
mod run;
mod secret;
mod share;
mod sieve;
mod stats;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use output::parse_size;

/// Postern's admin command.
#[derive(Parser, Debug)]
#[command(name = "mailctl", version, about = "Administer a Postern mail server")]
pub struct Cli {
    /// The config file (default /etc/postern/postern.toml).
    #[arg(long, short = 'c', env = "POSTERN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Lay out a self-contained install in DIR (config, database, TLS, Maildir root, sockets).
    Init(init::InitArgs),
    /// Mail domains.
    #[command(subcommand)]
    Domain(admin::DomainCmd),
    /// Mail accounts.
    #[command(subcommand)]
    User(admin::UserCmd),
    /// Aliases (SOURCE may be @domain for a catch-all).
    #[command(subcommand)]
    Alias(admin::AliasCmd),
    /// Which logins may send as which addresses (beyond their own and their aliases).
    #[command(subcommand)]
    Sender(admin::SenderCmd),
    /// Brute-force lockouts.
    #[command(subcommand)]
    Lockout(admin::LockoutCmd),
    /// A user's Sieve filter script (checked before it is stored).
    #[command(subcommand)]
    Sieve(sieve::SieveCmd),
    /// Shared mailboxes: who may see and change which of a user's mailboxes (RFC 4314 ACLs,
    /// as IMAP SETACL/GETACL do; others see them under `Shared/OWNER/`).
    #[command(subcommand)]
    Share(share::ShareCmd),
    /// The MTA's queue (through smtpd's control socket): list, show, flush, hold, release,
    /// delete.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// DKIM signing keys: make one (and print the DNS record to publish), show them.
    #[command(subcommand)]
    Dkim(dkim::DkimCmd),
    /// Run every Postern daemon in the foreground; restart one that crashes.
    Run,
    /// Every DNS record to publish for DOMAIN on this server (zone file lines, or --json).
    Dns(dnsrec::DnsArgs),
    /// Check the live DNS, TLS certificate and ports; OK/WARN/FAIL with fixes; exit status
    /// 1 when anything fails.
    Check(check::CheckArgs),
    /// Refusals by smtpd's inbound checks since it started, by reason (DNSBL, HELO, SPF,
    /// DMARC, greylisting, early talkers, connection rate).
    Stats,
    /// Take over a Postfix + Dovecot server: plan (what each setting becomes), apply (write
    /// postern.toml, copy DKIM keys, import tables; print the switch steps), check (the
    /// live data through Postern and through Postfix/Dovecot).
    #[command(subcommand)]
    Migrate(migrate::MigrateCmd),
}

impl Cli {
    /// The config path in effect.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(postern_config::DEFAULT_CONFIG_PATH))
    }
}

/// Runs a parsed command line.
pub fn main_with(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Init(a) => runtime()?.block_on(init::init(a, cli.json)),
        Command::Run => run::run(&cli.config_path()),
        Command::Sieve(sieve::SieveCmd::Check { file }) => {
            let msg = sieve::check_only(file.as_deref())?;
            admin::done(cli.json, msg);
            Ok(())
        }
        Command::Dkim(d) => {
            // Only the key directory is needed: no database.
            let config = postern_config::Config::load(&cli.config_path())?;
            dkim::run(d, &config, cli.json)
        }
        Command::Dns(a) => {
            let config = postern_config::Config::load(&cli.config_path())?;
            runtime()?.block_on(dnsrec::run(a, &config, cli.json))
        }
        Command::Check(a) => {
            let config = postern_config::Config::load(&cli.config_path())?;
            runtime()?.block_on(check::run(a, &config, cli.json))
        }
        Command::Migrate(m) => migrate::run(m, &cli.config_path(), cli.json),
        Command::Stats => {
            let config = postern_config::Config::load(&cli.config_path())?;
            stats::run(&config, cli.json)
        }
        Command::Queue(q) => {
            // Only the run directory is needed: no database.
            let config = postern_config::Config::load(&cli.config_path())?;
            queue::run(q, &config, cli.json)
        }
        _ => {
            let config = postern_config::Config::load(&cli.config_path())?;
            runtime()?.block_on(admin::dispatch(&cli, &config))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
