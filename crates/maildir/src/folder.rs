//! Folder names: IMAP names (separator `/`, UTF-8) ↔ Maildir++ directory names.
//!
//! Maildir++ (Dovecot's default `maildir` layout) keeps every folder as one directory directly
//! under the Maildir root: `Archive/2026` is `.Archive.2026`, each component written in IMAP
//! modified UTF-7 (`Entwürfe` is `.Entw&APw-rfe`). `INBOX` (any case) is the root itself, and a
//! first component `inbox` in any case is written `INBOX` (`inbox/x` is `.INBOX.x`).
//!
//! Refused: empty names and components (`a//b`), `/` at either end, `.` and `..` components,
//! components starting with `.`, any `.` inside a component (it is the on-disk separator;
//! Dovecot's `listescape` plugin could escape it, we do not), control characters, names longer
//! than [`MAX_NAME_BYTES`] and directory names longer than [`MAX_DIR_NAME_BYTES`] (`NAME_MAX`).

use crate::error::NameError;
use crate::mutf7;

/// The IMAP hierarchy separator.
pub const SEPARATOR: char = '/';
/// Longest accepted folder name (UTF-8 bytes).
pub const MAX_NAME_BYTES: usize = 1000;
/// Longest on-disk directory name (the whole `.A.B.C`, which is one name in Maildir++).
pub const MAX_DIR_NAME_BYTES: usize = 255;

/// True if `name` is INBOX (compared case-insensitively).
pub fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

/// Checks a folder name and returns its Maildir++ directory name, or `None` for INBOX.
pub fn dir_name(name: &str) -> Result<Option<String>, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if is_inbox(name) {
        return Ok(None);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_NAME_BYTES,
        });
    }
    if name.starts_with(SEPARATOR) || name.ends_with(SEPARATOR) {
        return Err(NameError::EdgeSeparator);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for (i, comp) in name.split(SEPARATOR).enumerate() {
        check_component(comp)?;
        out.push('.');
        if i == 0 && is_inbox(comp) {
            out.push_str("INBOX");
        } else {
            out.push_str(&mutf7::encode(comp));
        }
    }
    if out.len() > MAX_DIR_NAME_BYTES {
        return Err(NameError::TooLong {
            len: out.len(),
            max: MAX_DIR_NAME_BYTES,
        });
    }
    Ok(Some(out))
}

fn check_component(comp: &str) -> Result<(), NameError> {
    if comp.is_empty() {
        return Err(NameError::EmptyComponent);
    }
    if comp == "." || comp == ".." {
        return Err(NameError::DotComponent);
    }
    if comp.starts_with('.') {
        return Err(NameError::LeadingDot);
    }
    if comp.contains('.') {
        return Err(NameError::ContainsDot);
    }
    if comp.chars().any(char::is_control) {
        return Err(NameError::ControlChar);
    }
    Ok(())
}

/// Turns a Maildir++ directory name (`.Entw&APw-rfe.2026`) back into a folder name
/// (`Entwürfe/2026`). Only names that [`dir_name`] would produce are accepted, so that every
/// listed folder can be opened again by its name.
pub fn from_dir_name(dir: &str) -> Result<String, NameError> {
    let Some(rest) = dir.strip_prefix('.') else {
        return Err(NameError::LeadingDot);
    };
    let mut name = String::with_capacity(rest.len());
    for (i, comp) in rest.split('.').enumerate() {
        if i > 0 {
            name.push(SEPARATOR);
        }
        name.push_str(&mutf7::decode(comp)?);
    }
    match dir_name(&name)? {
        Some(canonical) if canonical == dir => Ok(name),
        None if dir == ".INBOX" => Ok("INBOX".to_owned()),
        _ => Err(NameError::NonCanonical),
    }
}

/// The special-use folders (RFC 6154) imapd creates at first login, with their attributes.
pub const SPECIAL_USE: [(&str, &str); 5] = [
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];

/// Other names mail clients and servers use for those roles.
const SPECIAL_USE_ALIASES: &[&str] = &[
    "Sent Items",
    "Sent Messages",
    "Sent Mail",
    "Deleted Items",
    "Deleted Messages",
    "Junk E-mail",
    "Junk Email",
    "Spam",
    "Archives",
    "Outbox",
];

/// Whether a folder (`/`-separated) has, or sits below one with, a special-use role by its
/// name: one of [`SPECIAL_USE`] or their common aliases, without regard to ASCII case.
pub fn is_special_use(folder: &str) -> bool {
    let top = folder.split(SEPARATOR).next().unwrap_or(folder);
    SPECIAL_USE
        .iter()
        .map(|(n, _)| *n)
        .chain(SPECIAL_USE_ALIASES.iter().copied())
        .any(|n| n.eq_ignore_ascii_case(folder) || n.eq_ignore_ascii_case(top))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_names() {
        assert_eq!(dir_name("INBOX"), Ok(None));
        assert_eq!(dir_name("inbox"), Ok(None));
        assert_eq!(
            dir_name("Archive/2026").unwrap().as_deref(),
            Some(".Archive.2026")
        );
        assert_eq!(
            dir_name("Entwürfe").unwrap().as_deref(),
            Some(".Entw&APw-rfe")
        );
        assert_eq!(
            dir_name("inbox/Sub").unwrap().as_deref(),
            Some(".INBOX.Sub")
        );
        assert_eq!(
            dir_name("Tom & Jerry").unwrap().as_deref(),
            Some(".Tom &- Jerry")
        );
        assert_eq!(
            from_dir_name(".Entw&APw-rfe.2026").as_deref(),
            Ok("Entwürfe/2026")
        );
        assert_eq!(from_dir_name(".Archive").as_deref(), Ok("Archive"));
    }

    #[test]
    fn refuses_bad_names() {
        use NameError::*;
        let cases: &[(&str, NameError)] = &[
            ("", Empty),
            ("..", DotComponent),
            (".", DotComponent),
            ("../x", DotComponent),
            ("a/../b", DotComponent),
            ("/abs", EdgeSeparator),
            ("trailing/", EdgeSeparator),
            ("a//b", EmptyComponent),
            ("tab\there", ControlChar),
            ("nul\0", ControlChar),
            ("del\u{7f}", ControlChar),
            ("c1\u{85}", ControlChar),
            (".hidden", LeadingDot),
            ("a/.hidden", LeadingDot),
            ("a.b", ContainsDot),
        ];
        for (name, want) in cases {
            assert_eq!(dir_name(name).as_ref(), Err(want), "{name:?}");
        }
        let long = "x".repeat(255);
        assert!(matches!(dir_name(&long), Err(TooLong { max: 255, .. })));
        assert_eq!(
            dir_name(&"x".repeat(254)).map(|d| d.map(|d| d.len())),
            Ok(Some(255))
        );
        let wide = "ü".repeat(60); // 120 bytes UTF-8, but 1 + 163 bytes encoded
        assert!(dir_name(&wide).is_ok());
        assert!(matches!(dir_name(&"ü".repeat(100)), Err(TooLong { .. })));
        assert!(matches!(
            dir_name("a/".repeat(600).trim_end_matches('/')),
            Err(TooLong { max: 1000, .. })
        ));
    }

    #[test]
    fn refuses_non_canonical_dirs() {
        assert!(from_dir_name("Archive").is_err());
        assert!(from_dir_name(".a..b").is_err());
        assert!(from_dir_name(".&AEE-").is_err());
        assert!(from_dir_name(".Entw&APw").is_err());
        assert!(from_dir_name(".&AC8-").is_err()); // an encoded '/'
        assert!(from_dir_name(".inbox.x").is_err()); // we would write .INBOX.x
    }
}
