//! The switch, one piece at a time, each with its way back. No I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One piece of the switch.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Step {
    /// What is switched.
    pub(crate) title: String,
    /// What to do, one command or instruction per line.
    pub(crate) switch: Vec<String>,
    /// How to tell it works.
    pub(crate) verify: Vec<String>,
    /// How to go back.
    pub(crate) rollback: Vec<String>,
}

/// What the steps need to know.
pub(crate) struct Context<'a> {
    /// Postfix's config directory.
    pub(crate) postfix_dir: &'a Path,
    /// Postern's config file.
    pub(crate) config: &'a Path,
    /// Postern's sockets.
    pub(crate) auth_socket: &'a Path,
    /// See `auth_socket`.
    pub(crate) socketmap_socket: &'a Path,
    /// See `auth_socket`.
    pub(crate) lmtp_socket: &'a Path,
    /// The old values of the Postfix parameters the steps change.
    pub(crate) old: &'a BTreeMap<String, String>,
    /// An account to try lookups with.
    pub(crate) sample_account: Option<&'a str>,
}

/// The four steps.
pub(crate) fn steps(c: &Context<'_>) -> Vec<Step> {
    let pc = |kv: &str| format!("postconf -c {} -e '{kv}'", c.postfix_dir.display());
    let back = |name: &str| match c.old.get(name) {
        Some(v) => pc(&format!("{name} = {v}")),
        None => format!("postconf -c {} -X {name}", c.postfix_dir.display()),
    };
    let reload = format!("postfix -c {} reload", c.postfix_dir.display());
    let sm = c.socketmap_socket.display();
    let user = c.sample_account.unwrap_or("user@example.org");
    let start = |unit: &str| {
        if c.config == Path::new(postern_config::DEFAULT_CONFIG_PATH) {
            format!("systemctl start {unit}")
        } else {
            format!(
                "systemctl start {unit} (the unit reads {}: copy {} there first, or run the daemon with --config {})",
                postern_config::DEFAULT_CONFIG_PATH,
                c.config.display(),
                c.config.display()
            )
        }
    };
    vec![
        Step {
            title: "1. authd behind Postfix (SASL and lookup tables)".into(),
            switch: vec![
                start("postern-authd"),
                pc("smtpd_sasl_type = dovecot"),
                pc(&format!("smtpd_sasl_path = {}", c.auth_socket.display())),
                pc(&format!("virtual_mailbox_domains = socketmap:unix:{sm}:domains")),
                pc(&format!("virtual_mailbox_maps = socketmap:unix:{sm}:mailboxes")),
                pc(&format!("virtual_alias_maps = socketmap:unix:{sm}:aliases")),
                reload.clone(),
                "(Postfix's smtpd runs chrooted on Debian: put the sockets under /var/spool/postfix/private, [authd.auth_socket] path, or set the smtpd service's chroot column to n)".into(),
            ],
            verify: vec![
                format!("postmap -q {user} socketmap:unix:{sm}:mailboxes"),
                "log in over SMTP AUTH with an existing password (swaks --auth-user …)".into(),
            ],
            rollback: vec![
                back("smtpd_sasl_type"),
                back("smtpd_sasl_path"),
                back("virtual_mailbox_domains"),
                back("virtual_mailbox_maps"),
                back("virtual_alias_maps"),
                reload.clone(),
                "systemctl stop postern-authd".into(),
            ],
        },
        Step {
            title: "2. lmtp-deliver behind Postfix (delivery into the same Maildirs)".into(),
            switch: vec![
                start("postern-lmtp-deliver"),
                pc(&format!(
                    "virtual_transport = lmtp:unix:{}",
                    c.lmtp_socket.display()
                )),
                reload.clone(),
            ],
            verify: vec![
                format!("swaks --to {user} --server localhost, then read it through Dovecot's IMAP (its dovecot-uidlist is shared)"),
            ],
            rollback: vec![back("virtual_transport"), reload.clone(), "systemctl stop postern-lmtp-deliver".into()],
        },
        Step {
            title: "3. imapd instead of Dovecot (IMAP, POP3, ManageSieve on the same Maildirs)".into(),
            switch: vec![
                "steps 1 and 2 first if Dovecot still serves Postfix's SASL or LMTP".into(),
                "systemctl stop dovecot".into(),
                start("postern-imapd"),
            ],
            verify: vec![format!(
                "log in as {user} with the old password: same folders, same UIDs (clients keep their caches)"
            )],
            rollback: vec![
                "systemctl stop postern-imapd".into(),
                "systemctl start dovecot (it reads the dovecot-uidlist Postern kept up to date)".into(),
            ],
        },
        Step {
            title: "4. smtpd instead of Postfix (ports 25, 587, 465)".into(),
            switch: vec![
                format!("postqueue -c {} -f; wait until `postqueue -c {} -p` says the queue is empty", c.postfix_dir.display(), c.postfix_dir.display()),
                format!("postfix -c {} stop", c.postfix_dir.display()),
                start("postern-smtpd"),
            ],
            verify: vec![
                "mailctl check (DNS, TLS, ports)".into(),
                format!("swaks --to {user} --server localhost:25, and a submission on 587 with AUTH"),
            ],
            rollback: vec![
                "mailctl queue flush; wait until `mailctl queue list` is empty".into(),
                "systemctl stop postern-smtpd".into(),
                format!("postfix -c {} start", c.postfix_dir.display()),
            ],
        },
    ]
}

/// The steps as text.
pub(crate) fn render(steps: &[Step]) -> String {
    let mut out = String::from("\n# Switch steps (each can be switched alone and switched back)\n");
    for s in steps {
        let _ = writeln!(out, "\n## {}\n", s.title);
        for (h, lines) in [
            ("switch", &s.switch),
            ("verify", &s.verify),
            ("rollback", &s.rollback),
        ] {
            let _ = writeln!(out, "{h}:");
            for l in lines {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_the_old_values() {
        let mut old = BTreeMap::new();
        old.insert(
            "virtual_transport".to_owned(),
            "lmtp:unix:private/dovecot-lmtp".to_owned(),
        );
        let s = steps(&Context {
            postfix_dir: Path::new("/etc/postfix"),
            config: Path::new("/etc/postern/postern.toml"),
            auth_socket: Path::new("/run/postern/auth"),
            socketmap_socket: Path::new("/run/postern/socketmap"),
            lmtp_socket: Path::new("/run/postern/lmtp"),
            old: &old,
            sample_account: Some("alice@example.org"),
        });
        assert_eq!(s.len(), 4);
        assert!(
            s[1].switch
                .iter()
                .any(|l| l.contains("virtual_transport = lmtp:unix:/run/postern/lmtp"))
        );
        assert!(
            s[1].rollback
                .iter()
                .any(|l| l.contains("virtual_transport = lmtp:unix:private/dovecot-lmtp"))
        );
        // A parameter that was not set is removed again.
        assert!(
            s[0].rollback
                .iter()
                .any(|l| l.ends_with("-X smtpd_sasl_path"))
        );
        let text = render(&s);
        assert!(text.contains("rollback:"));
    }
}
