//! imapd's connection limits through the shared accept loop (`postern_daemon::accept`):
//! the global limit, the not-logged-in limit and the per-address limit each turn a client
//! away with its protocol's own reply (IMAP `* BYE [UNAVAILABLE] …`, POP3
//! `-ERR [SYS/TEMP] …`), and a freed place is used again; `[imapd] trusted_networks` are
//! exempt from the per-address limit (as smtpd's). smtpd's are in `hardening_smtpd`.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use postern_e2e::{Postern, PosternBuilder};

fn start(builder: PosternBuilder) -> Postern {
    builder.daemons(&["authd", "imapd"]).start()
}

fn addr(pm: &Postern, door: &str) -> SocketAddr {
    pm.daemon("imapd")
        .listening_addrs_matching(&format!("({door})"))[0]
}

/// Connects and reads the first line; the connection stays open while the stream lives.
fn greet(a: SocketAddr) -> (String, BufReader<TcpStream>) {
    first_line(TcpStream::connect(a).expect("connect"))
}

/// As [`greet`], from the loopback address `from` (such as 127.0.0.2).
fn greet_from(from: IpAddr, a: SocketAddr) -> (String, BufReader<TcpStream>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(from, 0)).expect("bind");
        sock.connect(a).await.expect("connect")
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    first_line(s)
}

fn first_line(s: TcpStream) -> (String, BufReader<TcpStream>) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("greeting");
    (line.trim_end().to_owned(), r)
}

#[test]
fn imapd_per_address_limit_counts_imap_and_pop3_together() {
    let pm = start(
        Postern::builder()
            // 127.0.0.1, where the test connects from, is trusted by default (and exempt).
            .set("imapd.trusted_networks", Vec::<String>::new())
            .set("imapd.max_connections_per_ip", 2)
            .set("imapd.max_unauthenticated", 100)
            .set("imapd.max_connections", 100),
    );
    let (imap, pop3) = (addr(&pm, "imap"), addr(&pm, "pop3"));
    let (g1, c1) = greet(imap);
    let (g2, _c2) = greet(pop3);
    assert!(g1.starts_with("* OK"), "{g1}");
    assert!(g2.starts_with("+OK"), "{g2}");
    let (g3, _) = greet(imap);
    assert_eq!(
        g3,
        "* BYE [UNAVAILABLE] Too many connections from your address"
    );
    let (g4, _) = greet(pop3);
    assert_eq!(g4, "-ERR [SYS/TEMP] Too many connections, try again later");
    // A client that leaves gives its place back.
    drop(c1);
    let mut again = String::new();
    for _ in 0..50 {
        again = greet(imap).0;
        if again.starts_with("* OK") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(again.starts_with("* OK"), "{again}");
}

#[test]
fn imapd_global_and_not_logged_in_limits() {
    let pm = start(
        Postern::builder()
            .set("imapd.max_connections_per_ip", 100)
            .set("imapd.max_unauthenticated", 2)
            .set("imapd.max_connections", 100),
    );
    let imap = addr(&pm, "imap");
    let held: Vec<_> = (0..2).map(|_| greet(imap)).collect();
    assert!(held.iter().all(|(g, _)| g.starts_with("* OK")), "{held:?}");
    let (g, _) = greet(imap);
    assert_eq!(
        g,
        "* BYE [UNAVAILABLE] Too many connections, try again later"
    );
    drop(held);
    drop(pm);

    let pm = start(
        Postern::builder()
            .set("imapd.max_connections_per_ip", 100)
            .set("imapd.max_unauthenticated", 100)
            .set("imapd.max_connections", 2),
    );
    let (imap, pop3) = (addr(&pm, "imap"), addr(&pm, "pop3"));
    let _a = greet(imap);
    let _b = greet(pop3);
    let (g, _) = greet(pop3);
    assert_eq!(g, "-ERR [SYS/TEMP] Too many connections, try again later");
    let (g, _) = greet(imap);
    assert_eq!(
        g,
        "* BYE [UNAVAILABLE] Too many connections, try again later"
    );
}

/// Regression (issue 11 §6, imapd's side): smtpd exempted its trusted networks from the
/// per-address limit, imapd did not, so a webmail on localhost holding more than
/// `max_connections_per_ip` sessions was told `* BYE … from your address`. Now
/// `[imapd] trusted_networks` are exempt too; others are still limited.
#[test]
fn imapd_trusted_networks_are_exempt_from_the_per_address_limit() {
    let pm = start(
        Postern::builder()
            .set("imapd.trusted_networks", vec!["127.0.0.1/32".to_owned()])
            .set("imapd.max_connections_per_ip", 2)
            .set("imapd.max_unauthenticated", 100)
            .set("imapd.max_connections", 100),
    );
    let (imap, pop3) = (addr(&pm, "imap"), addr(&pm, "pop3"));
    let trusted: Vec<_> = (0..6)
        .map(|i| greet(if i % 2 == 0 { imap } else { pop3 }))
        .collect();
    let lines: Vec<_> = trusted.iter().map(|(g, _)| g.as_str()).collect();
    assert!(
        lines
            .iter()
            .all(|g| g.starts_with("* OK") || g.starts_with("+OK")),
        "{lines:?}"
    );
    let stranger: IpAddr = "127.0.0.2".parse().unwrap();
    let (s1, _k1) = greet_from(stranger, imap);
    let (s2, _k2) = greet_from(stranger, pop3);
    assert!(s1.starts_with("* OK"), "{s1}");
    assert!(s2.starts_with("+OK"), "{s2}");
    let (s3, _) = greet_from(stranger, imap);
    assert_eq!(
        s3,
        "* BYE [UNAVAILABLE] Too many connections from your address"
    );
}
