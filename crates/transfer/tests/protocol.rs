//! The move protocol end to end: the real client against the real server over a Unix
//! socket pair (real I/O, one thread each), on real directories.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use postern_transfer::{
    Action, CHUNK, Client, Entry, Kind, MAX_LINE, Manifest, STAGING_SUFFIX, Status, TransferError,
    read_secret, scan, serve,
};

const SECRET: &[u8] = b"the-shared-secret-of-this-test-0123456789";
const ADDRESS: &str = "bob@example.org";

/// The destination's homes: `<root>/<domain>/<local part>`.
fn home_in(root: &Path, address: &str) -> PathBuf {
    let (local, domain) = address.split_once('@').unwrap();
    root.join(domain).join(local)
}

fn staging_in(root: &Path) -> PathBuf {
    let mut s = home_in(root, ADDRESS).into_os_string();
    s.push(STAGING_SUFFIX);
    PathBuf::from(s)
}

/// Starts a server on one end of a socket pair, with `secret`, its homes under `root`.
fn server_with(
    root: &Path,
    secret: &'static [u8],
) -> (UnixStream, JoinHandle<Result<(), TransferError>>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    theirs
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let root = root.to_path_buf();
    let handle =
        thread::spawn(move || serve(theirs, secret, &|address: &str| Ok(home_in(&root, address))));
    (ours, handle)
}

fn connect(root: &Path) -> (Client<UnixStream>, JoinHandle<Result<(), TransferError>>) {
    let (stream, handle) = server_with(root, SECRET);
    (Client::handshake(stream, SECRET).unwrap(), handle)
}

fn set_mtime(path: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// A home like a real one: a Maildir with folders, a uidlist, a Sieve script.
fn make_source(dir: &Path) -> PathBuf {
    let home = dir.join("source-home");
    for d in [
        "cur",
        "new",
        "tmp",
        ".Sent/cur",
        ".Sent/new",
        ".Sent/tmp",
        "sieve",
    ] {
        fs::create_dir_all(home.join(d)).unwrap();
    }
    let files: &[(&str, &[u8], u32)] = &[
        ("cur/1700000000.M1P1.host,S=5:2,S", b"hello", 0o600),
        ("cur/1700000001.M2P1.host,S=0:2,", b"", 0o600),
        ("new/1700000002.M3P1.host,S=3", b"new", 0o640),
        (".Sent/cur/1700000003.M4P1.host,S=4:2,RS", b"sent", 0o600),
        (
            "dovecot-uidlist",
            b"3 V1700000000 N4 G0123\n1 :1700000000.M1P1.host\n",
            0o600,
        ),
        ("dovecot-keywords", b"0 $Important\n", 0o600),
        ("subscriptions", b"Sent\n", 0o644),
        ("sieve/main.sieve", b"keep;\n", 0o600),
    ];
    for (i, (path, body, mode)) in files.iter().enumerate() {
        let p = home.join(path);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
        set_mtime(&p, 1_700_000_000 + i as u64);
    }
    fs::set_permissions(home.join("sieve"), fs::Permissions::from_mode(0o750)).unwrap();
    home
}

/// Applies `Manifest::diff(scan(source), dest)` through the client; returns how many
/// actions were sent.
fn sync_pass(client: &mut Client<UnixStream>, source: &Path, dest: &Manifest) -> usize {
    let src = scan(source, false).unwrap();
    let actions = Manifest::diff(&src, dest);
    for action in &actions {
        match action {
            Action::Mkdir(e) => client.mkdir(e).unwrap(),
            Action::Put(e) if e.kind == Kind::Symlink => client.symlink(e).unwrap(),
            Action::Put(e) => {
                let mut f = fs::File::open(source.join(&e.path)).unwrap();
                client.put(e, &mut f).unwrap();
            }
            Action::Delete(p) => client.delete(p).unwrap(),
        }
    }
    actions.len()
}

#[test]
fn a_home_is_copied_verified_and_committed_with_modes_and_mtimes() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_source(dir.path());
    let root = dir.path().join("dest");
    let (mut c, server) = connect(&root);
    assert_eq!(c.begin(ADDRESS).unwrap(), Status::Fresh);
    let sent = sync_pass(&mut c, &source, &Manifest::default());
    assert_eq!(sent, scan(&source, false).unwrap().entries.len());
    // A second pass finds nothing to do.
    let staged = scan(&staging_in(&root), false).unwrap();
    assert_eq!(sync_pass(&mut c, &source, &staged), 0);
    // Modes and mtimes of files are kept exactly.
    let src = scan(&source, false).unwrap();
    for (a, b) in src.entries.iter().zip(&staged.entries) {
        assert_eq!((&a.path, &a.kind, a.mode), (&b.path, &b.kind, b.mode));
        if a.kind == Kind::File {
            assert_eq!((a.size, a.mtime), (b.size, b.mtime), "{}", a.path);
        }
    }
    let hashed = scan(&source, true).unwrap();
    let remote = c.verify().unwrap();
    Manifest::same_content(&hashed, &remote).unwrap();
    c.commit().unwrap();
    let home = home_in(&root, ADDRESS);
    assert!(!staging_in(&root).exists());
    Manifest::same_content(&hashed, &scan(&home, true).unwrap()).unwrap();
    assert_eq!(
        fs::read(home.join("cur/1700000000.M1P1.host,S=5:2,S")).unwrap(),
        b"hello"
    );
    drop(c);
    server.join().unwrap().unwrap();

    // A new connection finds the committed home, with hashes.
    let (mut c, _server) = connect(&root);
    match c.begin(ADDRESS).unwrap() {
        Status::HomeExists(m) => Manifest::same_content(&hashed, &m).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_secret_on_the_client_side_fails_on_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, server) = server_with(dir.path(), SECRET);
    let err = Client::handshake(stream, b"another-secret-another-secret-another")
        .err()
        .unwrap();
    assert!(matches!(err, TransferError::Auth), "{err:?}");
    assert!(matches!(server.join().unwrap(), Err(TransferError::Auth)));
}

/// A client's view of a raw connection: the greeting's nonce.
fn greeting_nonce(r: &mut BufReader<UnixStream>) -> Vec<u8> {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    unhex(v["nonce"].as_str().unwrap())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, &parts.concat()).as_ref().to_vec()
}

fn auth_line(secret: &[u8], server_nonce: &[u8]) -> String {
    let client_nonce = [7u8; 32];
    let mac = hmac(
        secret,
        &[b"postern-move client", server_nonce, &client_nonce],
    );
    format!(
        "{{\"op\":\"auth\",\"nonce\":\"{}\",\"mac\":\"{}\"}}\n",
        hex(&client_nonce),
        hex(&mac)
    )
}

#[test]
fn one_authentication_attempt_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, server) = server_with(dir.path(), SECRET);
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let nonce = greeting_nonce(&mut r);
    w.write_all(auth_line(b"wrong-wrong-wrong-wrong-wrong-wrong", &nonce).as_bytes())
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":false"), "{line}");
    // The right proof for the same nonce now: the server has closed.
    let _ = w.write_all(auth_line(SECRET, &nonce).as_bytes());
    let mut rest = String::new();
    assert_eq!(r.read_line(&mut rest).unwrap_or(0), 0, "{rest}");
    assert!(matches!(server.join().unwrap(), Err(TransferError::Auth)));
}

#[test]
fn a_server_that_cannot_prove_the_secret_is_refused_by_the_client() {
    // An impostor that accepts any client and answers with a made-up proof (it does not
    // know the secret).
    for fake_proof in [
        hex(&[0u8; 32]),
        hex(&hmac(b"not-the-secret-not-the-secret!!!!", &[b"x"])),
    ] {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let impostor = thread::spawn(move || {
            let mut r = BufReader::new(theirs.try_clone().unwrap());
            let mut w = theirs;
            writeln!(
                w,
                "{{\"greeting\":\"postern-move 1\",\"nonce\":\"{}\"}}",
                hex(&[9u8; 32])
            )
            .unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            writeln!(w, "{{\"ok\":true,\"mac\":\"{fake_proof}\"}}").unwrap();
            // Anything the client sends after this would be mail for the impostor.
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
            rest
        });
        let err = Client::handshake(ours, SECRET).err().unwrap();
        assert!(matches!(err, TransferError::Auth), "{err:?}");
        assert!(impostor.join().unwrap().is_empty(), "the client sent on");
    }
    // A real server with another secret: refused too.
    let dir = tempfile::tempdir().unwrap();
    let (stream, _server) = server_with(dir.path(), b"the-other-nodes-secret-0123456789abc");
    assert!(matches!(
        Client::handshake(stream, SECRET).err().unwrap(),
        TransferError::Auth
    ));
}

/// A raw authenticated connection, for requests the client would never send.
struct Raw {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Raw {
    fn open(root: &Path) -> (Self, JoinHandle<Result<(), TransferError>>) {
        let (stream, server) = server_with(root, SECRET);
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        let nonce = greeting_nonce(&mut r);
        w.write_all(auth_line(SECRET, &nonce).as_bytes()).unwrap();
        let mut raw = Self { r, w };
        assert!(raw.line().contains("\"ok\":true"));
        (raw, server)
    }
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        line
    }
    fn ask(&mut self, request: &str) -> String {
        self.w.write_all(request.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
        self.line()
    }
}

#[test]
fn the_server_refuses_paths_outside_the_rules_and_writes_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dest");
    let (mut raw, _server) = Raw::open(&root);
    let begin = raw.ask(r#"{"op":"begin","address":"bob@example.org"}"#);
    assert!(begin.contains("fresh"), "{begin}");
    let long_component = "x".repeat(256);
    let too_long = vec!["y".repeat(200); 21].join("/");
    let too_deep = vec!["d"; 65].join("/");
    let bad = [
        "..",
        "../escaped",
        "a/../../escaped",
        "/tmp/escaped",
        "a\\u0000b",
        "..\\\\escaped",
        "a//b",
        "a/",
        "",
        ".",
        long_component.as_str(),
        too_long.as_str(),
        too_deep.as_str(),
    ];
    for p in bad {
        let e = format!(r#"{{"path":"{p}","kind":"File","size":3,"mtime":1,"mode":384}}"#);
        // put: header, body, trailer; refused, and the connection stays in step.
        raw.w
            .write_all(
                format!("{{\"op\":\"put\",\"entry\":{e}}}\nabc{{\"done\":true}}\n").as_bytes(),
            )
            .unwrap();
        let reply = raw.line();
        assert!(reply.contains("\"ok\":false"), "{p:?}: {reply}");
        let d = format!(r#"{{"path":"{p}","kind":"Dir","size":0,"mtime":1,"mode":448}}"#);
        let reply = raw.ask(&format!("{{\"op\":\"mkdir\",\"entry\":{d}}}"));
        assert!(reply.contains("\"ok\":false"), "{p:?}: {reply}");
        let reply = raw.ask(&format!("{{\"op\":\"delete\",\"path\":\"{p}\"}}"));
        assert!(reply.contains("\"ok\":false"), "{p:?}: {reply}");
    }
    // A good request still works on the same connection.
    let e = r#"{"path":"ok","kind":"File","size":3,"mtime":1,"mode":384}"#;
    raw.w
        .write_all(format!("{{\"op\":\"put\",\"entry\":{e}}}\nabc{{\"done\":true}}\n").as_bytes())
        .unwrap();
    assert!(raw.line().contains("\"ok\":true"));
    // Nothing but the staging directory (holding `ok`) was written.
    let mut all = Vec::new();
    walk(dir.path(), &mut all);
    let staging = staging_in(&root);
    for p in &all {
        assert!(
            p.starts_with(&staging) || staging.starts_with(p),
            "written outside staging: {}",
            p.display()
        );
    }
    assert_eq!(fs::read(staging.join("ok")).unwrap(), b"abc");
    assert!(!dir.path().join("escaped").exists() && !Path::new("/tmp/escaped").exists());
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

#[test]
fn addresses_that_could_escape_never_reach_the_home_template() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for address in [
        "../x@y",
        "a/b@c",
        "bob@../etc",
        "no-at-sign",
        "",
        "a\\b@c",
        "a\u{0}@b",
        ".@example.org",
        "bob@.",
        "..@example.org",
        "@example.org",
        "bob@",
        "bob@.hidden",
    ] {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let seen = calls.clone();
        let root = dir.path().to_path_buf();
        let server = thread::spawn(move || {
            serve(theirs, SECRET, &|a: &str| {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(home_in(&root, a))
            })
        });
        let mut c = Client::handshake(ours, SECRET).unwrap();
        let err = c.begin(address).unwrap_err();
        assert!(
            matches!(err, TransferError::Remote(_)),
            "{address:?}: {err:?}"
        );
        drop(c);
        server.join().unwrap().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // A home template that would yield a `.` component is refused too.
    for home in ["/srv/mail/example.org/.", "/srv/mail/../x", "relative/home"] {
        let (ours, theirs) = UnixStream::pair().unwrap();
        thread::spawn(move || serve(theirs, SECRET, &|_: &str| Ok(PathBuf::from(home))));
        let mut c = Client::handshake(ours, SECRET).unwrap();
        let err = c.begin(ADDRESS).unwrap_err().to_string();
        assert!(err.contains("absolute path without"), "{home}: {err}");
    }
    // home_of's own refusal reaches the client.
    let (ours, theirs) = UnixStream::pair().unwrap();
    thread::spawn(move || serve(theirs, SECRET, &|_: &str| Err("no such domain here".into())));
    let mut c = Client::handshake(ours, SECRET).unwrap();
    let err = c.begin(ADDRESS).unwrap_err().to_string();
    assert!(err.contains("no such domain here"), "{err}");
}

#[test]
fn a_symlink_planted_in_staging_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dest");
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), b"keep me").unwrap();
    let (mut c, _server) = connect(&root);
    c.begin(ADDRESS).unwrap();
    let cur = Entry {
        path: "cur".into(),
        kind: Kind::Dir,
        size: 0,
        mtime: 1,
        mode: 0o700,
        sha256: None,
        target: None,
    };
    c.mkdir(&cur).unwrap();
    // Someone replaces staging/cur with a link to a directory outside.
    let staging = staging_in(&root);
    fs::remove_dir(staging.join("cur")).unwrap();
    symlink(&outside, staging.join("cur")).unwrap();
    let file = |path: &str| Entry {
        path: path.into(),
        kind: Kind::File,
        size: 4,
        mtime: 1,
        mode: 0o600,
        sha256: None,
        target: None,
    };
    let err = c.put(&file("cur/precious"), &mut &b"evil"[..]).unwrap_err();
    assert!(
        matches!(&err, TransferError::Remote(m) if m.contains("not a directory")),
        "{err:?}"
    );
    let err = c.put(&file("cur/new-file"), &mut &b"evil"[..]).unwrap_err();
    assert!(matches!(err, TransferError::Remote(_)), "{err:?}");
    assert!(c.delete("cur/precious").is_err());
    let sub = Entry {
        path: "cur/sub".into(),
        ..cur.clone()
    };
    assert!(c.mkdir(&sub).is_err());
    // mkdir of the link itself does not chmod the target.
    let before = fs::metadata(&outside).unwrap().mode();
    let err = c
        .mkdir(&Entry {
            mode: 0o777,
            ..cur.clone()
        })
        .unwrap_err();
    assert!(matches!(err, TransferError::Remote(_)), "{err:?}");
    assert_eq!(fs::metadata(&outside).unwrap().mode(), before);
    // verify refuses to describe a staging directory with a link in it.
    let err = c.verify().unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    // A link at a file's own name is replaced, not written through.
    fs::remove_file(staging.join("cur")).unwrap();
    symlink(outside.join("precious"), staging.join("linked")).unwrap();
    c.put(&file("linked"), &mut &b"mine"[..]).unwrap();
    assert!(
        fs::symlink_metadata(staging.join("linked"))
            .unwrap()
            .is_file()
    );
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    // A link at delete's own name is removed, its target kept.
    symlink(outside.join("precious"), staging.join("link2")).unwrap();
    c.delete("link2").unwrap();
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me");
    // Staging itself replaced by a link: refused.
    let (mut c2, _s2) = connect(&dir.path().join("dest2"));
    c2.begin(ADDRESS).unwrap();
    let staging2 = staging_in(&dir.path().join("dest2"));
    fs::create_dir_all(staging2.parent().unwrap()).unwrap();
    symlink(&outside, &staging2).unwrap();
    assert!(c2.put(&file("x"), &mut &b"evil"[..]).is_err());
    assert!(c2.mkdir(&cur).is_err());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn scan_refuses_symlinks_and_special_files_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let home = make_source(dir.path());
    symlink("/etc/passwd", home.join("cur/link")).unwrap();
    let err = scan(&home, false).unwrap_err().to_string();
    assert!(
        err.contains("cur/link") && err.contains("symbolic link"),
        "{err}"
    );
    fs::remove_file(home.join("cur/link")).unwrap();
    let _listener = UnixListener::bind(home.join("sieve/socket")).unwrap();
    let err = scan(&home, true).unwrap_err().to_string();
    assert!(
        err.contains("sieve/socket") && err.contains("socket"),
        "{err}"
    );
    fs::remove_file(home.join("sieve/socket")).unwrap();
    scan(&home, true).unwrap();
    // The root itself must be a directory, not a link to one.
    symlink(&home, dir.path().join("home-link")).unwrap();
    assert!(scan(&dir.path().join("home-link"), false).is_err());
}

#[test]
fn put_with_a_short_or_long_body_stores_nothing_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dest");
    let (mut c, _server) = connect(&root);
    c.begin(ADDRESS).unwrap();
    let e = Entry {
        path: "f".into(),
        kind: Kind::File,
        size: 10,
        mtime: 5,
        mode: 0o600,
        sha256: None,
        target: None,
    };
    let err = c.put(&e, &mut &b"short"[..]).unwrap_err();
    assert!(matches!(err, TransferError::Changed(_)), "{err:?}");
    let err = c.put(&e, &mut &b"much longer than ten"[..]).unwrap_err();
    assert!(matches!(err, TransferError::Changed(_)), "{err:?}");
    assert!(!staging_in(&root).join("f").exists());
    // No temporary file is left behind either.
    assert_eq!(fs::read_dir(staging_in(&root)).unwrap().count(), 0);
    c.put(&e, &mut &b"0123456789"[..]).unwrap();
    assert_eq!(
        fs::read(staging_in(&root).join("f")).unwrap(),
        b"0123456789"
    );
}

#[test]
fn verify_finds_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_source(dir.path());
    let root = dir.path().join("dest");
    let (mut c, _server) = connect(&root);
    c.begin(ADDRESS).unwrap();
    sync_pass(&mut c, &source, &Manifest::default());
    let hashed = scan(&source, true).unwrap();
    Manifest::same_content(&hashed, &c.verify().unwrap()).unwrap();
    let victim = staging_in(&root).join("dovecot-uidlist");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[3] ^= 1;
    fs::write(&victim, &bytes).unwrap();
    let why = Manifest::same_content(&hashed, &c.verify().unwrap()).unwrap_err();
    assert!(why.contains("dovecot-uidlist"), "{why}");
}

#[test]
fn commit_refuses_a_home_with_content_and_replaces_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_source(dir.path());
    let root = dir.path().join("dest");
    let home = home_in(&root, ADDRESS);
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join("someone-else"), b"data").unwrap();
    let (mut c, _server) = connect(&root);
    assert!(matches!(c.begin(ADDRESS).unwrap(), Status::HomeExists(_)));
    sync_pass(&mut c, &source, &Manifest::default());
    let err = c.commit().unwrap_err();
    assert!(
        matches!(&err, TransferError::Remote(m) if m.contains("not empty")),
        "{err:?}"
    );
    assert_eq!(fs::read(home.join("someone-else")).unwrap(), b"data");
    // An empty home left by someone is fine.
    fs::remove_file(home.join("someone-else")).unwrap();
    let (mut c, _server) = connect(&root);
    match c.begin(ADDRESS).unwrap() {
        Status::Staging(m) => assert!(!m.entries.is_empty()),
        other => panic!("{other:?}"),
    }
    c.commit().unwrap();
    Manifest::same_content(&scan(&source, true).unwrap(), &scan(&home, true).unwrap()).unwrap();
}

#[test]
fn abort_removes_staging_and_only_a_matching_home() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_source(dir.path());
    let hashed = scan(&source, true).unwrap();
    let root = dir.path().join("dest");
    let home = home_in(&root, ADDRESS);
    // Staging only: abort without a manifest removes it.
    let (mut c, _s) = connect(&root);
    c.begin(ADDRESS).unwrap();
    sync_pass(&mut c, &source, &Manifest::default());
    assert!(staging_in(&root).is_dir());
    c.abort(None).unwrap();
    assert!(!staging_in(&root).exists());
    // Committed, then aborted with the source's manifest: the home goes too.
    let (mut c, _s) = connect(&root);
    assert_eq!(c.begin(ADDRESS).unwrap(), Status::Fresh);
    sync_pass(&mut c, &source, &Manifest::default());
    c.commit().unwrap();
    c.abort(Some(&hashed)).unwrap();
    assert!(!home.exists());
    // A committed home that has changed since (mail delivered there) is left alone.
    let (mut c, _s) = connect(&root);
    c.begin(ADDRESS).unwrap();
    sync_pass(&mut c, &source, &Manifest::default());
    c.commit().unwrap();
    fs::write(home.join("new/1800000000.M9P9.host,S=2"), b"hi").unwrap();
    let err = c.abort(Some(&hashed)).unwrap_err();
    assert!(
        matches!(&err, TransferError::Remote(m) if m.contains("left in place")),
        "{err:?}"
    );
    assert!(home.join("new/1800000000.M9P9.host,S=2").exists());
    // And without a manifest the home is never touched.
    c.abort(None).unwrap();
    assert!(home.join("dovecot-uidlist").exists());
}

#[test]
fn a_resumed_move_starts_from_what_staging_holds() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_source(dir.path());
    let root = dir.path().join("dest");
    let (mut c, server) = connect(&root);
    c.begin(ADDRESS).unwrap();
    // Only part of the first pass gets through before the connection dies.
    let src = scan(&source, false).unwrap();
    let actions = Manifest::diff(&src, &Manifest::default());
    let half = actions.len() / 2;
    for action in &actions[..half] {
        match action {
            Action::Mkdir(e) => c.mkdir(e).unwrap(),
            Action::Put(e) => c
                .put(e, &mut fs::File::open(source.join(&e.path)).unwrap())
                .unwrap(),
            Action::Delete(_) => unreachable!(),
        }
    }
    drop(c);
    server.join().unwrap().unwrap();
    // A file that changed at the source meanwhile, and one the source no longer has.
    fs::remove_file(source.join("new/1700000002.M3P1.host,S=3")).unwrap();
    let (mut c, _server) = connect(&root);
    let Status::Staging(staged) = c.begin(ADDRESS).unwrap() else {
        panic!("no staging reported")
    };
    let copied: Vec<&str> = actions[..half]
        .iter()
        .map(|a| match a {
            Action::Mkdir(e) | Action::Put(e) => e.path.as_str(),
            Action::Delete(p) => p.as_str(),
        })
        .collect();
    let listed: Vec<&str> = staged.entries.iter().map(|e| e.path.as_str()).collect();
    let mut copied_sorted = copied.clone();
    copied_sorted.sort();
    assert_eq!(listed, copied_sorted);
    assert!(staged.entries.iter().all(|e| e.sha256.is_none()));
    let rest = Manifest::diff(&scan(&source, false).unwrap(), &staged);
    assert!(rest.len() < actions.len());
    sync_pass(&mut c, &source, &staged);
    Manifest::same_content(&scan(&source, true).unwrap(), &c.verify().unwrap()).unwrap();
}

/// A stream that records the largest single read and write asked of it.
struct Recording {
    inner: UnixStream,
    max_read: Arc<AtomicUsize>,
    max_write: Arc<AtomicUsize>,
}

impl Read for Recording {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.max_read.fetch_max(n, Ordering::SeqCst);
        Ok(n)
    }
}

impl Write for Recording {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.max_write.fetch_max(buf.len(), Ordering::SeqCst);
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A body generated on the fly that checks it is never asked for more than a chunk.
struct Generated {
    left: u64,
    state: u32,
    largest_ask: usize,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.largest_ask = self.largest_ask.max(buf.len());
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for b in &mut buf[..n] {
            self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *b = (self.state >> 16) as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn a_large_file_is_streamed_in_chunks() {
    const SIZE: u64 = 9 * 1024 * 1024 + 123;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dest");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (reads, writes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let server_side = Recording {
        inner: theirs,
        max_read: reads.clone(),
        max_write: Arc::new(AtomicUsize::new(0)),
    };
    let client_side = Recording {
        inner: ours,
        max_read: Arc::new(AtomicUsize::new(0)),
        max_write: writes.clone(),
    };
    let r = root.clone();
    let _server = thread::spawn(move || serve(server_side, SECRET, &|a: &str| Ok(home_in(&r, a))));
    let mut c = Client::handshake(client_side, SECRET).unwrap();
    c.begin(ADDRESS).unwrap();
    let e = Entry {
        path: "big".into(),
        kind: Kind::File,
        size: SIZE,
        mtime: 1_700_000_000,
        mode: 0o600,
        sha256: None,
        target: None,
    };
    let mut body = Generated {
        left: SIZE,
        state: 1,
        largest_ask: 0,
    };
    c.put(&e, &mut body).unwrap();
    // The client asks its source for at most a chunk, (+1 byte to see the end), writes
    // at most a chunk at once; the server reads at most a chunk at once.
    assert!(body.largest_ask <= CHUNK, "{}", body.largest_ask);
    assert!(writes.load(Ordering::SeqCst) <= CHUNK);
    assert!(reads.load(Ordering::SeqCst) <= CHUNK);
    let stored = staging_in(&root).join("big");
    assert_eq!(fs::metadata(&stored).unwrap().len(), SIZE);
    let mut expected = ring::digest::Context::new(&ring::digest::SHA256);
    let mut regenerate = Generated {
        left: SIZE,
        state: 1,
        largest_ask: 0,
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = regenerate.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        expected.update(&buf[..n]);
    }
    let want = hex(expected.finish().as_ref());
    let got = c.verify().unwrap();
    assert_eq!(got.entries[0].sha256.as_deref(), Some(want.as_str()));
}

#[test]
fn an_overlong_line_ends_the_connection_before_and_after_authentication() {
    let dir = tempfile::tempdir().unwrap();
    // Before: a stranger sends an endless line instead of the proof.
    let (stream, server) = server_with(dir.path(), SECRET);
    let mut r = BufReader::new(stream.try_clone().unwrap());
    greeting_nonce(&mut r);
    let mut w = stream;
    let writer = thread::spawn(move || {
        let junk = vec![b'a'; 64 * 1024];
        for _ in 0..64 {
            if w.write_all(&junk).is_err() {
                return;
            }
        }
    });
    assert!(matches!(server.join().unwrap(), Err(TransferError::Auth)));
    drop(r);
    writer.join().unwrap();
    // After: an authenticated peer sends a line over the limit.
    let (mut raw, server) = Raw::open(dir.path());
    let long = format!(
        "{{\"op\":\"delete\",\"path\":\"{}\"}}\n",
        "a".repeat(MAX_LINE)
    );
    let _ = raw.w.write_all(long.as_bytes());
    let err = server.join().unwrap().unwrap_err();
    assert!(
        matches!(&err, TransferError::Protocol(m) if m.contains("longer")),
        "{err:?}"
    );
    // The server hung up without an answer.
    let mut rest = String::new();
    assert_eq!(raw.r.read_line(&mut rest).unwrap_or(0), 0);
}

#[test]
fn the_secret_file_must_be_private_and_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("secret");
    fs::write(&p, format!("{}\n", "s".repeat(40))).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(read_secret(&p).unwrap(), "s".repeat(40).as_bytes());
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    let err = read_secret(&p).unwrap_err().to_string();
    assert!(err.contains("group or others"), "{err}");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o604)).unwrap();
    assert!(read_secret(&p).is_err());
    fs::write(&p, format!("{}\n", "s".repeat(31))).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    let err = read_secret(&p).unwrap_err().to_string();
    assert!(err.contains("31 bytes"), "{err}");
    assert!(read_secret(&dir.path().join("missing")).is_err());
}

#[test]
fn deletes_remove_files_and_empty_directories_and_tolerate_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_source(dir.path());
    let root = dir.path().join("dest");
    let (mut c, _s) = connect(&root);
    c.begin(ADDRESS).unwrap();
    sync_pass(&mut c, &source, &Manifest::default());
    // The source loses a folder and a message, and a file becomes a directory.
    fs::remove_dir_all(source.join(".Sent")).unwrap();
    fs::remove_file(source.join("subscriptions")).unwrap();
    fs::create_dir(source.join("subscriptions")).unwrap();
    let staged = scan(&staging_in(&root), false).unwrap();
    assert!(sync_pass(&mut c, &source, &staged) > 0);
    let staged = scan(&staging_in(&root), false).unwrap();
    assert_eq!(sync_pass(&mut c, &source, &staged), 0);
    Manifest::same_content(&scan(&source, true).unwrap(), &c.verify().unwrap()).unwrap();
    c.delete("no/such/path").unwrap();
    // A directory that is not empty is not removed by delete.
    let err = c.delete("cur").unwrap_err();
    assert!(matches!(err, TransferError::Remote(_)), "{err:?}");
}

#[test]
fn a_captured_handshake_cannot_be_replayed() {
    // An eavesdropper recorded a whole authenticated connection: the client's auth line
    // proves the secret only for that connection's server nonce. Replayed on a new
    // connection (a fresh nonce), it is refused and the connection closes.
    let dir = tempfile::tempdir().unwrap();
    let (stream, first) = server_with(dir.path(), SECRET);
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let nonce = greeting_nonce(&mut r);
    let captured = auth_line(SECRET, &nonce);
    w.write_all(captured.as_bytes()).unwrap();
    let mut ok = String::new();
    r.read_line(&mut ok).unwrap();
    assert!(ok.contains("\"ok\":true"), "{ok}");
    drop((r, w));
    first.join().unwrap().unwrap();

    let (stream, second) = server_with(dir.path(), SECRET);
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let fresh = greeting_nonce(&mut r);
    assert_ne!(fresh, nonce, "every connection gets a new nonce");
    w.write_all(captured.as_bytes()).unwrap();
    // The server may already have refused and closed (EPIPE here): the begin must do
    // nothing either way, which the checks below show.
    let _ = w.write_all(b"{\"op\":\"begin\",\"address\":\"bob@example.org\"}\n");
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":false"), "{line}");
    let mut rest = String::new();
    assert_eq!(r.read_line(&mut rest).unwrap_or(0), 0, "{rest}");
    assert!(matches!(second.join().unwrap(), Err(TransferError::Auth)));
    assert!(!home_in(dir.path(), ADDRESS).exists() && !staging_in(dir.path()).exists());
}

#[test]
fn a_newer_transfer_into_the_same_home_supersedes_the_older_connection() {
    // Two connections into one home would race between one's path checks and the other's
    // writes, renames and removals. The newest begin wins (an earlier run's connection may
    // linger on the receiver until its idle timeout when the network died): the older
    // connection can change nothing any more.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dest");
    let (mut first, first_server) = Raw::open(&root);
    let begin = first.ask(r#"{"op":"begin","address":"bob@example.org"}"#);
    assert!(begin.contains("fresh"), "{begin}");
    let made = first
        .ask(r#"{"op":"mkdir","entry":{"path":"cur","kind":"Dir","size":0,"mtime":1,"mode":448}}"#);
    assert!(made.contains("\"ok\":true"), "{made}");
    let (mut second, _second_server) = Raw::open(&root);
    let begin = second.ask(r#"{"op":"begin","address":"bob@example.org"}"#);
    assert!(begin.contains("staging"), "{begin}");
    let v: serde_json::Value = serde_json::from_str(&begin).unwrap();
    let entries = v["entries"].as_u64().unwrap();
    for _ in 0..entries {
        second.line();
    }
    // The older connection is refused whatever it asks.
    for request in [
        r#"{"op":"mkdir","entry":{"path":"new","kind":"Dir","size":0,"mtime":1,"mode":448}}"#,
        r#"{"op":"delete","path":"cur"}"#,
        r#"{"op":"commit"}"#,
        r#"{"op":"verify"}"#,
        r#"{"op":"abort","entries":null}"#,
    ] {
        let answer = first.ask(request);
        assert!(
            answer.contains("\"ok\":false") && answer.contains("newer transfer"),
            "{request}: {answer}"
        );
    }
    let put = first.ask(concat!(
        r#"{"op":"put","entry":{"path":"cur/x","kind":"File","size":2,"mtime":1,"mode":384}}"#,
        "\nhi{\"done\":true}"
    ));
    assert!(put.contains("newer transfer"), "{put}");
    assert!(staging_in(&root).join("cur").is_dir());
    assert!(!staging_in(&root).join("new").exists());
    assert!(!staging_in(&root).join("cur/x").exists());
    assert!(!home_in(&root, ADDRESS).exists());
    // The newer one works, and another home is unaffected meanwhile.
    let verify = second.ask(r#"{"op":"verify"}"#);
    assert!(verify.contains("\"ok\":true"), "{verify}");
    drop(first);
    first_server.join().unwrap().unwrap();
}

#[test]
fn a_put_larger_than_the_free_space_is_refused_before_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dest");
    let st = nix::sys::statvfs::statvfs(dir.path()).unwrap();
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.blocks_available()) * u64::from(st.fragment_size());
    let size = free + (1 << 30);
    if size > postern_transfer::MAX_FILE_SIZE {
        eprintln!("skipped: {free} bytes free here, more than a put may announce");
        return;
    }
    let (mut raw, server) = Raw::open(&root);
    raw.w
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let begin = raw.ask(r#"{"op":"begin","address":"bob@example.org"}"#);
    assert!(begin.contains("fresh"), "{begin}");
    // The header only: the server must answer without waiting for the 20-odd GiB.
    let answer = raw.ask(&format!(
        r#"{{"op":"put","entry":{{"path":"big","kind":"File","size":{size},"mtime":1,"mode":384}}}}"#
    ));
    assert!(
        answer.contains("\"ok\":false") && answer.contains("free space"),
        "{answer:?}"
    );
    assert!(matches!(
        server.join().unwrap(),
        Err(TransferError::Protocol(_))
    ));
    // Nothing was created for it.
    let mut left = Vec::new();
    if staging_in(&root).exists() {
        walk(&staging_in(&root), &mut left);
    }
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_client_whose_file_is_refused_for_lack_of_room_says_why() {
    // The server refuses before the body and ends the connection; the client, in the middle
    // of sending, reads the reason instead of reporting a broken pipe.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dest");
    let st = nix::sys::statvfs::statvfs(dir.path()).unwrap();
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.blocks_available()) * u64::from(st.fragment_size());
    let size = free + (1 << 30);
    if size > postern_transfer::MAX_FILE_SIZE {
        eprintln!("skipped: {free} bytes free here, more than a put may announce");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let r = root.clone();
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        serve(s, SECRET, &|a: &str| Ok(home_in(&r, a)))
    });
    let mut c = Client::handshake(std::net::TcpStream::connect(addr).unwrap(), SECRET).unwrap();
    c.begin(ADDRESS).unwrap();
    let e = Entry {
        path: "huge".into(),
        kind: Kind::File,
        size,
        mtime: 1_700_000_000,
        mode: 0o600,
        sha256: None,
        target: None,
    };
    let mut body = Generated {
        left: size,
        state: 1,
        largest_ask: 0,
    };
    let err = c.put(&e, &mut body).unwrap_err();
    assert!(
        matches!(&err, TransferError::Protocol(m) if m.contains("free space")),
        "{err:?}"
    );
    assert!(size - body.left < 1 << 30, "the client went on sending");
    assert!(matches!(
        server.join().unwrap(),
        Err(TransferError::Protocol(_))
    ));
}

/// A link entry as `scan` makes it.
fn link(path: &str, target: &str) -> Entry {
    Entry {
        path: path.into(),
        kind: Kind::Symlink,
        size: 0,
        mtime: 1,
        mode: 0o777,
        sha256: None,
        target: Some(target.into()),
    }
}

#[test]
fn managesieve_links_are_carried_as_links_verified_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_source(dir.path());
    fs::write(source.join("sieve/other.sieve"), b"discard;\n").unwrap();
    // Pigeonhole's active script, and a link from a subdirectory back up.
    symlink("sieve/main.sieve", source.join(".dovecot.sieve")).unwrap();
    symlink("../sieve/main.sieve", source.join(".Sent/script")).unwrap();
    let m = scan(&source, true).unwrap();
    let active = m
        .entries
        .iter()
        .find(|e| e.path == ".dovecot.sieve")
        .unwrap();
    assert_eq!(active.kind, Kind::Symlink);
    assert_eq!(active.target.as_deref(), Some("sieve/main.sieve"));
    assert_eq!(active.sha256, None);
    // Old peers' JSON (no target) still parses; a file's JSON carries no target.
    let old: Entry =
        serde_json::from_str(r#"{"path":"a","kind":"File","size":1,"mtime":1,"mode":384}"#)
            .unwrap();
    assert_eq!(old.target, None);
    assert!(!serde_json::to_string(&old).unwrap().contains("target"));

    let root = dir.path().join("dest");
    let (mut c, _server) = connect(&root);
    assert_eq!(c.begin(ADDRESS).unwrap(), Status::Fresh);
    sync_pass(&mut c, &source, &Manifest::default());
    let staging = staging_in(&root);
    assert_eq!(
        fs::read_link(staging.join(".dovecot.sieve")).unwrap(),
        Path::new("sieve/main.sieve")
    );
    assert_eq!(
        sync_pass(&mut c, &source, &scan(&staging, false).unwrap()),
        0
    );
    // verify's manifest holds the links with their targets.
    let verified = c.verify().unwrap();
    assert!(
        verified.entries.contains(&Entry {
            mtime: verified
                .entries
                .iter()
                .find(|e| e.path == ".Sent/script")
                .unwrap()
                .mtime,
            ..link(".Sent/script", "../sieve/main.sieve")
        })
    );
    Manifest::same_content(&scan(&source, true).unwrap(), &verified).unwrap();

    // ManageSieve activates another script: the link is replaced, its old target kept.
    fs::remove_file(source.join(".dovecot.sieve")).unwrap();
    symlink("sieve/other.sieve", source.join(".dovecot.sieve")).unwrap();
    let before = c.verify().unwrap();
    let err = Manifest::same_content(&scan(&source, true).unwrap(), &before).unwrap_err();
    assert!(err.contains(".dovecot.sieve: link target"), "{err}");
    let actions = Manifest::diff(&scan(&source, false).unwrap(), &before);
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(sync_pass(&mut c, &source, &before), 1);
    assert_eq!(
        fs::read_link(staging.join(".dovecot.sieve")).unwrap(),
        Path::new("sieve/other.sieve")
    );
    assert_eq!(
        fs::read(staging.join("sieve/main.sieve")).unwrap(),
        b"keep;\n"
    );
    Manifest::same_content(&scan(&source, true).unwrap(), &c.verify().unwrap()).unwrap();

    // Deleting a link removes the link, never what it points at.
    c.delete(".Sent/script").unwrap();
    assert!(fs::symlink_metadata(staging.join(".Sent/script")).is_err());
    assert_eq!(
        fs::read(staging.join("sieve/main.sieve")).unwrap(),
        b"keep;\n"
    );
    c.symlink(&link(".Sent/script", "../sieve/main.sieve"))
        .unwrap();

    c.commit().unwrap();
    let home = home_in(&root, ADDRESS);
    assert_eq!(
        fs::read(home.join(".dovecot.sieve")).unwrap(),
        b"discard;\n",
        "the committed link resolves inside the new home"
    );
    Manifest::same_content(&scan(&source, true).unwrap(), &scan(&home, true).unwrap()).unwrap();
    // A committed home with links compares equal on a later begin (HomeExists).
    let (mut c2, _s2) = connect(&root);
    match c2.begin(ADDRESS).unwrap() {
        Status::HomeExists(m) => {
            Manifest::same_content(&scan(&source, true).unwrap(), &m).unwrap();
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn scan_refuses_links_that_leave_the_home_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let home = make_source(dir.path());
    for (at, target) in [
        (".dovecot.sieve", "/etc/passwd"),
        (".dovecot.sieve", "../../etc/passwd"),
        ("sieve/up", "../../outside"),
        ("sieve/back", "x/../../../outside"),
        ("sieve/dotdot", "main.sieve/../../x"),
        (".dovecot.sieve", ".."),
    ] {
        symlink(target, home.join(at)).unwrap();
        let err = scan(&home, false).unwrap_err().to_string();
        assert!(
            err.contains(at) && err.contains("symbolic link"),
            "{at} -> {target}: {err}"
        );
        fs::remove_file(home.join(at)).unwrap();
    }
    scan(&home, true).unwrap();
}

/// Sends a raw symlink request (bypassing the client's own checks).
fn raw_symlink(raw: &mut Raw, path: &str, kind: &str, target: &str) -> String {
    raw.ask(&format!(
        r#"{{"op":"symlink","entry":{{"path":"{path}","kind":"{kind}","size":0,"mtime":1,"mode":511,"target":"{target}"}}}}"#
    ))
}

#[test]
fn the_server_refuses_links_that_leave_the_home_and_puts_of_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dest");
    let (mut raw, _server) = Raw::open(&root);
    let begin = raw.ask(r#"{"op":"begin","address":"bob@example.org"}"#);
    assert!(begin.contains("fresh"), "{begin}");
    for (path, target) in [
        (".dovecot.sieve", "/etc/passwd"),
        (".dovecot.sieve", "../alice/sieve/x.sieve"),
        (".dovecot.sieve", ".."),
        ("sieve/up", "../../x"),
        ("sieve/up", "x/../../y"),
        (".dovecot.sieve", ""),
        ("../escaped", "x"),
        ("/tmp/escaped", "x"),
    ] {
        let reply = raw_symlink(&mut raw, path, "Symlink", target);
        assert!(
            reply.contains("\"ok\":false"),
            "{path} -> {target}: {reply}"
        );
    }
    // The kind must match the request; a link needs a target.
    let reply = raw_symlink(&mut raw, "f", "File", "sieve/x");
    assert!(reply.contains("\"ok\":false"), "{reply}");
    let reply = raw.ask(
        r#"{"op":"symlink","entry":{"path":"f","kind":"Symlink","size":0,"mtime":1,"mode":511}}"#,
    );
    assert!(reply.contains("without a target"), "{reply}");
    let e = r#"{"path":"p","kind":"Symlink","size":3,"mtime":1,"mode":511,"target":"/etc"}"#;
    raw.w
        .write_all(format!("{{\"op\":\"put\",\"entry\":{e}}}\nabc{{\"done\":true}}\n").as_bytes())
        .unwrap();
    let reply = raw.line();
    assert!(reply.contains("\"ok\":false"), "{reply}");
    // Nothing but (at most) the staging directory exists, and no link at all.
    let mut all = Vec::new();
    walk(dir.path(), &mut all);
    let staging = staging_in(&root);
    for p in &all {
        assert!(
            staging.starts_with(p) || p == &staging,
            "written: {}",
            p.display()
        );
    }
    // A good link on the same connection.
    let reply = raw_symlink(&mut raw, ".dovecot.sieve", "Symlink", "sieve/x.sieve");
    assert!(reply.contains("\"ok\":true"), "{reply}");
    assert_eq!(
        fs::read_link(staging.join(".dovecot.sieve")).unwrap(),
        Path::new("sieve/x.sieve")
    );
}

#[test]
fn no_request_goes_through_a_carried_link() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dest");
    let (mut c, _server) = connect(&root);
    c.begin(ADDRESS).unwrap();
    let sieve = Entry {
        path: "sieve".into(),
        kind: Kind::Dir,
        size: 0,
        mtime: 1,
        mode: 0o700,
        sha256: None,
        target: None,
    };
    c.mkdir(&sieve).unwrap();
    let script = Entry {
        path: "sieve/main.sieve".into(),
        kind: Kind::File,
        size: 6,
        mtime: 1,
        mode: 0o600,
        sha256: None,
        target: None,
    };
    c.put(&script, &mut &b"keep;\n"[..]).unwrap();
    // A link inside the home to a directory: allowed, and carried as a link.
    c.symlink(&link("d", "sieve")).unwrap();
    let staging = staging_in(&root);
    let listing = || {
        let mut v: Vec<_> = fs::read_dir(staging.join("sieve"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let mode_before = fs::metadata(staging.join("sieve")).unwrap().mode();
    // Every later request naming a path through `d` is refused, none writes into sieve/.
    let through = Entry {
        path: "d/evil.sieve".into(),
        ..script.clone()
    };
    let err = c.put(&through, &mut &b"evil;\n"[..]).unwrap_err();
    assert!(
        matches!(&err, TransferError::Remote(m) if m.contains("not a directory")),
        "{err:?}"
    );
    let err = c
        .put(
            &Entry {
                path: "d/main.sieve".into(),
                ..script.clone()
            },
            &mut &b"evil;\n"[..],
        )
        .unwrap_err();
    assert!(matches!(err, TransferError::Remote(_)), "{err:?}");
    let err = c
        .mkdir(&Entry {
            path: "d/sub".into(),
            ..sieve.clone()
        })
        .unwrap_err();
    assert!(matches!(err, TransferError::Remote(_)), "{err:?}");
    let err = c.symlink(&link("d/l", "main.sieve")).unwrap_err();
    assert!(matches!(err, TransferError::Remote(_)), "{err:?}");
    let err = c.delete("d/main.sieve").unwrap_err();
    assert!(matches!(err, TransferError::Remote(_)), "{err:?}");
    // mkdir at the link's own name neither follows it nor chmods its target.
    let err = c
        .mkdir(&Entry {
            path: "d".into(),
            mode: 0o777,
            ..sieve.clone()
        })
        .unwrap_err();
    assert!(matches!(err, TransferError::Remote(_)), "{err:?}");
    assert_eq!(listing(), before);
    assert_eq!(
        fs::metadata(staging.join("sieve")).unwrap().mode(),
        mode_before
    );
    assert_eq!(
        fs::read(staging.join("sieve/main.sieve")).unwrap(),
        b"keep;\n"
    );
    // A file put at the link's own name replaces the link (never writes through it).
    c.put(
        &Entry {
            path: "d".into(),
            ..script.clone()
        },
        &mut &b"plain\n"[..],
    )
    .unwrap();
    assert!(fs::symlink_metadata(staging.join("d")).unwrap().is_file());
    assert_eq!(listing(), before);
    // A link over a directory is refused.
    let err = c.symlink(&link("sieve", "d")).unwrap_err();
    assert!(
        matches!(&err, TransferError::Remote(m) if m.contains("directory")),
        "{err:?}"
    );
}
