//! The path rules every path on the wire and in a scanned home must follow.

use crate::{MAX_COMPONENT, MAX_DEPTH, MAX_PATH, TransferError};

/// Checks a relative path: UTF-8 (it is a `str`), `/`-separated, not empty, each component
/// non-empty and not `.` or `..`, no NUL or `\`, components at most [`MAX_COMPONENT`]
/// bytes, the whole at most [`MAX_PATH`] bytes and [`MAX_DEPTH`] components. A leading `/`
/// (absolute path) is an empty first component and refused too.
pub fn check_path(path: &str) -> Result<(), TransferError> {
    let bad = |why: &str| {
        let shown: String = path.chars().take(200).collect();
        Err(TransferError::Path(format!("path {shown:?}: {why}")))
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > MAX_PATH {
        return bad("longer than 4096 bytes");
    }
    if path.contains('\0') {
        return bad("contains NUL");
    }
    if path.contains('\\') {
        return bad("contains a backslash");
    }
    let mut depth = 0;
    for component in path.split('/') {
        depth += 1;
        if depth > MAX_DEPTH {
            return bad("deeper than 64 components");
        }
        match component {
            "" => return bad("an empty component (absolute, or `//`, or a trailing `/`)"),
            "." | ".." => return bad("a `.` or `..` component"),
            c if c.len() > MAX_COMPONENT => return bad("a component longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn good_paths_pass() {
        for p in [
            "cur",
            "cur/1700000000.M1P2.host,S=12:2,S",
            ".Sent/dovecot-uidlist",
            "sieve/main.sieve",
            "..dots-in-a-name",
            "a/b/c/d",
        ] {
            check_path(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        check_path(&"x".repeat(255)).unwrap();
        check_path(&vec!["d"; 64].join("/")).unwrap();
    }

    #[test]
    fn bad_paths_are_refused() {
        let long_component = "x".repeat(256);
        let too_deep = vec!["d"; 65].join("/");
        let too_long = vec!["y".repeat(200); 21].join("/");
        assert!(too_long.len() > 4096);
        for p in [
            "",
            "/",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../x",
            "a/./b",
            ".",
            "a//b",
            "a/",
            "a\0b",
            "a\\..\\b",
            "..\\x",
            long_component.as_str(),
            too_deep.as_str(),
            too_long.as_str(),
        ] {
            assert!(check_path(p).is_err(), "{p:?} accepted");
        }
    }
}
