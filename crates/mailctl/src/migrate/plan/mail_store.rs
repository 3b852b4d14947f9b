//! The mail store: Maildir location, quota and Sieve.

use super::*;

impl Builder<'_> {
    pub(super) fn mail_location(&mut self, v: &str, old: &str) {
        let (format, rest) = v.split_once(':').unwrap_or(("maildir", v));
        if format != "maildir" {
            self.plan.blockers.push(format!(
                "{old} = {v}: Postern reads Maildir only; convert first (doveadm sync -u USER maildir:~/Maildir), then migrate"
            ));
            return;
        }
        let mut parts = rest.split(':');
        let path = parts.next().unwrap_or("");
        for opt in parts {
            if opt.starts_with("LAYOUT=") && opt != "LAYOUT=maildir++" {
                self.plan.blockers.push(format!(
                    "{old}: {opt}: Postern reads the Maildir++ layout only"
                ));
            } else if !opt.is_empty() {
                self.skip(
                    old,
                    opt,
                    "Dovecot's own index/control location: Postern keeps its files in the Maildir",
                );
            }
        }
        let path = match path.strip_prefix("~/") {
            Some(r) => format!("%h/{r}"),
            None => path.to_owned(),
        };
        match dovecot::translate_vars(&path) {
            Ok(p) => {
                self.row(old, v, "[authd.userdb] mail");
                self.plan.userdb.mail = Some(p);
            }
            Err(e) => self.plan.blockers.push(format!("{old} = {v}: {}", e.0)),
        }
    }

    /// `key` as Dovecot reads it from the `plugin { }` sections: the last one setting it
    /// wins; with `top`, a top-level setting counts too, below every section.
    fn plugin_setting(&self, key: &str, top: bool) -> Option<String> {
        let mut plugins = Vec::new();
        if top {
            plugins.push(&self.inputs.dovecot);
        }
        self.inputs.dovecot.all_sections("plugin", &mut plugins);
        plugins
            .iter()
            .rev()
            .find_map(|p| p.get(key))
            .map(str::to_owned)
    }

    pub(super) fn mail_store_quota(&mut self) {
        if let Some(q) = self.plugin_setting("quota", true) {
            if !q.starts_with("maildir") {
                self.skip(
                    "dovecot: quota",
                    &q,
                    "Postern keeps quota usage in maildirsize (Dovecot's maildir backend); usage is recounted from the files",
                );
            } else {
                self.row("dovecot: quota", &q, "Postern's maildirsize (same format)");
            }
        }
        if let Some(r) = self.plugin_setting("quota_rule", true) {
            match dovecot::quota_rule_storage(&r) {
                Some(b) => {
                    self.row(
                        "dovecot: quota_rule",
                        &r,
                        format!("quota of every account: {b} bytes"),
                    );
                    self.plan.quota_bytes = Some(b);
                }
                None => self.skip(
                    "dovecot: quota_rule",
                    r,
                    "no storage limit Postern can read",
                ),
            }
        }
    }

    pub(super) fn mail_store(&mut self) {
        if let Some(v) = self.inputs.dovecot.get("mail_location").map(str::to_owned)
            && self.plan.userdb.mail.is_none()
        {
            self.mail_location(&v, "dovecot: mail_location");
        }
        // `%h` in the mail template: put the home template in.
        if let Some(m) = self.plan.userdb.mail.clone() {
            if m.contains("%h") {
                match &self.plan.userdb.home {
                    Some(h) => self.plan.userdb.mail = Some(m.replace("%h", h)),
                    None => {
                        self.plan.blockers.push(format!(
                            "mail_location is relative to the home directory ({m}) but no home template was found"
                        ));
                        self.plan.userdb.mail = None;
                    }
                }
            }
            if let Some(m) = &mut self.plan.userdb.mail {
                *m = format!("maildir:{m}");
            }
        }
        let root_of = |t: &str| {
            let fixed = t.split('%').next().unwrap_or("");
            let fixed = fixed.strip_prefix("maildir:").unwrap_or(fixed);
            let root = fixed.trim_end_matches('/');
            (!root.is_empty() && root.starts_with('/')).then(|| root.to_owned())
        };
        self.plan.userdb.mail_root = self
            .plan
            .userdb
            .home
            .as_deref()
            .and_then(root_of)
            .or_else(|| self.plan.userdb.mail.as_deref().and_then(root_of));
        if let Some(v) = self.inputs.dovecot.get("first_valid_uid") {
            let v = v.to_owned();
            let ok = match (v.parse::<u32>(), self.plan.userdb.uid) {
                (Ok(min), Some(uid)) => uid >= min,
                _ => true,
            };
            if ok {
                self.row(
                    "dovecot: first_valid_uid",
                    v,
                    "not needed: every mailbox has [authd.userdb] uid",
                );
            } else {
                self.plan
                    .blockers
                    .push(format!("the mail uid is below first_valid_uid = {v}"));
            }
        }
        // Sieve.
        if let Some(s) = self.plugin_setting("sieve", false) {
            let (dir, active) = match s.strip_prefix("file:") {
                Some(r) => {
                    let mut parts = r.split(';');
                    let dir = parts.next().unwrap_or("").to_owned();
                    let active = parts
                        .find_map(|p| p.strip_prefix("active="))
                        .map(str::to_owned);
                    (Some(dir), active)
                }
                None => (self.plugin_setting("sieve_dir", false), Some(s.clone())),
            };
            match active.as_deref().map(|a| a.replacen("~/", "%h/", 1)) {
                Some(a) => match dovecot::translate_vars(&a) {
                    Ok(t) => {
                        self.row("dovecot: sieve", &s, format!("[lmtp] sieve_script = {t}"));
                        if t != "%h/.dovecot.sieve" {
                            self.plan.sieve_script = Some(t);
                        }
                    }
                    Err(e) => self.skip("dovecot: sieve", &s, e.0),
                },
                None => self.skip(
                    "dovecot: sieve",
                    &s,
                    "no active script named: Postern's default %h/.dovecot.sieve applies",
                ),
            }
            if let Some(d) = dir
                && !d.is_empty()
                && d != "~/sieve"
            {
                self.skip(
                    "dovecot: sieve script directory",
                    d,
                    "ManageSieve keeps scripts in ~/sieve: move them there",
                );
            }
        }
        for k in [
            "sieve_before",
            "sieve_after",
            "sieve_global",
            "sieve_default",
            "sieve_extensions",
        ] {
            if let Some(v) = self.plugin_setting(k, false) {
                self.skip(
                    format!("dovecot: {k}"),
                    v,
                    "global Sieve scripts and extension lists have no equivalent",
                );
            }
        }
    }
}
