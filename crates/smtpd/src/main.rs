//! `smtpd --config FILE`: Postern's MTA.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Postern's MTA: receives on 25/587/465, queues durably, delivers over LMTP.
#[derive(Parser)]
#[command(name = "smtpd", version)]
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
    let runtime = config.smtpd.runtime;
    let serve = |shutdown| async move {
        let listeners = postern_smtpd::bind(&config).await?;
        postern_smtpd::run(config, listeners, shutdown).await
    };
    // Blocking work (queue slot writes and fsyncs, file reads) goes through spawn_blocking
    // either way; nothing in smtpd calls block_in_place, which a current-thread runtime refuses.
    match runtime {
        postern_config::SmtpdRuntime::Current => postern_daemon::run_daemon_current_thread(serve),
        postern_config::SmtpdRuntime::Multi => postern_daemon::run_daemon(serve),
    }
}
