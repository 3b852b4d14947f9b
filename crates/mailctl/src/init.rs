//! `mailctl init --dir DIR`: a self-contained install on unprivileged loopback ports.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use postern_config::Config;
use postern_directory::{Directory, NewSecret, normalize_domain};
use rand::Rng;
use serde_json::json;

/// `mailctl init` arguments.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The directory to lay out (created if absent; must not hold a postern.toml yet).
    #[arg(long)]
    dir: PathBuf,
    /// A first mail domain to add.
    #[arg(long)]
    domain: Option<String>,
    /// This server's host name (default mail.DOMAIN, or the machine's name).
    #[arg(long)]
    hostname: Option<String>,
    /// Use this database instead of DIR/postern.db (postgres://… or mysql://…).
    #[arg(long)]
    database_url: Option<String>,
    /// Also add the domain (default example.test) and a user demo@DOMAIN with a random
    /// password, and print the credentials.
    #[arg(long)]
    demo: bool,
}

/// The unprivileged loopback ports of a local install.
pub(crate) const PORTS: [(&str, u16); 12] = [
    ("smtp", 2525),
    ("submission", 2587),
    ("submissions", 2465),
    ("imap", 2143),
    ("imaps", 2993),
    ("pop3", 2110),
    ("pop3s", 2995),
    ("managesieve", 24190),
    ("authd-metrics", 29101),
    ("lmtp-metrics", 29102),
    ("smtpd-metrics", 29103),
    ("imapd-metrics", 29104),
];

fn port(name: &str) -> u16 {
    PORTS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, p)| *p)
}

pub(crate) async fn init(a: &InitArgs, json_out: bool) -> anyhow::Result<()> {
    let config_path = a.dir.join("postern.toml");
    if config_path.exists() {
        anyhow::bail!(
            "{} exists already; this directory is initialised",
            config_path.display()
        );
    }
    let domain = match (&a.domain, a.demo) {
        (Some(d), _) => Some(normalize_domain(d)?),
        (None, true) => Some("example.test".to_owned()),
        (None, false) => None,
    };
    let hostname = match (&a.hostname, &domain) {
        (Some(h), _) => h.trim().to_ascii_lowercase(),
        (None, Some(d)) => format!("mail.{d}"),
        (None, None) => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| h.contains('.'))
            .unwrap_or_else(|| "mail.example.test".to_owned()),
    };
    for sub in ["run", "state", "state/queue", "mail", "tls"] {
        std::fs::create_dir_all(a.dir.join(sub))
            .with_context(|| format!("creating {}", a.dir.join(sub).display()))?;
    }
    for (sub, mode) in [
        ("state", 0o700),
        ("tls", 0o700),
        ("mail", 0o700),
        ("run", 0o755),
    ] {
        std::fs::set_permissions(a.dir.join(sub), std::fs::Permissions::from_mode(mode))?;
    }
    write_tls(&a.dir.join("tls"), &hostname)?;
    let db_url = a
        .database_url
        .clone()
        .unwrap_or_else(|| "sqlite://postern.db".to_owned());
    // RFC 5321 §4.5.1: `<postmaster>` must be accepted. The demo user is the one mailbox a
    // fresh install has, so it reads the postmaster's mail until the admin says otherwise.
    let postmaster = domain
        .as_ref()
        .filter(|_| a.demo)
        .map(|d| format!("demo@{d}"));
    let text = config_text(&hostname, &db_url, postmaster.as_deref());
    let dir = std::fs::canonicalize(&a.dir)?;
    // Check the text parses before writing it, so a bad --hostname leaves nothing behind.
    let config = Config::parse(&text, &dir).context("the generated config does not parse")?;
    let directory = Directory::open(&config)
        .await
        .context("creating the database")?;
    let tmp = dir.join("postern.toml.tmp");
    std::fs::write(&tmp, &text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))?;
    std::fs::rename(&tmp, &config_path)?;
    let mut demo_password = None;
    if let Some(d) = &domain {
        directory.add_domain(d).await?;
        if a.demo {
            let pw: String = rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(20)
                .map(char::from)
                .collect();
            directory
                .add_user(&format!("demo@{d}"), NewSecret::Password(&pw), 0)
                .await?;
            demo_password = Some(pw);
        }
    }
    directory.close().await;
    let config_path = dir.join("postern.toml");
    if json_out {
        println!(
            "{}",
            json!({"config": config_path, "hostname": hostname, "domain": domain,
                   "demo_user": demo_password.as_ref().and(domain.as_ref()).map(|d| format!("demo@{d}")),
                   "demo_password": demo_password, "postmaster": postmaster,
                   "ports": PORTS.iter().map(|(n, p)| (n.to_string(), *p)).collect::<std::collections::BTreeMap<_, _>>()})
        );
    } else {
        println!("Initialised {} (host name {hostname})", dir.display());
        println!("  config:   {}", config_path.display());
        println!("  database: {db_url}");
        println!("  sockets:  {}", dir.join("run").display());
        println!(
            "  ports:    {}",
            PORTS
                .iter()
                .map(|(n, p)| format!("{n} {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let (Some(d), Some(pw)) = (&domain, &demo_password) {
            println!("  demo user: demo@{d}  password: {pw}");
        }
        match &postmaster {
            Some(p) => println!("  postmaster: {p} ([smtpd] postmaster)"),
            None => println!(
                "  postmaster: none yet; set [smtpd] postmaster, or give `mailctl domain add` \
                 --postmaster, so RCPT TO:<postmaster> is accepted (RFC 5321 §4.5.1)"
            ),
        }
        println!("Next: mailctl --config {} run", config_path.display());
    }
    Ok(())
}

fn write_tls(dir: &Path, hostname: &str) -> anyhow::Result<()> {
    let ck = rcgen::generate_simple_self_signed(vec![hostname.to_owned(), "localhost".to_owned()])
        .context("generating a self-signed certificate")?;
    let key = dir.join("key.pem");
    std::fs::write(&key, ck.signing_key.serialize_pem())?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(dir.join("cert.pem"), ck.cert.pem())?;
    Ok(())
}

fn config_text(hostname: &str, db_url: &str, postmaster: Option<&str>) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    // Where RCPT TO:<postmaster> and postmaster@/abuse@ each domain go (RFC 5321 §4.5.1).
    let postmaster = match postmaster {
        Some(p) => format!("postmaster = \"{}\"", esc(p)),
        None => "# Set this (or alias postmaster@ each domain) so <postmaster> is accepted.\n\
                 # postmaster = \"you@example.org\""
            .to_owned(),
    };
    format!(
        r#"# Postern configuration written by `mailctl init`. Relative paths are relative to this
# file's directory. deploy/postern.toml in the source tree documents every option.

hostname = "{hostname}"

[paths]
run_dir = "run"
state_dir = "state"
mail_root = "mail"

[database]
url = "{db_url}"

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"

[passwords]
min_length = 10

[authd]
metrics_listen = "127.0.0.1:{authd_metrics}"

[authd.auth_socket]
path = "auth"
mode = "0660"

[authd.userdb_socket]
path = "auth-userdb"
mode = "0660"

[authd.socketmap_socket]
path = "socketmap"
mode = "0660"

[authd.lockout]
account_threshold = 10
ip_threshold = 30
lockout_secs = 900

[lmtp]
socket = {{ path = "lmtp", mode = "0660" }}
submit_to = "control"
metrics_listen = "127.0.0.1:{lmtp_metrics}"

[smtpd]
listen = ["127.0.0.1:{smtp}"]
submission = ["127.0.0.1:{submission}"]
submissions = ["127.0.0.1:{submissions}"]
{postmaster}
metrics_listen = "127.0.0.1:{smtpd_metrics}"

[imapd]
imap = ["127.0.0.1:{imap}"]
imaps = ["127.0.0.1:{imaps}"]
pop3 = ["127.0.0.1:{pop3}"]
pop3s = ["127.0.0.1:{pop3s}"]
managesieve_listen = ["127.0.0.1:{managesieve}"]
metrics_listen = "127.0.0.1:{imapd_metrics}"
"#,
        hostname = esc(hostname),
        db_url = esc(db_url),
        postmaster = postmaster,
        smtp = port("smtp"),
        submission = port("submission"),
        submissions = port("submissions"),
        imap = port("imap"),
        imaps = port("imaps"),
        pop3 = port("pop3"),
        pop3s = port("pop3s"),
        managesieve = port("managesieve"),
        authd_metrics = port("authd-metrics"),
        lmtp_metrics = port("lmtp-metrics"),
        smtpd_metrics = port("smtpd-metrics"),
        imapd_metrics = port("imapd-metrics"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_parses_with_the_contract_ports() {
        let c = Config::parse(
            &config_text("mail.example.test", "sqlite://postern.db", None),
            Path::new("/srv/x"),
        )
        .unwrap();
        assert_eq!(c.smtpd.listen[0].port(), 2525);
        assert_eq!(c.smtpd.submission[0].port(), 2587);
        assert_eq!(c.smtpd.submissions[0].port(), 2465);
        assert_eq!(c.imapd.imap[0].port(), 2143);
        assert_eq!(c.imapd.imaps[0].port(), 2993);
        assert_eq!(c.imapd.pop3[0].port(), 2110);
        assert_eq!(c.imapd.pop3s[0].port(), 2995);
        assert_eq!(c.imapd.managesieve_listen[0].port(), 24190);
        let metrics = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string());
        assert_eq!(
            metrics(c.authd.metrics_listen).as_deref(),
            Some("127.0.0.1:29101")
        );
        assert_eq!(
            metrics(c.lmtp.metrics_listen).as_deref(),
            Some("127.0.0.1:29102")
        );
        assert_eq!(
            metrics(c.smtpd.metrics_listen).as_deref(),
            Some("127.0.0.1:29103")
        );
        assert_eq!(
            metrics(c.imapd.metrics_listen).as_deref(),
            Some("127.0.0.1:29104")
        );
        assert_eq!(c.run_dir(), PathBuf::from("/srv/x/run"));
        assert_eq!(c.database_url().unwrap(), "sqlite:///srv/x/postern.db");
        assert_eq!(c.smtpd.postmaster, None);
    }

    #[test]
    fn the_demo_user_is_the_postmaster() {
        let text = config_text(
            "mail.example.test",
            "sqlite://postern.db",
            Some("demo@example.test"),
        );
        let c = Config::parse(&text, Path::new("/srv/x")).unwrap();
        assert_eq!(c.smtpd.postmaster.as_deref(), Some("demo@example.test"));
        assert_eq!(c.smtpd.listen[0].port(), 2525);
    }
}
