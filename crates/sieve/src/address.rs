//! A small RFC 5322 address-list parser: display names, quoted strings, comments, groups,
//! angle addresses (with obsolete routes) and domain literals. Lenient enough for header
//! tests; [`parse_mailbox`] is the strict form used to check `redirect` targets.

/// One mailbox from an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The display name (phrase), unquoted; `None` when absent.
    pub display_name: Option<String>,
    /// The local part, unquoted (`"john doe"@x` gives `john doe`). Empty for `<>`.
    pub local_part: String,
    /// The domain, without the `@`; `None` for a bare local part.
    pub domain: Option<String>,
}

impl Address {
    /// `local@domain`, the local part re-quoted when it is not a dot-atom.
    pub fn addr_spec(&self) -> String {
        let local = if self.local_part.is_empty() || is_dot_atom(&self.local_part) {
            self.local_part.clone()
        } else {
            let mut q = String::from("\"");
            for c in self.local_part.chars() {
                if c == '"' || c == '\\' {
                    q.push('\\');
                }
                q.push(c);
            }
            q.push('"');
            q
        };
        match &self.domain {
            Some(d) => format!("{local}@{d}"),
            None => local,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An atom (dots included) or a quoted string (unquoted).
    Word(String),
    /// `[...]`, brackets included.
    Literal(String),
    /// One of `< > @ , : ;`.
    Special(char),
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(is_atext))
}

fn tokenize(input: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => {
                let mut depth = 1usize;
                while depth > 0 {
                    match chars.next()? {
                        '\\' => {
                            chars.next()?;
                        }
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                }
            }
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => s.push(chars.next()?),
                        '\r' | '\n' => {}
                        c => s.push(c),
                    }
                }
                out.push(Tok::Word(s));
            }
            '[' => {
                let mut s = String::from("[");
                loop {
                    match chars.next()? {
                        ']' => break,
                        '\\' => s.push(chars.next()?),
                        c => s.push(c),
                    }
                }
                s.push(']');
                out.push(Tok::Literal(s));
            }
            '<' | '>' | '@' | ',' | ':' | ';' => out.push(Tok::Special(c)),
            c => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "()<>@,:;\"[".contains(n) {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(Tok::Word(s));
            }
        }
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
    /// No groups, and local part and domain must each be one word.
    strict: bool,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn special(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Special(c))
    }

    /// Words (and literals) up to the next special.
    fn words(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Tok::Word(w) | Tok::Literal(w)) = self.peek() {
            out.push(w.clone());
            self.i += 1;
        }
        out
    }

    /// One address; a group's members are all pushed.
    fn address(&mut self, out: &mut Vec<Address>, in_group: bool) -> Option<()> {
        let phrase = self.words();
        let display = (!phrase.is_empty()).then(|| phrase.join(" "));
        match self.peek() {
            Some(Tok::Special('<')) => {
                self.i += 1;
                let mut a = self.angle()?;
                a.display_name = display;
                out.push(a);
            }
            Some(Tok::Special(':')) if !in_group && !self.strict => {
                self.i += 1;
                loop {
                    while self.special(',') {
                        self.i += 1;
                    }
                    if self.special(';') {
                        self.i += 1;
                        break;
                    }
                    if self.peek().is_none() {
                        break;
                    }
                    self.address(out, true)?;
                    if !(self.special(',') || self.special(';') || self.peek().is_none()) {
                        return None;
                    }
                }
            }
            Some(Tok::Special('@')) if !phrase.is_empty() => {
                self.i += 1;
                let local = self.joined(phrase)?;
                let domain = self.domain()?;
                out.push(Address {
                    display_name: None,
                    local_part: local,
                    domain: Some(domain),
                });
            }
            None | Some(Tok::Special(',' | ';')) if !phrase.is_empty() => {
                out.push(Address {
                    display_name: None,
                    local_part: phrase.concat(),
                    domain: None,
                });
            }
            _ => return None,
        }
        Some(())
    }

    /// Local-part or domain words, concatenated (obsolete syntax allows spaces between
    /// the dot-separated pieces; strict mode does not).
    fn joined(&self, words: Vec<String>) -> Option<String> {
        if self.strict && words.len() != 1 {
            return None;
        }
        Some(words.concat())
    }

    fn domain(&mut self) -> Option<String> {
        let words = self.words();
        let d = self.joined(words)?;
        (!d.is_empty()).then_some(d)
    }

    /// After `<`: `[@route,@route:] local@domain >`, or `<>`.
    fn angle(&mut self) -> Option<Address> {
        if self.special('@') {
            while !self.special(':') {
                self.i += 1;
                self.peek()?;
            }
            self.i += 1;
        }
        let local = self.words();
        let local = if local.is_empty() {
            String::new()
        } else {
            self.joined(local)?
        };
        let domain = if self.special('@') {
            self.i += 1;
            Some(self.domain()?)
        } else {
            None
        };
        if !self.special('>') {
            return None;
        }
        self.i += 1;
        Some(Address {
            display_name: None,
            local_part: local,
            domain,
        })
    }
}

/// Parses an address list (the body of `To:`, `From:` ...). `None` when it is malformed.
/// Group members are returned in place of the group; an empty group gives nothing.
pub fn parse_address_list(input: &str) -> Option<Vec<Address>> {
    parse(input, false)
}

fn parse(input: &str, strict: bool) -> Option<Vec<Address>> {
    let mut p = Parser {
        toks: tokenize(input)?,
        i: 0,
        strict,
    };
    let mut out = Vec::new();
    loop {
        while p.special(',') {
            p.i += 1;
        }
        if p.peek().is_none() {
            return Some(out);
        }
        p.address(&mut out, false)?;
        if !(p.special(',') || p.peek().is_none()) {
            return None;
        }
    }
}

/// Parses exactly one mailbox (`local@domain`, optionally with a display name and angle
/// brackets) with a valid local part and domain. For `redirect` targets.
pub fn parse_mailbox(input: &str) -> Option<Address> {
    if input.chars().any(char::is_control) {
        return None;
    }
    let mut list = parse(input, true)?;
    if list.len() != 1 {
        return None;
    }
    let a = list.pop()?;
    let domain = a.domain.as_deref()?;
    let domain_ok = is_dot_atom(domain)
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        || (domain.starts_with('[') && domain.len() > 2);
    let local_ok = !a.local_part.is_empty() && a.local_part.chars().all(|c| !c.is_control());
    (domain_ok && local_ok).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &str) -> Vec<String> {
        parse_address_list(s)
            .unwrap_or_default()
            .iter()
            .map(Address::addr_spec)
            .collect()
    }

    #[test]
    fn address_lists() {
        assert_eq!(specs("a@b.c"), ["a@b.c"]);
        assert_eq!(
            specs("\"Doe, John\" <john@x.org>, (c) jane@y.org (home)"),
            ["john@x.org", "jane@y.org"]
        );
        assert_eq!(specs("Team: a@x, B <b@y>;, c@z"), ["a@x", "b@y", "c@z"]);
        assert_eq!(specs("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(specs("<@r1,@r2:u@h>"), ["u@h"]);
        assert_eq!(specs("\"john doe\"@x.org"), ["\"john doe\"@x.org"]);
        assert_eq!(specs("MAILER-DAEMON"), ["MAILER-DAEMON"]);
        assert_eq!(specs("<>"), [""]);
        assert_eq!(specs("u@[192.0.2.1]"), ["u@[192.0.2.1]"]);
        let a = parse_address_list("John Q. Public <JQP@x.org>").unwrap_or_default();
        assert_eq!(a[0].display_name.as_deref(), Some("John Q. Public"));
        assert_eq!(
            (a[0].local_part.as_str(), a[0].domain.as_deref()),
            ("JQP", Some("x.org"))
        );
        assert!(parse_address_list("a@b <c").is_none());
        assert!(parse_address_list("(unclosed").is_none());
        assert!(parse_address_list("a@").is_none());
    }

    #[test]
    fn mailboxes() {
        assert!(parse_mailbox("user@example.com").is_some());
        assert!(parse_mailbox("User <user@example.com>").is_some());
        assert!(parse_mailbox("user").is_none());
        assert!(parse_mailbox("a@x, b@y").is_none());
        assert!(parse_mailbox("@example.com").is_none());
        assert!(parse_mailbox("user@exa mple.com").is_none());
        assert!(parse_mailbox("user@ex_ample.com").is_none());
        assert!(parse_mailbox("g: a@x;").is_none());
        assert!(parse_mailbox("").is_none());
    }
}
