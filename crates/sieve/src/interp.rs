//! Runs a checked program against one message: control flow, variables, flags, tests and
//! the collection of actions.

mod edit;
mod eval;

use crate::actions::Actions;
use crate::address::parse_mailbox;
use crate::ast::{Cmd, CmdKind, FlagOp, VacationCmd};
use crate::limits::{MAX_VARIABLE_VALUE, MAX_WORK};
use crate::matching::{Fuel, OutOfFuel};
use crate::validate::valid_mailbox;
use crate::variables::{Str, Vars};
use crate::{
    Context, HeaderEdits, IncludeLocation, Outcome, RuntimeError, Script, Vacation, flags, vacation,
};
use std::collections::{BTreeSet, HashMap, HashSet};

type Result<T> = std::result::Result<T, RuntimeError>;

enum Flow {
    Next,
    Stop,
    /// `return`: the current script ends.
    Return,
}

type Loader<'a> = &'a dyn Fn(&str, IncludeLocation) -> Option<String>;

struct Interp<'a> {
    ctx: &'a Context<'a>,
    vars: Vars,
    fuel: Fuel,
    actions: Actions,
    /// The imap4flags internal variable.
    flags: Vec<String>,
    warnings: Vec<String>,
    /// Line of the command being run, for errors.
    line: usize,
    /// The time of the delivery (`currentdate`).
    now: chrono::DateTime<chrono::Utc>,
    /// `include`: the script loader, the scripts being run, those run once, the count.
    includes: Loader<'a>,
    include_stack: Vec<(bool, String)>,
    included: HashSet<(bool, String)>,
    include_count: usize,
    /// `global` variables: their values, and the names the current script declared.
    globals: HashMap<String, String>,
    global_names: BTreeSet<String>,
    /// `editheader`: the edits so far, the commands run and the bytes added.
    edits: HeaderEdits,
    edit_commands: usize,
    added_bytes: usize,
}

pub(crate) fn run<'a>(
    script: &Script,
    ctx: &'a Context<'a>,
    now: chrono::DateTime<chrono::Utc>,
    includes: Loader<'a>,
) -> Result<Outcome> {
    let mut it = Interp {
        now,
        includes,
        include_stack: Vec::new(),
        included: HashSet::new(),
        include_count: 0,
        globals: HashMap::new(),
        global_names: BTreeSet::new(),
        ctx,
        vars: Vars::default(),
        fuel: Fuel::new(MAX_WORK),
        actions: Actions::default(),
        flags: Vec::new(),
        warnings: Vec::new(),
        line: 1,
        edits: HeaderEdits::default(),
        edit_commands: 0,
        added_bytes: 0,
    };
    it.block(&script.commands)?;
    let Interp {
        actions,
        flags,
        mut warnings,
        edits,
        ..
    } = it;
    let actions = actions.finish(flags, &mut warnings);
    Ok(Outcome {
        actions,
        warnings,
        header_edits: edits,
    })
}

/// Drops trailing flags so that the joined list fits a variable value.
fn cap_flags(list: &mut Vec<String>, warnings: &mut Vec<String>) {
    let mut total = 0;
    if let Some(cut) = list.iter().position(|f| {
        total += f.len() + 1;
        total > MAX_VARIABLE_VALUE + 1
    }) {
        warnings.push(format!(
            "flag list longer than {MAX_VARIABLE_VALUE} bytes truncated"
        ));
        list.truncate(cut);
    }
}

impl<'a> Interp<'a> {
    fn fail(&self, message: impl Into<String>) -> RuntimeError {
        RuntimeError {
            line: self.line,
            message: message.into(),
        }
    }

    fn out_of_fuel(&self, _: OutOfFuel) -> RuntimeError {
        self.fail(format!("script exceeded its work limit ({MAX_WORK} units)"))
    }

    fn spend(&mut self, units: usize) -> Result<()> {
        self.fuel.spend(units).map_err(|e| self.out_of_fuel(e))
    }

    fn expand(&mut self, s: &Str) -> Result<String> {
        self.vars
            .expand(s, &mut self.fuel)
            .map_err(|e| self.out_of_fuel(e))
    }

    fn expand_all(&mut self, list: &[Str]) -> Result<Vec<String>> {
        list.iter().map(|s| self.expand(s)).collect()
    }

    fn block(&mut self, cmds: &[Cmd]) -> Result<Flow> {
        for c in cmds {
            match self.command(c)? {
                Flow::Next => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Next)
    }

    fn command(&mut self, c: &Cmd) -> Result<Flow> {
        self.line = c.line;
        self.spend(1)?;
        let done = match &c.kind {
            CmdKind::If {
                branches,
                otherwise,
            } => {
                for (test, body) in branches {
                    if self.test(test)? {
                        return self.block(body);
                    }
                }
                return self.block(otherwise);
            }
            CmdKind::Stop => return Ok(Flow::Stop),
            CmdKind::Keep { flags } => {
                let f = self.flag_argument(flags.as_deref())?;
                self.actions.keep(f)
            }
            CmdKind::Discard => self.actions.discard(),
            CmdKind::Redirect { address, copy } => {
                let raw = self.expand(address)?;
                let Some(a) = parse_mailbox(&raw) else {
                    return Err(self.fail(format!("redirect: invalid address '{raw}'")));
                };
                self.actions.redirect(a.addr_spec(), *copy)
            }
            CmdKind::FileInto {
                mailbox,
                create,
                copy,
                flags,
            } => {
                let m = self.expand(mailbox)?;
                if !valid_mailbox(&m) {
                    return Err(self.fail(format!("fileinto: invalid mailbox name '{m}'")));
                }
                let f = self.flag_argument(flags.as_deref())?;
                self.actions.fileinto(m, *create, *copy, f)
            }
            CmdKind::Set {
                name,
                modifiers,
                value,
            } => {
                let mut v = self.expand(value)?;
                for m in modifiers {
                    self.spend(v.len())?;
                    v = m.apply(&v);
                }
                self.vars.set(name, v);
                Ok(())
            }
            CmdKind::Flag {
                op,
                variable,
                flags,
            } => {
                self.flag_command(*op, variable.as_deref(), flags)?;
                Ok(())
            }
            CmdKind::Reject { reason, extended } => {
                let r = self.expand(reason)?;
                self.actions.reject(r, *extended)
            }
            CmdKind::AddHeader { name, value, last } => {
                self.addheader(name, value, *last)?;
                Ok(())
            }
            CmdKind::DeleteHeader {
                spec,
                index,
                name,
                keys,
            } => {
                self.deleteheader(spec, *index, name, keys.as_deref())?;
                Ok(())
            }
            CmdKind::Vacation(v) => {
                let v = self.vacation(v)?;
                self.actions.vacation(v)
            }
            CmdKind::Return => return Ok(Flow::Return),
            CmdKind::Global(names) => {
                for n in names {
                    self.global_names.insert(n.clone());
                    if let Some(v) = self.globals.get(n) {
                        self.vars.set(n, v.clone());
                    }
                }
                Ok(())
            }
            CmdKind::Include {
                name,
                global,
                once,
                optional,
            } => return self.include(name, *global, *once, *optional),
        };
        done.map_err(|m| self.fail(m))?;
        Ok(Flow::Next)
    }

    /// Runs an included script with its own variables (the `global` ones shared).
    fn include(&mut self, name: &str, global: bool, once: bool, optional: bool) -> Result<Flow> {
        use crate::limits::{MAX_INCLUDE_DEPTH, MAX_INCLUDES};
        let key = (global, name.to_owned());
        if once && self.included.contains(&key) {
            return Ok(Flow::Next);
        }
        if self.include_stack.contains(&key) {
            return Err(self.fail(format!("include loop: '{name}' is already running")));
        }
        if self.include_stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.fail(format!("includes nested deeper than {MAX_INCLUDE_DEPTH}")));
        }
        self.include_count += 1;
        if self.include_count > MAX_INCLUDES {
            return Err(self.fail(format!("more than {MAX_INCLUDES} includes")));
        }
        let location = if global {
            IncludeLocation::Global
        } else {
            IncludeLocation::Personal
        };
        let Some(source) = (self.includes)(name, location) else {
            if optional {
                return Ok(Flow::Next);
            }
            return Err(self.fail(format!("included script '{name}' not found")));
        };
        self.spend(source.len())?;
        let script = crate::compile(&source)
            .map_err(|e| self.fail(format!("included script '{name}': {e}")))?;
        self.included.insert(key.clone());
        self.export_globals();
        let vars = std::mem::take(&mut self.vars);
        let names = std::mem::take(&mut self.global_names);
        let line = self.line;
        self.include_stack.push(key);
        let flow = self.block(&script.commands);
        self.include_stack.pop();
        self.export_globals();
        self.vars = vars;
        self.global_names = names;
        self.line = line;
        self.import_globals();
        match flow? {
            Flow::Stop => Ok(Flow::Stop),
            Flow::Next | Flow::Return => Ok(Flow::Next),
        }
    }

    fn export_globals(&mut self) {
        for n in &self.global_names {
            self.globals.insert(n.clone(), self.vars.get(n).to_owned());
        }
    }

    fn import_globals(&mut self) {
        for n in &self.global_names {
            if let Some(v) = self.globals.get(n) {
                self.vars.set(n, v.clone());
            }
        }
    }

    /// `:flags` when given, else the internal variable.
    fn flag_argument(&mut self, given: Option<&[Str]>) -> Result<Vec<String>> {
        let Some(list) = given else {
            return Ok(self.flags.clone());
        };
        let values = self.expand_all(list)?;
        let mut f = flags::parse(values.iter().map(String::as_str));
        cap_flags(&mut f, &mut self.warnings);
        Ok(f)
    }

    fn flag_command(&mut self, op: FlagOp, variable: Option<&str>, list: &[Str]) -> Result<()> {
        let values = self.expand_all(list)?;
        let new = flags::parse(values.iter().map(String::as_str));
        let mut current = match variable {
            None => self.flags.clone(),
            Some(n) => flags::parse([self.vars.get(n)]),
        };
        self.spend(current.len() + new.len())?;
        match op {
            FlagOp::Set => current = new,
            FlagOp::Add => flags::add(&mut current, new),
            FlagOp::Remove => flags::remove(&mut current, &new),
        }
        cap_flags(&mut current, &mut self.warnings);
        match variable {
            None => self.flags = current,
            Some(n) => self.vars.set(n, flags::join(&current)),
        }
        Ok(())
    }

    fn vacation(&mut self, v: &VacationCmd) -> Result<Vacation> {
        let reason = self.expand(&v.reason)?;
        let subject = v.subject.as_ref().map(|s| self.expand(s)).transpose()?;
        let mut from = v.from.as_ref().map(|s| self.expand(s)).transpose()?;
        if let Some(f) = &from
            && parse_mailbox(f).is_none()
        {
            self.warnings
                .push(format!("vacation: ignored invalid :from address '{f}'"));
            from = None;
        }
        let addresses = self.expand_all(&v.addresses)?;
        let handle = match &v.handle {
            Some(h) => self.expand(h)?,
            None => vacation::auto_handle(&reason, subject.as_deref(), from.as_deref(), v.mime),
        };
        let subject = match subject {
            Some(s) => s,
            None => vacation::default_subject(self.fields("Subject")?.first().map(String::as_str)),
        };
        Ok(Vacation {
            days: vacation::clamp_days(v.days),
            subject: subject.replace(['\r', '\n'], " "),
            from,
            addresses,
            mime: v.mime,
            handle,
            reason,
        })
    }
}
