//! RFC 5322 address lists as IMAP needs them: raw display names (encoded words kept), source
//! routes, local parts without quoting, domains, and groups. Lenient like Dovecot: a comment
//! after a bare addr-spec is the name, a missing local part or domain becomes
//! `MISSING_MAILBOX` / `MISSING_DOMAIN`.

use crate::mime::{MISSING_DOMAIN, MISSING_MAILBOX, is_wsp};

/// Longest address list that is parsed (items); the rest is ignored.
const MAX_ITEMS: usize = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Mailbox {
    pub(crate) name: Option<Vec<u8>>,
    pub(crate) route: Option<Vec<u8>>,
    pub(crate) mailbox: Vec<u8>,
    pub(crate) host: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Mailbox(Mailbox),
    GroupStart(Vec<u8>),
    GroupEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An atom (dots included) or a quoted string's content.
    Word(Vec<u8>),
    DomainLiteral(Vec<u8>),
    Comment(Vec<u8>),
    Special(u8),
}

fn is_special(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'@' | b',' | b';' | b':' | b'"' | b'[' | b']'
    )
}

fn lex(s: &[u8]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if is_wsp(c) {
            i += 1;
            continue;
        }
        match c {
            b'(' => {
                let mut depth = 0usize;
                let mut text = Vec::new();
                while let Some(&c) = s.get(i) {
                    i += 1;
                    match c {
                        b'\\' => {
                            if let Some(&n) = s.get(i) {
                                text.push(n);
                                i += 1;
                            }
                        }
                        b'(' => {
                            if depth > 0 {
                                text.push(c);
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                            text.push(c);
                        }
                        b'\r' | b'\n' => {}
                        _ => text.push(c),
                    }
                }
                toks.push(Tok::Comment(text));
            }
            b'"' => {
                i += 1;
                let mut text = Vec::new();
                while let Some(&c) = s.get(i) {
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            if let Some(&n) = s.get(i) {
                                text.push(n);
                                i += 1;
                            }
                        }
                        b'\r' | b'\n' => {}
                        _ => text.push(c),
                    }
                }
                toks.push(Tok::Word(text));
            }
            b'[' => {
                let mut text = vec![b'['];
                i += 1;
                while let Some(&c) = s.get(i) {
                    i += 1;
                    match c {
                        b']' => break,
                        b'\r' | b'\n' => {}
                        _ => text.push(c),
                    }
                }
                text.push(b']');
                toks.push(Tok::DomainLiteral(text));
            }
            _ if is_special(c) => {
                toks.push(Tok::Special(c));
                i += 1;
            }
            _ => {
                let start = i;
                while s.get(i).is_some_and(|&b| !is_wsp(b) && !is_special(b)) {
                    i += 1;
                }
                toks.push(Tok::Word(s.get(start..i).unwrap_or_default().to_vec()));
            }
        }
    }
    toks
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn peek_special(&self) -> Option<u8> {
        match self.peek() {
            Some(Tok::Special(c)) => Some(*c),
            _ => None,
        }
    }

    /// Words up to a special; the last comment seen is returned separately.
    fn phrase(&mut self) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
        let mut words = Vec::new();
        let mut comment = None;
        while let Some(t) = self.peek() {
            match t {
                Tok::Word(w) | Tok::DomainLiteral(w) => words.push(w.clone()),
                Tok::Comment(c) => comment = Some(c.clone()),
                Tok::Special(_) => break,
            }
            self.i += 1;
        }
        (words, comment)
    }

    /// Domain words (joined) up to one of `stops`; comments are skipped and the last returned.
    fn domain(&mut self, stops: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut out = Vec::new();
        let mut comment = None;
        while let Some(t) = self.peek() {
            match t {
                Tok::Word(w) | Tok::DomainLiteral(w) => out.extend_from_slice(w),
                Tok::Comment(c) => comment = Some(c.clone()),
                Tok::Special(c) if stops.contains(c) => break,
                Tok::Special(c) => out.push(*c),
            }
            self.i += 1;
        }
        (out, comment)
    }

    /// After `<`: `[@route,@route:] local [@ domain] >`.
    fn angle_addr(&mut self) -> (Option<Vec<u8>>, Vec<u8>, Vec<u8>) {
        let mut route = None;
        if self.peek_special() == Some(b'@') {
            let mut r = Vec::new();
            while let Some(t) = self.peek() {
                match t {
                    Tok::Special(b':') => {
                        self.i += 1;
                        break;
                    }
                    Tok::Special(b'>') => break,
                    Tok::Special(c) => r.push(*c),
                    Tok::Word(w) | Tok::DomainLiteral(w) => r.extend_from_slice(w),
                    Tok::Comment(_) => {}
                }
                self.i += 1;
            }
            route = Some(r);
        }
        let mut local = Vec::new();
        while let Some(t) = self.peek() {
            match t {
                Tok::Word(w) | Tok::DomainLiteral(w) => local.extend_from_slice(w),
                Tok::Comment(_) => {}
                Tok::Special(b'@' | b'>') => break,
                Tok::Special(c) => local.push(*c),
            }
            self.i += 1;
        }
        let mut host = Vec::new();
        if self.peek_special() == Some(b'@') {
            self.i += 1;
            host = self.domain(b">").0;
        }
        if self.peek_special() == Some(b'>') {
            self.i += 1;
        }
        (route, local, host)
    }
}

fn join_phrase(words: &[Vec<u8>]) -> Vec<u8> {
    words.join(&b' ')
}

fn nonempty(v: Vec<u8>) -> Option<Vec<u8>> {
    let t = crate::mime::trim_wsp(&v);
    (!t.is_empty()).then(|| t.to_vec())
}

fn mailbox(name: Option<Vec<u8>>, route: Option<Vec<u8>>, local: Vec<u8>, host: Vec<u8>) -> Item {
    Item::Mailbox(Mailbox {
        name,
        route: route.and_then(nonempty),
        mailbox: if local.is_empty() {
            MISSING_MAILBOX.to_vec()
        } else {
            local
        },
        host: if host.is_empty() {
            MISSING_DOMAIN.to_vec()
        } else {
            host
        },
    })
}

/// Parses an address header value.
pub(crate) fn parse_address_list(value: &[u8]) -> Vec<Item> {
    let mut p = Parser {
        toks: lex(value),
        i: 0,
    };
    let mut items = Vec::new();
    let mut in_group = false;
    while p.i < p.toks.len() && items.len() < MAX_ITEMS {
        let before = p.i;
        let (words, comment) = p.phrase();
        match p.peek_special() {
            Some(b':') => {
                p.i += 1;
                if !in_group {
                    items.push(Item::GroupStart(join_phrase(&words)));
                    in_group = true;
                }
            }
            Some(b'<') => {
                p.i += 1;
                let (route, local, host) = p.angle_addr();
                let (_, trailing) = p.phrase();
                let name = nonempty(join_phrase(&words))
                    .or_else(|| comment.and_then(nonempty))
                    .or_else(|| trailing.and_then(nonempty));
                if !(local.is_empty() && host.is_empty() && name.is_none()) {
                    items.push(mailbox(name, route, local, host));
                }
            }
            Some(b'@') => {
                p.i += 1;
                let local = words.concat();
                let (host, c2) = p.domain(b",;<>:");
                if p.peek_special() == Some(b'<') {
                    // `user@host <user@host>`: what came before was a display name
                    p.i += 1;
                    let mut name = join_phrase(&words);
                    name.push(b'@');
                    name.extend_from_slice(&host);
                    let (route, local, host) = p.angle_addr();
                    let _ = p.phrase();
                    items.push(mailbox(nonempty(name), route, local, host));
                } else {
                    let name = c2.or(comment).and_then(nonempty);
                    items.push(mailbox(name, None, local, host));
                }
            }
            Some(b';') => {
                if !words.is_empty() {
                    items.push(mailbox(None, None, words.concat(), Vec::new()));
                }
                p.i += 1;
                if in_group {
                    items.push(Item::GroupEnd);
                    in_group = false;
                }
            }
            Some(b',') | None => {
                if !words.is_empty() {
                    items.push(mailbox(
                        comment.and_then(nonempty),
                        None,
                        words.concat(),
                        Vec::new(),
                    ));
                }
                if p.peek().is_some() {
                    p.i += 1;
                }
            }
            Some(_) => {
                // stray `>` or similar
                p.i += 1;
            }
        }
        if p.i == before {
            p.i += 1;
        }
    }
    if in_group {
        items.push(Item::GroupEnd);
    }
    items
}

/// The first real mailbox of an address list (groups skipped).
pub(crate) fn first_mailbox(items: &[Item]) -> Option<&Mailbox> {
    items.iter().find_map(|i| match i {
        Item::Mailbox(m) => Some(m),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: Option<&str>, route: Option<&str>, mailbox: &str, host: &str) -> Item {
        Item::Mailbox(Mailbox {
            name: name.map(|s| s.as_bytes().to_vec()),
            route: route.map(|s| s.as_bytes().to_vec()),
            mailbox: mailbox.as_bytes().to_vec(),
            host: host.as_bytes().to_vec(),
        })
    }

    #[test]
    fn simple_forms() {
        assert_eq!(
            parse_address_list(b" \"Terry Gray\" <gray@cac.washington.edu>"),
            vec![mb(Some("Terry Gray"), None, "gray", "cac.washington.edu")]
        );
        assert_eq!(
            parse_address_list(b" user@domain (Real Name)"),
            vec![mb(Some("Real Name"), None, "user", "domain")]
        );
        assert_eq!(
            parse_address_list(b" <@route:user@domain>"),
            vec![mb(None, Some("@route"), "user", "domain")]
        );
        assert_eq!(
            parse_address_list(b" John Q. Public <jqp@x.org>, \"a\\\"b\"@y.org"),
            vec![
                mb(Some("John Q. Public"), None, "jqp", "x.org"),
                mb(None, None, "a\"b", "y.org")
            ]
        );
        assert_eq!(
            parse_address_list(b" =?utf-8?q?J=C3=B6rg?= <j@x>"),
            vec![mb(Some("=?utf-8?q?J=C3=B6rg?="), None, "j", "x")]
        );
        assert_eq!(
            parse_address_list(b" undisclosed"),
            vec![mb(None, None, "undisclosed", "MISSING_DOMAIN")]
        );
        assert_eq!(
            parse_address_list(b" a@b.c <a@b.c>"),
            vec![mb(Some("a@b.c"), None, "a", "b.c")]
        );
        assert!(parse_address_list(b"  ").is_empty());
        assert!(parse_address_list(b" ,,").is_empty());
    }

    #[test]
    fn groups() {
        assert_eq!(
            parse_address_list(b" group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;"),
            vec![
                Item::GroupStart(b"group".to_vec()),
                mb(None, None, "g1", "d1.org"),
                mb(None, None, "g2", "d2.org"),
                Item::GroupEnd,
                Item::GroupStart(b"group2".to_vec()),
                mb(None, None, "g3", "d3.org"),
                Item::GroupEnd,
            ]
        );
        assert_eq!(
            parse_address_list(b" group:;, group2: (foo) ;"),
            vec![
                Item::GroupStart(b"group".to_vec()),
                Item::GroupEnd,
                Item::GroupStart(b"group2".to_vec()),
                Item::GroupEnd,
            ]
        );
        // unterminated group
        assert_eq!(
            parse_address_list(b" undisclosed-recipients:"),
            vec![
                Item::GroupStart(b"undisclosed-recipients".to_vec()),
                Item::GroupEnd
            ]
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [
            &b"<<<>>>@@@,,,;;;:::"[..],
            b"\"unterminated",
            b"(unterminated (comment",
            b"[unterminated",
            b"a@",
            b"@",
            b"<@",
            b"<@a,@b",
            b"\xff\xfe@\x80",
            b"\\",
        ] {
            let _ = parse_address_list(s);
        }
    }
}
