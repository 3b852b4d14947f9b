//! Message flags and the Maildir info part `:2,<letters>`.
//!
//! System flags use the standard Maildir letters: `D` draft, `F` flagged, `R` replied
//! (`\Answered`), `S` seen, `T` trashed (`\Deleted`); `P` (passed) has no IMAP flag and is not
//! used. Keywords use the letters `a`..=`z`, whose names are kept per mailbox in the
//! `dovecot-keywords` file (see [`crate::keywords`]). All letters are written sorted by ASCII
//! code, as Dovecot writes them.

/// Flags to store with a delivered message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `\Seen` (`S`).
    pub seen: bool,
    /// `\Answered` (`R`).
    pub answered: bool,
    /// `\Flagged` (`F`).
    pub flagged: bool,
    /// `\Deleted` (`T`).
    pub deleted: bool,
    /// `\Draft` (`D`).
    pub draft: bool,
    /// IMAP keywords (`$Junk`, `Work`, …), at most 26 distinct per mailbox.
    pub keywords: Vec<String>,
}

impl Flags {
    /// No flags and no keywords.
    pub fn is_empty(&self) -> bool {
        !(self.seen || self.answered || self.flagged || self.deleted || self.draft)
            && self.keywords.is_empty()
    }

    /// The system flag letters, sorted (`DFRST` subset).
    pub fn system_letters(&self) -> String {
        [
            (self.draft, 'D'),
            (self.flagged, 'F'),
            (self.answered, 'R'),
            (self.seen, 'S'),
            (self.deleted, 'T'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }

    /// Reads the system flags from an info part (`2,FS`, or a whole file name); keyword
    /// letters are returned as they are (`a`..=`z`), for the caller to map through
    /// `dovecot-keywords`. Unknown letters are ignored, as Dovecot ignores them.
    pub fn from_info(info: &str) -> (Self, Vec<u8>) {
        let mut flags = Self::default();
        let mut letters = Vec::new();
        let Some(list) = info_letters(info) else {
            return (flags, letters);
        };
        for b in list.bytes() {
            match b {
                b'D' => flags.draft = true,
                b'F' => flags.flagged = true,
                b'R' => flags.answered = true,
                b'S' => flags.seen = true,
                b'T' => flags.deleted = true,
                b'a'..=b'z' => letters.push(b),
                _ => {}
            }
        }
        (flags, letters)
    }
}

/// The flag letters of an info part: the text after `2,` up to the next `,`.
/// Accepts either the info (`2,S`) or a whole file name (`…:2,S`).
pub fn info_letters(info_or_name: &str) -> Option<&str> {
    let info = info_or_name
        .rsplit_once(':')
        .map_or(info_or_name, |(_, i)| i);
    let list = info.strip_prefix("2,")?;
    Some(list.split_once(',').map_or(list, |(l, _)| l))
}

/// Builds the info suffix `:2,<letters>` from system flags and keyword letters, all sorted and
/// without duplicates. Returns an empty string when there is nothing to write (the message then
/// goes to `new/` without an info part).
pub fn info_suffix(flags: &Flags, keyword_letters: &[u8]) -> String {
    let mut letters: Vec<u8> = flags.system_letters().into_bytes();
    letters.extend(
        keyword_letters
            .iter()
            .copied()
            .filter(u8::is_ascii_lowercase),
    );
    letters.sort_unstable();
    letters.dedup();
    if letters.is_empty() {
        return String::new();
    }
    let mut s = String::from(":2,");
    s.extend(letters.iter().map(|&b| char::from(b)));
    s
}

/// True if `kw` is a valid IMAP keyword (an atom, RFC 3501 `flag-keyword`): printable
/// US-ASCII without space or any of `(){%*"\]`, at most 255 bytes.
pub fn is_valid_keyword(kw: &str) -> bool {
    !kw.is_empty()
        && kw.len() <= 255
        && kw
            .bytes()
            .all(|b| b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_is_sorted() {
        let f = Flags {
            seen: true,
            answered: true,
            flagged: true,
            deleted: true,
            draft: true,
            keywords: vec![],
        };
        assert_eq!(f.system_letters(), "DFRST");
        assert_eq!(info_suffix(&f, b"ca"), ":2,DFRSTac");
        assert_eq!(info_suffix(&Flags::default(), b""), "");
        let seen = Flags {
            seen: true,
            ..Flags::default()
        };
        assert_eq!(info_suffix(&seen, b"b"), ":2,Sb");
    }

    #[test]
    fn parse_info() {
        let (f, kw) = Flags::from_info("1.M1P1.h,S=1:2,FSab");
        assert!(f.flagged && f.seen && !f.deleted);
        assert_eq!(kw, b"ab");
        assert_eq!(info_letters("2,S,extra"), Some("S"));
        assert_eq!(info_letters("1,x"), None);
        assert!(Flags::from_info("nothing").0.is_empty());
    }

    #[test]
    fn keyword_syntax() {
        assert!(is_valid_keyword("$Junk"));
        assert!(is_valid_keyword("Work-2026"));
        for bad in ["", "a b", "\\Seen", "x*", "t(", "ü", "a\n"] {
            assert!(!is_valid_keyword(bad), "{bad:?}");
        }
    }
}
