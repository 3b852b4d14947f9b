//! Outbound mail: relayhost and its SASL login, transports, outbound TLS.

use super::*;

impl Builder<'_> {
    pub(super) fn outbound(&mut self) {
        self.used.extend(
            [
                "relayhost",
                "transport_maps",
                "smtp_tls_security_level",
                "smtp_sasl_password_maps",
                "smtp_tls_policy_maps",
            ]
            .map(String::from),
        );
        if let Some(r) = self.pf("relayhost").map(str::to_owned) {
            match postfix::next_hop(&r) {
                Some(h) => {
                    let note = if h.mx {
                        " (Postfix looked up its MX records; Postern connects to the name itself)"
                    } else {
                        ""
                    };
                    self.row(
                        "postfix: relayhost",
                        &r,
                        format!("[smtpd] relayhost = {}{note}", h.host_port),
                    );
                    self.plan.smtpd.relayhost = Some(h.host_port.clone());
                    self.relay_auth(&r, &h.host_port);
                }
                None => self.skip("postfix: relayhost", r, "not a host[:port] Postern can use"),
            }
        }
        if let Some(v) = self.pf("smtp_tls_security_level").map(str::to_owned) {
            let (policy, note) = match v.as_str() {
                "none" | "may" | "encrypt" | "verify" => (Some(v.clone()), String::new()),
                "secure" => (
                    Some("verify".into()),
                    " (verify: the name is checked)".into(),
                ),
                "dane" => (
                    Some("may".into()),
                    " (may, with [smtpd] dane = \"auto\", the default)".into(),
                ),
                _ => (None, String::new()),
            };
            match policy {
                Some(p) => {
                    self.row(
                        "postfix: smtp_tls_security_level",
                        &v,
                        format!("[smtpd] outbound_tls = \"{p}\"{note}"),
                    );
                    self.plan.smtpd.outbound_tls = Some(p);
                }
                None => self.skip("postfix: smtp_tls_security_level", v, "no equivalent level"),
            }
        }
        // Postern sends a relay password only over a verified certificate by default; a
        // Postfix that required TLS without verifying it keeps working with "encrypt".
        if self.plan.smtpd.relayhost_auth_user.is_some()
            && self.plan.smtpd.outbound_tls.as_deref() == Some("encrypt")
        {
            self.plan.smtpd.relayhost_tls = Some("encrypt".into());
        }
        for (param, kind) in [
            ("transport_maps", "transport"),
            ("smtp_tls_policy_maps", "policy"),
        ] {
            let Some(v) = self.pf(param).map(str::to_owned) else {
                continue;
            };
            for entry in postfix::list(&v) {
                let Some(text) = self.table_text(param, &entry) else {
                    continue;
                };
                for (k, val) in postfix::parse_table(&text) {
                    let old = format!("postfix: {param} {entry}");
                    if k.starts_with('.') || k == "*" || k.contains('@') {
                        self.skip(
                            old,
                            format!("{k} {val}"),
                            "only whole domains are routed (a default route is [smtpd] relayhost)",
                        );
                        continue;
                    }
                    let dom = k.to_ascii_lowercase();
                    if kind == "transport" {
                        match transport(&val) {
                            Some(t) => {
                                self.row(
                                    old,
                                    format!("{k} {val}"),
                                    format!("[smtpd.transports] \"{dom}\" = \"{t}\""),
                                );
                                self.plan.smtpd.transports.insert(dom, t);
                            }
                            None => self.skip(
                                old,
                                format!("{k} {val}"),
                                "only smtp:[host]:port and lmtp: routes have an equivalent",
                            ),
                        }
                    } else {
                        let level = val.split_whitespace().next().unwrap_or("");
                        let p = match level {
                            "none" | "may" | "encrypt" | "verify" => level,
                            "secure" => "verify",
                            _ => {
                                self.skip(old, format!("{k} {val}"), "no equivalent level");
                                continue;
                            }
                        };
                        self.row(
                            old,
                            format!("{k} {val}"),
                            format!("[smtpd.tls_policy] \"{dom}\" = \"{p}\""),
                        );
                        self.plan.smtpd.tls_policy.insert(dom, p.to_owned());
                    }
                }
            }
        }
    }

    /// The text of the table `entry` (`hash:/etc/postfix/x`) of the Postfix list `param`;
    /// `None`, with a not-carried row, when it is no readable hash:/texthash: table.
    fn table_text(&mut self, param: &str, entry: &str) -> Option<String> {
        let text = MapSpec::parse(entry)
            .and_then(|s| s.text_source().map(str::to_owned))
            .and_then(|p| self.file(&p).map(str::to_owned));
        if text.is_none() {
            self.skip(
                format!("postfix: {param}"),
                entry,
                "only readable hash:/texthash: tables are carried",
            );
        }
        text
    }

    pub(super) fn relay_auth(&mut self, relayhost: &str, host_port: &str) {
        let Some(v) = self.pf("smtp_sasl_password_maps").map(str::to_owned) else {
            return;
        };
        if self.pf("smtp_sasl_auth_enable") != Some("yes") {
            self.skip(
                "postfix: smtp_sasl_password_maps",
                v,
                "smtp_sasl_auth_enable is not yes: Postfix does not use it",
            );
            return;
        }
        let bare = relayhost
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or("")
            .to_owned();
        for entry in postfix::list(&v) {
            let Some(text) = self.table_text("smtp_sasl_password_maps", &entry) else {
                continue;
            };
            let found = postfix::parse_table(&text)
                .into_iter()
                .find(|(k, _)| k == relayhost || *k == bare);
            if let Some((_, cred)) = found
                && let Some((user, pass)) = cred.split_once(':')
            {
                self.row(
                    "postfix: smtp_sasl_password_maps",
                    format!("{entry} ({relayhost} {user}:…)"),
                    format!("[smtpd] relayhost_auth_user = {user}, relayhost_password_file (written by apply); relayhost_tls = \"verify\" for {host_port} unless the provider's certificate does not verify"),
                );
                self.plan.smtpd.relayhost_auth_user = Some(user.to_owned());
                self.plan.smtpd.relayhost_password = Some(pass.to_owned());
                return;
            }
        }
        self.skip(
            "postfix: smtp_sasl_password_maps",
            v,
            "no entry for the relayhost",
        );
    }
}

/// A transport table value as a Postern transport.
pub(super) fn transport(v: &str) -> Option<String> {
    let (kind, hop) = v.trim().split_once(':')?;
    match kind {
        "smtp" | "relay" => {
            let h = postfix::next_hop(hop)?;
            Some(format!("smtp:{}", h.host_port))
        }
        "lmtp" => {
            if let Some(p) = hop.strip_prefix("unix:") {
                return p.starts_with('/').then(|| format!("lmtp:unix:{p}"));
            }
            let hop = hop.strip_prefix("inet:").unwrap_or(hop);
            let h = postfix::next_hop(hop)?;
            Some(format!("lmtp:{}", h.host_port))
        }
        _ => None,
    }
}
