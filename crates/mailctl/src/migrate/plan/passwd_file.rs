//! passwd-file accounts and Postfix `hash:` tables, imported into Postern's own SQLite.

use super::*;

impl Builder<'_> {
    pub(super) fn passwd_file_accounts(
        &mut self,
        args: &str,
        userdbs: &[(String, String, Section)],
    ) {
        let (opts, rest) = dovecot::split_args(args);
        let path = rest.last().cloned().unwrap_or_default();
        let scheme = opts
            .iter()
            .find(|(k, _)| k == "scheme")
            .map(|(_, v)| v.to_ascii_uppercase());
        if let Some((_, f)) = opts.iter().find(|(k, _)| k == "username_format")
            && f != "%u"
            && f != "%Lu"
        {
            self.skip(
                "dovecot: passdb passwd-file username_format",
                f,
                "Postern looks accounts up by the whole address",
            );
        }
        let Some(text) = self.file(&path) else {
            self.plan
                .blockers
                .push(format!("Dovecot's passwd-file {path} could not be read"));
            return;
        };
        let entries = dovecot::parse_passwd_file(text);
        self.row(
            "dovecot: passdb passwd-file",
            &path,
            format!(
                "import of {} account(s) into Postern's SQLite, hashes kept",
                entries.len()
            ),
        );
        if let Some(s) = &scheme {
            self.row(
                "dovecot: passwd-file scheme",
                s,
                "[passwords] default_scheme",
            );
            self.plan.default_scheme = Some(s.clone());
        }
        self.userdb_settings(userdbs);
        let default_quota = self.plan.quota_bytes.unwrap_or(0);
        let mut import = Import::default();
        let mut homes = BTreeSet::new();
        let (mut uids, mut gids) = (BTreeSet::new(), BTreeSet::new());
        for e in &entries {
            let Some((local, domain)) = e.user.rsplit_once('@') else {
                self.skip(
                    format!("dovecot: passwd-file {path}"),
                    &e.user,
                    "not an address: Postern's logins are addresses",
                );
                continue;
            };
            let mut hash = e.password.clone();
            if !hash.starts_with('{')
                && !hash.starts_with('$')
                && let Some(s) = &scheme
            {
                hash = format!("{{{s}}}{hash}");
            }
            let quota = e
                .extra
                .iter()
                .find_map(|x| {
                    x.strip_prefix("userdb_quota_rule=")
                        .or_else(|| x.strip_prefix("quota_rule="))
                })
                .and_then(dovecot::quota_rule_storage)
                .unwrap_or(default_quota);
            let scheme_name =
                postern_directory::password::scheme_of(&hash, scheme.as_deref().unwrap_or("CRYPT"))
                    .unwrap_or("unknown")
                    .to_owned();
            if !e.home.is_empty() {
                homes.insert(
                    e.home
                        .replace(&format!("{domain}/{local}"), "%d/%n")
                        .replace(&e.user, "%u"),
                );
            }
            if !e.uid.is_empty() {
                uids.insert(e.uid.clone());
            }
            if !e.gid.is_empty() {
                gids.insert(e.gid.clone());
            }
            let d = domain.to_ascii_lowercase();
            if !import.domains.contains(&d) {
                import.domains.push(d);
            }
            import.accounts.push(ImportAccount {
                address: e.user.to_ascii_lowercase(),
                hash,
                scheme: scheme_name,
                quota_bytes: quota,
            });
        }
        match homes.len() {
            0 => {}
            1 => {
                if let Some(h) = homes.into_iter().next() {
                    self.plan.userdb.home.get_or_insert(h);
                }
            }
            _ => self.plan.blockers.push(format!(
                "the passwd-file's home directories follow no single pattern ({}): Postern uses one template",
                homes.into_iter().collect::<Vec<_>>().join(", ")
            )),
        }
        for (set, user) in [(uids, true), (gids, false)] {
            match set.len() {
                0 => {}
                1 => {
                    let v = set.into_iter().next().unwrap_or_default();
                    let id = self.resolve_id(&v, user);
                    let slot = if user {
                        &mut self.plan.userdb.uid
                    } else {
                        &mut self.plan.userdb.gid
                    };
                    slot.get_or_insert_with(|| id.unwrap_or(0));
                }
                _ => self.plan.blockers.push(format!(
                    "the passwd-file's accounts have different {}s: Postern gives every mailbox one",
                    if user { "uid" } else { "gid" }
                )),
            }
        }
        // Domains and aliases from Postfix's file tables.
        if let Some(v) = self.pf("virtual_mailbox_domains").map(str::to_owned) {
            for d in self.table_keys_or_list(&v, "virtual_mailbox_domains") {
                let d = d.to_ascii_lowercase();
                if !import.domains.contains(&d) {
                    import.domains.push(d);
                }
            }
            self.row("postfix: virtual_mailbox_domains", v, "imported as domains");
        }
        if let Some(v) = self.pf("virtual_alias_domains").map(str::to_owned) {
            for d in self.table_keys_or_list(&v, "virtual_alias_domains") {
                let d = d.to_ascii_lowercase();
                if !import.domains.contains(&d) {
                    import.domains.push(d);
                }
            }
            self.used.insert("virtual_alias_domains".into());
            self.row("postfix: virtual_alias_domains", v, "imported as domains");
        }
        if let Some(v) = self.pf("virtual_alias_maps").map(str::to_owned) {
            for entry in postfix::list(&v) {
                let spec = MapSpec::parse(&entry);
                let Some(src) = spec.as_ref().and_then(MapSpec::text_source) else {
                    self.skip(
                        "postfix: virtual_alias_maps",
                        &entry,
                        "only hash:/texthash: tables are imported next to a passwd-file",
                    );
                    continue;
                };
                let Some(text) = self.file(src) else {
                    self.plan.blockers.push(format!("cannot read {src}"));
                    continue;
                };
                let mut n = 0;
                for (k, val) in postfix::parse_table(text) {
                    let dests: Vec<String> = postfix::list(&val)
                        .into_iter()
                        .filter(|d| !d.eq_ignore_ascii_case(&k))
                        .collect();
                    if !k.contains('@') {
                        self.skip(
                            format!("postfix: virtual_alias_maps {src}"),
                            &k,
                            "a bare local part (or a domain line of a 'sender-style' table) has no equivalent",
                        );
                        continue;
                    }
                    if dests.is_empty() {
                        continue;
                    }
                    n += 1;
                    import.aliases.push((k.to_ascii_lowercase(), dests));
                }
                self.row(
                    "postfix: virtual_alias_maps",
                    &entry,
                    format!("{n} alias(es) imported"),
                );
            }
        }
        if let Some(v) = self.pf("virtual_mailbox_maps").map(str::to_owned) {
            self.row(
                "postfix: virtual_mailbox_maps",
                v,
                "not needed: the mailboxes are the imported accounts",
            );
        }
        import.domains.sort();
        self.plan.database = DatabasePlan::Import(import);
    }

    /// Keys of the `hash:` tables in a domains parameter, or its literal names.
    pub(super) fn table_keys_or_list(&mut self, value: &str, param: &str) -> Vec<String> {
        let mut out = Vec::new();
        for entry in postfix::list(value) {
            if let Some(spec) = MapSpec::parse(&entry) {
                match spec.text_source().and_then(|s| self.file(s)) {
                    Some(text) => {
                        out.extend(postfix::parse_table(text).into_iter().map(|(k, _)| k))
                    }
                    None => self.skip(
                        format!("postfix: {param}"),
                        &entry,
                        "not a readable hash:/texthash: table",
                    ),
                }
            } else if let Some(text) = entry.starts_with('/').then(|| self.file(&entry)).flatten() {
                out.extend(postfix::parse_table(text).into_iter().map(|(k, _)| k));
            } else if !entry.starts_with('/') {
                out.push(entry);
            }
        }
        out
    }
}
