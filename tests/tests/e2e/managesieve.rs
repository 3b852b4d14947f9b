//! ManageSieve (RFC 5804, issue 15 §3) end to end: authd + lmtp-deliver + imapd from a temp
//! install. Scripts are put through a raw socket (Rust, and Python for STARTTLS) and through
//! Debian's `sieve-connect`; the active script then acts on mail delivered over LMTP, and
//! the files on disk are the ones Pigeonhole and `mailctl sieve` use.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use postern_e2e::{Postern, PosternBuilder, SmtpSink, describe_output, run_command, run_python};

use crate::lmtp::{Lmtp, maildir, messages};

const ALICE: &str = "alice@example.org";
const ALICE_PW: &str = "correct horse battery";

const VACATION: &str = "require [\"vacation\"];\r\nvacation :days 1 :subject \"Away\" \"I am away until Monday.\";\r\n";

fn install(builder: PosternBuilder, sink: &SmtpSink) -> Postern {
    let pm = builder
        .set("lmtp.submit_to", sink.addr().to_string())
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let out = pm.mailctl_stdin(&["user", "add", ALICE], &format!("{ALICE_PW}\n"));
    assert!(out.status.success(), "{}", describe_output(&out));
    pm
}

fn sieve_addr(pm: &Postern) -> SocketAddr {
    pm.daemon("imapd")
        .listening_addrs_matching("(managesieve)")
        .first()
        .copied()
        .expect("imapd listens for ManageSieve (mailctl init sets managesieve_listen)")
}

fn home(pm: &Postern) -> std::path::PathBuf {
    pm.dir().join("mail/example.org/alice")
}

/// One response: the data lines before it (literals joined in) and the status line.
#[derive(Debug)]
struct Response {
    data: Vec<String>,
    status: String,
}

impl Response {
    fn ok(&self) -> bool {
        self.status.starts_with("OK")
    }
}

/// A raw ManageSieve client.
struct Sieve {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Sieve {
    fn connect(addr: SocketAddr) -> (Self, Response) {
        let s = TcpStream::connect(addr).expect("connect to ManageSieve");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut c = Self {
            w: s.try_clone().expect("clone"),
            r: BufReader::new(s),
        };
        let greeting = c.response();
        assert!(greeting.ok(), "{greeting:?}");
        (c, greeting)
    }

    /// One logical line: a line ending in a literal `{n}` goes on after its n octets.
    fn logical_line(&mut self) -> Option<String> {
        let mut out = String::new();
        loop {
            let mut line = Vec::new();
            let n = self.r.read_until(b'\n', &mut line).expect("read");
            if n == 0 {
                return None;
            }
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            let literal = text
                .rfind('{')
                .filter(|_| text.ends_with('}'))
                .and_then(|i| {
                    text[i + 1..text.len() - 1]
                        .trim_end_matches('+')
                        .parse::<usize>()
                        .ok()
                        .map(|n| (i, n))
                });
            match literal {
                Some((i, n)) => {
                    out.push_str(&text[..i]);
                    let mut body = vec![0u8; n];
                    self.r.read_exact(&mut body).expect("read a literal");
                    out.push_str(&String::from_utf8_lossy(&body));
                }
                None => {
                    out.push_str(&text);
                    return Some(out);
                }
            }
        }
    }

    fn response(&mut self) -> Response {
        let mut data = Vec::new();
        loop {
            let line = self
                .logical_line()
                .unwrap_or_else(|| panic!("connection closed; read so far: {data:?}"));
            if ["OK", "NO", "BYE"]
                .iter()
                .any(|w| line == *w || line.starts_with(&format!("{w} ")))
            {
                return Response { data, status: line };
            }
            data.push(line);
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("write");
    }

    fn cmd(&mut self, line: &str) -> Response {
        self.send(format!("{line}\r\n").as_bytes());
        self.response()
    }

    /// `cmd "name" {n+} script`.
    fn with_script(&mut self, cmd: &str, script: &str) -> Response {
        self.send(format!("{cmd} {{{}+}}\r\n{script}\r\n", script.len()).as_bytes());
        self.response()
    }

    fn login(&mut self, user: &str, pass: &str) -> Response {
        use base64::Engine as _;
        let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.cmd(&format!("AUTHENTICATE \"PLAIN\" \"{ir}\""))
    }
}

/// Delivers a message from `from` to alice over LMTP; returns the reply after DATA.
fn deliver(pm: &Postern, from: &str, subject: &str) -> String {
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    let msg = format!(
        "From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\n\r\nbody\r\n"
    );
    let (_, after) = c.transaction(from, &[ALICE], &msg);
    after.into_iter().next().expect("a reply")
}

/// Creates a Maildir++ folder, as an IMAP client would (`fileinto` without `:create` files
/// only into folders that exist; lmtp-deliver keeps the message in INBOX otherwise).
fn make_folder(md: &Path, name: &str) {
    let dir = md.join(format!(".{name}"));
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::write(dir.join("maildirfolder"), b"").expect("maildirfolder");
}

fn assert_vacation_sent(sink: &SmtpSink, to: &str) {
    let sent = sink.wait_for(1, Duration::from_secs(15));
    let v = sent
        .iter()
        .find(|m| m.to == [to])
        .unwrap_or_else(|| panic!("no vacation reply to {to}: {sent:?}"));
    assert_eq!(v.from, "", "vacation replies use the null sender");
    assert!(
        v.data.contains("Subject: Away") && v.data.contains("I am away until Monday."),
        "{}",
        v.data
    );
}

#[test]
fn raw_dialogue_puts_activates_and_the_script_acts() {
    let sink = SmtpSink::start();
    let pm = install(Postern::builder(), &sink);
    let (mut c, greeting) = Sieve::connect(sieve_addr(&pm));
    let caps = greeting.data.join("\n");
    for cap in [
        "\"IMPLEMENTATION\" \"Postern\"",
        "\"SASL\" \"PLAIN LOGIN\"",
        "\"STARTTLS\"",
        "\"VERSION\" \"1.0\"",
        "\"UNAUTHENTICATE\"",
    ] {
        assert!(caps.contains(cap), "{cap} missing from {caps}");
    }
    assert!(
        caps.contains("\"SIEVE\" \"") && caps.contains("vacation"),
        "{caps}"
    );
    assert!(c.cmd("LISTSCRIPTS").status.starts_with("NO"));
    let r = c.login(ALICE, "wrong password");
    assert!(r.status.starts_with("NO"), "{r:?}");
    let r = c.login(ALICE, ALICE_PW);
    assert!(r.ok(), "{r:?}");
    assert!(
        c.cmd("CAPABILITY")
            .data
            .iter()
            .any(|l| l.contains("\"OWNER\" \"alice@example.org\""))
    );

    // A bad script is refused with its line number, and nothing is stored.
    let r = c.with_script("PUTSCRIPT \"broken\"", "keep;\r\nfrobnicate \"x\";\r\n");
    assert!(
        r.status.starts_with("NO") && r.status.contains("line 2"),
        "{r:?}"
    );
    let r = c.with_script(
        "CHECKSCRIPT",
        "require \"fileinto\";\r\nif true {\r\n  fileinto\r\n}\r\n",
    );
    assert!(
        r.status.starts_with("NO") && r.status.contains("line "),
        "{r:?}"
    );
    assert!(c.with_script("CHECKSCRIPT", VACATION).ok());
    assert!(!home(&pm).join("sieve/broken.sieve").exists());

    assert!(c.cmd("HAVESPACE \"vacation\" 1000").ok());
    let r = c.cmd("HAVESPACE \"vacation\" 2000000");
    assert!(r.status.starts_with("NO (QUOTA/MAXSIZE)"), "{r:?}");
    let r = c.with_script("PUTSCRIPT \"vacation\"", VACATION);
    assert!(r.ok(), "{r:?}");
    assert!(c.with_script("PUTSCRIPT \"spare\"", "keep;\r\n").ok());
    let r = c.cmd("LISTSCRIPTS");
    assert_eq!(r.data, ["\"spare\"", "\"vacation\""], "{r:?}");
    let r = c.cmd("SETACTIVE \"nosuch\"");
    assert!(r.status.starts_with("NO (NONEXISTENT)"), "{r:?}");
    assert!(c.cmd("SETACTIVE \"vacation\"").ok());
    let r = c.cmd("LISTSCRIPTS");
    assert_eq!(r.data, ["\"spare\"", "\"vacation\" ACTIVE"], "{r:?}");
    let r = c.cmd("GETSCRIPT \"vacation\"");
    assert!(r.ok());
    assert_eq!(r.data.concat(), VACATION, "{r:?}");
    let r = c.cmd("DELETESCRIPT \"vacation\"");
    assert!(r.status.starts_with("NO (ACTIVE)"), "{r:?}");
    let r = c.cmd("RENAMESCRIPT \"spare\" \"vacation\"");
    assert!(r.status.starts_with("NO (ALREADYEXISTS)"), "{r:?}");
    assert!(c.cmd("RENAMESCRIPT \"spare\" \"old\"").ok());
    assert!(c.cmd("DELETESCRIPT \"old\"").ok());
    let r = c.cmd("PUTSCRIPT \"../escape\" \"keep;\"");
    assert!(r.status.starts_with("NO"), "{r:?}");
    let r = c.cmd("NOOP \"t1\"");
    assert_eq!(r.status, "OK (TAG \"t1\") \"Done\"");

    // Pigeonhole's layout, which lmtp-deliver and `mailctl sieve` read.
    let link = std::fs::read_link(home(&pm).join(".dovecot.sieve")).expect("the active link");
    assert_eq!(link, Path::new("sieve/vacation.sieve"));
    assert_eq!(
        pm.mailctl_ok(&["sieve", "get", ALICE]).trim_end(),
        VACATION.trim_end()
    );
    // The script acts on the next delivery.
    assert!(deliver(&pm, "friend@remote.test", "hello").starts_with("250"));
    assert_vacation_sent(&sink, "friend@remote.test");
    assert_eq!(
        messages(&maildir(&pm, "alice"), "new").len(),
        1,
        "kept as well"
    );

    // Deactivated: no link, no more replies.
    assert!(c.cmd("SETACTIVE \"\"").ok());
    assert!(std::fs::symlink_metadata(home(&pm).join(".dovecot.sieve")).is_err());
    assert!(c.cmd("UNAUTHENTICATE").ok());
    assert!(c.cmd("LISTSCRIPTS").status.starts_with("NO"));
    assert!(c.cmd("LOGOUT").ok());
}

/// What Roundcube's managesieve forms write: a vacation with a date range (date,
/// relational), a body filter, a header :index test.
const ROUNDCUBE: &str = r#"require ["date","relational","vacation","body","fileinto","index"];
# rule:[bills]
if body :text :contains "invoice"
{
	fileinto "Bills";
	stop;
}
# rule:[first hop]
if header :index 1 :contains "x-hop" "second"
{
	fileinto "Wrong";
	stop;
}
# rule:[vacation]
if allof (currentdate :zone "+0000" :value "ge" "date" "2000-01-01", currentdate :zone "+0000" :value "le" "date" "2999-12-31")
{
	vacation :days 1 :subject "Away" "I am away until Monday.";
}
"#;

#[test]
fn roundcube_extensions_run_on_delivery() {
    let sink = SmtpSink::start();
    let pm = install(Postern::builder(), &sink);
    let (mut c, greeting) = Sieve::connect(sieve_addr(&pm));
    let sieve_cap = greeting
        .data
        .iter()
        .find(|l| l.starts_with("\"SIEVE\""))
        .expect("SIEVE capability")
        .clone();
    for ext in ["date", "relational", "body", "index", "vacation"] {
        assert!(
            sieve_cap.split(['"', ' ']).any(|w| w == ext),
            "{ext}: {sieve_cap}"
        );
    }
    assert!(c.login(ALICE, ALICE_PW).ok());
    let r = c.with_script("PUTSCRIPT \"roundcube\"", ROUNDCUBE);
    assert!(r.ok(), "{r:?}");
    assert!(c.cmd("SETACTIVE \"roundcube\"").ok());
    let md = maildir(&pm, "alice");
    make_folder(&md, "Bills");
    make_folder(&md, "Wrong");
    // body :text
    let mut l = Lmtp::connect(&pm.socket("lmtp"));
    l.cmd("LHLO client.test");
    let bill = format!(
        "From: shop@remote.test\r\nTo: {ALICE}\r\nSubject: your order\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nYour Invo=\r\nice is attached.\r\n"
    );
    let (_, after) = l.transaction("shop@remote.test", &[ALICE], &bill);
    assert!(after[0].starts_with("250"), "{after:?}");
    assert_eq!(
        messages(&md, ".Bills/new").len(),
        1,
        "body :text :contains (decoded, case-insensitive)"
    );
    // header :index 1 looks at the first field only.
    let hops = format!(
        "From: list@remote.test\r\nTo: {ALICE}\r\nX-Hop: first\r\nX-Hop: second\r\nSubject: hops\r\n\r\nx\r\n"
    );
    let (_, after) = l.transaction("list@remote.test", &[ALICE], &hops);
    assert!(after[0].starts_with("250"), "{after:?}");
    assert!(messages(&md, ".Wrong/new").is_empty());
    // currentdate within the range: the vacation reply.
    assert!(deliver(&pm, "friend@remote.test", "hello").starts_with("250"));
    assert_vacation_sent(&sink, "friend@remote.test");
}

/// Roundcube's "execute ruleset" action: `include :personal` of another script in the
/// storage, read by lmtp-deliver next to the active one.
#[test]
fn include_of_another_script_runs_on_delivery() {
    let sink = SmtpSink::start();
    let pm = install(Postern::builder(), &sink);
    let (mut c, _) = Sieve::connect(sieve_addr(&pm));
    assert!(c.login(ALICE, ALICE_PW).ok());
    let lists = "require [\"fileinto\"];\r\nif header :contains \"subject\" \"[list]\" { fileinto \"Lists\"; stop; }\r\n";
    let main = "require [\"include\", \"fileinto\"];\r\ninclude :personal \"lists\";\r\nfileinto \"Rest\";\r\n";
    assert!(c.with_script("PUTSCRIPT \"lists\"", lists).ok());
    assert!(c.with_script("PUTSCRIPT \"main\"", main).ok());
    assert!(c.cmd("SETACTIVE \"main\"").ok());
    let md = maildir(&pm, "alice");
    make_folder(&md, "Lists");
    make_folder(&md, "Rest");
    assert!(deliver(&pm, "a@remote.test", "[list] news").starts_with("250"));
    assert!(deliver(&pm, "a@remote.test", "other").starts_with("250"));
    assert_eq!(
        messages(&md, ".Lists/new").len(),
        1,
        "the included script filed it"
    );
    assert_eq!(
        messages(&md, ".Rest/new").len(),
        1,
        "the rest of the main script ran"
    );
    // A missing included script is a runtime error: the message is kept in INBOX.
    assert!(c.cmd("DELETESCRIPT \"lists\"").ok());
    assert!(deliver(&pm, "a@remote.test", "[list] more").starts_with("250"));
    assert_eq!(messages(&md, "new").len(), 1);
}

/// After UNAUTHENTICATE the client gets the login time again (not what was left of the
/// first one), and the login timeout still ends a session that never logs in again.
#[test]
fn unauthenticate_restarts_the_login_timer() {
    let sink = SmtpSink::start();
    let pm = install(Postern::builder().set("imapd.login_timeout_secs", 2), &sink);
    let (mut c, _) = Sieve::connect(sieve_addr(&pm));
    assert!(c.login(ALICE, ALICE_PW).ok());
    // Past the login timeout while logged in (the idle timeout applies then).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(c.cmd("UNAUTHENTICATE").ok());
    let r = c.cmd("NOOP");
    assert!(r.ok(), "the session must not end at once: {r:?}");
    let started = std::time::Instant::now();
    let bye = c.response();
    assert!(bye.status.starts_with("BYE"), "{bye:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn mailctl_sieve_put_before_managesieve_is_kept() {
    let sink = SmtpSink::start();
    let pm = install(Postern::builder(), &sink);
    let file = pm.dir().join("v.sieve");
    std::fs::write(&file, VACATION).expect("write");
    pm.mailctl_ok(&["sieve", "put", ALICE, file.to_str().expect("utf8")]);
    let (mut c, _) = Sieve::connect(sieve_addr(&pm));
    assert!(c.login(ALICE, ALICE_PW).ok());
    let r = c.cmd("LISTSCRIPTS");
    assert_eq!(r.data, ["\"dovecot.orig\" ACTIVE"], "{r:?}");
    assert!(
        std::fs::symlink_metadata(home(&pm).join(".dovecot.sieve"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
    // Still filtering with the same script.
    assert!(deliver(&pm, "friend@remote.test", "hello").starts_with("250"));
    assert_vacation_sent(&sink, "friend@remote.test");
    // `mailctl sieve put` now writes through the link into the active script.
    std::fs::write(&file, "keep;\r\n").expect("write");
    pm.mailctl_ok(&["sieve", "put", ALICE, file.to_str().expect("utf8")]);
    let r = c.cmd("GETSCRIPT \"dovecot.orig\"");
    assert_eq!(r.data.concat(), "keep;\r\n");
}

#[test]
fn wrong_passwords_count_towards_the_lockout() {
    let sink = SmtpSink::start();
    let pm = install(
        Postern::builder()
            .set("authd.lockout.account_threshold", 2)
            .set("authd.lockout.ip_threshold", 1000)
            .set("authd.lockout.delay_after", 100)
            .set("authd.lockout.max_delay_secs", 0),
        &sink,
    );
    let (mut c, _) = Sieve::connect(sieve_addr(&pm));
    for _ in 0..2 {
        let r = c.login(ALICE, "wrong password");
        assert_eq!(r.status, "NO \"Authentication failed.\"", "{r:?}");
    }
    // The right password is refused now: the account is locked out in authd, which says
    // so as a temporary failure (as imapd's NO [UNAVAILABLE]).
    let r = c.login(ALICE, ALICE_PW);
    assert!(
        r.status.starts_with("NO (TRYLATER)") && r.status.contains("locked"),
        "{r:?}"
    );
    // Whatever the password, while the lockout lasts.
    let r = c.login(ALICE, "wrong again");
    assert!(r.status.starts_with("NO (TRYLATER)"), "{r:?}");
    let rows = pm.mailctl_json(&["lockout", "list"]);
    assert!(
        rows.as_array()
            .expect("array")
            .iter()
            .any(|r| r["locked"] == true),
        "{rows}"
    );
    assert!(
        pm.authd().log_text().contains("service=sieve"),
        "authd saw the attempts as service sieve"
    );
    // `mailctl lockout clear` lets alice in again.
    pm.mailctl_ok(&["lockout", "clear", "--all"]);
    let (mut c, _) = Sieve::connect(sieve_addr(&pm));
    assert!(c.login(ALICE, ALICE_PW).ok());
}

/// TLS is needed before AUTHENTICATE outside `trusted_networks` (Python's ssl for the
/// handshake); a pre-TLS command sent with STARTTLS is not executed.
const STARTTLS: &str = r#"
import base64, socket, ssl, sys
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port), timeout=30)
f = s.makefile("rb")
def response(f):
    lines = []
    while True:
        l = f.readline().decode().rstrip("\r\n")
        lines.append(l)
        if l.startswith(("OK", "NO", "BYE")):
            return lines
caps = response(f)
assert '"SASL" ""' in caps, caps
assert '"STARTTLS"' in caps, caps
ir = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
s.sendall(('AUTHENTICATE "PLAIN" "%s"\r\n' % ir).encode())
r = response(f)
assert r[-1].startswith("NO (ENCRYPT-NEEDED)"), r
s.sendall(b"STARTTLS\r\nLISTSCRIPTS\r\n")
r = response(f)
assert r[-1].startswith("OK"), r
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s)
g = t.makefile("rb")
caps = response(g)
assert '"SASL" "PLAIN LOGIN"' in caps, caps
assert '"STARTTLS"' not in caps, caps
assert caps[-1].startswith("OK"), caps
t.sendall(('AUTHENTICATE "PLAIN" "%s"\r\n' % ir).encode())
r = response(g)
assert r[-1].startswith("OK"), r
t.sendall(b"LISTSCRIPTS\r\n")
r = response(g)
assert r == ['OK "Listscripts completed."'], r
t.sendall(b"LOGOUT\r\n")
print("ok")
"#;

#[test]
fn starttls_is_required_outside_trusted_networks() {
    let sink = SmtpSink::start();
    let pm = install(
        Postern::builder().set("imapd.trusted_networks", toml::Value::Array(Vec::new())),
        &sink,
    );
    let a = sieve_addr(&pm);
    let out = run_python(
        STARTTLS,
        &[&a.ip().to_string(), &a.port().to_string(), ALICE, ALICE_PW],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
}

#[test]
#[ignore = "needs sieve-connect (apt-get install sieve-connect)"]
fn sieve_connect_uploads_activates_and_the_script_acts() {
    let sink = SmtpSink::start();
    let pm = install(Postern::builder(), &sink);
    let a = sieve_addr(&pm);
    let script = pm.dir().join("vacation.sieve");
    std::fs::write(&script, VACATION).expect("write");
    let bad = pm.dir().join("bad.sieve");
    std::fs::write(&bad, "keep;\nfrobnicate;\n").expect("write");
    let port = a.port().to_string();
    let sc = |args: &[&str]| {
        let mut cmd = std::process::Command::new("sieve-connect");
        cmd.args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            ALICE,
            "--passwordfd",
            "0",
            "--notlsverify",
        ])
        .args(args);
        run_command(
            &mut cmd,
            Some(format!("{ALICE_PW}\n").as_bytes()),
            Duration::from_secs(60),
        )
    };
    let path = |p: &Path| p.to_str().expect("utf8").to_owned();
    let out = sc(&[
        "--upload",
        "--localsieve",
        &path(&bad),
        "--remotesieve",
        "bad",
    ]);
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2")
            || String::from_utf8_lossy(&out.stdout).contains("line 2"),
        "{}",
        describe_output(&out)
    );
    let out = sc(&[
        "--upload",
        "--localsieve",
        &path(&script),
        "--remotesieve",
        "vacation",
    ]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let out = sc(&["--activate", "--remotesieve", "vacation"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let out = sc(&["--list"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("vacation") && listing.contains("ACTIVE"),
        "{listing}"
    );
    let back = pm.dir().join("back.sieve");
    let out = sc(&[
        "--download",
        "--remotesieve",
        "vacation",
        "--localsieve",
        &path(&back),
    ]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(
        std::fs::read_to_string(&back).expect("downloaded"),
        VACATION
    );
    // sieve-connect used STARTTLS (it is offered): the session was secured.
    assert!(deliver(&pm, "friend@remote.test", "hello").starts_with("250"));
    assert_vacation_sent(&sink, "friend@remote.test");
    let out = sc(&["--deactivate"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let out = sc(&["--delete", "--remotesieve", "vacation"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(!home(&pm).join("sieve/vacation.sieve").exists());
}
