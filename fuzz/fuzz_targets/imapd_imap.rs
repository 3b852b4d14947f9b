//! imapd: the IMAP command path as a connection runs it (imap-next decoding, literals, the
//! session's command logic on a real Maildir, the extended LIST / SEARCH RETURN fallback
//! parser for lines imap-codec refuses), logged in or not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_imapd::imap::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    // The fallback parser alone is cheap: run it on every line.
    for line in input.split_inclusive(|&b| b == b'\n') {
        let _ = fuzzing::reparse(line);
    }
    if mode & 1 == 1 {
        let _ = fuzzing::preauth_scan(input, 256 + u64::from(mode) * 64);
        let out = fuzzing::run_imap(input, None, 8192);
        assert!(out.ends_with(b"\r\n"), "output not CRLF-terminated");
    } else {
        let (_dir, md) = postern_fuzz::maildir_with_messages();
        let _ = fuzzing::run_imap(input, Some(&md), 8192);
    }
});
