//! Shared mailboxes and ACL commands on temp Maildirs, no sockets (RFC 4314 quotes inline).

use std::sync::Arc;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use postern_maildir::Maildir;
use postern_maildir::acl::SharedIndex;

use super::cmd::ext;
use super::session::{Flow, Session, SessionConfig, User};
use super::shared::{Lookup, Owner, SharedState, Target, classify};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const CAROL: &str = "carol@example.org";

struct World {
    _dir: tempfile::TempDir,
    mds: Vec<(String, Maildir)>,
    index: SharedIndex,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mds = [ALICE, BOB, CAROL]
        .iter()
        .map(|u| {
            let md = Maildir::open_or_create(dir.path().join(u).join("Maildir"), 0o700).unwrap();
            ((*u).to_owned(), md)
        })
        .collect();
    let index = SharedIndex::at(dir.path().join(".shared-mailboxes"), 0o600);
    World {
        _dir: dir,
        mds,
        index,
    }
}

impl World {
    fn md(&self, u: &str) -> Maildir {
        self.mds.iter().find(|(n, _)| n == u).unwrap().1.clone()
    }

    fn session(&self, u: &str) -> Session {
        let cfg = SessionConfig {
            hostname: "mx.example.test".into(),
            append_limit: 1 << 20,
            starttls: true,
        };
        let mut s = Session::new(cfg, true, false);
        s.login(User {
            name: u.to_owned(),
            maildir: self.md(u),
            quota_bytes: None,
        });
        let mds = self.mds.clone();
        s.shared = SharedState::new(
            Arc::new(move |name: &str| {
                if name == "remote@example.org" {
                    return Lookup::Remote;
                }
                match mds.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    Some((n, md)) => Lookup::Found(Arc::new(Owner {
                        name: n.clone(),
                        maildir: md.clone(),
                        quota_bytes: None,
                    })),
                    None => Lookup::NotFound,
                }
            }),
            Some(self.index.clone()),
        );
        s
    }
}

/// Runs one command line (CRLF added) as the driver would: imap-codec first, then the
/// extension parsers.
fn run(s: &mut Session, line: &str) -> String {
    let raw = format!("{line}\r\n");
    let mut out = Vec::new();
    match CommandCodec::default().decode(raw.as_bytes()) {
        Ok((_, c)) => {
            let mut f = s.handle(c.into_static(), &mut out);
            while f == Flow::More {
                f = s.resume(&mut out);
            }
        }
        Err(_) => match ext::reparse(raw.as_bytes()) {
            Some(job) => {
                job(s, &mut out);
            }
            None => out.extend_from_slice(b"(unparsed) BAD\r\n"),
        },
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tagged<'a>(out: &'a str, tag: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .unwrap_or_else(|| panic!("no tagged {tag} in {out:?}"))
}

fn msg() -> Vec<u8> {
    b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n".to_vec()
}

#[test]
fn names_under_shared_are_checked() {
    assert_eq!(classify("INBOX"), Target::Personal);
    assert_eq!(classify("Sharedx"), Target::Personal);
    assert_eq!(classify("Shared"), Target::Root);
    assert_eq!(classify("Shared/"), Target::Root);
    assert_eq!(
        classify("Shared/alice@example.org"),
        Target::OwnerRoot(ALICE.into())
    );
    assert_eq!(
        classify("Shared/alice@example.org/Team/Sub"),
        Target::Mailbox {
            owner: ALICE.into(),
            folder: "Team/Sub".into()
        }
    );
    assert_eq!(
        classify("Shared/alice@example.org/inbox"),
        Target::Mailbox {
            owner: ALICE.into(),
            folder: "INBOX".into()
        }
    );
    // Path tricks.
    for bad in [
        "Shared/../x",
        "Shared/../../etc",
        "Shared/bob/../../x",
        "Shared/bob/..",
        "Shared/bob/./x",
        "Shared/bob/.hidden",
        "Shared/bob//x",
        "Shared/..",
        "Shared/a b/x",
        "Shared/a\r\nb/x",
        "Shared/a\0b/x",
        "Shared/-x/y",
    ] {
        assert_eq!(classify(bad), Target::Invalid, "{bad:?}");
    }
}

#[test]
fn lists_that_cannot_reach_shared_skip_it() {
    use super::shared::may_reach_shared as m;
    assert!(m("", "*") && m("", "%") && m("", "S*") && m("", "Shared/%"));
    assert!(m("Shared/", "%") && m("", "Shared") && m("Sh", "ared/*"));
    assert!(!m("", "INBOX") && !m("", "Archive/%") && !m("", "Sharedx*") && !m("", "X*"));
}

#[test]
fn sharing_a_folder_end_to_end() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    w.md(ALICE)
        .open_mailbox("Team")
        .unwrap()
        .append(&msg(), &postern_maildir::Flags::default(), None)
        .unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    let mut carol = w.session(CAROL);
    let team = "\"Shared/alice@example.org/Team\"";

    // Nothing shared yet: bob sees nothing and cannot tell the folder from a missing one.
    let none = run(&mut bob, &format!("a SELECT {team}"));
    let missing = run(&mut bob, "a SELECT \"Shared/alice@example.org/Nope\"");
    assert_eq!(tagged(&none, "a"), tagged(&missing, "a"));
    assert!(tagged(&none, "a").contains("NO [NONEXISTENT]"), "{none}");
    assert!(!run(&mut bob, "b LIST \"\" \"*\"").contains("Shared"));

    // RFC 4314 §3.1: "SETACL <mailbox> <identifier> <rights>".
    let o = run(&mut alice, "c SETACL Team bob@example.org lr");
    assert!(tagged(&o, "c").starts_with("c OK"), "{o}");
    let o = run(&mut alice, "d GETACL Team");
    assert!(
        o.contains("* ACL Team alice@example.org lrswipkxtea bob@example.org lr"),
        "{o}"
    );
    let o = run(&mut bob, "e LIST \"\" \"*\"");
    assert!(
        o.contains("* LIST (\\Noselect \\HasChildren) \"/\" \"Shared\"\r\n"),
        "{o}"
    );
    assert!(o.contains("\"Shared/alice@example.org/Team\""), "{o}");
    assert!(!o.contains("Shared/alice@example.org/INBOX"), "{o}");
    // %: one level at a time.
    let o = run(&mut bob, "e2 LIST \"Shared/\" \"%\"");
    assert!(o.contains("\"Shared/alice@example.org\""), "{o}");
    assert!(!o.contains("Team"), "{o}");
    let o = run(&mut bob, &format!("f SELECT {team}"));
    assert!(o.contains("f OK [READ-ONLY]"), "{o}");
    assert!(o.contains("[PERMANENTFLAGS ()]"), "{o}");
    assert!(o.contains("* 1 EXISTS"), "{o}");
    let o = run(&mut bob, "g STORE 1 +FLAGS (\\Flagged)");
    assert!(tagged(&o, "g").starts_with("g NO"), "{o}");
    let o = run(&mut bob, "h FETCH 1 (BODY[])");
    assert!(o.contains("body"), "{o}");
    assert!(
        !w.md(ALICE).open_mailbox("Team").unwrap().messages()[0]
            .flags
            .seen
    );
    let o = run(
        &mut bob,
        &format!(
            "i APPEND {team} {{{}+}}\r\n{}",
            msg().len(),
            String::from_utf8(msg()).unwrap()
        ),
    );
    assert!(tagged(&o, "i").contains("NO [NOPERM]"), "{o}");
    let o = run(&mut bob, &format!("j MYRIGHTS {team}"));
    assert!(
        o.contains("* MYRIGHTS Shared/alice@example.org/Team lr\r\n"),
        "{o}"
    );
    // Without "a", bob can neither read nor change the ACL.
    let o = run(&mut bob, &format!("k GETACL {team}"));
    assert!(tagged(&o, "k").contains("NO [NOPERM]"), "{o}");
    let o = run(
        &mut bob,
        &format!("k2 SETACL {team} bob@example.org lrswipkxtea"),
    );
    assert!(tagged(&o, "k2").contains("NO [NOPERM]"), "{o}");
    let o = run(&mut bob, "k3 COPY 1 INBOX");
    assert!(tagged(&o, "k3").starts_with("k3 OK"), "{o}");
    let o = run(&mut bob, "k4 MOVE 1 INBOX");
    assert!(tagged(&o, "k4").starts_with("k4 NO"), "{o}");

    // More rights: "+" adds (§3.1).
    let o = run(&mut alice, "l SETACL Team bob@example.org +swi");
    assert!(tagged(&o, "l").starts_with("l OK"), "{o}");
    assert_eq!(
        std::fs::read_to_string(w.md(ALICE).folder_dir("Team").unwrap().join("dovecot-acl"))
            .unwrap(),
        "user=bob@example.org lrwsi\n"
    );
    let o = run(&mut bob, &format!("m SELECT {team}"));
    assert!(o.contains("m OK [READ-WRITE]"), "{o}");
    // No "t": \Deleted is not offered.
    assert!(
        o.contains("[PERMANENTFLAGS (\\Answered \\Flagged \\Seen \\Draft \\*)]"),
        "{o}"
    );
    let o = run(&mut bob, "n STORE 1 +FLAGS (\\Flagged \\Deleted)");
    assert!(tagged(&o, "n").starts_with("n OK"), "{o}");
    let m = &w.md(ALICE).open_mailbox("Team").unwrap().messages()[0]
        .flags
        .clone();
    assert!(m.flagged && !m.deleted, "{m:?}");
    let o = run(&mut bob, "o STORE 1 +FLAGS (\\Deleted)");
    assert!(tagged(&o, "o").contains("NO [NOPERM]"), "{o}");
    let o = run(&mut bob, "p EXPUNGE");
    assert!(tagged(&o, "p").contains("NO [NOPERM]"), "{o}");
    let o = run(
        &mut bob,
        &format!(
            "q APPEND {team} (\\Seen \\Deleted) {{{}+}}\r\n{}",
            msg().len(),
            String::from_utf8(msg()).unwrap()
        ),
    );
    assert!(tagged(&o, "q").starts_with("q OK [APPENDUID"), "{o}");
    let msgs = w
        .md(ALICE)
        .open_mailbox("Team")
        .unwrap()
        .messages()
        .to_vec();
    assert_eq!(msgs.len(), 2);
    assert!(msgs[1].flags.seen && !msgs[1].flags.deleted);
    let o = run(&mut bob, &format!("r STATUS {team} (MESSAGES)"));
    assert!(
        o.contains("* STATUS \"Shared/alice@example.org/Team\" (MESSAGES 2)"),
        "{o}"
    );
    // CREATE under it needs "k" (§4), DELETE needs "x".
    let o = run(&mut bob, "s CREATE \"Shared/alice@example.org/Team/Sub\"");
    assert!(tagged(&o, "s").contains("NO [NOPERM]"), "{o}");
    let o = run(&mut bob, &format!("t DELETE {team}"));
    assert!(tagged(&o, "t").contains("NO [NOPERM]"), "{o}");
    let o = run(&mut bob, "t2 CREATE \"Shared/alice@example.org/New\"");
    assert!(tagged(&o, "t2").starts_with("t2 NO"), "{o}");
    assert!(!w.md(ALICE).folder_exists("New").unwrap());
    // Subscriptions.
    let o = run(&mut bob, &format!("u SUBSCRIBE {team}"));
    assert!(tagged(&o, "u").starts_with("u OK"), "{o}");
    let o = run(&mut bob, "v LSUB \"\" \"*\"");
    assert!(
        o.contains("* LSUB () \"/\" \"Shared/alice@example.org/Team\""),
        "{o}"
    );

    // Carol sees nothing, ever, and cannot tell the folder exists.
    for (i, cmd) in [
        format!("SELECT {team}"),
        format!("EXAMINE {team}"),
        format!("STATUS {team} (MESSAGES)"),
        format!("MYRIGHTS {team}"),
        format!("GETACL {team}"),
        format!("SETACL {team} carol@example.org lr"),
        format!("DELETE {team}"),
        format!("SUBSCRIBE {team}"),
    ]
    .iter()
    .enumerate()
    {
        let real = run(&mut carol, &format!("c{i} {cmd}"));
        let fake = run(
            &mut carol,
            &format!("c{i} {}", cmd.replace("/Team", "/Nope")),
        );
        assert_eq!(
            tagged(&real, &format!("c{i}")),
            tagged(&fake, &format!("c{i}")),
            "{cmd}"
        );
        assert!(
            tagged(&real, &format!("c{i}")).contains("NO [NONEXISTENT]"),
            "{real}"
        );
    }
    assert!(!run(&mut carol, "w LIST \"\" \"*\"").contains("Shared"));

    // Revoked: bob sees nothing.
    let o = run(&mut alice, "x DELETEACL Team bob@example.org");
    assert!(tagged(&o, "x").starts_with("x OK"), "{o}");
    assert!(
        !w.md(ALICE)
            .folder_dir("Team")
            .unwrap()
            .join("dovecot-acl")
            .exists()
    );
    let o = run(&mut bob, "y LIST \"\" \"*\"");
    assert!(!o.contains("Shared"), "{o}");
    assert!(!run(&mut bob, "y2 LSUB \"\" \"*\"").contains("Shared"));
    let o = run(&mut bob, &format!("z STATUS {team} (MESSAGES)"));
    assert!(tagged(&o, "z").contains("NO [NONEXISTENT]"), "{o}");
    assert!(w.index.owners_for(BOB).unwrap().is_empty());
}

#[test]
fn acl_command_errors_follow_rfc4314() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    let mut alice = w.session(ALICE);
    // §3.1: "an unrecognized right MUST cause the command to return the BAD response".
    let o = run(&mut alice, "a SETACL Team bob@example.org lrz");
    assert!(tagged(&o, "a").starts_with("a BAD"), "{o}");
    let o = run(&mut alice, "b SETACL Team \"bob example\" lr");
    assert!(tagged(&o, "b").starts_with("b BAD"), "{o}");
    let o = run(&mut alice, "c SETACL Team {5+}\r\nb\r\nob lr");
    assert!(tagged(&o, "c").starts_with("c BAD"), "{o}");
    let o = run(&mut alice, "d SETACL Team bob@example.org");
    assert!(tagged(&o, "d").starts_with("d BAD"), "{o}");
    let o = run(&mut alice, "e SETACL Nope bob@example.org lr");
    assert!(tagged(&o, "e").contains("NO [NONEXISTENT]"), "{o}");
    assert!(
        !w.md(ALICE)
            .folder_dir("Team")
            .unwrap()
            .join("dovecot-acl")
            .exists()
    );
    // Negative rights (§2): "-bob" takes "w" away from what "anyone" grants.
    run(&mut alice, "f SETACL Team anyone lrw");
    run(&mut alice, "g SETACL Team -bob@example.org w");
    let o = run(&mut alice, "h GETACL Team");
    assert!(o.contains("anyone lrw -bob@example.org w"), "{o}");
    let mut bob = w.session(BOB);
    let o = run(&mut bob, "i MYRIGHTS \"Shared/alice@example.org/Team\"");
    assert!(o.contains(" lr\r\n"), "{o}");
    // The owner always has every right.
    let o = run(&mut alice, "j MYRIGHTS Team");
    assert!(o.contains("* MYRIGHTS Team lrswipkxteacd"), "{o}");
    let o = run(&mut alice, "k LISTRIGHTS Team bob@example.org");
    assert!(
        o.contains("* LISTRIGHTS Team bob@example.org \"\" l r s w i p k x t e a c d"),
        "{o}"
    );
    // "-" removes (§3.1).
    run(&mut alice, "l SETACL Team anyone -w");
    let o = run(&mut alice, "m GETACL Team");
    assert!(o.contains("anyone lr "), "{o}");
    // NAMESPACE names the shared namespace.
    let o = run(&mut alice, "n NAMESPACE");
    assert!(
        o.contains("* NAMESPACE ((\"\" \"/\")) NIL ((\"Shared/\" \"/\"))"),
        "{o}"
    );
    // An owner on another node of a cluster: a clear NO.
    let o = run(&mut bob, "o SELECT \"Shared/remote@example.org/Team\"");
    assert!(tagged(&o, "o").contains("NO [UNAVAILABLE]"), "{o}");
    // A personal folder named like the namespace cannot be made.
    let o = run(&mut bob, "p CREATE Shared");
    assert!(tagged(&o, "p").starts_with("p NO"), "{o}");
    let o = run(&mut bob, "q CREATE \"Shared/../x\"");
    assert!(tagged(&o, "q").starts_with("q NO"), "{o}");
}

#[test]
fn create_inherits_the_parent_acl_and_rename_stays_with_the_owner() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    run(&mut alice, "a SETACL Team bob@example.org lrswipkxte");
    let o = run(&mut bob, "b CREATE \"Shared/alice@example.org/Team/Sub\"");
    assert!(tagged(&o, "b").starts_with("b OK"), "{o}");
    assert!(w.md(ALICE).folder_exists("Team/Sub").unwrap());
    let o = run(&mut bob, "c MYRIGHTS \"Shared/alice@example.org/Team/Sub\"");
    assert!(o.contains("lrswipkxte"), "{o}");
    let o = run(
        &mut bob,
        "d RENAME \"Shared/alice@example.org/Team/Sub\" \"Shared/alice@example.org/Team/Sub2\"",
    );
    assert!(tagged(&o, "d").starts_with("d OK"), "{o}");
    assert!(w.md(ALICE).folder_exists("Team/Sub2").unwrap());
    let o = run(
        &mut bob,
        "e RENAME \"Shared/alice@example.org/Team/Sub2\" Mine",
    );
    assert!(tagged(&o, "e").contains("NO [CANNOT]"), "{o}");
    let o = run(&mut bob, "f DELETE \"Shared/alice@example.org/Team/Sub2\"");
    assert!(tagged(&o, "f").starts_with("f OK"), "{o}");
    assert!(!w.md(ALICE).folder_exists("Team/Sub2").unwrap());
    // Bob's own mailboxes are untouched by all of this.
    assert!(!w.md(BOB).folder_exists("Team/Sub").unwrap());
}

#[test]
fn revocation_closes_the_selected_mailbox() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    w.md(ALICE)
        .open_mailbox("Team")
        .unwrap()
        .append(&msg(), &postern_maildir::Flags::default(), None)
        .unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    run(&mut alice, "a SETACL Team bob@example.org lrswi");
    let o = run(&mut bob, "b SELECT \"Shared/alice@example.org/Team\"");
    assert!(o.contains("b OK [READ-WRITE]"), "{o}");
    // Rights are read again at every command: "w" taken away → \Flagged is refused now.
    run(&mut alice, "c SETACL Team bob@example.org -w");
    let o = run(&mut bob, "d STORE 1 +FLAGS (\\Flagged)");
    assert!(tagged(&o, "d").contains("NO [NOPERM]"), "{o}");
    // "r" taken away: the mailbox is closed, nothing more is read from it.
    run(&mut alice, "e DELETEACL Team bob@example.org");
    let o = run(&mut bob, "f FETCH 1 (BODY.PEEK[])");
    assert!(tagged(&o, "f").starts_with("f BAD"), "{o}");
    assert!(!o.contains("body"), "{o}");
}

#[test]
fn extension_commands_see_a_partly_writable_shared_mailbox_read_only() {
    // SEARCHRES's `STORE $` is parsed by cmd/ext.rs (which rewrites it and goes through
    // `handle`, so `route` checks it); guard_job is the second line for a job that would
    // write without `handle`: bob has "s" but not "w", so \Flagged is refused both ways.
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    w.md(ALICE)
        .open_mailbox("Team")
        .unwrap()
        .append(&msg(), &postern_maildir::Flags::default(), None)
        .unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    run(&mut alice, "a SETACL Team bob@example.org lrs");
    let o = run(&mut bob, "b SELECT \"Shared/alice@example.org/Team\"");
    assert!(o.contains("b OK [READ-WRITE]"), "{o}");
    let o = run(&mut bob, "c SEARCH RETURN (SAVE) ALL");
    assert!(tagged(&o, "c").starts_with("c OK"), "{o}");
    let o = run(&mut bob, "d STORE $ +FLAGS (\\Flagged)");
    assert!(tagged(&o, "d").starts_with("d NO"), "{o}");
    let flags = w.md(ALICE).open_mailbox("Team").unwrap().messages()[0]
        .flags
        .clone();
    assert!(!flags.flagged, "{flags:?}");
    // The ordinary path lets the \Seen that "s" allows through.
    let o = run(&mut bob, "e STORE 1 +FLAGS (\\Seen)");
    assert!(tagged(&o, "e").starts_with("e OK"), "{o}");
    // A job that writes to the selected mailbox itself (no `handle`) sees it read-only, and
    // the session's view is as it was afterwards.
    let job = super::shared::guard_job(Box::new(|s: &mut Session, _out: &mut Vec<u8>| {
        assert!(
            s.state.sel().unwrap().read_only,
            "guard_job let a writer through"
        );
        Flow::Continue
    }));
    let mut out = Vec::new();
    job(&mut bob, &mut out);
    assert!(!bob.state.sel().unwrap().read_only);
    // With every one of s, w, t, e the job is not restricted.
    run(&mut alice, "f SETACL Team bob@example.org lrswte");
    let job = super::shared::guard_job(Box::new(|s: &mut Session, _out: &mut Vec<u8>| {
        assert!(!s.state.sel().unwrap().read_only);
        Flow::Continue
    }));
    job(&mut bob, &mut out);
}

/// The synchronous userdb client: authd's answer decides where the owner's Maildir is,
/// whether they live on another node (`host=`), and nothing is created for an owner without
/// a Maildir.
#[test]
fn owners_come_from_the_userdb() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;

    use super::shared::userdb_lookup;

    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("alice/Maildir"), 0o700).unwrap();
    let sock = dir.path().join("auth-userdb");
    let listener = UnixListener::bind(&sock).unwrap();
    let home = dir.path().join("alice");
    let answers = vec![
        format!(
            "USER\t1\talice@example.org\thome={}\tmail=maildir:~/Maildir\tquota_rule=*:storage=1M\n",
            home.display()
        ),
        "USER\t1\tremote@example.org\thome=/elsewhere\thost=node2\n".to_owned(),
        "NOTFOUND\t1\n".to_owned(),
        format!(
            "USER\t1\tnew@example.org\thome={}/new\n",
            dir.path().display()
        ),
        "FAIL\t1\treason=db down\n".to_owned(),
    ];
    let n = answers.len();
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for a in answers {
            let (mut c, _) = listener.accept().unwrap();
            c.write_all(b"VERSION\t1\t1\nSPID\t42\n").unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut l = String::new();
            while !l.starts_with("USER") {
                l.clear();
                r.read_line(&mut l).unwrap();
            }
            seen.push(l);
            c.write_all(a.as_bytes()).unwrap();
        }
        seen
    });
    match userdb_lookup(&sock, "alice@example.org") {
        Lookup::Found(o) => {
            assert_eq!(o.name, "alice@example.org");
            assert_eq!(o.maildir.root(), md.root());
            assert_eq!(o.quota_bytes, Some(1 << 20));
        }
        _ => panic!("alice not found"),
    }
    assert!(matches!(
        userdb_lookup(&sock, "remote@example.org"),
        Lookup::Remote
    ));
    assert!(matches!(
        userdb_lookup(&sock, "x@example.org"),
        Lookup::NotFound
    ));
    assert!(matches!(
        userdb_lookup(&sock, "new@example.org"),
        Lookup::NotFound
    ));
    assert!(
        !dir.path().join("new").exists(),
        "a Maildir was created for the owner"
    );
    assert!(matches!(
        userdb_lookup(&sock, "y@example.org"),
        Lookup::Unavailable
    ));
    let seen = server.join().unwrap();
    assert_eq!(seen.len(), n);
    assert!(
        seen[0].starts_with("USER\t1\talice@example.org\tservice=imap"),
        "{seen:?}"
    );
    // Names that are no account name never reach authd.
    assert!(matches!(userdb_lookup(&sock, "a\tb"), Lookup::NotFound));
    assert!(matches!(userdb_lookup(&sock, "../x"), Lookup::NotFound));
}

/// MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469) are parsed by cmd/ext.rs and append through
/// the selected mailbox's handle when the name is the selected one: into a shared mailbox
/// they need "i" like APPEND (RFC 4314 §4), whether it is selected or not.
#[test]
fn multiappend_into_a_shared_mailbox_needs_insert() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    w.md(ALICE).create_folder("Private").unwrap();
    w.md(ALICE)
        .open_mailbox("Private")
        .unwrap()
        .append(
            b"Subject: secret\r\n\r\nsecret\r\n",
            &postern_maildir::Flags::default(),
            None,
        )
        .unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    run(&mut alice, "a SETACL Team bob@example.org lrs");
    let team = "\"Shared/alice@example.org/Team\"";
    let two = |tag: &str| {
        format!(
            "{tag} APPEND {team} {{{n}+}}\r\n{m} {{{n}+}}\r\n{m}",
            n = msg().len(),
            m = String::from_utf8(msg()).unwrap()
        )
    };
    let count = || w.md(ALICE).open_mailbox("Team").unwrap().messages().len();
    // Not selected, then selected (read-write through "s"): no "i", no append.
    let o = run(&mut bob, &two("b"));
    assert!(tagged(&o, "b").contains("NO [NOPERM]"), "{o}");
    let o = run(&mut bob, &format!("c SELECT {team}"));
    assert!(o.contains("c OK [READ-WRITE]"), "{o}");
    let o = run(&mut bob, &two("d"));
    assert!(tagged(&o, "d").contains("NO [NOPERM]"), "{o}");
    assert_eq!(count(), 0);
    // With "i" the messages go into alice's folder, and flags without their right are
    // dropped (\Flagged needs "w").
    run(&mut alice, "e SETACL Team bob@example.org +i");
    let o = run(
        &mut bob,
        &format!(
            "f APPEND {team} (\\Flagged \\Seen) {{{n}+}}\r\n{m} {{{n}+}}\r\n{m}",
            n = msg().len(),
            m = String::from_utf8(msg()).unwrap()
        ),
    );
    assert!(tagged(&o, "f").starts_with("f OK"), "{o}");
    let msgs = w
        .md(ALICE)
        .open_mailbox("Team")
        .unwrap()
        .messages()
        .to_vec();
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs[0].flags.seen && !msgs[0].flags.flagged,
        "{:?}",
        msgs[0].flags
    );
    assert!(!w.md(BOB).folder_exists("Team").unwrap());
    // CATENATE into a shared mailbox is refused: its URLs would be resolved in the owner's
    // Maildir (alice's Private is not shared with bob).
    let o = run(
        &mut bob,
        &format!("g APPEND {team} CATENATE (URL \"/Private;UIDVALIDITY=1/;UID=1\")"),
    );
    assert!(tagged(&o, "g").starts_with("g NO"), "{o}");
    assert_eq!(count(), 2);
    // Carol: the same answer as for a mailbox that does not exist.
    let mut carol = w.session(CAROL);
    let real = run(&mut carol, &two("h"));
    let fake = run(&mut carol, &two("h").replace("/Team", "/Nope"));
    assert_eq!(tagged(&real, "h"), tagged(&fake, "h"));
}

/// A FETCH that does not pass `route` (NOTIFY's MessageNew fetch-att calls `Session::fetch`
/// itself) must not set \Seen either without "s" (RFC 4314 §4).
#[test]
fn direct_fetches_do_not_set_seen_without_s() {
    use imap_codec::imap_types::command::CommandBody;
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    w.md(ALICE)
        .open_mailbox("Team")
        .unwrap()
        .append(&msg(), &postern_maildir::Flags::default(), None)
        .unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    run(&mut alice, "a SETACL Team bob@example.org lrw");
    let o = run(&mut bob, "b SELECT \"Shared/alice@example.org/Team\"");
    assert!(o.contains("b OK [READ-WRITE]"), "{o}");
    let (_, c) = CommandCodec::default()
        .decode(b"n FETCH 1 (BODY[] RFC822 BINARY[1])\r\n")
        .unwrap();
    let CommandBody::Fetch {
        sequence_set,
        macro_or_item_names,
        uid,
        modifiers,
    } = c.into_static().body
    else {
        panic!("not a FETCH");
    };
    let mut out = Vec::new();
    let mut f = bob.fetch(
        "n",
        &sequence_set,
        macro_or_item_names,
        uid,
        &modifiers,
        &mut out,
    );
    while f == Flow::More {
        f = bob.resume(&mut out);
    }
    let o = String::from_utf8_lossy(&out);
    assert!(o.contains("body") && o.contains("n OK"), "{o}");
    let seen = w.md(ALICE).open_mailbox("Team").unwrap().messages()[0]
        .flags
        .seen;
    assert!(!seen, "\\Seen set without the s right: {o}");
    // Through `route`, RFC822 (no PEEK form) is refused, BODY[] is read as BODY.PEEK[].
    let o = run(&mut bob, "c FETCH 1 (RFC822)");
    assert!(tagged(&o, "c").contains("NO [NOPERM]"), "{o}");
    let o = run(&mut bob, "d FETCH 1 (BODY[])");
    assert!(tagged(&o, "d").starts_with("d OK"), "{o}");
    assert!(
        !w.md(ALICE).open_mailbox("Team").unwrap().messages()[0]
            .flags
            .seen
    );
    // With "s", reading marks it.
    run(&mut alice, "e SETACL Team bob@example.org +s");
    let o = run(&mut bob, "f FETCH 1 (BODY[])");
    assert!(tagged(&o, "f").starts_with("f OK"), "{o}");
    assert!(
        w.md(ALICE).open_mailbox("Team").unwrap().messages()[0]
            .flags
            .seen
    );
}

/// CREATE with USE (RFC 6154 §3, parsed by cmd/ext.rs) makes nothing under `Shared/`: a
/// personal folder there would be hidden behind the shared namespace.
#[test]
fn create_special_use_makes_nothing_under_shared() {
    let w = world();
    let mut bob = w.session(BOB);
    for (t, name) in [("a", "Shared/x/y"), ("b", "Shared"), ("c", "Shared/x")] {
        let o = run(&mut bob, &format!("{t} CREATE \"{name}\" (USE ())"));
        assert!(tagged(&o, t).starts_with(&format!("{t} NO")), "{o}");
    }
    assert!(!w.md(BOB).folder_exists("Shared/x/y").unwrap());
    assert!(!w.md(BOB).folder_exists("Shared").unwrap());
    let o = run(&mut bob, "d CREATE Mine (USE ())");
    assert!(tagged(&o, "d").starts_with("d OK"), "{o}");
}

/// Probing `Shared/<name>/…` for many commands costs authd one lookup per name and minute,
/// found or not.
#[test]
fn owner_lookups_are_cached_found_or_not() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let w = world();
    let mut bob = w.session(BOB);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let alice = w.md(ALICE);
    bob.shared = SharedState::new(
        Arc::new(move |name: &str| {
            c.fetch_add(1, Ordering::SeqCst);
            if name == ALICE {
                Lookup::Found(Arc::new(Owner {
                    name: ALICE.into(),
                    maildir: alice.clone(),
                    quota_bytes: None,
                }))
            } else {
                Lookup::NotFound
            }
        }),
        None,
    );
    for i in 0..20 {
        run(
            &mut bob,
            &format!("a{i} SELECT \"Shared/nobody@example.org/x\""),
        );
        run(
            &mut bob,
            &format!("b{i} STATUS \"Shared/alice@example.org/INBOX\" (MESSAGES)"),
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// With a mailbox of the same folder name selected in the user's own namespace, APPEND (and
/// MULTIAPPEND) to `Shared/<owner>/<folder>` must reach the owner's folder, not the selected
/// one (the ordinary code appends through the selected mailbox when the names match).
#[test]
fn appends_reach_the_owner_not_the_same_named_selected_mailbox() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    w.md(BOB).create_folder("Team").unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    run(&mut alice, "a SETACL Team bob@example.org lri");
    let o = run(&mut bob, "b SELECT Team");
    assert!(o.contains("b OK [READ-WRITE]"), "{o}");
    let m = String::from_utf8(msg()).unwrap();
    let n = msg().len();
    let o = run(
        &mut bob,
        &format!("c APPEND \"Shared/alice@example.org/Team\" {{{n}+}}\r\n{m}"),
    );
    assert!(tagged(&o, "c").starts_with("c OK"), "{o}");
    let o = run(
        &mut bob,
        &format!("d APPEND \"Shared/alice@example.org/Team\" {{{n}+}}\r\n{m} {{{n}+}}\r\n{m}"),
    );
    assert!(tagged(&o, "d").starts_with("d OK"), "{o}");
    let o = run(&mut bob, "e COPY 1:* \"Shared/alice@example.org/Team\"");
    assert!(tagged(&o, "e").starts_with("e OK"), "{o}");
    let count = |u: &str| w.md(u).open_mailbox("Team").unwrap().messages().len();
    assert_eq!((count(ALICE), count(BOB)), (3, 0));
    // Bob's own Team is still the selected one, untouched.
    let o = run(&mut bob, "f STATUS Team (MESSAGES)");
    assert!(o.contains("(MESSAGES 0)"), "{o}");
}

/// During IDLE (no command, so no `route`), a revocation closes the shared mailbox before
/// any further update about it is sent.
#[test]
fn idle_stops_reporting_a_revoked_mailbox() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    run(&mut alice, "a SETACL Team bob@example.org lr");
    let o = run(&mut bob, "b SELECT \"Shared/alice@example.org/Team\"");
    assert!(o.contains("b OK [READ-ONLY]"), "{o}");
    let _ = bob.idle("c");
    let m = String::from_utf8(msg()).unwrap();
    run(
        &mut alice,
        &format!("d APPEND Team {{{}+}}\r\n{m}", msg().len()),
    );
    let mut out = Vec::new();
    bob.idle_wake(&mut out);
    assert!(String::from_utf8_lossy(&out).contains("* 1 EXISTS"));
    run(&mut alice, "e DELETEACL Team bob@example.org");
    run(
        &mut alice,
        &format!("f APPEND Team {{{}+}}\r\n{m}", msg().len()),
    );
    let mut out = Vec::new();
    bob.idle_wake(&mut out);
    let o = String::from_utf8_lossy(&out);
    assert!(!o.contains("EXISTS"), "{o}");
    assert!(bob.state.sel().is_none());
}

/// The same for NOTIFY's wakes (RFC 5465): no update about a revoked shared mailbox.
#[test]
fn notify_stops_reporting_a_revoked_mailbox() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    run(&mut alice, "a SETACL Team bob@example.org lr");
    let o = run(&mut bob, "b SELECT \"Shared/alice@example.org/Team\"");
    assert!(o.contains("b OK [READ-ONLY]"), "{o}");
    let o = run(
        &mut bob,
        "c NOTIFY SET (selected (MessageNew (UID) MessageExpunge))",
    );
    assert!(tagged(&o, "c").starts_with("c OK"), "{o}");
    let m = String::from_utf8(msg()).unwrap();
    run(
        &mut alice,
        &format!("d APPEND Team {{{}+}}\r\n{m}", msg().len()),
    );
    let mut out = Vec::new();
    bob.notify_wake(&mut out);
    assert!(String::from_utf8_lossy(&out).contains("* 1 EXISTS"));
    run(&mut alice, "e DELETEACL Team bob@example.org");
    run(
        &mut alice,
        &format!("f APPEND Team {{{}+}}\r\n{m}", msg().len()),
    );
    let mut out = Vec::new();
    bob.notify_wake(&mut out);
    let o = String::from_utf8_lossy(&out);
    assert!(!o.contains("EXISTS") && !o.contains("FETCH"), "{o}");
    assert!(bob.state.sel().is_none());
}

// ----- attacker's review (RFC 4314 §4: "CREATE … k right on a nearest existing parent
// mailbox"; a new mailbox starts with its parent's ACL only when it is new) -----

#[test]
fn create_of_an_existing_private_folder_does_not_copy_the_parent_acl() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    w.md(ALICE).create_folder("Team/Private").unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    run(&mut alice, "a SETACL Team bob@example.org lrk");
    // Bob may create under Team; Team/Private exists and is alice's alone.
    let o = run(
        &mut bob,
        "b CREATE \"Shared/alice@example.org/Team/Private\"",
    );
    assert!(tagged(&o, "b").starts_with("b NO"), "{o}");
    // Nothing of Team's ACL reaches the existing folder: bob still cannot look it up.
    let o = run(
        &mut bob,
        "c SELECT \"Shared/alice@example.org/Team/Private\"",
    );
    assert!(tagged(&o, "c").contains("NO [NONEXISTENT]"), "{o}");
    assert!(
        w.md(ALICE)
            .acl("Team/Private")
            .unwrap()
            .unwrap()
            .entries
            .is_empty(),
        "the private folder's ACL was changed"
    );
}

/// RFC 5464 §3.2: "/private … annotations … are specific to the user"; a grantee must not
/// read the owner's private entries of a shared mailbox.
#[test]
fn the_owners_private_metadata_is_not_read_by_a_grantee() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    let mut alice = w.session(ALICE);
    let mut bob = w.session(BOB);
    let o = run(
        &mut alice,
        "a SETMETADATA Team (/private/comment \"alice-secret\")",
    );
    assert!(tagged(&o, "a").starts_with("a OK"), "{o}");
    run(&mut alice, "a2 SETACL Team bob@example.org lr");
    let o = run(
        &mut bob,
        "b GETMETADATA \"Shared/alice@example.org/Team\" (/private/comment)",
    );
    assert!(tagged(&o, "b").starts_with("b OK"), "{o}");
    assert!(!o.contains("alice-secret"), "{o}");
    let o = run(
        &mut bob,
        "c GETMETADATA (DEPTH infinity) \"Shared/alice@example.org/Team\" (/private)",
    );
    assert!(!o.contains("alice-secret"), "{o}");
    // An invalid entry name is still BAD (RFC 5464 §3.2), not silently dropped.
    let o = run(
        &mut bob,
        "d GETMETADATA \"Shared/alice@example.org/Team\" (/privatex/a)",
    );
    assert!(tagged(&o, "d").starts_with("d BAD"), "{o}");
}

/// The fuzz entry point reaches Shared/ routing with the rights it was given.
#[test]
fn the_fuzz_entry_point_reaches_shared_routing() {
    use super::fuzzing::run_imap_shared;
    let (dir, owner_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    let owner = Maildir::open_or_create(owner_dir.path().join("Maildir"), 0o700).unwrap();
    let input = b"a MYRIGHTS \"Shared/owner@example.test/Team\"\r\n\
        b LIST \"\" \"Shared/*\"\r\n\
        c SELECT \"Shared/Owner@Example.Test/Team/Private\"\r\n";
    let out = String::from_utf8(run_imap_shared(input, &md, &owner, "lr")).unwrap();
    assert!(
        out.contains("* MYRIGHTS Shared/owner@example.test/Team lr\r\n"),
        "{out}"
    );
    assert!(
        out.contains("\"Shared/owner@example.test/Team\"\r\n"),
        "{out}"
    );
    assert!(out.contains("c NO [NONEXISTENT]"), "{out}");
}

/// One owner's large ACL files cost every user's LIST a bounded read: at most
/// OWNER_ACL_BYTES (1 MiB) of one owner's ACLs, and other owners' shares still appear.
#[test]
fn one_owners_large_acls_cost_a_list_a_bounded_read() {
    let w = world();
    // alice (listed first) shares 12 folders with anyone, each ACL ~250 KiB.
    let big: String = (0..900)
        .map(|i| format!("user={:0>240}-{i} l\n", "x"))
        .collect::<String>()
        + "anyone lr\n";
    for f in 0..12 {
        let name = format!("F{f:02}");
        w.md(ALICE).create_folder(&name).unwrap();
        std::fs::write(
            w.md(ALICE).folder_dir(&name).unwrap().join("dovecot-acl"),
            &big,
        )
        .unwrap();
    }
    let alice = w.md(ALICE);
    let owner = Owner {
        name: ALICE.into(),
        maildir: alice,
        quota_bytes: None,
    };
    w.session(ALICE).reindex(&owner).unwrap();
    w.md(BOB).create_folder("Team").unwrap();
    let mut bob = w.session(BOB);
    run(&mut bob, "a SETACL Team carol@example.org lr");
    let mut carol = w.session(CAROL);
    let o = run(&mut carol, "b LIST \"\" \"Shared/*\"");
    assert!(tagged(&o, "b").starts_with("b OK"), "{o}");
    assert!(o.contains("\"Shared/bob@example.org/Team\""), "{o}");
    let listed = o.matches("Shared/alice@example.org/F").count();
    assert!(
        (1..=5).contains(&listed),
        "{listed} of alice's folders read: {o}"
    );
}

/// RFC 4314 §2.1: "s - … set \Seen during APPEND/COPY", "w - … set them during
/// APPEND/COPY", "t - … set \Deleted flag during APPEND/COPY": a COPY or MOVE into a shared
/// mailbox with "i" alone carries no flag there.
#[test]
fn copies_into_a_shared_mailbox_keep_only_the_flags_the_rights_allow() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    let flags = postern_maildir::Flags {
        seen: true,
        deleted: true,
        flagged: true,
        keywords: vec!["$Bob".into()],
        ..Default::default()
    };
    let mut inbox = w.md(BOB).open_mailbox("INBOX").unwrap();
    inbox.append(&msg(), &flags, None).unwrap();
    inbox.append(&msg(), &flags, None).unwrap();
    let mut alice = w.session(ALICE);
    run(&mut alice, "a SETACL Team bob@example.org lri");
    let mut bob = w.session(BOB);
    run(&mut bob, "b SELECT INBOX");
    let o = run(&mut bob, "c COPY 1 \"Shared/alice@example.org/Team\"");
    assert!(tagged(&o, "c").starts_with("c OK [COPYUID"), "{o}");
    let o = run(&mut bob, "d MOVE 2 \"Shared/alice@example.org/Team\"");
    assert!(tagged(&o, "d").starts_with("d OK"), "{o}");
    let team = w.md(ALICE).open_mailbox("Team").unwrap();
    assert_eq!(team.messages().len(), 2);
    for m in team.messages() {
        assert_eq!(m.flags, postern_maildir::Flags::default(), "uid {}", m.uid);
    }
    // With "s" and "t" (not "w"): \Seen and \Deleted stay, the rest goes.
    run(&mut alice, "e SETACL Team bob@example.org lrist");
    run(
        &mut bob,
        "f APPEND INBOX (\\Seen \\Deleted \\Flagged $Bob) {5}\r\nhello",
    );
    let o = run(&mut bob, "g UID COPY 3 \"Shared/alice@example.org/Team\"");
    assert!(tagged(&o, "g").starts_with("g OK"), "{o}");
    let team = w.md(ALICE).open_mailbox("Team").unwrap();
    let m = team.messages().last().unwrap();
    assert!(m.flags.seen && m.flags.deleted, "{:?}", m.flags);
    assert!(
        !m.flags.flagged && m.flags.keywords.is_empty(),
        "{:?}",
        m.flags
    );
}

/// RFC 4314 §4: RENAME needs "x" on the mailbox renamed; renaming a mailbox renames its
/// inferiors too (RFC 9051 §6.3.6), so each of them needs "x" as well: a grantee with "x"
/// on Team alone cannot carry the owner's Team/Private along.
#[test]
fn rename_does_not_move_children_without_x() {
    let w = world();
    for f in ["Team", "Team/Private", "Public"] {
        w.md(ALICE).create_folder(f).unwrap();
    }
    let mut alice = w.session(ALICE);
    run(&mut alice, "a SETACL Team bob@example.org lrx");
    run(&mut alice, "a SETACL Public bob@example.org lrk");
    let mut bob = w.session(BOB);
    let o = run(
        &mut bob,
        "b RENAME \"Shared/alice@example.org/Team\" \"Shared/alice@example.org/Public/Team\"",
    );
    assert!(tagged(&o, "b").starts_with("b NO"), "{o}");
    assert!(w.md(ALICE).folder_exists("Team/Private").unwrap());
    assert!(w.md(ALICE).folder_exists("Team").unwrap());
    // With "x" on the child too, the rename goes through.
    run(&mut alice, "c SETACL Team/Private bob@example.org x");
    let o = run(
        &mut bob,
        "d RENAME \"Shared/alice@example.org/Team\" \"Shared/alice@example.org/Public/Team\"",
    );
    assert!(tagged(&o, "d").starts_with("d OK"), "{o}");
    assert!(w.md(ALICE).folder_exists("Public/Team/Private").unwrap());
}

/// A grantee without any right to change the mailbox gets it READ-ONLY (RFC 4314 §4); like
/// EXAMINE (RFC 3501 §6.3.2) that SELECT claims no \Recent: the owner still sees new mail
/// as recent.
#[test]
fn a_read_only_grantee_does_not_take_the_owners_recent() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    w.md(ALICE)
        .open_mailbox("Team")
        .unwrap()
        .append(&msg(), &postern_maildir::Flags::default(), None)
        .unwrap();
    let mut alice = w.session(ALICE);
    run(&mut alice, "a SETACL Team bob@example.org lr");
    let mut bob = w.session(BOB);
    let o = run(&mut bob, "b SELECT \"Shared/alice@example.org/Team\"");
    assert!(
        tagged(&o, "b").starts_with("b OK [READ-ONLY] SELECT completed"),
        "{o}"
    );
    assert!(o.contains("* 1 EXISTS"), "{o}");
    let o = run(&mut alice, "c SELECT Team");
    assert!(o.contains("* 1 RECENT"), "{o}");
}

/// RFC 4314 §4 (table of rights per command, quoted from memory: MYRIGHTS needs any of
/// "l", "r", "i", "k", "x", "a"): a user holding only other rights ("w" here) learns
/// nothing, exactly as SELECT tells them nothing.
#[test]
fn myrights_needs_one_of_the_rights_that_reveal_a_mailbox() {
    let w = world();
    w.md(ALICE).create_folder("Secret").unwrap();
    let mut alice = w.session(ALICE);
    run(&mut alice, "a SETACL Secret bob@example.org w");
    let mut bob = w.session(BOB);
    let sel = run(&mut bob, "b SELECT \"Shared/alice@example.org/Secret\"");
    assert!(tagged(&sel, "b").contains("NO [NONEXISTENT]"), "{sel}");
    let o = run(&mut bob, "c MYRIGHTS \"Shared/alice@example.org/Secret\"");
    assert!(tagged(&o, "c").contains("NO [NONEXISTENT]"), "{o}");
    assert!(!o.contains("* MYRIGHTS"), "{o}");
    run(&mut alice, "d SETACL Secret bob@example.org i");
    let o = run(&mut bob, "e MYRIGHTS \"Shared/alice@example.org/Secret\"");
    assert!(
        o.contains("* MYRIGHTS Shared/alice@example.org/Secret i"),
        "{o}"
    );
}

/// SETACL never writes an ACL that the reader refuses (over 1000 entries or 256 KiB, which
/// would then grant nothing and refuse every later change, GETACL answering SERVERBUG): a
/// holder of "a" could otherwise break the owner's ACL for good.
#[test]
fn setacl_never_writes_an_acl_too_large_to_read() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    let text: String = (0..1000)
        .map(|i| format!("user=u{i}@example.org l\n"))
        .collect();
    std::fs::write(
        w.md(ALICE).folder_dir("Team").unwrap().join("dovecot-acl"),
        text,
    )
    .unwrap();
    let mut alice = w.session(ALICE);
    let o = run(&mut alice, "a SETACL Team bob@example.org lr");
    assert!(tagged(&o, "a").starts_with("a NO"), "{o}");
    let o = run(&mut alice, "b GETACL Team");
    assert!(tagged(&o, "b").starts_with("b OK"), "{o}");
    // 255-byte names: the byte limit (256 KiB) is reached before the entry count.
    w.md(ALICE).create_folder("Big").unwrap();
    let long = |i: usize| format!("{i:0>243}@example.org");
    let text: String = (0..990).map(|i| format!("user={} l\n", long(i))).collect();
    std::fs::write(
        w.md(ALICE).folder_dir("Big").unwrap().join("dovecot-acl"),
        text,
    )
    .unwrap();
    run(&mut alice, "c SETACL Big bob@example.org lra");
    let mut bob = w.session(BOB);
    let mut refused = false;
    for i in 990..1000 {
        let o = run(
            &mut bob,
            &format!("e SETACL \"Shared/alice@example.org/Big\" {} l", long(i)),
        );
        if tagged(&o, "e").starts_with("e NO") {
            refused = true;
            break;
        }
    }
    assert!(refused, "a 256 KiB ACL was written");
    let o = run(&mut alice, "f GETACL Big");
    assert!(tagged(&o, "f").starts_with("f OK"), "{o}");
    let o = run(&mut bob, "g MYRIGHTS \"Shared/alice@example.org/Big\"");
    assert!(o.contains("lra"), "{o}");
}

/// Checked sound (no fix needed): SEARCHRES `$` commands reach the rights checks (they are
/// rewritten and run through Session::handle), and NOTIFY filters naming another user's
/// mailboxes (or `subtree Shared`) watch nothing of theirs.
#[test]
fn searchres_and_notify_stay_within_the_rights() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    let mut team = w.md(ALICE).open_mailbox("Team").unwrap();
    team.append(&msg(), &postern_maildir::Flags::default(), None)
        .unwrap();
    let mut alice = w.session(ALICE);
    run(&mut alice, "a SETACL Team bob@example.org lrs");
    let mut bob = w.session(BOB);
    run(&mut bob, "b SELECT \"Shared/alice@example.org/Team\"");
    let o = run(&mut bob, "c SEARCH RETURN (SAVE) ALL");
    assert!(tagged(&o, "c").starts_with("c OK"), "{o}");
    for (t, c) in [
        ("d", "d MOVE $ INBOX"),
        ("e", "e STORE $ +FLAGS (\\Deleted)"),
        ("f", "f UID EXPUNGE $"),
    ] {
        let o = run(&mut bob, c);
        assert!(tagged(&o, t).starts_with(&format!("{t} NO")), "{c}: {o}");
    }
    assert_eq!(
        w.md(ALICE).open_mailbox("Team").unwrap().messages().len(),
        1
    );
    assert!(
        !w.md(ALICE).open_mailbox("Team").unwrap().messages()[0]
            .flags
            .deleted
    );
    // carol (no rights) asks NOTIFY about alice's Team by name and by subtree.
    let mut carol = w.session(CAROL);
    let o = run(
        &mut carol,
        "g NOTIFY SET STATUS (mailboxes \"Shared/alice@example.org/Team\" (MessageNew MessageExpunge)) (subtree Shared (MessageNew MessageExpunge))",
    );
    assert!(!o.contains("alice"), "{o}");
    let m = String::from_utf8(msg()).unwrap();
    run(
        &mut alice,
        &format!("h APPEND Team {{{}+}}\r\n{m}", msg().len()),
    );
    let mut out = Vec::new();
    carol.notify_wake(&mut out);
    let o = String::from_utf8_lossy(&out);
    assert!(!o.contains("alice") && !o.contains("STATUS"), "{o}");
}

/// RFC 4314 §4: SETACL/DELETEACL need "a". The right is checked again on the ACL read under
/// its lock: a revocation that lands between the command's first look and its write (here
/// alice's change while bob's SETACL waits for the lock) is not overwritten by a grantee
/// who no longer holds "a".
#[test]
fn setacl_checks_the_admin_right_again_under_the_lock() {
    let w = world();
    w.md(ALICE).create_folder("Team").unwrap();
    let mut alice = w.session(ALICE);
    run(&mut alice, "a SETACL Team bob@example.org lra");
    let dir = w.md(ALICE).folder_dir("Team").unwrap();
    // Someone (alice's other session, Dovecot) holds the ACL's dotlock.
    let lock = dir.join("dovecot-acl.lock");
    std::fs::write(&lock, b"").unwrap();
    let mut bob = w.session(BOB);
    let t = std::thread::spawn(move || {
        run(
            &mut bob,
            "b SETACL \"Shared/alice@example.org/Team\" carol@example.org lrswi",
        )
    });
    // bob's command has read its rights (lra) and waits for the lock; alice revokes.
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::write(dir.join("dovecot-acl"), "user=bob@example.org lr\n").unwrap();
    std::fs::remove_file(&lock).unwrap();
    let o = t.join().unwrap();
    assert!(tagged(&o, "b").starts_with("b NO"), "{o}");
    let acl = std::fs::read_to_string(dir.join("dovecot-acl")).unwrap();
    assert_eq!(acl, "user=bob@example.org lr\n");
}
