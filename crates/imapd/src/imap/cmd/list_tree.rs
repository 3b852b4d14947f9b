//! Which names a LIST or LSUB returns, with which attributes: the selection rules of
//! RFC 3501 §6.3.8/§6.3.9 and RFC 5258 (LIST-EXTENDED) on plain sets of names, no I/O.
//!
//! - Plain LIST: every existing mailbox that matches, and the hierarchy levels above existing
//!   mailboxes (`\Noselect`) so that `%` shows them (RFC 3501 §6.3.8).
//! - `LIST (SUBSCRIBED)`: every subscribed name that matches, existing or not; the ones that
//!   do not exist carry `\NonExistent` (RFC 5258 §3, which implies `\Noselect`).
//! - With `RECURSIVEMATCH`, a name that matches but does not meet the selection criteria
//!   itself is returned with `CHILDINFO (…)` when a descendant meets them and that
//!   descendant is not returned itself (it matches no pattern); a name that does meet them
//!   gets `CHILDINFO` on the same terms (RFC 5258 §3.5 and the examples of its §5).
//! - LSUB: the same as `LIST (SUBSCRIBED RECURSIVEMATCH)` without the extended data; the
//!   unsubscribed parent of subscribed names that `%` does not reach is returned with
//!   `\Noselect` (RFC 3501 §6.3.9: "\Noselect" there means "not subscribed").

use std::collections::{BTreeMap, BTreeSet};

use crate::imap::names::Pattern;
use crate::imap::session::parents;

/// What the client asked for.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Query {
    pub(crate) lsub: bool,
    pub(crate) sel_subscribed: bool,
    pub(crate) sel_special_use: bool,
    pub(crate) recursive: bool,
    pub(crate) ret_subscribed: bool,
}

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) attrs: Vec<&'static str>,
    /// The selection options a descendant meets (`CHILDINFO`), empty for none.
    pub(crate) childinfo: Vec<&'static str>,
    /// The mailbox exists (STATUS may be returned for it).
    pub(crate) exists: bool,
}

/// The rows for `q`, sorted by name. `existing` holds every mailbox (INBOX included),
/// `subs` the subscription list, `special_use` gives a mailbox's special-use attribute.
pub(crate) fn rows(
    existing: &BTreeSet<String>,
    subs: &BTreeSet<String>,
    pats: &[Pattern],
    q: &Query,
    special_use: impl Fn(&str) -> Option<&'static str>,
) -> Vec<Row> {
    let matches = |n: &str| pats.iter().any(|p| p.matches(n));
    let su = |n: &str| {
        // Nested names too: CREATE-SPECIAL-USE may give `A/B` an attribute.
        if q.lsub || !existing.contains(n) {
            None
        } else {
            special_use(n)
        }
    };
    let by_subs = q.lsub || q.sel_subscribed;
    let mut out: BTreeMap<String, Row> = BTreeMap::new();
    if !by_subs && !q.sel_special_use {
        // Plain LIST: existing mailboxes and the levels above them.
        let mut candidates: BTreeSet<&str> = existing.iter().map(String::as_str).collect();
        for n in existing {
            candidates.extend(parents(n));
        }
        for n in candidates {
            if matches(n) {
                out.insert(n.to_owned(), row(n, existing, subs, q, su(n), Vec::new()));
            }
        }
        return out.into_values().collect();
    }
    // Selection by criteria: every option given must hold (RFC 5258 §3: options combine).
    let meets = |n: &str| (!by_subs || subs.contains(n)) && (!q.sel_special_use || su(n).is_some());
    let base: &BTreeSet<String> = if by_subs { subs } else { existing };
    let mut childinfo_of: BTreeSet<&str> = BTreeSet::new();
    for n in base.iter().map(String::as_str).filter(|n| meets(n)) {
        if matches(n) {
            out.insert(n.to_owned(), row(n, existing, subs, q, su(n), Vec::new()));
        } else if q.lsub || q.recursive {
            childinfo_of.extend(parents(n));
        }
    }
    let mut info: Vec<&'static str> = Vec::new();
    if by_subs && !q.lsub {
        info.push("SUBSCRIBED");
    }
    if q.sel_special_use {
        info.push("SPECIAL-USE");
    }
    for p in childinfo_of {
        if !matches(p) {
            continue;
        }
        if let Some(r) = out.get_mut(p) {
            if !q.lsub {
                r.childinfo.clone_from(&info);
            }
        } else {
            let ci = if q.lsub { Vec::new() } else { info.clone() };
            out.insert(p.to_owned(), row(p, existing, subs, q, su(p), ci));
        }
    }
    out.into_values().collect()
}

fn row(
    name: &str,
    existing: &BTreeSet<String>,
    subs: &BTreeSet<String>,
    q: &Query,
    special: Option<&'static str>,
    childinfo: Vec<&'static str>,
) -> Row {
    let exists = existing.contains(name);
    let subscribed = subs.contains(name);
    let mut attrs: Vec<&'static str> = Vec::new();
    if q.lsub {
        if !subscribed {
            attrs.push("\\Noselect");
        }
        return Row {
            name: name.to_owned(),
            attrs,
            childinfo,
            exists,
        };
    }
    if !exists {
        attrs.push(if q.sel_subscribed || q.sel_special_use {
            "\\NonExistent"
        } else {
            "\\Noselect"
        });
    }
    let prefix = format!("{name}/");
    let has_children = existing
        .range(prefix.clone()..)
        .next()
        .is_some_and(|n| n.starts_with(&prefix));
    attrs.push(if has_children {
        "\\HasChildren"
    } else {
        "\\HasNoChildren"
    });
    if let Some(a) = special {
        attrs.push(a);
    }
    if q.ret_subscribed && subscribed {
        attrs.push("\\Subscribed");
    }
    Row {
        name: name.to_owned(),
        attrs,
        childinfo,
        exists,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn su(n: &str) -> Option<&'static str> {
        (n == "Sent").then_some("\\Sent")
    }

    /// `name attrs [CHILDINFO]` per row, for compact assertions.
    fn show(existing: &[&str], subs: &[&str], pats: &[&str], q: Query) -> Vec<String> {
        let pats: Vec<Pattern> = pats.iter().map(|p| Pattern::new("", p)).collect();
        rows(&set(existing), &set(subs), &pats, &q, su)
            .into_iter()
            .map(|r| {
                let mut s = format!("{} ({})", r.name, r.attrs.join(" "));
                if !r.childinfo.is_empty() {
                    s.push_str(&format!(" CHILDINFO ({})", r.childinfo.join(" ")));
                }
                s
            })
            .collect()
    }

    /// RFC 5258 §5's mailbox set: Fruit/Peach was subscribed, then deleted.
    const EXISTING: &[&str] = &[
        "INBOX",
        "Fruit",
        "Fruit/Apple",
        "Fruit/Banana",
        "Tofu",
        "Vegetable",
        "Vegetable/Broccoli",
        "Vegetable/Corn",
    ];
    const SUBS: &[&str] = &[
        "INBOX",
        "Fruit/Banana",
        "Fruit/Peach",
        "Vegetable",
        "Vegetable/Broccoli",
    ];

    fn subscribed(recursive: bool) -> Query {
        Query {
            sel_subscribed: true,
            ret_subscribed: true,
            recursive,
            ..Query::default()
        }
    }

    /// RFC 5258 §5: `LIST (SUBSCRIBED) "" "*"` lists the subscribed names, the
    /// deleted Fruit/Peach with `\NonExistent` (and `\Subscribed`, not `\Noselect`).
    #[test]
    fn list_subscribed_lists_deleted_names_as_nonexistent() {
        let r = show(EXISTING, SUBS, &["*"], subscribed(false));
        assert_eq!(
            r,
            [
                "Fruit/Banana (\\HasNoChildren \\Subscribed)",
                "Fruit/Peach (\\NonExistent \\HasNoChildren \\Subscribed)",
                "INBOX (\\HasNoChildren \\Subscribed)",
                "Vegetable (\\HasChildren \\Subscribed)",
                "Vegetable/Broccoli (\\HasNoChildren \\Subscribed)",
            ]
        );
        // Without RECURSIVEMATCH no unsubscribed parent appears, whatever the pattern.
        let r = show(EXISTING, SUBS, &["%"], subscribed(false));
        assert_eq!(
            r,
            [
                "INBOX (\\HasNoChildren \\Subscribed)",
                "Vegetable (\\HasChildren \\Subscribed)",
            ]
        );
    }

    /// RFC 5258 §5: `LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"` returns Fruit (not
    /// subscribed) and Vegetable (subscribed) with `CHILDINFO ("SUBSCRIBED")`.
    #[test]
    fn recursivematch_gives_childinfo_to_parents_of_subscribed() {
        let r = show(EXISTING, SUBS, &["%"], subscribed(true));
        assert_eq!(
            r,
            [
                "Fruit (\\HasChildren) CHILDINFO (SUBSCRIBED)",
                "INBOX (\\HasNoChildren \\Subscribed)",
                "Vegetable (\\HasChildren \\Subscribed) CHILDINFO (SUBSCRIBED)",
            ]
        );
        // With "*" the subscribed children are returned themselves: no CHILDINFO.
        let r = show(EXISTING, SUBS, &["*"], subscribed(true));
        assert_eq!(r, show(EXISTING, SUBS, &["*"], subscribed(false)));
    }

    /// RFC 5258 §3.5 with several patterns: a parent whose subscribed child matches one
    /// of the patterns gets no CHILDINFO; one whose child matches none does.
    #[test]
    fn recursivematch_with_several_patterns() {
        let existing = &["INBOX", "Foo", "Foo/Bar", "Foo/Baz", "Moo", "Moo/Bar"];
        let subs = &["Foo/Baz", "Moo/Bar"];
        let r = show(existing, subs, &["Foo", "Foo/Baz", "Moo"], subscribed(true));
        assert_eq!(
            r,
            [
                "Foo/Baz (\\HasNoChildren \\Subscribed)",
                "Moo (\\HasChildren) CHILDINFO (SUBSCRIBED)",
            ]
        );
        // A missing level above a subscribed name is \NonExistent.
        let r = show(&["INBOX", "a/b"], &["a/b"], &["%"], subscribed(true));
        assert_eq!(
            r,
            ["a (\\NonExistent \\HasChildren) CHILDINFO (SUBSCRIBED)"]
        );
    }

    /// RFC 3501 §6.3.9: "if "foo/bar" is subscribed but "foo" is not, a "%" wildcard to LSUB
    /// must return foo, not foo/bar, in the LSUB response, and it MUST be flagged with the
    /// \Noselect attribute" — whether or not foo exists as a mailbox.
    #[test]
    fn lsub_percent_flags_unsubscribed_parent_noselect() {
        let existing = &[
            "INBOX",
            "m",
            "m/test",
            "m/test2",
            "m/test2/test",
            "m/test3/x",
        ];
        let subs = &["m/test", "m/test2/test", "m/test3/x", "gone"];
        let q = Query {
            lsub: true,
            ..Query::default()
        };
        let r = show(existing, subs, &["m/%"], q);
        assert_eq!(
            r,
            ["m/test ()", "m/test2 (\\Noselect)", "m/test3 (\\Noselect)"]
        );
        // "*" reaches the subscribed names themselves: no parents.
        let r = show(existing, subs, &["*"], q);
        assert_eq!(
            r,
            ["gone ()", "m/test ()", "m/test2/test ()", "m/test3/x ()"]
        );
        // A subscribed parent is not \Noselect even with subscribed children below.
        let r = show(existing, &["m", "m/test"], &["%"], q);
        assert_eq!(r, ["m ()"]);
    }

    /// The SPECIAL-USE selection option (RFC 6154 §3) keeps special-use mailboxes only.
    #[test]
    fn special_use_selection() {
        let q = Query {
            sel_special_use: true,
            ..Query::default()
        };
        let r = show(&["INBOX", "Sent", "x"], &[], &["*"], q);
        assert_eq!(r, ["Sent (\\HasNoChildren \\Sent)"]);
        // A deleted Sent is no special-use mailbox.
        let r = show(&["INBOX", "x"], &["Sent"], &["*"], subscribed(false));
        assert_eq!(r, ["Sent (\\NonExistent \\HasNoChildren \\Subscribed)"]);
    }

    /// Plain LIST: levels above existing mailboxes are \Noselect.
    #[test]
    fn plain_list_shows_levels() {
        let r = show(&["INBOX", "a/b/c"], &["a/b/c"], &["%"], Query::default());
        assert_eq!(
            r,
            ["INBOX (\\HasNoChildren)", "a (\\Noselect \\HasChildren)"]
        );
    }
}
