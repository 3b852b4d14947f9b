//! imapd: the IMAP command path as a connection runs it (imap-next decoding, literals, the
//! session's command logic on a real Maildir, the extended LIST / SEARCH RETURN fallback
//! parser for lines imap-codec refuses), logged in or not, and the `Shared/` namespace of
//! another user's Maildir (mode bit 2).
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
    } else if mode & 2 == 0 {
        let (_dir, md) = postern_fuzz::maildir_with_messages();
        let _ = fuzzing::run_imap(input, Some(&md), 8192);
    } else {
        // Shared/ routing: another user's Maildir (INBOX and Team granting the rights the
        // mode's upper bits pick, Team/Private nothing) behind `Shared/owner@example.test/`.
        let (_dir, md) = postern_fuzz::maildir_with_messages();
        let (_odir, owner) = postern_fuzz::maildir_with_messages();
        let rights: String = ["l", "r", "s", "wi", "kx", "tea"]
            .iter()
            .enumerate()
            .filter(|(i, _)| (mode >> 2) & (1 << i) != 0)
            .map(|(_, r)| *r)
            .collect();
        let _ = fuzzing::run_imap_shared(input, &md, &owner, &rights);
    }
});
