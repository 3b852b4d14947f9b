//! RFC 5229 variables: string templates with `${name}` / `${N}` references, `set`
//! modifiers, the variable store with its limits, and RFC 5228 section 2.4.2.4
//! encoded characters (`${hex:..}`, `${unicode:..}`).

use std::collections::HashMap;

use crate::limits::{MAX_VARIABLE_NAME, MAX_VARIABLE_VALUE};
use crate::matching::{Fuel, OutOfFuel};

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Lit(String),
    /// A named variable, lower-cased.
    Var(String),
    /// A match variable `${N}`.
    Match(usize),
}

/// A string argument: a constant, or a template expanded at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Str {
    Lit(String),
    Tpl(Vec<Seg>),
}

impl Str {
    /// The value when it is a constant.
    pub(crate) fn literal(&self) -> Option<&str> {
        match self {
            Self::Lit(s) => Some(s),
            Self::Tpl(_) => None,
        }
    }
}

/// `identifier = (ALPHA / "_") *(ALPHA / DIGIT / "_")`.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Splits a string into a template. Malformed references stay literal text; a reference to
/// a namespace (`${ns.name}`) is an error since no namespace is supported.
pub(crate) fn parse_template(s: &str) -> Result<Str, String> {
    if !s.contains("${") {
        return Ok(Str::Lit(s.to_owned()));
    }
    let mut segs = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        lit.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let inner_len = after
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
            .unwrap_or(after.len());
        let inner = &after[..inner_len];
        let closed = after.as_bytes().get(inner_len) == Some(&b'}');
        let seg = if !closed || inner.is_empty() {
            None
        } else if inner.bytes().all(|b| b.is_ascii_digit()) {
            let n = inner.trim_start_matches('0');
            Some(Seg::Match(if n.len() > 6 {
                usize::MAX
            } else {
                n.parse().unwrap_or(0)
            }))
        } else if inner.split('.').all(is_identifier) && inner.contains('.') {
            return Err(format!("unknown variable namespace in '${{{inner}}}'"));
        } else if is_identifier(inner) {
            if inner.len() > MAX_VARIABLE_NAME {
                return Err(format!(
                    "variable name too long (limit {MAX_VARIABLE_NAME})"
                ));
            }
            Some(Seg::Var(inner.to_ascii_lowercase()))
        } else {
            None
        };
        match seg {
            Some(seg) => {
                if !lit.is_empty() {
                    segs.push(Seg::Lit(std::mem::take(&mut lit)));
                }
                segs.push(seg);
                rest = &after[inner_len + 1..];
            }
            None => {
                lit.push('$');
                rest = &rest[at + 1..];
            }
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        segs.push(Seg::Lit(lit));
    }
    Ok(Str::Tpl(segs))
}

/// Replaces `${hex:..}` and `${unicode:..}` (case-insensitive prefixes). Malformed
/// encodings stay as they are; well-formed ones giving invalid UTF-8 or invalid code
/// points are errors.
pub(crate) fn decode_encoded(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let lower: String = after
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let (kind, skip) = if lower.starts_with("hex:") {
            (Some(true), 4)
        } else if lower.starts_with("unicode:") {
            (Some(false), 8)
        } else {
            (None, 0)
        };
        let decoded = match (kind, after[skip..].find('}')) {
            (Some(hex), Some(close)) => {
                decode_units(&after[skip..skip + close], hex)?.map(|d| (d, skip + close + 1))
            }
            _ => None,
        };
        match decoded {
            Some((text, used)) => {
                out.push_str(&text);
                rest = &after[used..];
            }
            None => {
                out.push('$');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn decode_units(body: &str, hex: bool) -> Result<Option<String>, String> {
    let units: Vec<&str> = body
        .split([' ', '\t', '\r', '\n'])
        .filter(|u| !u.is_empty())
        .collect();
    let well_formed = !units.is_empty()
        && units
            .iter()
            .all(|u| u.bytes().all(|b| b.is_ascii_hexdigit()) && (!hex || u.len() <= 2));
    if !well_formed {
        return Ok(None);
    }
    if hex {
        let bytes: Vec<u8> = units
            .iter()
            .filter_map(|u| u8::from_str_radix(u, 16).ok())
            .collect();
        return String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "encoded characters are not valid UTF-8".to_owned());
    }
    let mut out = String::new();
    for u in units {
        let digits = u.trim_start_matches('0');
        let cp = if digits.len() > 6 {
            None
        } else {
            u32::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16).ok()
        };
        match cp.and_then(char::from_u32) {
            Some(c) => out.push(c),
            None => return Err(format!("invalid Unicode code point U+{u}")),
        }
    }
    Ok(Some(out))
}

/// A `set` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Modifier {
    Lower,
    Upper,
    LowerFirst,
    UpperFirst,
    QuoteWildcard,
    Length,
}

impl Modifier {
    pub(crate) fn from_tag(tag: &str) -> Option<Self> {
        Some(match tag {
            "lower" => Self::Lower,
            "upper" => Self::Upper,
            "lowerfirst" => Self::LowerFirst,
            "upperfirst" => Self::UpperFirst,
            "quotewildcard" => Self::QuoteWildcard,
            "length" => Self::Length,
            _ => return None,
        })
    }

    /// RFC 5229 section 4.1: higher precedence is applied first.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            Self::Lower | Self::Upper => 40,
            Self::LowerFirst | Self::UpperFirst => 30,
            Self::QuoteWildcard => 20,
            Self::Length => 10,
        }
    }

    pub(crate) fn apply(self, s: &str) -> String {
        let first = |upper: bool| {
            let mut chars = s.chars();
            match chars.next() {
                Some(c) if upper => c.to_uppercase().chain(chars).collect(),
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        };
        match self {
            Self::Lower => s.to_lowercase(),
            Self::Upper => s.to_uppercase(),
            Self::LowerFirst => first(false),
            Self::UpperFirst => first(true),
            Self::QuoteWildcard => {
                let mut out = String::with_capacity(s.len());
                for c in s.chars() {
                    if matches!(c, '*' | '?' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out
            }
            Self::Length => s.chars().count().to_string(),
        }
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The variables of one execution.
#[derive(Debug, Default)]
pub(crate) struct Vars {
    named: HashMap<String, String>,
    matches: Vec<String>,
}

impl Vars {
    /// Value of a (lower-cased) variable; unset variables are empty.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.named.get(name).map_or("", String::as_str)
    }

    pub(crate) fn set(&mut self, name: &str, mut value: String) {
        truncate(&mut value, MAX_VARIABLE_VALUE);
        self.named.insert(name.to_owned(), value);
    }

    /// Replaces the match variables after a successful `:matches`.
    pub(crate) fn set_matches(&mut self, mut values: Vec<String>) {
        for v in &mut values {
            truncate(v, MAX_VARIABLE_VALUE);
        }
        self.matches = values;
    }

    pub(crate) fn expand(&self, s: &Str, fuel: &mut Fuel) -> Result<String, OutOfFuel> {
        match s {
            Str::Lit(s) => {
                fuel.spend(s.len())?;
                Ok(s.clone())
            }
            Str::Tpl(segs) => {
                let mut out = String::new();
                for seg in segs {
                    let piece = match seg {
                        Seg::Lit(s) => s.as_str(),
                        Seg::Var(name) => self.get(name),
                        Seg::Match(n) => self.matches.get(*n).map_or("", String::as_str),
                    };
                    fuel.spend(piece.len() + 1)?;
                    out.push_str(piece);
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Seg {
        Seg::Lit(s.into())
    }

    #[test]
    fn templates() {
        assert_eq!(parse_template("plain"), Ok(Str::Lit("plain".into())));
        assert_eq!(
            parse_template("a${Foo}b${1}${00}"),
            Ok(Str::Tpl(vec![
                lit("a"),
                Seg::Var("foo".into()),
                lit("b"),
                Seg::Match(1),
                Seg::Match(0)
            ]))
        );
        assert_eq!(
            parse_template("${a${b}}"),
            Ok(Str::Tpl(vec![lit("${a"), Seg::Var("b".into()), lit("}")]))
        );
        assert_eq!(
            parse_template("${}${ x}${1a}$"),
            Ok(Str::Tpl(vec![lit("${}${ x}${1a}$")]))
        );
        assert!(parse_template("${env.x}").is_err());
        assert!(parse_template(&format!("${{{}}}", "a".repeat(100))).is_err());
    }

    #[test]
    fn encoded() {
        assert_eq!(
            decode_encoded("${hex:40 41}${unicode:263a}x"),
            Ok("@A\u{263a}x".into())
        );
        assert_eq!(
            decode_encoded("${HEX: 4 }${hex:4142}${hex:}"),
            Ok("\u{4}${hex:4142}${hex:}".into())
        );
        assert!(decode_encoded("${hex:ff}").is_err());
        assert!(decode_encoded("${unicode:d800}").is_err());
        assert!(decode_encoded("${unicode:110000}").is_err());
    }

    #[test]
    fn modifiers() {
        assert_eq!(
            Modifier::UpperFirst.apply(&Modifier::Lower.apply("juLIET")),
            "Juliet"
        );
        assert_eq!(Modifier::QuoteWildcard.apply("a*b?c\\"), "a\\*b\\?c\\\\");
        assert_eq!(Modifier::Length.apply("héllo"), "5");
        let mut s = "é".repeat(3000);
        truncate(&mut s, MAX_VARIABLE_VALUE);
        assert_eq!(s.len(), 4000);
    }
}
