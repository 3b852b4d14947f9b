//! `imapd --config FILE`: Postern's IMAP and POP3 server.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Postern's mail access server: IMAP on 143/993, POP3 on 110/995, over the Maildir tree.
#[derive(Parser)]
#[command(name = "imapd", version)]
struct Args {
    /// The config file.
    #[arg(long, short = 'c', env = "POSTERN_CONFIG", default_value = postern_config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Load and check the config, then exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    postern_daemon::init_logging("info");
    let config = match postern_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        println!("{}: OK", args.config.display());
        return ExitCode::SUCCESS;
    }
    postern_daemon::run_daemon(|shutdown| async move {
        let listeners = postern_imapd::bind(&config).await?;
        postern_imapd::run(config, listeners, shutdown).await
    })
}
