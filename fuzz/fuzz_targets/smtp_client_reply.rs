//! smtp-client: a hostile server's replies, read as the client reads them (bounded lines,
//! multi-line replies, enhanced status codes, EHLO capabilities).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_smtp_client::fuzzing::read_replies;

fuzz_target!(|data: &[u8]| {
    for reply in read_replies(data) {
        let Ok((reply, caps)) = reply else {
            continue;
        };
        assert!((200..=599).contains(&reply.code), "code {}", reply.code);
        assert!(
            !reply.text.contains('\n'),
            "line break in reply text {:?}",
            reply.text
        );
        if let Some((class, _, _)) = reply.enhanced {
            assert_eq!(u16::from(class), reply.code / 100, "{reply:?}");
        }
        let _ = caps.too_big(u64::MAX);
        let _ = reply.to_string();
    }
});
