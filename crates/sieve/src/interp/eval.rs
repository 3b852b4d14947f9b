//! Evaluating tests: header, address and envelope values, flags, and the match types.

use super::{Interp, Result};
use crate::address::{Address, parse_address_list};
use crate::ast::{AddressPart, Test};
use crate::date::{self, FieldIndex};
use crate::flags;
use crate::matching::{self, MatchKind, MatchSpec, valid_header_name};
use crate::testexpr::ADDRESS_HEADERS;
use crate::variables::Str;

/// The requested part of one parsed address, if it has one.
fn address_part(a: &Address, part: AddressPart) -> Option<String> {
    if a.domain.is_none() && part != AddressPart::All {
        return None;
    }
    let local = a.local_part.as_str();
    match part {
        AddressPart::All => Some(a.addr_spec()),
        AddressPart::LocalPart => Some(local.to_owned()),
        AddressPart::Domain => a.domain.clone(),
        AddressPart::User => Some(local.split_once('+').map_or(local, |(u, _)| u).to_owned()),
        AddressPart::Detail => local.split_once('+').map(|(_, d)| d.to_owned()),
    }
}

/// Parses an address header value (or envelope address) and pushes the parts found. A
/// value that does not parse is matched whole by `:all` only.
fn address_values(raw: &str, part: AddressPart, out: &mut Vec<String>) {
    match parse_address_list(raw) {
        Some(list) => out.extend(list.iter().filter_map(|a| address_part(a, part))),
        None if part == AddressPart::All && !raw.trim().is_empty() => {
            out.push(raw.trim().to_owned())
        }
        None => {}
    }
}

impl Interp<'_> {
    /// Every value of the named headers (with `index`, the selected occurrence of each);
    /// invalid names (from variables) are skipped.
    fn header_values(
        &mut self,
        names: &[String],
        only_addresses: bool,
        index: Option<FieldIndex>,
    ) -> Result<Vec<String>> {
        let mut values = Vec::new();
        for n in names {
            if !valid_header_name(n)
                || only_addresses && !ADDRESS_HEADERS.contains(&n.to_ascii_lowercase().as_str())
            {
                continue;
            }
            let mut fields = self.fields(n)?;
            if let Some(i) = index {
                fields = i.pick(fields);
            }
            for v in fields {
                self.spend(v.len() + 1)?;
                values.push(v);
            }
        }
        Ok(values)
    }

    pub(super) fn test(&mut self, t: &Test) -> Result<bool> {
        self.spend(1)?;
        Ok(match t {
            Test::True => true,
            Test::False => false,
            Test::Not(t) => !self.test(t)?,
            Test::AllOf(ts) => {
                for t in ts {
                    if !self.test(t)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::AnyOf(ts) => {
                for t in ts {
                    if self.test(t)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Address {
                spec,
                part,
                headers,
                keys,
                index,
            } => {
                let names = self.expand_all(headers)?;
                let mut values = Vec::new();
                for raw in self.header_values(&names, true, *index)? {
                    address_values(&raw, *part, &mut values);
                }
                self.matches(spec, &values, keys)?
            }
            Test::Envelope {
                spec,
                part,
                parts,
                keys,
            } => {
                let env = self.ctx.envelope;
                let mut values = Vec::new();
                for p in self.expand_all(parts)? {
                    let addr = match p.to_ascii_lowercase().as_str() {
                        "from" => env.from.as_deref(),
                        "to" => Some(env.to.as_str()),
                        _ => continue,
                    };
                    match addr.map(str::trim).filter(|a| !a.is_empty() && *a != "<>") {
                        // The null reverse-path is the empty string, whatever the part.
                        None => values.push(String::new()),
                        Some(a) => address_values(a, *part, &mut values),
                    }
                }
                self.matches(spec, &values, keys)?
            }
            Test::Header {
                spec,
                headers,
                keys,
                index,
            } => {
                let names = self.expand_all(headers)?;
                let values = self.header_values(&names, false, *index)?;
                self.matches(spec, &values, keys)?
            }
            Test::Body {
                spec,
                raw,
                content,
                keys,
            } => {
                let transform = match (raw, content) {
                    (true, _) => crate::BodyTransform::Raw,
                    (false, None) => crate::BodyTransform::Text,
                    (false, Some(types)) => crate::BodyTransform::Content(self.expand_all(types)?),
                };
                let values = self.ctx.message.body(&transform);
                for v in &values {
                    self.spend(v.len() + 1)?;
                }
                self.matches(spec, &values, keys)?
            }
            Test::Date {
                spec,
                zone,
                header,
                index,
                part,
                keys,
            } => {
                let part = self.expand(part)?;
                let dates = match header {
                    None => vec![date::now_in_zone(self.now, *zone)],
                    Some(h) => {
                        let name = self.expand(h)?;
                        let raw = self.header_values(std::slice::from_ref(&name), false, *index)?;
                        raw.iter()
                            .filter_map(|v| date::parse_field(&name, v))
                            .map(|d| date::in_zone(d, *zone))
                            .collect()
                    }
                };
                let values: Vec<String> =
                    dates.iter().filter_map(|d| date::part(d, &part)).collect();
                // A date part named by a variable that is not one matches nothing.
                if values.is_empty() && !matches!(spec.kind, MatchKind::Count(_)) {
                    false
                } else {
                    self.matches(spec, &values, keys)?
                }
            }
            Test::Exists(names) => {
                let names = self.expand_all(names)?;
                let mut all = true;
                for n in &names {
                    if !valid_header_name(n) || self.fields(n)?.is_empty() {
                        all = false;
                        break;
                    }
                }
                all
            }
            Test::Size { over, limit } => {
                let size = self.ctx.message.size();
                if *over { size > *limit } else { size < *limit }
            }
            Test::String {
                spec,
                sources,
                keys,
            } => {
                let mut values = self.expand_all(sources)?;
                if let MatchKind::Count(_) = spec.kind {
                    values.retain(|v| !v.is_empty());
                }
                self.matches(spec, &values, keys)?
            }
            Test::HasFlag {
                spec,
                variables,
                keys,
            } => {
                let values = match variables {
                    None => self.flags.clone(),
                    Some(names) => flags::parse(names.iter().map(|n| self.vars.get(n))),
                };
                let mut keys = self.expand_all(keys)?;
                if !matches!(spec.kind, MatchKind::Count(_)) {
                    keys = flags::parse(keys.iter().map(String::as_str));
                }
                self.match_strings(spec, &values, &keys)?
            }
            Test::MailboxExists(names) => {
                let names = self.expand_all(names)?;
                names.iter().all(|n| (self.ctx.mailbox_exists)(n))
            }
        })
    }

    fn matches(&mut self, spec: &MatchSpec, values: &[String], keys: &[Str]) -> Result<bool> {
        let keys = self.expand_all(keys)?;
        self.match_strings(spec, values, &keys)
    }

    /// Whether one field value matches some key, as `header` would match it but without
    /// setting the match variables (for `deleteheader`, RFC 5293 §5).
    pub(super) fn value_matches(
        &mut self,
        spec: &MatchSpec,
        value: &str,
        keys: &[String],
    ) -> Result<bool> {
        self.match_values(spec, &[value.to_owned()], keys, false)
    }

    /// True when some value matches some key (values in the outer loop).
    fn match_strings(
        &mut self,
        spec: &MatchSpec,
        values: &[String],
        keys: &[String],
    ) -> Result<bool> {
        self.match_values(spec, values, keys, true)
    }

    /// [`Self::match_strings`]; `capture` sets the `:matches` variables.
    fn match_values(
        &mut self,
        spec: &MatchSpec,
        values: &[String],
        keys: &[String],
        capture: bool,
    ) -> Result<bool> {
        let c = spec.comparator;
        if let MatchKind::Count(op) = spec.kind {
            let n = values.len().to_string();
            return Ok(keys.iter().any(|k| op.holds(c.cmp(&n, k))));
        }
        for v in values {
            for k in keys {
                self.spend(v.len().min(k.len()) + 1)?;
                let hit = match spec.kind {
                    MatchKind::Is => c.eq(v, k),
                    MatchKind::Value(op) => op.holds(c.cmp(v, k)),
                    MatchKind::Contains => matching::contains(c, v, k, &mut self.fuel)
                        .map_err(|e| self.out_of_fuel(e))?,
                    MatchKind::Matches => {
                        match matching::glob(c, k, v, &mut self.fuel)
                            .map_err(|e| self.out_of_fuel(e))?
                        {
                            Some(caps) => {
                                if capture {
                                    self.vars.set_matches(caps);
                                }
                                true
                            }
                            None => false,
                        }
                    }
                    MatchKind::Count(_) => false,
                };
                if hit {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
