//! OpenDKIM's signing and key tables.

use super::*;

impl Builder<'_> {
    pub(super) fn dkim(&mut self) {
        let Some(o) = self.inputs.opendkim.clone() else {
            return;
        };
        if let (Some(domain), Some(selector), Some(key)) =
            (o.get("Domain"), o.get("Selector"), o.get("KeyFile"))
        {
            for d in postfix::list(domain) {
                self.row(
                    "opendkim: Domain/Selector/KeyFile",
                    format!("{d} {selector} {key}"),
                    "key copied into [dkim] key_dir",
                );
                self.plan.dkim.push(DkimPlan {
                    domain: d.to_ascii_lowercase(),
                    selector: selector.clone(),
                    key_file: key.clone(),
                });
            }
        }
        let (Some(kt), Some(st)) = (o.get("KeyTable"), o.get("SigningTable")) else {
            return;
        };
        let (Some(keys), Some(signing)) = (self.file(table_path(kt)), self.file(table_path(st)))
        else {
            self.plan
                .blockers
                .push("opendkim KeyTable/SigningTable could not be read".into());
            return;
        };
        let keys: BTreeMap<String, String> = postfix::parse_table(keys).into_iter().collect();
        for (pattern, keyname) in postfix::parse_table(signing) {
            let from = pattern
                .trim_start_matches("*@")
                .trim_start_matches('@')
                .to_ascii_lowercase();
            let Some(entry) = keys.get(&keyname) else {
                self.skip(
                    "opendkim: SigningTable",
                    format!("{pattern} {keyname}"),
                    "names no KeyTable entry",
                );
                continue;
            };
            let mut f = entry.splitn(3, ':');
            let (Some(d), Some(sel), Some(file)) = (f.next(), f.next(), f.next()) else {
                self.skip("opendkim: KeyTable", entry, "not domain:selector:keyfile");
                continue;
            };
            let d = d.to_ascii_lowercase();
            if from.contains('*') || from.contains('@') || from != d {
                self.skip(
                    "opendkim: SigningTable",
                    format!("{pattern} {keyname}"),
                    "Postern signs mail from a domain with that domain's own keys (d= is the From: domain)",
                );
                continue;
            }
            let plan = DkimPlan {
                domain: d,
                selector: sel.to_owned(),
                key_file: file.to_owned(),
            };
            if !self.plan.dkim.contains(&plan) {
                self.row(
                    "opendkim: KeyTable/SigningTable",
                    format!("{pattern} {sel} {file}"),
                    format!("[dkim] key_dir/{}/{sel}.key (same selector)", plan.domain),
                );
                self.plan.dkim.push(plan);
            }
        }
    }
}
