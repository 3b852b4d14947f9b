//! smtpd: MTA-STS — the `_mta-sts` TXT records (before the first NUL), the HTTPS response
//! and the policy in it (after it), as a hostile domain serves them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    postern_smtpd::fuzzing::mta_sts(data);
});
