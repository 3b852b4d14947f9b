//! imapd conformance (issue 13 §1), from the RFC text: SEARCH address keys (RFC 9051 §6.4.4),
//! SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO) with the §2.1 base subject, and THREAD
//! (RFC 5256 §2.2 REFERENCES step by step, ORDEREDSUBJECT). Python's imaplib APPENDs the
//! messages (with their INTERNALDATE) to the real imapd and sends each command as it is; the
//! untagged answers are compared here.

use std::collections::HashMap;
use std::fmt::Write as _;

use postern_e2e::Postern;

const USER: &str = "sorter@example.org";
const PASS: &str = "sort thread pass phrase 1";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "imapd"])
        .start_with_user(USER, PASS)
}

/// A Python bytes literal for any bytes.
fn py_bytes(b: &[u8]) -> String {
    let mut s = String::from("b'");
    for &c in b {
        if c.is_ascii_alphanumeric() || c == b' ' {
            s.push(char::from(c));
        } else {
            let _ = write!(s, "\\x{c:02x}");
        }
    }
    s.push('\'');
    s
}

/// One message: its INTERNALDATE (`dd-Mon-yyyy hh:mm:ss +zzzz`) and header lines (`\n`
/// separated); the body is padded to make the message `size` octets (0: no padding).
struct M<'a> {
    date: &'a str,
    header: &'a str,
    size: usize,
}

fn m<'a>(date: &'a str, header: &'a str) -> M<'a> {
    M {
        date,
        header,
        size: 0,
    }
}

/// A command line after the tag (its first word, or the word after `UID`, names the untagged
/// answer) and an optional literal that imaplib sends as its last argument (`{n}`, then the
/// octets after the continuation).
struct Cmd<'a> {
    line: &'a str,
    literal: Option<&'a str>,
}

fn c(line: &str) -> Cmd<'_> {
    Cmd {
        line,
        literal: None,
    }
}

/// APPENDs `msgs` to INBOX in order (sequence number = position + 1, UID = sequence number + 1:
/// a first message is appended and expunged so that UID answers differ from sequence numbers),
/// SELECTs it, runs each command and returns, per command line, `"OK <untagged data>"` (or the
/// status and text); then FETCHes ENVELOPE and BODYSTRUCTURE of all (which caches their
/// summaries) and runs the commands again, answers under `"cached <command line>"`.
fn run(msgs: &[M<'_>], cmds: &[Cmd<'_>]) -> HashMap<String, String> {
    let pm = install();
    let mut script = String::from(
        "import imaplib, sys\n\
         M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))\n\
         M.login(sys.argv[2], sys.argv[3])\n\
         typ, r = M.append('INBOX', None, None, b'Subject: gone\\r\\n\\r\\nx\\r\\n')\n\
         assert typ == 'OK', r\n\
         M.select('INBOX'); M.store('1', '+FLAGS', '(\\\\Deleted)'); M.expunge()\n\
         MSGS = [\n",
    );
    for msg in msgs {
        let mut raw = msg.header.replace('\n', "\r\n").into_bytes();
        raw.extend_from_slice(b"\r\n\r\nbody\r\n");
        if msg.size > 0 {
            let pad = msg.size.checked_sub(raw.len() + 2).expect("size too small");
            raw.extend(std::iter::repeat_n(b'x', pad));
            raw.extend_from_slice(b"\r\n");
        }
        let _ = writeln!(script, "  ('\"{}\"', {}),", msg.date, py_bytes(&raw));
    }
    script.push_str(
        "]\n\
         for d, raw in MSGS:\n\
         \x20   typ, r = M.append('INBOX', None, d, raw)\n\
         \x20   assert typ == 'OK', r\n\
         typ, r = M.select('INBOX')\n\
         assert typ == 'OK' and int(r[0]) == len(MSGS), r\n\
         CMDS = [\n",
    );
    for cmd in cmds {
        let lit = cmd
            .literal
            .map_or("None".to_string(), |l| py_bytes(l.as_bytes()));
        let _ = writeln!(script, "  ({}, {lit}),", py_bytes(cmd.line.as_bytes()));
    }
    script.push_str(
        "]\n\
         def run_all(prefix):\n\
         \x20   for line, lit in CMDS:\n\
         \x20       words = line.decode().split(' ', 1)\n\
         \x20       name = words[0] if words[0] != 'UID' else words[1].split(' ', 1)[0]\n\
         \x20       M.literal = lit\n\
         \x20       try:\n\
         \x20           typ, dat = M._simple_command(*words)\n\
         \x20       except imaplib.IMAP4.error as e:\n\
         \x20           typ, dat = 'BAD', [str(e).encode()]\n\
         \x20       if typ == 'OK':\n\
         \x20           typ, dat = M._untagged_response(typ, dat, name)\n\
         \x20       out = b' '.join(x if isinstance(x, bytes) else str(x).encode() for x in dat if x is not None)\n\
         \x20       print(prefix + line.decode() + '\\t' + typ + ' ' + out.decode('utf-8', 'replace'))\n\
         run_all('')\n\
         typ, r = M.fetch('1:*', '(ENVELOPE BODYSTRUCTURE)')\n\
         assert typ == 'OK', r\n\
         run_all('cached ')\n\
         M.logout()\n",
    );
    let port = pm.imap_port().to_string();
    pm.python_ok("imapd", &script, &[&port, USER, PASS])
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_string(), b.trim_end().to_string()))
        .collect()
}

/// Asserts every (command, expected answer) pair, both as first run (messages read from their
/// files) and as run again after a FETCH has cached their summaries (`cached …`); all
/// mismatches are reported together.
fn expect(got: &HashMap<String, String>, want: &[(&str, &str)]) {
    let mut bad = Vec::new();
    for (line, answer) in want {
        for key in [line.to_string(), format!("cached {line}")] {
            let g = got.get(&key).map_or("(no answer)", String::as_str);
            if g != *answer {
                bad.push(format!("{key}\n     want: {answer}\n      got: {g}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

const D: &str = "01-Jan-2024 00:00:00 +0000";

/// RFC 9051 §6.4.4: FROM/TO/CC/BCC "contain the specified string" in the field, i.e. in the
/// decoded header text: display names (RFC 2047 encoded words decoded) and addresses, group
/// names, case-insensitively, with CFWS inside an address not hiding it.
#[test]
fn search_address_keys_match_decoded_header_text() {
    let msgs = [
        m(D, "From: user-from@domain.org\nSubject: 1"),
        m(D, "From: \"User, From\" <user-from@domain.org>\nSubject: 2"),
        m(
            D,
            "From: <user-from (comment)@ (comment) domain.org>\nSubject: 3",
        ),
        m(
            D,
            "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.com>\n\
             To: Team Members: a@b.example, user-to@domain.org;\n\
             Cc: =?iso-8859-1?q?Andr=E9?= <andre@example.net>\nSubject: 4",
        ),
        m(D, "From: User From\n\t<user-from@DOMAIN.ORG>\nSubject: 5"),
        m(
            D,
            "From: other@example.com\nTo: user-from@domain.org\n\
             Bcc: Hidden Person <user-bcc@domain.org>\nSubject: 6",
        ),
        m(D, "From: undisclosed-recipients:;\nSubject: 7"),
        m(
            D,
            "From: user-from1@domain.org, user-from2@domain.org\nSubject: 8",
        ),
    ];
    let cmds = [
        c("SEARCH FROM user-from@domain.org"),
        c("SEARCH FROM USER-FROM@Domain.Org"),
        c("SEARCH FROM domain.org"),
        c("SEARCH FROM from@dom"),
        c("SEARCH FROM \"User, From\""),
        c("SEARCH FROM \"user from\""),
        c("SEARCH FROM \"user from <user-from@domain.org>\""),
        Cmd {
            line: "SEARCH CHARSET UTF-8 FROM",
            literal: Some("jörg müller"),
        },
        c("SEARCH FROM joerg@example.com"),
        c("SEARCH TO user-to@domain.org"),
        c("SEARCH TO \"team members\""),
        c("SEARCH TO user-from@domain.org"),
        Cmd {
            line: "SEARCH CHARSET UTF-8 CC",
            literal: Some("ANDRÉ"),
        },
        c("SEARCH BCC user-bcc@domain.org"),
        c("SEARCH BCC \"hidden person\""),
        c("SEARCH FROM undisclosed"),
        c("SEARCH FROM user-from2"),
        c("SEARCH FROM ser-fro"),
        c("SEARCH HEADER TO \"\""),
        c("SEARCH NOT FROM user-from@domain.org"),
        c("SEARCH OR FROM joerg TO user-from"),
        c("UID SEARCH FROM user-from@domain.org"),
    ];
    let got = run(&msgs, &cmds);
    expect(
        &got,
        &[
            ("SEARCH FROM user-from@domain.org", "OK 1 2 3 5"),
            ("SEARCH FROM USER-FROM@Domain.Org", "OK 1 2 3 5"),
            ("SEARCH FROM domain.org", "OK 1 2 3 5 8"),
            ("SEARCH FROM from@dom", "OK 1 2 3 5"),
            ("SEARCH FROM \"User, From\"", "OK 2"),
            ("SEARCH FROM \"user from\"", "OK 5"),
            ("SEARCH FROM \"user from <user-from@domain.org>\"", "OK 5"),
            ("SEARCH CHARSET UTF-8 FROM", "OK 4"),
            ("SEARCH FROM joerg@example.com", "OK 4"),
            ("SEARCH TO user-to@domain.org", "OK 4"),
            ("SEARCH TO \"team members\"", "OK 4"),
            ("SEARCH TO user-from@domain.org", "OK 6"),
            ("SEARCH CHARSET UTF-8 CC", "OK 4"),
            ("SEARCH BCC user-bcc@domain.org", "OK 6"),
            ("SEARCH BCC \"hidden person\"", "OK 6"),
            ("SEARCH FROM undisclosed", "OK 7"),
            ("SEARCH FROM user-from2", "OK 8"),
            ("SEARCH FROM ser-fro", "OK 1 2 3 5 8"),
            // a TO key with the empty string: messages that have the field
            ("SEARCH HEADER TO \"\"", "OK 4 6"),
            ("SEARCH NOT FROM user-from@domain.org", "OK 4 6 7 8"),
            ("SEARCH OR FROM joerg TO user-from", "OK 4 6"),
            ("UID SEARCH FROM user-from@domain.org", "OK 2 3 4 6"),
        ],
    );
}

/// RFC 5256 §3: FROM/TO/CC sort by the addr-mailbox of the first address (decoded,
/// i;ascii-casemap), a missing field as ""; REVERSE reverses only the key it precedes; ties
/// by sequence number. RFC 5957: DISPLAYFROM/DISPLAYTO by the decoded display name of the
/// first address, else its addr-spec.
#[test]
fn sort_address_keys_first_addr_mailbox_reverse_per_key() {
    let msgs = [
        m(
            D,
            "From: \"Zed Zulu\" <adam@z.example>\nTo: bob@x.example\n\
             Cc: Carl <carl@x.example>, abe@x.example\nDate: Mon, 1 Jan 2024 10:00:00 +0000",
        ),
        m(
            D,
            "From: Alice <BOB@a.example>\nTo: \"Aaron\" <zoe@x.example>\n\
             Date: Mon, 1 Jan 2024 11:00:00 +0000",
        ),
        m(
            D,
            "From: carl@a.example\nTo: ADAM@x.example, aaa@x.example\nCc: bea@x.example\n\
             Date: Mon, 1 Jan 2024 09:00:00 +0000",
        ),
        m(
            D,
            "From: =?utf-8?q?Bj=C3=B6rn?= <Adam@b.example>\n\
             To: =?utf-8?q?B=C3=B6b?= <bob@y.example>\nCc: <carl@z.example>\n\
             Date: Mon, 1 Jan 2024 12:00:00 +0000",
        ),
        m(
            D,
            "From: =?utf-8?q?Bob_Group?=: x@y.example;\nDate: Mon, 1 Jan 2024 08:00:00 +0000",
        ),
    ];
    let cmds = [
        "SORT (FROM) UTF-8 ALL",
        "SORT (REVERSE FROM) UTF-8 ALL",
        "SORT (TO) UTF-8 ALL",
        "SORT (REVERSE TO) UTF-8 ALL",
        "SORT (CC) UTF-8 ALL",
        "SORT (REVERSE CC) UTF-8 ALL",
        "SORT (FROM DATE) UTF-8 ALL",
        "SORT (FROM REVERSE DATE) UTF-8 ALL",
        "SORT (REVERSE FROM DATE) UTF-8 ALL",
        "SORT (REVERSE FROM REVERSE DATE) UTF-8 ALL",
        "SORT (DISPLAYFROM) UTF-8 ALL",
        "SORT (DISPLAYTO) UTF-8 ALL",
        "UID SORT (REVERSE FROM) UTF-8 ALL",
        "CAPABILITY",
    ];
    let got = run(&msgs, &cmds.map(c));
    // DISPLAYFROM/DISPLAYTO are only used by clients that see SORT=DISPLAY (RFC 5957 §4).
    let caps = got.get("CAPABILITY").expect("CAPABILITY answered");
    assert!(
        caps.starts_with("OK ") && caps.split_whitespace().any(|c| c == "SORT=DISPLAY"),
        "{caps}"
    );
    expect(
        &got,
        &[
            // adam (1), Adam (4), BOB (2), bob group (5: a group's name, decoded), carl (3)
            ("SORT (FROM) UTF-8 ALL", "OK 1 4 2 5 3"),
            ("SORT (REVERSE FROM) UTF-8 ALL", "OK 3 5 2 1 4"),
            // "" (5), ADAM (3), bob (1), bob (4), zoe (2)
            ("SORT (TO) UTF-8 ALL", "OK 5 3 1 4 2"),
            ("SORT (REVERSE TO) UTF-8 ALL", "OK 2 1 4 3 5"),
            // "" (2, 5), bea (3), carl (1), carl (4)
            ("SORT (CC) UTF-8 ALL", "OK 2 5 3 1 4"),
            ("SORT (REVERSE CC) UTF-8 ALL", "OK 1 4 3 2 5"),
            ("SORT (FROM DATE) UTF-8 ALL", "OK 1 4 2 5 3"),
            ("SORT (FROM REVERSE DATE) UTF-8 ALL", "OK 4 1 2 5 3"),
            ("SORT (REVERSE FROM DATE) UTF-8 ALL", "OK 3 5 2 1 4"),
            ("SORT (REVERSE FROM REVERSE DATE) UTF-8 ALL", "OK 3 5 2 4 1"),
            // alice (2), björn (4), carl@a.example (3), x@y.example (5), zed zulu (1)
            ("SORT (DISPLAYFROM) UTF-8 ALL", "OK 2 4 3 5 1"),
            // "" (5), aaron (2), adam@x.example (3), bob@x.example (1), böb (4)
            ("SORT (DISPLAYTO) UTF-8 ALL", "OK 5 2 3 1 4"),
            ("UID SORT (REVERSE FROM) UTF-8 ALL", "OK 4 6 3 2 5"),
        ],
    );
}

/// RFC 5256 §2.1 base subject, step by step, as the SORT (SUBJECT) key; ties by sequence
/// number (§3), REVERSE per key.
#[test]
fn sort_subject_by_rfc5256_base_subject() {
    let subjects = [
        // 1-5: base "hello"
        "Re: Re: re: hello",             // (3) repeated subj-refwd leaders
        "hello (fwd)",                   // (2) subj-trailer
        "[list] Re: hello",              // (3) *subj-blob subj-refwd
        "Fwd: [list] hello",             // (3) then (4) a blob with text after it
        "[fwd: hello]",                  // (6) subj-fwd
        "[PATCH]",                       // (4) a blob is kept when nothing remains
        "Re: [fwd: [list] apple (fwd)]", // (3), (6), then again (2) and (4)
        "=?utf-8?q?Re=3A_banana?=",      // (1) RFC 2047 first
        "  Fw:\tcherry  ",               // (1) white space, (3) WSP leader, (2)
        "RE [x]: date",                  // subj-refwd with its optional blob
        "Re: ",                          // empty base subject
        "Rex: apple",                    // not a subj-refwd
        "[a] [b]",                       // (4) only while something remains
        "Fwd: Re:  hello \t world",      // (1) multiple spaces to one
        "[fwd: (fwd)]",                  // empty inside subj-fwd
        "re: [list]  fwd[2]: Fw: [x] [fwd: eel] (fwd) (FWD)", // everything at once
    ];
    let headers: Vec<String> = subjects.iter().map(|s| format!("Subject: {s}")).collect();
    let dates: Vec<String> = (1..=subjects.len())
        .map(|d| format!("{d:02}-Jan-2024 00:00:00 +0000"))
        .collect();
    let msgs: Vec<M<'_>> = headers.iter().zip(&dates).map(|(h, d)| m(d, h)).collect();
    let cmds = [
        "SORT (SUBJECT) UTF-8 ALL",
        "SORT (REVERSE SUBJECT) UTF-8 ALL",
        "SORT (SUBJECT REVERSE ARRIVAL) UTF-8 ALL",
        "UID SORT (SUBJECT) UTF-8 1:6",
    ];
    let got = run(&msgs, &cmds.map(c));
    // "" (11, 15), apple (7), banana (8), cherry (9), date (10), eel (16),
    // hello (1 2 3 4 5), hello world (14), rex: apple (12), [b] (13), [patch] (6)
    expect(
        &got,
        &[
            (
                "SORT (SUBJECT) UTF-8 ALL",
                "OK 11 15 7 8 9 10 16 1 2 3 4 5 14 12 13 6",
            ),
            (
                "SORT (REVERSE SUBJECT) UTF-8 ALL",
                "OK 6 13 12 14 1 2 3 4 5 16 10 9 8 7 11 15",
            ),
            (
                "SORT (SUBJECT REVERSE ARRIVAL) UTF-8 ALL",
                "OK 15 11 7 8 9 10 16 5 4 3 2 1 14 12 13 6",
            ),
            ("UID SORT (SUBJECT) UTF-8 1:6", "OK 2 3 4 5 6 7"),
        ],
    );
}

/// RFC 5256 §3: ARRIVAL is INTERNALDATE; DATE the sent date (Date: in UTC, else INTERNALDATE,
/// §2.2); SIZE is RFC822.SIZE; ties by sequence number; `SORT (REVERSE DATE SUBJECT)`.
#[test]
fn sort_arrival_date_size_reverse_per_key() {
    let msgs = [
        M {
            date: "05-Jan-2024 10:00:00 +0000",
            header: "Date: Mon, 1 Jan 2024 10:00:00 -0500\nSubject: c",
            size: 700,
        },
        M {
            date: "03-Jan-2024 10:00:00 +0000",
            header: "Date: Mon, 1 Jan 2024 12:00:00 +0000\nSubject: b",
            size: 500,
        },
        M {
            date: "04-Jan-2024 10:00:00 +0000",
            header: "Subject: d",
            size: 600,
        },
        M {
            date: "02-Jan-2024 10:00:00 +0000",
            header: "Date: not a date\nSubject: e",
            size: 500,
        },
        M {
            date: "01-Jan-2024 00:00:00 +0200",
            header: "Date: Mon, 1 Jan 2024 14:00:00 +0200\nSubject: a",
            size: 800,
        },
    ];
    let cmds = [
        "SORT (ARRIVAL) UTF-8 ALL",
        "SORT (REVERSE ARRIVAL) UTF-8 ALL",
        "SORT (DATE) UTF-8 ALL",
        "SORT (REVERSE DATE) UTF-8 ALL",
        "SORT (REVERSE DATE SUBJECT) UTF-8 ALL",
        "SORT (SIZE) UTF-8 ALL",
        "SORT (REVERSE SIZE) UTF-8 ALL",
        "SORT (SIZE REVERSE SUBJECT) UTF-8 ALL",
        "SORT (DATE) UTF-8 NOT SUBJECT b",
        "SORT (DATE) UTF-8 SUBJECT nosuchthing",
    ];
    let got = run(&msgs, &cmds.map(c));
    expect(
        &got,
        &[
            // 5 (31 Dec 22:00 UTC), 4, 2, 3, 1
            ("SORT (ARRIVAL) UTF-8 ALL", "OK 5 4 2 3 1"),
            ("SORT (REVERSE ARRIVAL) UTF-8 ALL", "OK 1 3 2 4 5"),
            // 2 and 5 at 12:00 UTC (tie: sequence), 1 at 15:00 UTC, 4 (2 Jan), 3 (4 Jan)
            ("SORT (DATE) UTF-8 ALL", "OK 2 5 1 4 3"),
            ("SORT (REVERSE DATE) UTF-8 ALL", "OK 3 4 1 2 5"),
            ("SORT (REVERSE DATE SUBJECT) UTF-8 ALL", "OK 3 4 1 5 2"),
            // sizes: 2 and 4 equal (tie: sequence)
            ("SORT (SIZE) UTF-8 ALL", "OK 2 4 3 1 5"),
            ("SORT (REVERSE SIZE) UTF-8 ALL", "OK 5 1 3 2 4"),
            ("SORT (SIZE REVERSE SUBJECT) UTF-8 ALL", "OK 4 2 3 1 5"),
            ("SORT (DATE) UTF-8 NOT SUBJECT b", "OK 5 1 4 3"),
            ("SORT (DATE) UTF-8 SUBJECT nosuchthing", "OK"),
        ],
    );
}

/// RFC 5256 §2.2 THREAD=REFERENCES, one scenario per sequence range (THREAD works on the
/// searched messages only).
#[test]
fn thread_references_rfc5256_steps() {
    let hdr = |id: &str, extra: &str, hour: u32, subject: &str| {
        format!(
            "Message-ID: {id}\n{extra}Date: Mon, 1 Jan 2024 {hour:02}:00:00 +0000\nSubject: {subject}"
        )
    };
    let h: Vec<String> = vec![
        // 1-3 (1B): 3 has no references, so the link <a1> -> <c1> that 2's References made
        // is broken and 3 becomes a root: (3 2)(1), not (1 3 2)
        hdr("<a1@x>", "", 10, "one"),
        hdr("<b1@x>", "References: <a1@x> <c1@x>\n", 12, "Re: three"),
        hdr("<c1@x>", "", 9, "three"),
        // 4-6 (1): References win over In-Reply-To; In-Reply-To used without References
        hdr("<a2@x>", "", 10, "p"),
        hdr(
            "<b2@x>",
            "In-Reply-To: <a2@x>\nReferences: <zz2@x>\n",
            11,
            "q",
        ),
        hdr(
            "<c2@x>",
            "In-Reply-To: <b2@x> (Bob's message of <a2@x>)\n",
            12,
            "r",
        ),
        // 7-9 (3): a dummy root with two children stays, its children sorted by date (4),
        // and it sorts by its first child (09:00, before message 7)
        hdr("<a3@x>", "", 10, "s"),
        hdr("<b3@x>", "References: <gone3@x>\n", 11, "t"),
        hdr("<c3@x>", "References: <gone3@x>\n", 9, "u"),
        // 10-12 (3): a dummy between two messages is removed, its children promoted
        hdr("<a4@x>", "", 10, "v"),
        hdr("<b4@x>", "References: <a4@x> <gone4@x>\n", 12, "w"),
        hdr("<c4@x>", "References: <a4@x> <gone4@x>\n", 11, "x"),
        // 13-15 (1A): Message IDs are normalized (quoted local part) but case-sensitive
        hdr("<\"q5\"@x>", "", 10, "y1"),
        hdr("<b5@x>", "References: <q5@x>\n", 11, "y2"),
        hdr("<c5@x>", "References: <Q5@x>\n", 12, "y3"),
        // 16-18 (1A): a duplicate Message-ID gets a unique one; references go to the first
        hdr("<a6@x>", "", 10, "z1"),
        hdr("<a6@x>", "", 11, "z2"),
        hdr("<c6@x>", "In-Reply-To: <a6@x>\n", 12, "z3"),
        // 19-21 (1A) a loop is not created: one thread (3 1 2)
        "Message-ID: <a7@b>\nDate: Fri, 22 Feb 2008 17:06:23 +0000".to_string(),
        "Message-Id: <b7@b>\nReferences: <c7@b> <a7@b>\nDate: Fri, 22 Feb 2008 15:06:23 +0000"
            .to_string(),
        "Message-Id: <c7@b>\nReferences: <b7@b>\nDate: Fri, 22 Feb 2008 16:06:25 +0000".to_string(),
        // 22-25 (5): same base subject, neither a reply: a new dummy holds both; a reply
        // becomes a child of the original; an earlier reply goes under the later original
        hdr("<a8@x>", "", 10, "meeting"),
        hdr("<b8@x>", "", 11, "Meeting"),
        hdr("<c8@x>", "", 9, "Re: lunch"),
        hdr("<d8@x>", "", 12, "lunch"),
        // 26-29 (5): a dummy (with the subject of its first child) takes a message with the
        // same subject as a child; two dummies with the same subject are merged
        hdr("<a9@x>", "References: <gone9@x>\n", 10, "plan"),
        hdr("<b9@x>", "References: <gone9@x>\n", 11, "other"),
        hdr("<c9@x>", "", 9, "Fwd: plan"),
        hdr("<d9@x>", "References: <gone9b@x>\n", 12, "plan (fwd)"),
        // 30-32 (6): siblings by sent date; without Date: by INTERNALDATE
        hdr("<a10@x>", "", 8, "k"),
        "Message-ID: <b10@x>\nIn-Reply-To: <a10@x>\nSubject: k2".to_string(),
        hdr("<c10@x>", "In-Reply-To: <a10@x>\n", 9, "k3"),
        // 33-34 (5): an empty thread subject is not gathered
        hdr("<a11@x>", "", 10, ""),
        hdr("<b11@x>", "", 11, "Re:"),
    ];
    let msgs: Vec<M<'_>> = h
        .iter()
        .enumerate()
        .map(|(i, h)| {
            // message 31 has no Date: its INTERNALDATE is 08:30 on 1 Jan
            m(
                if i + 1 == 31 {
                    "01-Jan-2024 08:30:00 +0000"
                } else {
                    D
                },
                h,
            )
        })
        .collect();
    let cmds = [
        "THREAD REFERENCES UTF-8 1:3",
        "THREAD REFERENCES UTF-8 4:6",
        "THREAD REFERENCES UTF-8 7:9",
        "THREAD REFERENCES UTF-8 10:12",
        "THREAD REFERENCES UTF-8 13:15",
        "THREAD REFERENCES UTF-8 16:18",
        "THREAD REFERENCES UTF-8 19:21",
        "THREAD REFERENCES UTF-8 20:21",
        "THREAD REFERENCES UTF-8 22:25",
        "THREAD REFERENCES UTF-8 26:29",
        "THREAD REFERENCES UTF-8 30:32",
        "THREAD REFERENCES UTF-8 33:34",
        "UID THREAD REFERENCES UTF-8 1:3",
        "THREAD REFERENCES UTF-8 SUBJECT nosuchthing",
    ];
    let got = run(&msgs, &cmds.map(c));
    expect(
        &got,
        &[
            ("THREAD REFERENCES UTF-8 1:3", "OK (3 2)(1)"),
            ("THREAD REFERENCES UTF-8 4:6", "OK (4)(5 6)"),
            ("THREAD REFERENCES UTF-8 7:9", "OK ((9)(8))(7)"),
            ("THREAD REFERENCES UTF-8 10:12", "OK (10 (12)(11))"),
            ("THREAD REFERENCES UTF-8 13:15", "OK (13 14)(15)"),
            ("THREAD REFERENCES UTF-8 16:18", "OK (16 18)(17)"),
            ("THREAD REFERENCES UTF-8 19:21", "OK (21 19 20)"),
            ("THREAD REFERENCES UTF-8 20:21", "OK (21 20)"),
            ("THREAD REFERENCES UTF-8 22:25", "OK ((22)(23))(25 24)"),
            ("THREAD REFERENCES UTF-8 26:29", "OK ((28)(26)(27)(29))"),
            ("THREAD REFERENCES UTF-8 30:32", "OK (30 (31)(32))"),
            ("THREAD REFERENCES UTF-8 33:34", "OK (33)(34)"),
            ("UID THREAD REFERENCES UTF-8 1:3", "OK (4 3)(2)"),
            ("THREAD REFERENCES UTF-8 SUBJECT nosuchthing", "OK"),
        ],
    );
}

/// RFC 5256 §2.1 ORDEREDSUBJECT: grouped by base subject; in each group the first message by
/// sent date is the parent of all others (siblings, no grandchildren); threads ordered by the
/// sent date of their first message.
#[test]
fn thread_orderedsubject_rfc5256() {
    let msgs = [
        m(D, "Subject: Re: beta\nDate: Mon, 1 Jan 2024 12:00:00 +0000"),
        m(D, "Subject: alpha\nDate: Mon, 1 Jan 2024 11:00:00 +0000"),
        m(D, "Subject: beta\nDate: Mon, 1 Jan 2024 10:00:00 +0000"),
        m(
            D,
            "Subject: [list] Fwd: ALPHA\nDate: Mon, 1 Jan 2024 13:00:00 +0000",
        ),
        m(
            D,
            "Subject: alpha (fwd)\nDate: Mon, 1 Jan 2024 09:00:00 +0000",
        ),
        m(D, "Subject: gamma\nDate: Mon, 1 Jan 2024 08:00:00 +0000"),
        m(D, "Subject: Re: BETA\nDate: Mon, 1 Jan 2024 12:00:00 +0000"),
    ];
    let cmds = [
        "THREAD ORDEREDSUBJECT UTF-8 ALL",
        "THREAD ORDEREDSUBJECT UTF-8 1:4",
        "UID THREAD ORDEREDSUBJECT UTF-8 2:4",
    ];
    let got = run(&msgs, &cmds.map(c));
    expect(
        &got,
        &[
            // gamma (6, 08:00), alpha (5 09:00, 2 11:00, 4 13:00), beta (3 10:00, 1 and 7
            // at 12:00 by sequence)
            (
                "THREAD ORDEREDSUBJECT UTF-8 ALL",
                "OK (6)(5 (2)(4))(3 (1)(7))",
            ),
            ("THREAD ORDEREDSUBJECT UTF-8 1:4", "OK (3 1)(2 4)"),
            ("UID THREAD ORDEREDSUBJECT UTF-8 2:4", "OK (4)(3 5)"),
        ],
    );
}
