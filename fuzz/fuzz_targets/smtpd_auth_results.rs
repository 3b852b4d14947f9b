//! smtpd: removal of forged Authentication-Results (and X-Postern-) fields from a message
//! arriving from outside.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for hostname in ["mx.example.test", "mx.example.test."] {
        postern_smtpd::fuzzing::strip_auth_results(data, hostname);
    }
});
