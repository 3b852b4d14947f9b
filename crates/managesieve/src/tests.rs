//! The session without a socket: every command, each state, SASL, STARTTLS, limits.

use crate::session::{MAX_BAD_COMMANDS, MAX_DISCARD};
use crate::*;

fn settings() -> Settings {
    Settings {
        implementation: "Postern".into(),
        sieve_extensions: "fileinto vacation".into(),
        max_redirects: Some(4),
        starttls: true,
        secured: false,
        trusted: false,
        max_auth_failures: 2,
        max_line: 1000,
        max_preauth: 200,
        max_script_size: 100,
        xclient: false,
    }
}

/// The replies among `actions`, joined.
fn text(actions: &[Action]) -> String {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect()
}

fn others(actions: &[Action]) -> Vec<&Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::Reply(_)))
        .collect()
}

/// A session logged in as alice (over TLS).
fn logged_in() -> Session {
    let mut s = Session::new(Settings {
        secured: true,
        ..settings()
    });
    let a = s.input(b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n");
    assert_eq!(
        others(&a),
        [&Action::AuthStart {
            mechanism: Mechanism::Plain,
            initial: Some(b"\0alice\0pw".to_vec())
        }]
    );
    let a = s.auth_done(Ok("alice".into())).unwrap();
    assert_eq!(text(&a), "OK \"Logged in.\"\r\n");
    s
}

#[test]
fn greeting_lists_capabilities() {
    let s = Session::new(settings());
    let g = text(&s.greeting());
    assert_eq!(
        g,
        "\"IMPLEMENTATION\" \"Postern\"\r\n\"SIEVE\" \"fileinto vacation\"\r\n\"SASL\" \"\"\r\n\
         \"STARTTLS\"\r\n\"MAXREDIRECTS\" \"4\"\r\n\"VERSION\" \"1.0\"\r\n\"UNAUTHENTICATE\"\r\n\
         OK \"Postern ManageSieve ready.\"\r\n"
    );
    // Trusted (loopback) clients see the mechanisms without TLS.
    let s = Session::new(Settings {
        trusted: true,
        ..settings()
    });
    assert!(text(&s.greeting()).contains("\"SASL\" \"PLAIN LOGIN\""));
}

#[test]
fn authenticate_needs_tls_unless_trusted() {
    let mut s = Session::new(settings());
    let a = s.input(b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n");
    assert!(others(&a).is_empty());
    assert!(text(&a).starts_with("NO (ENCRYPT-NEEDED)"), "{}", text(&a));
    // STARTTLS: plaintext after it is ignored; capabilities again after the handshake.
    let a = s.input(b"STARTTLS\r\nAUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n");
    assert_eq!(text(&a), "OK \"Begin TLS negotiation now.\"\r\n");
    assert_eq!(others(&a), [&Action::StartTls]);
    assert!(!s.wants_input());
    assert!(s.input(b"LOGOUT\r\n").is_empty());
    let a = s.tls_started().unwrap();
    let t = text(&a);
    assert!(
        t.contains("\"SASL\" \"PLAIN LOGIN\"") && !t.contains("STARTTLS"),
        "{t}"
    );
    assert!(t.ends_with("OK \"TLS negotiation successful.\"\r\n"));
    assert!(
        others(&a).is_empty(),
        "nothing sent before the handshake is run"
    );
    assert_eq!(
        text(&s.input(b"STARTTLS\r\n")),
        "NO \"TLS is already active.\"\r\n"
    );
    assert!(matches!(
        others(&s.input(b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n"))[..],
        [Action::AuthStart { .. }]
    ));
}

#[test]
fn no_starttls_without_a_certificate() {
    let mut s = Session::new(Settings {
        starttls: false,
        ..settings()
    });
    assert!(!text(&s.greeting()).contains("STARTTLS"));
    assert_eq!(
        text(&s.input(b"STARTTLS\r\n")),
        "NO \"STARTTLS is not available.\"\r\n"
    );
}

#[test]
fn sasl_continuations_and_cancel() {
    let mut s = Session::new(Settings {
        trusted: true,
        ..settings()
    });
    let a = s.input(b"AUTHENTICATE \"login\"\r\n");
    assert_eq!(
        others(&a),
        [&Action::AuthStart {
            mechanism: Mechanism::Login,
            initial: None
        }]
    );
    let a = s.auth_challenge(b"Username:").unwrap();
    assert_eq!(text(&a), "\"VXNlcm5hbWU6\"\r\n");
    // The answer as a literal.
    let a = s.input(b"{8+}\r\nYWxpY2U=\r\n");
    assert_eq!(others(&a), [&Action::AuthContinue(b"alice".to_vec())]);
    let a = s.auth_challenge(b"Password:").unwrap();
    assert_eq!(text(&a), "\"UGFzc3dvcmQ6\"\r\n");
    let a = s.input(b"\"*\"\r\n");
    assert_eq!(others(&a), [&Action::AuthCancel]);
    assert_eq!(text(&a), "NO \"Authentication cancelled.\"\r\n");
    // Bad base64 in a response.
    s.input(b"AUTHENTICATE \"PLAIN\"\r\n");
    s.auth_challenge(b"").unwrap();
    let a = s.input(b"\"!!\"\r\n");
    assert_eq!(others(&a), [&Action::AuthCancel]);
    assert!(text(&a).starts_with("NO "));
    // A bad initial response never reaches authd.
    let a = s.input(b"AUTHENTICATE \"PLAIN\" \"@@\"\r\n");
    assert!(others(&a).is_empty() && text(&a).starts_with("NO "));
    let a = s.input(b"AUTHENTICATE \"CRAM-MD5\"\r\n");
    assert_eq!(text(&a), "NO \"Unsupported authentication mechanism.\"\r\n");
}

#[test]
fn failures_temporary_errors_and_the_limit() {
    let mut s = Session::new(Settings {
        secured: true,
        ..settings()
    });
    s.input(b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n");
    let a = s
        .auth_done(Err(AuthError::Temporary("db\r\ndown".into())))
        .unwrap();
    assert_eq!(text(&a), "NO (TRYLATER) \"db  down\"\r\n");
    s.input(b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n");
    let a = s.auth_done(Err(AuthError::Failed(None))).unwrap();
    assert_eq!(text(&a), "NO \"Authentication failed.\"\r\n");
    assert!(!s.is_closed());
    // Commands pipelined behind AUTHENTICATE wait for it.
    let a = s.input(b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\nLISTSCRIPTS\r\n");
    assert_eq!(others(&a).len(), 1);
    let a = s.auth_done(Err(AuthError::Failed(None))).unwrap();
    assert!(text(&a).contains("BYE \"Too many authentication failures.\""));
    assert_eq!(others(&a), [&Action::Close]);
    assert!(s.is_closed());
    assert!(s.input(b"NOOP\r\n").is_empty());
}

#[test]
fn commands_need_authentication() {
    let mut s = Session::new(settings());
    for cmd in [
        &b"LISTSCRIPTS\r\n"[..],
        b"GETSCRIPT \"a\"\r\n",
        b"PUTSCRIPT \"a\" {4+}\r\nkeep\r\n",
        b"CHECKSCRIPT \"keep;\"\r\n",
        b"SETACTIVE \"a\"\r\n",
        b"DELETESCRIPT \"a\"\r\n",
        b"RENAMESCRIPT \"a\" \"b\"\r\n",
        b"HAVESPACE \"a\" 10\r\n",
    ] {
        let a = s.input(cmd);
        assert_eq!(text(&a), "NO \"Authenticate first.\"\r\n");
        assert!(others(&a).is_empty());
    }
    assert_eq!(
        text(&s.input(b"NOOP \"t1\"\r\n")),
        "OK (TAG \"t1\") \"Done\"\r\n"
    );
    assert_eq!(
        text(&s.input(b"UNAUTHENTICATE\r\n")),
        "NO \"Not authenticated.\"\r\n"
    );
}

#[test]
fn storage_requests_and_their_replies() {
    let mut s = logged_in();
    assert!(text(&s.input(b"CAPABILITY\r\n")).contains("\"OWNER\" \"alice\"\r\n"));
    let a = s.input(b"LISTSCRIPTS\r\n");
    assert_eq!(others(&a), [&Action::Store(Request::List)]);
    let a = s
        .stored(Ok(StoreReply::Listed(vec![
            ("main".into(), true),
            ("vac \"x\"".into(), false),
        ])))
        .unwrap();
    assert_eq!(
        text(&a),
        "\"main\" ACTIVE\r\n\"vac \\\"x\\\"\"\r\nOK \"Listscripts completed.\"\r\n"
    );
    s.input(b"GETSCRIPT \"main\"\r\n");
    let a = s
        .stored(Ok(StoreReply::Script(b"keep;\r\n".to_vec())))
        .unwrap();
    assert_eq!(
        text(&a),
        "{7}\r\nkeep;\r\n\r\nOK \"Getscript completed.\"\r\n"
    );
    let a = s.input(b"PUTSCRIPT \"main\" {5+}\r\nkeep;\r\n");
    assert_eq!(
        others(&a),
        [&Action::Store(Request::Put {
            name: "main".into(),
            script: "keep;".into()
        })]
    );
    let a = s
        .stored(Err(StoreError::Invalid(
            "line 2: unknown command 'kep'".into(),
        )))
        .unwrap();
    assert_eq!(text(&a), "NO \"line 2: unknown command 'kep'\"\r\n");
    s.input(b"CHECKSCRIPT \"keep;\"\r\n");
    assert_eq!(
        text(&s.stored(Ok(StoreReply::Done(None))).unwrap()),
        "OK \"Script is valid.\"\r\n"
    );
    let a = s.input(b"SETACTIVE \"\"\r\n");
    assert_eq!(others(&a), [&Action::Store(Request::SetActive(None))]);
    s.stored(Ok(StoreReply::Done(None))).unwrap();
    s.input(b"DELETESCRIPT \"main\"\r\n");
    assert_eq!(
        text(&s.stored(Err(StoreError::Active)).unwrap()),
        "NO (ACTIVE) \"The script is active: deactivate it first.\"\r\n"
    );
    let a = s.input(b"RENAMESCRIPT \"a\" \"b\"\r\n");
    assert_eq!(
        others(&a),
        [&Action::Store(Request::Rename {
            from: "a".into(),
            to: "b".into()
        })]
    );
    assert!(
        text(&s.stored(Err(StoreError::AlreadyExists)).unwrap()).starts_with("NO (ALREADYEXISTS)")
    );
    s.input(b"HAVESPACE \"x\" 100\r\n");
    assert!(
        text(&s.stored(Err(StoreError::MaxScripts)).unwrap()).starts_with("NO (QUOTA/MAXSCRIPTS)")
    );
    // Over the size limit: answered without asking the store.
    let a = s.input(b"HAVESPACE \"x\" 101\r\n");
    assert!(others(&a).is_empty());
    assert!(text(&a).starts_with("NO (QUOTA/MAXSIZE)"));
    s.input(b"GETSCRIPT \"gone\"\r\n");
    assert!(text(&s.stored(Err(StoreError::NonExistent)).unwrap()).starts_with("NO (NONEXISTENT)"));
    s.input(b"LISTSCRIPTS\r\n");
    assert!(
        text(&s.stored(Err(StoreError::TryLater("disk".into()))).unwrap())
            .starts_with("NO (TRYLATER)")
    );
    // Warnings come back as OK (WARNINGS).
    s.input(b"PUTSCRIPT \"w\" \"keep;\"\r\n");
    assert_eq!(
        text(
            &s.stored(Ok(StoreReply::Done(Some("careful".into()))))
                .unwrap()
        ),
        "OK (WARNINGS) \"careful\"\r\n"
    );
    // A completion nothing asked for is a driver mistake.
    assert_eq!(
        s.stored(Ok(StoreReply::Done(None))),
        Err(UnexpectedCompletion)
    );
    assert_eq!(s.tls_started(), Err(UnexpectedCompletion));
}

#[test]
fn bad_names_never_reach_the_store() {
    let mut s = logged_in();
    for (cmd, expect) in [
        (
            &b"PUTSCRIPT \"../x\" \"keep;\"\r\n"[..],
            "NO \"Invalid script name",
        ),
        (
            b"PUTSCRIPT \"a/b\" \"keep;\"\r\n",
            "NO \"Invalid script name",
        ),
        (
            b"PUTSCRIPT \".hidden\" \"keep;\"\r\n",
            "NO \"Invalid script name",
        ),
        (b"PUTSCRIPT \"\" \"keep;\"\r\n", "NO \"Invalid script name"),
        (
            b"PUTSCRIPT {3+}\r\na\0b \"keep;\"\r\n",
            "NO \"Invalid script name",
        ),
        (
            b"PUTSCRIPT {2+}\r\n\xff\xfe \"keep;\"\r\n",
            "NO \"Invalid script name",
        ),
        (b"GETSCRIPT \"..\"\r\n", "NO (NONEXISTENT)"),
        (b"DELETESCRIPT \"a/../../b\"\r\n", "NO (NONEXISTENT)"),
        (b"SETACTIVE \"/etc/passwd\"\r\n", "NO (NONEXISTENT)"),
        (
            b"RENAMESCRIPT \"a\" \"../b\"\r\n",
            "NO \"Invalid script name",
        ),
        (
            b"PUTSCRIPT \"ok\" {2+}\r\n\xff\xfe\r\n",
            "NO \"The script is not valid UTF-8",
        ),
    ] {
        let a = s.input(cmd);
        assert!(others(&a).is_empty(), "{:?}", String::from_utf8_lossy(cmd));
        assert!(
            text(&a).starts_with(expect),
            "{:?}: {}",
            String::from_utf8_lossy(cmd),
            text(&a)
        );
    }
    let long = "n".repeat(MAX_NAME + 1);
    let a = s.input(format!("PUTSCRIPT \"{long}\" \"keep;\"\r\n").as_bytes());
    assert!(text(&a).starts_with("NO \"Invalid script name: too long"));
    assert!(valid_script_name(&"n".repeat(MAX_NAME)).is_ok());
    assert!(valid_script_name("vacation (2) é").is_ok());
    assert!(valid_script_name("a\u{2028}b").is_err());
    assert!(valid_script_name("a\u{85}b").is_err());
}

#[test]
fn oversized_script_is_read_and_refused() {
    let mut s = logged_in();
    // 150 octets > max_script_size 100 (+1024 for the name): here 2000 to pass the literal budget.
    let mut cmd = b"PUTSCRIPT \"big\" {2000+}\r\n".to_vec();
    cmd.extend_from_slice(&[b'#'; 2000]);
    cmd.extend_from_slice(b"\r\nNOOP\r\n");
    // In small pieces: the refused literal is skipped, the next command answered.
    let mut all = Vec::new();
    for chunk in cmd.chunks(7) {
        all.extend(s.input(chunk));
    }
    assert!(others(&all).is_empty());
    assert_eq!(
        text(&all),
        "NO (QUOTA/MAXSIZE) \"Too large: scripts are limited to 100 octets.\"\r\nOK \"Done\"\r\n"
    );
    // Within the literal budget but over the script limit: refused without the store.
    let mut cmd = b"PUTSCRIPT \"big\" {101+}\r\n".to_vec();
    cmd.extend_from_slice(&[b'#'; 101]);
    cmd.extend_from_slice(b"\r\n");
    let a = s.input(&cmd);
    assert!(others(&a).is_empty());
    assert!(text(&a).starts_with("NO (QUOTA/MAXSIZE)"));
    // Absurd sizes close the connection.
    let a = s.input(format!("PUTSCRIPT \"big\" {{{}+}}\r\n", MAX_DISCARD + 1).as_bytes());
    assert!(text(&a).starts_with("BYE"));
    assert!(s.is_closed());
}

#[test]
fn preauth_limits_close_the_connection() {
    let mut s = Session::new(settings());
    let a = s.input(b"AUTHENTICATE \"PLAIN\" {500+}\r\n");
    assert!(text(&a).starts_with("BYE \"Literal too large.\""));
    assert!(s.is_closed());
    let mut s = Session::new(settings());
    let a = s.input(&[b'A'; 300]);
    assert!(text(&a).starts_with("BYE \"Line too long.\""));
    assert!(s.is_closed());
}

#[test]
fn long_lines_after_login_are_skipped() {
    let mut s = logged_in();
    let mut line = b"NOOP ".to_vec();
    line.extend_from_slice(&[b'a'; 1500]);
    line.extend_from_slice(b"\r\nNOOP\r\n");
    let a = s.input(&line);
    assert_eq!(text(&a), "NO \"Line too long.\"\r\nOK \"Done\"\r\n");
}

#[test]
fn syntax_errors_and_too_many_of_them() {
    let mut s = Session::new(settings());
    assert_eq!(text(&s.input(b"FROB\r\n")), "NO \"Unknown command.\"\r\n");
    assert!(text(&s.input(b"GETSCRIPT\r\n")).starts_with("NO \"Syntax: GETSCRIPT"));
    assert!(text(&s.input(b"NOOP \"a\rb\"\r\n")).starts_with("NO \"Syntax error"));
    // A bad line without its end yet: the rest is skipped when it comes.
    assert!(s.input(b"NOOP \x01").is_empty());
    assert!(text(&s.input(b"more\r\n")).starts_with("NO \"Syntax error"));
    // A good command resets the count.
    assert!(text(&s.input(b"NOOP\r\n")).starts_with("OK"));
    let mut all = Vec::new();
    for _ in 0..MAX_BAD_COMMANDS {
        all.extend(s.input(b"FROB\r\n"));
    }
    assert!(text(&all).ends_with("BYE \"Too many invalid commands.\"\r\n"));
    assert_eq!(others(&all), [&Action::Close]);
}

#[test]
fn pipelined_commands_keep_their_order() {
    let mut s = logged_in();
    let a = s.input(b"NOOP\r\nLISTSCRIPTS\r\nNOOP \"x\"\r\nGETSCRIPT \"a\"\r\n");
    assert_eq!(text(&a), "OK \"Done\"\r\n");
    assert!(!s.wants_input());
    let a = s.stored(Ok(StoreReply::Listed(Vec::new()))).unwrap();
    assert_eq!(
        text(&a),
        "OK \"Listscripts completed.\"\r\nOK (TAG \"x\") \"Done\"\r\n"
    );
    assert_eq!(others(&a), [&Action::Store(Request::Get("a".into()))]);
}

#[test]
fn unauthenticate_and_logout() {
    let mut s = logged_in();
    let a = s.input(b"UNAUTHENTICATE\r\n");
    assert_eq!(others(&a), [&Action::Unauthenticated]);
    assert!(s.user().is_none());
    assert_eq!(
        text(&s.input(b"LISTSCRIPTS\r\n")),
        "NO \"Authenticate first.\"\r\n"
    );
    let a = s.input(b"LOGOUT\r\nNOOP\r\n");
    assert_eq!(text(&a), "OK \"Logout completed.\"\r\n");
    assert_eq!(others(&a), [&Action::Close]);
    assert!(s.is_closed());
}

#[test]
fn timeout_and_shutdown_say_bye() {
    let mut s = Session::new(Settings {
        trusted: true,
        ..settings()
    });
    s.input(b"AUTHENTICATE \"LOGIN\"\r\n");
    s.auth_challenge(b"Username:").unwrap();
    let a = s.timeout();
    assert_eq!(others(&a), [&Action::AuthCancel, &Action::Close]);
    assert_eq!(text(&a), "BYE \"Disconnected for inactivity.\"\r\n");
    let mut s = logged_in();
    let a = s.shutdown();
    assert_eq!(text(&a), "BYE (TRYLATER) \"Server shutting down.\"\r\n");
}

#[test]
fn preauth_junk_after_a_bad_line_is_bounded() {
    // A malformed line whose end never comes: before authentication no more than
    // max_preauth octets are thrown away before the connection is closed.
    let mut s = Session::new(settings());
    assert!(s.input(b"NOOP \x01").is_empty());
    let mut all = Vec::new();
    for _ in 0..10 {
        all.extend(s.input(&[b'x'; 100]));
    }
    assert!(text(&all).starts_with("BYE"), "{}", text(&all));
    assert!(s.is_closed());
}

#[test]
fn commands_are_reported_by_name_never_by_what_was_typed() {
    let mut s = logged_in();
    assert_eq!(s.take_commands(), ["AUTHENTICATE"]);
    // Pipelined: one read, three commands; bad arguments still name the command.
    s.input(b"NOOP\r\nxyzzy-Attacker \"a\"\r\nGETSCRIPT\r\n");
    assert_eq!(s.take_commands(), ["NOOP", "unknown", "GETSCRIPT"]);
    assert!(s.take_commands().is_empty());
    s.input(b"\"not an atom\"\r\nlistscripts\r\n");
    let got = s.take_commands();
    assert_eq!(got, ["unknown", "LISTSCRIPTS"]);
    for n in got.iter().filter(|n| **n != "unknown") {
        assert!(parse::COMMAND_NAMES.contains(n), "{n}");
    }
    // Every command's usage text starts with a listed name.
    for line in [
        &b"CAPABILITY x\r\n"[..],
        b"AUTHENTICATE\r\n",
        b"STARTTLS x\r\n",
        b"LOGOUT x\r\n",
        b"LISTSCRIPTS x\r\n",
        b"PUTSCRIPT\r\n",
        b"CHECKSCRIPT\r\n",
        b"SETACTIVE\r\n",
        b"DELETESCRIPT\r\n",
        b"RENAMESCRIPT\r\n",
        b"HAVESPACE\r\n",
        b"NOOP x y\r\n",
        b"UNAUTHENTICATE x\r\n",
    ] {
        let mut s = logged_in();
        s.take_commands();
        s.input(line);
        let got = s.take_commands();
        assert_eq!(got.len(), 1, "{}", String::from_utf8_lossy(line));
        assert!(
            parse::COMMAND_NAMES.contains(&got[0]),
            "{}: {got:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn xclient_only_from_a_trusted_proxy_and_before_authentication() {
    // Not offered, and refused, to anyone else.
    let mut s = Session::new(settings());
    assert!(!text(&s.greeting()).contains("XCLIENT"));
    let a = s.input(b"XCLIENT ADDR=192.0.2.7 PORT=4000\r\n");
    assert_eq!(text(&a), "NO \"You are not from a trusted proxy.\"\r\n");
    assert!(others(&a).is_empty());
    // A trusted proxy sees it and its arguments reach the driver, Dovecot's extra ones too.
    let mut s = Session::new(Settings {
        xclient: true,
        ..settings()
    });
    assert!(text(&s.greeting()).contains("\"XCLIENT\"\r\n"));
    let a = s.input(b"xclient ADDR=2001:db8::7 PORT=4000 SESSION=abc TTL=4\r\n");
    assert_eq!(
        others(&a),
        [&Action::ClientAddress(vec![
            "ADDR=2001:db8::7".into(),
            "PORT=4000".into(),
            "SESSION=abc".into(),
            "TTL=4".into()
        ])]
    );
    assert_eq!(text(&a), "OK \"Updated.\"\r\n");
    assert_eq!(s.take_commands(), ["XCLIENT"]);
    let a = s.input(b"XCLIENT\r\nXCLIENT \"ADDR=1.2.3.4\"\r\n");
    assert!(others(&a).is_empty());
    assert_eq!(
        text(&a).matches("NO \"Syntax: XCLIENT").count(),
        2,
        "{}",
        text(&a)
    );
    // Not once logged in.
    let mut s = logged_in();
    let a = s.input(b"XCLIENT ADDR=192.0.2.7\r\n");
    assert!(others(&a).is_empty());
    assert!(text(&a).starts_with("NO "), "{}", text(&a));
}

#[test]
fn the_input_after_authenticate_can_be_taken_over() {
    let mut s = Session::new(Settings {
        secured: true,
        ..settings()
    });
    let a = s.input(b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\nLISTSCRIPTS\r\nGETSC");
    assert_eq!(others(&a).len(), 1, "only the AuthStart: {a:?}");
    assert_eq!(s.take_input(), b"LISTSCRIPTS\r\nGETSC");
    assert!(s.is_closed());
    assert!(s.input(b"NOOP\r\n").is_empty());
}
