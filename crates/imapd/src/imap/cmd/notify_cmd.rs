//! The NOTIFY command (RFC 5465 §3.1), parsed from the raw bytes imap-codec refuses (see
//! [`super::ext`]); what it sets up and reports is `imap/notify_set.rs`.
//!
//! ```text
//! notify          = "NOTIFY" SP (notify-set / notify-none)
//! notify-set      = "SET" [status-indicator] SP event-groups
//! status-indicator = SP "STATUS"
//! event-groups    = event-group *(SP event-group)
//! event-group     = "(" filter-mailboxes SP events ")"
//! filter-mailboxes = "selected" / "selected-delayed" / "inboxes" / "personal" /
//!                    "subscribed" / ("subtree" SP one-or-more-mailbox) /
//!                    ("mailboxes" SP one-or-more-mailbox)
//! one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"
//! events          = ( "(" event *(SP event) ")" ) / "NONE"
//! event           = ("MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"]) /
//!                   "MessageExpunge" / "FlagChange" / "AnnotationChange" /
//!                   "MailboxName" / "SubscriptionChange" / "MailboxMetadataChange" /
//!                   "ServerMetadataChange" / event-ext
//! ```
//!
//! Hostile input costs linear time and bounded memory: the bytes are at most the command size
//! limit, the grammar nests at fixed depths (a fetch-att list may nest [`MAX_DEPTH`] deep, as
//! in `BODY.PEEK[HEADER.FIELDS (…)]`), and at most [`MAX_MAILBOXES`] names and
//! [`MAX_GROUPS`] groups are kept (more is `NO [LIMIT]`, nothing changed).

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::{Command, CommandBody};

use super::super::session::{Flow, Session};
use super::super::tagged::Tagged;
use super::token;

/// Mailbox names one NOTIFY may name (`subtree` and `mailboxes` filters together).
pub(crate) const MAX_MAILBOXES: usize = 1000;
/// Event groups one NOTIFY may have.
pub(crate) const MAX_GROUPS: usize = 100;
/// Parenthesis depth inside a MessageNew fetch-att list.
const MAX_DEPTH: usize = 8;
/// Bytes of one MessageNew fetch-att list.
const MAX_FETCH_ATT: usize = 4096;

/// The events the server supports, as BADEVENT lists them (RFC 5465 §3.1).
pub(crate) const SUPPORTED: &str = "MessageNew MessageExpunge FlagChange AnnotationChange \
     MailboxName SubscriptionChange MailboxMetadataChange ServerMetadataChange";

/// Which mailboxes an event group is about (RFC 5465 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// The selected mailbox; expunges reported at once.
    Selected,
    /// The selected mailbox; expunges only when the client's command allows them.
    SelectedDelayed,
    /// Mailboxes mail is delivered to (here: INBOX).
    Inboxes,
    /// Every mailbox of the user.
    Personal,
    /// Subscribed mailboxes.
    Subscribed,
    /// The named mailboxes and everything below them (raw wire names).
    Subtree(Vec<Vec<u8>>),
    /// The named mailboxes (raw wire names).
    Mailboxes(Vec<Vec<u8>>),
}

impl Filter {
    /// `selected` or `selected-delayed`.
    pub(crate) fn is_selected(&self) -> bool {
        matches!(self, Self::Selected | Self::SelectedDelayed)
    }
}

/// The events of one group (all false for `NONE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Events {
    pub(crate) message_new: bool,
    /// MessageNew's fetch-att list, as written (only for the selected mailbox).
    pub(crate) fetch_att: Option<String>,
    pub(crate) message_expunge: bool,
    pub(crate) flag_change: bool,
    pub(crate) annotation_change: bool,
    pub(crate) mailbox_name: bool,
    pub(crate) subscription_change: bool,
    pub(crate) mailbox_metadata: bool,
    pub(crate) server_metadata: bool,
}

impl Events {
    /// Any event about the messages of a mailbox.
    pub(crate) fn messages(&self) -> bool {
        self.message_new || self.message_expunge || self.flag_change || self.annotation_change
    }

    /// Any event at all.
    #[cfg(test)]
    pub(crate) fn any(&self) -> bool {
        self.messages()
            || self.mailbox_name
            || self.subscription_change
            || self.mailbox_metadata
            || self.server_metadata
    }
}

/// One `(filter events)` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) filter: Filter,
    pub(crate) events: Events,
}

/// A parsed NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notify {
    /// `NOTIFY NONE`.
    None,
    /// `NOTIFY SET [STATUS] groups…`.
    Set { status: bool, groups: Vec<Group> },
}

/// Why a NOTIFY is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Syntax or a rule of RFC 5465 broken: tagged BAD.
    Bad(&'static str),
    /// An event the server does not know: `NO [BADEVENT (…)]`.
    BadEvent,
    /// More than the limits: `NO [LIMIT]`.
    Limit(&'static str),
}

/// The job for a NOTIFY command (see [`super::ext`]); `None` for any other command.
pub(crate) fn job(raw: &[u8]) -> Option<super::ext::Job> {
    let (tag, rest) = name_check(raw)?;
    let parsed = parse(rest);
    Some(Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
        let t = match parsed {
            Err(Refusal::Bad(why)) => Tagged::bad(why),
            Err(Refusal::BadEvent) => Tagged::no(
                super::super::tagged::other(format!("BADEVENT ({SUPPORTED})")),
                "Unsupported event",
            ),
            Err(Refusal::Limit(why)) => Tagged::no(super::super::tagged::other("LIMIT"), why),
            Ok(n) => return s.notify_cmd(n, &tag, out),
        };
        t.write(out, &tag);
        Flow::Continue
    }))
}

/// `tag NOTIFY …`: the tag and what follows `NOTIFY `. Cheap: looks at the first bytes only.
fn name_check(raw: &[u8]) -> Option<(String, &[u8])> {
    let sp = raw.iter().take(128).position(|&b| b == b' ')?;
    let tag = std::str::from_utf8(&raw[..sp]).ok()?;
    imap_codec::imap_types::core::Tag::validate(tag).ok()?;
    let rest = &raw[sp + 1..];
    if rest.len() < 7 || !rest[..7].eq_ignore_ascii_case(b"NOTIFY ") {
        return None;
    }
    Some((tag.to_owned(), &rest[7..]))
}

/// Parses what follows `NOTIFY ` up to and including the final CRLF.
pub(crate) fn parse(input: &[u8]) -> Result<Notify, Refusal> {
    let body = input
        .strip_suffix(b"\r\n")
        .or_else(|| input.strip_suffix(b"\n"))
        .ok_or(Refusal::Bad("Missing CRLF"))?;
    let mut p = Parser { s: body, i: 0 };
    let first = p.atom().ok_or(Refusal::Bad("Expected SET or NONE"))?;
    if first.eq_ignore_ascii_case("NONE") {
        return if p.done() {
            Ok(Notify::None)
        } else {
            Err(Refusal::Bad("Junk after NOTIFY NONE"))
        };
    }
    if !first.eq_ignore_ascii_case("SET") {
        return Err(Refusal::Bad("Expected SET or NONE"));
    }
    p.sp()?;
    let mut status = false;
    if p.peek() != Some(b'(') {
        let a = p
            .atom()
            .ok_or(Refusal::Bad("Expected STATUS or an event group"))?;
        if !a.eq_ignore_ascii_case("STATUS") {
            return Err(Refusal::Bad("Expected STATUS or an event group"));
        }
        status = true;
        p.sp()?;
    }
    let mut groups = Vec::new();
    let mut names = 0usize;
    let mut bad_event = false;
    loop {
        if groups.len() >= MAX_GROUPS {
            return Err(Refusal::Limit("Too many event groups"));
        }
        let (g, unknown) = p.group(&mut names)?;
        bad_event |= unknown;
        groups.push(g);
        if p.done() {
            break;
        }
        p.sp()?;
    }
    if bad_event {
        return Err(Refusal::BadEvent);
    }
    check_rules(&groups)?;
    Ok(Notify::Set { status, groups })
}

/// The rules of RFC 5465 beyond the grammar.
fn check_rules(groups: &[Group]) -> Result<(), Refusal> {
    if groups.iter().filter(|g| g.filter.is_selected()).count() > 1 {
        // §6: "selected" and "selected-delayed" both name the selected mailbox.
        return Err(Refusal::Bad(
            "Only one selected or selected-delayed filter is allowed",
        ));
    }
    for g in groups {
        let e = &g.events;
        // §5: "If one of MessageNew or MessageExpunge is specified, then both events MUST
        // be specified."
        if e.message_new != e.message_expunge {
            return Err(Refusal::Bad(
                "MessageNew and MessageExpunge must be specified together",
            ));
        }
        // §5.1: FlagChange and AnnotationChange need MessageNew and MessageExpunge.
        if (e.flag_change || e.annotation_change) && !e.message_new {
            return Err(Refusal::Bad(
                "FlagChange and AnnotationChange need MessageNew and MessageExpunge",
            ));
        }
        // §5.2: the fetch-att list is for the selected mailbox only.
        if e.fetch_att.is_some() && !g.filter.is_selected() {
            return Err(Refusal::Bad(
                "MessageNew fetch attributes are allowed for the selected mailbox only",
            ));
        }
    }
    Ok(())
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn sp(&mut self) -> Result<(), Refusal> {
        if self.eat(b' ') {
            Ok(())
        } else {
            Err(Refusal::Bad("Expected a space"))
        }
    }

    fn expect(&mut self, b: u8, why: &'static str) -> Result<(), Refusal> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(Refusal::Bad(why))
        }
    }

    /// An atom (letters, digits and the atom specials RFC 9051 allows, `-` included).
    fn atom(&mut self) -> Option<&'a str> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if b <= b' '
                || b >= 0x7f
                || matches!(b, b'(' | b')' | b'{' | b'"' | b'\\' | b'%' | b'*' | b']')
            {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()
    }

    /// An astring: atom (with `]`), quoted string or literal (`{n}` / `{n+}` CRLF n octets).
    fn astring(&mut self) -> Result<Vec<u8>, Refusal> {
        match self.peek() {
            Some(b'"') => {
                let (v, next) =
                    token::quoted(self.s, self.i).ok_or(Refusal::Bad("Bad quoted string"))?;
                self.i = next;
                Ok(v)
            }
            Some(b'{') => match token::literal(self.s, self.i) {
                Some((l, next)) => {
                    self.i = next;
                    Ok(self.s[l.range].to_vec())
                }
                None => Err(Refusal::Bad("Bad literal")),
            },
            _ => {
                let start = self.i;
                while let Some(b) = self.peek() {
                    if b <= b' '
                        || b >= 0x7f
                        || matches!(b, b'(' | b')' | b'{' | b'"' | b'\\' | b'%' | b'*')
                    {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return Err(Refusal::Bad("Expected a mailbox name"));
                }
                Ok(self.s[start..self.i].to_vec())
            }
        }
    }

    /// one-or-more-mailbox.
    fn mailboxes(&mut self, count: &mut usize) -> Result<Vec<Vec<u8>>, Refusal> {
        let mut v = Vec::new();
        let mut one = |p: &mut Self, v: &mut Vec<Vec<u8>>| -> Result<(), Refusal> {
            let m = p.astring()?;
            *count += 1;
            if *count > MAX_MAILBOXES {
                return Err(Refusal::Limit("Too many mailboxes in NOTIFY filters"));
            }
            v.push(m);
            Ok(())
        };
        if self.eat(b'(') {
            loop {
                one(self, &mut v)?;
                if self.eat(b')') {
                    break;
                }
                self.sp()?;
            }
        } else {
            one(self, &mut v)?;
        }
        Ok(v)
    }

    /// `(filter events)`; the bool is true if an unknown event was named.
    fn group(&mut self, names: &mut usize) -> Result<(Group, bool), Refusal> {
        self.expect(b'(', "Expected an event group")?;
        let f = self.atom().ok_or(Refusal::Bad("Expected a filter"))?;
        let filter = match f.to_ascii_lowercase().as_str() {
            "selected" => Filter::Selected,
            "selected-delayed" => Filter::SelectedDelayed,
            "inboxes" => Filter::Inboxes,
            "personal" => Filter::Personal,
            "subscribed" => Filter::Subscribed,
            "subtree" => {
                self.sp()?;
                Filter::Subtree(self.mailboxes(names)?)
            }
            "mailboxes" => {
                self.sp()?;
                Filter::Mailboxes(self.mailboxes(names)?)
            }
            _ => return Err(Refusal::Bad("Unknown NOTIFY filter")),
        };
        self.sp()?;
        let mut events = Events::default();
        let mut unknown = false;
        if self.eat(b'(') {
            let mut n = 0;
            loop {
                n += 1;
                if n > 64 {
                    return Err(Refusal::Bad("Too many events in a group"));
                }
                let e = self.atom().ok_or(Refusal::Bad("Expected an event"))?;
                match e.to_ascii_lowercase().as_str() {
                    "messagenew" => {
                        events.message_new = true;
                        if self.s[self.i..].starts_with(b" (") {
                            self.i += 1;
                            events.fetch_att = Some(self.fetch_att()?);
                        }
                    }
                    "messageexpunge" => events.message_expunge = true,
                    "flagchange" => events.flag_change = true,
                    "annotationchange" => events.annotation_change = true,
                    "mailboxname" => events.mailbox_name = true,
                    "subscriptionchange" => events.subscription_change = true,
                    "mailboxmetadatachange" => events.mailbox_metadata = true,
                    "servermetadatachange" => events.server_metadata = true,
                    _ => unknown = true,
                }
                if self.eat(b')') {
                    break;
                }
                self.sp()?;
            }
        } else {
            let a = self.atom().ok_or(Refusal::Bad("Expected events or NONE"))?;
            if !a.eq_ignore_ascii_case("NONE") {
                return Err(Refusal::Bad("Expected events or NONE"));
            }
        }
        self.expect(b')', "Expected ) after the events")?;
        Ok((Group { filter, events }, unknown))
    }

    /// `(fetch-att …)`: the balanced text inside, checked by imap-codec as a FETCH would be.
    fn fetch_att(&mut self) -> Result<String, Refusal> {
        let start = self.i;
        let mut depth = 0usize;
        loop {
            let Some(b) = self.peek() else {
                return Err(Refusal::Bad("Unbalanced fetch attributes"));
            };
            self.i += 1;
            match b {
                b'(' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(Refusal::Bad("Fetch attributes nest too deep"));
                    }
                }
                b')' | b']' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or(Refusal::Bad("Unbalanced fetch attributes"))?;
                    if depth == 0 {
                        break;
                    }
                }
                b'"' => {
                    while let Some(c) = self.peek() {
                        self.i += 1;
                        match c {
                            b'\\' => self.i += 1,
                            b'"' => break,
                            _ => {}
                        }
                    }
                }
                b'{' | b'\r' | b'\n' => {
                    return Err(Refusal::Bad("No literals in fetch attributes"));
                }
                _ => {}
            }
            if self.i - start > MAX_FETCH_ATT {
                return Err(Refusal::Bad("Fetch attributes too long"));
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i])
            .map_err(|_| Refusal::Bad("Bad fetch attributes"))?;
        if text.len() < 3 {
            return Err(Refusal::Bad("Empty fetch attributes"));
        }
        // The same items a FETCH takes (imap-codec decides).
        fetch_command("1", text).ok_or(Refusal::Bad("Bad fetch attributes"))?;
        Ok(text.to_owned())
    }
}

/// The astring (atom, quoted string or literal) at the start of `s`.
pub(crate) fn leading_astring(s: &[u8]) -> Option<Vec<u8>> {
    Parser { s, i: 0 }.astring().ok()
}

/// `N UID FETCH set (atts)` as imap-codec parses it; `atts` includes its parentheses.
pub(crate) fn fetch_command(set: &str, atts: &str) -> Option<Command<'static>> {
    let line = format!("N UID FETCH {set} {atts}\r\n");
    let (rem, cmd) = CommandCodec::default().decode(line.as_bytes()).ok()?;
    if !rem.is_empty() {
        return None;
    }
    let cmd = cmd.into_static();
    matches!(cmd.body, CommandBody::Fetch { .. }).then_some(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Notify, Refusal> {
        parse(format!("{s}\r\n").as_bytes())
    }

    fn groups(s: &str) -> Vec<Group> {
        match p(s) {
            Ok(Notify::Set { groups, .. }) => groups,
            other => panic!("{s}: {other:?}"),
        }
    }

    /// RFC 5465 §3.1's grammar: STATUS, several groups, every filter, NONE events.
    #[test]
    fn the_rfc_forms_parse() {
        assert_eq!(p("NONE"), Ok(Notify::None));
        assert_eq!(p("none"), Ok(Notify::None));
        let g = groups(
            "SET (selected (MessageNew (UID FLAGS) MessageExpunge)) \
             (personal (MessageNew MessageExpunge))",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].filter, Filter::Selected);
        assert_eq!(g[0].events.fetch_att.as_deref(), Some("(UID FLAGS)"));
        assert!(g[1].events.message_new && g[1].events.message_expunge);
        match p("SET STATUS (inboxes (MessageNew MessageExpunge FlagChange))") {
            Ok(Notify::Set {
                status: true,
                groups,
            }) => {
                assert_eq!(groups[0].filter, Filter::Inboxes);
                assert!(groups[0].events.flag_change);
            }
            other => panic!("{other:?}"),
        }
        // §8's example shape: a header fetch on the selected mailbox and a subtree.
        let g = groups(
            "SET STATUS (selected (MessageNew (uid body.peek[header.fields (from to subject)]) \
             MessageExpunge)) (subtree Lists (MessageNew MessageExpunge))",
        );
        assert_eq!(
            g[0].events.fetch_att.as_deref(),
            Some("(uid body.peek[header.fields (from to subject)])")
        );
        assert_eq!(g[1].filter, Filter::Subtree(vec![b"Lists".to_vec()]));
    }

    #[test]
    fn mailbox_lists_quoted_literal_and_atom_names() {
        let g = groups(
            "SET (subtree Lists (MessageNew MessageExpunge)) \
             (mailboxes (\"a b\" {3}\r\nx\"y INBOX) (MailboxName SubscriptionChange \
             MailboxMetadataChange ServerMetadataChange)) (subscribed NONE)",
        );
        assert_eq!(g[0].filter, Filter::Subtree(vec![b"Lists".to_vec()]));
        assert_eq!(
            g[1].filter,
            Filter::Mailboxes(vec![b"a b".to_vec(), b"x\"y".to_vec(), b"INBOX".to_vec()])
        );
        assert!(g[1].events.mailbox_name && g[1].events.server_metadata);
        assert!(!g[2].events.any());
        let g = groups(
            "SET (selected (MessageNew (uid body.peek[header.fields (from to subject)]) \
             MessageExpunge))",
        );
        assert!(g[0].events.fetch_att.is_some());
    }

    /// §5: MessageNew and MessageExpunge together; FlagChange needs both; fetch-att only for
    /// the selected mailbox; one selected filter. All BAD.
    #[test]
    fn rule_breakers_are_bad() {
        for s in [
            "SET (personal (MessageNew))",
            "SET (personal (MessageExpunge))",
            "SET (personal (FlagChange))",
            "SET (inboxes (AnnotationChange MessageNew))",
            "SET (personal (MessageNew (UID) MessageExpunge))",
            "SET (selected NONE) (selected-delayed NONE)",
            "SET",
            "SET ",
            "SET STATUS",
            "SET (personal)",
            "SET (personal ())",
            "SET (nobody NONE)",
            "SET (subtree (MessageNew MessageExpunge))",
            "SET (mailboxes () NONE)",
            "SET (personal NONE) junk",
            "SET (personal NONE))",
            "SET ((personal NONE))",
            "SET (selected (MessageNew (UID ((((((((((FLAGS)))))))))) MessageExpunge))",
            "SET (selected (MessageNew (NOSUCHATT) MessageExpunge))",
            "SET (selected (MessageNew (UID {3}\r\nabc) MessageExpunge))",
            "SET (mailboxes {99}\r\nab NONE)",
            "SET (mailboxes \"ab NONE)",
            "NONE x",
            "BOGUS",
        ] {
            assert!(matches!(p(s), Err(Refusal::Bad(_))), "{s:?}: {:?}", p(s));
        }
    }

    /// §3.1: an unknown event is NO [BADEVENT], even beside known ones.
    #[test]
    fn unknown_events_are_badevent() {
        assert_eq!(
            p("SET (personal (MessageNew MessageExpunge FooChange))"),
            Err(Refusal::BadEvent)
        );
        assert_eq!(p("SET (inboxes (Bar))"), Err(Refusal::BadEvent));
    }

    /// Hostile sizes: thousands of mailboxes are refused with LIMIT after the 1,000th name
    /// (the parser stops there), and thousands of groups likewise; both in linear time.
    #[test]
    fn huge_filters_are_limited() {
        let names: Vec<String> = (0..5000).map(|i| format!("f{i}")).collect();
        let s = format!(
            "SET (mailboxes ({}) (MessageNew MessageExpunge))",
            names.join(" ")
        );
        assert!(matches!(p(&s), Err(Refusal::Limit(_))));
        let ok: Vec<String> = (0..MAX_MAILBOXES).map(|i| format!("f{i}")).collect();
        let s = format!(
            "SET (mailboxes ({}) (MessageNew MessageExpunge))",
            ok.join(" ")
        );
        assert!(p(&s).is_ok());
        let s = format!("SET{}", " (personal NONE)".repeat(5000));
        assert!(matches!(p(&s), Err(Refusal::Limit(_))));
        let deep = format!("SET {}", "(".repeat(100_000));
        assert!(matches!(p(&deep), Err(Refusal::Bad(_))));
    }

    #[test]
    fn the_job_only_takes_notify() {
        assert!(job(b"a NOTIFY NONE\r\n").is_some());
        assert!(job(b"a notify set (personal NONE)\r\n").is_some());
        assert!(job(b"a NOTIFYX NONE\r\n").is_none());
        assert!(job(b"a LIST \"\" *\r\n").is_none());
        assert!(job(b"NOTIFY NONE\r\n").is_none());
    }
}
