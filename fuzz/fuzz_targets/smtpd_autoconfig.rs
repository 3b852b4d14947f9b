//! smtpd: the autoconfig/autodiscover HTTP request parser and what it does with the request
//! (query and POX body decoding, the address check, the XML answers).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = postern_smtpd::fuzzing::autoconfig(data);
});
