//! End-to-end harness: starts the real Postern binaries (and, for interop tests, a private
//! Postfix) in temporary directories and gives tests handles to talk to them.
//!
//! - [`Postern`]: `mailctl init` in a temp dir, a fresh database (SQLite, or a per-test
//!   PostgreSQL/MySQL database), the daemons started and awaited (`ready` in their log).
//! - [`Daemon`]: one spawned binary with its output captured; waits on log lines, parses
//!   `listening on ADDR|PATH`, stops with SIGTERM and checks the exit status, and on drop
//!   kills the child and prints its log prefixed `SRV:` so failures are debuggable.
//! - [`Postfix`]: a private instance of Debian's Postfix (its own config, queue and log).
//! - [`run_python`]: `python3 -c SCRIPT ARGS…`, for tests that speak through smtplib/imaplib.
//! - [`DnsServer`]: test zones (A, AAAA, MX, null MX, TXT) on a loopback UDP port;
//!   [`SmtpSink`]: a receiving SMTP server on any 127.x address, with refusals on demand.
//!
//! Binaries are found next to the test executable (`target/<profile>/`), or in
//! `POSTERN_BIN_DIR`; build them with `cargo build --workspace --bins` first.
//! Database servers come from `scripts/ci-services.sh`, which prints the
//! `POSTERN_TEST_PG_URL` / `POSTERN_TEST_MYSQL_URL` admin URLs this harness reads.
//!
//! Every wait here is bounded; nothing uses fixed ports or shared temp names.
//! Set `POSTERN_TEST_KEEP=1` to keep a failed test's directory for inspection.
#![forbid(unsafe_code)]

mod bins;
mod daemon;
mod db;
mod dns;
mod line_client;
mod postern;
mod postfix;
mod process;
mod python;
mod sink;

pub use bins::{BUILD_HINT, bin, bin_dir, find_bin};
pub use daemon::{Daemon, STARTUP_TIMEOUT, STOP_TIMEOUT};
pub use db::{DbKind, TestDb, exec_sql, try_exec_sql};
pub use dns::{DnsServer, QueryFailure, reverse_name};
pub use line_client::LineClient;
pub use postern::{Postern, PosternBuilder, set_key};
pub use postfix::{Postfix, PostfixBuilder, free_port};
pub use process::{COMMAND_TIMEOUT, describe_output, run_command};
pub use python::{run_python, run_python_with_timeout};
pub use sink::{SinkBehaviour, SmtpSink, SunkMessage};
