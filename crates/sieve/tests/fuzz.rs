//! Robustness: truncated, mutated and random scripts never panic or hang, in compile or
//! execute.

mod common;

use common::*;
use postern_sieve::{Action, compile};

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SAMPLE: &str = r#"require ["fileinto", "variables", "imap4flags", "vacation", "reject", "envelope",
    "relational", "comparator-i;ascii-numeric", "copy", "mailbox", "subaddress", "encoded-character"];
# comment
if allof (header :matches "subject" "*[*]*", not exists "x-spam", envelope :domain "from" "x.org") {
    set :lower :upperfirst "tag" "${2}";
    fileinto :copy :create :flags ["\\Seen", "${tag}"] "Lists/${tag}";
} elsif address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "5" {
    addflag "many"; redirect "bulk@example.org"; stop;
} elsif size :over 1M { reject text:
Too big.
..
.
; }
/* block */ if string :value "gt" "${tag}" "m" { vacation :days 2 :subject "${hex:41}" "r"; }
if hasflag :contains "many" { discard; } else { keep :flags "x"; }
"#;

fn try_everything(src: &str) {
    if let Ok(script) = compile(src) {
        let msg = Msg::new("Subject: a [b] c\nTo: a@b.c, d@e.f\nFrom: x@x.org\n\n");
        let envelope = env(Some("x@x.org"), "a@b.c");
        let exists = |_: &str| false;
        let ctx = postern_sieve::Context {
            message: &msg,
            envelope: &envelope,
            mailbox_exists: &exists,
        };
        let _ = postern_sieve::execute(&script, &ctx);
    }
}

#[test]
fn sample_script_works() {
    let msg = Msg::new("Subject: a [lISTS] b\nTo: a@b.c\n\n");
    let Ok(o) = run_full(SAMPLE, &msg, &env(Some("x@x.org"), "a@b.c"), &[]) else {
        panic!("sample failed")
    };
    let filed = Action::FileInto {
        mailbox: "Lists/Lists".into(),
        create: true,
        flags: vec!["\\Seen".into(), "Lists".into()],
        copy: true,
    };
    assert_eq!(
        o.actions,
        [
            filed,
            Action::Keep {
                flags: vec!["x".into()]
            }
        ]
    );
}

#[test]
fn fuzz_truncations_and_mutations() {
    // Every prefix of a rich script.
    for (i, _) in SAMPLE.char_indices() {
        try_everything(&SAMPLE[..i]);
    }
    // Random byte flips, insertions and deletions.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let pieces: &[&[u8]] = &[
        b"\"",
        b"[",
        b"]",
        b"{",
        b"}",
        b"(",
        b")",
        b",",
        b";",
        b":",
        b"\\",
        b"${",
        b"text:\n",
        b"\n.\n",
        b"/*",
        b"*/",
        b"#",
        b"*",
        b"?",
        b"\xff",
        b"\xc3\xa9",
        b"99999999999K",
        b"not ",
        b"anyof(",
    ];
    for _ in 0..3000 {
        let mut bytes = SAMPLE.as_bytes().to_vec();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(bytes.len() + 1);
            match rng.below(3) {
                0 if at < bytes.len() => bytes[at] = rng.next() as u8,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {
                    let p = pieces[rng.below(pieces.len())];
                    bytes.splice(at..at, p.iter().copied());
                }
            }
        }
        try_everything(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn fuzz_random_bytes_and_token_soup() {
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        try_everything(&String::from_utf8_lossy(&bytes));
    }
    let words = [
        "if",
        "elsif",
        "else",
        "require",
        "keep",
        "discard",
        "stop",
        "fileinto",
        "redirect",
        "set",
        "vacation",
        "reject",
        "header",
        "address",
        "envelope",
        "not",
        "anyof",
        "allof",
        "true",
        "false",
        "size",
        "exists",
        "string",
        "hasflag",
        "addflag",
        ":is",
        ":matches",
        ":contains",
        ":count",
        "\"gt\"",
        ":over",
        "10K",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ",",
        ";",
        "\"fileinto\"",
        "\"variables\"",
        "\"a@b.c\"",
        "\"${1}\"",
        "\"*\"",
        ":comparator",
        "\"i;octet\"",
        "text:\nx\n.\n",
        ":flags",
        ":days",
        "0",
    ];
    for _ in 0..3000 {
        let n = 1 + rng.below(30);
        let src: Vec<&str> = (0..n).map(|_| words[rng.below(words.len())]).collect();
        try_everything(&src.join(" "));
    }
}
