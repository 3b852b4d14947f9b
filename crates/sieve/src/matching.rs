//! Comparators (RFC 4790: `i;octet`, `i;ascii-casemap`, `i;ascii-numeric`), match types
//! (`:is`, `:contains`, `:matches`; RFC 5231 `:count` / `:value`) and the work budget.
//!
//! `:matches` uses the two-pointer glob algorithm that only ever backtracks to the most
//! recent `*`: O(pattern × text) in the worst case, never exponential. It yields the
//! leftmost-shortest assignment of the wildcards, which RFC 5229's examples expect for
//! the match variables.

use std::cmp::Ordering;

/// A comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparator {
    Octet,
    AsciiCasemap,
    AsciiNumeric,
}

impl Comparator {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "i;octet" => Some(Self::Octet),
            "i;ascii-casemap" => Some(Self::AsciiCasemap),
            "i;ascii-numeric" => Some(Self::AsciiNumeric),
            _ => None,
        }
    }

    /// The capability a script must require to use this comparator, if any.
    pub(crate) fn capability(self) -> Option<&'static str> {
        match self {
            Self::Octet | Self::AsciiCasemap => None,
            Self::AsciiNumeric => Some("comparator-i;ascii-numeric"),
        }
    }

    fn char_eq(self, a: char, b: char) -> bool {
        match self {
            Self::AsciiCasemap => a.eq_ignore_ascii_case(&b),
            Self::Octet | Self::AsciiNumeric => a == b,
        }
    }

    /// Equality as the comparator defines it.
    pub(crate) fn eq(self, a: &str, b: &str) -> bool {
        match self {
            Self::Octet => a == b,
            Self::AsciiCasemap => a.eq_ignore_ascii_case(b),
            Self::AsciiNumeric => numeric_cmp(a, b) == Ordering::Equal,
        }
    }

    /// Ordering as the comparator defines it.
    pub(crate) fn cmp(self, a: &str, b: &str) -> Ordering {
        match self {
            Self::Octet => a.as_bytes().cmp(b.as_bytes()),
            Self::AsciiCasemap => {
                let up = |s: &str| {
                    s.bytes()
                        .map(|b| b.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                };
                up(a).cmp(&up(b))
            }
            Self::AsciiNumeric => numeric_cmp(a, b),
        }
    }
}

/// `i;ascii-numeric`: the value of the leading digits; a string without leading digits
/// is positive infinity (equal to any other such string).
fn numeric_cmp(a: &str, b: &str) -> Ordering {
    fn digits(s: &str) -> Option<&str> {
        let end = s
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(s.len());
        if end == 0 {
            None
        } else {
            Some(s[..end].trim_start_matches('0'))
        }
    }
    match (digits(a), digits(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
    }
}

/// A relational operator (RFC 5231).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl RelOp {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "gt" => Some(Self::Gt),
            "ge" => Some(Self::Ge),
            "lt" => Some(Self::Lt),
            "le" => Some(Self::Le),
            "eq" => Some(Self::Eq),
            "ne" => Some(Self::Ne),
            _ => None,
        }
    }

    pub(crate) fn holds(self, o: Ordering) -> bool {
        match self {
            Self::Gt => o == Ordering::Greater,
            Self::Ge => o != Ordering::Less,
            Self::Lt => o == Ordering::Less,
            Self::Le => o != Ordering::Greater,
            Self::Eq => o == Ordering::Equal,
            Self::Ne => o != Ordering::Equal,
        }
    }
}

/// A match type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchKind {
    Is,
    Contains,
    Matches,
    Count(RelOp),
    Value(RelOp),
}

/// A match type with its comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MatchSpec {
    pub(crate) comparator: Comparator,
    pub(crate) kind: MatchKind,
}

/// The work budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfFuel;

/// A work budget: roughly, characters looked at.
#[derive(Debug)]
pub(crate) struct Fuel(u64);

impl Fuel {
    pub(crate) fn new(units: u64) -> Self {
        Self(units)
    }

    pub(crate) fn spend(&mut self, units: usize) -> Result<(), OutOfFuel> {
        let units = u64::try_from(units).unwrap_or(u64::MAX);
        self.0 = self.0.checked_sub(units).ok_or(OutOfFuel)?;
        Ok(())
    }
}

/// `:contains`: is `needle` a substring of `hay` under the comparator.
pub(crate) fn contains(
    c: Comparator,
    hay: &str,
    needle: &str,
    fuel: &mut Fuel,
) -> Result<bool, OutOfFuel> {
    fuel.spend(hay.len() + needle.len())?;
    Ok(match c {
        Comparator::AsciiCasemap => hay
            .to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase()),
        Comparator::Octet | Comparator::AsciiNumeric => hay.contains(needle),
    })
}

#[derive(Debug, Clone, Copy)]
enum Pat {
    Star,
    One,
    Lit(char),
}

fn compile_pattern(pattern: &str) -> Vec<Pat> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Pat::Star,
            '?' => Pat::One,
            '\\' => Pat::Lit(chars.next().unwrap_or('\\')),
            c => Pat::Lit(c),
        });
    }
    out
}

/// `:matches`: on success, the match variables: `${0}` the whole text, then one entry per
/// wildcard, in pattern order.
pub(crate) fn glob(
    c: Comparator,
    pattern: &str,
    text: &str,
    fuel: &mut Fuel,
) -> Result<Option<Vec<String>>, OutOfFuel> {
    let pat = compile_pattern(pattern);
    let txt: Vec<char> = text.chars().collect();
    fuel.spend(pat.len() + txt.len())?;
    // Captures: (start, end) in `txt` for each wildcard passed so far.
    let mut caps: Vec<(usize, usize)> = Vec::new();
    // The most recent star: (its index in `pat`, its capture index, its current end).
    let mut star: Option<(usize, usize, usize)> = None;
    let (mut pi, mut ti) = (0, 0);
    loop {
        fuel.spend(1)?;
        match pat.get(pi) {
            Some(Pat::Star) if pi + 1 == pat.len() => {
                caps.push((ti, txt.len()));
                break;
            }
            Some(Pat::Star) => {
                star = Some((pi, caps.len(), ti));
                caps.push((ti, ti));
                pi += 1;
                continue;
            }
            Some(Pat::One) if ti < txt.len() => {
                caps.push((ti, ti + 1));
                pi += 1;
                ti += 1;
                continue;
            }
            Some(Pat::Lit(p)) if ti < txt.len() && c.char_eq(*p, txt[ti]) => {
                pi += 1;
                ti += 1;
                continue;
            }
            None if ti == txt.len() => break,
            _ => {}
        }
        // Mismatch: let the most recent star take one more character.
        let Some((spi, cap, end)) = star else {
            return Ok(None);
        };
        if end >= txt.len() {
            return Ok(None);
        }
        let end = end + 1;
        star = Some((spi, cap, end));
        caps.truncate(cap + 1);
        caps[cap].1 = end;
        pi = spi + 1;
        ti = end;
    }
    let mut out = Vec::with_capacity(caps.len() + 1);
    out.push(text.to_owned());
    out.extend(
        caps.into_iter()
            .map(|(s, e)| txt[s..e].iter().collect::<String>()),
    );
    Ok(Some(out))
}

/// Is `name` a syntactically valid header field name (printable ASCII, no colon).
pub(crate) fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, t: &str) -> Option<Vec<String>> {
        glob(Comparator::AsciiCasemap, p, t, &mut Fuel::new(1_000_000)).unwrap_or(None)
    }

    #[test]
    fn glob_basics() {
        assert!(g("*", "").is_some());
        assert!(g("a?c", "ABC").is_some());
        assert!(g("a?c", "ac").is_none());
        assert!(g("*.com", "x.example.com").is_some());
        assert!(g("\\*x", "*x").is_some());
        assert!(g("\\*x", "ax").is_none());
        assert!(g("a\\?", "a?").is_some());
        assert!(g("a\\?", "ab").is_none());
        assert!(g("", "").is_some());
        assert!(g("", "x").is_none());
        assert!(g("**a", "a").is_some());
        assert_eq!(
            g("*<*@*", "Foo <foo@bar.com>"),
            Some(vec![
                "Foo <foo@bar.com>".into(),
                "Foo ".into(),
                "foo".into(),
                "bar.com>".into()
            ])
        );
        assert_eq!(
            g("[*] *", "[acme-users] [fwd] version 1.0 is out"),
            Some(vec![
                "[acme-users] [fwd] version 1.0 is out".into(),
                "acme-users".into(),
                "[fwd] version 1.0 is out".into()
            ])
        );
        assert_eq!(
            g("coyote@**.com", "coyote@ACME.Example.COM").map(|v| v[1..].to_vec()),
            Some(vec![String::new(), "ACME.Example".into()])
        );
        assert!(
            glob(Comparator::Octet, "A*", "abc", &mut Fuel::new(100))
                .ok()
                .flatten()
                .is_none()
        );
    }

    #[test]
    fn glob_pathological_is_bounded() {
        let text = "a".repeat(100_000);
        let mut fuel = Fuel::new(crate::limits::MAX_WORK);
        assert_eq!(
            glob(Comparator::AsciiCasemap, "*a*a*a*a*a*b", &text, &mut fuel),
            Ok(None)
        );
    }

    #[test]
    fn numeric() {
        let n = Comparator::AsciiNumeric;
        assert_eq!(n.cmp("10", "9"), Ordering::Greater);
        assert_eq!(n.cmp("007", "7"), Ordering::Equal);
        assert_eq!(n.cmp("abc", "99999"), Ordering::Greater);
        assert_eq!(n.cmp("x", "y"), Ordering::Equal);
        assert_eq!(n.cmp("12abc", "12"), Ordering::Equal);
        assert_eq!(Comparator::AsciiCasemap.cmp("abc", "ABD"), Ordering::Less);
        assert!(RelOp::Ge.holds(Ordering::Equal));
        assert!(!RelOp::Ne.holds(Ordering::Equal));
    }
}
