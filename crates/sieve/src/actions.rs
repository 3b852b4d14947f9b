//! The action list of one execution: implicit keep (RFC 5228 section 2.10.2), merging of
//! duplicates (2.10.3), the `reject` and `vacation` conflicts (RFC 5429 section 2.1,
//! RFC 5230), and the action and redirect limits.

use crate::limits::{MAX_ACTIONS, MAX_REDIRECTS};
use crate::{Action, Vacation, flags};

/// Actions taken so far.
#[derive(Debug)]
pub(crate) struct Actions {
    list: Vec<Action>,
    implicit_keep: bool,
    /// Some keep, fileinto or redirect was taken.
    delivers: bool,
    rejected: bool,
    vacation: bool,
    redirects: usize,
}

impl Default for Actions {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            implicit_keep: true,
            delivers: false,
            rejected: false,
            vacation: false,
            redirects: 0,
        }
    }
}

fn same_mailbox(a: &str, b: &str) -> bool {
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

impl Actions {
    fn push(&mut self, a: Action) -> Result<(), String> {
        if self.list.len() >= MAX_ACTIONS {
            return Err(format!("too many actions (limit {MAX_ACTIONS})"));
        }
        self.list.push(a);
        Ok(())
    }

    fn deliver(&mut self, what: &str) -> Result<(), String> {
        if self.rejected {
            return Err(format!("{what} cannot be used after reject"));
        }
        self.delivers = true;
        Ok(())
    }

    pub(crate) fn keep(&mut self, new: Vec<String>) -> Result<(), String> {
        self.deliver("keep")?;
        self.implicit_keep = false;
        for a in &mut self.list {
            if let Action::Keep { flags } = a {
                flags::add(flags, new);
                return Ok(());
            }
        }
        self.push(Action::Keep { flags: new })
    }

    pub(crate) fn fileinto(
        &mut self,
        mailbox: String,
        create: bool,
        copy: bool,
        new: Vec<String>,
    ) -> Result<(), String> {
        self.deliver("fileinto")?;
        if !copy {
            self.implicit_keep = false;
        }
        for a in &mut self.list {
            if let Action::FileInto {
                mailbox: m,
                create: c,
                flags,
                copy: cp,
            } = a
                && same_mailbox(m, &mailbox)
            {
                *c |= create;
                *cp &= copy;
                flags::add(flags, new);
                return Ok(());
            }
        }
        self.push(Action::FileInto {
            mailbox,
            create,
            flags: new,
            copy,
        })
    }

    pub(crate) fn redirect(&mut self, address: String, copy: bool) -> Result<(), String> {
        self.deliver("redirect")?;
        if !copy {
            self.implicit_keep = false;
        }
        for a in &mut self.list {
            if let Action::Redirect {
                address: to,
                copy: cp,
            } = a
                && to.eq_ignore_ascii_case(&address)
            {
                *cp &= copy;
                return Ok(());
            }
        }
        if self.redirects >= MAX_REDIRECTS {
            return Err(format!("too many redirects (limit {MAX_REDIRECTS})"));
        }
        self.redirects += 1;
        self.push(Action::Redirect { address, copy })
    }

    pub(crate) fn discard(&mut self) -> Result<(), String> {
        self.implicit_keep = false;
        if self.list.contains(&Action::Discard) {
            return Ok(());
        }
        self.push(Action::Discard)
    }

    pub(crate) fn reject(&mut self, reason: String, extended: bool) -> Result<(), String> {
        let name = if extended { "ereject" } else { "reject" };
        if self.rejected {
            return Err(format!("{name}: the message was already rejected"));
        }
        if self.delivers {
            return Err(format!(
                "{name} cannot be combined with keep, fileinto or redirect"
            ));
        }
        if self.vacation {
            return Err(format!("{name} cannot be combined with vacation"));
        }
        self.rejected = true;
        self.implicit_keep = false;
        self.push(Action::Reject { reason, extended })
    }

    pub(crate) fn vacation(&mut self, v: Vacation) -> Result<(), String> {
        if self.vacation {
            return Err("vacation: only one vacation action is allowed".to_owned());
        }
        if self.rejected {
            return Err("vacation cannot be combined with reject".to_owned());
        }
        self.vacation = true;
        self.push(Action::Vacation(v))
    }

    /// The final list: flags made IMAP-safe, the implicit keep added when it still applies.
    pub(crate) fn finish(self, keep_flags: Vec<String>, warnings: &mut Vec<String>) -> Vec<Action> {
        let mut list = self.list;
        if self.implicit_keep {
            list.push(Action::Keep { flags: keep_flags });
        }
        for a in &mut list {
            if let Action::Keep { flags } | Action::FileInto { flags, .. } = a {
                *flags = flags::sanitize(std::mem::take(flags), warnings);
            }
        }
        list
    }
}
