//! Dovecot's `subscriptions` file in the Maildir root.
//!
//! Dovecot 2.3 (`subscription-file.c`) writes a new file as version 2: the header
//! `"V\t2\n\n"`, then one mailbox per line, its hierarchy components (UTF-8) joined by a TAB,
//! each component escaped with Dovecot's tab escaping (`\x01` → `\x011`, TAB → `\x01t`,
//! CR → `\x01r`, LF → `\x01n`). Files without the header are the old format: one name per
//! line as it is. We read both (old-format names with `.` separators and modified UTF-7
//! components, as Maildir++ stores them, are converted) and write version 2. The file is
//! changed under the `subscriptions.lock` dotlock, whose file receives the new contents and
//! is renamed over `subscriptions` (Dovecot's `file_dotlock_replace`).

use crate::folder;
use crate::mutf7;

/// Name of the file in the Maildir root.
pub const SUBSCRIPTIONS_FILE: &str = "subscriptions";
/// The version 2 header.
pub const VERSION2_HEADER: &str = "V\t2\n\n";
/// Most names a subscription list takes: every change rewrites the whole file, so the list
/// bounds what one SUBSCRIBE costs.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

fn tab_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            c => out.push(c),
        }
    }
}

fn tab_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// An old-format line: `/`-separated names are used as they are; otherwise `.` separates
/// components (Maildir++), which may be in modified UTF-7.
fn old_name(line: &str) -> String {
    if line.contains('/') || !line.contains('.') && !line.contains('&') {
        return line.to_owned();
    }
    line.split('.')
        .map(|c| mutf7::decode(c).unwrap_or_else(|_| c.to_owned()))
        .collect::<Vec<_>>()
        .join("/")
}

/// Parses the file: mailbox names with `/` as separator, `INBOX` normalised, in file order,
/// without duplicates or empty lines.
pub fn parse(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let (v2, body) = match text.strip_prefix(VERSION2_HEADER) {
        Some(rest) => (true, rest),
        None => (false, &*text),
    };
    let mut out: Vec<String> = Vec::new();
    // Duplicates by set: a scan of `out` per line was quadratic in the file's length.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for line in body.split('\n') {
        if line.is_empty() {
            continue;
        }
        let name = if v2 {
            line.split('\t')
                .map(tab_unescape)
                .collect::<Vec<_>>()
                .join("/")
        } else {
            old_name(line)
        };
        let name = if folder::is_inbox(&name) {
            "INBOX".to_owned()
        } else {
            name
        };
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    out
}

/// The file contents (version 2) for these names.
pub fn format(names: &[String]) -> String {
    let mut s = String::from(VERSION2_HEADER);
    for n in names {
        for (i, comp) in n.split(folder::SEPARATOR).enumerate() {
            if i > 0 {
                s.push('\t');
            }
            tab_escape(comp, &mut s);
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_2_round_trip() {
        let names = vec![
            "INBOX".to_owned(),
            "Archive/2026".to_owned(),
            "Entwürfe".to_owned(),
            "odd\tname".to_owned(),
        ];
        let text = format(&names);
        assert_eq!(
            text,
            "V\t2\n\nINBOX\nArchive\t2026\nEntwürfe\nodd\x01tname\n"
        );
        assert_eq!(parse(text.as_bytes()), names);
    }

    #[test]
    fn dovecot_files() {
        // As Dovecot 2.3 writes it.
        let v2 = b"V\t2\n\nTrash\nSent\nArchive\t2026\ninbox\nSent\n";
        assert_eq!(parse(v2), ["Trash", "Sent", "Archive/2026", "INBOX"]);
        // The old format, with Maildir++ names.
        let old = b"Trash\nArchive.2026\nEntw&APw-rfe\nList/Sub\n\n";
        assert_eq!(
            parse(old),
            ["Trash", "Archive/2026", "Entwürfe", "List/Sub"]
        );
        assert!(parse(b"").is_empty());
        assert!(parse(VERSION2_HEADER.as_bytes()).is_empty());
    }

    #[test]
    fn a_huge_file_parses_in_linear_time() {
        // 200 000 distinct names (a 2 MB file, disk input): the duplicate check compared each
        // name with all before it (2·10^10 comparisons).
        let mut text = VERSION2_HEADER.to_owned();
        for i in 0..200_000 {
            text.push_str(&format!("f{i}\n"));
        }
        text.push_str("f7\nINBOX\ninbox\n");
        let t = std::time::Instant::now();
        let names = parse(text.as_bytes());
        eprintln!("subscriptions parse: {:?}", t.elapsed());
        assert_eq!(names.len(), 200_001);
        assert_eq!(names.last().map(String::as_str), Some("INBOX"));
    }
}
