//! queue: a message file (and, after the first NUL, its `.state` file) as found in the
//! spool at start-up: recovery must not fail or crash on any content (a bad file goes to
//! `corrupt/`), and what it returns must be readable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_queue::Spool;

const ID: &str = "00061f0a1b2c3d00017f";

fuzz_target!(|data: &[u8]| {
    let (message, state) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let dir = postern_fuzz::tempdir();
    let active = dir.path().join("active");
    std::fs::create_dir_all(&active).expect("mkdir");
    std::fs::write(active.join(ID), message).expect("write");
    if let Some(state) = state {
        std::fs::write(active.join(format!("{ID}.state")), state).expect("write");
    }
    let (spool, envelopes) = Spool::open(dir.path()).expect("recovery never fails on content");
    for env in &envelopes {
        assert_eq!(env.id.to_string(), ID);
        let bytes = spool
            .read_message(env.id)
            .expect("a recovered message reads");
        assert_eq!(
            bytes.len() as u64,
            env.size,
            "size differs from the envelope's"
        );
        let again = spool.load(env.id).expect("a recovered message loads");
        assert_eq!(again.id, env.id);
    }
});
