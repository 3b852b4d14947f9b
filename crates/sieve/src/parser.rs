//! Tokens to the generic syntax tree (RFC 5228 section 8.2):
//!
//! ```text
//! command   = identifier arguments (";" / block)
//! arguments = *argument [test / test-list]
//! argument  = string-list / number / tag
//! test      = identifier arguments
//! test-list = "(" test *("," test) ")"
//! ```
//!
//! Nesting of blocks and tests is limited to [`MAX_NESTING`] so that no input can exhaust
//! the stack.

use crate::CompileError;
use crate::ast::{Arg, Pos, RawCommand, RawTest};
use crate::lexer::{Lexed, Tok, Token, error};
use crate::limits::MAX_NESTING;

/// Parses a whole script.
pub(crate) fn parse(lexed: &Lexed) -> Result<Vec<RawCommand>, CompileError> {
    let mut p = Parser {
        toks: &lexed.tokens,
        i: 0,
        end: lexed.end,
    };
    let commands = p.commands(0)?;
    if let Some(t) = p.peek() {
        return Err(error(t.pos, format!("unexpected {}", t.tok.describe())));
    }
    Ok(commands)
}

struct Parser<'a> {
    toks: &'a [Token],
    i: usize,
    end: Pos,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.i)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let t = self.toks.get(self.i)?;
        self.i += 1;
        Some(t)
    }

    fn found(&self) -> (Pos, String) {
        match self.peek() {
            Some(t) => (t.pos, t.tok.describe()),
            None => (self.end, "end of script".to_owned()),
        }
    }

    fn depth_check(&self, depth: usize, pos: Pos) -> Result<(), CompileError> {
        if depth > MAX_NESTING {
            return Err(error(
                pos,
                format!("nesting too deep (limit {MAX_NESTING})"),
            ));
        }
        Ok(())
    }

    fn commands(&mut self, depth: usize) -> Result<Vec<RawCommand>, CompileError> {
        let mut out = Vec::new();
        while let Some(t) = self.peek() {
            if t.tok == Tok::RBrace {
                break;
            }
            out.push(self.command(depth)?);
        }
        Ok(out)
    }

    fn command(&mut self, depth: usize) -> Result<RawCommand, CompileError> {
        let (pos, what) = self.found();
        let name = match self.next() {
            Some(Token {
                tok: Tok::Ident(name),
                ..
            }) => name.clone(),
            _ => return Err(error(pos, format!("expected a command, found {what}"))),
        };
        let (args, tests) = self.arguments(depth)?;
        let mut cmd = RawCommand {
            name,
            pos,
            args,
            tests,
            block: None,
        };
        match self.peek() {
            Some(Token {
                tok: Tok::Semicolon,
                ..
            }) => {
                self.i += 1;
            }
            Some(Token {
                tok: Tok::LBrace,
                pos: open,
            }) => {
                self.depth_check(depth + 1, *open)?;
                self.i += 1;
                let block = self.commands(depth + 1)?;
                match self.next() {
                    Some(Token {
                        tok: Tok::RBrace, ..
                    }) => {}
                    _ => {
                        return Err(error(
                            self.end,
                            format!("missing '}}' for the block opened on line {}", open.line),
                        ));
                    }
                }
                cmd.block = Some(block);
            }
            _ => {
                let (at, found) = self.found();
                return Err(error(
                    at,
                    format!("expected ';' or '{{' after '{}', found {found}", cmd.name),
                ));
            }
        }
        Ok(cmd)
    }

    fn arguments(&mut self, depth: usize) -> Result<(Vec<Arg>, Vec<RawTest>), CompileError> {
        let mut args = Vec::new();
        while let Some(t) = self.peek() {
            match &t.tok {
                Tok::Tag(s) => args.push(Arg::Tag(s.clone(), t.pos)),
                Tok::Number(n) => args.push(Arg::Number(*n, t.pos)),
                Tok::Str(s) => {
                    args.push(Arg::Strings {
                        list: vec![s.clone()],
                        bracketed: false,
                        pos: t.pos,
                    });
                }
                Tok::LBracket => {
                    args.push(self.string_list()?);
                    continue;
                }
                Tok::Ident(_) => {
                    let test = self.test(depth + 1)?;
                    return Ok((args, vec![test]));
                }
                Tok::LParen => {
                    let tests = self.test_list(depth + 1)?;
                    return Ok((args, tests));
                }
                _ => break,
            }
            self.i += 1;
        }
        Ok((args, Vec::new()))
    }

    fn test(&mut self, depth: usize) -> Result<RawTest, CompileError> {
        let (pos, what) = self.found();
        self.depth_check(depth, pos)?;
        let name = match self.next() {
            Some(Token {
                tok: Tok::Ident(name),
                ..
            }) => name.clone(),
            _ => return Err(error(pos, format!("expected a test, found {what}"))),
        };
        let (args, tests) = self.arguments(depth)?;
        Ok(RawTest {
            name,
            pos,
            args,
            tests,
        })
    }

    fn test_list(&mut self, depth: usize) -> Result<Vec<RawTest>, CompileError> {
        self.i += 1; // "("
        let mut tests = Vec::new();
        loop {
            tests.push(self.test(depth)?);
            let (pos, what) = self.found();
            match self.next() {
                Some(Token {
                    tok: Tok::Comma, ..
                }) => {}
                Some(Token {
                    tok: Tok::RParen, ..
                }) => return Ok(tests),
                _ => {
                    return Err(error(
                        pos,
                        format!("expected ',' or ')' in test list, found {what}"),
                    ));
                }
            }
        }
    }

    fn string_list(&mut self) -> Result<Arg, CompileError> {
        let (pos, _) = self.found();
        self.i += 1; // "["
        let mut list = Vec::new();
        loop {
            let (at, what) = self.found();
            match self.next() {
                Some(Token {
                    tok: Tok::Str(s), ..
                }) => list.push(s.clone()),
                _ => {
                    return Err(error(
                        at,
                        format!("expected a string in string list, found {what}"),
                    ));
                }
            }
            let (at, what) = self.found();
            match self.next() {
                Some(Token {
                    tok: Tok::Comma, ..
                }) => {}
                Some(Token {
                    tok: Tok::RBracket, ..
                }) => {
                    return Ok(Arg::Strings {
                        list,
                        bracketed: true,
                        pos,
                    });
                }
                _ => {
                    return Err(error(
                        at,
                        format!("expected ',' or ']' in string list, found {what}"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokenize;

    fn parse_str(s: &str) -> Result<Vec<RawCommand>, CompileError> {
        parse(&tokenize(s)?)
    }

    #[test]
    fn generic_shapes() {
        let cmds = parse_str(
            "if anyof (not exists [\"a\",\"b\"], size :over 1k) { keep; } else { discard; }",
        )
        .unwrap_or_default();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].name, "if");
        assert_eq!(cmds[0].tests[0].name, "anyof");
        assert_eq!(cmds[0].tests[0].tests.len(), 2);
        assert_eq!(cmds[0].tests[0].tests[0].tests[0].name, "exists");
        assert_eq!(cmds[1].block.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn errors() {
        let e = |s: &str| {
            parse_str(s)
                .err()
                .map(|e| (e.line, e.message))
                .unwrap_or_default()
        };
        assert_eq!(e("keep").0, 1);
        assert!(e("keep").1.contains("expected ';'"));
        assert_eq!(e("if true {\n keep;\n").0, 3);
        assert!(e("}").1.contains("unexpected"));
        assert!(e("x [];").1.contains("expected a string"));
        assert!(e("if anyof (true; false) {}").1.contains("expected ','"));
        let deep = format!("if {}true {{}}", "not ".repeat(40));
        assert!(e(&deep).1.contains("nesting"));
        let blocks = "if true {".repeat(40) + &"}".repeat(40);
        assert!(e(&blocks).1.contains("nesting"));
    }
}
