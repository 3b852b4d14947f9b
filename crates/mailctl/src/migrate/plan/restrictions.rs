//! Postfix's smtpd restrictions, postscreen DNSBLs and access tables.

use super::*;

impl Builder<'_> {
    pub(super) fn restrictions(&mut self) {
        let mut rbl_reject = false;
        for list in RESTRICTION_LISTS {
            let Some(v) = self.pf(list).map(str::to_owned) else {
                continue;
            };
            self.used.insert((*list).to_owned());
            let tokens = postfix::list(&v);
            let mut i = 0;
            while i < tokens.len() {
                let t = tokens[i].as_str();
                let arg = tokens.get(i + 1).cloned();
                i += 1;
                let old = format!("postfix: {list}");
                match t {
                    _ if BUILT_IN_RESTRICTIONS.contains(&t) => {}
                    "reject_rbl_client"
                    | "reject_rhsbl_sender"
                    | "reject_rhsbl_client"
                    | "reject_rhsbl_helo"
                    | "reject_rhsbl_reverse_client" => {
                        i += 1;
                        let zone = arg.unwrap_or_default();
                        let zone = zone.split('=').next().unwrap_or("").to_owned();
                        if t == "reject_rbl_client" {
                            rbl_reject = true;
                            if !self.plan.checks.dnsbl_zones.contains(&zone) {
                                self.plan.checks.dnsbl_zones.push(zone.clone());
                            }
                            self.row(
                                old,
                                format!("{t} {zone}"),
                                "[checks] dnsbl_zones, dnsbl = \"reject\"",
                            );
                        } else if t == "reject_rhsbl_sender" {
                            if !self.plan.checks.dbl_zones.contains(&zone) {
                                self.plan.checks.dbl_zones.push(zone.clone());
                            }
                            self.row(old, format!("{t} {zone}"), "[checks] dbl_zones");
                        } else {
                            self.skip(old, format!("{t} {zone}"), "Postern checks the sender domain (dbl_zones) and the client IP (dnsbl_zones) only");
                        }
                    }
                    "reject_unknown_helo_hostname"
                    | "reject_invalid_helo_hostname"
                    | "reject_non_fqdn_helo_hostname" => {
                        self.plan.checks.helo = Some("reject".into());
                        let note = if t == "reject_unknown_helo_hostname" {
                            "[checks] helo = \"reject\" (invalid names, bare IPs and our own name; a name without DNS records is not refused)"
                        } else {
                            "[checks] helo = \"reject\""
                        };
                        self.row(old, t, note);
                    }
                    "reject_unknown_client_hostname" | "reject_unknown_reverse_client_hostname" => {
                        self.plan.checks.require_fcrdns = true;
                        self.plan.checks.helo.get_or_insert_with(|| "reject".into());
                        self.row(old, t, "[checks] require_fcrdns = true");
                    }
                    "check_client_access"
                    | "check_sender_access"
                    | "check_recipient_access"
                    | "check_helo_access" => {
                        i += 1;
                        let map = arg.unwrap_or_default();
                        self.access_map(&old, t, &map);
                    }
                    "check_policy_service" => {
                        i += 1;
                        self.skip(old, format!("{t} {}", arg.unwrap_or_default()), "policy services have no equivalent (a greylisting one: [checks] greylist = true)");
                    }
                    _ if t.starts_with("check_")
                        || t == "reject_rbl"
                        || t.starts_with("warn_if") =>
                    {
                        i += 1;
                        self.skip(
                            old,
                            format!("{t} {}", arg.unwrap_or_default()),
                            "no equivalent",
                        );
                    }
                    _ => self.skip(old, t, "no equivalent restriction in Postern"),
                }
            }
        }
        if rbl_reject {
            self.plan.checks.dnsbl = Some("reject".into());
        }
        // postscreen.
        let postscreen = self
            .inputs
            .master
            .iter()
            .any(|(_, _, cmd)| cmd == "postscreen");
        self.used.extend(
            [
                "postscreen_dnsbl_sites",
                "postscreen_dnsbl_action",
                "postscreen_dnsbl_threshold",
            ]
            .map(String::from),
        );
        if postscreen && let Some(sites) = self.pf("postscreen_dnsbl_sites").map(str::to_owned) {
            for s in postfix::list(&sites) {
                let zone = s.split(['=', '*']).next().unwrap_or("").to_owned();
                if !zone.is_empty() && !self.plan.checks.dnsbl_zones.contains(&zone) {
                    self.plan.checks.dnsbl_zones.push(zone);
                }
            }
            let action = self
                .pf("postscreen_dnsbl_action")
                .unwrap_or("ignore")
                .to_owned();
            let mode = if action == "ignore" { "tag" } else { "reject" };
            if self.plan.checks.dnsbl.is_none() || mode == "reject" {
                self.plan.checks.dnsbl = Some(mode.into());
            }
            self.row(
                "postfix: postscreen_dnsbl_sites",
                &sites,
                format!("[checks] dnsbl_zones, dnsbl = \"{mode}\" (postscreen_dnsbl_action = {action}; weights, reply filters and the threshold are not carried: any listing counts)"),
            );
        }
        if postscreen {
            self.skip(
                "postfix: master.cf smtp inet … postscreen",
                "postscreen",
                "its other tests (pregreet, pipelining, bare newline) map only in part: [checks] greet_pause_ms, [smtpd] reject_bare_newline",
            );
        }
    }

    pub(super) fn access_map(&mut self, old: &str, check: &str, map: &str) {
        let Some(spec) = MapSpec::parse(map) else {
            self.skip(
                old.to_owned(),
                format!("{check} {map}"),
                "not a lookup table",
            );
            return;
        };
        let path = if spec.kind == "cidr" {
            Some(spec.arg.as_str())
        } else {
            spec.text_source()
        };
        let Some(text) = path.and_then(|p| self.file(p)) else {
            self.skip(
                old.to_owned(),
                format!("{check} {map}"),
                "only readable hash:/texthash:/cidr: access tables are carried",
            );
            return;
        };
        let mut n = 0;
        for (key, value) in postfix::parse_table(text) {
            let (action, rest) = value
                .split_once(char::is_whitespace)
                .map_or((value.as_str(), ""), |(a, r)| (a, r.trim()));
            let text = (!rest.is_empty()).then(|| rest.to_owned());
            let act = match action.to_ascii_uppercase().as_str() {
                "OK" | "PERMIT" => Some(("OK", None)),
                "REJECT" => Some(("REJECT", text)),
                "DISCARD" => Some(("DISCARD", None)),
                "HOLD" => Some(("HOLD", None)),
                a if a.len() == 3
                    && a.starts_with('5')
                    && a.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Some(("REJECT", text))
                }
                _ => None,
            };
            let Some((action, text)) = act else {
                self.skip(
                    format!("postfix: {check} {map}"),
                    format!("{key} {value}"),
                    "only OK, REJECT (5xx), DISCARD and HOLD actions are carried",
                );
                continue;
            };
            let mut rules = Vec::new();
            let base = AccessPlan {
                action: action.into(),
                text,
                ..AccessPlan::default()
            };
            match check {
                "check_client_access" => {
                    let net = postfix::network(&key).or_else(|| octet_prefix(&key));
                    match net {
                        Some(n) => rules.push(AccessPlan {
                            client: Some(n),
                            ..base
                        }),
                        None => {
                            self.skip(
                                format!("postfix: {check} {map}"),
                                &key,
                                "client host names are not matched by Postern's access rules (networks only)",
                            );
                            continue;
                        }
                    }
                }
                "check_helo_access" => {
                    let name = key.trim_start_matches('.').to_ascii_lowercase();
                    if !key.starts_with('.') {
                        rules.push(AccessPlan {
                            helo: Some(name.clone()),
                            ..base.clone()
                        });
                    }
                    rules.push(AccessPlan {
                        helo: Some(format!("*.{name}")),
                        ..base
                    });
                }
                _ => {
                    if key.ends_with('@') {
                        self.skip(
                            format!("postfix: {check} {map}"),
                            &key,
                            "local-part keys (user@) have no equivalent",
                        );
                        continue;
                    }
                    let k = key.trim_start_matches('.').to_ascii_lowercase();
                    let (sender, recipient) = if check == "check_sender_access" {
                        (Some(k), None)
                    } else {
                        (None, Some(k))
                    };
                    rules.push(AccessPlan {
                        sender,
                        recipient,
                        ..base
                    });
                }
            }
            n += rules.len();
            self.plan.smtpd.access.extend(rules);
        }
        self.row(
            old.to_owned(),
            format!("{check} {map}"),
            format!("{n} [[smtpd.access]] rule(s)"),
        );
    }
}

/// `192.168.1` (Postfix's octet prefix in access tables) as a network.
pub(super) fn octet_prefix(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() >= 4 || parts.iter().any(|p| p.parse::<u8>().is_err()) {
        return None;
    }
    let mut octets = parts.clone();
    while octets.len() < 4 {
        octets.push("0");
    }
    Some(format!("{}/{}", octets.join("."), parts.len() * 8))
}
