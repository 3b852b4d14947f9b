//! A self-contained Postern install in a temp dir, with its daemons running.
//!
//! [`Postern::builder`] picks the database, edits to `postern.toml` and the daemons to run;
//! `start()` makes the temp dir, the database, runs `mailctl init --dir`, applies the
//! edits and starts each daemon, waiting for its `ready` line. Adding a daemon to a test
//! is `.daemons(&["authd", "lmtp-deliver"])`: each is run as `NAME --config FILE`.

use std::fs::Permissions;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;
use toml::{Table, Value};

use crate::bins::bin;
use crate::daemon::Daemon;
use crate::db::{DbKind, TestDb, exec_sql};
use crate::dns::DnsServer;
use crate::process::{COMMAND_TIMEOUT, describe_output, run_command};
use crate::python::run_python;

type ConfigEdit = Box<dyn FnOnce(&mut Table)>;

/// Options for [`Postern`]; from [`Postern::builder`].
#[must_use]
pub struct PosternBuilder {
    db: DbKind,
    domain: Option<String>,
    hostname: Option<String>,
    demo: bool,
    edits: Vec<ConfigEdit>,
    daemons: Vec<String>,
    netns: Option<String>,
}

impl PosternBuilder {
    /// The database to run on (default SQLite). PostgreSQL and MySQL need the servers
    /// from `scripts/ci-services.sh`; each test gets a database of its own.
    pub fn database(mut self, kind: DbKind) -> Self {
        self.db = kind;
        self
    }

    /// Passes `--domain` to `mailctl init`.
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// Passes `--demo` to `mailctl init` (domain example.test unless given, user demo@).
    pub fn demo(mut self) -> Self {
        self.demo = true;
        self
    }

    /// Passes `--hostname` to `mailctl init`.
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = Some(hostname.to_owned());
        self
    }

    /// Sets a key in `postern.toml` before the daemons start, by dotted path:
    /// `.set("authd.lockout.allow_networks", vec!["127.0.0.1/32"])`.
    pub fn set(self, dotted_key: &str, value: impl Into<Value>) -> Self {
        let key = dotted_key.to_owned();
        let value = value.into();
        self.configure(move |t| set_key(t, &key, value))
    }

    /// Edits `postern.toml` (as a TOML table) before the daemons start.
    pub fn configure(mut self, edit: impl FnOnce(&mut Table) + 'static) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// The daemons to start, in this order (default: `authd`). Empty starts none.
    pub fn daemons(mut self, names: &[&str]) -> Self {
        self.daemons = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// Runs the daemons inside network namespace `name` (`ip netns exec NAME BIN …`; the
    /// cluster tests). mailctl still runs here. The namespace must exist.
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_owned());
        self
    }

    /// [`start`](Self::start), then `mailctl domain add` for the domain of `address` and
    /// [`Postern::add_user`]`(address, password)`.
    pub fn start_with_user(self, address: &str, password: &str) -> Postern {
        let (_, domain) = address
            .rsplit_once('@')
            .unwrap_or_else(|| panic!("{address} has no domain"));
        let pm = self.start();
        pm.mailctl_ok(&["domain", "add", domain]);
        pm.add_user(address, password);
        pm
    }

    /// Lays out the install and starts the daemons; panics (with logs) on any failure.
    pub fn start(self) -> Postern {
        let tmp = tempfile::Builder::new()
            .prefix("postern-e2e-")
            .tempdir()
            .expect("create a temp dir");
        let dir = tmp.path().to_owned();
        // Interop tests: Postfix's daemons (user `postfix`) reach the sockets below it.
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).expect("chmod the temp dir");
        let db = match self.db {
            DbKind::Sqlite => None,
            kind => Some(TestDb::create(kind)),
        };
        let dns = DnsServer::start_servfail();
        let mut pm = Postern {
            daemons: Vec::new(),
            db,
            db_kind: self.db,
            config: dir.join("postern.toml"),
            dir: Some(tmp),
            dns,
            netns: self.netns,
        };

        let mut init = pm.command("mailctl");
        init.arg("init").arg("--dir").arg(&dir);
        if let Some(d) = &self.domain {
            init.args(["--domain", d]);
        }
        if let Some(h) = &self.hostname {
            init.args(["--hostname", h]);
        }
        if let Some(db) = &pm.db {
            init.args(["--database-url", db.url()]);
        }
        if self.demo {
            init.arg("--demo");
        }
        let out = run_command(&mut init, None, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "mailctl init failed\n{}",
            describe_output(&out)
        );
        assert!(
            pm.config.is_file(),
            "mailctl init did not write {}",
            pm.config.display()
        );

        let dns_addr = pm.dns.addr().to_string();
        pm.edit_config(|t| {
            loopback_port_zero(t);
            // DNS stays on loopback: a server answering SERVFAIL unless a test points it at
            // a DnsServer of its own (outbound delivery never asks the machine's resolver).
            set_key(t, "dns.nameservers", Value::from(vec![dns_addr]));
            // Failed logins answered after 50 ms, not the production 1 s: many tests log in
            // wrongly on purpose (lockouts, refusals). Tests of the delay set their own.
            set_key(t, "authd.failure_delay_ms", Value::from(50));
            for edit in self.edits {
                edit(t);
            }
        });
        for name in &self.daemons {
            pm.start_daemon(name);
        }
        pm
    }
}

/// A running install; dropping it kills the daemons, drops the database, removes the dir.
pub struct Postern {
    daemons: Vec<Daemon>,
    db: Option<TestDb>,
    db_kind: DbKind,
    config: PathBuf,
    dir: Option<TempDir>,
    /// The SERVFAIL-only DNS server the install points at by default.
    dns: DnsServer,
    /// The network namespace the daemons run in ([`PosternBuilder::netns`]).
    netns: Option<String>,
}

impl Postern {
    /// Options: database, config edits, daemons.
    pub fn builder() -> PosternBuilder {
        PosternBuilder {
            db: DbKind::Sqlite,
            domain: None,
            hostname: None,
            demo: false,
            edits: Vec::new(),
            daemons: vec!["authd".to_owned()],
            netns: None,
        }
    }

    /// SQLite and `authd`, the defaults.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// The install directory (`mailctl init --dir`).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir lives as long as self").path()
    }

    /// `DIR/postern.toml`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The config file as a TOML table.
    pub fn config(&self) -> Table {
        let text = std::fs::read_to_string(&self.config)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.config.display()));
        toml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", self.config.display()))
    }

    /// Rewrites the config file through `edit`. Running daemons see it once restarted.
    pub fn edit_config(&self, edit: impl FnOnce(&mut Table)) {
        let mut table = self.config();
        edit(&mut table);
        let text = toml::to_string(&table).expect("serialise the config");
        std::fs::write(&self.config, text)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.config.display()));
    }

    /// The run directory (`[paths] run_dir`, relative to the install directory).
    pub fn run_dir(&self) -> PathBuf {
        let config = self.config();
        let run_dir = config
            .get("paths")
            .and_then(|p| p.get("run_dir"))
            .and_then(Value::as_str)
            .unwrap_or("run");
        self.dir().join(run_dir)
    }

    /// The path of socket `name` (`auth`, `auth-userdb`, `socketmap`, …) in the run directory.
    pub fn socket(&self, name: &str) -> PathBuf {
        self.run_dir().join(name)
    }

    /// Which database this install uses.
    pub fn db_kind(&self) -> DbKind {
        self.db_kind
    }

    /// A URL of the install's database, for tests that run SQL themselves
    /// (`sqlite:///…/postern.db`, or the per-test PostgreSQL/MySQL database).
    pub fn db_url(&self) -> String {
        if let Some(db) = &self.db {
            return db.url().to_owned();
        }
        let config = self.config();
        let url = config
            .get("database")
            .and_then(|d| d.get("url"))
            .and_then(Value::as_str)
            .unwrap_or("sqlite://postern.db");
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or_else(|| panic!("not a SQLite URL in the config: {url}"));
        let path = path.split('?').next().unwrap_or(path);
        if path.starts_with('/') {
            format!("sqlite://{path}")
        } else {
            format!("sqlite://{}", self.dir().join(path).display())
        }
    }

    /// Runs SQL statements (no results) on the install's database.
    pub fn sql(&self, sql: &str) {
        exec_sql(&self.db_url(), sql);
    }

    /// Runs `mailctl --config DIR/postern.toml ARGS…` with stdin from /dev/null.
    pub fn mailctl(&self, args: &[&str]) -> Output {
        self.run_mailctl(args, None)
    }

    /// Runs `mailctl --config DIR/postern.toml ARGS…` with `stdin` as its input (passwords).
    pub fn mailctl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run_mailctl(args, Some(stdin))
    }

    /// Runs mailctl, panics (with its output) unless it succeeds; returns stdout.
    pub fn mailctl_ok(&self, args: &[&str]) -> String {
        let out = self.mailctl(args);
        assert!(
            out.status.success(),
            "mailctl {args:?} failed\n{}",
            describe_output(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `mailctl user add ADDRESS` with `password` on stdin; panics unless it succeeds.
    pub fn add_user(&self, address: &str, password: &str) {
        self.add_user_on_host(address, password, None);
    }

    /// `mailctl user add ADDRESS [--host HOST]` with `password` on stdin; panics unless it
    /// succeeds.
    pub fn add_user_on_host(&self, address: &str, password: &str, host: Option<&str>) {
        let mut args = vec!["user", "add", address];
        if let Some(h) = host {
            args.extend(["--host", h]);
        }
        let out = self.mailctl_stdin(&args, &format!("{password}\n"));
        assert!(out.status.success(), "{}", describe_output(&out));
    }

    /// One lookup on authd's `socketmap` socket (netstring `MAP KEY`), reads with `timeout`:
    /// the reply body (`OK …`, `NOTFOUND `, `TEMP …`).
    pub fn socketmap(&self, map: &str, key: &str, timeout: Duration) -> String {
        let mut s = UnixStream::connect(self.socket("socketmap")).unwrap();
        s.set_read_timeout(Some(timeout)).unwrap();
        let req = format!("{map} {key}");
        s.write_all(format!("{}:{req},", req.len()).as_bytes())
            .unwrap();
        let mut buf = Vec::new();
        let mut b = [0u8; 512];
        loop {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "socketmap closed");
            buf.extend_from_slice(&b[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((len, rest)) = text.split_once(':')
                && let Ok(len) = len.parse::<usize>()
                && rest.len() > len
            {
                return rest[..len].to_owned();
            }
        }
    }

    /// The port of imapd's first `(imap)` listener.
    pub fn imap_port(&self) -> u16 {
        self.daemon("imapd").listening_addrs_matching("(imap)")[0].port()
    }

    /// Runs `python3 -c SCRIPT ARGS…`; panics (with its output and the log of daemon
    /// `log_of`) unless it succeeds; returns its stdout.
    pub fn python_ok(&self, log_of: &str, script: &str, args: &[&str]) -> String {
        let out = run_python(script, args);
        assert!(
            out.status.success(),
            "python failed\n{}\n{log_of} log:\n{}",
            describe_output(&out),
            self.daemon(log_of).log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs mailctl with `--json` appended, panics unless it succeeds; returns the JSON.
    pub fn mailctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.mailctl(&args);
        assert!(
            out.status.success(),
            "mailctl {args:?} failed\n{}",
            describe_output(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "mailctl {args:?} printed no JSON: {e}\n{}",
                describe_output(&out)
            )
        })
    }

    /// The running daemon `name`; panics if it was not started.
    pub fn daemon(&self, name: &str) -> &Daemon {
        self.daemons
            .iter()
            .rev()
            .find(|d| d.name() == name)
            .unwrap_or_else(|| panic!("daemon {name} was not started"))
    }

    /// The `authd` daemon.
    pub fn authd(&self) -> &Daemon {
        self.daemon("authd")
    }

    /// Starts `NAME --config DIR/postern.toml` and waits for its `ready` line.
    pub fn start_daemon(&mut self, name: &str) -> &Daemon {
        if self
            .daemons
            .iter()
            .any(|d| d.name() == name && d.is_running())
        {
            panic!("daemon {name} is already running");
        }
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the daemon: the child's pid is the daemon's (signals reach it).
            Some(ns) => {
                let mut cmd = self.command_of(Command::new("ip"));
                cmd.args(["netns", "exec", ns]).arg(bin(name));
                cmd
            }
            None => self.command(name),
        };
        cmd.arg("--config").arg(&self.config);
        // No RUST_LOG of its own: the daemons run with their default level, as installed
        // (a static level filter; RUST_LOG, when the test run has one, selects the
        // EnvFilter instead).
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        let daemon = Daemon::spawn(name, cmd);
        daemon.wait_ready();
        self.daemons.push(daemon);
        self.daemons.last().expect("just pushed")
    }

    /// Stops daemon `name` with SIGTERM (asserting exit status 0) and forgets it.
    pub fn stop_daemon(&mut self, name: &str) {
        let i = self
            .daemons
            .iter()
            .rposition(|d| d.name() == name)
            .unwrap_or_else(|| panic!("daemon {name} was not started"));
        let daemon = self.daemons.remove(i);
        // One that was killed on purpose (crash tests) has nothing left to stop.
        if daemon.is_running() {
            daemon.stop();
        }
    }

    /// Stops and starts daemon `name` again (to pick up config edits, or to test recovery).
    pub fn restart_daemon(&mut self, name: &str) -> &Daemon {
        self.stop_daemon(name);
        self.start_daemon(name)
    }

    /// Stops every daemon, last started first, asserting each exits 0 on SIGTERM.
    pub fn stop(&mut self) {
        for daemon in self.daemons.iter().rev() {
            if daemon.is_running() {
                daemon.stop();
            }
        }
    }

    /// A command for workspace binary `name`, run in the install dir with a clean environment
    /// for Postern's own variables.
    fn command(&self, name: &str) -> Command {
        self.command_of(Command::new(bin(name)))
    }

    /// `cmd` run in the install dir with a clean environment for Postern's own variables.
    fn command_of(&self, mut cmd: Command) -> Command {
        cmd.current_dir(self.dir())
            .env_remove("POSTERN_CONFIG")
            .env_remove("POSTERN_DB_PASSWORD")
            .env("NO_COLOR", "1");
        cmd
    }

    fn run_mailctl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command("mailctl");
        cmd.arg("--config").arg(&self.config).args(args);
        run_command(&mut cmd, stdin.map(str::as_bytes), COMMAND_TIMEOUT)
    }
}

impl Drop for Postern {
    fn drop(&mut self) {
        while let Some(daemon) = self.daemons.pop() {
            drop(daemon);
        }
        let keep = std::thread::panicking()
            && std::env::var_os("POSTERN_TEST_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        if keep {
            if let Some(dir) = self.dir.take() {
                eprintln!("POSTERN_TEST_KEEP: kept {}", dir.keep().display());
            }
            if let Some(db) = self.db.take() {
                eprintln!("POSTERN_TEST_KEEP: kept database {}", db.url());
                std::mem::forget(db);
            }
        }
        self.db = None;
    }
}

/// Rewrites every listener list in the config (an array of `IP:PORT` strings, such as
/// `[smtpd] listen`) to `["127.0.0.1:0"]`: `mailctl init` writes fixed ports, tests must not
/// use them. Daemons log the ports they got (`listening on 127.0.0.1:PORT`).
fn loopback_port_zero(table: &mut Table) {
    for (_, value) in table.iter_mut() {
        match value {
            Value::Table(t) => loopback_port_zero(t),
            Value::Array(items)
                if !items.is_empty()
                    && items.iter().all(|v| {
                        v.as_str()
                            .is_some_and(|s| s.parse::<std::net::SocketAddr>().is_ok())
                    }) =>
            {
                *items = vec![Value::from("127.0.0.1:0")];
            }
            // A single address (`metrics_listen`).
            Value::String(s) if s.parse::<std::net::SocketAddr>().is_ok() => {
                *s = "127.0.0.1:0".to_owned();
            }
            _ => {}
        }
    }
}

/// Sets `value` at a dotted path in a TOML table, creating the tables on the way
/// (`"authd.lockout.allow_networks"`). Panics if a step is not a table.
pub fn set_key(table: &mut Table, dotted_key: &str, value: Value) {
    let mut parts: Vec<&str> = dotted_key.split('.').collect();
    let last = parts.pop().expect("split yields at least one part");
    let mut t = table;
    for part in parts {
        t = t
            .entry(part)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("{dotted_key}: {part} is not a table"));
    }
    t.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_port_zero() {
        let mut t: Table = toml::from_str(
            "hostname = \"m\"\n[smtpd]\nlisten = [\"127.0.0.1:2525\", \"[::1]:2525\"]\n\
             [authd.lockout]\nallow_networks = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        loopback_port_zero(&mut t);
        assert_eq!(t["smtpd"]["listen"].as_array().unwrap().len(), 1);
        assert_eq!(t["smtpd"]["listen"][0].as_str(), Some("127.0.0.1:0"));
        assert_eq!(
            t["authd"]["lockout"]["allow_networks"][0].as_str(),
            Some("10.0.0.0/8")
        );
    }

    #[test]
    fn set_key_makes_tables() {
        let mut t: Table = toml::from_str("hostname = \"m\"\n[authd]\nmax_line = 2048\n").unwrap();
        set_key(
            &mut t,
            "authd.lockout.allow_networks",
            vec!["127.0.0.1/32"].into(),
        );
        set_key(&mut t, "hostname", "n".into());
        let text = toml::to_string(&t).unwrap();
        let back: Table = toml::from_str(&text).unwrap();
        assert_eq!(back["hostname"].as_str(), Some("n"));
        assert_eq!(back["authd"]["max_line"].as_integer(), Some(2048));
        assert_eq!(
            back["authd"]["lockout"]["allow_networks"][0].as_str(),
            Some("127.0.0.1/32")
        );
    }
}
