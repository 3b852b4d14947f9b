//! Checking tests: `address`, `envelope`, `header`, `exists`, `size`, `true`, `false`,
//! `not`, `allof`, `anyof`, and the extension tests `string` (RFC 5229), `hasflag`
//! (RFC 5232) and `mailboxexists` (RFC 5490); plus the shared `:comparator`, match-type
//! and address-part tags.

use crate::CompileError;
use crate::args::Args;
use crate::ast::{AddressPart, Pos, RawTest, Test};
use crate::date::{DATE_PARTS, DateZone, FieldIndex, parse_zone};
use crate::lexer::error;
use crate::matching::{Comparator, MatchKind, MatchSpec, RelOp, valid_header_name};
use crate::validate::Validator;
use crate::variables::Str;

type Result<T> = std::result::Result<T, CompileError>;

/// Header fields the `address` test accepts (RFC 5228 section 5.1: only fields that hold
/// addresses).
pub(crate) const ADDRESS_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "sender",
    "reply-to",
    "resent-from",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "resent-sender",
    "resent-reply-to",
    "return-path",
    "delivered-to",
    "envelope-to",
    "x-original-to",
    "x-envelope-to",
    "errors-to",
    "mail-followup-to",
    "mail-reply-to",
    "disposition-notification-to",
    "apparently-to",
    "original-recipient",
];

/// Tags some tests take besides the match tags: `:index`/`:last` (RFC 5260 §6) and
/// `:zone`/`:originalzone` (RFC 5260 §4).
#[derive(Default)]
struct Extra {
    index_ok: bool,
    zone_ok: bool,
    original_ok: bool,
    index: Option<u64>,
    last: bool,
    zone: Option<DateZone>,
    /// `body`: `:raw`, `:content`, `:text`.
    body_ok: bool,
    body: Option<(bool, Option<Vec<Str>>)>,
    /// `:index`/`:last` belong to the command (`deleteheader`, RFC 5293), not to `index`.
    index_free: bool,
}

impl Extra {
    fn indexed() -> Self {
        Self {
            index_ok: true,
            ..Self::default()
        }
    }

    fn field_index(&self) -> Option<FieldIndex> {
        self.index.map(|n| FieldIndex { n, last: self.last })
    }
}

impl Validator {
    /// Comparator, match type and (when `with_part`) address part tags, and `extra`'s.
    fn match_tags(
        &mut self,
        a: &mut Args,
        pos: Pos,
        with_part: bool,
        extra: &mut Extra,
    ) -> Result<(MatchSpec, AddressPart)> {
        let (mut comparator, mut kind, mut part) = (None, None, None);
        while let Some((tag, tpos)) = a.tag()? {
            match tag.as_str() {
                "index" if extra.index_ok => {
                    if !extra.index_free {
                        self.need("index", tpos, ":index")?;
                    }
                    let n = a.number("a field number")?;
                    if n == 0 {
                        return Err(error(tpos, ":index counts from 1"));
                    }
                    extra.index = Some(n);
                    continue;
                }
                "last" if extra.index_ok => {
                    if !extra.index_free {
                        self.need("index", tpos, ":last")?;
                    }
                    extra.last = true;
                    continue;
                }
                "raw" | "content" | "text" if extra.body_ok => {
                    if extra.body.is_some() {
                        return Err(error(tpos, "only one of :raw, :content and :text"));
                    }
                    extra.body = Some(match tag.as_str() {
                        "raw" => (true, None),
                        "text" => (false, None),
                        _ => {
                            let (types, cpos) = a.string_list("a list of content types")?;
                            (false, Some(self.strings(types, cpos)?))
                        }
                    });
                    continue;
                }
                "zone" | "originalzone" if extra.zone_ok => {
                    if extra.zone.is_some() {
                        return Err(error(tpos, "only one of :zone and :originalzone"));
                    }
                    if tag == "originalzone" {
                        if !extra.original_ok {
                            return Err(a.unknown_tag(&tag, tpos));
                        }
                        extra.zone = Some(DateZone::Original);
                    } else {
                        let (z, zpos) = a.string("a time zone (\"+hhmm\")")?;
                        let min = parse_zone(&z).ok_or_else(|| {
                            error(zpos, format!("invalid time zone \"{z}\" (use \"+hhmm\")"))
                        })?;
                        extra.zone = Some(DateZone::Offset(min));
                    }
                    continue;
                }
                _ => {}
            }
            let mut set_kind = |k: MatchKind| {
                if kind.replace(k).is_some() {
                    return Err(error(tpos, "only one match type may be given"));
                }
                Ok(())
            };
            match tag.as_str() {
                "is" => set_kind(MatchKind::Is)?,
                "contains" => set_kind(MatchKind::Contains)?,
                "matches" => set_kind(MatchKind::Matches)?,
                "count" | "value" => {
                    self.need("relational", tpos, &format!(":{tag}"))?;
                    let (op, opos) = a.string("a relational operator (\"gt\", \"ge\", ...)")?;
                    let op = RelOp::parse(&op).ok_or_else(|| {
                        error(opos, format!("unknown relational operator \"{op}\""))
                    })?;
                    set_kind(if tag == "count" {
                        MatchKind::Count(op)
                    } else {
                        MatchKind::Value(op)
                    })?;
                }
                "comparator" => {
                    let (name, npos) = a.string("a comparator name")?;
                    let c = Comparator::from_name(&name)
                        .ok_or_else(|| error(npos, format!("unsupported comparator \"{name}\"")))?;
                    if let Some(cap) = c.capability() {
                        self.need(cap, npos, &format!("comparator \"{name}\""))?;
                    }
                    comparator = Some(c);
                }
                "all" | "localpart" | "domain" | "user" | "detail" if with_part => {
                    if matches!(tag.as_str(), "user" | "detail") {
                        self.need("subaddress", tpos, &format!(":{tag}"))?;
                    }
                    let p = match tag.as_str() {
                        "all" => AddressPart::All,
                        "localpart" => AddressPart::LocalPart,
                        "domain" => AddressPart::Domain,
                        "user" => AddressPart::User,
                        _ => AddressPart::Detail,
                    };
                    if part.replace(p).is_some() {
                        return Err(error(tpos, "only one address part may be given"));
                    }
                }
                _ => return Err(a.unknown_tag(&tag, tpos)),
            }
        }
        if extra.last && extra.index.is_none() {
            return Err(error(pos, ":last needs :index"));
        }
        let comparator = comparator.unwrap_or(Comparator::AsciiCasemap);
        let kind = kind.unwrap_or(MatchKind::Is);
        if comparator == Comparator::AsciiNumeric
            && matches!(kind, MatchKind::Contains | MatchKind::Matches)
        {
            return Err(error(
                pos,
                "comparator i;ascii-numeric supports only :is, :count and :value",
            ));
        }
        Ok((
            MatchSpec { comparator, kind },
            part.unwrap_or(AddressPart::All),
        ))
    }

    fn list(&self, a: &mut Args, what: &str) -> Result<(Vec<Str>, Pos)> {
        let (list, pos) = a.string_list(what)?;
        Ok((self.strings(list, pos)?, pos))
    }

    /// The tags of `deleteheader` (RFC 5293 §5): `:index`/`:last`, comparator, match type.
    pub(crate) fn deleteheader_tags(
        &mut self,
        a: &mut Args,
        pos: Pos,
    ) -> Result<(MatchSpec, Option<FieldIndex>)> {
        let mut extra = Extra {
            index_ok: true,
            index_free: true,
            ..Extra::default()
        };
        let (spec, _) = self.match_tags(a, pos, false, &mut extra)?;
        if let MatchKind::Count(_) = spec.kind {
            return Err(error(pos, "deleteheader: :count is not supported"));
        }
        Ok((spec, extra.field_index()))
    }

    /// Header names must be valid field names when they are constants.
    fn header_names(&self, a: &mut Args, only_addresses: bool) -> Result<Vec<Str>> {
        let (names, pos) = self.list(a, "a list of header names")?;
        for n in names.iter().filter_map(Str::literal) {
            if !valid_header_name(n) {
                return Err(error(pos, format!("invalid header name \"{n}\"")));
            }
            if only_addresses && !ADDRESS_HEADERS.contains(&n.to_ascii_lowercase().as_str()) {
                return Err(error(
                    pos,
                    format!("address test: header \"{n}\" does not hold addresses"),
                ));
            }
        }
        Ok(names)
    }

    /// Checks one test.
    pub(crate) fn test(&mut self, t: RawTest) -> Result<Test> {
        let RawTest {
            name,
            pos,
            args,
            tests,
        } = t;
        let mut a = Args::new(&name, pos, args);
        if !matches!(name.as_str(), "not" | "allof" | "anyof") && !tests.is_empty() {
            return Err(error(pos, format!("'{name}' does not take nested tests")));
        }
        let test = match name.as_str() {
            "true" => Test::True,
            "false" => Test::False,
            "not" | "allof" | "anyof" => {
                if name == "not" && tests.len() != 1 {
                    return Err(error(pos, "'not' takes exactly one test"));
                }
                if tests.is_empty() {
                    return Err(error(pos, format!("'{name}' needs a list of tests")));
                }
                let mut checked = tests
                    .into_iter()
                    .map(|t| self.test(t))
                    .collect::<Result<Vec<_>>>()?;
                match name.as_str() {
                    "allof" => Test::AllOf(checked),
                    "anyof" => Test::AnyOf(checked),
                    _ => Test::Not(Box::new(checked.pop().unwrap_or(Test::False))),
                }
            }
            "address" => {
                let mut extra = Extra::indexed();
                let (spec, part) = self.match_tags(&mut a, pos, true, &mut extra)?;
                let headers = self.header_names(&mut a, true)?;
                let keys = self.list(&mut a, "a key list")?.0;
                Test::Address {
                    spec,
                    part,
                    headers,
                    keys,
                    index: extra.field_index(),
                }
            }
            "envelope" => {
                self.need("envelope", pos, "'envelope'")?;
                let (spec, part) = self.match_tags(&mut a, pos, true, &mut Extra::default())?;
                let (parts, ppos) = self.list(&mut a, "a list of envelope parts")?;
                if let Some(p) = parts
                    .iter()
                    .filter_map(Str::literal)
                    .find(|p| !matches!(p.to_ascii_lowercase().as_str(), "from" | "to"))
                {
                    return Err(error(
                        ppos,
                        format!("unsupported envelope part \"{p}\" (use \"from\" or \"to\")"),
                    ));
                }
                let keys = self.list(&mut a, "a key list")?.0;
                Test::Envelope {
                    spec,
                    part,
                    parts,
                    keys,
                }
            }
            "header" => {
                let mut extra = Extra::indexed();
                let (spec, _) = self.match_tags(&mut a, pos, false, &mut extra)?;
                let headers = self.header_names(&mut a, false)?;
                let keys = self.list(&mut a, "a key list")?.0;
                Test::Header {
                    spec,
                    headers,
                    keys,
                    index: extra.field_index(),
                }
            }
            "body" => {
                self.need("body", pos, "'body'")?;
                let mut extra = Extra {
                    body_ok: true,
                    ..Extra::default()
                };
                let (spec, _) = self.match_tags(&mut a, pos, false, &mut extra)?;
                let keys = self.list(&mut a, "a key list")?.0;
                let (raw, content) = extra.body.unwrap_or((false, None));
                Test::Body {
                    spec,
                    raw,
                    content,
                    keys,
                }
            }
            "date" | "currentdate" => {
                self.need("date", pos, &format!("'{name}'"))?;
                let current = name == "currentdate";
                let mut extra = Extra {
                    index_ok: !current,
                    zone_ok: true,
                    original_ok: !current,
                    ..Extra::default()
                };
                let (spec, _) = self.match_tags(&mut a, pos, false, &mut extra)?;
                let header = if current {
                    None
                } else {
                    let (h, hpos) = a.string("a header name")?;
                    if !h.contains('$') && !valid_header_name(&h) {
                        return Err(error(hpos, format!("invalid header name \"{h}\"")));
                    }
                    Some(self.string(h, hpos)?)
                };
                let (p, ppos) = a.string("a date part (\"date\", \"time\", ...)")?;
                let part = self.string(p, ppos)?;
                if let Some(l) = part.literal()
                    && !DATE_PARTS.contains(&l.to_ascii_lowercase().as_str())
                {
                    return Err(error(ppos, format!("unknown date part \"{l}\"")));
                }
                let keys = self.list(&mut a, "a key list")?.0;
                Test::Date {
                    spec,
                    zone: extra.zone.unwrap_or(DateZone::Local),
                    header,
                    index: extra.field_index(),
                    part,
                    keys,
                }
            }
            "string" => {
                self.need("variables", pos, "'string'")?;
                let (spec, _) = self.match_tags(&mut a, pos, false, &mut Extra::default())?;
                let sources = self.list(&mut a, "a list of source strings")?.0;
                let keys = self.list(&mut a, "a key list")?.0;
                Test::String {
                    spec,
                    sources,
                    keys,
                }
            }
            "hasflag" => {
                self.need("imap4flags", pos, "'hasflag'")?;
                let (spec, _) = self.match_tags(&mut a, pos, false, &mut Extra::default())?;
                let variables = if a.remaining() >= 2 {
                    let (names, npos) = a.string_list("a list of variable names")?;
                    self.need("variables", npos, "a flag variable")?;
                    Some(
                        names
                            .iter()
                            .map(|n| self.variable_name(n, npos))
                            .collect::<Result<Vec<_>>>()?,
                    )
                } else {
                    None
                };
                let keys = self.list(&mut a, "a list of flags")?.0;
                Test::HasFlag {
                    spec,
                    variables,
                    keys,
                }
            }
            "exists" => Test::Exists(self.header_names(&mut a, false)?),
            "mailboxexists" => {
                self.need("mailbox", pos, "'mailboxexists'")?;
                Test::MailboxExists(self.list(&mut a, "a list of mailbox names")?.0)
            }
            "size" => {
                let over = match a.tag()? {
                    Some((t, _)) if t == "over" => true,
                    Some((t, _)) if t == "under" => false,
                    Some((t, tpos)) => return Err(a.unknown_tag(&t, tpos)),
                    None => return Err(error(pos, "size: expected :over or :under")),
                };
                Test::Size {
                    over,
                    limit: a.number("a size limit")?,
                }
            }
            _ => return Err(error(pos, format!("unknown test '{name}'"))),
        };
        a.finish()?;
        Ok(test)
    }
}
