//! `DATA` and `BDAT` bodies: end of data, smuggling, limits, staying in step.

use postern_smtp_session::BodyType;

use crate::common::{Driver, open_transaction, smtp_config};

fn ready() -> Driver {
    let mut d = Driver::smtp();
    open_transaction(&mut d, &["rcpt@example.org"]);
    d
}

fn small(max_message_size: u64, max_body_line_length: usize) -> Driver {
    let mut config = smtp_config();
    config.max_message_size = max_message_size;
    config.max_body_line_length = max_body_line_length;
    let mut d = Driver::new(config);
    open_transaction(&mut d, &["rcpt@example.org"]);
    d
}

#[test]
fn dot_unstuffing_and_line_ends() {
    let mut d = ready();
    let codes = d.codes("DATA\r\n..leading dot\r\n\r\nbare\nlf\r\n...\r\n.\r\n");
    assert_eq!(codes, [354, 250]);
    assert_eq!(
        d.delivered[0].message,
        b".leading dot\r\n\r\nbare\r\nlf\r\n..\r\n"
    );
}

#[test]
fn empty_message() {
    let mut d = ready();
    assert_eq!(d.codes("DATA\r\n.\r\nNOOP\r\n"), [354, 250, 250]);
    assert_eq!(d.delivered[0].message, b"");
}

#[test]
fn smuggling_attempts_stay_content() {
    for (body, message) in [
        (
            "a\n.\nMAIL FROM:<x@evil.example>\r\n",
            "a\r\n.\r\nMAIL FROM:<x@evil.example>\r\n",
        ),
        (
            "a\n.\r\nMAIL FROM:<x@evil.example>\r\n",
            "a\r\n.\r\nMAIL FROM:<x@evil.example>\r\n",
        ),
        (
            "a\r\n.\nMAIL FROM:<x@evil.example>\r\n",
            "a\r\n.\r\nMAIL FROM:<x@evil.example>\r\n",
        ),
        (
            "a\r.\rMAIL FROM:<x@evil.example>\r\n",
            "a\r.\rMAIL FROM:<x@evil.example>\r\n",
        ),
        (
            "a\r\n.\rMAIL FROM:<x@evil.example>\r\n",
            "a\r\n\rMAIL FROM:<x@evil.example>\r\n",
        ),
    ] {
        let mut d = ready();
        let script = format!("DATA\r\n{body}RCPT TO:<y@evil.example>\r\nDATA\r\n.\r\n");
        assert_eq!(d.codes(&script), [354, 250], "{body:?}");
        assert_eq!(d.delivered.len(), 1);
        let expected = format!("{message}RCPT TO:<y@evil.example>\r\nDATA\r\n");
        assert_eq!(
            String::from_utf8_lossy(&d.delivered[0].message),
            expected,
            "{body:?}"
        );
        assert!(d.events.iter().filter(|e| *e == "CheckSender").count() == 1);
    }
}

#[test]
fn oversized_body_stays_in_step() {
    let mut d = small(100, 1000);
    let mut got = d.lines("DATA\r\n");
    for _ in 0..20 {
        got.extend(d.lines("0123456789 0123456789\r\n"));
    }
    got.extend(d.lines(".\r\nNOOP\r\n"));
    assert_eq!(
        got,
        [
            "354 End data with <CR><LF>.<CR><LF>",
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "250 2.0.0 Ok",
        ]
    );
    assert!(d.delivered.is_empty());
    // Exactly at the limit is fine.
    d.send("MAIL FROM:<>\r\nRCPT TO:<r@example.org>\r\n");
    let body = format!("DATA\r\n{}\r\n.\r\n", "x".repeat(98));
    assert_eq!(d.codes(body), [354, 250]);
    assert_eq!(d.delivered[0].message.len(), 100);
}

#[test]
fn long_body_line_is_refused_after_the_end() {
    let mut d = small(10_000, 50);
    let body = format!(
        "DATA\r\nshort\r\n{}\r\nshort\r\n.\r\nNOOP\r\n",
        "y".repeat(51)
    );
    assert_eq!(
        d.lines(body),
        [
            "354 End data with <CR><LF>.<CR><LF>",
            "552 5.3.4 Message line too long",
            "250 2.0.0 Ok"
        ]
    );
    let body = format!(
        "MAIL FROM:<>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n{}\r\n.\r\n",
        "y".repeat(50)
    );
    assert_eq!(d.codes(body), [250, 250, 354, 250]);
}

#[test]
fn nul_in_body() {
    let mut d = ready();
    assert_eq!(
        d.lines("DATA\r\na\0b\r\n.\r\nNOOP\r\n"),
        [
            "354 End data with <CR><LF>.<CR><LF>",
            "554 5.6.0 Message contains NUL characters",
            "250 2.0.0 Ok"
        ]
    );
}

#[test]
fn bdat_chunks() {
    let mut d = ready();
    let codes = d.codes("BDAT 7\r\na\r\n.\r\n\nBDAT 4 LAST\r\n\0\r\nz");
    assert_eq!(codes, [250, 554]);
    assert_eq!(
        d.replies[d.replies.len() - 2].to_string(),
        "250 2.0.0 Ok: 7 octets received\r\n"
    );
    // Binary: no unstuffing, no normalisation; NUL is refused outside BINARYMIME.
    assert!(d.delivered.is_empty());
    let mut d = ready();
    assert_eq!(
        d.codes("BDAT 7\r\na\r\n.\r\n\nBDAT 4 LAST\r\nb\r\nz"),
        [250, 250]
    );
    assert_eq!(d.delivered[0].message, b"a\r\n.\r\n\nb\r\nz");
    assert!(d.delivered[0].chunked);
    assert_eq!(d.codes("NOOP\r\n"), [250]);
}

#[test]
fn bdat_nul_is_refused_at_last() {
    let mut d = ready();
    assert_eq!(
        d.lines("BDAT 3\r\na\0bBDAT 0 LAST\r\nNOOP\r\n"),
        [
            "250 2.0.0 Ok: 3 octets received",
            "554 5.6.0 Message contains NUL characters",
            "250 2.0.0 Ok"
        ]
    );
}

#[test]
fn bdat_empty_last() {
    let mut d = ready();
    assert_eq!(d.codes("BDAT 0 LAST\r\n"), [250]);
    assert_eq!(d.delivered[0].message, b"");
}

#[test]
fn refused_bdat_skips_its_chunk() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    assert_eq!(
        d.lines("BDAT 6\r\nQUIT\r\nNOOP\r\n"),
        ["503 5.5.1 Error: need MAIL command", "250 2.0.0 Ok"]
    );
    d.send("MAIL FROM:<>\r\n");
    assert_eq!(
        d.lines("BDAT 6 LAST\r\nQUIT\r\n"),
        ["503 5.5.1 Error: no valid recipients"]
    );
    assert!(!d.closed);

    let mut config = smtp_config();
    config.extensions.chunking = false;
    let mut d = Driver::new(config);
    let ehlo = d.send("EHLO c\r\n").remove(0).to_string();
    assert!(!ehlo.contains("CHUNKING"));
    assert_eq!(
        d.lines("BDAT 6\r\nQUIT\r\nNOOP\r\n"),
        ["502 5.5.1 Error: command not implemented", "250 2.0.0 Ok"]
    );
}

#[test]
fn data_and_bdat_do_not_mix() {
    let mut d = ready();
    assert_eq!(d.codes("BDAT 2\r\nabDATA\r\n"), [250, 503]);
    assert_eq!(
        d.codes("RCPT TO:<x@example.org>\r\nMAIL FROM:<>\r\n"),
        [503, 503]
    );
    assert_eq!(d.codes("BDAT 1 LAST\r\nc"), [250]);
    assert_eq!(d.delivered[0].message, b"abc");
    // RSET abandons a chunked message.
    open_transaction(&mut d, &["r@example.org"]);
    assert_eq!(
        d.codes("BDAT 2\r\nabRSET\r\nBDAT 1 LAST\r\nc"),
        [250, 250, 503]
    );
}

#[test]
fn bdat_size_limit() {
    let mut d = small(10, 1000);
    let got = d.lines("BDAT 8\r\n12345678BDAT 8\r\n12345678BDAT 1 LAST\r\n9NOOP\r\n");
    assert_eq!(
        got,
        [
            "250 2.0.0 Ok: 8 octets received",
            "250 2.0.0 Ok: 8 octets received",
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "250 2.0.0 Ok",
        ]
    );
    assert!(d.delivered.is_empty());
}

#[test]
fn binarymime() {
    let mut config = smtp_config();
    config.extensions.binarymime = true;
    let mut d = Driver::new(config);
    let ehlo = d.send("EHLO c\r\n").remove(0).to_string();
    assert!(ehlo.contains("BINARYMIME"));
    d.send("MAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<r@example.org>\r\n");
    assert_eq!(
        d.lines("DATA\r\n"),
        ["503 5.5.1 Error: BINARYMIME requires BDAT"]
    );
    assert_eq!(d.codes("BDAT 3 LAST\r\n\0\x01\x02"), [250]);
    assert_eq!(d.delivered[0].message, b"\0\x01\x02");
    assert_eq!(d.delivered[0].body_type, BodyType::BinaryMime);
    // Not advertised: refused.
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    assert_eq!(d.codes("MAIL FROM:<> BODY=BINARYMIME\r\n"), [501]);
}

#[test]
fn bdat_syntax() {
    let mut d = ready();
    assert_eq!(
        d.lines("BDAT\r\n"),
        ["501 5.5.4 Syntax: BDAT chunk-size [LAST]"]
    );
    assert_eq!(d.codes("BDAT 99999999999999999999999999\r\n"), [501]);
    assert_eq!(d.codes("BDAT 1 NOTLAST\r\n"), [501]);
}

fn strict() -> Driver {
    let mut config = smtp_config();
    config.reject_bare_newline = true;
    let mut d = Driver::new(config);
    open_transaction(&mut d, &["rcpt@example.org"]);
    d
}

#[test]
fn bare_newlines_refused_when_asked() {
    for body in [
        "a\nb\r\n.\r\n",
        "a\rb\r\n.\r\n",
        "a\r\n.\nMAIL FROM:<x@evil.example>\r\n.\r\n",
        "a\r.\r\n.\r\n",
        "x\r\r\n.\r\n",
    ] {
        let mut d = strict();
        let replies = d.send(format!("DATA\r\n{body}NOOP\r\n"));
        let codes: Vec<u16> = replies.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [354, 550, 250], "{body:?}");
        assert_eq!(replies[1].enhanced(), Some((5, 5, 2).into()), "{body:?}");
        assert!(
            replies[1].lines()[0].contains("bare <CR> or <LF>"),
            "{:?}",
            replies[1].lines()
        );
        assert!(d.delivered.is_empty(), "{body:?}");
    }
    let mut d = strict();
    assert_eq!(d.codes("DATA\r\nclean\r\n..dot\r\n.\r\n"), [354, 250]);
    assert_eq!(d.delivered[0].message, b"clean\r\n.dot\r\n");
    // Off (the default): normalised, as before.
    let mut d = ready();
    assert_eq!(d.codes("DATA\r\na\nb\r\n.\r\n"), [354, 250]);
    assert_eq!(d.delivered[0].message, b"a\r\nb\r\n");
}

/// A driver that spools: the message is what it took along the way plus the rest.
fn streamed(d: &mut Driver, pieces: &[&[u8]]) -> (Vec<u8>, usize) {
    let mut taken = Vec::new();
    let mut most = 0;
    for p in pieces {
        d.send(p);
        let t = d.session.take_body();
        most = most.max(t.len());
        taken.extend_from_slice(&t);
    }
    (taken, most)
}

#[test]
fn body_can_be_taken_as_it_comes() {
    let line = format!("{}\r\n", "x".repeat(998));
    let mut input = b"DATA\r\nSubject: big\r\n\r\n".to_vec();
    for _ in 0..200 {
        input.extend_from_slice(line.as_bytes());
    }
    input.extend_from_slice(b"..end\r\n.\r\n");
    let pieces: Vec<&[u8]> = input.chunks(4096).collect();
    let mut d = ready();
    let (taken, most) = streamed(&mut d, &pieces);
    assert_eq!(d.delivered.len(), 1);
    let tx = &d.delivered[0];
    let mut whole = taken.clone();
    whole.extend_from_slice(&tx.message);
    assert_eq!(whole.len(), 16 + 200 * 1000 + 6);
    assert!(whole.starts_with(b"Subject: big\r\n\r\nxxx"));
    assert!(whole.ends_with(b"x\r\n.end\r\n"));
    assert!(
        taken.len() > 190_000,
        "taken along the way: {}",
        taken.len()
    );
    assert!(most <= 4096, "at most one read's worth held: {most}");
    // Nothing is left behind for the next message.
    assert!(d.session.take_body().is_empty());

    // BDAT: the same, chunk by chunk.
    let mut d = ready();
    let body = "y".repeat(10_000);
    let cmd = format!("BDAT 10000\r\n{body}BDAT 5 LAST\r\nend\r\n");
    let pieces: Vec<&[u8]> = cmd.as_bytes().chunks(1000).collect();
    let (taken, _) = streamed(&mut d, &pieces);
    let mut whole = taken;
    whole.extend_from_slice(&d.delivered[0].message);
    assert_eq!(whole, format!("{body}end\r\n").as_bytes());
}

#[test]
fn taken_body_of_a_refused_message_stops() {
    let mut d = small(5_000, 1000);
    let mut input = b"DATA\r\n".to_vec();
    for _ in 0..200 {
        input.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    input.extend_from_slice(b".\r\n");
    let pieces: Vec<&[u8]> = input.chunks(500).collect();
    let (taken, _) = streamed(&mut d, &pieces);
    assert!(taken.len() <= 5_000, "{}", taken.len());
    assert!(d.delivered.is_empty());
    assert_eq!(d.replies.last().map(|r| r.code()), Some(552));
    // BDAT over the limit, declared chunk by chunk.
    let mut d = small(5_000, 1000);
    let chunk = "z".repeat(3000);
    let (taken, _) = streamed(
        &mut d,
        &[format!("BDAT 3000\r\n{chunk}BDAT 3000 LAST\r\n{chunk}").as_bytes()],
    );
    assert!(taken.len() <= 5_000);
    assert!(d.delivered.is_empty());
    assert_eq!(d.replies.last().map(|r| r.code()), Some(552));
}

#[test]
fn taking_the_body_byte_by_byte_changes_nothing() {
    let input: &[u8] =
        b"DATA\r\n..a\r\n.\rb\r\nc\nd\r\r\n.\n.x\r\n\r\n..\r\n...\r\nend\r\n.\r\nNOOP\r\n";
    let mut whole = ready();
    whole.send(input);
    let expected = whole.delivered[0].message.clone();
    let mut d = ready();
    let pieces: Vec<&[u8]> = input.chunks(1).collect();
    let (mut taken, most) = streamed(&mut d, &pieces);
    assert!(
        most <= 3,
        "a byte in, at most a held dot and a CRLF out: {most}"
    );
    taken.extend_from_slice(&d.delivered[0].message);
    assert_eq!(taken, expected);
    assert_eq!(d.replies.last().map(|r| r.code()), Some(250));
}
