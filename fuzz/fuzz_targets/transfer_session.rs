//! transfer: the move receiver after a successful handshake (the harness knows the shared
//! secret and answers the greeting's nonce with a correct proof), then arbitrary request
//! lines and `put` bodies against a temporary tree of homes. Whatever the peer sends:
//! no panic, and nothing is ever created, changed or removed outside `<home>` and
//! `<home>.postern-move` of the addresses it named in `begin` (and the parents of those
//! homes); no special file appears, and a symbolic link only inside such a home or staging
//! directory with a relative target that stays inside it (`..` resolved lexically from the
//! link's directory); another user's home is left alone.
//!
//! Input: one byte of options (bit 0: start with `begin` for bob, bits 1-7: the size of the
//! chunks the bytes arrive in), then the peer's bytes after the handshake.
#![no_main]

use std::cell::RefCell;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use postern_transfer::{STAGING_SUFFIX, serve};

const SECRET: &[u8] = b"the-fuzzers-shared-secret-0123456789abcdef";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// The authenticated peer: answers the greeting with a correct proof, then sends `input`.
struct Peer<'a> {
    input: Vec<u8>,
    pos: usize,
    rest: &'a [u8],
    chunk: usize,
    out: Vec<u8>,
    authenticated: bool,
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.authenticated {
            // The greeting is out: prove the secret over its nonce.
            let greeting = std::str::from_utf8(&self.out).expect("UTF-8 greeting");
            let v: serde_json::Value =
                serde_json::from_str(greeting.lines().next().expect("a greeting"))
                    .expect("JSON greeting");
            let server_nonce = unhex(v["nonce"].as_str().expect("a nonce"));
            let client_nonce = [7u8; 32];
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
            let mac = ring::hmac::sign(
                &key,
                &[
                    b"postern-move client".as_slice(),
                    &server_nonce,
                    &client_nonce,
                ]
                .concat(),
            );
            self.input = format!(
                "{{\"op\":\"auth\",\"nonce\":\"{}\",\"mac\":\"{}\"}}\n",
                hex(&client_nonce),
                hex(mac.as_ref())
            )
            .into_bytes();
            self.input.extend_from_slice(self.rest);
            self.authenticated = true;
        }
        let left = &self.input[self.pos..];
        let n = buf.len().min(left.len()).min(self.chunk);
        buf[..n].copy_from_slice(&left[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Peer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn staging(home: &Path) -> PathBuf {
    let mut s = home.as_os_str().to_owned();
    s.push(STAGING_SUFFIX);
    PathBuf::from(s)
}

/// Every path below `dir` (not following links), with what it is.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
    for item in fs::read_dir(dir).expect("read_dir") {
        let item = item.expect("entry");
        let meta = item.metadata().expect("lstat");
        let path = item.path();
        let is_dir = meta.file_type().is_dir();
        out.push((path.clone(), meta));
        if is_dir {
            walk(&path, out);
        }
    }
}

/// Whether the link at `path` (relative to the root) pointing at `target` stays strictly
/// inside the root once `..` is resolved lexically from the link's directory (an
/// independent statement of the rule, looser than `check_link_target`'s).
fn stays_inside(path: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains(['\0', '\\']) {
        return false;
    }
    let mut at: Vec<&str> = path.split('/').collect();
    at.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return false;
                }
            }
            name => at.push(name),
        }
    }
    !at.is_empty()
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, rest)) = data.split_first() else {
        return;
    };
    let dir = postern_fuzz::tempdir();
    // Everything the server may touch is below `root`; the temporary directory must hold
    // nothing else afterwards.
    let root = dir.path().join("root");
    let template = format!("{}/mail/%d/%n", root.display());
    // Another user's home, which no request may touch unless it names alice.
    let alice = root.join("mail/example.test/alice");
    fs::create_dir_all(alice.join("cur")).expect("alice");
    fs::write(
        alice.join("cur/1.host:2,S"),
        b"Subject: alice's\r\n\r\nmail\r\n",
    )
    .expect("mail");
    let mut alice_before = Vec::new();
    walk(&alice, &mut alice_before);

    let begun: RefCell<Vec<PathBuf>> = RefCell::new(Vec::new());
    let home_of = |address: &str| {
        let home = postern_imapd::mover::home_for(&template, address)?;
        begun.borrow_mut().push(home.clone());
        Ok(home)
    };
    let mut input = Vec::new();
    if opts & 1 == 1 {
        input.extend_from_slice(b"{\"op\":\"begin\",\"address\":\"bob@example.test\"}\n");
    }
    input.extend_from_slice(rest);
    let mut peer = Peer {
        input: Vec::new(),
        pos: 0,
        rest: &input,
        chunk: usize::from(opts >> 1).max(1) * 97,
        out: Vec::new(),
        authenticated: false,
    };
    let _ = serve(&mut peer, SECRET, &home_of);
    assert!(
        String::from_utf8_lossy(&peer.out)
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("\"ok\":true")),
        "the handshake failed"
    );

    let begun = begun.into_inner();
    let mut allowed: Vec<PathBuf> = Vec::new();
    for home in &begun {
        allowed.push(home.clone());
        allowed.push(staging(home));
    }
    let mut all = Vec::new();
    walk(dir.path(), &mut all);
    for (path, meta) in &all {
        let ft = meta.file_type();
        if ft.is_symlink() {
            // Only below a home or staging directory, pointing inside that same root.
            let root = allowed
                .iter()
                .find(|a| path.starts_with(a) && path != *a)
                .unwrap_or_else(|| panic!("{}: a link outside the homes", path.display()));
            let rel = path.strip_prefix(root).expect("below the root");
            let target = fs::read_link(path).expect("readlink");
            let (Some(rel), Some(target)) = (rel.to_str(), target.to_str()) else {
                panic!("{}: not UTF-8", path.display());
            };
            assert!(
                stays_inside(rel, target),
                "{}: a link to {target:?}, outside its home",
                path.display()
            );
        } else {
            assert!(
                ft.is_dir() || ft.is_file(),
                "{}: neither a file, a directory nor a link",
                path.display()
            );
        }
        let inside = allowed.iter().any(|a| path.starts_with(a));
        // The parents of a home (created when missing) and alice's untouched home.
        let parent_of_home =
            ft.is_dir() && begun.iter().chain([&alice]).any(|h| h.starts_with(path));
        let alices = path.starts_with(&alice);
        assert!(
            inside || parent_of_home || alices,
            "{}: written outside the homes named in begin ({begun:?})",
            path.display()
        );
    }
    if !begun.iter().any(|h| h == &alice) {
        let mut alice_after = Vec::new();
        walk(&alice, &mut alice_after);
        let shape = |v: &[(PathBuf, fs::Metadata)]| {
            v.iter()
                .map(|(p, m)| (p.clone(), m.len(), m.is_dir()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shape(&alice_before),
            shape(&alice_after),
            "alice's home changed"
        );
        assert_eq!(
            fs::read(alice.join("cur/1.host:2,S")).expect("alice's mail"),
            b"Subject: alice's\r\n\r\nmail\r\n"
        );
    }
});
