//! The generic tree to the checked program: `require` handling, the shape of every
//! command's arguments, extension requirements, literal checks (addresses, mailbox names,
//! variable names). Tests are checked in `testexpr`.

use std::collections::BTreeSet;

use crate::args::Args;
use crate::ast::{Cmd, CmdKind, FlagOp, Pos, RawCommand, Test, VacationCmd};
use crate::lexer::error;
use crate::limits::{MAX_VARIABLE_NAME, MAX_VARIABLES};
use crate::variables::{self, Modifier, Str};
use crate::{CompileError, EXTENSIONS, Script, address, editheader};

type Result<T> = std::result::Result<T, CompileError>;

/// Checking state: the required extensions and the variables assigned.
#[derive(Default)]
pub(crate) struct Validator {
    caps: BTreeSet<String>,
    assigned: BTreeSet<String>,
}

impl Validator {
    pub(crate) fn has(&self, cap: &str) -> bool {
        self.caps.contains(cap)
    }

    pub(crate) fn need(&self, cap: &str, pos: Pos, what: &str) -> Result<()> {
        if self.has(cap) {
            return Ok(());
        }
        Err(error(
            pos,
            format!("{what} requires the \"{cap}\" extension (missing require \"{cap}\")"),
        ))
    }

    /// A string argument: encoded characters decoded, variable references parsed, as the
    /// required extensions say.
    pub(crate) fn string(&self, s: String, pos: Pos) -> Result<Str> {
        let s = if self.has("encoded-character") {
            variables::decode_encoded(&s).map_err(|m| error(pos, m))?
        } else {
            s
        };
        if self.has("variables") {
            variables::parse_template(&s).map_err(|m| error(pos, m))
        } else {
            Ok(Str::Lit(s))
        }
    }

    pub(crate) fn strings(&self, list: Vec<String>, pos: Pos) -> Result<Vec<Str>> {
        list.into_iter().map(|s| self.string(s, pos)).collect()
    }

    /// A variable name given to `set`, a flag command or `hasflag`, lower-cased.
    pub(crate) fn variable_name(&self, name: &str, pos: Pos) -> Result<String> {
        let bad = |m: &str| Err(error(pos, format!("{m}: '{name}'")));
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            return bad("cannot assign to a match variable");
        }
        if name.contains('.') {
            return bad("variable namespaces are not supported");
        }
        if !variables::is_identifier(name) {
            return bad("invalid variable name");
        }
        if name.len() > MAX_VARIABLE_NAME {
            return bad(&format!("variable name longer than {MAX_VARIABLE_NAME}"));
        }
        Ok(name.to_ascii_lowercase())
    }

    fn assign(&mut self, name: &str, pos: Pos) -> Result<()> {
        self.assigned.insert(name.to_owned());
        if self.assigned.len() > MAX_VARIABLES {
            return Err(error(
                pos,
                format!("too many variables (limit {MAX_VARIABLES})"),
            ));
        }
        Ok(())
    }

    fn block(&mut self, cmds: Vec<RawCommand>) -> Result<Vec<Cmd>> {
        let mut out = Vec::new();
        let mut iter = cmds.into_iter().peekable();
        while let Some(c) = iter.next() {
            match c.name.as_str() {
                "if" => {
                    let line = c.pos.line;
                    let mut branches = vec![self.branch(c)?];
                    let mut otherwise = Vec::new();
                    while let Some(n) = iter.next_if(|n| n.name == "elsif") {
                        branches.push(self.branch(n)?);
                    }
                    if let Some(n) = iter.next_if(|n| n.name == "else") {
                        otherwise = self.branch(n)?.1;
                    }
                    out.push(Cmd {
                        line,
                        kind: CmdKind::If {
                            branches,
                            otherwise,
                        },
                    });
                }
                "elsif" | "else" => {
                    return Err(error(
                        c.pos,
                        format!("'{}' without a preceding 'if'", c.name),
                    ));
                }
                _ => out.push(self.command(c)?),
            }
        }
        Ok(out)
    }

    /// `if` / `elsif` (one test and a block) or `else` (a block only).
    fn branch(&mut self, c: RawCommand) -> Result<(Test, Vec<Cmd>)> {
        let RawCommand {
            name,
            pos,
            args,
            mut tests,
            block,
        } = c;
        Args::new(&name, pos, args).finish()?;
        let want_test = name != "else";
        if tests.len() != usize::from(want_test) {
            let m = if want_test {
                "expects exactly one test"
            } else {
                "takes no test"
            };
            return Err(error(pos, format!("'{name}' {m}")));
        }
        let Some(block) = block else {
            return Err(error(pos, format!("'{name}' needs a block {{ ... }}")));
        };
        let test = match tests.pop() {
            Some(t) => self.test(t)?,
            None => Test::True,
        };
        Ok((test, self.block(block)?))
    }

    fn command(&mut self, c: RawCommand) -> Result<Cmd> {
        let RawCommand {
            name,
            pos,
            args,
            tests,
            block,
        } = c;
        if name == "require" {
            return Err(error(
                pos,
                "'require' is only allowed at the start of the script",
            ));
        }
        let mut a = Args::new(&name, pos, args);
        let kind = match name.as_str() {
            "stop" => CmdKind::Stop,
            "discard" => CmdKind::Discard,
            "keep" | "fileinto" => {
                if name == "fileinto" {
                    self.need("fileinto", pos, "'fileinto'")?;
                }
                let (mut copy, mut create, mut flags) = (false, false, None);
                while let Some((tag, tpos)) = a.tag()? {
                    match tag.as_str() {
                        "flags" => {
                            self.need("imap4flags", tpos, ":flags")?;
                            let (list, lpos) = a.string_list("a flag list after :flags")?;
                            flags = Some(self.strings(list, lpos)?);
                        }
                        "copy" if name == "fileinto" => {
                            self.need("copy", tpos, ":copy")?;
                            copy = true;
                        }
                        "create" if name == "fileinto" => {
                            self.need("mailbox", tpos, ":create")?;
                            create = true;
                        }
                        _ => return Err(a.unknown_tag(&tag, tpos)),
                    }
                }
                if name == "keep" {
                    CmdKind::Keep { flags }
                } else {
                    let (s, spos) = a.string("a mailbox name")?;
                    let mailbox = self.string(s, spos)?;
                    if let Some(m) = mailbox.literal()
                        && !valid_mailbox(m)
                    {
                        return Err(error(spos, format!("fileinto: invalid mailbox name '{m}'")));
                    }
                    CmdKind::FileInto {
                        mailbox,
                        create,
                        copy,
                        flags,
                    }
                }
            }
            "redirect" => {
                let mut copy = false;
                while let Some((tag, tpos)) = a.tag()? {
                    match tag.as_str() {
                        "copy" => {
                            self.need("copy", tpos, ":copy")?;
                            copy = true;
                        }
                        _ => return Err(a.unknown_tag(&tag, tpos)),
                    }
                }
                let (s, spos) = a.string("an address")?;
                let address = self.string(s, spos)?;
                if let Some(lit) = address.literal()
                    && address::parse_mailbox(lit).is_none()
                {
                    return Err(error(spos, format!("redirect: invalid address '{lit}'")));
                }
                CmdKind::Redirect { address, copy }
            }
            "set" => {
                self.need("variables", pos, "'set'")?;
                let mut modifiers: Vec<Modifier> = Vec::new();
                while let Some((tag, tpos)) = a.tag()? {
                    let m = Modifier::from_tag(&tag).ok_or_else(|| a.unknown_tag(&tag, tpos))?;
                    if modifiers.iter().any(|o| o.precedence() == m.precedence()) {
                        return Err(error(
                            tpos,
                            format!(
                                "set: ':{tag}' conflicts with a modifier of the same precedence"
                            ),
                        ));
                    }
                    modifiers.push(m);
                }
                modifiers.sort_by_key(|m| std::cmp::Reverse(m.precedence()));
                let (n, npos) = a.string("a variable name")?;
                let (v, vpos) = a.string("a value")?;
                let name = self.variable_name(&n, npos)?;
                self.assign(&name, npos)?;
                CmdKind::Set {
                    name,
                    modifiers,
                    value: self.string(v, vpos)?,
                }
            }
            "setflag" | "addflag" | "removeflag" => {
                self.need("imap4flags", pos, &format!("'{name}'"))?;
                if let Some((tag, tpos)) = a.tag()? {
                    return Err(a.unknown_tag(&tag, tpos));
                }
                let variable = if a.remaining() >= 2 {
                    let (v, vpos) = a.string("a variable name")?;
                    self.need("variables", vpos, "a flag variable")?;
                    let v = self.variable_name(&v, vpos)?;
                    self.assign(&v, vpos)?;
                    Some(v)
                } else {
                    None
                };
                let (list, lpos) = a.string_list("a flag list")?;
                let op = match name.as_str() {
                    "setflag" => FlagOp::Set,
                    "addflag" => FlagOp::Add,
                    _ => FlagOp::Remove,
                };
                CmdKind::Flag {
                    op,
                    variable,
                    flags: self.strings(list, lpos)?,
                }
            }
            "reject" | "ereject" => {
                self.need(&name, pos, &format!("'{name}'"))?;
                let (s, spos) = a.string("a reason")?;
                CmdKind::Reject {
                    reason: self.string(s, spos)?,
                    extended: name == "ereject",
                }
            }
            "vacation" => CmdKind::Vacation(Box::new(self.vacation(&mut a, pos)?)),
            "include" => {
                self.need("include", pos, "'include'")?;
                let (mut global, mut located, mut once, mut optional) =
                    (false, false, false, false);
                while let Some((tag, tpos)) = a.tag()? {
                    match tag.as_str() {
                        "personal" | "global" => {
                            if located {
                                return Err(error(tpos, "only one of :personal and :global"));
                            }
                            located = true;
                            global = tag == "global";
                        }
                        "once" => once = true,
                        "optional" => optional = true,
                        _ => return Err(a.unknown_tag(&tag, tpos)),
                    }
                }
                let (n, npos) = a.string("a script name")?;
                if n.contains("${") {
                    return Err(error(npos, "include: the script name cannot use variables"));
                }
                if n.is_empty()
                    || n.len() > 200
                    || n.starts_with('.')
                    || n.contains(['/', '\\'])
                    || n.chars().any(char::is_control)
                {
                    return Err(error(npos, format!("include: invalid script name \"{n}\"")));
                }
                CmdKind::Include {
                    name: n,
                    global,
                    once,
                    optional,
                }
            }
            "return" => {
                self.need("include", pos, "'return'")?;
                CmdKind::Return
            }
            "global" => {
                self.need("include", pos, "'global'")?;
                self.need("variables", pos, "'global'")?;
                let (names, npos) = a.string_list("a list of variable names")?;
                let mut out = Vec::new();
                for n in &names {
                    let n = self.variable_name(n, npos)?;
                    self.assign(&n, npos)?;
                    out.push(n);
                }
                CmdKind::Global(out)
            }
            "addheader" => {
                self.need("editheader", pos, "'addheader'")?;
                let mut last = false;
                while let Some((tag, tpos)) = a.tag()? {
                    match tag.as_str() {
                        "last" => last = true,
                        _ => return Err(a.unknown_tag(&tag, tpos)),
                    }
                }
                let (n, npos) = a.string("a field name")?;
                let (v, vpos) = a.string("a value")?;
                CmdKind::AddHeader {
                    name: self.field_name(n, npos, &name)?,
                    value: self.string(v, vpos)?,
                    last,
                }
            }
            "deleteheader" => {
                self.need("editheader", pos, "'deleteheader'")?;
                let (spec, index) = self.deleteheader_tags(&mut a, pos)?;
                let (n, npos) = a.string("a field name")?;
                let field = self.field_name(n, npos, &name)?;
                let keys = if a.remaining() > 0 {
                    let (list, lpos) = a.string_list("a list of value patterns")?;
                    Some(self.strings(list, lpos)?)
                } else {
                    None
                };
                CmdKind::DeleteHeader {
                    spec,
                    index,
                    name: field,
                    keys,
                }
            }
            _ => return Err(error(pos, format!("unknown command '{name}'"))),
        };
        a.finish()?;
        if block.is_some() || !tests.is_empty() {
            let what = if block.is_some() { "a block" } else { "a test" };
            return Err(error(pos, format!("'{name}' does not take {what}")));
        }
        Ok(Cmd {
            line: pos.line,
            kind,
        })
    }

    /// The field name of `addheader`/`deleteheader`: a literal must be a valid RFC 5322
    /// field name (one from variables is checked when it runs).
    fn field_name(&self, n: String, pos: Pos, cmd: &str) -> Result<Str> {
        let s = self.string(n, pos)?;
        if let Some(l) = s.literal()
            && !editheader::valid_field_name(l)
        {
            return Err(error(pos, format!("{cmd}: invalid field name \"{l}\"")));
        }
        Ok(s)
    }

    fn vacation(&mut self, a: &mut Args, pos: Pos) -> Result<VacationCmd> {
        self.need("vacation", pos, "'vacation'")?;
        let (mut days, mut subject, mut from, mut addresses, mut mime, mut handle) =
            (None, None, None, Vec::new(), false, None);
        while let Some((tag, tpos)) = a.tag()? {
            match tag.as_str() {
                "days" => days = Some(a.number("a number after :days")?),
                "subject" => subject = Some(a.string("a string after :subject")?),
                "from" => from = Some(a.string("an address after :from")?),
                "addresses" => addresses = a.string_list("a list after :addresses")?.0,
                "mime" => mime = true,
                "handle" => handle = Some(a.string("a string after :handle")?),
                _ => return Err(a.unknown_tag(&tag, tpos)),
            }
        }
        if let Some((f, fpos)) = &from
            && !f.contains("${")
            && address::parse_mailbox(f).is_none()
        {
            return Err(error(
                *fpos,
                format!("vacation: invalid :from address '{f}'"),
            ));
        }
        let (reason, rpos) = a.string("a reason")?;
        let opt = |v: Option<(String, Pos)>| v.map(|(s, p)| self.string(s, p)).transpose();
        Ok(VacationCmd {
            days,
            subject: opt(subject)?,
            from: opt(from)?,
            addresses: self.strings(addresses, pos)?,
            mime,
            handle: opt(handle)?,
            reason: self.string(reason, rpos)?,
        })
    }
}

/// A mailbox name a script may file into: not empty, no control characters.
pub(crate) fn valid_mailbox(m: &str) -> bool {
    !m.is_empty() && !m.chars().any(char::is_control)
}

/// Checks the whole script.
pub(crate) fn validate(tree: Vec<RawCommand>) -> Result<Script> {
    let mut v = Validator::default();
    let mut rest = Vec::new();
    for c in tree {
        if c.name == "require" && rest.is_empty() {
            let RawCommand {
                name,
                pos,
                args,
                tests,
                block,
            } = c;
            if block.is_some() || !tests.is_empty() {
                return Err(error(pos, "'require' takes only a list of extensions"));
            }
            let mut a = Args::new(&name, pos, args);
            let (caps, cpos) = a.string_list("a list of extensions")?;
            a.finish()?;
            for cap in caps {
                if !EXTENSIONS.contains(&cap.as_str()) {
                    return Err(error(cpos, format!("unsupported extension \"{cap}\"")));
                }
                v.caps.insert(cap);
            }
        } else {
            rest.push(c);
        }
    }
    let commands = v.block(rest)?;
    Ok(Script {
        commands,
        extensions: v.caps.into_iter().collect(),
    })
}
