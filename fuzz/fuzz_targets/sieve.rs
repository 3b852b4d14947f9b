//! Sieve: a hostile script (before the first NUL) lexed, parsed, validated and run against
//! a hostile message header (after it), with an envelope from the fuzzer too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_sieve::{Action, Context, Envelope, Message, compile, execute, limits};

struct Msg {
    headers: Vec<(String, String)>,
    size: u64,
}

impl Message for Msg {
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// Unfolded `name: value` fields of the header part of `raw`.
fn headers(raw: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in raw.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push_str(line);
            }
        } else if let Some((n, v)) = line.split_once(':') {
            out.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (script, message) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (
            data,
            &b"Subject: a [b] c\nTo: a@b.c, d@e.f\nFrom: x@x.org\n\n"[..],
        ),
    };
    let Ok(source) = std::str::from_utf8(script) else {
        return;
    };
    let Ok(script) = compile(source) else {
        return;
    };
    let message = String::from_utf8_lossy(message);
    let msg = Msg {
        headers: headers(&message),
        size: message.len() as u64,
    };
    let from = msg.header("from").into_iter().next();
    let envelope = Envelope {
        from,
        to: msg
            .header("to")
            .into_iter()
            .next()
            .unwrap_or_else(|| "me@example.test".into()),
    };
    let exists = |name: &str| name.len() % 2 == 0;
    let ctx = Context {
        message: &msg,
        envelope: &envelope,
        mailbox_exists: &exists,
    };
    let Ok(outcome) = execute(&script, &ctx) else {
        return;
    };
    assert!(
        outcome.actions.len() <= limits::MAX_ACTIONS + 1,
        "{} actions",
        outcome.actions.len()
    );
    let redirects = outcome
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Redirect { .. }))
        .count();
    assert!(redirects <= limits::MAX_REDIRECTS, "{redirects} redirects");
});
