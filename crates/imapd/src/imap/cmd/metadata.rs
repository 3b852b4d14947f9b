//! METADATA (RFC 5464): GETMETADATA and SETMETADATA on the server (mailbox `""`) and on
//! mailboxes, with the I/O-free rules (entry-name syntax, DEPTH/MAXSIZE selection, limits)
//! as plain functions; storage is `postern_maildir::metadata`.
//!
//! - Entry names (§3.2) are slash-separated, start with `/private` or `/shared`, contain no
//!   `*`, `%`, NUL or other control characters, no `//` and no trailing `/`; they are
//!   compared case-insensitively (kept in lower case). A name that breaks these rules is BAD.
//!   Under `/private/vendor` and `/shared/vendor` a vendor token must follow (§3.2.1, §3.2.2).
//! - Private and shared entries are distinct keys. In a single-user Maildir both are the
//!   user's own, so `[METADATA NOPRIVATE]` never arises: private entries are supported on
//!   the server and on every mailbox.
//! - Entries the server provides are read-only (`NO [NOPERM]`): the server's `/shared/admin`
//!   (`[imapd] metadata_admin`, else `mailto:` and `[smtpd] postmaster` when set) and
//!   `/shared/comment` (`[imapd] metadata_comment`), and each mailbox's `/private/specialuse`
//!   (its SPECIAL-USE attribute, RFC 6154 §4).
//! - GETMETADATA answers every requested entry (NIL when it has no value), plus the entries
//!   below it to the DEPTH asked; MAXSIZE leaves out longer values and reports the longest
//!   left out in `[METADATA LONGENTRIES n]`. Values with a NUL byte are sent as literal8.
//! - Limits (a stranger with an account is still a stranger): [`LIMITS`] — values up to
//!   64 KiB (`NO [METADATA MAXSIZE 65536]`), 128 entries per mailbox and 1024 per user
//!   (`NO [METADATA TOOMANY]`), 1 MiB of names and values per user (also `TOOMANY`), entry
//!   names up to [`MAX_ENTRY_NAME`] bytes. SETMETADATA is all or nothing.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use imap_codec::imap_types::core::{NString8, Vec1};
use imap_codec::imap_types::extensions::metadata::{
    Depth as WireDepth, Entry, EntryValue, GetMetadataOption,
};
use imap_codec::imap_types::mailbox::Mailbox as WireMailbox;
use postern_maildir::metadata::{Entries, MetadataLimits, MetadataRefusal, MetadataTarget};

use crate::imap::names;
use crate::imap::resp;
use crate::imap::session::{Session, store_error};
use crate::imap::tagged::{Tagged, other};

/// The storage limits: see the module documentation.
pub(crate) const LIMITS: MetadataLimits = MetadataLimits {
    max_value_bytes: 64 * 1024,
    max_entries_per_mailbox: 128,
    max_entries_per_user: 1024,
    max_bytes_per_user: 1024 * 1024,
};
/// Longest entry name, in bytes.
pub(crate) const MAX_ENTRY_NAME: usize = 256;

/// The server entries an administrator provides (`/shared/admin`, `/shared/comment`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServerInfo {
    /// `/shared/admin`: how to reach the administrator (a `mailto:` URI or an address).
    pub(crate) admin: Option<String>,
    /// `/shared/comment`: a note about the server.
    pub(crate) comment: Option<String>,
}

static SERVER_INFO: OnceLock<ServerInfo> = OnceLock::new();

/// Sets the server entries once, at startup (later calls are ignored).
pub(crate) fn set_server_info(info: ServerInfo) {
    let _ = SERVER_INFO.set(info);
}

fn server_info() -> ServerInfo {
    SERVER_INFO.get().cloned().unwrap_or_default()
}

/// How far below a requested entry GETMETADATA looks (§4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// The entry only.
    Zero,
    /// The entry and those immediately below it.
    One,
    /// The entry and everything below it.
    Infinity,
}

/// Validates an entry name (§3.2) and returns it in lower case, or why it is BAD.
pub(crate) fn entry_name(raw: &[u8]) -> Result<String, &'static str> {
    if raw.len() > MAX_ENTRY_NAME {
        return Err("Entry name too long");
    }
    let s = std::str::from_utf8(raw).map_err(|_| "Entry name is not UTF-8")?;
    if s.chars().any(|c| c.is_control()) {
        return Err("Entry name contains a control character");
    }
    if s.contains(['*', '%']) {
        return Err("Entry name contains * or %");
    }
    let Some(rest) = s.strip_prefix('/') else {
        return Err("Entry name must start with /private or /shared");
    };
    if s.ends_with('/') || s.contains("//") {
        return Err("Entry name has an empty component");
    }
    let s = s.to_ascii_lowercase();
    let first = rest.split('/').next().unwrap_or_default();
    if !first.eq_ignore_ascii_case("private") && !first.eq_ignore_ascii_case("shared") {
        return Err("Entry name must start with /private or /shared");
    }
    Ok(s)
}

/// Whether a (valid) entry name may carry a value: not the bare `/private` or `/shared`,
/// and a vendor token after `…/vendor`.
pub(crate) fn settable(name: &str) -> Result<(), &'static str> {
    let comps: Vec<&str> = name[1..].split('/').collect();
    if comps.len() < 2 {
        return Err("Entry name needs a component after /private or /shared");
    }
    if comps[1] == "vendor" && comps.len() < 3 {
        return Err("Vendor entries need a vendor token (/…/vendor/vendor.name/…)");
    }
    Ok(())
}

/// An entry GETMETADATA returns: its name and value (`None`: NIL).
pub(crate) type Selected<'a> = (String, Option<&'a [u8]>);

/// The entries GETMETADATA returns for `requested` (normalised names): each requested entry
/// with its value or `None` (NIL), plus the existing entries below it to `depth`, without
/// duplicates, in name order; values longer than `maxsize` are left out and the longest of
/// them is returned for `[METADATA LONGENTRIES n]`.
pub(crate) fn select<'a>(
    entries: &'a Entries,
    requested: &[String],
    depth: Depth,
    maxsize: Option<u32>,
) -> (Vec<Selected<'a>>, Option<usize>) {
    let mut found: BTreeMap<String, Option<&'a [u8]>> = BTreeMap::new();
    for name in requested {
        found
            .entry(name.clone())
            .or_insert_with(|| entries.get(name).map(Vec::as_slice));
        if depth == Depth::Zero {
            continue;
        }
        let prefix = format!("{name}/");
        for (k, v) in entries.range(prefix.clone()..) {
            let Some(below) = k.strip_prefix(&prefix) else {
                break;
            };
            if depth == Depth::One && below.contains('/') {
                continue;
            }
            found.insert(k.clone(), Some(v.as_slice()));
        }
    }
    let mut longest: Option<usize> = None;
    let out = found
        .into_iter()
        .filter(|(_, v)| match (v, maxsize) {
            (Some(v), Some(max)) if v.len() > max as usize => {
                longest = Some(longest.unwrap_or(0).max(v.len()));
                false
            }
            _ => true,
        })
        .collect();
    (out, longest)
}

/// Writes an entry name as an atom when it is one (RFC 9051 ASTRING-CHARs), else quoted.
fn write_entry(out: &mut Vec<u8>, name: &str, utf8: bool) {
    let atom = !name.is_empty()
        && name.bytes().all(|b| {
            b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        });
    if atom {
        out.extend_from_slice(name.as_bytes());
    } else {
        resp::string(out, name.as_bytes(), utf8);
    }
}

/// Writes a value: NIL, a quoted string, a literal, or a literal8 when it holds a NUL.
fn write_value(out: &mut Vec<u8>, v: Option<&[u8]>, utf8: bool) {
    match v {
        None => out.extend_from_slice(b"NIL"),
        Some(v) if v.contains(&0) => {
            out.extend_from_slice(format!("~{{{}}}\r\n", v.len()).as_bytes());
            out.extend_from_slice(v);
        }
        Some(v) => resp::string(out, v, utf8),
    }
}

/// The entries the server computes for `target` (read-only).
fn computed(target: MetadataTarget<'_>) -> Entries {
    let mut e = Entries::new();
    match target {
        MetadataTarget::Server => {
            let info = server_info();
            if let Some(a) = info.admin {
                e.insert("/shared/admin".into(), a.into_bytes());
            }
            if let Some(c) = info.comment {
                e.insert("/shared/comment".into(), c.into_bytes());
            }
        }
        MetadataTarget::Mailbox(name) => {
            if let Some(attr) = names::special_use(name) {
                e.insert("/private/specialuse".into(), attr.as_bytes().to_vec());
            }
        }
    }
    e
}

/// True if `name` is one of the server-provided entries of `target`.
fn read_only(target: MetadataTarget<'_>, name: &str) -> bool {
    match target {
        MetadataTarget::Server => name == "/shared/admin" || name == "/shared/comment",
        MetadataTarget::Mailbox(_) => name == "/private/specialuse",
    }
}

fn entry_bytes<'a>(e: &'a Entry<'_>) -> &'a [u8] {
    e.as_ref()
}

impl Session {
    /// The mailbox name of a METADATA command: `Ok(None)` for the server (`""`).
    fn metadata_mailbox(&self, mailbox: &WireMailbox<'_>) -> Result<Option<String>, Tagged> {
        let Some(name) = names::decode(mailbox, self.utf8()) else {
            return Err(Tagged::no_plain("Invalid mailbox name"));
        };
        Ok((!name.is_empty()).then_some(name))
    }

    /// GETMETADATA (§4.2).
    pub(crate) fn get_metadata(
        &mut self,
        options: &[GetMetadataOption],
        mailbox: &WireMailbox<'_>,
        entries: &Vec1<Entry<'static>>,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let (mut depth, mut maxsize) = (Depth::Zero, None);
        for o in options {
            match o {
                GetMetadataOption::MaxSize(n) => maxsize = Some(*n),
                GetMetadataOption::Depth(WireDepth::Null) => depth = Depth::Zero,
                GetMetadataOption::Depth(WireDepth::One) => depth = Depth::One,
                GetMetadataOption::Depth(WireDepth::Infinity) => depth = Depth::Infinity,
            }
        }
        let mut requested = Vec::new();
        for e in entries.as_ref() {
            match entry_name(entry_bytes(e)) {
                Ok(n) => requested.push(n),
                Err(why) => return Tagged::bad(why),
            }
        }
        // A command may repeat names (up to max_command_size): each is looked up once.
        requested.sort_unstable();
        requested.dedup();
        let name = match self.metadata_mailbox(mailbox) {
            Ok(n) => n,
            Err(t) => return t,
        };
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        let target = name
            .as_deref()
            .map_or(MetadataTarget::Server, MetadataTarget::Mailbox);
        let mut stored = match user.maildir.metadata(target) {
            Ok(e) => e,
            Err(e) => return store_error(&e),
        };
        stored.extend(computed(target));
        if let MetadataTarget::Mailbox(n) = target {
            // CREATE-SPECIAL-USE: the attribute stored with the folder decides.
            match super::create_special_use::special_use_of(&user.maildir, n) {
                Some(a) => stored.insert("/private/specialuse".into(), a.as_bytes().to_vec()),
                None => stored.remove("/private/specialuse"),
            };
        }
        let (items, longest) = select(&stored, &requested, depth, maxsize);
        if !items.is_empty() {
            let utf8 = self.utf8();
            let mut line = b"* METADATA ".to_vec();
            let shown = name.as_deref().map(|n| names::encode(n, utf8));
            resp::string(&mut line, shown.as_deref().unwrap_or("").as_bytes(), utf8);
            line.extend_from_slice(b" (");
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    line.push(b' ');
                }
                write_entry(&mut line, k, utf8);
                line.push(b' ');
                write_value(&mut line, *v, utf8);
            }
            line.extend_from_slice(b")\r\n");
            out.extend_from_slice(&line);
        }
        match longest {
            Some(n) => self.done_code(
                out,
                other(format!("METADATA LONGENTRIES {n}")),
                "GETMETADATA completed",
                true,
            ),
            None => self.done(out, "GETMETADATA completed"),
        }
    }

    /// SETMETADATA (§4.3): all or nothing.
    pub(crate) fn set_metadata(
        &mut self,
        mailbox: &WireMailbox<'_>,
        entry_values: Vec1<EntryValue<'static>>,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let name = match self.metadata_mailbox(mailbox) {
            Ok(n) => n,
            Err(t) => return t,
        };
        let target = name
            .as_deref()
            .map_or(MetadataTarget::Server, MetadataTarget::Mailbox);
        let mut changes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for ev in entry_values.into_inner() {
            let key =
                match entry_name(entry_bytes(&ev.entry)).and_then(|k| settable(&k).map(|()| k)) {
                    Ok(k) => k,
                    Err(why) => return Tagged::bad(why),
                };
            if read_only(target, &key) {
                return Tagged::no(other("NOPERM"), format!("{key} is set by the server"));
            }
            let value = match ev.value {
                NString8::NString(n) => n.0.map(|s| s.as_ref().to_vec()),
                NString8::Literal8(l) => Some(l.data.into_owned()),
            };
            changes.retain(|(k, _)| *k != key);
            changes.push((key, value));
        }
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        match user.maildir.set_metadata(target, &changes, &LIMITS) {
            Err(e) => store_error(&e),
            Ok(Err(MetadataRefusal::ValueTooLarge(max))) => {
                Tagged::no(other(format!("METADATA MAXSIZE {max}")), "Value too large")
            }
            Ok(Err(MetadataRefusal::TooManyEntries)) => {
                Tagged::no(other("METADATA TOOMANY"), "Too many metadata entries")
            }
            Ok(Err(MetadataRefusal::TooManyBytes)) => {
                Tagged::no(other("METADATA TOOMANY"), "Metadata storage limit reached")
            }
            Ok(Ok(())) => self.done(out, "SETMETADATA completed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_follow_section_3_2() {
        for ok in [
            "/private/comment",
            "/shared/comment",
            "/PRIVATE/Comment",
            "/private",
            "/shared/vendor/vendor.roundcube/x",
            "/private/über",
        ] {
            assert!(entry_name(ok.as_bytes()).is_ok(), "{ok}");
        }
        assert_eq!(entry_name(b"/Private/Foo").unwrap(), "/private/foo");
        for bad in [
            &b""[..],
            b"private/comment",
            b"/public/comment",
            b"/privatex/a",
            b"/private/",
            b"/private//a",
            b"/private/a*",
            b"/private/%",
            b"/private/a\0b",
            b"/private/a\nb",
            b"/private/\xff",
            b"/",
        ] {
            assert!(entry_name(bad).is_err(), "{bad:?}");
        }
        let long = format!("/private/{}", "a".repeat(MAX_ENTRY_NAME));
        assert!(entry_name(long.as_bytes()).is_err());
        assert!(settable("/private/comment").is_ok());
        assert!(settable("/shared/vendor/vendor.x").is_ok());
        assert!(settable("/private").is_err());
        assert!(settable("/shared/vendor").is_err());
    }

    fn entries(list: &[(&str, &str)]) -> Entries {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn names(r: &[(String, Option<&[u8]>)]) -> Vec<String> {
        r.iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={}", String::from_utf8_lossy(v)),
                None => format!("{k}=NIL"),
            })
            .collect()
    }

    #[test]
    fn depth_and_maxsize() {
        let e = entries(&[
            ("/private/a", "1"),
            ("/private/a/b", "22"),
            ("/private/a/b/c", "333"),
            ("/private/a/d", "4444"),
            ("/private/ab", "x"),
            ("/shared/a", "s"),
        ]);
        let req = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (r, l) = select(&e, &req(&["/private/a", "/private/zz"]), Depth::Zero, None);
        assert_eq!(names(&r), ["/private/a=1", "/private/zz=NIL"]);
        assert_eq!(l, None);
        let (r, _) = select(&e, &req(&["/private/a"]), Depth::One, None);
        assert_eq!(
            names(&r),
            ["/private/a=1", "/private/a/b=22", "/private/a/d=4444"]
        );
        let (r, _) = select(&e, &req(&["/private/a"]), Depth::Infinity, None);
        assert_eq!(
            names(&r),
            [
                "/private/a=1",
                "/private/a/b=22",
                "/private/a/b/c=333",
                "/private/a/d=4444"
            ]
        );
        // A parent without a value is NIL; overlapping requests give each entry once.
        let (r, _) = select(
            &e,
            &req(&["/private", "/private/a/b"]),
            Depth::Infinity,
            None,
        );
        assert_eq!(r.len(), 6);
        assert_eq!(names(&r)[0], "/private=NIL");
        let (r, l) = select(&e, &req(&["/private/a"]), Depth::Infinity, Some(2));
        assert_eq!(names(&r), ["/private/a=1", "/private/a/b=22"]);
        assert_eq!(l, Some(4));
    }

    #[test]
    fn values_are_written_safely() {
        let mut o = Vec::new();
        write_value(&mut o, None, false);
        o.push(b' ');
        write_value(&mut o, Some(b"plain \"q\""), false);
        o.push(b' ');
        write_value(&mut o, Some(b"a\r\nb"), false);
        o.push(b' ');
        write_value(&mut o, Some(b"x\0y"), false);
        assert_eq!(o, b"NIL \"plain \\\"q\\\"\" {4}\r\na\r\nb ~{3}\r\nx\0y");
        let mut o = Vec::new();
        write_entry(&mut o, "/private/a]b", false);
        o.push(b' ');
        write_entry(&mut o, "/private/a b\"", false);
        o.push(b' ');
        write_entry(&mut o, "/private/\u{fc}", true);
        assert_eq!(
            o,
            "/private/a]b \"/private/a b\\\"\" \"/private/\u{fc}\"".as_bytes()
        );
    }
}
