//! The one Postern configuration file, `postern.toml`: a section per daemon.
//!
//! Each daemon reads only the sections it needs. Parsing is strict (`deny_unknown_fields`),
//! so a typo is an error instead of a silently ignored setting. Relative paths are resolved
//! against the directory holding the config file, so a self-contained install made by
//! `mailctl init --dir DIR` can be moved as a whole.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default location of the config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/postern/postern.toml";

/// The directory's change stamp, in the state directory: replaced by every change made
/// through Postern, so the caches of directory answers (authd's, smtpd's, lmtp-deliver's)
/// empty at once ([`Config::directory_stamp`]). A public copy of the same name is replaced
/// in the run directory right after it ([`Config::public_directory_stamp`]), for the daemons
/// whose user cannot read the state directory.
pub const DIRECTORY_STAMP: &str = "directory.stamp";

/// Errors while loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        message: String,
    },
    /// The values are well-formed but make no sense together.
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This server's fully qualified host name (HELO name, authserv-id, greetings).
    pub hostname: String,
    /// Where things live on disk.
    #[serde(default)]
    pub paths: Paths,
    /// The account database.
    #[serde(default)]
    pub database: Database,
    /// The TLS certificate shared by the listeners.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Password policy and hashing.
    #[serde(default)]
    pub passwords: Passwords,
    /// The directory daemon.
    #[serde(default)]
    pub authd: Authd,
    /// The MTA (listener addresses; the rest comes with the smtpd issue).
    #[serde(default)]
    pub smtpd: Smtpd,
    /// The IMAP/POP3 server (listener addresses; the rest comes with the imapd issue).
    #[serde(default)]
    pub imapd: Imapd,
    /// The LMTP delivery agent.
    #[serde(default)]
    pub lmtp: Lmtp,
    /// DNS for outbound delivery (MX, A/AAAA lookups).
    #[serde(default)]
    pub dns: Dns,
    /// DKIM signing of outbound mail.
    #[serde(default)]
    pub dkim: Dkim,
    /// Checks on mail arriving on port 25 (SPF, DKIM, DMARC, DNSBL, HELO, greylisting, …).
    #[serde(default)]
    pub checks: Checks,
    /// The mail-client autoconfiguration listener served by smtpd (off unless configured).
    #[serde(default)]
    pub autoconfig: Autoconfig,
    /// Cluster: which accounts live on this node, how to reach the backends.
    #[serde(default)]
    pub proxy: Proxy,
    /// The directory the config file was loaded from; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

mod authd;
mod autoconfig;
mod checks;
mod database;
mod dkim;
mod dns;
mod duration;
mod imapd;
mod lmtp;
mod passwords;
mod paths;
mod proxy;
mod smtpd;
mod socket;
mod template;
mod tls;

pub use authd::{Authd, Lockout, Userdb};
pub use autoconfig::Autoconfig;
pub use checks::{CheckMode, Checks};
pub use database::{Database, Queries};
pub use dkim::Dkim;
pub use dns::{Dns, DnssecMode};
pub use duration::{MAX_SPAN, Millis, Seconds};
pub use imapd::Imapd;
pub use lmtp::Lmtp;
pub use passwords::Passwords;
pub use paths::Paths;
pub use proxy::{HopTls, Proxy, SmtpdRouting, valid_host};
pub use smtpd::{AccessAction, AccessRule, DaneMode, SharedPolicyStore, Smtpd, SmtpdRuntime};
pub use socket::SocketSpec;
pub use template::{expand_template, expand_template_home};
pub use tls::{Tls, TlsPolicy};

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::fs::canonicalize(&base).unwrap_or(base);
        Self::parse(&text, &base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: parse_message(&e),
        })?;
        config.base_dir = base_dir.to_owned();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let h = self.hostname.trim();
        if h.is_empty() || h.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid(
                "hostname must be a host name without spaces".into(),
            ));
        }
        for s in [
            &self.authd.auth_socket,
            &self.authd.userdb_socket,
            &self.authd.socketmap_socket,
            &self.lmtp.socket,
            &self.smtpd.control_socket,
        ] {
            s.mode_bits()?;
        }
        self.proxy.validate()?;
        if self.authd.max_line < 1024 {
            return Err(ConfigError::Invalid(
                "authd.max_line must be at least 1024".into(),
            ));
        }
        let scheme = self.database.url.split(':').next().unwrap_or("");
        if !matches!(
            scheme,
            "sqlite" | "postgres" | "postgresql" | "mysql" | "mariadb"
        ) {
            return Err(ConfigError::Invalid(format!(
                "database.url must start with sqlite:, postgres:, or mysql: (got {scheme:?})"
            )));
        }
        for (key, addr) in [
            ("postmaster", &self.smtpd.postmaster),
            ("abuse", &self.smtpd.abuse),
        ] {
            if let Some(a) = addr
                && !valid_role_address(a)
            {
                return Err(ConfigError::Invalid(format!(
                    "smtpd.{key} = {a:?}: expected an address user@domain"
                )));
            }
        }
        if self.smtpd.relayhost_auth_user.is_some() != self.smtpd.relayhost_password_file.is_some()
        {
            return Err(ConfigError::Invalid(
                "smtpd.relayhost_auth_user and smtpd.relayhost_password_file go together".into(),
            ));
        }
        for (domain, t) in &self.smtpd.transports {
            let ok = t
                .strip_prefix("smtp:")
                .or_else(|| t.strip_prefix("lmtp:"))
                .is_some_and(|rest| {
                    rest.starts_with("unix:/")
                        || rest
                            .rsplit_once(':')
                            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                });
            if !ok || t.starts_with("smtp:unix:") {
                return Err(ConfigError::Invalid(format!(
                    "smtpd.transports: {domain} = {t:?}: expected smtp:HOST:PORT, lmtp:HOST:PORT or lmtp:unix:/PATH"
                )));
            }
        }
        if self.passwords.min_length < 6 {
            return Err(ConfigError::Invalid(
                "passwords.min_length below 6 is not allowed".into(),
            ));
        }
        Ok(())
    }

    /// A path from the config, made absolute against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The run directory, absolute.
    pub fn run_dir(&self) -> PathBuf {
        self.resolve(&self.paths.run_dir)
    }

    /// The Maildir root, absolute.
    pub fn mail_root(&self) -> PathBuf {
        self.resolve(&self.paths.mail_root)
    }

    /// The state directory, absolute.
    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.paths.state_dir)
    }

    /// The directory's change stamp, absolute: `<state_dir>/directory.stamp`.
    pub fn directory_stamp(&self) -> PathBuf {
        self.state_dir().join(DIRECTORY_STAMP)
    }

    /// The public copy of the directory's change stamp, absolute: `<run_dir>/directory.stamp`
    /// (mode 0644, it holds only a time). Replaced after [`Config::directory_stamp`] on every
    /// change, and watched by the clients of authd (smtpd, lmtp-deliver) whose user cannot
    /// read the state directory (the package's lmtp-deliver runs as `vmail`).
    pub fn public_directory_stamp(&self) -> PathBuf {
        self.run_dir().join(DIRECTORY_STAMP)
    }

    /// The DKIM key directory, absolute (`[dkim] key_dir`, or `<state_dir>/dkim`).
    pub fn dkim_key_dir(&self) -> PathBuf {
        match &self.dkim.key_dir {
            Some(d) => self.resolve(d),
            None => self.state_dir().join("dkim"),
        }
    }

    /// The TLS policy for mail to `domain` (`[smtpd] tls_policy`, else `outbound_tls`).
    pub fn tls_policy_for(&self, domain: &str) -> TlsPolicy {
        self.explicit_tls_policy(domain)
            .unwrap_or(self.smtpd.outbound_tls)
    }

    /// The `[smtpd] tls_policy` entry for `domain`, if there is one.
    pub fn explicit_tls_policy(&self, domain: &str) -> Option<TlsPolicy> {
        let d = domain.trim_end_matches('.');
        self.smtpd
            .tls_policy
            .iter()
            .find(|(k, _)| k.trim_end_matches('.').eq_ignore_ascii_case(d))
            .map(|(_, p)| *p)
    }

    /// The home directory template of userdb replies (`[authd.userdb] home`, or
    /// `<mail_root>/%d/%n`).
    pub fn home_template(&self) -> String {
        self.authd
            .userdb
            .home
            .clone()
            .unwrap_or_else(|| format!("{}/%d/%n", self.mail_root().display()))
    }

    /// The mail location template of userdb replies (`[authd.userdb] mail`, or
    /// `maildir:<mail_root>/%d/%n/Maildir`).
    pub fn mail_template(&self) -> String {
        self.authd
            .userdb
            .mail
            .clone()
            .unwrap_or_else(|| format!("maildir:{}/%d/%n/Maildir", self.mail_root().display()))
    }

    /// The active Sieve script of `address` whose home is `home`.
    pub fn sieve_script_path(&self, address: &str, home: &str) -> PathBuf {
        PathBuf::from(expand_template_home(
            &self.lmtp.sieve_script,
            address,
            Some(home),
        ))
    }

    /// A socket's path, absolute (relative ones live in the run directory).
    pub fn socket_path(&self, s: &SocketSpec) -> PathBuf {
        if s.path.is_absolute() {
            s.path.clone()
        } else {
            self.run_dir().join(&s.path)
        }
    }

    /// The database URL with the secret filled in and a relative SQLite path made absolute.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        let mut url = self.database.url.clone();
        let sqlite_path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"));
        if let Some(rest) = sqlite_path.filter(|r| !r.starts_with('/') && !r.starts_with(':')) {
            url = format!("sqlite://{}", self.base_dir.join(rest).display());
        }
        let secret = match std::env::var("POSTERN_DB_PASSWORD") {
            Ok(s) if !s.is_empty() => Some(s),
            _ => match &self.database.password_file {
                Some(f) => {
                    let f = self.resolve(f);
                    let text = std::fs::read_to_string(&f).map_err(|source| ConfigError::Read {
                        path: f.clone(),
                        source,
                    })?;
                    Some(text.lines().next().unwrap_or("").to_owned())
                }
                None => None,
            },
        };
        if let Some(secret) = secret {
            url = database::with_password(&url, &secret)?;
        }
        Ok(url)
    }
}

/// The parser's words with the offending line, and the dotted key (in `lmtp.idle_timeout_secs`)
/// which the line alone does not give when the same key exists in several sections.
fn parse_message(e: &toml::de::Error) -> String {
    let mut message = e.to_string();
    let mut bare = e.clone();
    bare.set_input(None);
    if let Some(key) = bare.to_string().lines().find(|l| l.starts_with("in `"))
        && !message.contains(key)
    {
        message.push_str(key);
        message.push('\n');
    }
    message
}

pub(crate) fn default_true() -> bool {
    true
}

pub(crate) fn any(port: u16) -> Vec<SocketAddr> {
    vec![SocketAddr::from(([0, 0, 0, 0], port))]
}

/// An address for `[smtpd] postmaster`/`abuse`: `local@domain`, no spaces, brackets or
/// control characters (smtpd parses it fully at RCPT).
fn valid_role_address(a: &str) -> bool {
    a.rsplit_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(
            "hostname = \"mail.example.org\"\n",
            Path::new("/etc/postern"),
        )
        .unwrap();
        assert_eq!(c.authd.auth_socket.path, PathBuf::from("auth"));
        assert_eq!(
            c.socket_path(&c.authd.userdb_socket),
            PathBuf::from("/run/postern/auth-userdb")
        );
        assert_eq!(c.authd.auth_socket.mode_bits().unwrap(), 0o660);
        assert_eq!(c.smtpd.listen[0].port(), 25);
        assert_eq!(c.smtpd.runtime, SmtpdRuntime::Current);
    }

    #[test]
    fn smtpd_runtime_is_current_or_multi() {
        let parse = |v: &str| {
            Config::parse(
                &format!("hostname = \"m\"\n[smtpd]\nruntime = \"{v}\"\n"),
                Path::new("/"),
            )
        };
        assert_eq!(parse("multi").unwrap().smtpd.runtime, SmtpdRuntime::Multi);
        assert_eq!(
            parse("current").unwrap().smtpd.runtime,
            SmtpdRuntime::Current
        );
        assert!(parse("threads").is_err());
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = Config::parse(
            "hostname = \"m\"\n[authd]\nauth_sockt = 1\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("auth_sockt"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let c = Config::parse(
            "hostname = \"m.example\"\n[paths]\nrun_dir = \"run\"\n[database]\nurl = \"sqlite://postern.db\"\n",
            Path::new("/srv/p"),
        )
        .unwrap();
        assert_eq!(c.run_dir(), PathBuf::from("/srv/p/run"));
        assert_eq!(c.database_url().unwrap(), "sqlite:///srv/p/postern.db");
        // The change stamp and its public copy.
        assert_eq!(
            c.directory_stamp(),
            PathBuf::from("/var/lib/postern/directory.stamp")
        );
        assert_eq!(
            c.public_directory_stamp(),
            PathBuf::from("/srv/p/run/directory.stamp")
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Config::parse("hostname = \"\"\n", Path::new("/")).is_err());
        assert!(
            Config::parse(
                "hostname = \"m\"\n[database]\nurl = \"oracle://x\"\n",
                Path::new("/")
            )
            .is_err()
        );
        assert!(
            Config::parse(
                "hostname = \"m\"\n[authd.auth_socket]\npath = \"a\"\nmode = \"999\"\n",
                Path::new("/")
            )
            .is_err()
        );
    }

    #[test]
    fn deploy_example_parses() {
        let text = include_str!("../../../deploy/postern.toml");
        let c = Config::parse(text, Path::new("/etc/postern")).unwrap();
        assert_eq!(c.hostname, "mail.example.org");
        assert_eq!(c.smtpd.listen.len(), 2);
        assert!(c.autoconfig.listen.is_empty());
        // The commented postfix_accounts example, uncommented, parses too.
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| {
                        r.starts_with("[database.queries]")
                            || r.starts_with("domain  =")
                            || r.starts_with("account =")
                            || r.starts_with("alias   =")
                            || r.starts_with("list    =")
                    })
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&uncommented, Path::new("/etc/postern")).unwrap();
        assert!(
            c.database
                .queries
                .account
                .as_deref()
                .unwrap()
                .contains("accounts_table")
        );
    }

    #[test]
    fn outbound_settings() {
        let c = Config::parse(
            "hostname = \"m.example\"\n[dns]\nnameservers = [\"127.0.0.1:5353\"]\n[smtpd]\nouthound = 1\n",
            Path::new("/"),
        );
        assert!(c.is_err());
        let c = Config::parse(
            concat!(
                "hostname = \"m.example\"\n[dns]\nnameservers = [\"127.0.0.1:5353\"]\n",
                "[smtpd]\noutbound_port = 2525\n",
                "[smtpd.transports]\n\"lists.example\" = \"smtp:[::1]:26\"\n\"b.example\" = \"lmtp:unix:/run/x\"\n",
                "[smtpd.tls_policy]\n\"Bank.Example\" = \"verify\"\n",
            ),
            Path::new("/srv"),
        )
        .unwrap();
        assert_eq!(c.dns.nameservers[0].port(), 5353);
        assert_eq!(c.smtpd.outbound_port, 2525);
        assert_eq!(c.tls_policy_for("bank.example."), TlsPolicy::Verify);
        assert_eq!(c.tls_policy_for("other.example"), TlsPolicy::May);
        assert_eq!(c.dkim_key_dir(), PathBuf::from("/var/lib/postern/dkim"));
        for bad in ["smtp:nohost", "ftp:h:1", "smtp:unix:/x", "lmtp:h:port"] {
            let text = format!("hostname = \"m\"\n[smtpd.transports]\n\"a.example\" = \"{bad}\"\n");
            assert!(Config::parse(&text, Path::new("/")).is_err(), "{bad}");
        }
        let half = "hostname = \"m\"\n[smtpd]\nrelayhost_auth_user = \"u\"\n";
        assert!(Config::parse(half, Path::new("/")).is_err());
    }

    #[test]
    fn autoconfig_section() {
        let c = Config::parse(
            "hostname = \"m\"\n[autoconfig]\nlisten = [\"127.0.0.1:8080\", \"[::1]:80\"]\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.autoconfig.listen.len(), 2);
        assert_eq!(c.autoconfig.listen[0].port(), 8080);
        let c = Config::parse("hostname = \"m\"\n", Path::new("/")).unwrap();
        assert!(c.autoconfig.listen.is_empty());
        let bad = "hostname = \"m\"\n[autoconfig]\nport = 80\n";
        assert!(Config::parse(bad, Path::new("/")).is_err());
    }
}
