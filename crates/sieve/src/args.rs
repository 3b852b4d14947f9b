//! Reading a command's or test's arguments front to back: tags first, then positional
//! strings, string lists and numbers, with errors that name what was expected.

use std::collections::VecDeque;

use crate::CompileError;
use crate::ast::{Arg, Pos};
use crate::lexer::error;

type Result<T> = std::result::Result<T, CompileError>;

/// The arguments of one command or test, consumed front to back.
pub(crate) struct Args {
    name: String,
    pos: Pos,
    items: VecDeque<Arg>,
    seen_tags: Vec<String>,
}

impl Args {
    pub(crate) fn new(name: &str, pos: Pos, items: Vec<Arg>) -> Self {
        Self {
            name: name.to_owned(),
            pos,
            items: items.into(),
            seen_tags: Vec::new(),
        }
    }

    /// The next tagged argument, if the next argument is one. A repeated tag is an error.
    pub(crate) fn tag(&mut self) -> Result<Option<(String, Pos)>> {
        let Some(Arg::Tag(..)) = self.items.front() else {
            return Ok(None);
        };
        let Some(Arg::Tag(t, pos)) = self.items.pop_front() else {
            return Ok(None);
        };
        if self.seen_tags.contains(&t) {
            return Err(error(pos, format!("{}: duplicate tag ':{t}'", self.name)));
        }
        self.seen_tags.push(t.clone());
        Ok(Some((t, pos)))
    }

    pub(crate) fn unknown_tag(&self, tag: &str, pos: Pos) -> CompileError {
        error(
            pos,
            format!("{}: unknown tagged argument ':{tag}'", self.name),
        )
    }

    fn missing(&self, what: &str) -> CompileError {
        let pos = self.items.front().map_or(self.pos, Arg::pos);
        let found = self
            .items
            .front()
            .map_or("nothing".to_owned(), Arg::describe);
        error(
            pos,
            format!("{}: expected {what}, found {found}", self.name),
        )
    }

    pub(crate) fn remaining(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn number(&mut self, what: &str) -> Result<u64> {
        match self.items.front() {
            Some(Arg::Number(n, _)) => {
                let n = *n;
                self.items.pop_front();
                Ok(n)
            }
            _ => Err(self.missing(what)),
        }
    }

    pub(crate) fn string(&mut self, what: &str) -> Result<(String, Pos)> {
        match self.items.front() {
            Some(Arg::Strings {
                bracketed: false, ..
            }) => match self.items.pop_front() {
                Some(Arg::Strings { mut list, pos, .. }) => {
                    Ok((list.pop().unwrap_or_default(), pos))
                }
                _ => Err(self.missing(what)),
            },
            _ => Err(self.missing(what)),
        }
    }

    pub(crate) fn string_list(&mut self, what: &str) -> Result<(Vec<String>, Pos)> {
        match self.items.front() {
            Some(Arg::Strings { .. }) => match self.items.pop_front() {
                Some(Arg::Strings { list, pos, .. }) => Ok((list, pos)),
                _ => Err(self.missing(what)),
            },
            _ => Err(self.missing(what)),
        }
    }

    pub(crate) fn finish(self) -> Result<()> {
        match self.items.front() {
            None => Ok(()),
            Some(a) => Err(error(
                a.pos(),
                format!("{}: unexpected {}", self.name, a.describe()),
            )),
        }
    }
}
