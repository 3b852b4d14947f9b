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

/// Checks a symbolic link's target for the link at `path` (itself checked by
/// [`check_path`]): the target must be relative, made of components that follow the path
/// rules, with `..` allowed only at its start and never more of them than the link's
/// directory is deep — so it names a path strictly inside the home (ManageSieve's
/// `.dovecot.sieve` → `sieve/NAME.sieve`). `..` after a name (`sieve/../x`) is refused even
/// when it would stay inside: the kernel resolves it after following `sieve` (which may be a
/// link itself), not lexically. With these rules every link, followed from the directory it
/// physically lives in, stays inside the home, whatever other links it passes through.
/// The error names the link.
pub fn check_link_target(path: &str, target: &str) -> Result<(), TransferError> {
    check_path(path)?;
    let bad = |why: &str| {
        let shown: String = target.chars().take(200).collect();
        Err(TransferError::Path(format!(
            "{path}: a symbolic link to {shown:?}, {why} (only links to a path inside the \
             home are carried)"
        )))
    };
    if target.starts_with('/') {
        return bad("an absolute path");
    }
    // The link's own directory is this many components deep below the home.
    let depth = path.split('/').count() - 1;
    let mut ups = 0;
    let mut rest = target;
    while let Some(after) = rest.strip_prefix("../") {
        ups += 1;
        rest = after;
    }
    if rest == ".." || ups > depth {
        return bad("leaving the home");
    }
    if rest.split('/').any(|c| c == "..") {
        return bad("with `..` after a name");
    }
    if check_path(rest).is_err() {
        return bad("not a plain relative path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_link_target, check_path};

    #[test]
    fn link_targets_must_stay_inside_the_home() {
        for (path, target) in [
            (".dovecot.sieve", "sieve/main.sieve"),
            ("a/link", "../sieve/x.sieve"),
            ("a/b/link", "../../x"),
            ("a/b/link", "../c"),
            ("a/link", "sibling"),
        ] {
            check_link_target(path, target).unwrap_or_else(|e| panic!("{path} -> {target}: {e}"));
        }
        for (path, target) in [
            (".dovecot.sieve", "/etc/passwd"),
            (".dovecot.sieve", "/home/x/sieve/a.sieve"),
            (".dovecot.sieve", "../other/sieve/a.sieve"),
            (".dovecot.sieve", ".."),
            (".dovecot.sieve", "."),
            (".dovecot.sieve", ""),
            ("a/link", "../.."),
            ("a/link", "../../x"),
            ("a/link", ".."),
            ("a/link", "sieve/../../x"),
            ("a/link", "sieve/../x"),
            ("a/link", "./x"),
            ("a/link", "x//y"),
            ("a/link", "x/"),
            ("a/link", "x\\y"),
            ("a/link", "x\0y"),
            ("../link", "x"),
        ] {
            let err = check_link_target(path, target);
            assert!(err.is_err(), "{path} -> {target:?} accepted");
        }
    }

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
