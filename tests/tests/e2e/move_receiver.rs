//! The move receiver (`[proxy] move_listen` in imapd) takes a home only for an account the
//! directory marks as moving to this node (`moving_to` = `[proxy] self`, asked from authd's
//! userdb with `service=postern-move`): a peer holding the cluster's move secret cannot
//! write, replace or remove the home of an account nobody is moving here. Runs everywhere
//! (SQLite, loopback, plain text).

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use postern_e2e::{Postern, free_port};
use postern_transfer::{Client, Entry, Kind, Status, TransferError};

const BOB: &str = "bob@example.org";
const CAROL: &str = "carol@example.org";
const PW: &str = "a-password-1234";
const SECRET: &str = "the move secret of this test, more than 32 bytes";

#[test]
fn the_receiver_takes_only_an_account_marked_as_moving_here() {
    let shared = tempfile::tempdir().unwrap();
    let secret = shared.path().join("move.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let pm = Postern::builder()
        .set("proxy.self", "127.0.0.1")
        .set("proxy.move_listen", format!("127.0.0.1:{port}"))
        .set("proxy.move_secret_file", secret.display().to_string())
        .daemons(&["authd", "imapd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    pm.add_user(BOB, PW);
    pm.add_user(CAROL, PW);
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut c = Client::handshake(stream, SECRET.as_bytes()).unwrap();
    let refused = |r: Result<Status, TransferError>| match r {
        Err(TransferError::Remote(why)) => why,
        other => panic!("begin was not refused: {other:?}"),
    };
    // Not moving at all.
    let why = refused(c.begin(CAROL));
    assert!(why.contains("not being moved to this node"), "{why}");
    // Moving, but to another node.
    pm.sql("UPDATE accounts SET moving_to = '127.0.0.9' WHERE address = 'bob@example.org'");
    let why = refused(c.begin(BOB));
    assert!(why.contains("not being moved to this node"), "{why}");
    // An unknown account.
    let why = refused(c.begin("nobody@example.org"));
    assert!(why.contains("not being moved to this node"), "{why}");
    // Marked as moving here (as `mailctl user move --to 127.0.0.1` does): taken, at the
    // home authd names.
    pm.sql("UPDATE accounts SET moving_to = '127.0.0.1' WHERE address = 'bob@example.org'");
    assert_eq!(c.begin(BOB).unwrap(), Status::Fresh);
    let body = b"3 V1 N1\n";
    let e = Entry {
        path: "dovecot-uidlist".into(),
        kind: Kind::File,
        size: body.len() as u64,
        mtime: 1_700_000_000,
        mode: 0o600,
        sha256: None,
        target: None,
    };
    c.put(&e, &mut &body[..]).unwrap();
    c.commit().unwrap();
    drop(c);
    let homes: Vec<_> = walk(pm.dir())
        .into_iter()
        .filter(|p| p.ends_with("dovecot-uidlist"))
        .collect();
    assert_eq!(homes.len(), 1, "{homes:?}");
    assert!(homes[0].to_string_lossy().contains("bob"), "{homes:?}");
    assert_eq!(std::fs::read(&homes[0]).unwrap(), body);
    pm.daemon("imapd")
        .wait_for("not being moved to this node", Duration::from_secs(10));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
