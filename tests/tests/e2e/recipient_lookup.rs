//! authd's `recipient` socketmap map: smtpd's `aliases`-then-`mailboxes` question answered in
//! one round trip (issue 17), with the same answers and the same cache invalidation as the two
//! maps it stands for; smtpd accepts and refuses recipients through it as before.

use postern_auth_proto::client::SocketmapClient;
use postern_auth_proto::socketmap::Reply;
use postern_e2e::{LineClient, Postern};

fn lookup(pm: &Postern, map: &str, key: &str) -> Reply {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut c = SocketmapClient::connect(pm.socket("socketmap"))
                .await
                .expect("connect socketmap");
            c.lookup(map, key).await.expect("socketmap answer")
        })
}

#[test]
fn one_lookup_answers_alias_or_mailbox_and_follows_mailctl_at_once() {
    let pm = Postern::builder()
        .set("authd.cache_ttl_secs", 3600)
        .set("authd.failure_delay_ms", 0)
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let out = pm.mailctl_stdin(&["user", "add", "bob@example.org"], "bob-password-1\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        lookup(&pm, "recipient", "bob@example.org"),
        Reply::Ok("mailbox".into())
    );
    assert_eq!(
        lookup(&pm, "recipient", "Bob@Example.org"),
        Reply::Ok("mailbox".into())
    );
    assert_eq!(
        lookup(&pm, "recipient", "nobody@example.org"),
        Reply::NotFound
    );
    // Cached as not found, yet an alias added with mailctl is seen by the next lookup.
    assert_eq!(
        lookup(&pm, "recipient", "team@example.org"),
        Reply::NotFound
    );
    pm.mailctl_ok(&["alias", "add", "team@example.org", "bob@example.org"]);
    assert_eq!(
        lookup(&pm, "recipient", "team@example.org"),
        Reply::Ok("alias bob@example.org".into())
    );
    // The same answers as the two maps it stands for.
    assert!(
        matches!(lookup(&pm, "aliases", "team@example.org"), Reply::Ok(v) if v == "bob@example.org")
    );
    assert!(matches!(
        lookup(&pm, "mailboxes", "bob@example.org"),
        Reply::Ok(_)
    ));
    // An alias loop is a permanent refusal, as on `aliases`.
    pm.mailctl_ok(&["alias", "add", "loop1@example.org", "loop2@example.org"]);
    pm.mailctl_ok(&["alias", "add", "loop2@example.org", "loop1@example.org"]);
    let looped = lookup(&pm, "recipient", "loop1@example.org");
    assert_eq!(looped, lookup(&pm, "aliases", "loop1@example.org"));
    assert!(matches!(looped, Reply::Perm(_)), "{looped:?}");
    pm.mailctl_ok(&["alias", "remove", "team@example.org"]);
    assert_eq!(
        lookup(&pm, "recipient", "team@example.org"),
        Reply::NotFound
    );

    // smtpd asks this map: a mailbox and an alias accepted, a stranger refused, the loop 550.
    let a = pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let mut c = LineClient::connect(a);
    assert!(c.smtp("").starts_with("220"));
    assert!(c.smtp("EHLO client.example.net").starts_with("250"));
    assert!(c.smtp("MAIL FROM:<someone@example.net>").starts_with("250"));
    assert!(c.smtp("RCPT TO:<bob@example.org>").starts_with("250"));
    let stranger = c.smtp("RCPT TO:<nobody@example.org>");
    assert!(stranger.starts_with("550 5.1.1"), "{stranger}");
    let looped = c.smtp("RCPT TO:<loop1@example.org>");
    assert!(looped.starts_with("550 5.4.6"), "{looped}");
    pm.mailctl_ok(&["alias", "add", "team@example.org", "bob@example.org"]);
    assert!(c.smtp("RCPT TO:<team@example.org>").starts_with("250"));
    assert!(c.smtp("QUIT").starts_with("221"));
}
