//! imapd hardening (issue 11 §3): after login, the bytes of one command outside its literals
//! are capped by `imapd.max_command_size`; a longer command gets `* BYE` and changes nothing,
//! while literals (APPEND) stay limited only by `max_literal_size`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use postern_e2e::{Postern, describe_output};

const USER: &str = "alice@example.org";
const PASS: &str = "correct horse battery";

fn install() -> Postern {
    let pm = Postern::builder().daemons(&["authd", "imapd"]).start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let out = pm.mailctl_stdin(&["user", "add", USER], &format!("{PASS}\n"));
    assert!(out.status.success(), "{}", describe_output(&out));
    pm
}

struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(a: SocketAddr) -> Self {
        let s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = Self { s, buf: Vec::new() };
        let g = r.line();
        assert!(g.starts_with("* OK "), "{g}");
        r
    }
    fn login(a: SocketAddr) -> Self {
        let mut r = Self::connect(a);
        r.send(format!("l LOGIN {USER} \"{PASS}\"\r\n").as_bytes());
        let l = r.until("l");
        assert!(l.last().unwrap().starts_with("l OK"), "{l:?}");
        r
    }
    /// Writes everything; false if the server closed the connection first.
    fn send(&mut self, b: &[u8]) -> bool {
        self.s.write_all(b).is_ok()
    }
    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&l).into_owned();
            }
            let mut b = [0u8; 8192];
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return String::new(),
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }
    fn until(&mut self, tag: &str) -> Vec<String> {
        let mut v = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                panic!("connection closed waiting for {tag}: {v:?}");
            }
            let done = l.starts_with(&format!("{tag} "));
            v.push(l);
            if done {
                return v;
            }
        }
    }
    /// All lines until the server closes the connection.
    fn rest(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                return v;
            }
            v.push(l);
        }
    }
}

#[test]
fn imapd_caps_command_text_after_login() {
    let pm = install();
    let a = pm.daemon("imapd").listening_addrs_matching("(imap)")[0];

    // A message to work on; a 1 MiB literal is fine after login (only literal-limited).
    let mut r = Raw::login(a);
    let body = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(1 << 20));
    r.send(format!("a1 APPEND INBOX {{{}}}\r\n", body.len()).as_bytes());
    assert!(r.line().starts_with("+ "));
    r.send(body.as_bytes());
    r.send(b"\r\n");
    let l = r.until("a1");
    assert!(l.last().unwrap().starts_with("a1 OK"), "{l:?}");
    r.send(b"s0 SELECT INBOX\r\n");
    r.until("s0");

    // Under the cap (default 64 KiB): a 30 KiB sequence set is served.
    let seq = "1,".repeat(15_000);
    r.send(format!("s1 STORE {seq}1 +FLAGS (kwsmall)\r\n").as_bytes());
    let l = r.until("s1");
    assert!(l.last().unwrap().starts_with("s1 OK"), "{l:?}");

    // Over it: 400 KiB of command text (the old limit was literal + command size, ~50 MiB).
    let seq = "1,".repeat(200_000);
    let pipelined = format!("n1 NOOP\r\ns2 STORE {seq}1 +FLAGS (kwbig)\r\ns3 NOOP\r\n");
    r.send(pipelined.as_bytes());
    let rest = r.rest();
    assert!(
        rest.iter().any(|l| l.starts_with("n1 OK")),
        "the command before is served: {rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.starts_with("* BYE") && l.contains("too long")),
        "{rest:?}"
    );
    assert!(
        !rest
            .iter()
            .any(|l| l.starts_with("s2 ") || l.starts_with("s3 ")),
        "{rest:?}"
    );

    // A command whose text continues after a literal counts that text too.
    let mut r = Raw::login(a);
    r.send(b"s0 SELECT INBOX\r\n");
    r.until("s0");
    r.send(b"t1 SEARCH CHARSET UTF-8 TEXT {3}\r\n");
    assert!(r.line().starts_with("+ "));
    r.send(format!("abc{}\r\n", " TEXT x".repeat(15_000)).as_bytes());
    let rest = r.rest();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("* BYE") && l.contains("too long")),
        "{rest:?}"
    );

    // Nothing changed: the big STORE did not run, the small one did.
    let mut r = Raw::login(a);
    r.send(b"s0 SELECT INBOX\r\nf1 FETCH 1 FLAGS\r\n");
    r.until("s0");
    let l = r.until("f1");
    assert!(l.iter().any(|x| x.contains("kwsmall")), "{l:?}");
    assert!(!l.iter().any(|x| x.contains("kwbig")), "{l:?}");
    assert!(
        pm.daemon("imapd").is_running(),
        "{}",
        pm.daemon("imapd").log_text()
    );
}

/// Issue 11 §7: `user+Trash@domain` from an outsider must not file into a special-use folder
/// (Sent, Drafts, Trash, Junk, Archive …) unless `lmtp.plus_address_special_use` allows it;
/// such mail goes to INBOX. Ordinary folders still work.
#[test]
fn plus_addressing_never_files_into_special_use_folders() {
    use crate::lmtp::{Lmtp, lmtp_install, maildir, messages};
    let msg = |s: &str| format!("From: s@remote.test\nTo: alice@example.org\nSubject: {s}\n\nx\n");
    let mkfolder = |pm: &Postern, name: &str| {
        let dir = maildir(pm, "alice").join(format!(".{name}"));
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        std::fs::write(dir.join("maildirfolder"), b"").expect("maildirfolder");
    };
    let special = ["Sent", "Drafts", "Trash", "Junk", "Archive"];
    for allowed in [false, true] {
        let builder = Postern::builder();
        let builder = if allowed {
            builder.set("lmtp.plus_address_special_use", true)
        } else {
            builder
        };
        let pm = lmtp_install(builder);
        let mut c = Lmtp::connect(&pm.socket("lmtp"));
        c.cmd("LHLO client.test");
        let (_, after) = c.transaction("s@remote.test", &["alice@example.org"], &msg("first"));
        assert!(after[0].starts_with("250"), "{after:?}");
        for f in special.iter().chain(&["Lists"]) {
            mkfolder(&pm, f);
        }
        let rcpts: Vec<String> = special
            .iter()
            .flat_map(|f| {
                [
                    format!("alice+{f}@example.org"),
                    format!("alice+{}@example.org", f.to_lowercase()),
                ]
            })
            .chain([String::from("alice+lists@example.org")])
            .collect();
        let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let (rcpt, after) = c.transaction("s@remote.test", &rcpts, &msg("plus"));
        assert!(rcpt.iter().all(|r| r.starts_with("250")), "{rcpt:?}");
        assert!(after.iter().all(|r| r.starts_with("250")), "{after:?}");
        let md = maildir(&pm, "alice");
        assert_eq!(messages(&md, ".Lists/new").len(), 1, "allowed={allowed}");
        for f in special {
            let n = messages(&md, &format!(".{f}/new")).len();
            assert_eq!(n, if allowed { 2 } else { 0 }, "{f} allowed={allowed}");
        }
        let inbox = messages(&md, "new").len();
        assert_eq!(inbox, if allowed { 1 } else { 11 }, "allowed={allowed}");
    }
}

/// Issue 11 §3: one message with a 2 MB `Subject: [] [] […]` (RFC 5256 base subject was
/// quadratic: tens of minutes) and a long References chain must not make the mailbox
/// unusable: FETCH ENVELOPE, SORT and THREAD answer (within the read timeout).
#[test]
fn imapd_serves_a_mailbox_holding_hostile_headers() {
    let pm = install();
    let a = pm.daemon("imapd").listening_addrs_matching("(imap)")[0];
    let mut r = Raw::login(a);
    let refs: String = (0..1000).map(|i| format!(" <r{i}@x>")).collect();
    let bodies = [
        format!(
            "From: a@example.org\r\nSubject: {}hi\r\nMessage-ID: <m1@x>\r\n\r\nx\r\n",
            "[] ".repeat(700_000)
        ),
        format!(
            "From: b@example.org\r\nSubject: Re: hi\r\nMessage-ID: <m2@x>\r\nReferences:{refs} <m1@x>\r\n\r\ny\r\n"
        ),
    ];
    for (i, body) in bodies.iter().enumerate() {
        r.send(format!("a{i} APPEND INBOX {{{}}}\r\n", body.len()).as_bytes());
        assert!(r.line().starts_with("+ "));
        r.send(body.as_bytes());
        r.send(b"\r\n");
        let l = r.until(&format!("a{i}"));
        assert!(l.last().unwrap().contains("OK"), "{l:?}");
    }
    r.send(b"s SELECT INBOX\r\n");
    r.until("s");
    r.send(b"f FETCH 1:* (ENVELOPE)\r\n");
    let l = r.until("f");
    assert!(l.last().unwrap().starts_with("f OK"), "{:?}", l.last());
    r.send(b"o SORT (SUBJECT) UTF-8 ALL\r\n");
    let l = r.until("o");
    assert!(l.iter().any(|x| x.starts_with("* SORT 1 2")), "{l:?}");
    r.send(b"t THREAD REFERENCES UTF-8 ALL\r\n");
    let l = r.until("t");
    assert!(l.iter().any(|x| x.starts_with("* THREAD (1 2)")), "{l:?}");
}
