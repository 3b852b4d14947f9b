//! imapd: the parsers of MULTIAPPEND/CATENATE (`cmd/multiappend.rs`), of IMAP URLs
//! (`cmd/catenate.rs`: no URL may name a mailbox with an empty, `.` or `..` component) and of
//! `CREATE name (USE (…))`, on whole commands with their literals.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_imapd::imap::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::append_ext(data);
});
