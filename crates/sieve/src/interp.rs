//! Runs a checked program against one message: control flow, variables, flags, tests and
//! the collection of actions.

mod eval;

use crate::actions::Actions;
use crate::address::parse_mailbox;
use crate::ast::{Cmd, CmdKind, FlagOp, VacationCmd};
use crate::limits::{MAX_VARIABLE_VALUE, MAX_WORK};
use crate::matching::{Fuel, OutOfFuel};
use crate::validate::valid_mailbox;
use crate::variables::{Str, Vars};
use crate::{Context, Outcome, RuntimeError, Script, Vacation, flags, vacation};

type Result<T> = std::result::Result<T, RuntimeError>;

enum Flow {
    Next,
    Stop,
}

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
}

pub(crate) fn run(script: &Script, ctx: &Context<'_>) -> Result<Outcome> {
    let mut it = Interp {
        ctx,
        vars: Vars::default(),
        fuel: Fuel::new(MAX_WORK),
        actions: Actions::default(),
        flags: Vec::new(),
        warnings: Vec::new(),
        line: 1,
    };
    it.block(&script.commands)?;
    let Interp {
        actions,
        flags,
        mut warnings,
        ..
    } = it;
    let actions = actions.finish(flags, &mut warnings);
    Ok(Outcome { actions, warnings })
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
            if let Flow::Stop = self.command(c)? {
                return Ok(Flow::Stop);
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
            CmdKind::Vacation(v) => {
                let v = self.vacation(v)?;
                self.actions.vacation(v)
            }
        };
        done.map_err(|m| self.fail(m))?;
        Ok(Flow::Next)
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
            None => vacation::default_subject(
                self.ctx
                    .message
                    .header("Subject")
                    .first()
                    .map(String::as_str),
            ),
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
