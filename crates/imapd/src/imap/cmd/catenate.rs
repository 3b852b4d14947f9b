//! CATENATE (RFC 4469): a message built from literals and IMAP URLs (RFC 5092) to messages
//! and parts in the user's own mailboxes.
//!
//! - URLs (§3): relative ones, as the RFC uses them — `/Mailbox;UIDVALIDITY=n/;UID=n`
//!   with optional `/;SECTION=s` and `/;PARTIAL=o.l`, or `;UID=n…` for the selected mailbox —
//!   and the absolute form `imap://user@host/…` only when user and host are this session's.
//!   Anything else (another user or server, another scheme, URLAUTH, a search, `.`/`..`
//!   segments, a name the Maildir refuses, a UIDVALIDITY that does not match, a UID or a
//!   section that does not exist) is `NO [BADURL url]` (§4.1) with the first URL that failed.
//! - The octets appended are those `FETCH BODY.PEEK[section]<partial>` returns (§3); the
//!   source keeps its flags (no `\Seen`).
//! - Bounded: the message being built never exceeds APPENDLIMIT (`NO [TOOBIG]`, §4.2); source
//!   messages are read one at a time (the last one kept for the next URL to it), at most four
//!   mailboxes are kept open and [`MAX_OPENS`] opened, and one command reads at most
//!   [`READ_FACTOR`] × APPENDLIMIT of source messages, each URL with a section counting
//!   its message's size again (the part is found by parsing the whole message) (`NO
//!   [LIMIT]` beyond both). Mailbox
//!   names are resolved by the Maildir, which refuses anything that would leave the user's
//!   Maildir.

use std::borrow::Cow;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section};
use postern_imap_message::{partial, section};
use postern_maildir::{Mailbox, Maildir, MaildirError};

use super::multiappend::Lit;
use crate::imap::session::{Selected, store_error};
use crate::imap::tagged::{Tagged, other};

/// One command reads at most this many times APPENDLIMIT of source messages.
pub(crate) const READ_FACTOR: u64 = 4;
/// Mailboxes kept open for the URLs of one command.
const MAX_OPEN: usize = 4;
/// Mailbox opens one command may cause (each loads an index).
const MAX_OPENS: u32 = 32;
/// Longest URL accepted (longer ones are BADURL, reported shortened).
const MAX_URL: usize = 2048;

/// One part of a CATENATE list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CatPart {
    /// `TEXT literal`.
    Text(Lit),
    /// `URL astring`, as sent.
    Url(Vec<u8>),
}

/// What a URL points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlRef {
    /// `None`: the selected mailbox.
    pub(crate) mailbox: Option<String>,
    pub(crate) uid_validity: Option<u32>,
    pub(crate) uid: u32,
    pub(crate) section: Option<String>,
    pub(crate) partial: Option<(u32, u32)>,
}

/// The session's view of its own server, and what one command has read so far.
pub(crate) struct Sources<'a> {
    md: &'a Maildir,
    user: String,
    host: &'a str,
    limit: u64,
    budget: u64,
    opened: Vec<(String, Mailbox)>,
    opens: u32,
    /// (mailbox, UIDVALIDITY, UID) and the message.
    last: Option<((String, u32, u32), Vec<u8>)>,
}

impl<'a> Sources<'a> {
    pub(crate) fn new(md: &'a Maildir, user: String, host: &'a str, limit: u64) -> Self {
        Self {
            md,
            user,
            host,
            limit,
            budget: limit.saturating_mul(READ_FACTOR),
            opened: Vec::new(),
            opens: 0,
            last: None,
        }
    }
}

/// Why a URL part failed.
enum Fail {
    BadUrl,
    Tagged(Tagged),
}

/// Builds one CATENATE message (§3). Returns it and whether a TEXT part was a literal8.
pub(crate) fn build(
    src: &mut Sources<'_>,
    sel: Option<&Selected>,
    parts: &[CatPart],
    raw: &[u8],
) -> Result<(Vec<u8>, bool), Tagged> {
    let mut msg = Vec::new();
    let mut binary = false;
    let too_big = || Tagged::no(other("TOOBIG"), "The message would exceed APPENDLIMIT");
    for p in parts {
        match p {
            CatPart::Text(l) => {
                binary |= l.binary;
                if (msg.len() + l.range.len()) as u64 > src.limit {
                    return Err(too_big());
                }
                msg.extend_from_slice(&raw[l.range.clone()]);
            }
            CatPart::Url(url) => {
                let room = src.limit.saturating_sub(msg.len() as u64);
                match resolve(src, sel, url, room, &mut msg) {
                    Ok(()) => {}
                    Err(Fail::BadUrl) => return Err(bad_url(url)),
                    Err(Fail::Tagged(t)) => return Err(t),
                }
            }
        }
    }
    Ok((msg, binary))
}

/// `NO [BADURL url]`, the URL made safe for resp-text-code (§5: no `]`, no CR/LF).
fn bad_url(url: &[u8]) -> Tagged {
    let mut shown: String = url
        .iter()
        .take(MAX_URL)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) && b != b']' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    if shown.is_empty() {
        shown.push('?');
    }
    Tagged::no(other(format!("BADURL {shown}")), "Invalid URL")
}

/// Appends the octets `url` points to onto `msg`, at most `room` of them.
fn resolve(
    src: &mut Sources<'_>,
    sel: Option<&Selected>,
    url: &[u8],
    room: u64,
    msg: &mut Vec<u8>,
) -> Result<(), Fail> {
    let u = parse_url(url, &src.user, src.host).ok_or(Fail::BadUrl)?;
    let sel_name = sel.map(|s| s.name.as_str());
    let name = match (&u.mailbox, sel_name) {
        (Some(n), _) => n.clone(),
        (None, Some(s)) => s.to_owned(),
        (None, None) => return Err(Fail::BadUrl),
    };
    // The selected mailbox's view, unless the message joined the mailbox after the view's
    // last sync (appended by another session): then the mailbox is opened as it is now. A
    // selected mailbox of another user (shared) is not the user's own: never read here.
    let in_sel = sel.filter(|s| {
        same_mailbox(&s.name, &name)
            && s.mbox.path().starts_with(src.md.root())
            && s.mbox.get(u.uid).is_some()
    });
    if in_sel.is_none() && !src.opened.iter().any(|(n, _)| *n == name) {
        if src.opens == MAX_OPENS {
            return Err(Fail::Tagged(Tagged::no(
                other("LIMIT"),
                "CATENATE opens too many mailboxes in one command",
            )));
        }
        src.opens += 1;
        let m = match src.md.open_mailbox(&name) {
            Ok(m) => m,
            Err(MaildirError::NoSuchFolder(_) | MaildirError::Name { .. }) => {
                return Err(Fail::BadUrl);
            }
            Err(e) => return Err(Fail::Tagged(store_error(&e))),
        };
        if src.opened.len() == MAX_OPEN {
            src.opened.remove(0);
        }
        src.opened.push((name.clone(), m));
    }
    let mbox: &Mailbox = match in_sel {
        Some(s) => &s.mbox,
        None => match src.opened.iter().find(|(n, _)| *n == name) {
            Some((_, m)) => m,
            None => return Err(Fail::BadUrl),
        },
    };
    let validity = mbox.uid_validity();
    if u.uid_validity.is_some_and(|v| v != validity) {
        return Err(Fail::BadUrl);
    }
    let key = (name, validity, u.uid);
    if src.last.as_ref().is_none_or(|(k, _)| *k != key) {
        let meta = mbox.get(u.uid).ok_or(Fail::BadUrl)?;
        if meta.size > src.budget {
            return Err(Fail::Tagged(Tagged::no(
                other("LIMIT"),
                "CATENATE reads too much in one command",
            )));
        }
        src.budget -= meta.size;
        src.last = None;
        let data = match mbox.read(u.uid) {
            Ok(d) => d,
            Err(MaildirError::Expunged(_)) => return Err(Fail::BadUrl),
            Err(e) => return Err(Fail::Tagged(store_error(&e))),
        };
        src.last = Some((key, data));
    }
    let Some((_, whole)) = &src.last else {
        return Err(Fail::BadUrl);
    };
    let part: Cow<'_, [u8]> = match &u.section {
        None => Cow::Borrowed(whole.as_slice()),
        Some(s) => {
            let sec = parse_section(s).ok_or(Fail::BadUrl)?;
            // Finding the part parses the whole message: that work is charged too, each
            // time (one read of a large message must not pay for a thousand parses).
            let cost = whole.len() as u64;
            if cost > src.budget {
                return Err(Fail::Tagged(Tagged::no(
                    other("LIMIT"),
                    "CATENATE reads too much in one command",
                )));
            }
            src.budget -= cost;
            Cow::Owned(section(whole, Some(&sec)).ok_or(Fail::BadUrl)?)
        }
    };
    let part = match u.partial {
        Some((o, l)) => partial(&part, o, l),
        None => &part,
    };
    if part.len() as u64 > room {
        return Err(Fail::Tagged(Tagged::no(
            other("TOOBIG"),
            "The message would exceed APPENDLIMIT",
        )));
    }
    msg.extend_from_slice(part);
    Ok(())
}

/// A section-text of RFC 3501 (`1.2`, `HEADER`, `1.MIME`, `HEADER.FIELDS (A B)`…), parsed
/// by imap-codec inside a `FETCH BODY.PEEK[…]`.
fn parse_section(s: &str) -> Option<Section<'static>> {
    if s.len() > 1024 || s.bytes().any(|b| !(0x20..0x7f).contains(&b) || b == b']') {
        return None;
    }
    let cmd = format!("a FETCH 1 BODY.PEEK[{s}]\r\n");
    let (rem, cmd) = CommandCodec::default().decode(cmd.as_bytes()).ok()?;
    if !rem.is_empty() {
        return None;
    }
    let CommandBody::Fetch {
        macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(items),
        ..
    } = cmd.body
    else {
        return None;
    };
    match items.into_iter().next()? {
        MessageDataItemName::BodyExt {
            section: Some(sec),
            partial: None,
            ..
        } => Some(sec.into_static()),
        _ => None,
    }
}

/// Parses an IMAP URL of this session (see the module documentation); `None` is BADURL.
pub(crate) fn parse_url(url: &[u8], user: &str, host: &str) -> Option<UrlRef> {
    if url.len() > MAX_URL || url.iter().any(|b| !(0x21..0x7f).contains(b)) {
        return None;
    }
    let s = std::str::from_utf8(url).ok()?;
    let rel = if s.len() > 7 && s[..7].eq_ignore_ascii_case("imap://") {
        let rest = &s[7..];
        let slash = rest.find('/')?;
        let (auth, path) = rest.split_at(slash);
        let (userinfo, hostport) = auth.rsplit_once('@')?;
        let enc_user = match userinfo.find(';') {
            Some(i) => {
                // `;AUTH=*` (or a mechanism) is fine: this session is authenticated already.
                if !userinfo[i..].to_ascii_uppercase().starts_with(";AUTH=") {
                    return None;
                }
                &userinfo[..i]
            }
            None => userinfo,
        };
        let url_user = String::from_utf8(pct_decode(enc_user)?).ok()?;
        let (h, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if !url_user.eq_ignore_ascii_case(user)
            || !h.eq_ignore_ascii_case(host)
            || port.is_some_and(|p| p != "143" && p != "993")
        {
            return None;
        }
        path
    } else {
        s
    };
    let (mailbox, uid_validity, params) = if let Some(path) = rel.strip_prefix('/') {
        let i = find_ci(path, "/;UID=")?;
        let (mref, params) = (&path[..i], &path[i + 1..]);
        let (enc, validity) = match find_ci(mref, ";UIDVALIDITY=") {
            Some(j) => {
                let v: u32 = mref[j + 13..].parse().ok().filter(|v| *v > 0)?;
                (&mref[..j], Some(v))
            }
            None => (mref, None),
        };
        let name = String::from_utf8(pct_decode(enc)?).ok()?;
        if name.is_empty()
            || name.chars().any(char::is_control)
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return None;
        }
        (
            Some(crate::imap::names::normalise_inbox(name)),
            validity,
            params,
        )
    } else if rel.len() > 5 && rel[..5].eq_ignore_ascii_case(";UID=") {
        (None, None, rel)
    } else {
        return None;
    };
    // `;UID=n`, then `/;SECTION=s`, then `/;PARTIAL=o[.l]`, nothing else.
    let mut segs = params.split("/;");
    let uid_seg = segs.next()?;
    let uid: u32 = uid_seg
        .get(5..)?
        .trim_end_matches('/')
        .parse()
        .ok()
        .filter(|u| *u > 0)?;
    if !uid_seg[..5].eq_ignore_ascii_case(";UID=") {
        return None;
    }
    let mut section = None;
    let mut partial = None;
    for seg in segs {
        let (key, val) = seg.split_once('=')?;
        let val = val.strip_suffix('/').unwrap_or(val);
        match key.to_ascii_uppercase().as_str() {
            "SECTION" if section.is_none() && partial.is_none() => {
                let v = String::from_utf8(pct_decode(val)?).ok()?;
                if v.is_empty() {
                    return None;
                }
                section = Some(v);
            }
            "PARTIAL" if partial.is_none() => {
                let (o, l) = match val.split_once('.') {
                    Some((o, l)) => (o.parse().ok()?, l.parse().ok().filter(|l| *l > 0)?),
                    None => (val.parse().ok()?, u32::MAX),
                };
                partial = Some((o, l));
            }
            _ => return None,
        }
    }
    Some(UrlRef {
        mailbox,
        uid_validity,
        uid,
        section,
        partial,
    })
}

/// The first position of `needle` in `hay`, ASCII case ignored.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    (0..=h.len().checked_sub(n.len())?).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Percent-decoding (RFC 3986 §2.1); `None` for a malformed escape or a NUL.
fn pct_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v == 0 {
                return None;
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn same_mailbox(a: &str, b: &str) -> bool {
    a == b || (postern_maildir::folder::is_inbox(a) && postern_maildir::folder::is_inbox(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> Option<UrlRef> {
        parse_url(url.as_bytes(), "joe@example.test", "mx.example.test")
    }

    /// RFC 4469 §3 and Appendix A: relative URLs with UIDVALIDITY, UID, section (any case);
    /// RFC 5092 §5: `;UID=` relative to the selected mailbox, `;PARTIAL=`.
    #[test]
    fn urls_of_this_session_parse() {
        let u = p("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME").unwrap();
        assert_eq!(u.mailbox.as_deref(), Some("Drafts"));
        assert_eq!(u.uid_validity, Some(385_759_045));
        assert_eq!(u.uid, 20);
        assert_eq!(u.section.as_deref(), Some("1.MIME"));
        let u = p("/INBOX;UIDVALIDITY=785799047/;UID=113330/;SECTION=1.5.9").unwrap();
        assert_eq!(u.section.as_deref(), Some("1.5.9"));
        let u = p("/inbox/;UID=7/;PARTIAL=10.20").unwrap();
        assert_eq!(u.mailbox.as_deref(), Some("INBOX"));
        assert_eq!(u.partial, Some((10, 20)));
        let u = p(";UID=3/;SECTION=HEADER.FIELDS%20(SUBJECT)").unwrap();
        assert_eq!(u.mailbox, None);
        assert_eq!(u.section.as_deref(), Some("HEADER.FIELDS (SUBJECT)"));
        let u = p("/Lists/Caf%C3%A9;UIDVALIDITY=1/;UID=1").unwrap();
        assert_eq!(u.mailbox.as_deref(), Some("Lists/Café"));
        let u = p("imap://joe%40example.test;AUTH=*@MX.example.test/INBOX/;UID=1").unwrap();
        assert_eq!(u.mailbox.as_deref(), Some("INBOX"));
        assert!(p("imap://joe%40example.test@mx.example.test:993/INBOX/;UID=1").is_some());
    }

    /// RFC 4469 §3 note: anything but a message or part of this session is refused, and no
    /// URL names a path outside the Maildir.
    #[test]
    fn foreign_or_tricky_urls_are_refused() {
        for bad in [
            "imap://eve@mx.example.test/INBOX/;UID=1",
            "imap://joe%40example.test@evil.example/INBOX/;UID=1",
            "imap://mx.example.test/INBOX/;UID=1",
            "imap://joe%40example.test@mx.example.test:25/INBOX/;UID=1",
            "http://mx.example.test/INBOX/;UID=1",
            "/../INBOX/;UID=1",
            "/INBOX/../../etc;UIDVALIDITY=1/;UID=1",
            "/%2E%2E/x/;UID=1",
            "/a//b/;UID=1",
            "../Drafts/;UID=1",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/INBOX;UIDVALIDITY=0/;UID=1",
            "/INBOX/;UID=1/;SECTION=1/;SECTION=2",
            "/INBOX/;UID=1/;PARTIAL=0.0",
            "/INBOX/;UID=1/;URLAUTH=anonymous:internal:abc",
            "/INBOX/;UID=1/;EXPIRE=2030-01-01T00:00:00Z",
            "/INBOX?SUBJECT%20x",
            "/INBOX",
            "/%00/;UID=1",
            "/a%0D%0Ab/;UID=1",
            "/INBOX/;UID=1/;SECTION=%ZZ",
            ";SECTION=1",
            "",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
        assert_eq!(p(&format!("/{}/;UID=1", "a".repeat(MAX_URL))), None);
    }

    /// RFC 4469 §5: url-resp-text is TEXT-CHAR without `]`.
    #[test]
    fn badurl_text_is_safe() {
        let Tagged::No(Some(code), _) = bad_url(b"/a]b\r\n/;UID=1") else {
            panic!("not NO");
        };
        let mut out = Vec::new();
        Tagged::no(code, "x").write(&mut out, "t");
        assert_eq!(out, b"t NO [BADURL /a?b??/;UID=1] x\r\n");
    }
}
