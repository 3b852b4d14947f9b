//! Plans from real-looking configurations: seed-style MySQL virtual mail, the classic
//! `postfix_accounts` schema, passwd-file with hash: tables, and Debian's defaults.

use std::path::Path;

use super::super::render::{self, OutPaths};
use super::*;

fn inputs(main_cf: &str, master: &str, dovecot_text: &str, files: &[(&str, &str)]) -> Inputs {
    let raw = postfix::parse_params(main_cf);
    let params = raw
        .iter()
        .map(|(k, v)| (k.clone(), postfix::expand(v, &raw)))
        .collect();
    let mut i = Inputs {
        postfix: params,
        postfix_explicit: raw.keys().cloned().collect(),
        master: postfix::master_services(master),
        dovecot: dovecot::parse(dovecot_text, &mut |_| Vec::new()),
        ..Inputs::default()
    };
    for (p, t) in files {
        i.files.insert((*p).to_owned(), (*t).to_owned());
    }
    i.uid_of.insert("vmail".into(), 5000);
    i.gid_of.insert("vmail".into(), 5000);
    i
}

/// The config text must load with Postern's own loader.
fn loads(plan: &Plan) -> postern_config::Config {
    let out = OutPaths {
        db_password_file: Some("/etc/postern/db-password".into()),
        relay_password_file: Some("/etc/postern/relay.password".into()),
        ..OutPaths::default()
    };
    let text = render::config_toml(plan, &out, "test");
    postern_config::Config::parse(&text, Path::new("/etc/postern"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const SEED_MAIN_CF: &str = "\
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6
smtpd_tls_cert_file=/etc/letsencrypt/live/mail.example.com/fullchain.pem
smtpd_tls_key_file=/etc/letsencrypt/live/mail.example.com/privkey.pem
smtpd_tls_security_level=may
smtp_tls_CApath=/etc/ssl/certs
smtp_tls_security_level=may
smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = yes
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
smtpd_recipient_restrictions =
    permit_sasl_authenticated,
    permit_mynetworks,
    reject_unauth_destination,
    reject_unknown_helo_hostname,
    reject_rbl_client zen.spamhaus.org,
    check_sender_access hash:/etc/postfix/sender_access,
    check_client_access cidr:/etc/postfix/client_access.cidr
myhostname = mail.example.com
mydomain = example.com
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases
myorigin = /etc/mailname
mydestination = localhost
relayhost =
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = all
inet_protocols = all
virtual_transport = lmtp:unix:private/dovecot-lmtp
virtual_mailbox_domains = mysql:/etc/postfix/mysql-virtual-mailbox-domains.cf
virtual_mailbox_maps = mysql:/etc/postfix/mysql-virtual-mailbox-maps.cf
virtual_alias_maps = mysql:/etc/postfix/mysql-virtual-alias-maps.cf,mysql:/etc/postfix/mysql-virtual-email2email.cf
message_size_limit = 52428800
disable_vrfy_command = yes
";

const SEED_DOVECOT: &str = "\
# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf
auth_mechanisms = plain login
disable_plaintext_auth = yes
first_valid_uid = 1000
mail_location = maildir:/var/mail/vhosts/%d/%n
mail_privileged_group = mail
namespace inbox {
  inbox = yes
  location =
  mailbox Drafts {
    special_use = \\Drafts
  }
  prefix =
}
passdb {
  args = /etc/dovecot/dovecot-sql.conf.ext
  driver = sql
}
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=1G
  sieve = file:~/sieve;active=~/.dovecot.sieve
}
protocols = imap lmtp
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    group = postfix
    mode = 0600
    user = postfix
  }
}
ssl = required
ssl_cert = </etc/letsencrypt/live/mail.example.com/fullchain.pem
ssl_key = </etc/letsencrypt/live/mail.example.com/privkey.pem
userdb {
  args = uid=vmail gid=vmail home=/var/mail/vhosts/%d/%n
  driver = static
}
";

const SEED_SQL: &str = "\
driver = mysql
connect = host=127.0.0.1 dbname=mailserver user=mailuser password=mailuserpass
default_pass_scheme = SHA512-CRYPT
password_query = SELECT email as user, password FROM virtual_users WHERE email='%u';
";

fn seed_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("/etc/dovecot/dovecot-sql.conf.ext", SEED_SQL),
        (
            "/etc/postfix/mysql-virtual-mailbox-domains.cf",
            "user = mailuser\npassword = mailuserpass\nhosts = 127.0.0.1\ndbname = mailserver\nquery = SELECT 1 FROM virtual_domains WHERE name='%s'\n",
        ),
        (
            "/etc/postfix/mysql-virtual-mailbox-maps.cf",
            "user = mailuser\npassword = mailuserpass\nhosts = 127.0.0.1\ndbname = mailserver\nquery = SELECT 1 FROM virtual_users WHERE email='%s'\n",
        ),
        (
            "/etc/postfix/mysql-virtual-alias-maps.cf",
            "user = mailuser\npassword = mailuserpass\nhosts = 127.0.0.1\ndbname = mailserver\nquery = SELECT destination FROM virtual_aliases WHERE source='%s'\n",
        ),
        (
            "/etc/postfix/mysql-virtual-email2email.cf",
            "user = mailuser\npassword = mailuserpass\nhosts = 127.0.0.1\ndbname = mailserver\nquery = SELECT email FROM virtual_users WHERE email='%s'\n",
        ),
        (
            "/etc/postfix/sender_access",
            "spammer.example REJECT no thanks\nfriend@partner.example OK\nnoisy@ 550 go away\n",
        ),
        (
            "/etc/postfix/client_access.cidr",
            "192.0.2.0/24 REJECT bad network\n198.51.100.7 DISCARD\n",
        ),
    ]
}

#[test]
fn seed_style_mysql_setup() {
    let i = inputs(SEED_MAIN_CF, "", SEED_DOVECOT, &seed_files());
    let files = referenced_files(&i);
    assert!(files.contains(&"/etc/dovecot/dovecot-sql.conf.ext".to_owned()));
    assert!(files.contains(&"/etc/postfix/mysql-virtual-alias-maps.cf".to_owned()));
    assert!(files.contains(&"/etc/postfix/sender_access".to_owned()));
    let plan = build(&i);
    assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
    assert_eq!(plan.hostname, "mail.example.com");
    assert_eq!(
        plan.trusted_networks,
        ["127.0.0.0/8", "::ffff:127.0.0.0/104", "::1/128"]
    );
    assert_eq!(
        plan.tls.as_ref().unwrap().cert,
        "/etc/letsencrypt/live/mail.example.com/fullchain.pem"
    );
    let DatabasePlan::Sql {
        url,
        password,
        queries,
    } = &plan.database
    else {
        panic!("{:?}", plan.database);
    };
    assert_eq!(url, "mysql://mailuser@127.0.0.1/mailserver");
    assert_eq!(password.as_deref(), Some("mailuserpass"));
    assert_eq!(
        queries.account.as_deref(),
        Some("SELECT email, password, 1073741824, 1 FROM virtual_users WHERE email='%u'")
    );
    assert_eq!(
        queries.domain.as_deref(),
        Some("SELECT 1 FROM virtual_domains WHERE name='%u'")
    );
    assert_eq!(
        queries.alias.as_deref(),
        Some("SELECT destination FROM virtual_aliases WHERE source='%u'")
    );
    assert_eq!(
        queries.list.as_deref(),
        Some("SELECT email FROM virtual_users")
    );
    assert!(
        plan.not_carried
            .iter()
            .any(|r| r.value.contains("email2email") && r.new.contains("one query")),
        "{:?}",
        plan.not_carried
    );
    assert_eq!(plan.default_scheme.as_deref(), Some("SHA512-CRYPT"));
    assert_eq!(
        plan.userdb,
        UserdbPlan {
            uid: Some(5000),
            gid: Some(5000),
            home: Some("/var/mail/vhosts/%d/%n".into()),
            mail: Some("maildir:/var/mail/vhosts/%d/%n".into()),
            mail_root: Some("/var/mail/vhosts".into()),
        }
    );
    assert_eq!(plan.quota_bytes, Some(1 << 30));
    // ~/.dovecot.sieve is Postern's default.
    assert_eq!(plan.sieve_script, None);
    assert_eq!(plan.smtpd.max_message_size, Some(52_428_800));
    assert_eq!(plan.recipient_delimiter.as_deref(), Some("+"));
    assert_eq!(plan.checks.dnsbl_zones, ["zen.spamhaus.org"]);
    assert_eq!(plan.checks.dnsbl.as_deref(), Some("reject"));
    assert_eq!(plan.checks.helo.as_deref(), Some("reject"));
    assert_eq!(plan.smtpd.outbound_tls.as_deref(), Some("may"));
    let access = &plan.smtpd.access;
    assert_eq!(access.len(), 4, "{access:?}");
    assert_eq!(access[0].sender.as_deref(), Some("spammer.example"));
    assert_eq!(access[0].action, "REJECT");
    assert_eq!(access[0].text.as_deref(), Some("no thanks"));
    assert_eq!(access[1].action, "OK");
    assert_eq!(access[2].client.as_deref(), Some("192.0.2.0/24"));
    assert_eq!(access[3].client.as_deref(), Some("198.51.100.7/32"));
    assert!(plan.not_carried.iter().any(|r| r.value == "noisy@"));
    // Housekeeping and unknown settings are listed with why.
    let why = |name: &str| {
        plan.not_carried
            .iter()
            .find(|r| r.old == format!("postfix: {name}"))
            .map(|r| r.new.clone())
    };
    assert!(why("biff").unwrap().contains("housekeeping"));
    assert!(
        why("disable_vrfy_command")
            .unwrap()
            .contains("no equivalent")
    );
    assert!(
        why("mydestination")
            .unwrap()
            .contains("local Unix accounts")
    );
    assert!(
        plan.not_carried
            .iter()
            .any(|r| r.old == "dovecot: service lmtp {…}")
    );
    // The password never reaches the JSON.
    let json = serde_json::to_string(&plan).unwrap();
    assert!(!json.contains("mailuserpass"), "{json}");

    let c = loads(&plan);
    assert_eq!(c.hostname, "mail.example.com");
    assert_eq!(c.database.url, "mysql://mailuser@127.0.0.1/mailserver");
    assert_eq!(c.database.queries.alias, queries.alias);
    assert_eq!(c.authd.userdb.uid, Some(5000));
    assert_eq!(c.smtpd.trusted_networks.len(), 3);
    assert_eq!(c.smtpd.access.len(), 4);
    assert_eq!(c.lmtp.max_message_size, 52_428_800);
    assert_eq!(c.checks.dnsbl_zones, ["zen.spamhaus.org"]);
    assert_eq!(
        c.database.password_file.as_deref(),
        Some(Path::new("/etc/postern/db-password"))
    );
    // The table names every row.
    let t = render::table(&plan);
    assert!(
        t.contains("| postfix: myhostname | mail.example.com | hostname |"),
        "{t}"
    );
    assert!(t.contains("## Not carried over"));
}

#[test]
fn postfix_accounts_schema_with_encrypt() {
    // The classic tutorial's files, read from dovecot.conf with its includes.
    let conf = "protocols = imap pop3 lmtp\n!include conf.d/*.conf\n";
    let inc = |p: &str| -> Vec<String> {
        assert_eq!(p, "conf.d/*.conf");
        vec![
            "auth_mechanisms = plain login\n!include auth-sql.conf.ext\n".into(),
            "mail_location = maildir:/var/vmail/%d/%n/Maildir\nmail_uid = 5000\nmail_gid = 5000\nfirst_valid_uid = 5000\n".into(),
        ]
    };
    let mut dv = dovecot::parse(conf, &mut |p| {
        if p == "auth-sql.conf.ext" {
            vec!["passdb {\n  driver = sql\n  args = /etc/dovecot/dovecot-sql.conf.ext\n}\nuserdb {\n  driver = prefetch\n}\nuserdb {\n  driver = sql\n  args = /etc/dovecot/dovecot-sql.conf.ext\n}\n".into()]
        } else {
            inc(p)
        }
    });
    dv.settings.push(("ssl".into(), "no".into()));
    let sql = "driver = mysql\n\
        connect = \"host=/run/mysqld/mysqld.sock dbname=postfix_accounts user=postfix_admin password=s3cret\"\n\
        default_pass_scheme = CRYPT\n\
        password_query = SELECT Email as User, password FROM accounts_table WHERE Email='%u';\n\
        user_query = SELECT '5000' as uid, '5000' as gid, '/var/vmail/%d/%n' as home FROM accounts_table WHERE Email='%u';\n";
    let main_cf = "myhostname = mx.legacy.test\nmynetworks = 127.0.0.0/8\n\
        virtual_mailbox_domains = proxy:mysql:/etc/postfix/mysql_virtual_domains_maps.cf\n\
        virtual_mailbox_maps = proxy:mysql:/etc/postfix/mysql_virtual_mailbox_maps.cf\n\
        virtual_alias_maps = proxy:mysql:/etc/postfix/mysql_virtual_alias_maps.cf\n";
    let map = |q: &str| {
        format!(
            "user = postfix_admin\npassword = s3cret\nhosts = unix:/run/mysqld/mysqld.sock\ndbname = postfix_accounts\nquery = {q}\n"
        )
    };
    let domains = map("SELECT 1 FROM domains_table WHERE DomainName='%s'");
    let aliases = map("SELECT Destination FROM alias_table WHERE Source='%s'");
    let mut i = inputs(
        main_cf,
        "",
        "",
        &[
            ("/etc/dovecot/dovecot-sql.conf.ext", sql),
            ("/etc/postfix/mysql_virtual_domains_maps.cf", &domains),
            ("/etc/postfix/mysql_virtual_alias_maps.cf", &aliases),
        ],
    );
    i.dovecot = dv;
    let plan = build(&i);
    assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
    let DatabasePlan::Sql { url, queries, .. } = &plan.database else {
        panic!("{:?}", plan.database);
    };
    assert_eq!(
        url,
        "mysql://postfix_admin@localhost/postfix_accounts?socket=/run/mysqld/mysqld.sock"
    );
    assert_eq!(
        queries.account.as_deref(),
        Some("SELECT Email, password, 0, 1 FROM accounts_table WHERE Email='%u'")
    );
    assert_eq!(
        queries.list.as_deref(),
        Some("SELECT Email FROM accounts_table")
    );
    assert_eq!(
        queries.domain.as_deref(),
        Some("SELECT 1 FROM domains_table WHERE DomainName='%u'")
    );
    assert_eq!(plan.default_scheme.as_deref(), Some("CRYPT"));
    assert_eq!(plan.userdb.uid, Some(5000));
    assert_eq!(plan.userdb.home.as_deref(), Some("/var/vmail/%d/%n"));
    assert_eq!(
        plan.userdb.mail.as_deref(),
        Some("maildir:/var/vmail/%d/%n/Maildir")
    );
    let c = loads(&plan);
    assert_eq!(c.passwords.default_scheme, "CRYPT");
    assert_eq!(c.mail_template(), "maildir:/var/vmail/%d/%n/Maildir");
}

const FILE_MAIN_CF: &str = "\
myhostname = mail.example.org
mydomain = example.org
mynetworks = 127.0.0.0/8, [::1]/128, 192.0.2.0/24
virtual_mailbox_domains = example.org, example.net
virtual_mailbox_maps = hash:/etc/postfix/vmailbox
virtual_alias_maps = hash:/etc/postfix/virtual
virtual_transport = lmtp:unix:private/dovecot-lmtp
relayhost = [smtp.provider.example]:587
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = hash:/etc/postfix/sasl_passwd
smtp_tls_security_level = encrypt
transport_maps = hash:/etc/postfix/transport
postscreen_dnsbl_sites = zen.spamhaus.org*3, b.barracudacentral.org=127.0.0.2*2
postscreen_dnsbl_action = enforce
smtpd_tls_chain_files = /etc/postfix/key.pem, /etc/postfix/cert.pem
";

const FILE_MASTER: &str = "\
smtp      inet  n       -       y       -       1       postscreen
smtpd     pass  -       -       y       -       -       smtpd
dnsblog   unix  -       -       y       -       0       dnsblog
";

const FILE_DOVECOT: &str = "\
mail_location = maildir:~/Maildir
passdb {
  args = scheme=SHA512-CRYPT username_format=%u /etc/dovecot/users
  driver = passwd-file
}
plugin {
  sieve = ~/.dovecot.sieve
  sieve_dir = ~/sieve
  sieve_before = /var/lib/dovecot/sieve/spam.sieve
}
userdb {
  args = username_format=%u /etc/dovecot/users
  driver = passwd-file
}
";

const USERS: &str = "\
alice@example.org:{SHA512-CRYPT}$6$saltsalt$r.Dq.Z//uVDl/5XNLMpy4BgsTFogINFCGK4jyn0UIwq/9YSxkHMWA5gT5AX79kqvW6DJeHuzeXpGyPbWSrZWn.:5000:5000::/var/vmail/example.org/alice::userdb_quota_rule=*:storage=2G
bob@example.net:abNrejmOmcv6w:5000:5000::/var/vmail/example.net/bob::
root:x:0:0::/root::
";

#[test]
fn passwd_file_and_hash_tables() {
    let i = inputs(
        FILE_MAIN_CF,
        FILE_MASTER,
        FILE_DOVECOT,
        &[
            ("/etc/dovecot/users", USERS),
            (
                "/etc/postfix/virtual",
                "postmaster@example.org alice@example.org\nall@example.org alice@example.org, bob@example.net\n\
                 alice@example.org alice@example.org\n@example.net bob@example.net\nlocaluser someone\n",
            ),
            (
                "/etc/postfix/sasl_passwd",
                "[smtp.provider.example]:587 relayuser:relaypass\n",
            ),
            (
                "/etc/postfix/transport",
                "lists.example.org smtp:[192.0.2.25]:25\nlegacy.example.org lmtp:unix:/run/dovecot/lmtp\n.sub.example.org smtp:x\nold.example.org error:gone\n",
            ),
        ],
    );
    let mut i = i;
    i.opendkim = Some(parse_opendkim(
        "Syslog yes\nKeyTable refile:/etc/opendkim/key.table\nSigningTable refile:/etc/opendkim/signing.table\n",
    ));
    i.files.insert(
        "/etc/opendkim/key.table".into(),
        "mail._domainkey.example.org example.org:mail:/etc/opendkim/keys/example.org/mail.private\n\
         other._domainkey.example.org example.org:other:/etc/opendkim/keys/other.private\n"
            .into(),
    );
    i.files.insert(
        "/etc/opendkim/signing.table".into(),
        "*@example.org mail._domainkey.example.org\n*@sub.example.org other._domainkey.example.org\n".into(),
    );
    let plan = build(&i);
    assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
    let DatabasePlan::Import(imp) = &plan.database else {
        panic!("{:?}", plan.database);
    };
    assert_eq!(imp.domains, ["example.net", "example.org"]);
    assert_eq!(imp.accounts.len(), 2);
    assert_eq!(imp.accounts[0].address, "alice@example.org");
    assert_eq!(imp.accounts[0].quota_bytes, 2 << 30);
    assert_eq!(imp.accounts[0].scheme, "SHA512-CRYPT");
    // No prefix: the passdb's scheme is put in front.
    assert_eq!(imp.accounts[1].hash, "{SHA512-CRYPT}abNrejmOmcv6w");
    assert!(plan.not_carried.iter().any(|r| r.value == "root"));
    assert_eq!(
        imp.aliases,
        [
            (
                "postmaster@example.org".to_owned(),
                vec!["alice@example.org".to_owned()]
            ),
            (
                "all@example.org".to_owned(),
                vec!["alice@example.org".to_owned(), "bob@example.net".to_owned()]
            ),
            (
                "@example.net".to_owned(),
                vec!["bob@example.net".to_owned()]
            ),
        ]
    );
    assert!(plan.not_carried.iter().any(|r| r.value == "localuser"));
    assert_eq!(plan.userdb.home.as_deref(), Some("/var/vmail/%d/%n"));
    assert_eq!(
        plan.userdb.mail.as_deref(),
        Some("maildir:/var/vmail/%d/%n/Maildir")
    );
    assert_eq!(plan.userdb.uid, Some(5000));
    assert_eq!(plan.trusted_networks.len(), 3);
    assert_eq!(
        plan.tls,
        Some(TlsPlan {
            cert: "/etc/postfix/cert.pem".into(),
            key: "/etc/postfix/key.pem".into()
        })
    );
    assert_eq!(
        plan.smtpd.relayhost.as_deref(),
        Some("smtp.provider.example:587")
    );
    assert_eq!(plan.smtpd.relayhost_auth_user.as_deref(), Some("relayuser"));
    assert_eq!(plan.smtpd.relayhost_password.as_deref(), Some("relaypass"));
    assert_eq!(plan.smtpd.relayhost_tls.as_deref(), Some("encrypt"));
    assert_eq!(plan.smtpd.transports.len(), 2);
    assert_eq!(
        plan.smtpd.transports["lists.example.org"],
        "smtp:[192.0.2.25]:25"
    );
    assert_eq!(
        plan.smtpd.transports["legacy.example.org"],
        "lmtp:unix:/run/dovecot/lmtp"
    );
    assert_eq!(
        plan.checks.dnsbl_zones,
        ["zen.spamhaus.org", "b.barracudacentral.org"]
    );
    assert_eq!(plan.checks.dnsbl.as_deref(), Some("reject"));
    assert!(
        plan.not_carried
            .iter()
            .any(|r| r.old == "dovecot: sieve_before")
    );
    assert_eq!(
        plan.dkim,
        [DkimPlan {
            domain: "example.org".into(),
            selector: "mail".into(),
            key_file: "/etc/opendkim/keys/example.org/mail.private".into()
        }]
    );
    assert!(
        plan.not_carried
            .iter()
            .any(|r| r.value.starts_with("*@sub.example.org"))
    );
    let json = serde_json::to_string(&plan).unwrap();
    assert!(
        !json.contains("relaypass") && !json.contains("abNrejmOmcv6w"),
        "{json}"
    );
    let c = loads(&plan);
    assert_eq!(c.smtpd.transports.len(), 2);
    assert_eq!(c.smtpd.relayhost_auth_user.as_deref(), Some("relayuser"));
    assert_eq!(c.home_template(), "/var/vmail/%d/%n");
}

#[test]
fn debian_defaults_have_blockers() {
    let main_cf = "\
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6
smtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem
smtpd_tls_key_file=/etc/ssl/private/ssl-cert-snakeoil.key
smtpd_tls_security_level=may
smtp_tls_CApath=/etc/ssl/certs
smtp_tls_security_level=may
smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
myhostname = debian.example
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases
myorigin = /etc/mailname
mydestination = $myhostname, debian.example, localhost
relayhost =
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = all
inet_protocols = all
";
    let dv = "\
mail_location = mbox:~/mail:INBOX=/var/mail/%u
mail_privileged_group = mail
passdb {
  driver = pam
}
protocols = \" imap pop3\"
ssl_cert = </etc/dovecot/private/dovecot.pem
ssl_key = </etc/dovecot/private/dovecot.key
userdb {
  driver = passwd
}
";
    let plan = build(&inputs(main_cf, "", dv, &[]));
    assert!(
        plan.blockers
            .iter()
            .any(|b| b.contains("no sql or passwd-file passdb")),
        "{:?}",
        plan.blockers
    );
    assert!(
        plan.blockers.iter().any(|b| b.contains("Maildir only")),
        "{:?}",
        plan.blockers
    );
    assert!(
        plan.not_carried
            .iter()
            .any(|r| r.value.contains("driver = pam"))
    );
    assert!(
        plan.not_carried
            .iter()
            .any(|r| r.old == "dovecot: ssl_cert/ssl_key" && r.new.contains("Postfix's is used"))
    );
    // Still a config that loads (hostname, TLS, networks).
    let c = loads(&plan);
    assert_eq!(c.hostname, "debian.example");
    assert!(c.tls.is_some());
}

#[test]
fn password_query_translation() {
    let (q, user) = account_query(
        "SELECT username AS user, password FROM mailbox WHERE username = '%u' AND active = '1'",
        Some(0),
    )
    .unwrap();
    assert_eq!(
        q,
        "SELECT username, password, 0, 1 FROM mailbox WHERE username = '%u' AND active = '1'"
    );
    assert_eq!(user.as_deref(), Some("username"));
    // Without a user column the key itself is the address (NULL falls back to it).
    let (q, _) = account_query("SELECT password FROM users WHERE email = '%{user}'", None).unwrap();
    assert_eq!(
        q,
        "SELECT NULL, password, 0, 1 FROM users WHERE email = '%u'"
    );
    assert!(
        account_query(
            "SELECT username, domain, password FROM users WHERE email='%u'",
            None
        )
        .is_err()
    );
    assert!(account_query("SELECT user FROM users WHERE email='%u'", None).is_err());
    assert!(account_query("SELECT password FROM users WHERE ip='%r'", None).is_err());
    assert_eq!(
        list_query("SELECT username AS user FROM mailbox WHERE active = '1'").unwrap(),
        "SELECT username FROM mailbox WHERE active = '1'"
    );
    assert_eq!(
        connect_url(
            "pgsql",
            "host=localhost dbname=mail user=dovecot password=x port=5433"
        )
        .unwrap(),
        (
            "postgres://dovecot@localhost:5433/mail".to_owned(),
            Some("x".to_owned())
        )
    );
    assert!(connect_url("ldap", "x").is_err());
    assert_eq!(octet_prefix("192.168.1").as_deref(), Some("192.168.1.0/24"));
    assert_eq!(octet_prefix("example.com"), None);
    assert_eq!(
        transport("lmtp:inet:127.0.0.1:24").as_deref(),
        Some("lmtp:[127.0.0.1]:24")
    );
    assert_eq!(transport("error:x"), None);
}

#[test]
fn password_update_translation() {
    // PostfixAdmin's Dovecot SQL config.
    assert_eq!(
        update_query(
            "SELECT username AS user,password FROM mailbox WHERE username = '%u' AND active='1'"
        )
        .unwrap(),
        "UPDATE mailbox SET password = %p WHERE username = '%u' AND active='1'"
    );
    // The workaround.org / postfix_accounts shape, with %{user} and a trailing semicolon.
    assert_eq!(
        update_query("SELECT email as user, password FROM virtual_users WHERE email='%{user}';")
            .unwrap(),
        "UPDATE virtual_users SET password = %p WHERE email='%u'"
    );
    assert_eq!(
        update_query(
            "SELECT Email as User, password FROM postfix_accounts.accounts_table WHERE Email='%u'"
        )
        .unwrap(),
        "UPDATE postfix_accounts.accounts_table SET password = %p WHERE Email='%u'"
    );
    // Local part and domain together single the user out too.
    assert_eq!(
        update_query(
            "SELECT CONCAT(username, '@', domain) AS user, password FROM accounts WHERE username = '%n' AND domain = '%d' AND enabled = true"
        )
        .unwrap(),
        "UPDATE accounts SET password = %p WHERE username = '%n' AND domain = '%d' AND enabled = true"
    );
    // Not derived: the admin is told what to write, with what is known filled in.
    let no = |q: &str| update_query(q).unwrap_err();
    let e = no(
        "SELECT email AS user, CONCAT('{SHA512-CRYPT}', pw) AS password FROM users WHERE email = '%u'",
    );
    assert!(
        e.contains("password_update = \"UPDATE users SET <password column> = '%p' WHERE <address column> = '%u'\""),
        "{e}"
    );
    let e = no(
        "SELECT u.email AS user, u.password FROM users u JOIN domains d ON d.id = u.domain WHERE u.email = '%u' AND d.active = 1",
    );
    assert!(e.contains("UPDATE <table> SET"), "{e}");
    assert!(no("SELECT password FROM users, domains WHERE email = '%u'").contains("<table>"));
    // Conditions that could reach other rows, or that do not name the user.
    for q in [
        "SELECT password FROM users WHERE email = '%u' OR 1 = 1",
        "SELECT password FROM users WHERE email = (SELECT email FROM a WHERE x = '%u')",
        "SELECT password FROM users WHERE domain = '%d'",
        "SELECT password FROM users WHERE email = '%u' LIMIT 1",
        "SELECT password FROM users",
    ] {
        assert!(no(q).contains("UPDATE users SET password = '%p'"), "{q}");
    }
    assert!(no("SELECT password FROM users WHERE ip = '%r'").contains("<table>"));
}
