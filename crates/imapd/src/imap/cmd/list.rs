//! LIST/LSUB (with LIST-EXTENDED, SPECIAL-USE, CHILDREN, LIST-STATUS), and the commands
//! imap-codec does not parse yet: `LIST (sel-opts) ref pat RETURN (…)`, `LIST ref (pat pat)`
//! and `SEARCH RETURN (…)`, rewritten into plain commands plus options.

use std::collections::BTreeSet;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::status::StatusDataItemName;

use super::list_tree::{self, Query};
use super::search::SearchReturn;
use crate::imap::names::{self, Pattern};
use crate::imap::resp::{self, untagged};
use crate::imap::session::{Flow, Session, status_items};
use crate::imap::tagged::Tagged;

/// Most patterns one extended LIST may carry (`LIST "" (p1 p2 …)`).
const MAX_PATTERNS: usize = 100;

/// LIST-EXTENDED selection and return options.
#[derive(Debug, Default, Clone)]
pub(crate) struct ListOpts {
    pub(crate) sel_subscribed: bool,
    pub(crate) sel_special_use: bool,
    /// `RECURSIVEMATCH` (RFC 5258 §3): `CHILDINFO` for parents of selected names.
    pub(crate) recursive: bool,
    pub(crate) ret_subscribed: bool,
    pub(crate) ret_status: Option<Vec<StatusDataItemName>>,
}

/// A command recovered by [`reparse`].
pub(crate) enum Extended {
    List {
        tag: String,
        reference: Vec<u8>,
        patterns: Vec<Vec<u8>>,
        opts: ListOpts,
    },
    Search {
        cmd: Command<'static>,
        ret: SearchReturn,
    },
}

/// [`reparse`] as an extension job (see [`super::ext`]).
pub(crate) fn job(raw: &[u8]) -> Option<super::ext::Job> {
    Some(match reparse(raw)? {
        Extended::List {
            tag,
            reference,
            patterns,
            opts,
        } => Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
            s.list_extended(&tag, &reference, &patterns, &opts, out);
            Flow::Continue
        }),
        Extended::Search { cmd, ret } => Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
            let tag = cmd.tag.inner().to_owned();
            if let imap_codec::imap_types::command::CommandBody::Search {
                charset,
                criteria,
                uid,
            } = cmd.body
            {
                let t = if s.state.sel().is_none() {
                    Tagged::bad("No mailbox selected")
                } else {
                    s.search(&tag, charset.as_ref(), criteria, uid, &ret, out)
                };
                t.write(out, &tag);
            }
            Flow::Continue
        }),
    })
}

/// Tries to understand a command imap-codec refused: extended LIST and ESEARCH forms.
pub(crate) fn reparse(raw: &[u8]) -> Option<Extended> {
    let text = std::str::from_utf8(raw).ok()?;
    let line = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))?;
    let (tag, rest) = line.split_once(' ')?;
    let upper = rest.to_ascii_uppercase();
    if upper.starts_with("LIST ") {
        let mut t = Tokens::new(&rest[5..]);
        let mut opts = ListOpts::default();
        if t.peek() == Some('(') {
            for o in t.list()? {
                match o.to_ascii_uppercase().as_str() {
                    "SUBSCRIBED" => {
                        opts.sel_subscribed = true;
                        opts.ret_subscribed = true;
                    }
                    "SPECIAL-USE" => opts.sel_special_use = true,
                    "RECURSIVEMATCH" => opts.recursive = true,
                    "REMOTE" => {}
                    _ => return None,
                }
            }
        }
        let reference = t.astring()?;
        let patterns = if t.peek() == Some('(') {
            t.list()?.into_iter().map(String::into_bytes).collect()
        } else {
            vec![t.astring()?]
        };
        if t.word().is_some_and(|w| w.eq_ignore_ascii_case("RETURN")) {
            let items = t.list_nested()?;
            let mut i = 0;
            while i < items.len() {
                match items[i].to_ascii_uppercase().as_str() {
                    "SUBSCRIBED" => opts.ret_subscribed = true,
                    "CHILDREN" | "SPECIAL-USE" => {}
                    "STATUS" => {
                        let inner = items.get(i + 1)?;
                        let mut st = Vec::new();
                        for w in inner.split_whitespace() {
                            st.push(status_name(w)?);
                        }
                        opts.ret_status = Some(st);
                        i += 1;
                    }
                    _ => return None,
                }
                i += 1;
            }
        }
        if !t.at_end() {
            return None;
        }
        return Some(Extended::List {
            tag: tag.to_owned(),
            reference,
            patterns,
            opts,
        });
    }
    // `[UID ]SEARCH RETURN (opts) criteria…`
    let (uid, after) = if upper.starts_with("UID SEARCH RETURN ") {
        (true, &rest[18..])
    } else if upper.starts_with("SEARCH RETURN ") {
        (false, &rest[14..])
    } else {
        return None;
    };
    let mut t = Tokens::new(after);
    let opts = t.list()?;
    let remaining = t.rest();
    let mut ret = SearchReturn::Extended {
        min: false,
        max: false,
        all: false,
        count: false,
        save: false,
    };
    if let SearchReturn::Extended {
        min,
        max,
        all,
        count,
        save,
    } = &mut ret
    {
        for o in &opts {
            match o.to_ascii_uppercase().as_str() {
                "MIN" => *min = true,
                "MAX" => *max = true,
                "ALL" => *all = true,
                "COUNT" => *count = true,
                "SAVE" => *save = true,
                _ => return None,
            }
        }
        if opts.is_empty() {
            *all = true;
        }
    }
    let rebuilt = format!(
        "{tag} {}SEARCH {remaining}\r\n",
        if uid { "UID " } else { "" }
    );
    let (rem, cmd) = CommandCodec::default().decode(rebuilt.as_bytes()).ok()?;
    if !rem.is_empty() {
        return None;
    }
    Some(Extended::Search {
        cmd: cmd.into_static(),
        ret,
    })
}

fn status_name(w: &str) -> Option<StatusDataItemName> {
    Some(match w.to_ascii_uppercase().as_str() {
        "MESSAGES" => StatusDataItemName::Messages,
        "RECENT" => StatusDataItemName::Recent,
        "UIDNEXT" => StatusDataItemName::UidNext,
        "UIDVALIDITY" => StatusDataItemName::UidValidity,
        "UNSEEN" => StatusDataItemName::Unseen,
        "DELETED" => StatusDataItemName::Deleted,
        "SIZE" => StatusDataItemName::Size,
        "HIGHESTMODSEQ" => StatusDataItemName::HighestModSeq,
        _ => return None,
    })
}

/// A tiny tokenizer for the extended forms (atoms, quoted strings, parenthesised lists).
struct Tokens<'a> {
    s: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(s: &'a str) -> Self {
        Self { s }
    }
    fn skip_ws(&mut self) {
        self.s = self.s.trim_start_matches(' ');
    }
    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.s.chars().next()
    }
    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.s.is_empty()
    }
    fn rest(&mut self) -> &'a str {
        self.skip_ws();
        self.s
    }
    fn word(&mut self) -> Option<String> {
        self.skip_ws();
        let end = self.s.find([' ', '(', ')']).unwrap_or(self.s.len());
        if end == 0 {
            return None;
        }
        let w = &self.s[..end];
        self.s = &self.s[end..];
        Some(w.to_owned())
    }
    fn astring(&mut self) -> Option<Vec<u8>> {
        self.skip_ws();
        if let Some(r) = self.s.strip_prefix('"') {
            let mut v = Vec::new();
            let mut it = r.char_indices();
            while let Some((i, c)) = it.next() {
                match c {
                    '\\' => {
                        let (_, e) = it.next()?;
                        let mut b = [0; 4];
                        v.extend_from_slice(e.encode_utf8(&mut b).as_bytes());
                    }
                    '"' => {
                        self.s = &r[i + 1..];
                        return Some(v);
                    }
                    c => {
                        let mut b = [0; 4];
                        v.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                    }
                }
            }
            None
        } else if self.s.starts_with('{') {
            // literal: `{n}\r\n` + data
            let close = self.s.find('}')?;
            let n: usize = self.s[1..close].trim_end_matches('+').parse().ok()?;
            let after = self.s[close + 1..].strip_prefix("\r\n")?;
            if after.len() < n || !after.is_char_boundary(n) {
                return None;
            }
            let v = after.as_bytes()[..n].to_vec();
            self.s = &after[n..];
            Some(v)
        } else {
            self.word().map(String::into_bytes)
        }
    }
    /// `(a b "c")` → items.
    fn list(&mut self) -> Option<Vec<String>> {
        self.skip_ws();
        self.s = self.s.strip_prefix('(')?;
        let mut v = Vec::new();
        loop {
            match self.peek()? {
                ')' => {
                    self.s = &self.s[1..];
                    return Some(v);
                }
                _ => v.push(String::from_utf8(self.astring()?).ok()?),
            }
        }
    }
    /// `(A STATUS (X Y) B)` → `["A", "STATUS", "X Y", "B"]`.
    fn list_nested(&mut self) -> Option<Vec<String>> {
        self.skip_ws();
        self.s = self.s.strip_prefix('(')?;
        let mut v = Vec::new();
        loop {
            match self.peek()? {
                ')' => {
                    self.s = &self.s[1..];
                    return Some(v);
                }
                '(' => v.push(self.list()?.join(" ")),
                _ => v.push(self.word()?),
            }
        }
    }
}

impl Session {
    /// LIST/LSUB.
    pub(crate) fn list(
        &mut self,
        reference: &str,
        patterns: &[String],
        opts: &ListOpts,
        lsub: bool,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let utf8 = self.utf8();
        let kw = if lsub { "LSUB" } else { "LIST" };
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        if patterns.len() > MAX_PATTERNS {
            // Each pattern is matched against every folder: 30 000 of them (one 64 KiB
            // command) against 200 folders took minutes.
            return Tagged::bad("Too many LIST patterns");
        }
        if !lsub && patterns.len() == 1 && patterns[0].is_empty() {
            untagged(out, "LIST (\\Noselect) \"/\" \"\"");
            return self.done(out, "LIST completed");
        }
        let md = user.maildir.clone();
        let mut existing: BTreeSet<String> = match md.list_folders() {
            Ok(v) => v.into_iter().collect(),
            Err(e) => return crate::imap::session::store_error(&e),
        };
        existing.insert("INBOX".to_owned());
        let subs: BTreeSet<String> = md.subscriptions().unwrap_or_default().into_iter().collect();
        let pats: Vec<Pattern> = patterns
            .iter()
            .map(|p| Pattern::new(reference, p))
            .collect();
        let q = Query {
            lsub,
            sel_subscribed: opts.sel_subscribed && !lsub,
            sel_special_use: opts.sel_special_use && !lsub,
            recursive: opts.recursive,
            ret_subscribed: opts.ret_subscribed && !lsub,
        };
        // RFC 6154: stored attributes (CREATE-SPECIAL-USE) and the default folders'.
        let su = super::create_special_use::special_uses(&md, existing.iter().map(String::as_str));
        for row in list_tree::rows(&existing, &subs, &pats, &q, |n| su.get(n).copied()) {
            let mut line = format!("* {kw} ({}) \"/\" ", row.attrs.join(" ")).into_bytes();
            resp::string(&mut line, names::encode(&row.name, utf8).as_bytes(), utf8);
            if !row.childinfo.is_empty() {
                let items: Vec<String> = row.childinfo.iter().map(|c| format!("\"{c}\"")).collect();
                line.extend_from_slice(
                    format!(" (\"CHILDINFO\" ({}))", items.join(" ")).as_bytes(),
                );
            }
            line.extend_from_slice(b"\r\n");
            out.extend_from_slice(&line);
            if row.exists
                && !lsub
                && let Some(items) = &opts.ret_status
            {
                let _ = self.status_line(&row.name, items, out);
            }
        }
        crate::imap::shared::list_shared(self, reference, patterns, opts, lsub, out);
        self.done(out, format!("{kw} completed"))
    }

    /// `* STATUS name (…)`; nothing if the mailbox cannot be opened.
    pub(crate) fn status_line(
        &mut self,
        name: &str,
        items: &[StatusDataItemName],
        out: &mut Vec<u8>,
    ) -> Result<(), (&'static str, String)> {
        let utf8 = self.utf8();
        let text = if let Some(sel) = self.state.sel_mut().filter(|s| s.name == name) {
            sel.pull();
            let recent = u32::try_from(sel.recent.len()).unwrap_or(0);
            let t = status_items(&sel.mbox, items, recent);
            super::objectid::status_text(&self.objectid, &mut sel.mbox, t)
        } else {
            let Some(user) = self.state.user() else {
                return Ok(());
            };
            match user.maildir.open_mailbox(name) {
                Ok(mut m) => {
                    let recent = u32::try_from(m.unclaimed_recent()).unwrap_or(u32::MAX);
                    let t = status_items(&m, items, recent);
                    super::objectid::status_text(&self.objectid, &mut m, t)
                }
                Err(e) => return Err(crate::imap::session::store_error_parts(&e)),
            }
        };
        if items.contains(&StatusDataItemName::HighestModSeq) {
            self.enabled.condstore = true;
        }
        let mut line = b"* STATUS ".to_vec();
        resp::string(&mut line, names::encode(name, utf8).as_bytes(), utf8);
        line.extend_from_slice(format!(" ({text})\r\n").as_bytes());
        out.extend_from_slice(&line);
        Ok(())
    }

    /// An extended LIST recovered by [`reparse`].
    pub(crate) fn list_extended(
        &mut self,
        tag: &str,
        reference: &[u8],
        patterns: &[Vec<u8>],
        opts: &ListOpts,
        out: &mut Vec<u8>,
    ) -> Flow {
        if self.state.user().is_none() {
            Tagged::bad("Log in first").write(out, tag);
            return Flow::Continue;
        }
        if opts.recursive && !opts.sel_subscribed && !opts.sel_special_use {
            // RFC 5258 §3: RECURSIVEMATCH alone (or with REMOTE) is BAD.
            Tagged::bad("RECURSIVEMATCH needs another selection option").write(out, tag);
            return Flow::Continue;
        }
        let utf8 = self.utf8();
        let r = names::decode_bytes(reference, utf8).unwrap_or_default();
        let p: Vec<String> = patterns
            .iter()
            .filter_map(|p| names::decode_bytes(p, utf8))
            .collect();
        self.list(&r, &p, opts, false, out).write(out, tag);
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::command::CommandBody;

    #[test]
    fn reparse_list() {
        let Some(Extended::List {
            reference,
            patterns,
            opts,
            ..
        }) = reparse(
            b"a LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
        )
        else {
            panic!()
        };
        assert!(reference.is_empty() && patterns == vec![b"*".to_vec()]);
        assert!(opts.sel_subscribed);
        assert_eq!(opts.ret_status.unwrap().len(), 2);
        assert!(matches!(
            reparse(b"a LIST \"\" (INBOX Sent)\r\n"),
            Some(Extended::List { .. })
        ));
        assert!(reparse(b"a LIST (BOGUS) \"\" *\r\n").is_none());
    }

    #[test]
    fn reparse_search() {
        let Some(Extended::Search { cmd, ret }) =
            reparse(b"t UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n")
        else {
            panic!()
        };
        assert!(matches!(cmd.body, CommandBody::Search { uid: true, .. }));
        assert!(matches!(
            ret,
            SearchReturn::Extended {
                min: true,
                count: true,
                max: false,
                all: false,
                save: false
            }
        ));
    }
}
