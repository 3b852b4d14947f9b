//! `lmtp-deliver --config FILE`: Postern's LMTP delivery agent.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Postern's delivery agent: LMTP in, Maildir out, with Sieve and quotas.
#[derive(Parser)]
#[command(name = "lmtp-deliver", version)]
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
    postern_daemon::run_daemon_current_thread(|shutdown| async move {
        let listeners = postern_lmtp_deliver::bind(&config).await?;
        postern_lmtp_deliver::run(config, listeners, shutdown).await
    })
}
