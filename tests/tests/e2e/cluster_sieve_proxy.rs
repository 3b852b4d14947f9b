//! ManageSieve in proxy mode (issue 14 §2): two installs on loopback, as in `imap_proxy.rs`.
//! B is bob's mailbox backend (authd, lmtp-deliver, imapd; `[imapd] proxy_networks =
//! 127.0.0.1/32`, so it offers the front `XCLIENT` and believes the real client it names);
//! A is a front (authd, imapd) whose directory says bob lives on 127.0.0.1, with `[proxy]
//! managesieve_port` set to B's ManageSieve port. Scripts put through A's ManageSieve land
//! in bob's home on B and file the next delivery there.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use nix::sys::signal::Signal;
use postern_e2e::{LineClient, Postern, describe_output, run_command};

use crate::lmtp::{Lmtp, maildir, messages};

const BOB: &str = "bob@example.org";
const BOB_PW: &str = "another good passphrase";

const FILTER: &str = "require [\"fileinto\", \"mailbox\"];\r\nif header :contains \"subject\" \"proxied\" {\r\n  fileinto :create \"Filtered\";\r\n}\r\n";

fn sieve_addr(pm: &Postern) -> SocketAddr {
    pm.daemon("imapd")
        .listening_addrs_matching("(managesieve)")
        .first()
        .copied()
        .expect("imapd listens for ManageSieve (mailctl init sets managesieve_listen)")
}

/// B: bob's mailbox.
fn backend() -> Postern {
    let pm = Postern::builder()
        .hostname("b.example.org")
        .set("imapd.proxy_networks", vec!["127.0.0.1/32".to_owned()])
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    pm.add_user(BOB, BOB_PW);
    pm
}

/// A: the front; bob lives on 127.0.0.1 (B).
fn front(b: &Postern) -> Postern {
    let pm = Postern::builder()
        .hostname("front.example.org")
        .set("proxy.self", "front.example.org")
        .set("proxy.managesieve_port", i64::from(sieve_addr(b).port()))
        .set("proxy.connect_timeout_secs", 3)
        .daemons(&["authd", "imapd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    pm.add_user_on_host(BOB, BOB_PW, Some("127.0.0.1"));
    pm
}

fn bob_home(pm: &Postern) -> PathBuf {
    pm.dir().join("mail/example.org/bob")
}

/// A TCP connection to `to` from `from_ip` (a loopback alias, so the backend can be seen
/// to name the real client rather than the front).
fn connect_from(from_ip: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from_ip}:0").parse().unwrap()).unwrap();
        sock.connect(to).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// The lines of one ManageSieve response, up to and with its `OK`/`NO`/`BYE` line.
fn response(c: &mut LineClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        let done = ["OK", "NO", "BYE"]
            .iter()
            .any(|r| l.starts_with(r) && matches!(l.as_bytes().get(r.len()), None | Some(b' ')));
        lines.push(l);
        if done {
            return lines;
        }
        assert!(lines.len() < 1000, "no end of response: {lines:?}");
    }
}

fn status(lines: &[String]) -> &str {
    lines.last().map_or("", String::as_str)
}

fn plain(user: &str, pw: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"))
}

/// Delivers a message with `subject` to bob through B's LMTP socket.
fn deliver(b: &Postern, subject: &str) {
    let mut l = Lmtp::connect(&b.socket("lmtp"));
    assert!(l.cmd("LHLO test").starts_with("250"));
    let (_, replies) = l.transaction(
        "sender@remote.test",
        &[BOB],
        &format!("From: sender@remote.test\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nbody\r\n"),
    );
    assert!(
        replies.len() == 1 && replies[0].starts_with("250"),
        "{replies:?}"
    );
}

/// AUTHENTICATE at A reaches bob's scripts on B: commands pipelined behind it reach B,
/// the capability list after login is B's (OWNER), PUTSCRIPT/SETACTIVE/GETSCRIPT work on
/// B's files and the script files B's next delivery; B's logs and authd name the real
/// client (XCLIENT), not the front; nothing is created for bob on A. Then B's imapd is
/// killed: the client gets `BYE (TRYLATER)`, a new login at A a temporary failure.
#[test]
fn managesieve_at_the_front_manages_the_backends_scripts() {
    let mut b = backend();
    let a = front(&b);
    let a_sieve = sieve_addr(&a);

    let mut c = LineClient::new(connect_from("127.0.0.2", a_sieve));
    let client = c.local_addr();
    let greeting = response(&mut c);
    assert!(status(&greeting).starts_with("OK"), "{greeting:?}");
    assert!(
        greeting.iter().any(|l| l == "\"SASL\" \"PLAIN LOGIN\""),
        "loopback is trusted: {greeting:?}"
    );
    assert!(
        !greeting.iter().any(|l| l.contains("XCLIENT")),
        "A does not trust its clients: {greeting:?}"
    );
    let mark = b.daemon("imapd").mark();
    // A command pipelined behind AUTHENTICATE must reach the backend.
    c.send(&format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"\r\nCAPABILITY\r\n",
        plain(BOB, BOB_PW)
    ));
    let login = response(&mut c);
    assert_eq!(login, ["OK \"Logged in.\""]);
    let caps = response(&mut c);
    assert!(status(&caps).starts_with("OK"), "{caps:?}");
    assert!(
        caps.iter().any(|l| l == "\"OWNER\" \"bob@example.org\""),
        "B's list after login: {caps:?}"
    );

    c.send(&format!(
        "PUTSCRIPT \"filter\" {{{}+}}\r\n{FILTER}\r\n",
        FILTER.len()
    ));
    let put = response(&mut c);
    assert!(status(&put).starts_with("OK"), "{put:?}");
    c.send("SETACTIVE \"filter\"\r\n");
    assert!(status(&response(&mut c)).starts_with("OK"));
    c.send("LISTSCRIPTS\r\n");
    let list = response(&mut c);
    assert_eq!(list, ["\"filter\" ACTIVE", "OK \"Listscripts completed.\""]);
    c.send("GETSCRIPT \"filter\"\r\n");
    let got = response(&mut c);
    assert_eq!(got[0], format!("{{{}}}", FILTER.len()), "{got:?}");
    assert_eq!(got[1..got.len() - 2].join("\r\n") + "\r\n", FILTER);
    assert!(status(&got).starts_with("OK"), "{got:?}");

    // The files are B's, in Pigeonhole's layout; A has nothing for bob.
    let home = bob_home(&b);
    assert_eq!(
        std::fs::read_to_string(home.join("sieve/filter.sieve")).unwrap(),
        FILTER
    );
    assert_eq!(
        std::fs::read_link(home.join(".dovecot.sieve")).unwrap(),
        Path::new("sieve/filter.sieve")
    );
    assert!(!bob_home(&a).exists(), "nothing for bob on the front");

    // B logged the login with the real client (address and port) and the front as `via`.
    let line = b
        .daemon("imapd")
        .wait_for_since(mark, "login", Duration::from_secs(10));
    assert!(
        line.contains("service=\"sieve\"") || line.contains("service=sieve"),
        "{line}"
    );
    assert!(
        line.contains(&format!("peer={client}")) && line.contains("via=127.0.0.1:"),
        "{line}"
    );
    assert!(
        b.authd().log_text().contains("127.0.0.2"),
        "B's authd saw the real client"
    );

    // The script acts on B's next delivery.
    deliver(&b, "proxied script test");
    deliver(&b, "plain");
    let md = maildir(&b, "bob");
    assert_eq!(messages(&md, ".Filtered/new").len(), 1, "filed");
    assert_eq!(messages(&md, "new").len(), 1, "kept");

    // B's imapd goes away mid-session.
    b.daemon("imapd").signal(Signal::SIGKILL);
    assert_eq!(c.line(), "BYE (TRYLATER) \"Backend server went away.\"");
    assert_eq!(c.rest(), "", "closed after the BYE");
    b.daemon("imapd")
        .wait_exit(Duration::from_secs(10))
        .expect("it died");
    b.stop_daemon("imapd");

    // The backend is down: a login at A is a temporary failure; a wrong password is
    // still refused by A itself.
    let mut c = LineClient::new(TcpStream::connect(a_sieve).unwrap());
    response(&mut c);
    c.send(&format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
        plain(BOB, "wrong")
    ));
    assert_eq!(response(&mut c), ["NO \"Authentication failed.\""]);
    c.send(&format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
        plain(BOB, BOB_PW)
    ));
    let no = response(&mut c);
    assert_eq!(
        no,
        ["NO (TRYLATER) \"Backend server unavailable, try again later\""]
    );
}

/// Debian's `sieve-connect` through the front (STARTTLS at A, then A's proxy hop to B):
/// upload, activate, list, download; the script is in bob's home on B and files B's next
/// delivery.
#[test]
#[ignore = "needs sieve-connect (apt-get install sieve-connect)"]
fn sieve_connect_through_the_front() {
    let b = backend();
    let a = front(&b);
    let port = sieve_addr(&a).port().to_string();
    let script = a.dir().join("filter.sieve");
    std::fs::write(&script, FILTER).unwrap();
    let back = a.dir().join("back.sieve");
    let sc = |args: &[&str]| {
        let mut cmd = std::process::Command::new("sieve-connect");
        cmd.args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            BOB,
            "--passwordfd",
            "0",
            "--notlsverify",
        ])
        .args(args);
        let out = run_command(
            &mut cmd,
            Some(format!("{BOB_PW}\n").as_bytes()),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{args:?}: {}", describe_output(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    sc(&[
        "--upload",
        "--localsieve",
        &path(&script),
        "--remotesieve",
        "filter",
    ]);
    sc(&["--activate", "--remotesieve", "filter"]);
    let listing = sc(&["--list"]);
    assert!(
        listing.contains("filter") && listing.contains("ACTIVE"),
        "{listing}"
    );
    sc(&[
        "--download",
        "--remotesieve",
        "filter",
        "--localsieve",
        &path(&back),
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), FILTER);
    assert_eq!(
        std::fs::read_to_string(bob_home(&b).join("sieve/filter.sieve")).unwrap(),
        FILTER
    );
    assert!(!bob_home(&a).exists(), "nothing for bob on the front");
    deliver(&b, "proxied by sieve-connect");
    assert_eq!(
        messages(&maildir(&b, "bob"), ".Filtered/new").len(),
        1,
        "filed by the script put through the front"
    );
}

/// Debian's Dovecot with Pigeonhole's ManageSieve from a temp dir (bob with `BOB_PW` in a
/// passwd-file, with these extra passdb fields; `login_trusted_networks = 127.0.0.1/32`, so
/// it offers the front XCLIENT); killed when dropped.
struct Pigeonhole {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Pigeonhole {
    fn start(extra_fields: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("ph").tempdir().unwrap();
        let d = dir.path();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        nix::unistd::chown(
            &d.join("mail"),
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .unwrap();
        std::fs::write(
            d.join("users"),
            format!("{BOB}:{{PLAIN}}{BOB_PW}::::::{extra_fields}\n"),
        )
        .unwrap();
        let port = postern_e2e::free_port();
        let conf = format!(
            "protocols = sieve\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
             log_path = {d}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\n\
             login_trusted_networks = 127.0.0.1/32\nauth_mechanisms = plain login\n\
             mail_location = maildir:{d}/mail/%n/Maildir\nfirst_valid_uid = 0\n\
             passdb {{\n driver = passwd-file\n args = {d}/users\n}}\n\
             userdb {{\n driver = static\n args = uid=65534 gid=65534 home={d}/mail/%n\n}}\n\
             service managesieve-login {{\n inet_listener sieve {{\n port = {port}\n }}\n}}\n\
             plugin {{\n sieve = file:~/sieve;active=~/.dovecot.sieve\n}}\n",
            d = d.display()
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        let child = std::process::Command::new("dovecot")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .arg("-F")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dovecot");
        let ph = Self { child, dir, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "Dovecot's ManageSieve did not start: {}",
                ph.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ph
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    fn bob_home(&self) -> PathBuf {
        self.dir.path().join("mail/bob")
    }
}

impl Drop for Pigeonhole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts `FILTER` as "filter" and activates it over a logged-in session.
fn put_and_activate(c: &mut LineClient) {
    c.send(&format!(
        "PUTSCRIPT \"filter\" {{{}+}}\r\n{FILTER}\r\nSETACTIVE \"filter\"\r\n",
        FILTER.len()
    ));
    let put = response(c);
    assert!(status(&put).starts_with("OK"), "{put:?}");
    let active = response(c);
    assert!(status(&active).starts_with("OK"), "{active:?}");
}

/// Postern's front before a Dovecot/Pigeonhole backend: a login at A reaches Pigeonhole
/// (the capability list after login is Pigeonhole's), the script lands in bob's home
/// there, and Dovecot's log names the real client (127.0.0.2) from the front's XCLIENT.
#[test]
#[ignore = "needs Debian's dovecot-managesieved"]
fn postern_front_before_a_pigeonhole_backend() {
    let ph = Pigeonhole::start("");
    let a = Postern::builder()
        .hostname("front.example.org")
        .set("proxy.self", "front.example.org")
        .set("proxy.managesieve_port", i64::from(ph.port))
        .set("proxy.connect_timeout_secs", 3)
        .daemons(&["authd", "imapd"])
        .start();
    a.mailctl_ok(&["domain", "add", "example.org"]);
    a.add_user_on_host(BOB, BOB_PW, Some("127.0.0.1"));

    let mut c = LineClient::new(connect_from("127.0.0.2", sieve_addr(&a)));
    response(&mut c);
    c.send(&format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"\r\nCAPABILITY\r\n",
        plain(BOB, BOB_PW)
    ));
    let login = response(&mut c);
    assert!(status(&login).starts_with("OK"), "{login:?}\n{}", ph.log());
    let caps = response(&mut c);
    assert!(
        caps.iter()
            .any(|l| l.starts_with("\"IMPLEMENTATION\"") && l.contains("Pigeonhole")),
        "Pigeonhole's list, not Postern's: {caps:?}"
    );
    put_and_activate(&mut c);
    c.send("LOGOUT\r\n");
    assert!(status(&response(&mut c)).starts_with("OK"));
    assert_eq!(c.rest(), "", "no BYE after LOGOUT");
    assert_eq!(
        std::fs::read_to_string(ph.bob_home().join("sieve/filter.sieve")).unwrap(),
        FILTER
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let login_line = loop {
        let log = ph.log();
        if let Some(l) = log
            .lines()
            .find(|l| l.contains("managesieve-login: Info: Login: user=<bob@example.org>"))
        {
            break l.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no login line: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(login_line.contains("rip=127.0.0.2"), "{login_line}");
}

/// Dovecot's ManageSieve as the front, its passdb saying `proxy host=127.0.0.1 port=B`:
/// Pigeonhole's proxy sends XCLIENT (with its SESSION=, TTL=, … arguments) to Postern's B,
/// logs in, and the script lands in bob's home on B; B's log names the real client.
#[test]
#[ignore = "needs Debian's dovecot-managesieved"]
fn pigeonhole_front_before_a_postern_backend() {
    let b = backend();
    let b_sieve = sieve_addr(&b).port();
    let ph = Pigeonhole::start(&format!("proxy=y host=127.0.0.1 port={b_sieve}"));
    let mark = b.daemon("imapd").mark();
    let mut c = LineClient::new(connect_from(
        "127.0.0.2",
        SocketAddr::from(([127, 0, 0, 1], ph.port)),
    ));
    let client = c.local_addr();
    response(&mut c);
    c.send(&format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
        plain(BOB, BOB_PW)
    ));
    let login = response(&mut c);
    assert!(status(&login).starts_with("OK"), "{login:?}\n{}", ph.log());
    put_and_activate(&mut c);
    c.send("LOGOUT\r\n");
    response(&mut c);
    assert_eq!(
        std::fs::read_to_string(bob_home(&b).join("sieve/filter.sieve")).unwrap(),
        FILTER
    );
    let line = b
        .daemon("imapd")
        .wait_for_since(mark, "login", Duration::from_secs(10));
    assert!(
        line.contains(&format!("peer={client}")) && line.contains("via=127.0.0.1:"),
        "{line}"
    );
}
