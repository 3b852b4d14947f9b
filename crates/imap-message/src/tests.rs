//! Crate tests: encoded IMAP output compared with RFC examples and Dovecot's answers.

use std::num::NonZeroU32;

use imap_codec::{
    CommandCodec, ResponseCodec,
    decode::Decoder,
    encode::Encoder,
    imap_types::{
        body::BodyStructure,
        command::{Command, CommandBody},
        core::Vec1,
        envelope::Envelope,
        extensions::{sort::SortCriterion, thread::Thread},
        fetch::{MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section},
        response::{Data, Response},
        search::SearchKey,
    },
};

use crate::*;

fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn encode_data(data: Data<'_>) -> String {
    let out = ResponseCodec::default()
        .encode(&Response::Data(data))
        .dump();
    String::from_utf8_lossy(&out).into_owned()
}

fn fetch_item(item: MessageDataItem<'_>) -> String {
    encode_data(Data::Fetch {
        seq: nz(1),
        items: Vec1::from(item),
    })
}

fn enc_envelope(e: Envelope<'static>) -> String {
    let s = fetch_item(MessageDataItem::Envelope(e));
    s.strip_prefix("* 1 FETCH (ENVELOPE ")
        .and_then(|s| s.strip_suffix(")\r\n"))
        .unwrap()
        .to_string()
}

fn enc_body(bs: BodyStructure<'static>, extended: bool) -> String {
    let (item, prefix) = if extended {
        (
            MessageDataItem::BodyStructure(bs),
            "* 1 FETCH (BODYSTRUCTURE ",
        )
    } else {
        (MessageDataItem::Body(bs), "* 1 FETCH (BODY ")
    };
    let s = fetch_item(item);
    s.strip_prefix(prefix)
        .and_then(|s| s.strip_suffix(")\r\n"))
        .unwrap()
        .to_string()
}

fn command(line: &str) -> Command<'static> {
    let line = format!("{line}\r\n");
    let (rest, cmd) = CommandCodec::default()
        .decode_static(line.as_bytes())
        .unwrap_or_else(|e| panic!("cannot parse {line:?}: {e:?}"));
    assert!(rest.is_empty());
    cmd
}

fn parse_section(s: &str) -> Option<Section<'static>> {
    match command(&format!("A FETCH 1 (BODY[{s}])")).body {
        CommandBody::Fetch {
            macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(items),
            ..
        } => match items.into_iter().next() {
            Some(MessageDataItemName::BodyExt { section, .. }) => section,
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
}

fn sec(msg: &[u8], s: &str) -> Option<String> {
    section(msg, parse_section(s).as_ref()).map(|v| String::from_utf8(v).unwrap())
}

/// Non-ASCII words and quoted strings become (non-synchronizing) literals.
fn utf8_to_literals(criteria: &str) -> String {
    let mut out = String::new();
    let mut chars = criteria.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            out.push(c);
            continue;
        }
        let mut word = String::new();
        let quoted = c == '"';
        if !quoted {
            word.push(c);
        }
        while let Some(&n) = chars.peek() {
            chars.next();
            if quoted && n == '"' {
                break;
            }
            if !quoted && n == ' ' {
                out.push_str(&literal_or(word.clone(), false));
                word.clear();
                out.push(' ');
                break;
            }
            word.push(n);
        }
        if !word.is_empty() || quoted {
            out.push_str(&literal_or(word, quoted));
        }
    }
    out
}

fn literal_or(word: String, quoted: bool) -> String {
    if word.is_ascii() {
        if quoted { format!("\"{word}\"") } else { word }
    } else {
        format!("{{{}+}}\r\n{word}", word.len())
    }
}

fn search_key(criteria: &str) -> SearchKey<'static> {
    let criteria = utf8_to_literals(criteria);
    match command(&format!("A SEARCH {criteria}")).body {
        CommandBody::Search { criteria, .. } => {
            let mut v = criteria.into_inner();
            if v.len() == 1 {
                v.pop().unwrap()
            } else {
                SearchKey::And(Vec1::try_from(v).unwrap())
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn sort_criteria(s: &str) -> Vec<SortCriterion> {
    match command(&format!("A SORT ({s}) UTF-8 ALL")).body {
        CommandBody::Sort { sort_criteria, .. } => sort_criteria.into_inner(),
        other => panic!("unexpected {other:?}"),
    }
}

fn enc_threads(t: Vec<Thread>) -> String {
    encode_data(Data::Thread(t))
}

// ------------------------------------------------------------------------------------------
// ENVELOPE

#[test]
fn envelope_rfc3501_example() {
    let msg = crlf(
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev1 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

Hello.
",
    );
    assert_eq!(
        enc_envelope(envelope(&msg)),
        "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \
         \"IMAP4rev1 WG mtg summary and minutes\" \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
         ((NIL NIL \"imap\" \"cac.washington.edu\")) \
         ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")\
         (\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \
         \"<B27397-0100000@cac.washington.edu>\")"
    );
}

#[test]
fn envelope_dovecot_all_fields() {
    let msg = crlf(
        "Message-ID: <msg@id>
In-Reply-To: <reply@to.id>
Date: Thu, 15 Feb 2007 01:02:03 +0200
Subject: subject header
From: From Real <fromuser@fromdomain.org>
To: To Real <touser@todomain.org>
Cc: Cc Real <ccuser@ccdomain.org>
Bcc: Bcc Real <bccuser@bccdomain.org>
Sender: Sender Real <senderuser@senderdomain.org>
Reply-To: ReplyTo Real <replytouser@replytodomain.org>

body
",
    );
    assert_eq!(
        enc_envelope(envelope(&msg)),
        "(\"Thu, 15 Feb 2007 01:02:03 +0200\" \"subject header\" \
         ((\"From Real\" NIL \"fromuser\" \"fromdomain.org\")) \
         ((\"Sender Real\" NIL \"senderuser\" \"senderdomain.org\")) \
         ((\"ReplyTo Real\" NIL \"replytouser\" \"replytodomain.org\")) \
         ((\"To Real\" NIL \"touser\" \"todomain.org\")) \
         ((\"Cc Real\" NIL \"ccuser\" \"ccdomain.org\")) \
         ((\"Bcc Real\" NIL \"bccuser\" \"bccdomain.org\")) \
         \"<reply@to.id>\" \"<msg@id>\")"
    );
}

#[test]
fn envelope_groups_comments_routes() {
    // Dovecot's imap-envelope test cases
    let msg = crlf(
        "Date: Thu, 15 Feb 2007 01:02:03 +0200
From: user@domain (Real Name)
To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;
Cc: group:;, group2: (foo) ;

body
",
    );
    assert_eq!(
        enc_envelope(envelope(&msg)),
        "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL \
         ((\"Real Name\" NIL \"user\" \"domain\")) \
         ((\"Real Name\" NIL \"user\" \"domain\")) \
         ((\"Real Name\" NIL \"user\" \"domain\")) \
         ((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL \"g2\" \"d2.org\")\
         (NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL \"g3\" \"d3.org\")(NIL NIL NIL NIL)) \
         ((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL)) \
         NIL NIL NIL)"
    );
    let msg = crlf(
        "Date: Thu, 15 Feb 2007 01:02:03 +0200
From: user@domain (Real Name)
Sender: 
Reply-To: 

body
",
    );
    assert_eq!(
        enc_envelope(envelope(&msg)),
        "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL \
         ((\"Real Name\" NIL \"user\" \"domain\")) \
         ((\"Real Name\" NIL \"user\" \"domain\")) \
         ((\"Real Name\" NIL \"user\" \"domain\")) NIL NIL NIL NIL NIL)"
    );
    let msg = crlf("Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: <@route:user@domain>\n\nbody\n");
    assert_eq!(
        enc_envelope(envelope(&msg)),
        "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL \
         ((NIL \"@route\" \"user\" \"domain\")) \
         ((NIL \"@route\" \"user\" \"domain\")) \
         ((NIL \"@route\" \"user\" \"domain\")) NIL NIL NIL NIL NIL)"
    );
}

#[test]
fn envelope_encoded_words_stay_raw() {
    let msg = crlf(
        "Subject: =?UTF-8?B?w6l0w6k=?=\n\t  report 
From: =?UTF-8?Q?Ren=C3=A9?= <rene@example.com>
To: \"Doe,   John\" <john@example.com>, \"q\\\"uote\" <q@example.com>

x
",
    );
    assert_eq!(
        enc_envelope(envelope(&msg)),
        "(NIL \"=?UTF-8?B?w6l0w6k=?= report\" \
         ((\"=?UTF-8?Q?Ren=C3=A9?=\" NIL \"rene\" \"example.com\")) \
         ((\"=?UTF-8?Q?Ren=C3=A9?=\" NIL \"rene\" \"example.com\")) \
         ((\"=?UTF-8?Q?Ren=C3=A9?=\" NIL \"rene\" \"example.com\")) \
         ((\"Doe, John\" NIL \"john\" \"example.com\")(\"q\\\"uote\" NIL \"q\" \"example.com\")) \
         NIL NIL NIL NIL)"
    );
    // raw 8-bit goes out as a literal
    let msg = crlf("Subject: Grüße\n\nx\n");
    assert_eq!(
        enc_envelope(envelope(&msg)),
        "(NIL {7}\r\nGrüße NIL NIL NIL NIL NIL NIL NIL NIL)"
    );
    // empty message
    assert_eq!(
        enc_envelope(envelope(b"")),
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    );
}

// ------------------------------------------------------------------------------------------
// BODY / BODYSTRUCTURE

#[test]
fn bodystructure_simple_text() {
    let msg = crlf("From: a@example.com\nSubject: hi\n\nHello\nWorld\n");
    assert_eq!(
        enc_body(body_structure(&msg, false), false),
        "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 2)"
    );
    assert_eq!(
        enc_body(body_structure(&msg, true), true),
        "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 2 NIL NIL NIL NIL)"
    );
}

fn rfc3501_body_example() -> Vec<u8> {
    // sized so that BODY gives exactly the RFC 3501 §7.4.2 example
    let mut text = String::new();
    for _ in 0..22 {
        text.push_str(&"x".repeat(48));
        text.push_str("\r\n");
    }
    text.push_str(&"y".repeat(50));
    text.push_str("\r\n");
    assert_eq!(text.len(), 1152);
    let mut b64 = String::new();
    for _ in 0..72 {
        b64.push_str(&"Q".repeat(60));
        b64.push_str("\r\n");
    }
    b64.push_str(&"Q".repeat(88));
    b64.push_str("\r\n");
    assert_eq!(b64.len(), 4554);
    let mut m = crlf(
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
MIME-Version: 1.0
Content-Type: MULTIPART/MIXED; BOUNDARY=\"16819560-2078917053-688350843:#11603\"

--16819560-2078917053-688350843:#11603
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

",
    );
    m.extend_from_slice(text.as_bytes());
    m.extend_from_slice(&crlf(
        "
--16819560-2078917053-688350843:#11603
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff
Content-ID: <960723163407.20117h@cac.washington.edu>
Content-Description: Compiler diff
Content-Transfer-Encoding: BASE64

",
    ));
    m.extend_from_slice(b64.as_bytes());
    m.extend_from_slice(&crlf("\n--16819560-2078917053-688350843:#11603--\n"));
    m
}

#[test]
fn body_rfc3501_example() {
    let msg = rfc3501_body_example();
    assert_eq!(
        enc_body(body_structure(&msg, false), false),
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 1152 23)\
         (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") \
         \"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" \"BASE64\" 4554 73) \
         \"MIXED\")"
    );
}

#[test]
fn bodystructure_alternative() {
    let msg = crlf(
        "Content-Type: multipart/alternative; boundary=\"alt\"

--alt
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

Hi=20there
--alt
Content-Type: text/html; charset=UTF-8

<p>Hi there</p>
--alt--
",
    );
    assert_eq!(
        enc_body(body_structure(&msg, true), true),
        "((\"TEXT\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"quoted-printable\" 10 0 NIL NIL NIL NIL)\
         (\"TEXT\" \"html\" (\"charset\" \"UTF-8\") NIL NIL \"7bit\" 15 0 NIL NIL NIL NIL) \
         \"alternative\" (\"boundary\" \"alt\") NIL NIL NIL)"
    );
    assert_eq!(
        enc_body(body_structure(&msg, false), false),
        "((\"TEXT\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"quoted-printable\" 10 0)\
         (\"TEXT\" \"html\" (\"charset\" \"UTF-8\") NIL NIL \"7bit\" 15 0) \"alternative\")"
    );
}

const MIXED: &str = "From: a@example.com
Content-Type: multipart/mixed; boundary=\"mix\"

--mix
Content-Type: text/plain

See attached.

--mix
Content-Type: application/pdf; name=\"doc.pdf\"
Content-Disposition: attachment; filename=\"doc.pdf\"
Content-Transfer-Encoding: base64
Content-ID: <att1@example.com>
Content-Description: The document
Content-Language: en

JVBERi0xLjQK
JSVFT0YK
--mix--
";

#[test]
fn bodystructure_mixed_with_attachment() {
    let msg = crlf(MIXED);
    assert_eq!(
        enc_body(body_structure(&msg, true), true),
        "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 15 1 NIL NIL NIL NIL)\
         (\"application\" \"pdf\" (\"name\" \"doc.pdf\") \"<att1@example.com>\" \"The document\" \
         \"base64\" 22 NIL (\"attachment\" (\"filename\" \"doc.pdf\")) (\"en\") NIL) \
         \"mixed\" (\"boundary\" \"mix\") NIL NIL NIL)"
    );
    assert_eq!(
        enc_body(body_structure(&msg, false), false),
        "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 15 1)\
         (\"application\" \"pdf\" (\"name\" \"doc.pdf\") \"<att1@example.com>\" \"The document\" \
         \"base64\" 22) \"mixed\")"
    );
    assert_eq!(
        binary_section(&msg, &[nz(2)]).unwrap(),
        b"%PDF-1.4\n%%EOF\n"
    );
    assert_eq!(binary_size(&msg, &[nz(2)]), Ok(15));
}

/// Dovecot's test-imap-bodystructure message (with CRLF, so its virtual sizes apply).
const DOVECOT_MSG: &str = "From: user@domain.org
Date: Sat, 24 Mar 2007 23:00:00 +0200
Mime-Version: 1.0
Content-Type: multipart/mixed; boundary=\"foo
 bar\"

Root MIME prologue

--foo bar
Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"
Content-ID: <foo@example.com>
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Disposition: inline; foo=bar
Content-Description: hellodescription
Content-Language: en, fi, se
Content-Location: http://example.com/test.txt

hello

--foo bar
Content-Type: message/rfc822

From: sub@domain.org
To: sub-to1@domain.org, sub-to2@domain.org
Date: Sun, 12 Aug 2012 12:34:56 +0300
Subject: submsg
Content-Type: multipart/alternative; boundary=\"sub1\"

Sub MIME prologue
--sub1
Content-Type: text/html
Content-Transfer-Encoding: 8bit

<p>Hello world</p>

--sub1
Content-Type: text/plain
Content-Transfer-Encoding: ?invalid

Hello another world

--sub1--
Sub MIME epilogue

--foo bar--
Root MIME epilogue
";

#[test]
fn bodystructure_dovecot_nested_message() {
    let msg = crlf(DOVECOT_MSG);
    // Dovecot's expected strings, with imap-codec's fixed "TEXT" / "MESSAGE" "RFC822" spelling
    let bodystructure = "(\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"inline\" (\"foo\" \"bar\")) (\"en\" \"fi\" \"se\") \"http://example.com/test.txt\")(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 412 (\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub-to1\" \"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) ((\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1 NIL NIL NIL NIL)(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"sub1\") NIL NIL NIL) 21 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL";
    let body = "(\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1)(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 412 (\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub-to1\" \"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) ((\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1)(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1) \"alternative\") 21) \"mixed\"";
    assert_eq!(
        enc_body(body_structure(&msg, true), true),
        format!("({bodystructure})")
    );
    assert_eq!(
        enc_body(body_structure(&msg, false), false),
        format!("({body})")
    );
    // sections of the nested message
    assert_eq!(sec(&msg, "2.1").as_deref(), Some("<p>Hello world</p>\r\n"));
    assert_eq!(sec(&msg, "2.2").as_deref(), Some("Hello another world\r\n"));
    assert_eq!(sec(&msg, "2.1.1"), None);
    assert_eq!(
        sec(&msg, "2.2.MIME").as_deref(),
        Some("Content-Type: text/plain\r\nContent-Transfer-Encoding: ?invalid\r\n\r\n")
    );
    assert_eq!(
        sec(&msg, "2.HEADER.FIELDS (subject)").as_deref(),
        Some("Subject: submsg\r\n\r\n")
    );
    // the unknown transfer encoding of 2.2 is refused for BINARY
    assert_eq!(
        binary_section(&msg, &[nz(2), nz(2)]),
        Err(BinaryError::UnknownCte)
    );
    assert_eq!(
        binary_section(&msg, &[nz(2), nz(1)]).unwrap(),
        b"<p>Hello world</p>\r\n"
    );
}

#[test]
fn bodystructure_digest_defaults_to_message() {
    let msg = crlf(
        "Content-Type: multipart/digest; boundary=d

--d

Subject: one

first
--d
Content-Type: text/plain

plain
--d--
",
    );
    assert_eq!(
        enc_body(body_structure(&msg, false), false),
        "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 21 \
         (NIL \"one\" NIL NIL NIL NIL NIL NIL NIL NIL) \
         (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0) 2)\
         (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0) \"digest\")"
    );
}

// ------------------------------------------------------------------------------------------
// sections

const NESTED: &str = "From: a@b
Subject: nested
Content-Type: multipart/mixed; boundary=\"outer\"

preamble
--outer
Content-Type: text/plain

part one
--outer
Content-Type: multipart/alternative; boundary=\"inner\"

--inner
Content-Type: text/plain

inner plain
--inner
Content-Type: text/html

<b>inner html</b>
--inner--
--outer
Content-Type: message/rfc822

From: c@d
Subject: embedded

embedded body
--outer
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

aGVsbG8gd29ybGQ=
--outer--
epilogue
";

#[test]
fn sections_nested() {
    let msg = crlf(NESTED);
    let s = |x: &str| sec(&msg, x);
    assert_eq!(s("").unwrap().as_bytes(), msg.as_slice());
    assert_eq!(
        s("HEADER").as_deref(),
        Some(
            "From: a@b\r\nSubject: nested\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
        )
    );
    assert!(s("TEXT").unwrap().starts_with("preamble\r\n--outer"));
    assert!(s("TEXT").unwrap().ends_with("--outer--\r\nepilogue\r\n"));
    assert_eq!(
        s("HEADER.FIELDS (SUBJECT from)").as_deref(),
        Some("From: a@b\r\nSubject: nested\r\n\r\n")
    );
    assert_eq!(
        s("HEADER.FIELDS.NOT (Content-Type FROM)").as_deref(),
        Some("Subject: nested\r\n\r\n")
    );
    assert_eq!(s("HEADER.FIELDS (X-None)").as_deref(), Some("\r\n"));
    assert_eq!(s("1").as_deref(), Some("part one"));
    assert_eq!(
        s("1.MIME").as_deref(),
        Some("Content-Type: text/plain\r\n\r\n")
    );
    assert_eq!(
        s("2").as_deref(),
        Some(
            "--inner\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n--inner\r\n\
             Content-Type: text/html\r\n\r\n<b>inner html</b>\r\n--inner--"
        )
    );
    assert_eq!(s("2.1").as_deref(), Some("inner plain"));
    assert_eq!(s("2.2").as_deref(), Some("<b>inner html</b>"));
    assert_eq!(
        s("2.2.MIME").as_deref(),
        Some("Content-Type: text/html\r\n\r\n")
    );
    assert_eq!(
        s("3").as_deref(),
        Some("From: c@d\r\nSubject: embedded\r\n\r\nembedded body")
    );
    assert_eq!(
        s("3.HEADER").as_deref(),
        Some("From: c@d\r\nSubject: embedded\r\n\r\n")
    );
    assert_eq!(s("3.TEXT").as_deref(), Some("embedded body"));
    assert_eq!(s("3.1").as_deref(), Some("embedded body"));
    assert_eq!(
        s("3.HEADER.FIELDS (subject)").as_deref(),
        Some("Subject: embedded\r\n\r\n")
    );
    assert_eq!(
        s("3.HEADER.FIELDS.NOT (subject)").as_deref(),
        Some("From: c@d\r\n\r\n")
    );
    assert_eq!(
        s("3.MIME").as_deref(),
        Some("Content-Type: message/rfc822\r\n\r\n")
    );
    assert_eq!(s("4").as_deref(), Some("aGVsbG8gd29ybGQ="));
    // sections that do not exist
    assert_eq!(s("5"), None);
    assert_eq!(s("1.1"), None);
    assert_eq!(s("1.HEADER"), None);
    assert_eq!(s("1.TEXT"), None);
    assert_eq!(s("3.2"), None);
    assert_eq!(s("2.3.MIME"), None);
    // BINARY
    assert_eq!(binary_section(&msg, &[nz(4)]).unwrap(), b"hello world");
    assert_eq!(binary_size(&msg, &[nz(4)]), Ok(11));
    assert_eq!(binary_section(&msg, &[nz(1)]).unwrap(), b"part one");
    assert_eq!(binary_section(&msg, &[nz(9)]), Err(BinaryError::NoSuchPart));
    assert_eq!(binary_section(&msg, &[]).unwrap(), msg);
}

#[test]
fn sections_single_part() {
    let msg = crlf("Subject: x\nContent-Transfer-Encoding: quoted-printable\n\nsoft=\nbreak =3D\n");
    assert_eq!(sec(&msg, "1").as_deref(), Some("soft=\r\nbreak =3D\r\n"));
    assert_eq!(sec(&msg, "TEXT"), sec(&msg, "1"));
    assert_eq!(sec(&msg, "1.MIME"), sec(&msg, "HEADER"));
    assert_eq!(sec(&msg, "2"), None);
    assert_eq!(binary_section(&msg, &[nz(1)]).unwrap(), b"softbreak =\r\n");
    let msg = crlf("Content-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n");
    assert_eq!(binary_section(&msg, &[nz(1)]), Err(BinaryError::UnknownCte));
    // folded header fields are returned with their folding
    let msg = crlf("Subject: a\n  b\nX-Other: 1\n\nbody");
    assert_eq!(
        sec(&msg, "HEADER.FIELDS (SUBJECT)").as_deref(),
        Some("Subject: a\r\n  b\r\n\r\n")
    );
    // no blank line: everything is header
    let msg = b"Subject: only header\r\n";
    assert_eq!(
        sec(msg, "HEADER").as_deref(),
        Some("Subject: only header\r\n")
    );
    assert_eq!(sec(msg, "TEXT").as_deref(), Some(""));
}

/// RFC 3516 §4.2 BINARY.SIZE is the size of the decoded part, and RFC 2046 §5.1.1: "the CRLF
/// preceding the boundary delimiter line is conceptually attached to the boundary", so it is
/// not part of the body part (BODY[1] and BINARY[1] agree). The boundary parameter may be
/// folded (RFC 2231/5322 unfolding: `"foo<CRLF> bar"` is `foo bar`).
#[test]
fn binary_size_is_the_decoded_part() {
    let m = crlf(
        "From: user@domain.org\nMime-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"foo\n bar\"\n\nprologue\n\n--foo bar\nContent-Type: text/x-myown; charset=us-ascii\n\nhello\n\n--foo bar\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8h\n\n--foo bar\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nh=C3=A9llo=\n\n--foo bar--\nepilogue\n",
    );
    let p = |n: &[u32]| n.iter().map(|&x| nz(x)).collect::<Vec<_>>();
    assert_eq!(sec(&m, "1").as_deref(), Some("hello\r\n"));
    assert_eq!(binary_section(&m, &p(&[1])).unwrap(), b"hello\r\n");
    assert_eq!(binary_size(&m, &p(&[1])).unwrap(), 7);
    assert_eq!(binary_section(&m, &p(&[2])).unwrap(), b"hello!");
    assert_eq!(binary_size(&m, &p(&[2])).unwrap(), 6);
    assert_eq!(binary_section(&m, &p(&[3])).unwrap(), "héllo".as_bytes());
    assert_eq!(binary_size(&m, &p(&[3])).unwrap(), 6);
}

#[test]
fn partial_windows() {
    let d = b"0123456789";
    assert_eq!(partial(d, 0, 4), b"0123");
    assert_eq!(partial(d, 8, 100), b"89");
    assert_eq!(partial(d, 10, 1), b"");
    assert_eq!(partial(d, 100, 1), b"");
    assert_eq!(partial(d, u32::MAX, u32::MAX), b"");
    assert_eq!(partial(d, 3, 0), b"");
}

#[test]
fn header_helpers() {
    let msg = crlf("Subject: =?utf-8?q?caf=C3=A9?=\n  today\nReceived: a\nReceived: b\n\nbody\n");
    assert_eq!(
        header_value(&msg, "subject").unwrap(),
        b"=?utf-8?q?caf=C3=A9?=  today"
    );
    assert_eq!(
        header_values(&msg, "RECEIVED"),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(decoded_header_value(&msg, "Subject").unwrap(), "café today");
    assert_eq!(header_value(&msg, "X-None"), None);
    assert_eq!(header_block(&msg).len() + body_text(&msg).len(), msg.len());
}

// ------------------------------------------------------------------------------------------
// SEARCH

struct TestMsg {
    seq: u32,
    uid: u32,
    flags: [bool; 6],
    keywords: Vec<String>,
    size: u64,
    internal_date: i64,
    modseq: u64,
    raw: Vec<u8>,
    loads: usize,
    summary: Option<Summary>,
}

impl TestMsg {
    fn new(raw: Vec<u8>) -> Self {
        Self {
            seq: 2,
            uid: 20,
            flags: [false; 6],
            keywords: vec!["$Work".into()],
            size: raw.len() as u64,
            internal_date: 1_706_745_600, // 2024-02-01 00:00:00 UTC
            modseq: 7,
            raw,
            loads: 0,
            summary: None,
        }
    }
}

impl SearchMessage for TestMsg {
    fn seq(&self) -> u32 {
        self.seq
    }
    fn uid(&self) -> u32 {
        self.uid
    }
    fn flags(&self) -> MessageFlags<'_> {
        let [seen, answered, flagged, deleted, draft, recent] = self.flags;
        MessageFlags {
            seen,
            answered,
            flagged,
            deleted,
            draft,
            recent,
            keywords: &self.keywords,
        }
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn internal_date(&self) -> i64 {
        self.internal_date
    }
    fn modseq(&self) -> u64 {
        self.modseq
    }
    fn raw(&mut self) -> Option<&[u8]> {
        self.loads += 1;
        Some(&self.raw)
    }
    fn summary(&mut self) -> Option<&Summary> {
        self.summary.as_ref()
    }
}

fn search_msg() -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let html = b64.encode(b"<p>Sch\xf6ne Gr\xfc\xdfe</p>");
    let bin = b64.encode(b"secretbinaryword");
    crlf(&format!(
        "Date: Mon, 15 Jan 2024 23:30:00 -0800
From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.com>
To: Alice <alice@example.org>, bob@example.net
Cc: carol@example.com
Bcc: dave@secret.example
Subject: =?iso-8859-1?q?Caf=E9?= meeting
X-Priority: High
Message-ID: <m1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"b1\"

--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Gr=C3=BC=C3=9Fe aus K=C3=B6ln, see the attach=
ment.
--b1
Content-Type: text/html; charset=iso-8859-1
Content-Transfer-Encoding: base64

{html}
--b1
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

{bin}
--b1
Content-Type: message/rfc822

Subject: inner subject line

inner body text
--b1--
"
    ))
}

#[test]
fn search_each_key() {
    let env = SearchEnv {
        max_seq: 5,
        max_uid: 50,
    };
    let mut m = TestMsg::new(search_msg());
    let t = |criteria: &str, m: &mut TestMsg| matches(&search_key(criteria), m, &env);
    let cases: &[(&str, bool)] = &[
        ("ALL", true),
        ("ANSWERED", false),
        ("UNANSWERED", true),
        ("DELETED", false),
        ("UNDELETED", true),
        ("DRAFT", false),
        ("UNDRAFT", true),
        ("FLAGGED", false),
        ("UNFLAGGED", true),
        ("SEEN", false),
        ("UNSEEN", true),
        ("RECENT", false),
        ("OLD", true),
        ("NEW", false),
        ("KEYWORD $work", true),
        ("KEYWORD $Other", false),
        ("UNKEYWORD $Other", true),
        ("UNKEYWORD $WORK", false),
        ("BCC dave", true),
        ("BCC alice", false),
        ("CC CAROL@example", true),
        ("FROM \"jörg müller\"", true),
        ("FROM joerg@example.com", true),
        ("FROM alice", false),
        ("TO alice", true),
        ("TO bob@example.net", true),
        ("TO carol", false),
        ("SUBJECT café", true),
        ("SUBJECT CAFÉ", true),
        ("SUBJECT \"cafe\"", false),
        ("SUBJECT inner", false),
        ("HEADER X-Priority high", true),
        ("HEADER x-priority \"\"", true),
        ("HEADER X-Missing \"\"", false),
        ("HEADER Message-ID m1@example", true),
        ("BODY grüße", true),
        ("BODY \"GRÜSSE\"", false),
        ("BODY köln", true),
        ("BODY attachment", true),
        ("BODY \"SCHÖNE\"", true),
        ("BODY secretbinaryword", false),
        ("BODY \"inner subject\"", true),
        ("BODY \"inner body\"", true),
        ("BODY meeting", false),
        ("TEXT meeting", true),
        ("TEXT x-priority", true),
        ("TEXT köln", true),
        ("TEXT nothing-like-this", false),
        ("LARGER 10", true),
        ("LARGER 100000", false),
        ("SMALLER 100000", true),
        ("SMALLER 10", false),
        ("BEFORE 1-Feb-2024", false),
        ("BEFORE 2-Feb-2024", true),
        ("ON 1-Feb-2024", true),
        ("ON 31-Jan-2024", false),
        ("SINCE 1-Feb-2024", true),
        ("SINCE 2-Feb-2024", false),
        ("SENTON 15-Jan-2024", true),
        ("SENTON 16-Jan-2024", false),
        ("SENTBEFORE 16-Jan-2024", true),
        ("SENTBEFORE 15-Jan-2024", false),
        ("SENTSINCE 15-Jan-2024", true),
        ("SENTSINCE 16-Jan-2024", false),
        ("2", true),
        ("1,3:*", false),
        ("2:*", true),
        ("*", false),
        ("UID 20", true),
        ("UID 21:*", false),
        ("UID 1:19,20", true),
        ("UID *:10", true),
        ("NOT SEEN", true),
        ("NOT 2", false),
        ("OR SEEN FROM joerg", true),
        ("OR SEEN DELETED", false),
        ("(FROM joerg TO alice)", true),
        ("(FROM joerg TO nobody)", false),
        ("FROM joerg TO alice UNSEEN", true),
        ("MODSEQ 7", true),
        ("MODSEQ 8", false),
    ];
    for (criteria, expected) in cases {
        assert_eq!(t(criteria, &mut m), *expected, "SEARCH {criteria}");
    }
    m.flags = [true; 6];
    m.keywords.clear();
    for (criteria, expected) in [
        ("ANSWERED", true),
        ("DELETED", true),
        ("DRAFT", true),
        ("FLAGGED", true),
        ("SEEN", true),
        ("RECENT", true),
        ("NEW", false),
        ("OLD", false),
        ("KEYWORD $Work", false),
    ] {
        assert_eq!(
            t(criteria, &mut m),
            expected,
            "SEARCH {criteria} (flags set)"
        );
    }
    m.flags = [false, false, false, false, false, true];
    assert!(t("NEW", &mut m));
}

/// RFC 9051 §6.4.4: FROM/TO/CC/BCC match when the field "contains the specified string";
/// the field is the decoded address list (display names and addresses, encoded words,
/// groups), so CFWS inside an address (RFC 5322 §3.4.1, comments and folding around `@`)
/// does not hide it, as in Dovecot's imaptest search-addresses.
#[test]
fn search_address_keys_match_decoded_addresses() {
    let env = SearchEnv {
        max_seq: 5,
        max_uid: 50,
    };
    let t = |criteria: &str, header: &str| {
        let mut m = TestMsg::new(crlf(&format!("{header}\nSubject: s\n\nbody\n")));
        matches(&search_key(criteria), &mut m, &env)
    };
    let hit = "user-from@domain.org";
    for from in [
        "From: user-from@domain.org",
        "From: <user-from@domain.org>",
        "From: User <user-from@domain.org>",
        "From: \"Quoted, Name\" <user-from@domain.org>",
        "From: <user-from (comment)@ (comment) domain.org>",
        "From: user-from (comment) @ (c2) domain.org (trailing)",
        "From: user-from@\n domain.org",
        "From: \"user-from\"@domain.org",
        "From: =?utf-8?q?J=C3=B6rg?= <user-from@domain.org>",
        "From: Group: a@b.example, user-from@domain.org;",
        "From: Group: a@b.example, <user-from (c)@ domain.org>;",
    ] {
        assert!(t(&format!("FROM {hit}"), from), "FROM {hit} in {from:?}");
        // case-insensitive
        assert!(
            t("FROM USER-FROM@DOMAIN.ORG", from),
            "upper case in {from:?}"
        );
    }
    // display names are decoded, and matched together with the address
    let jm = "From: \"=?utf-8?q?J=C3=B6rg?= =?utf-8?q?_M=C3=BCller?=\" <joerg@example.com>";
    assert!(t("FROM \"Jörg Müller\"", jm));
    assert!(t("FROM \"jörg müller <joerg@example.com>\"", jm));
    assert!(t("FROM \"Müller <joerg@\"", jm));
    assert!(!t("FROM \"Jorg\"", jm));
    // the group's name is part of the field
    let group = "To: Team Members: a@b.example, <user-to (c)@ domain.org>;";
    assert!(t("TO user-to@domain.org", group));
    assert!(t("TO \"team members\"", group));
    // each key looks at its own field only
    let to_only = "From: someone@else.example\nTo: <user-from (c)@ domain.org>";
    assert!(!t(&format!("FROM {hit}"), to_only));
    assert!(t(&format!("TO {hit}"), to_only));
    assert!(!t(&format!("CC {hit}"), to_only));
    assert!(t(
        "CC user-cc@domain.org",
        "Cc: <user-cc (x)@ (y) domain.org>"
    ));
    assert!(t("BCC user-bcc@domain.org", "Bcc: user-bcc (x)@domain.org"));
    // a partial address still matches as a substring
    assert!(t("FROM from@dom", "From: <user-from (c)@ domain.org>"));
}

#[test]
fn search_loads_content_lazily() {
    let key = search_key("SEEN LARGER 1");
    assert!(!needs_content(&key));
    let mut m = TestMsg::new(search_msg());
    assert!(!matches(&key, &mut m, &SearchEnv::default()));
    assert_eq!(m.loads, 0);

    let key = search_key("FROM joerg SUBJECT café SENTON 15-Jan-2024");
    assert!(needs_content(&key));
    assert!(!needs_body(&key));
    assert!(matches(&key, &mut m, &SearchEnv::default()));
    assert_eq!(m.loads, 1, "content loaded once per evaluation");

    // with a summary, header keys do not load the message
    let mut m = TestMsg::new(search_msg());
    m.summary = Some(Summary::from_message(&m.raw));
    assert!(matches(&key, &mut m, &SearchEnv::default()));
    assert_eq!(m.loads, 0);
    let key = search_key("BODY köln");
    assert!(needs_body(&key));
    assert!(matches(&key, &mut m, &SearchEnv::default()));
    assert_eq!(m.loads, 1);
    assert!(needs_content(&search_key("NOT OR SEEN TEXT x")));
    assert!(!needs_content(&search_key("NOT OR SEEN UID 1:*")));
}

#[test]
fn search_without_date_header_uses_internal_date() {
    let mut m = TestMsg::new(crlf("Subject: x\n\nbody\n"));
    let env = SearchEnv::default();
    assert!(matches(&search_key("SENTON 1-Feb-2024"), &mut m, &env));
    let mut m = TestMsg::new(crlf("Date: garbage\n\nbody\n"));
    assert!(matches(&search_key("SENTON 1-Feb-2024"), &mut m, &env));
}

// ------------------------------------------------------------------------------------------
// SORT

#[test]
fn base_subjects_rfc5256() {
    let cases: &[(&str, &str, bool)] = &[
        ("test", "test", false),
        ("Re: test", "test", true),
        ("RE:   test  ", "test", true),
        ("Re: Re: test", "test", true),
        ("Fwd: test", "test", true),
        ("Fw: test", "test", true),
        ("re[2]: test", "test", true),
        ("Re: [list] Re: test", "test", true),
        ("[list] Re: test", "test", true),
        ("[a][b] test", "test", false),
        ("[PATCH]", "[patch]", false),
        ("test (fwd)", "test", true),
        ("test (FWD) (fwd)", "test", true),
        ("[fwd: test]", "test", true),
        ("Re: [Fwd: Re: hello] (fwd)", "hello", true),
        ("re:", "", true),
        ("", "", false),
        ("HeLLo\tWorld", "hello world", false),
        ("Réponse: x", "réponse: x", false),
        ("[unterminated blob", "[unterminated blob", false),
    ];
    for (subject, base, reply) in cases {
        assert_eq!(
            base_subject(subject),
            (base.to_string(), *reply),
            "base subject of {subject:?}"
        );
    }
    let f = SortFields::from_message(&crlf("Subject: =?utf-8?q?Re=3A_Caf=C3=A9?=\n\n"));
    assert_eq!(f.subject, "café");
    assert!(f.subject_is_reply);
}

fn sort_item(seq: u32, internal_date: i64, size: u64, header: &str) -> SortItem {
    SortItem {
        seq,
        uid: seq * 10,
        internal_date,
        size,
        fields: SortFields::from_message(&crlf(&format!("{header}\n\n"))),
    }
}

fn sorted(criteria: &str, items: &[SortItem]) -> Vec<u32> {
    let mut v = items.to_vec();
    sort(&sort_criteria(criteria), &mut v);
    v.iter().map(|i| i.seq).collect()
}

#[test]
fn sort_by_each_criterion() {
    let items = vec![
        sort_item(
            1,
            300,
            50,
            "Date: Tue, 2 Jan 2024 10:00:00 +0000\nFrom: Zed <zed@x>\nTo: bob@x\nCc: mike@x\nSubject: Re: banana",
        ),
        sort_item(
            2,
            100,
            70,
            "Date: Tue, 2 Jan 2024 09:00:00 -0200\nFrom: \"Anna\" <yolanda@x>\nTo: \"Zoe\" <alice@x>\nSubject: apple",
        ),
        sort_item(
            3,
            200,
            60,
            "Date: Mon, 1 Jan 2024 10:00:00 +0000\nFrom: mike@x\nTo: carl@x\nCc: anne@x\nSubject: [list] Cherry",
        ),
        sort_item(4, 200, 50, "From: BOB@x\nSubject: Fwd: apple"),
    ];
    assert_eq!(sorted("ARRIVAL", &items), vec![2, 3, 4, 1]);
    assert_eq!(sorted("REVERSE ARRIVAL", &items), vec![1, 3, 4, 2]);
    // 4 has no Date: its INTERNALDATE (200) sorts it before the 2024 dates
    assert_eq!(sorted("DATE", &items), vec![4, 3, 1, 2]);
    assert_eq!(sorted("SIZE", &items), vec![1, 4, 3, 2]);
    assert_eq!(sorted("REVERSE SIZE", &items), vec![2, 3, 1, 4]);
    assert_eq!(sorted("SUBJECT", &items), vec![2, 4, 1, 3]);
    assert_eq!(sorted("SUBJECT REVERSE ARRIVAL", &items), vec![4, 2, 1, 3]);
    assert_eq!(sorted("FROM", &items), vec![4, 3, 2, 1]);
    assert_eq!(sorted("TO", &items), vec![4, 2, 1, 3]);
    assert_eq!(sorted("CC", &items), vec![2, 4, 3, 1]);
    assert_eq!(sorted("DISPLAYFROM", &items), vec![2, 4, 3, 1]);
    assert_eq!(sorted("DISPLAYTO", &items), vec![4, 1, 3, 2]);
    assert_eq!(sorted("REVERSE SUBJECT SIZE", &items), vec![3, 1, 4, 2]);
}

/// RFC 5256 §3: strings compare with i;ascii-casemap (RFC 4790 §9.2: a-z mapped to A-Z, then
/// octets), so `_` (0x5F) and `[` (0x5B) sort after letters; SUBJECT is the §2.1 base subject;
/// a missing field is the empty string; ties go by sequence number, REVERSE applies to its own
/// key only.
#[test]
fn sort_subject_rfc5256_base_subject_and_casemap() {
    let subjects = [
        Some("a"),
        Some("C"),
        Some("b"),
        Some("_"),
        Some("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)"),
        Some("b (a)"),
        Some("Re: [FWD: c]"),
        Some("[xyz]"),
        None,
    ];
    let items: Vec<SortItem> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = i as u32 + 1;
            let header = s.map_or("X-None: 1".to_string(), |s| format!("Subject: {s}"));
            // sizes grow with the sequence number
            sort_item(n, 0, u64::from(n) * 10, &header)
        })
        .collect();
    assert_eq!(sorted("SUBJECT", &items), vec![9, 1, 3, 5, 6, 2, 7, 8, 4]);
    assert_eq!(
        sorted("REVERSE SUBJECT", &items),
        vec![4, 8, 2, 7, 6, 3, 5, 1, 9]
    );
    assert_eq!(
        sorted("SUBJECT REVERSE SIZE", &items),
        vec![9, 1, 5, 3, 6, 7, 2, 8, 4]
    );
}

/// RFC 5256 §3: FROM/TO/CC sort by the addr-mailbox (local part, as in ENVELOPE) of the first
/// address, not by display name or domain; i;ascii-casemap; a group's first address is the
/// group itself (ENVELOPE's group start carries the group name as addr-mailbox).
#[test]
fn sort_addresses_by_first_addr_mailbox() {
    let items = vec![
        sort_item(
            1,
            0,
            1,
            "From: Aaron <_under@a.example>\nTo: bob@z.example, aaa@a.example\nCc: \"Zed\" <Yankee@b.example>",
        ),
        sort_item(
            2,
            0,
            1,
            "From: zed <Yankee@a.example>\nTo: Bob@y.example\nCc: (c) alpha (c)@ (c) z.example",
        ),
        sort_item(
            3,
            0,
            1,
            "From: Group: bravo@x.example;\nTo: Team: ;\nCc: Charlie@x.example",
        ),
        sort_item(4, 0, 1, "Subject: no addresses"),
    ];
    // "" < GROUP < YANKEE < _UNDER
    assert_eq!(sorted("FROM", &items), vec![4, 3, 2, 1]);
    assert_eq!(sorted("REVERSE FROM", &items), vec![1, 2, 3, 4]);
    // "" < BOB = BOB < TEAM
    assert_eq!(sorted("TO", &items), vec![4, 1, 2, 3]);
    assert_eq!(sorted("TO REVERSE ARRIVAL", &items), vec![4, 1, 2, 3]);
    assert_eq!(sorted("REVERSE TO", &items), vec![3, 1, 2, 4]);
    assert_eq!(sorted("REVERSE TO REVERSE SIZE", &items), vec![3, 1, 2, 4]);
    // "" < ALPHA < CHARLIE < YANKEE
    assert_eq!(sorted("CC", &items), vec![4, 2, 3, 1]);
    assert_eq!(sorted("REVERSE CC", &items), vec![1, 3, 2, 4]);
}

// ------------------------------------------------------------------------------------------
// THREAD

fn thread_items() -> Vec<SortItem> {
    let h = [
        "Message-ID: <1@x>\nSubject: A",
        "Message-ID: <2@x>\nReferences: <1@x>\nSubject: Re: A",
        "Message-ID: <3@x>\nReferences: <1@x> <2@x>\nSubject: Re: A",
        "Message-ID: <4@x>\nReferences: <missing@x>\nSubject: B",
        "Message-ID: <5@x>\nReferences: <missing@x>\nSubject: Re: B",
        "Message-ID: <6@x>\nSubject: C",
        "Message-ID: <7@x>\nIn-Reply-To: <2@x> (sent by x)\nSubject: Re: A",
        "Message-ID: <8@x>\nSubject: Re: C",
        "Message-ID: <9@x>\nReferences: <gone@x>\nSubject: D",
        "Message-ID: <10@x>\nSubject: D",
    ];
    h.iter()
        .enumerate()
        .map(|(i, h)| {
            let n = i as u32 + 1;
            let date = format!("Date: Mon, 1 Jan 2024 {n:02}:00:00 +0000\n");
            sort_item(n, 0, 10, &format!("{date}{h}"))
        })
        .collect()
}

#[test]
fn thread_references_tree() {
    let items = thread_items();
    assert_eq!(
        enc_threads(thread_references(&items, false)),
        "* THREAD (1 2 (3)(7))((4)(5))(6 8)((9)(10))\r\n"
    );
    assert_eq!(
        enc_threads(thread_references(&items, true)),
        "* THREAD (10 20 (30)(70))((40)(50))(60 80)((90)(100))\r\n"
    );
    // input order does not matter
    let mut rev = items.clone();
    rev.reverse();
    assert_eq!(
        enc_threads(thread_references(&rev, false)),
        "* THREAD (1 2 (3)(7))((4)(5))(6 8)((9)(10))\r\n"
    );
    // a dummy parent of a single message is dropped
    let single = vec![items[8].clone()];
    assert_eq!(
        enc_threads(thread_references(&single, false)),
        "* THREAD (9)\r\n"
    );
    assert_eq!(
        enc_threads(thread_references::<SortItem>(&[], false)),
        "* THREAD\r\n"
    );
}

/// RFC 5256 §2.2 THREAD=REFERENCES, step by step.
#[test]
fn thread_references_rfc5256_steps() {
    let th = |headers: &[&str]| {
        let items: Vec<SortItem> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| sort_item(i as u32 + 1, 0, 1, h))
            .collect();
        enc_threads(thread_references(&items, false))
    };
    // (1B) "Create a parent/child link between the last reference (or NIL parent) and the
    // current message. If the current message already has a parent, ... break the current
    // parent/child link": message 3 has no references, so the link 1 -> 3 that message 2's
    // References made is broken; 3 is a root. (2) roots 1 and 3, (5) sorted by sent date.
    assert_eq!(
        th(&[
            "Message-ID: <a@x>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nSubject: one",
            "Message-ID: <b@x>\nReferences: <a@x> <c@x>\nDate: Mon, 1 Jan 2024 12:00:00 +0000\nSubject: Re: three",
            "Message-ID: <c@x>\nDate: Mon, 1 Jan 2024 09:00:00 +0000\nSubject: three",
        ]),
        "* THREAD (3 2)(1)\r\n"
    );
    // (1A) References link c -> a and (1B) a -> b; message 3 (c) refers to b, but making c a
    // child of b would be a loop, so no link is made: one thread 3 1 2.
    let looped = [
        "Message-ID: <a@b>\nDate: Fri, 22 Feb 2008 17:06:23 +0000",
        "Message-Id: <b@b>\nReferences: <c@b> <a@b>\nDate: Fri, 22 Feb 2008 15:06:23 +0000",
        "Message-Id: <c@b>\nReferences: <b@b>\nDate: Fri, 22 Feb 2008 16:06:25 +0000",
    ];
    assert_eq!(th(&looped), "* THREAD (3 1 2)\r\n");
    // without message 1, a is a dummy between c and b and (4) is pruned: its child is
    // promoted (not to the root level, so no restriction applies)
    assert_eq!(th(&looped[1..]), "* THREAD (2 1)\r\n");
    // (1) References, when present, win over In-Reply-To
    assert_eq!(
        th(&[
            "Message-ID: <a@x>\nDate: Mon, 1 Jan 2024 10:00:00 +0000",
            "Message-ID: <b@x>\nDate: Mon, 1 Jan 2024 11:00:00 +0000",
            "Message-ID: <c@x>\nIn-Reply-To: <a@x>\nReferences: <b@x>\nDate: Mon, 1 Jan 2024 12:00:00 +0000",
        ]),
        "* THREAD (1)(2 3)\r\n"
    );
    // (4) a dummy root with several children stays, its children (7) sorted by sent date;
    // (5) the dummy sorts by its first child's date (09:00, before message 1)
    assert_eq!(
        th(&[
            "Message-ID: <a@x>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nSubject: a",
            "Message-ID: <b@x>\nReferences: <gone@x>\nDate: Mon, 1 Jan 2024 11:00:00 +0000\nSubject: b",
            "Message-ID: <c@x>\nReferences: <gone@x>\nDate: Mon, 1 Jan 2024 09:00:00 +0000\nSubject: c",
        ]),
        "* THREAD ((3)(2))(1)\r\n"
    );
}

#[test]
fn thread_orderedsubject_groups() {
    let items = thread_items();
    assert_eq!(
        enc_threads(thread_orderedsubject(&items, false)),
        "* THREAD (1 (2)(3)(7))(4 5)(6 8)(9 10)\r\n"
    );
    use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
    assert!(thread(&ThreadingAlgorithm::References, &items, false).is_some());
}

#[test]
fn thread_loops_and_duplicates() {
    let items = vec![
        sort_item(1, 1, 1, "Message-ID: <a@x>\nReferences: <b@x>\nSubject: x"),
        sort_item(2, 2, 1, "Message-ID: <b@x>\nReferences: <a@x>\nSubject: y"),
        sort_item(
            3,
            3,
            1,
            "Message-ID: <a@x>\nReferences: <c@x> <c@x> <a@x>\nSubject: z",
        ),
        sort_item(4, 4, 1, "Message-ID: <d@x>\nReferences: <d@x>\nSubject: w"),
    ];
    let out = enc_threads(thread_references(&items, false));
    for n in ["1", "2", "3", "4"] {
        assert!(out.contains(n), "{out}");
    }
}

#[test]
fn thread_deep_chains_do_not_overflow() {
    let n = 20_000u32;
    let items: Vec<SortItem> = (1..=n)
        .map(|i| {
            let refs = if i > 1 {
                format!("\nIn-Reply-To: <{}@x>", i - 1)
            } else {
                String::new()
            };
            sort_item(i, i64::from(i), 1, &format!("Message-ID: <{i}@x>{refs}"))
        })
        .collect();
    let t = thread_references(&items, false);
    assert_eq!(t.len(), 1);
    match &t[0] {
        Thread::Members { prefix, answers } => {
            assert_eq!(prefix.as_ref().len(), n as usize);
            assert!(answers.is_none());
        }
        other => panic!("unexpected {other:?}"),
    }
    // a branch at every level
    let levels = 3_000u32;
    let mut items = Vec::new();
    for k in 0..levels {
        let main = 2 * k + 1;
        let leaf = 2 * k + 2;
        let parent = if k > 0 {
            format!("\nIn-Reply-To: <{}@x>", main - 2)
        } else {
            String::new()
        };
        items.push(sort_item(
            main,
            i64::from(main),
            1,
            &format!("Message-ID: <{main}@x>{parent}"),
        ));
        items.push(sort_item(
            leaf,
            i64::from(leaf),
            1,
            &format!("Message-ID: <{leaf}@x>\nIn-Reply-To: <{main}@x>"),
        ));
    }
    let t = thread_references(&items, false);
    let s = enc_threads(t);
    let count = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|x| !x.is_empty())
        .count();
    assert_eq!(count, 2 * levels as usize);
    let depth = s
        .chars()
        .scan(0i32, |d, c| {
            match c {
                '(' => *d += 1,
                ')' => *d -= 1,
                _ => {}
            }
            Some(*d)
        })
        .max()
        .unwrap();
    assert!(depth < 500, "nesting {depth}");
}

// ------------------------------------------------------------------------------------------
// Summary

#[test]
fn summary_round_trip() {
    for msg in [
        crlf(DOVECOT_MSG),
        crlf(NESTED),
        crlf(MIXED),
        search_msg(),
        rfc3501_body_example(),
        Vec::new(),
        crlf("Subject: Grüße \u{1}\n\n\0body\n"),
    ] {
        let s = Summary::from_message(&msg);
        assert_eq!(s.envelope, envelope(&msg));
        assert_eq!(s.body_structure, body_structure(&msg, true));
        assert_eq!(s.body, body_structure(&msg, false));
        assert_eq!(s.header, header_block(&msg));
        assert_eq!(s.sort, SortFields::from_message(&msg));
        assert_eq!(s.size, msg.len() as u64);
        let bytes = s.to_bytes();
        assert_eq!(Summary::from_bytes(&bytes).as_ref(), Some(&s));
        // every truncation and every single-byte change is rejected
        for cut in 0..bytes.len() {
            assert!(Summary::from_bytes(&bytes[..cut]).is_none());
        }
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            assert!(Summary::from_bytes(&b).is_none());
        }
    }
    let s = Summary::from_message(&crlf(NESTED));
    let fields = parse_section("HEADER.FIELDS (Subject)");
    assert_eq!(
        s.header_section(fields.as_ref()),
        Some(b"Subject: nested\r\n\r\n".to_vec())
    );
    assert_eq!(s.header_section(parse_section("1").as_ref()), None);
    let item = s.sort_item(3, 30, 99);
    assert_eq!((item.seq, item.uid, item.internal_date), (3, 30, 99));
    assert_eq!(item.size, crlf(NESTED).len() as u64);
    assert_eq!(item.fields.subject, "nested");
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

#[test]
fn summary_garbage_never_panics() {
    let mut seed = 42;
    for len in [0usize, 1, 4, 5, 9, 64, 1000] {
        for _ in 0..50 {
            let data: Vec<u8> = (0..len).map(|_| lcg(&mut seed) as u8).collect();
            assert!(Summary::from_bytes(&data).is_none());
        }
    }
    // corrupt the payload but fix the checksum, so the decoder itself is exercised
    let bytes = Summary::from_message(&crlf(DOVECOT_MSG)).to_bytes();
    let payload_len = bytes.len() - 4;
    for _ in 0..3000 {
        let mut b = bytes[..payload_len].to_vec();
        for _ in 0..1 + lcg(&mut seed) % 4 {
            let i = (lcg(&mut seed) as usize) % b.len();
            b[i] = lcg(&mut seed) as u8;
        }
        if lcg(&mut seed).is_multiple_of(4) {
            b.truncate((lcg(&mut seed) as usize) % b.len());
        }
        let mut h: u32 = 0x811c_9dc5;
        for &x in &b {
            h ^= u32::from(x);
            h = h.wrapping_mul(0x0100_0193);
        }
        b.extend_from_slice(&h.to_le_bytes());
        let _ = Summary::from_bytes(&b);
    }
}

// ------------------------------------------------------------------------------------------
// robustness

fn exercise(msg: &[u8]) {
    let _ = enc_envelope(envelope(msg));
    let _ = enc_body(body_structure(msg, true), true);
    let _ = enc_body(body_structure(msg, false), false);
    for s in [
        "",
        "HEADER",
        "TEXT",
        "1",
        "1.MIME",
        "2.1",
        "1.HEADER",
        "3.2.1.TEXT",
        "1.1.1.1",
    ] {
        let _ = section(msg, parse_section(s).as_ref());
    }
    let _ = binary_section(msg, &[nz(1)]);
    let _ = binary_section(msg, &[nz(1), nz(1)]);
    let s = Summary::from_message(msg);
    assert_eq!(Summary::from_bytes(&s.to_bytes()).as_ref(), Some(&s));
    let mut m = TestMsg::new(msg.to_vec());
    let _ = matches(
        &search_key("OR BODY x TEXT y"),
        &mut m,
        &SearchEnv::default(),
    );
    let _ = matches(
        &search_key("SENTBEFORE 1-Jan-2000 FROM a"),
        &mut m,
        &SearchEnv::default(),
    );
}

fn max_paren_depth(s: &str) -> i32 {
    let (mut d, mut max) = (0, 0);
    for c in s.chars() {
        match c {
            '(' => {
                d += 1;
                max = max.max(d);
            }
            ')' => d -= 1,
            _ => {}
        }
    }
    max
}

#[test]
fn deep_multipart_nesting_is_capped() {
    let n = 1000;
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    s.push_str("Content-Type: text/plain\r\n\r\nleaf\r\n");
    for i in (0..n).rev() {
        s.push_str(&format!("--b{i}--\r\n"));
    }
    let msg = s.into_bytes();
    let enc = enc_body(body_structure(&msg, true), true);
    let depth = max_paren_depth(&enc);
    assert!(depth <= MAX_MIME_DEPTH as i32 + 3, "depth {depth}");
    exercise(&msg);
    // part 1.1.1… down to the cap exists
    let path = vec!["1"; 40].join(".");
    assert!(sec(&msg, &path).is_some());
}

#[test]
fn deep_message_nesting_is_capped() {
    let mut msg = Vec::new();
    for _ in 0..2000 {
        msg.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    msg.extend_from_slice(b"Subject: x\r\n\r\nbody\r\n");
    let enc = enc_body(body_structure(&msg, true), true);
    assert!(max_paren_depth(&enc) < 2 * MAX_MIME_DEPTH as i32 + 10);
    exercise(&msg);
    assert!(sec(&msg, "1.1.1.1.HEADER").is_some());
}

#[test]
fn malformed_messages_do_not_panic() {
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n".to_vec(),
        b"\n\n\n".to_vec(),
        b"no header at all".to_vec(),
        b": empty name\r\n\r\n".to_vec(),
        b"Content-Type: multipart/mixed\r\n\r\nno boundary".to_vec(),
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n".to_vec(),
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\nnever delimited\r\n".to_vec(),
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n".to_vec(),
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n--x".to_vec(),
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x".to_vec(),
        b"Content-Type: message/rfc822\r\n\r\n".to_vec(),
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA==".to_vec(),
        b"Content-Type: /\r\nContent-Disposition: ;;;=\r\nContent-Language: ,,,\r\n\r\nx".to_vec(),
        b"Content-Type: text/plain; charset=\"unterminated\r\n\r\nx".to_vec(),
        b"Content-Type: text/plain; charset=x-nonexistent\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!".to_vec(),
        b"From: \"\\\r\nTo: (((((\r\nCc: <<<<\r\nBcc: @@@\r\n\r\n".to_vec(),
        b"Subject: =?utf-8?q?unterminated\r\nDate: 99 Foo 99999 99:99:99\r\n\r\n".to_vec(),
        b"Subject: \0\0\0\r\nFrom: a\0b@c\0d\r\n\r\n\0".to_vec(),
        b"\xff\xfe\xfd: \x80\x81\r\n\r\n\xc3\x28".to_vec(),
        crlf("Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed; boundary=a\n\n--a\n--a--\n--a--\n"),
    ];
    // a huge header field and a huge number of fields
    let mut huge = b"Subject: ".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 2_000_000));
    huge.extend_from_slice(b"\r\n\r\nbody");
    cases.push(huge);
    let mut many = Vec::new();
    for i in 0..20_000 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\nbody");
    cases.push(many);
    // very many parts
    let mut parts = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n".to_vec();
    for _ in 0..30_000 {
        parts.extend_from_slice(b"--p\r\n\r\nx\r\n");
    }
    cases.push(parts);
    // random bytes and random mutations of real messages
    let mut seed = 7;
    for _ in 0..200 {
        let len = (lcg(&mut seed) % 400) as usize;
        cases.push((0..len).map(|_| lcg(&mut seed) as u8).collect());
    }
    let alphabet: &[&[u8]] = &[
        b"\r\n",
        b"--",
        b"b1",
        b"Content-Type: multipart/mixed; boundary=b1\r\n",
        b"\r\n\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"=?utf-8?b?",
        b"?=",
        b"\"",
        b"(",
        b")",
        b"<",
        b">",
        b"@",
        b":",
        b";",
        b",",
        b"x",
        b"\0",
        b"\xff",
    ];
    for _ in 0..300 {
        let mut m = Vec::new();
        for _ in 0..(lcg(&mut seed) % 60) {
            m.extend_from_slice(alphabet[(lcg(&mut seed) as usize) % alphabet.len()]);
        }
        cases.push(m);
    }
    let base = crlf(DOVECOT_MSG);
    for _ in 0..100 {
        let mut m = base.clone();
        for _ in 0..5 {
            let i = (lcg(&mut seed) as usize) % m.len();
            m[i] = lcg(&mut seed) as u8;
        }
        let cut = (lcg(&mut seed) as usize) % m.len();
        m.truncate(cut.max(m.len() / 2));
        cases.push(m);
    }
    for msg in &cases {
        exercise(msg);
    }
    let mut items: Vec<SortItem> = cases
        .iter()
        .enumerate()
        .map(|(i, m)| SortItem {
            seq: i as u32 + 1,
            uid: i as u32 + 1,
            internal_date: i as i64,
            size: m.len() as u64,
            fields: SortFields::from_message(m),
        })
        .collect();
    sort(&sort_criteria("SUBJECT REVERSE DATE FROM"), &mut items);
    let _ = enc_threads(thread_references(&items, false));
    let _ = enc_threads(thread_orderedsubject(&items, true));
}

#[test]
fn multipart_without_boundary_keeps_content_reachable() {
    let msg = crlf("Content-Type: multipart/mixed\n\nsome text\n");
    assert_eq!(
        enc_body(body_structure(&msg, false), false),
        "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 1) \"mixed\")"
    );
    assert_eq!(sec(&msg, "1").as_deref(), Some("some text\r\n"));
}

/// RFC 5256 §2.1, each step on its own: (1) RFC 2047 decoding and white space, (2) trailers,
/// (3) leaders, (4) blobs only while a base remains, (5) repeated, (6) the subj-fwd wrapper and
/// again from (2); the reply/forward flag THREAD step 5 uses.
#[test]
fn base_subject_rfc5256_each_step() {
    let cases: &[(&str, &str, bool)] = &[
        ("=?utf-8?q?Re=3A_banana?=", "banana", true),
        (
            "=?utf-8?q?caf=C3=A9?=\r\n =?utf-8?q?_cr=C3=A8me?=",
            "café crème",
            false,
        ),
        ("  Fw:\tcherry  ", "cherry", true),
        ("Fwd: Re:  hello \t world", "hello world", true),
        ("hello (fwd)", "hello", true),
        ("hello(fwd) ", "hello", true),
        ("(fwd)", "", true),
        ("RE [x]: date", "date", true),
        ("re [x] : date", "date", true),
        ("fwd[2]: x", "x", true),
        ("Rex: apple", "rex: apple", false),
        ("re:re:fw:x", "x", true),
        ("[list] Re: hello", "hello", true),
        ("Fwd: [list] hello", "hello", true),
        ("[a] [b]", "[b]", false),
        ("[a] Re:", "", true),
        ("[PATCH]", "[patch]", false),
        ("[fwd: hello]", "hello", true),
        ("[fwd: (fwd)]", "", true),
        ("[fwd: [a] b]", "b", true),
        ("[fwd:x", "[fwd:x", false),
        ("Re: [fwd: [list] apple (fwd)]", "apple", true),
        (
            "re: [list]  fwd[2]: Fw: [x] [fwd: eel] (fwd) (FWD)",
            "eel",
            true,
        ),
    ];
    for (subject, base, reply) in cases {
        let decoded = decode_header_value(subject.as_bytes());
        assert_eq!(
            base_subject(&decoded),
            (base.to_string(), *reply),
            "base subject of {subject:?}"
        );
    }
}

/// RFC 5256 §3 and §4: the FROM/TO/CC key is the first addr-mailbox with RFC 2047 encoded
/// words decoded before the comparison: a leading group's name (a phrase) and, as mailers
/// write them, a local part.
#[test]
fn sort_address_keys_are_decoded() {
    let f = SortFields::from_message(&crlf(
        "From: =?utf-8?q?Zz_Gr=C3=BCppe?=: a@b.example;\n\
         To: =?utf-8?q?bob?=@x.example\nCc: =?utf-8?B?QUxJQ0U=?= <Carl@x.example>\n\n",
    ));
    assert_eq!(f.from, "zz grüppe");
    assert_eq!(f.to, "bob");
    assert_eq!(f.cc, "carl");
    let items = vec![
        sort_item(1, 0, 1, "From: =?utf-8?q?Zed?=: a@b.example;"),
        sort_item(2, 0, 1, "From: =?utf-8?q?Mike?=@x.example"),
        sort_item(3, 0, 1, "From: Zed <nancy@x.example>"),
        sort_item(4, 0, 1, "From: =?utf-8?q?ALPHA?= <zulu@x.example>"),
    ];
    // MIKE < NANCY < ZED < ZULU (undecoded, both `=?utf-8?…` keys would sort first)
    assert_eq!(sorted("FROM", &items), vec![2, 3, 1, 4]);
    assert_eq!(sorted("REVERSE FROM", &items), vec![4, 1, 3, 2]);
    // DISPLAYFROM (RFC 5957): A@B.EXAMPLE (1: the group's first mailbox, no name) < ALPHA <
    // MIKE@X.EXAMPLE (no name: the addr-spec, decoded too) < ZED
    assert_eq!(sorted("DISPLAYFROM", &items), vec![1, 4, 2, 3]);
}

/// RFC 5256 §2.2: "Implementations of the REFERENCES threading algorithm MUST normalize any
/// msg-id in order to avoid false non-matches due to differences in quoting", while
/// "Message ID comparisons are case-sensitive".
#[test]
fn thread_references_normalizes_message_ids() {
    let th = |headers: &[&str]| {
        let items: Vec<SortItem> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let n = i as u32 + 1;
                let date = format!("Date: Mon, 1 Jan 2024 {n:02}:00:00 +0000\nSubject: s{n}\n");
                sort_item(n, 0, 1, &format!("{date}{h}"))
            })
            .collect();
        enc_threads(thread_references(&items, false))
    };
    // the RFC's own example, both ways round
    assert_eq!(
        th(&[
            "Message-ID: <\"01KF8JCEOCBS0045PS\"@xxx.yyy.com>",
            "Message-ID: <b@x>\nReferences: <01KF8JCEOCBS0045PS@xxx.yyy.com>",
            "Message-ID: <c@x>\nIn-Reply-To: <\"b\"@x>",
        ]),
        "* THREAD (1 2 3)\r\n"
    );
    // quoted pairs, a folded References line
    assert_eq!(
        th(&[
            "Message-ID: <\"a\\b\\.c\"@x>",
            "Message-ID: <d@x>\nReferences: <ab.c@x>",
            "Message-ID: <e@x>\nReferences: <\"ab.c\"@x>\n <d@\n x>",
        ]),
        "* THREAD (1 2 3)\r\n"
    );
    // case-sensitive: <Q@x> is not <q@x>
    assert_eq!(
        th(&["Message-ID: <q@x>", "Message-ID: <r@x>\nReferences: <Q@x>",]),
        "* THREAD (1)(2)\r\n"
    );
    let f = SortFields::from_message(&crlf(
        "Message-ID: <\"a b\"@x>\nReferences: <1@x> junk <\"2\"@x> <>\n\n",
    ));
    assert_eq!(f.message_id.as_deref(), Some("a b@x"));
    assert_eq!(f.references, vec!["1@x", "2@x"]);
}

/// RFC 5256 §2.2 step 5, each rule: the subject table prefers a dummy, then a non-reply; on
/// merging, two dummies pool their children, a message goes under a dummy, a reply under a
/// non-reply, and two non-replies get a new dummy; an empty thread subject is skipped; (6)
/// sorts the result by sent date.
#[test]
fn thread_references_subject_gathering_rfc5256_step5() {
    let th = |headers: &[(u32, &str)]| {
        let items: Vec<SortItem> = headers
            .iter()
            .enumerate()
            .map(|(i, (hour, h))| {
                let n = i as u32 + 1;
                let date = format!("Date: Mon, 1 Jan 2024 {hour:02}:00:00 +0000\n");
                sort_item(n, 0, 1, &format!("{date}Message-ID: <{n}@x>\n{h}"))
            })
            .collect();
        enc_threads(thread_references(&items, false))
    };
    // two non-replies: a new dummy; a reply goes under the non-reply even when older
    assert_eq!(
        th(&[
            (10, "Subject: meeting"),
            (11, "Subject: Meeting"),
            (9, "Subject: Re: lunch"),
            (12, "Subject: lunch"),
        ]),
        "* THREAD ((1)(2))(4 3)\r\n"
    );
    // a dummy root wins the table; the others join it; two dummies merge
    assert_eq!(
        th(&[
            (10, "References: <gone@x>\nSubject: plan"),
            (11, "References: <gone@x>\nSubject: other"),
            (9, "Subject: Fwd: plan"),
            (12, "References: <gone2@x>\nSubject: plan (fwd)"),
            (13, "References: <gone3@x>\nSubject: [fwd: plan]"),
            (14, "References: <gone3@x>\nSubject: zzz"),
        ]),
        "* THREAD ((3)(1)(2)(4)(5)(6))\r\n"
    );
    // a reply whose original is not there stays alone; an empty subject is not gathered
    assert_eq!(
        th(&[
            (10, "Subject: Re: x"),
            (11, "Subject: Re: x"),
            (12, "Subject: "),
            (13, "Subject: Re:"),
        ]),
        "* THREAD ((1)(2))(3)(4)\r\n"
    );
    // merging happens at the root only: a child with the subject of another root stays put
    assert_eq!(
        th(&[
            (10, "Subject: a"),
            (11, "References: <1@x>\nSubject: b"),
            (12, "Subject: b"),
        ]),
        "* THREAD (1 2)(3)\r\n"
    );
}

/// RFC 5256 §2.2 step 1A: "If two or more messages have the same Message ID, then only use
/// that Message ID in the first (lowest sequence number) message": with the first owner gone
/// (expunged, or not among the searched messages), the next one owns the ID and its children.
#[test]
fn thread_references_duplicate_message_id_goes_to_the_first() {
    let items: Vec<SortItem> = [
        "Message-ID: <1@x>",
        "Message-ID: <2@x>\nReferences: <1@x>",
        "Message-ID: <3@x>\nReferences: <1@x> <2@x>",
        "Message-ID: <2@x>\nReferences: <1@x>",
    ]
    .iter()
    .enumerate()
    .map(|(i, h)| {
        let n = i as u32 + 1;
        let date = format!("Date: Mon, 1 Jan 2024 {n:02}:00:00 +0000\nSubject: s{n}\n");
        sort_item(n, 0, 1, &format!("{date}{h}"))
    })
    .collect();
    assert_eq!(
        enc_threads(thread_references(&items, false)),
        "* THREAD (1 (2 3)(4))\r\n"
    );
    let without_2: Vec<SortItem> = items.iter().filter(|m| m.seq != 2).cloned().collect();
    assert_eq!(
        enc_threads(thread_references(&without_2, false)),
        "* THREAD (1 4 3)\r\n"
    );
}
