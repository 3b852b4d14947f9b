//! DSNs built from hostile input (the original message, remote replies, ORCPT/ENVID) take
//! linear work: each input is large enough that quadratic handling would run for minutes.

use postern_dsn::{Action, RecipientReport, Report, Ret, build};

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let r = f();
    eprintln!("{what}: {:?}", t.elapsed());
    r
}

fn rcpt(i: usize, diagnostic: String) -> RecipientReport {
    RecipientReport {
        final_recipient: format!("u{i}@x.example"),
        original_recipient: Some(format!("rfc822;u{i}@x.example")),
        action: Action::Failed,
        status: (5, 1, 1),
        remote_mta: Some("mx.x.example".into()),
        diagnostic: Some(diagnostic),
        last_attempt: Some(1_704_110_400),
        will_retry_until: None,
    }
}

fn report<'a>(original: &'a [u8], recipients: Vec<RecipientReport>, ret: Ret) -> Report<'a> {
    Report {
        reporting_mta: "mail.example.org",
        postmaster: "MAILER-DAEMON@mail.example.org",
        to: "alice@example.org",
        envid: Some("ENV"),
        arrival: 1_704_103_200,
        recipients,
        original,
        ret,
        max_original: 8 << 20,
    }
}

#[test]
fn hostile_originals() {
    let mb = 2 << 20;
    let originals: Vec<(&str, Vec<u8>)> = vec![
        (
            "many fields",
            format!("{}\r\nbody\r\n", "X-A: b\r\n".repeat(mb / 8)).into_bytes(),
        ),
        (
            "huge subject of blobs and encoded words",
            format!(
                "Subject: {}\r\nMessage-ID: <{}@x>\r\n\r\nbody\r\n",
                "[] =?utf-8?q?a?= ".repeat(mb / 17),
                "i".repeat(mb / 4)
            )
            .into_bytes(),
        ),
        (
            "deep folding",
            format!("Subject: a{}\r\n\r\nb\r\n", "\r\n b".repeat(mb / 4)).into_bytes(),
        ),
        ("bare CRs", "\r".repeat(mb).into_bytes()),
        (
            "boundary-like body",
            format!("Subject: x\r\n\r\n{}", "--=_postern-dsn_".repeat(mb / 16)).into_bytes(),
        ),
        (
            "comments and quotes",
            format!(
                "From: {}\r\nTo: {}\r\n\r\nb\r\n",
                "(".repeat(mb / 2),
                "\"a".repeat(mb / 4)
            )
            .into_bytes(),
        ),
    ];
    for (name, original) in &originals {
        for ret in [Ret::Full, Ret::Headers] {
            let dsn = timed(name, || {
                build(&report(original, vec![rcpt(0, "550 no".into())], ret))
            });
            let dsn = dsn.expect("a DSN");
            assert!(dsn.starts_with(b"From:") || dsn.len() > 100);
        }
    }
}

#[test]
fn hostile_diagnostics_and_many_recipients() {
    let long = format!("550 5.1.1 {}", "word ".repeat(400_000));
    let dsn = timed("2 MB diagnostic", || {
        build(&report(
            b"Subject: x\r\n\r\nb\r\n",
            vec![rcpt(0, long)],
            Ret::Headers,
        ))
    })
    .expect("a DSN");
    assert!(dsn.len() > 1 << 20);
    let nospace = format!("550 {}", "x".repeat(2 << 20));
    timed("2 MB unbroken diagnostic", || {
        build(&report(
            b"Subject: x\r\n\r\nb\r\n",
            vec![rcpt(0, nospace)],
            Ret::Headers,
        ))
    })
    .expect("a DSN");
    let many: Vec<RecipientReport> = (0..20_000)
        .map(|i| rcpt(i, format!("550 5.1.1 <u{i}@x.example> unknown\r\n550 more")))
        .collect();
    timed("20000 recipients", || {
        build(&report(b"Subject: x\r\n\r\nb\r\n", many, Ret::Headers))
    })
    .expect("a DSN");
}
