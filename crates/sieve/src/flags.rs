//! RFC 5232 flag lists: strings holding space-separated flags, compared
//! case-insensitively, never duplicated.

use std::collections::HashSet;

/// The IMAP system flags a script may set, in canonical spelling.
const SYSTEM_FLAGS: &[&str] = &["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// Splits every string on whitespace and drops repeats (first spelling wins).
pub(crate) fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    add(
        &mut out,
        items
            .into_iter()
            .flat_map(str::split_whitespace)
            .map(str::to_owned),
    );
    out
}

/// Appends the flags of `new` that `list` does not hold yet (linear time).
pub(crate) fn add(list: &mut Vec<String>, new: impl IntoIterator<Item = String>) {
    let mut seen: HashSet<String> = list.iter().map(|f| f.to_ascii_lowercase()).collect();
    for f in new {
        if seen.insert(f.to_ascii_lowercase()) {
            list.push(f);
        }
    }
}

/// Removes every flag of `gone` from `list`.
pub(crate) fn remove(list: &mut Vec<String>, gone: &[String]) {
    let gone: HashSet<String> = gone.iter().map(|f| f.to_ascii_lowercase()).collect();
    list.retain(|f| !gone.contains(&f.to_ascii_lowercase()));
}

/// The variable form: flags separated by single spaces.
pub(crate) fn join(list: &[String]) -> String {
    list.join(" ")
}

/// Keeps only flags IMAP can store: the settable system flags (canonical spelling) and
/// keywords (atoms). Each dropped flag adds a warning.
pub(crate) fn sanitize(list: Vec<String>, warnings: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for f in list {
        if let Some(rest) = f.strip_prefix('\\') {
            match SYSTEM_FLAGS
                .iter()
                .find(|s| s[1..].eq_ignore_ascii_case(rest))
            {
                Some(s) => add(&mut out, [(*s).to_owned()]),
                None => warnings.push(format!(
                    "ignored flag '{f}': not a settable IMAP system flag"
                )),
            }
        } else if is_keyword(&f) {
            add(&mut out, [f]);
        } else {
            warnings.push(format!("ignored flag '{f}': not a valid IMAP keyword"));
        }
    }
    out
}

/// An IMAP atom: printable ASCII without atom-specials.
fn is_keyword(f: &str) -> bool {
    !f.is_empty()
        && f.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_operations() {
        let mut l = parse(["\\Seen  $Junk", "\\seen", " Work\t"]);
        assert_eq!(l, ["\\Seen", "$Junk", "Work"]);
        add(&mut l, parse(["work \\Flagged"]));
        assert_eq!(join(&l), "\\Seen $Junk Work \\Flagged");
        remove(&mut l, &parse(["\\SEEN $junk"]));
        assert_eq!(l, ["Work", "\\Flagged"]);
        assert!(parse([""]).is_empty());
    }

    #[test]
    fn sanitizing() {
        let mut w = Vec::new();
        let l = sanitize(
            parse(["\\seen \\Recent \\Bogus a(b $Label1 \\DELETED"]),
            &mut w,
        );
        assert_eq!(l, ["\\Seen", "$Label1", "\\Deleted"]);
        assert_eq!(w.len(), 3);
    }
}
