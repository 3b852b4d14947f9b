//! Dovecot's passdb/userdb: where the accounts are, and the userdb settings (uid, gid, home,
//! mail).

use super::*;

impl Builder<'_> {
    /// Domains, accounts and aliases: the old SQL database through queries, or an import.
    pub(super) fn accounts(&mut self) {
        self.used
            .extend(MAP_PARAMS[..4].iter().map(|s| (*s).to_owned()));
        self.mail_store_quota();
        let passdbs = self.dovecot_dbs("passdb");
        let userdbs = self.dovecot_dbs("userdb");
        let sql_passdb = passdbs.iter().find(|(d, _, _)| d == "sql").cloned();
        let file_passdb = passdbs.iter().find(|(d, _, _)| d == "passwd-file").cloned();
        for (driver, args, _) in &passdbs {
            if !matches!(driver.as_str(), "sql" | "passwd-file") {
                self.skip(
                    "dovecot: passdb",
                    format!("driver = {driver} {args}"),
                    "only sql and passwd-file password databases are carried (pam/system users have no equivalent)",
                );
            }
        }
        if let Some((_, args, _)) = sql_passdb {
            self.sql_accounts(&args, &userdbs);
        } else if let Some((_, args, _)) = file_passdb {
            self.passwd_file_accounts(&args, &userdbs);
        } else {
            self.plan.blockers.push(
                "no sql or passwd-file passdb found in Dovecot's configuration: there are no accounts to carry over".into(),
            );
        }
    }

    /// `(driver, args, section)` of each passdb/userdb.
    pub(super) fn dovecot_dbs(&self, kind: &str) -> Vec<(String, String, Section)> {
        let mut found = Vec::new();
        self.inputs.dovecot.all_sections(kind, &mut found);
        found
            .into_iter()
            .map(|s| {
                (
                    s.get("driver").unwrap_or("").to_owned(),
                    s.get("args").unwrap_or("").to_owned(),
                    s.clone(),
                )
            })
            .collect()
    }

    pub(super) fn user_query(&mut self, uq: &str) {
        let Some((items, _)) = dovecot::split_select(uq) else {
            self.skip(
                "dovecot: user_query",
                uq,
                "not a SELECT Postern can read: home and mail come from [authd.userdb]",
            );
            return;
        };
        for it in items {
            let c = dovecot::constant(&it.expr);
            match (it.name.as_str(), c) {
                ("uid", Some(v)) => self.plan.userdb.uid = self.resolve_id(&v, true),
                ("gid", Some(v)) => self.plan.userdb.gid = self.resolve_id(&v, false),
                ("home", Some(v)) => match dovecot::translate_vars(&v) {
                    Ok(h) => self.plan.userdb.home = Some(h),
                    Err(e) => self.skip("dovecot: user_query home", v, e.0),
                },
                ("mail", Some(v)) => self.mail_location(&v, "dovecot: user_query mail"),
                (name, None) if ["uid", "gid", "home", "mail"].contains(&name) => self.skip(
                    format!("dovecot: user_query {name}"),
                    &it.expr,
                    "computed per user in SQL: Postern uses one template for every account (migrate check compares the paths)",
                ),
                (name, _) if name.starts_with("quota") || name.ends_with("quota_rule") => {
                    self.skip(
                        format!("dovecot: user_query {name}"),
                        &it.expr,
                        "per-user quota rules have no equivalent in a custom account query: one quota for all (or import into Postern's schema)",
                    );
                }
                _ => {}
            }
        }
        self.row(
            "dovecot: user_query",
            uq,
            "[authd.userdb] uid/gid/home/mail where constant",
        );
    }

    pub(super) fn resolve_id(&mut self, v: &str, user: bool) -> Option<u32> {
        if let Ok(n) = v.parse() {
            return Some(n);
        }
        let map = if user {
            &self.inputs.uid_of
        } else {
            &self.inputs.gid_of
        };
        let id = map.get(v).copied();
        if id.is_none() {
            self.plan.blockers.push(format!(
                "{} {v:?} does not exist on this system",
                if user { "user" } else { "group" }
            ));
        }
        id
    }

    /// Userdb static args and default_fields/override_fields, mail_uid/mail_gid.
    pub(super) fn userdb_settings(&mut self, userdbs: &[(String, String, Section)]) {
        for (driver, args, section) in userdbs {
            match driver.as_str() {
                "static" => self.userdb_fields(args, "dovecot: userdb static"),
                "prefetch" | "sql" | "passwd-file" => {}
                other => self.skip(
                    "dovecot: userdb",
                    format!("driver = {other}"),
                    "no equivalent: Postern's userdb answers from its account database",
                ),
            }
            for key in ["default_fields", "override_fields"] {
                if let Some(f) = section.get(key) {
                    self.userdb_fields(f, &format!("dovecot: userdb {key}"));
                }
            }
        }
        for (key, user) in [("mail_uid", true), ("mail_gid", false)] {
            if let Some(v) = self.inputs.dovecot.get(key).filter(|v| !v.is_empty()) {
                let v = v.to_owned();
                let id = self.resolve_id(&v, user);
                let slot = if user {
                    &mut self.plan.userdb.uid
                } else {
                    &mut self.plan.userdb.gid
                };
                if slot.is_none() {
                    *slot = id;
                }
                self.row(
                    format!("dovecot: {key}"),
                    v,
                    format!("[authd.userdb] {}", if user { "uid" } else { "gid" }),
                );
            }
        }
    }

    /// `uid=… gid=… home=… mail=…` fields of a userdb.
    pub(super) fn userdb_fields(&mut self, fields: &str, label: &str) {
        let (opts, _) = dovecot::split_args(fields);
        for (k, v) in opts {
            match k.as_str() {
                "uid" => self.plan.userdb.uid = self.resolve_id(&v, true),
                "gid" => self.plan.userdb.gid = self.resolve_id(&v, false),
                "home" => match dovecot::translate_vars(&v) {
                    Ok(h) => self.plan.userdb.home = Some(h),
                    Err(e) => self.skip(format!("{label} home"), v, e.0),
                },
                "mail" => self.mail_location(&v, &format!("{label} mail")),
                "allow_all_users" | "username_format" => {}
                other => self.skip(
                    format!("{label} {other}"),
                    v,
                    "no equivalent in [authd.userdb]",
                ),
            }
        }
        self.row(label, fields, "[authd.userdb] uid/gid/home/mail");
    }
}
