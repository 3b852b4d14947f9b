//! ACL (RFC 4314): SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS — parsed here from the
//! raw command (imap-codec has no ACL syntax; see `ext.rs`), run on the mailbox's
//! `dovecot-acl` (`postern_maildir::acl`). The mailbox is one of the user's own (they own it:
//! every right) or `Shared/<owner>/<folder>` (`shared.rs` resolves it and gives the rights).
//!
//! Rights needed (§3, §4): SETACL, DELETEACL, GETACL and LISTRIGHTS need `a`; MYRIGHTS needs
//! any right. Without `l` the answer is that of a mailbox that does not exist. A rights
//! string with a character that is not a right is `BAD` (§3.1), as is an identifier with
//! spaces, control characters or other bytes no account name has.

use std::sync::Arc;

use postern_maildir::acl::{Acl, Identifier, Rights};

use super::super::names;
use super::super::resp;
use super::super::session::{Flow, Session, store_error};
use super::super::shared::{Owner, deny};
use super::super::tagged::{Tagged, other};
use super::ext::Job;
use super::token;

/// Longest argument (a mailbox name, an identifier or a rights string).
const MAX_ARG: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    SetAcl,
    DeleteAcl,
    GetAcl,
    ListRights,
    MyRights,
}

impl Verb {
    fn from_name(n: &[u8]) -> Option<Self> {
        Some(match n.to_ascii_uppercase().as_slice() {
            b"SETACL" => Self::SetAcl,
            b"DELETEACL" => Self::DeleteAcl,
            b"GETACL" => Self::GetAcl,
            b"LISTRIGHTS" => Self::ListRights,
            b"MYRIGHTS" => Self::MyRights,
            _ => return None,
        })
    }

    fn args(self) -> usize {
        match self {
            Self::SetAcl => 3,
            Self::DeleteAcl | Self::ListRights => 2,
            Self::GetAcl | Self::MyRights => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::SetAcl => "SETACL",
            Self::DeleteAcl => "DELETEACL",
            Self::GetAcl => "GETACL",
            Self::ListRights => "LISTRIGHTS",
            Self::MyRights => "MYRIGHTS",
        }
    }
}

/// Splits a command into its astrings (atom, quoted string or literal), linear in the input.
/// `None` for bad syntax.
fn astrings(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let raw = raw
        .strip_suffix(b"\r\n")
        .or_else(|| raw.strip_suffix(b"\n"))
        .unwrap_or(raw);
    let mut v = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if v.len() > 8 {
            return None;
        }
        let (tok, next) = match raw[i] {
            b'"' => token::quoted(raw, i)?,
            b'{' => {
                let (l, next) = token::literal(raw, i)?;
                if l.range.len() > MAX_ARG {
                    return None;
                }
                (raw[l.range].to_vec(), next)
            }
            _ => {
                let end = raw[i..]
                    .iter()
                    .position(|&b| b == b' ')
                    .map_or(raw.len(), |p| i + p);
                let tok = &raw[i..end];
                if tok.is_empty()
                    || tok
                        .iter()
                        .any(|&b| b <= b' ' || b >= 0x7f || b"(){%*\"\\".contains(&b))
                {
                    return None;
                }
                (tok.to_vec(), end)
            }
        };
        if tok.len() > MAX_ARG {
            return None;
        }
        v.push(tok);
        i = next;
        if i < raw.len() {
            if raw[i] != b' ' {
                return None;
            }
            i += 1;
            if i == raw.len() {
                return None;
            }
        }
    }
    Some(v)
}

/// An astring: an atom when the bytes allow one (Dovecot writes `* ACL Team bob lr`), a
/// quoted string or literal otherwise.
fn astr(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let atom = !s.is_empty()
        && s.iter()
            .all(|&b| b > b' ' && b < 0x7f && !b"(){%*\"\\]".contains(&b));
    if atom && !s.eq_ignore_ascii_case(b"NIL") {
        out.extend_from_slice(s);
    } else {
        resp::string(out, s, utf8);
    }
}

/// The job for an ACL command (see `ext.rs`): the command name is checked first, cheaply.
pub(crate) fn job(raw: &[u8]) -> Option<Job> {
    let sp = raw.iter().take(200).position(|&b| b == b' ')?;
    let rest = &raw[sp + 1..];
    let end = rest
        .iter()
        .take(12)
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(rest.len().min(12));
    let verb = Verb::from_name(&rest[..end])?;
    let tag = String::from_utf8_lossy(&raw[..sp]).into_owned();
    let parsed = astrings(raw);
    Some(Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
        let t = match parsed {
            Some(args) if args.len() == verb.args() + 2 => run(s, verb, &args[2..], out),
            _ => Tagged::bad(format!("{}: bad arguments (RFC 4314)", verb.name())),
        };
        t.write(out, &tag);
        Flow::Continue
    }))
}

/// The mailbox an ACL command is about.
struct Target {
    owner: Arc<Owner>,
    folder: String,
    rights: Rights,
    /// The name as the client gave it (echoed in responses).
    name: String,
}

fn target(s: &mut Session, raw: &[u8]) -> Result<Target, Tagged> {
    let name = names::decode_bytes(raw, s.utf8())
        .ok_or_else(|| Tagged::no(other("NONEXISTENT"), "No such mailbox"))?;
    if let Some(a) = s.shared_access(&name) {
        let a = a?;
        return Ok(Target {
            owner: a.owner,
            folder: a.folder,
            rights: a.rights,
            name,
        });
    }
    let user = s
        .state
        .user()
        .map(|u| u.name.clone())
        .ok_or_else(|| Tagged::bad("Log in first"))?;
    let owner = s.shared_owner(&user)?;
    if !owner.maildir.folder_exists(&name).unwrap_or(false) {
        return Err(Tagged::no(other("NONEXISTENT"), "No such mailbox"));
    }
    Ok(Target {
        owner,
        folder: name.clone(),
        rights: Rights::ALL,
        name,
    })
}

/// An identifier argument: `-name` is negative rights (§2).
fn identifier(raw: &[u8]) -> Result<(bool, Identifier), Tagged> {
    let s = std::str::from_utf8(raw).map_err(|_| Tagged::bad("Invalid identifier"))?;
    let (neg, id) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    Identifier::from_imap(id)
        .map(|i| (neg, i))
        .map_err(|why| Tagged::bad(format!("Invalid identifier: {why}")))
}

fn run(s: &mut Session, verb: Verb, args: &[Vec<u8>], out: &mut Vec<u8>) -> Tagged {
    let t = match target(s, &args[0]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let utf8 = s.utf8();
    let mut mbox = Vec::new();
    astr(&mut mbox, names::encode(&t.name, utf8).as_bytes(), utf8);
    let need_admin = !matches!(verb, Verb::MyRights);
    if need_admin && !t.rights.has('a') {
        return deny(t.rights, "a");
    }
    // §4: MYRIGHTS needs any of "l r i k x a" (with only others, e.g. "w", the mailbox is
    // answered as nonexistent, as SELECT answers it).
    let reveal = Rights::parse_imap("lrikxa").unwrap_or_default();
    if t.rights.is_empty() || !t.rights.intersects(reveal) {
        return deny(t.rights, "l");
    }
    match verb {
        Verb::MyRights => {
            let mut line = b"* MYRIGHTS ".to_vec();
            line.extend_from_slice(&mbox);
            line.push(b' ');
            astr(&mut line, t.rights.imap_string_compat().as_bytes(), false);
            line.extend_from_slice(b"\r\n");
            out.extend_from_slice(&line);
            s.done(out, "MYRIGHTS completed")
        }
        Verb::GetAcl => {
            let acl = match t.owner.maildir.acl(&t.folder) {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    tracing::warn!(owner = %t.owner.name, folder = %t.folder, error = %e, "ACL file refused");
                    return Tagged::no(other("SERVERBUG"), "The mailbox's ACL cannot be read");
                }
                Err(e) => return store_error(&e),
            };
            let mut line = b"* ACL ".to_vec();
            line.extend_from_slice(&mbox);
            // The owner always has every right (listed first, as Dovecot does).
            line.push(b' ');
            astr(&mut line, t.owner.name.as_bytes(), false);
            line.push(b' ');
            line.extend_from_slice(Rights::ALL.imap_string().as_bytes());
            for e in &acl.entries {
                if e.id == Identifier::Owner && !e.negative {
                    continue;
                }
                line.push(b' ');
                astr(&mut line, e.imap_id().as_bytes(), false);
                line.push(b' ');
                astr(&mut line, e.rights.imap_string().as_bytes(), false);
            }
            line.extend_from_slice(b"\r\n");
            out.extend_from_slice(&line);
            s.done(out, "GETACL completed")
        }
        Verb::ListRights => {
            let (_, id) = match identifier(&args[1]) {
                Ok(x) => x,
                Err(e) => return e,
            };
            let mut line = b"* LISTRIGHTS ".to_vec();
            line.extend_from_slice(&mbox);
            line.push(b' ');
            astr(&mut line, &args[1], false);
            let is_owner = matches!(&id, Identifier::Owner)
                || matches!(&id, Identifier::User(u) if u.eq_ignore_ascii_case(&t.owner.name));
            if is_owner {
                // §3.7: the owner's rights are all required (they cannot lose them).
                line.push(b' ');
                line.extend_from_slice(Rights::ALL.imap_string().as_bytes());
            } else {
                line.extend_from_slice(b" \"\" l r s w i p k x t e a c d");
            }
            line.extend_from_slice(b"\r\n");
            out.extend_from_slice(&line);
            s.done(out, "LISTRIGHTS completed")
        }
        Verb::SetAcl | Verb::DeleteAcl => {
            let (neg, id) = match identifier(&args[1]) {
                Ok(x) => x,
                Err(e) => return e,
            };
            // §3.1: "+" adds, "-" removes, otherwise the rights replace the entry's.
            let change = if verb == Verb::SetAcl {
                let Ok(raw) = std::str::from_utf8(&args[2]) else {
                    return Tagged::bad("Invalid rights");
                };
                let (op, letters) = match raw.as_bytes().first() {
                    Some(b'+') => (1, &raw[1..]),
                    Some(b'-') => (-1, &raw[1..]),
                    _ => (0, raw),
                };
                match Rights::parse_imap(letters) {
                    Ok(r) => Some((op, r)),
                    Err(c) => {
                        return Tagged::bad(format!(
                            "{c:?} is not a right this server knows (RFC 4314 §3.1)"
                        ));
                    }
                }
            } else {
                None
            };
            // "a" is checked again on the ACL as read under its lock: a revocation between
            // the first look and this write is not overwritten by a former administrator.
            let user = s.state.user().map(|u| u.name.clone()).unwrap_or_default();
            let is_owner = t.owner.name.eq_ignore_ascii_case(&user);
            let mut revoked = false;
            let res = t.owner.maildir.update_acl(&t.folder, |acl: &mut Acl| {
                if !is_owner && !acl.rights_for(&user, false).has('a') {
                    revoked = true;
                    return;
                }
                match change {
                    None => {
                        acl.remove(neg, &id);
                    }
                    Some((op, r)) => {
                        let cur = acl.get(neg, &id).unwrap_or_default();
                        let new = match op {
                            1 => cur.union(r),
                            -1 => cur.minus(r),
                            _ => r,
                        };
                        acl.set(neg, id.clone(), new);
                    }
                }
            });
            if let Err(e) = res {
                return store_error(&e);
            }
            if revoked {
                return Tagged::no(
                    other("NOPERM"),
                    "Permission denied: the \"a\" right was taken away (RFC 4314)",
                );
            }
            if let Err(e) = s.reindex(&t.owner) {
                tracing::warn!(owner = %t.owner.name, error = %e, "sharing index not updated");
                return Tagged::no(
                    other("SERVERBUG"),
                    "The ACL was changed, but the index of shared mailboxes could not be updated",
                );
            }
            tracing::info!(owner = %t.owner.name, folder = %t.folder, identifier = %id.imap(),
                negative = neg, command = verb.name(), "ACL changed");
            s.done(
                out,
                if verb == Verb::SetAcl {
                    "SETACL completed"
                } else {
                    "DELETEACL completed"
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn astrings_split_atoms_quoted_and_literals() {
        let v = astrings(b"a SETACL \"Team x\" {15}\r\nbob@example.org +lr\r\n").unwrap();
        assert_eq!(
            v,
            [
                b"a".to_vec(),
                b"SETACL".to_vec(),
                b"Team x".to_vec(),
                b"bob@example.org".to_vec(),
                b"+lr".to_vec()
            ]
        );
        assert!(astrings(b"a SETACL \"unterminated\r\n").is_none());
        assert!(astrings(b"a SETACL x  y\r\n").is_none());
        assert!(astrings(b"a SETACL {5}\r\nab").is_none());
        assert!(astrings(b"a SETACL {99999999999999999999}\r\n").is_none());
        let many = format!("a SETACL {}\r\n", "x ".repeat(100_000).trim_end());
        assert!(astrings(many.as_bytes()).is_none());
    }

    #[test]
    fn only_acl_commands_are_recognised() {
        assert!(job(b"a NOOP\r\n").is_none());
        assert!(job(b"a SETACLX x y z\r\n").is_none());
        assert!(job(b"a myrights INBOX\r\n").is_some());
        assert!(job(b"nospace").is_none());
    }
}
