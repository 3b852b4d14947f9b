//! CREATE-SPECIAL-USE (RFC 6154 §3): `CREATE name (USE (\Sent))`, which imap-codec cannot
//! parse (CREATE has no parameters there).
//!
//! - The attributes a mailbox may be given are the ones this server gives its own folders:
//!   `\Archive \Drafts \Junk \Sent \Trash`. `\All` and `\Flagged` (virtual mailboxes this
//!   server does not have), any other attribute, and more than one attribute are refused with
//!   `NO [USEATTR]`, and so is an attribute another mailbox holds (one mailbox per role, so
//!   clients never have to choose); nothing is created then (§3: the server "MUST NOT create
//!   the mailbox").
//! - The attribute is stored with the folder (`postern_maildir::special_use`): it survives
//!   restarts, follows RENAME, goes with DELETE, and shows in LIST, LIST (SPECIAL-USE) and the
//!   `/private/specialuse` METADATA entry.
//! - `USE ()` is a plain CREATE; any other create parameter is `BAD` (RFC 4466 §2.1).

use postern_maildir::special_use::SpecialUseCreated;

use super::ext::Job;
use crate::imap::names;
use crate::imap::session::{Flow, Session, parents, store_error};
use crate::imap::tagged::{Tagged, other};

/// The attributes a CREATE may give (RFC 6154 §2 names; what this server supports).
pub(crate) const SUPPORTED: [&str; 5] = ["\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"];

/// A parsed `CREATE name (USE (attrs))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateUse {
    pub(crate) tag: String,
    pub(crate) mailbox: Vec<u8>,
    pub(crate) attrs: Vec<String>,
}

/// The `ext.rs` hook.
pub(crate) fn job(raw: &[u8]) -> Option<Job> {
    let c = parse(raw)?;
    Some(Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
        let t = s.create_special_use(&c, out);
        t.write(out, &c.tag);
        Flow::Continue
    }))
}

/// `tag CREATE mailbox SP "(" "USE" SP "(" [use-attr *(SP use-attr)] ")" ")"` (RFC 6154 §6),
/// one line (a literal mailbox name is left to the generic BAD). `None` when it is not that.
pub(crate) fn parse(raw: &[u8]) -> Option<CreateUse> {
    if raw.len() > 4096 {
        return None;
    }
    let line = std::str::from_utf8(raw).ok()?;
    let line = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))?;
    let (tag, rest) = line.split_once(' ')?;
    let (cmd, rest) = rest.split_once(' ')?;
    if !cmd.eq_ignore_ascii_case("CREATE") || tag.is_empty() {
        return None;
    }
    let (mailbox, rest) = if let Some(q) = rest.strip_prefix('"') {
        let mut name = Vec::new();
        let mut it = q.char_indices();
        let end = loop {
            let (i, c) = it.next()?;
            match c {
                '"' => break i,
                '\\' => {
                    let (_, e) = it.next()?;
                    if e != '"' && e != '\\' {
                        return None;
                    }
                    name.push(e as u8);
                }
                c => {
                    let mut b = [0; 4];
                    name.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        };
        (name, &q[end + 1..])
    } else {
        let end = rest.find(' ')?;
        let atom = &rest[..end];
        if atom.is_empty() || atom.bytes().any(|b| b"(){%*\"\\".contains(&b) || b < 0x21) {
            return None;
        }
        (atom.as_bytes().to_vec(), &rest[end..])
    };
    let params = rest.strip_prefix(" (")?.strip_suffix(')')?;
    let (word, list) = params.split_once(' ')?;
    if !word.eq_ignore_ascii_case("USE") {
        return None;
    }
    let inner = list.strip_prefix('(')?.strip_suffix(')')?;
    let attrs: Vec<String> = if inner.is_empty() {
        Vec::new()
    } else {
        inner.split(' ').map(str::to_owned).collect()
    };
    if attrs.len() > 16
        || attrs.iter().any(|a| {
            a.strip_prefix('\\').is_none_or(|r| {
                r.is_empty() || r.bytes().any(|b| b"(){%*\"\\]".contains(&b) || b < 0x21)
            })
        })
    {
        return None;
    }
    Some(CreateUse {
        tag: tag.to_owned(),
        mailbox,
        attrs,
    })
}

impl Session {
    /// CREATE with USE (RFC 6154 §3).
    pub(crate) fn create_special_use(&mut self, c: &CreateUse, out: &mut Vec<u8>) -> Tagged {
        let Some(name) = names::decode_bytes(&c.mailbox, self.utf8()) else {
            return Tagged::no(other("CANNOT"), "Invalid mailbox name");
        };
        let name = name.strip_suffix('/').map(str::to_owned).unwrap_or(name);
        if name == "INBOX" {
            return Tagged::no(other("ALREADYEXISTS"), "INBOX always exists");
        }
        // `Shared/` names other users' mailboxes (`shared.rs`): none is made here.
        if crate::imap::shared::is_shared_name(&name) {
            return Tagged::no(
                other("CANNOT"),
                "Shared is the namespace of other users' mailboxes",
            );
        }
        let attr = match c.attrs.as_slice() {
            [] => None,
            [a] => match SUPPORTED.iter().find(|s| s.eq_ignore_ascii_case(a)) {
                Some(s) => Some(*s),
                None => {
                    return Tagged::no(other("USEATTR"), format!("{a} is not supported here"));
                }
            },
            _ => {
                return Tagged::no(other("USEATTR"), "One special-use attribute per mailbox");
            }
        };
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        let md = user.maildir.clone();
        if let Err(e) = postern_maildir::folder::dir_name(&name) {
            return Tagged::no(other("CANNOT"), format!("Invalid mailbox name: {e}"));
        }
        if md.folder_exists(&name).unwrap_or(false) {
            return Tagged::no(other("ALREADYEXISTS"), "Mailbox exists");
        }
        let Some(attr) = attr else {
            return match md.create_folder(&name) {
                Ok(true) => self.create_parents(&md, &name, out),
                Ok(false) => Tagged::no(other("ALREADYEXISTS"), "Mailbox exists"),
                Err(e) => store_error(&e),
            };
        };
        match md.create_folder_with_special_use(&name, attr) {
            Ok(SpecialUseCreated::Created) => self.create_parents(&md, &name, out),
            Ok(SpecialUseCreated::Exists) => Tagged::no(other("ALREADYEXISTS"), "Mailbox exists"),
            Ok(SpecialUseCreated::InUse(holder)) => Tagged::no(
                other("USEATTR"),
                format!(
                    "{attr} is the attribute of {}",
                    names::encode(&holder, self.utf8()).replace(|c: char| c.is_control(), "?")
                ),
            ),
            Err(e) => store_error(&e),
        }
    }

    /// Creates the missing parents of a created folder (as CREATE does) and answers OK.
    fn create_parents(
        &mut self,
        md: &postern_maildir::Maildir,
        name: &str,
        out: &mut Vec<u8>,
    ) -> Tagged {
        for p in parents(name).filter(|p| !names::normalise_inbox((*p).to_owned()).eq("INBOX")) {
            if let Err(e) = md.create_folder(p) {
                return store_error(&e);
            }
        }
        self.done(out, "CREATE completed")
    }
}

/// The special-use attribute of each existing folder (LIST, METADATA): stored attributes
/// first, then the default folders' by name.
pub(crate) fn special_uses<'a>(
    md: &postern_maildir::Maildir,
    folders: impl IntoIterator<Item = &'a str>,
) -> std::collections::BTreeMap<String, &'static str> {
    md.special_uses(folders)
        .into_iter()
        .filter_map(|(n, a)| {
            SUPPORTED
                .iter()
                .find(|s| s.eq_ignore_ascii_case(&a))
                .map(|s| (n, *s))
        })
        .collect()
}

/// One folder's special-use attribute, as LIST shows it.
pub(crate) fn special_use_of(md: &postern_maildir::Maildir, name: &str) -> Option<&'static str> {
    let folders = md.list_folders().ok()?;
    special_uses(md, folders.iter().map(String::as_str))
        .get(name)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6154 §6: `create-param =/ "USE" SP "(" [use-attr *(SP use-attr)] ")"`.
    #[test]
    fn create_use_parses() {
        let c = parse(b"t1 CREATE MySent (USE (\\Sent))\r\n").unwrap();
        assert_eq!(c.mailbox, b"MySent");
        assert_eq!(c.attrs, vec!["\\Sent"]);
        let c = parse(b"t1 create \"My \\\"S\" (use ())\r\n").unwrap();
        assert_eq!(c.mailbox, b"My \"S");
        assert!(c.attrs.is_empty());
        let c = parse(b"t CREATE x (USE (\\Sent \\Drafts))\n").unwrap();
        assert_eq!(c.attrs.len(), 2);
        for bad in [
            &b"t CREATE x (USE (Sent))\r\n"[..],
            b"t CREATE x (USE ((\\Sent)))\r\n",
            b"t CREATE x (FOO (\\Sent))\r\n",
            b"t CREATE x (USE \\Sent)\r\n",
            b"t CREATE x\r\n",
            b"t DELETE x (USE (\\Sent))\r\n",
            b"t CREATE x (USE (\\Sent)) extra\r\n",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
