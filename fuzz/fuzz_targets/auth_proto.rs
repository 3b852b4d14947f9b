//! auth-proto: the Dovecot auth and userdb codecs (both directions) and the Postfix
//! socketmap netstrings, on bytes split into chunks as a socket would deliver them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_auth_proto::socketmap::{self, NetstringDecoder};
use postern_auth_proto::{LineBuffer, Params, dovecot, escape, sasl, unescape, userdb};

/// Most lines or netstrings handled per run.
const MAX_ITEMS: usize = 4096;

fn lines(data: &[u8], max: usize, chunk: usize) {
    let mut buf = LineBuffer::new(max);
    let mut items = 0;
    for part in data.chunks(chunk.max(1)) {
        buf.push(part);
        while let Some(line) = buf.next_line() {
            items += 1;
            if items > MAX_ITEMS {
                return;
            }
            let Ok(line) = line else { continue };
            assert!(
                line.len() <= max,
                "line of {} bytes, limit {max}",
                line.len()
            );
            let _ = dovecot::parse_client_line(&line);
            let _ = dovecot::parse_server_line(&line);
            let _ = userdb::parse_master_line(&line);
            let _ = userdb::parse_userdb_reply(&line);
            let _ = Params::parse(line.split('\t'));
            if let Ok(value) = unescape(&line) {
                assert_eq!(unescape(&escape(&value)).as_deref(), Ok(value.as_str()));
            }
            let _ = sasl::b64_decode(&line);
            if let Ok(creds) = sasl::Plain::decode(&line) {
                assert!(!creds.authcid.is_empty() && !creds.password.expose().is_empty());
            }
            let mut login = sasl::LoginMechanism::new();
            if login.start(Some(&line)).is_ok() {
                let _ = login.step(&line);
            }
            let _ = userdb::parse_quota_rule(&line);
        }
        assert!(
            buf.buffered() <= max + chunk.max(1),
            "line buffer grew past its limit"
        );
    }
}

fn netstrings(data: &[u8], chunk: usize) {
    let max = socketmap::MAX_REPLY_LEN;
    let mut dec = NetstringDecoder::new(max);
    let mut items = 0;
    for part in data.chunks(chunk.max(1)) {
        dec.push(part);
        for body in dec.by_ref() {
            items += 1;
            if items > MAX_ITEMS {
                return;
            }
            let Ok(body) = body else { break };
            assert!(body.len() <= max);
            if let Ok(req) = socketmap::parse_request(&body) {
                // What we parse, we encode back to the same thing.
                let mut again = NetstringDecoder::new(max);
                again.push(&req.encode());
                let round = again.next().expect("a whole netstring").expect("valid");
                assert_eq!(socketmap::parse_request(&round).as_ref(), Ok(&req));
            }
            if let Ok(reply) = socketmap::Reply::parse(&body) {
                let mut again = NetstringDecoder::new(max);
                again.push(&reply.encode());
                let round = again.next().expect("a whole netstring").expect("valid");
                assert_eq!(socketmap::Reply::parse(&round).as_ref(), Ok(&reply));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first >> 1) + 1;
    if first & 1 == 0 {
        lines(rest, 256 + usize::from(first) * 16, chunk);
    } else {
        netstrings(rest, chunk);
    }
});
