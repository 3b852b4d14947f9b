//! Real IMAP clients against imapd: Debian's `mbsync` (isync) syncing a mailbox both ways.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use postern_e2e::{Postern, describe_output, run_command, run_python};

const USER: &str = "carol@example.org";
const PASS: &str = "mbsync pass phrase 1";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(USER, PASS)
}

fn imap_port(pm: &Postern) -> u16 {
    pm.imap_port()
}

/// Runs an imaplib script logged in as USER on the plain port (trusted loopback); its stdout.
fn imap(pm: &Postern, body: &str) -> String {
    let script = format!(
        "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))\nM.login(sys.argv[2], sys.argv[3])\n{body}\nM.logout()\n"
    );
    let port = imap_port(pm).to_string();
    let out = run_python(&script, &[&port, USER, PASS]);
    assert!(out.status.success(), "{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    v.sort();
    v
}

fn mbsync(conf: &Path) {
    let out = run_command(
        Command::new("mbsync").arg("-c").arg(conf).arg("-a"),
        None,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "mbsync: {}", describe_output(&out));
}

fn write_conf(dir: &Path, port: u16) -> PathBuf {
    let local = dir.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let conf = dir.join("mbsyncrc");
    std::fs::write(
        &conf,
        format!(
            "IMAPAccount postern\nHost 127.0.0.1\nPort {port}\nUser {USER}\nPass \"{PASS}\"\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount postern\n\n\
             MaildirStore local\nPath {l}/\nInbox {l}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
            l = local.display()
        ),
    )
    .unwrap();
    conf
}

#[test]
#[ignore = "needs Debian's isync (mbsync) (run .ci/run)"]
fn mbsync_syncs_both_ways() {
    let pm = install();
    // Two messages on the server.
    imap(
        &pm,
        r#"
for i in (1, 2):
    msg = ("From: a@example.net\r\nto: carol@example.org\r\nSubject: server %d\r\nMessage-ID: <s%d@example.net>\r\n\r\nbody %d\r\n" % (i, i, i)).encode()
    typ, _ = M.append("INBOX", None, None, msg)
    assert typ == "OK", typ
"#,
    );
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_conf(tmp.path(), imap_port(&pm));
    mbsync(&conf);
    let inbox = tmp.path().join("local/INBOX");
    let local = files(&inbox);
    assert_eq!(
        local.len(),
        2,
        "local INBOX after the first sync: {local:?}"
    );

    // Locally: a new message, and the first one marked seen (flag S in the name).
    std::fs::write(
        inbox.join("new/1700000000.local1.host"),
        "From: me@example.org\nTo: x@example.net\nSubject: from the laptop\nMessage-ID: <l1@example.org>\n\nwritten offline\n",
    )
    .unwrap();
    let (sub, first) = ["new", "cur"]
        .iter()
        .flat_map(|sub| local.iter().map(move |n| (*sub, n.clone())))
        .find(|(sub, n)| {
            std::fs::read_to_string(inbox.join(sub).join(n))
                .is_ok_and(|t| t.contains("Subject: server 1"))
        })
        .unwrap_or_else(|| panic!("server 1 not among {local:?}"));
    let base = first.split(":2,").next().unwrap();
    std::fs::rename(
        inbox.join(sub).join(&first),
        inbox.join("cur").join(format!("{base}:2,S")),
    )
    .unwrap();
    mbsync(&conf);

    let out = imap(
        &pm,
        r#"
M.select("INBOX")
typ, data = M.search(None, "ALL")
print("COUNT", len(data[0].split()))
typ, data = M.search(None, "SEEN")
for n in data[0].split():
    t, d = M.fetch(n, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    print("SEEN", d[0][1].decode().strip())
typ, data = M.search(None, 'SUBJECT', '"from the laptop"')
print("LAPTOP", len(data[0].split()))
"#,
    );
    assert!(out.contains("COUNT 3"), "{out}");
    assert!(out.contains("SEEN Subject: server 1"), "{out}");
    assert!(out.contains("LAPTOP 1"), "{out}");

    // Deleted on the server → gone locally after the next sync.
    imap(
        &pm,
        r#"
M.select("INBOX")
typ, data = M.search(None, 'SUBJECT', '"server 2"')
M.store(data[0].split()[0], "+FLAGS", "\\Deleted")
M.expunge()
"#,
    );
    mbsync(&conf);
    let local = files(&inbox);
    assert_eq!(
        local.len(),
        2,
        "local INBOX after the server-side delete: {local:?}"
    );
    for n in &local {
        let text = ["new", "cur"]
            .iter()
            .find_map(|sub| std::fs::read_to_string(inbox.join(sub).join(n)).ok())
            .unwrap();
        assert!(!text.contains("Subject: server 2"), "{n} should be gone");
    }
}
