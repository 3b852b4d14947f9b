//! `authd --config FILE`: the Postern directory daemon.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Postern's directory daemon: Dovecot auth, userdb and Postfix socketmap on Unix sockets.
#[derive(Parser)]
#[command(name = "authd", version)]
struct Args {
    /// The config file.
    #[arg(long, short = 'c', env = "POSTERN_CONFIG", default_value = postern_config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Load and check the config (and reach the database), then exit.
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
    postern_daemon::run_daemon_current_thread(|shutdown| async move {
        if args.check_config {
            let dir = postern_directory::Directory::open(&config).await?;
            dir.close().await;
            println!("{}: OK", args.config.display());
            return Ok(());
        }
        let listeners = postern_authd::bind(&config)?;
        postern_authd::run(config, listeners, shutdown).await
    })
}
