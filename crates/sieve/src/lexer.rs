//! Tokenizer for the Sieve grammar (RFC 5228 section 8.1): identifiers, tags, numbers with
//! K/M/G quantifiers, quoted and multi-line strings, punctuation and comments.

use crate::CompileError;
use crate::ast::Pos;

/// One lexical token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// An identifier, lower-cased (identifiers are case-insensitive).
    Ident(String),
    /// A tagged argument without its colon, lower-cased.
    Tag(String),
    /// A number with its quantifier applied.
    Number(u64),
    /// A quoted or multi-line string, unescaped.
    Str(String),
    LBracket,
    RBracket,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Semicolon,
}

impl Tok {
    /// A short description for error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Ident(s) => format!("identifier '{s}'"),
            Self::Tag(s) => format!("tag ':{s}'"),
            Self::Number(n) => format!("number {n}"),
            Self::Str(_) => "a string".to_owned(),
            Self::LBracket => "'['".to_owned(),
            Self::RBracket => "']'".to_owned(),
            Self::LParen => "'('".to_owned(),
            Self::RParen => "')'".to_owned(),
            Self::LBrace => "'{'".to_owned(),
            Self::RBrace => "'}'".to_owned(),
            Self::Comma => "','".to_owned(),
            Self::Semicolon => "';'".to_owned(),
        }
    }
}

/// A token and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: Pos,
}

/// The token stream and the position just past the end of the source.
#[derive(Debug)]
pub(crate) struct Lexed {
    pub(crate) tokens: Vec<Token>,
    pub(crate) end: Pos,
}

pub(crate) fn error(pos: Pos, message: impl Into<String>) -> CompileError {
    CompileError {
        line: pos.line,
        column: pos.col,
        message: message.into(),
    }
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.bytes.get(self.pos + n).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if c & 0xC0 != 0x80 {
            self.col += 1;
        }
        Some(c)
    }

    fn here(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    /// Skips to the end of the line, leaving the line feed.
    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'\n' {
                break;
            }
            self.bump();
        }
    }

    fn bracket_comment(&mut self, start: Pos) -> Result<(), CompileError> {
        self.bump();
        self.bump();
        loop {
            match self.bump() {
                None => return Err(error(start, "unterminated /* comment")),
                Some(b'*') if self.peek() == Some(b'/') => {
                    self.bump();
                    return Ok(());
                }
                Some(_) => {}
            }
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !(c.is_ascii_alphanumeric() || c == b'_') {
                break;
            }
            self.bump();
        }
        self.src[start..self.pos].to_ascii_lowercase()
    }

    fn number(&mut self, start: Pos) -> Result<u64, CompileError> {
        let too_large = || error(start, "number too large");
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            self.bump();
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or_else(too_large)?;
        }
        let factor: u64 = match self.peek() {
            Some(b'K' | b'k') => 1 << 10,
            Some(b'M' | b'm') => 1 << 20,
            Some(b'G' | b'g') => 1 << 30,
            _ => 1,
        };
        if factor != 1 {
            self.bump();
        }
        if matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            return Err(error(start, "invalid number (quantifiers are K, M and G)"));
        }
        n.checked_mul(factor).ok_or_else(too_large)
    }

    fn quoted(&mut self, start: Pos) -> Result<String, CompileError> {
        self.bump();
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return Err(error(start, "unterminated quoted string")),
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    None => return Err(error(start, "unterminated quoted string")),
                    Some(c) => out.push(c),
                },
                Some(c) => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| error(start, "invalid UTF-8 in string"))
    }

    /// After `text:`: the rest of the line, then lines up to a lone `.`. Lines are joined
    /// with CRLF (the last one too); a leading `..` loses one dot.
    fn multiline(&mut self, start: Pos) -> Result<String, CompileError> {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
        match self.peek() {
            Some(b'#') => self.skip_line(),
            Some(b'\r' | b'\n') => {}
            None => return Err(error(start, "unterminated multi-line string")),
            Some(_) => return Err(error(self.here(), "expected end of line after 'text:'")),
        }
        if self.peek() == Some(b'\r') {
            self.bump();
        }
        if self.bump() != Some(b'\n') {
            return Err(error(self.here(), "expected end of line after 'text:'"));
        }
        let mut out = String::new();
        loop {
            if self.pos >= self.bytes.len() {
                return Err(error(
                    start,
                    "unterminated multi-line string (missing '.' line)",
                ));
            }
            let line_start = self.pos;
            self.skip_line();
            let mut line = &self.src[line_start..self.pos];
            let had_newline = self.bump().is_some();
            if let Some(l) = line.strip_suffix('\r') {
                line = l;
            }
            if line.trim_end_matches([' ', '\t']) == "." {
                return Ok(out);
            }
            if !had_newline {
                return Err(error(
                    start,
                    "unterminated multi-line string (missing '.' line)",
                ));
            }
            if line.starts_with("..") {
                line = &line[1..];
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
}

/// Splits `src` into tokens.
pub(crate) fn tokenize(src: &str) -> Result<Lexed, CompileError> {
    let mut lx = Lexer {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        line: 1,
        col: 1,
    };
    let mut tokens = Vec::new();
    while let Some(c) = lx.peek() {
        let start = lx.here();
        let punct = match c {
            b'[' => Some(Tok::LBracket),
            b']' => Some(Tok::RBracket),
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b'{' => Some(Tok::LBrace),
            b'}' => Some(Tok::RBrace),
            b',' => Some(Tok::Comma),
            b';' => Some(Tok::Semicolon),
            _ => None,
        };
        let tok = if let Some(t) = punct {
            lx.bump();
            t
        } else {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    lx.bump();
                    continue;
                }
                b'#' => {
                    lx.skip_line();
                    continue;
                }
                b'/' if lx.peek_at(1) == Some(b'*') => {
                    lx.bracket_comment(start)?;
                    continue;
                }
                b'"' => Tok::Str(lx.quoted(start)?),
                b'0'..=b'9' => Tok::Number(lx.number(start)?),
                b':' => {
                    lx.bump();
                    match lx.peek() {
                        Some(c) if c.is_ascii_alphabetic() || c == b'_' => Tok::Tag(lx.ident()),
                        _ => return Err(error(start, "expected a tag name after ':'")),
                    }
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let id = lx.ident();
                    if id == "text" && lx.peek() == Some(b':') {
                        lx.bump();
                        Tok::Str(lx.multiline(start)?)
                    } else {
                        Tok::Ident(id)
                    }
                }
                _ => {
                    let ch = src[lx.pos..].chars().next().unwrap_or('?');
                    return Err(error(
                        start,
                        format!("unexpected character '{}'", ch.escape_debug()),
                    ));
                }
            }
        };
        tokens.push(Token { tok, pos: start });
    }
    Ok(Lexed {
        tokens,
        end: lx.here(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s)
            .map(|l| l.tokens.into_iter().map(|t| t.tok).collect())
            .unwrap_or_default()
    }

    #[test]
    fn basic_tokens() {
        assert_eq!(
            toks("IF size :OVER 10K { stop; } # c\n/* x\n */ [\"a\\\"b\\\\\", \"\\q\"]"),
            vec![
                Tok::Ident("if".into()),
                Tok::Ident("size".into()),
                Tok::Tag("over".into()),
                Tok::Number(10 * 1024),
                Tok::LBrace,
                Tok::Ident("stop".into()),
                Tok::Semicolon,
                Tok::RBrace,
                Tok::LBracket,
                Tok::Str("a\"b\\".into()),
                Tok::Comma,
                Tok::Str("q".into()),
                Tok::RBracket,
            ]
        );
        assert_eq!(
            toks("1g 2M 3k"),
            vec![
                Tok::Number(1 << 30),
                Tok::Number(2 << 20),
                Tok::Number(3 << 10)
            ]
        );
    }

    #[test]
    fn multiline_strings() {
        let src = "text: # comment\r\nline one\r\n..dot\r\n.single\r\n.\r\n;";
        assert_eq!(
            toks(src),
            vec![
                Tok::Str("line one\r\n.dot\r\n.single\r\n".into()),
                Tok::Semicolon
            ]
        );
        assert_eq!(toks("text:\n.\n"), vec![Tok::Str(String::new())]);
        assert!(tokenize("text:\nno end\n").is_err());
        assert!(tokenize("text: x\n.\n").is_err());
    }

    #[test]
    fn errors_have_positions() {
        let e = tokenize("keep;\n  \"open")
            .err()
            .unwrap_or_else(|| error(Pos::default(), ""));
        assert_eq!((e.line, e.column), (2, 3));
        let e = tokenize("a\n b\n   @")
            .err()
            .unwrap_or_else(|| error(Pos::default(), ""));
        assert_eq!((e.line, e.column), (3, 4));
        assert!(tokenize("99999999999999999999").is_err());
        assert!(tokenize("18446744073709551615G").is_err());
        assert!(tokenize("/* open").is_err());
        assert!(tokenize(": x").is_err());
        assert!(tokenize("10Kb").is_err());
        assert!(tokenize("10x").is_err());
    }
}
