//! A private instance of Debian's Postfix, for interop tests (Postfix using authd for SASL
//! and socketmap lookups, delivering to lmtp-deliver, relaying to smtpd).
//!
//! Everything lives in a temp dir: `etc/` (main.cf, master.cf), `queue/`, `data/` and
//! `maillog`. /etc/postfix is not touched. `postfix -c DIR` with a directory other than the
//! default works as root without `alternate_config_directories` (Postfix checks that list
//! only for unprivileged callers), so these tests need root, as Postfix's master does anyway.
//! Logging goes to `maillog` through postlogd (`maillog_file`, Postfix 3.4+).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::daemon::STARTUP_TIMEOUT;
use crate::process::{COMMAND_TIMEOUT, describe_output, run_command};

/// Where Debian installs Postfix's commands.
const SBIN: &str = "/usr/sbin";

/// The panic message when Postfix is missing.
const NOT_INSTALLED: &str =
    "Debian's postfix is not installed: run .ci/run (it apt-installs postfix)";

/// A free TCP port on 127.0.0.1 for a listener a daemon binds later: a random port below
/// the kernel's ephemeral range (32768 and up here) and the fixed ports of `mailctl init`
/// (24190, 29101-29104), so listeners other tests bind to port 0
/// and the source ports of outgoing connections cannot take it in between (handing back port
/// 0's answer raced with them: "Address already in use" in a parallel run). A port that does
/// not bind right now is skipped.
pub fn free_port() -> u16 {
    use rand::Rng as _;
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(20_000..24_000);
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Options for [`Postfix`]; from [`Postfix::builder`].
#[must_use]
pub struct PostfixBuilder {
    main_cf: Vec<(String, String)>,
    master_cf: String,
}

impl PostfixBuilder {
    /// Adds main.cf settings (`name = value` lines, continuation lines indented); a name
    /// already set, by the defaults or earlier, gets the new value.
    pub fn main_cf(mut self, lines: &str) -> Self {
        for line in lines.lines() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            if line.starts_with(char::is_whitespace) {
                let (_, value) = self
                    .main_cf
                    .last_mut()
                    .unwrap_or_else(|| panic!("main.cf continuation without a setting: {line:?}"));
                value.push(' ');
                value.push_str(line.trim());
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("main.cf line is not `name = value`: {line:?}"));
            set(&mut self.main_cf, name.trim(), value.trim());
        }
        self
    }

    /// Appends lines to master.cf (services besides the standard ones).
    pub fn master_cf(mut self, lines: &str) -> Self {
        self.master_cf.push_str(lines);
        if !lines.ends_with('\n') {
            self.master_cf.push('\n');
        }
        self
    }

    /// Writes the config, runs `postfix check` and `postfix start`, and waits until the
    /// SMTP port accepts connections. Panics (with the maillog) on failure.
    pub fn start(self) -> Postfix {
        assert!(Postfix::is_installed(), "{NOT_INSTALLED}");
        assert!(
            nix::unistd::geteuid().is_root(),
            "starting Postfix needs root (its master process runs as root)"
        );
        // A port found free can be taken before Postfix binds it: try a few times.
        let mut last_failure = String::new();
        for _ in 0..3 {
            match self.try_start() {
                Ok(pf) => return pf,
                Err(e) if e.contains("Address already in use") => last_failure = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_failure}")
    }

    fn try_start(&self) -> Result<Postfix, String> {
        let tmp = tempfile::Builder::new()
            .prefix("postern-postfix-")
            .tempdir()
            .expect("create a temp dir");
        let dir = tmp.path().to_owned();
        // Postfix's daemons run as `postfix` and resolve paths below these directories;
        // `postfix start` creates the rest of the queue (and `data/`) with the right owners.
        for path in [dir.clone(), dir.join("etc"), dir.join("queue")] {
            if !path.exists() {
                std::fs::create_dir(&path).expect("create a Postfix directory");
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod a Postfix directory");
        }
        let port = free_port();

        let mut settings = self.main_cf.clone();
        let d = dir.display();
        for (name, value) in [
            ("queue_directory", format!("{d}/queue")),
            ("data_directory", format!("{d}/data")),
            ("maillog_file", format!("{d}/maillog")),
            ("maillog_file_prefixes", d.to_string()),
        ] {
            set(&mut settings, name, &value);
        }
        let mut main_cf = String::from("# written by the postern-e2e harness\n");
        for (name, value) in &settings {
            main_cf.push_str(&format!("{name} = {value}\n"));
        }
        let master_cf = format!(
            "# written by the postern-e2e harness\n\
             127.0.0.1:{port} inet n - n - - smtpd\n\
             {STANDARD_SERVICES}{}",
            self.master_cf
        );
        std::fs::write(dir.join("etc/main.cf"), main_cf).expect("write main.cf");
        std::fs::write(dir.join("etc/master.cf"), master_cf).expect("write master.cf");

        let mut pf = Postfix {
            dir: tmp,
            port,
            running: false,
        };
        let check = pf.run("postfix", &["check"]);
        if !check.status.success() {
            return Err(pf.failure("postfix check failed", &check));
        }
        let start = pf.run("postfix", &["start"]);
        if !start.status.success() {
            return Err(pf.failure("postfix start failed", &start));
        }
        pf.running = true;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while TcpStream::connect_timeout(&pf.smtp_addr(), Duration::from_secs(1)).is_err() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "Postfix does not accept connections on {} after {STARTUP_TIMEOUT:?}\n\
                     --- maillog ---\n{}",
                    pf.smtp_addr(),
                    pf.maillog()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(pf)
    }
}

/// Sets main.cf parameter `name`, replacing an earlier value.
fn set(settings: &mut Vec<(String, String)>, name: &str, value: &str) {
    match settings.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => value.clone_into(v),
        None => settings.push((name.to_owned(), value.to_owned())),
    }
}

/// A running private Postfix; stopped (`postfix stop`) and removed on drop.
pub struct Postfix {
    dir: TempDir,
    port: u16,
    running: bool,
}

impl Postfix {
    /// Default settings: listens on 127.0.0.1 (IPv4 only) on a free port, delivers nothing
    /// locally (`mydestination =`), trusts 127.0.0.0/8, Postfix 3.6 compatibility defaults.
    pub fn builder() -> PostfixBuilder {
        let defaults = "\
            compatibility_level = 3.6\n\
            mail_owner = postfix\n\
            setgid_group = postdrop\n\
            inet_interfaces = 127.0.0.1\n\
            inet_protocols = ipv4\n\
            myhostname = mx.postfix.test\n\
            mydomain = postfix.test\n\
            myorigin = $myhostname\n\
            mydestination =\n\
            mynetworks = 127.0.0.0/8\n\
            relayhost =\n\
            alias_maps =\n\
            alias_database =\n\
            biff = no\n";
        PostfixBuilder {
            main_cf: Vec::new(),
            master_cf: String::new(),
        }
        .main_cf(defaults)
    }

    /// An instance with the default settings.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// True when Debian's postfix package is installed (its commands are in /usr/sbin).
    pub fn is_installed() -> bool {
        Path::new(SBIN).join("postfix").is_file() && Path::new(SBIN).join("postmap").is_file()
    }

    /// The instance's temp dir (holding `etc/`, `queue/`, `data/`, `maillog`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config directory to pass as `-c` (holding main.cf and master.cf).
    pub fn config_dir(&self) -> PathBuf {
        self.dir().join("etc")
    }

    /// The queue directory.
    pub fn queue_dir(&self) -> PathBuf {
        self.dir().join("queue")
    }

    /// Where smtpd listens.
    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The log so far (empty before the first line).
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir().join("maillog")).unwrap_or_default()
    }

    /// Waits for a maillog line containing `pattern`, returns it; panics with the log after
    /// `timeout`.
    pub fn wait_for_log(&self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.maillog().lines().find(|l| l.contains(pattern)) {
                return line.to_owned();
            }
            if Instant::now() >= deadline {
                panic!(
                    "Postfix did not log {pattern:?} within {timeout:?}\n--- maillog ---\n{}",
                    self.maillog()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `postmap -c DIR -q KEY MAP_SPEC`: a lookup as Postfix's daemons would make it
    /// (`socketmap:unix:/…/socketmap:domains`). Exit status 0 found, 1 not found.
    pub fn postmap_query(&self, map_spec: &str, key: &str) -> Output {
        self.run("postmap", &["-q", key, map_spec])
    }

    /// Runs one of Postfix's commands (`postfix`, `postconf`, `postmap`, `postqueue`,
    /// `postsuper`) as `PROGRAM -c DIR ARGS…`, bounded by [`COMMAND_TIMEOUT`].
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = Path::new(SBIN).join(program);
        let mut cmd = Command::new(if exe.is_file() {
            exe
        } else {
            PathBuf::from(program)
        });
        cmd.arg("-c").arg(self.config_dir()).args(args);
        run_command(&mut cmd, None, COMMAND_TIMEOUT)
    }

    /// `postfix stop`; panics (with the maillog) if it fails.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let out = self.run("postfix", &["stop"]);
        if !out.status.success() {
            panic!("{}", self.failure("postfix stop failed", &out));
        }
    }

    fn failure(&self, what: &str, out: &Output) -> String {
        format!(
            "{what} (config {})\n{}\n--- maillog ---\n{}",
            self.config_dir().display(),
            describe_output(out),
            self.maillog()
        )
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            let out = self.run("postfix", &["stop"]);
            if !out.status.success() {
                eprintln!("warning: postfix stop failed\n{}", describe_output(&out));
            }
        }
        for line in self.maillog().lines() {
            eprintln!("SRV:postfix: {line}");
        }
    }
}

/// The services of Postfix 3.7's stock master.cf, none chrooted (the chroot would need
/// copies of /etc files in the temp dir), plus postlogd for `maillog_file`.
const STANDARD_SERVICES: &str = "\
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
  -o syslog_name=postfix/$service_name
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
";
