//! Attacker-shaped input must cost linear (or n log n) work. Each input here is large enough
//! that a quadratic or worse algorithm would run for minutes, so finishing at all is the
//! assertion; the results are checked too.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::body::BodyStructure;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{AString, Vec1};
use imap_codec::imap_types::extensions::thread::Thread;
use imap_codec::imap_types::fetch::Section;
use imap_codec::imap_types::search::SearchKey;
use postern_imap_message::{
    MessageFlags, SearchEnv, SearchMessage, SearchSets, SortFields, SortItem, Summary,
    base_subject, body_structure, envelope, matches_with, section, thread_references,
};

/// SIZE env var overrides the default input size (to time the old code on smaller inputs).
fn size(default: usize) -> usize {
    std::env::var("COMPLEXITY_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let r = f();
    eprintln!("{what}: {:?}", t.elapsed());
    r
}

#[test]
fn base_subject_of_many_empty_blobs_is_linear() {
    let n = size(2 << 20) / 3;
    let subject = format!("{}hello", "[] ".repeat(n));
    let (base, reply) = timed("base_subject [] x n", || base_subject(&subject));
    assert_eq!(base, "hello");
    assert!(!reply);
    // blobs before a reply marker, repeated
    let subject = format!("{}Re: x", "[a] ".repeat(n / 2));
    let (base, reply) = timed("base_subject [a] x n Re:", || base_subject(&subject));
    assert_eq!(base, "x");
    assert!(reply);
    // blobs with no end: all but the last are removed
    let subject = "[] ".repeat(n);
    let (base, _) = timed("base_subject only blobs", || base_subject(&subject));
    assert_eq!(base, "[]");
}

#[test]
fn base_subject_other_shapes_are_linear() {
    let n = size(2 << 20);
    for (name, subject) in [
        ("unclosed [", format!("[{}", "a".repeat(n))),
        ("many [", "[".repeat(n)),
        ("re: x n", format!("{}x", "re: ".repeat(n / 4))),
        ("re[blob]: x n", format!("{}x", "re[b]: ".repeat(n / 7))),
        ("(fwd) x n", format!("x{}", " (fwd)".repeat(n / 6))),
        (
            "[fwd: nested",
            format!("{}x{}", "[fwd: ".repeat(n / 7), "]".repeat(n / 7)),
        ),
        ("[fwd: unclosed", "[fwd: [".repeat(n / 7)),
        ("spaces", format!("a{}b", " \t".repeat(n / 2))),
    ] {
        let (base, _) = timed(name, || base_subject(&subject));
        assert!(base.len() <= subject.len());
    }
    let (base, reply) = base_subject(&format!("{}x{}", "[fwd: ".repeat(1000), "]".repeat(1000)));
    assert_eq!(base, "x");
    assert!(reply);
}

#[test]
fn summary_of_a_message_with_a_huge_subject() {
    let n = size(2 << 20) / 3;
    let msg = format!(
        "From: a@example.org\r\nSubject: {}hi\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n",
        "[] ".repeat(n)
    );
    let s = timed("Summary::from_message", || {
        Summary::from_message(msg.as_bytes())
    });
    assert_eq!(s.sort.subject, "hi");
    let f = SortFields::from_message(msg.as_bytes());
    assert_eq!(f.subject, "hi");
    let e = envelope(msg.as_bytes());
    assert!(e.subject.0.is_some());
}

fn item(seq: u32, id: String, references: Vec<String>) -> SortItem {
    SortItem {
        seq,
        uid: seq,
        internal_date: i64::from(seq),
        size: 100,
        fields: SortFields {
            subject: format!("s{seq}"),
            message_id: Some(id),
            references,
            ..SortFields::default()
        },
    }
}

fn count_ids(t: &Thread) -> usize {
    match t {
        Thread::Members { prefix, answers } => {
            prefix.as_ref().len()
                + answers
                    .as_ref()
                    .map_or(0, |a| a.as_ref().iter().map(count_ids).sum())
        }
        Thread::Nested { answers } => answers.as_ref().iter().map(count_ids).sum(),
    }
}

#[test]
fn thread_references_with_one_long_chain_across_messages() {
    // Message k references the next 1000 ids of one global chain (the most References a
    // message is read for), so the chain grows 1000 deeper with every message.
    let msgs = size(150_000) / 1000;
    let items: Vec<SortItem> = (0..msgs)
        .map(|k| {
            let refs = (k * 999..k * 999 + 1000)
                .map(|i| format!("c{i}@x"))
                .collect();
            item(u32::try_from(k + 1).unwrap(), format!("m{k}@x"), refs)
        })
        .collect();
    let threads = timed("thread_references chain", || {
        thread_references(&items, false)
    });
    assert_eq!(threads.iter().map(count_ids).sum::<usize>(), items.len());
}

#[test]
fn thread_references_with_hostile_reference_lists() {
    // A deep chain, then messages whose References bounce between its leaf and its root,
    // and a cycle (each message names the next one as its parent, the last the first).
    let n = size(150_000) / 1000;
    let chain: Vec<String> = (0..1000).map(|i| format!("c{i}@x")).collect();
    let mut items = vec![item(1, "root@x".into(), chain.clone())];
    for k in 0..n {
        let mut refs = Vec::new();
        for _ in 0..500 {
            refs.push("c999@x".to_string());
            refs.push("c0@x".to_string());
        }
        items.push(item(u32::try_from(k + 2).unwrap(), format!("b{k}@x"), refs));
    }
    let base = items.len();
    for k in 0..n {
        let next = format!("cyc{}@x", (k + 1) % n);
        items.push(item(
            u32::try_from(base + k + 1).unwrap(),
            format!("cyc{k}@x"),
            vec![next],
        ));
    }
    let threads = timed("thread_references hostile", || {
        thread_references(&items, false)
    });
    assert_eq!(threads.iter().map(count_ids).sum::<usize>(), items.len());
}

#[test]
fn thread_references_moving_many_children_off_one_parent() {
    // n messages make dummies c0..cn children of one parent p (References: <p> <ci>); then
    // the messages ci arrive, half without references (RFC 5256 step 1B: NIL parent) and half
    // naming another parent: each is unlinked from p's long child list. Removing each one by
    // scanning that list was quadratic.
    let n = size(100_000) / 2;
    let mut items = Vec::with_capacity(2 * n);
    for i in 0..n {
        let refs = vec!["p@x".to_string(), format!("c{i}@x")];
        items.push(item(u32::try_from(i + 1).unwrap(), format!("m{i}@x"), refs));
    }
    for i in 0..n {
        let refs = if i % 2 == 0 {
            Vec::new()
        } else {
            vec!["q@x".to_string()]
        };
        items.push(item(
            u32::try_from(n + i + 1).unwrap(),
            format!("c{i}@x"),
            refs,
        ));
    }
    let t = std::time::Instant::now();
    let threads = timed("thread_references many children", || {
        thread_references(&items, false)
    });
    assert_eq!(threads.iter().map(count_ids).sum::<usize>(), items.len());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn mime_with_many_parts_each_with_many_parameters() {
    // Parts whose Content-Type carries many RFC 2231 continuation parameters with distinct
    // names: merging them compared each with all before it (1000 x 1000 per part), and
    // every parameter was kept (2.7 GB for 5000 such parts, a 42 MB message). 1000 parts
    // (8 MB) took 3 s in a release build before; this is 500.
    let parts = size(2 << 20) / 4000;
    let params: String = (0..1000).map(|i| format!(";p{i}*0=v")).collect();
    let mut msg = String::from("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for _ in 0..parts {
        msg.push_str(&format!(
            "--b\r\nContent-Type: text/plain{params}\r\n\r\nx\r\n"
        ));
    }
    msg.push_str("--b--\r\n");
    let bs = timed("bodystructure, params", || {
        body_structure(msg.as_bytes(), true)
    });
    assert!(matches!(bs, BodyStructure::Multi { .. }));
    let s = timed("summary, params", || Summary::from_message(msg.as_bytes()));
    assert_eq!(s.size, msg.len() as u64);
}

#[test]
fn mime_nesting_and_part_counts_are_bounded() {
    // 200 nested multiparts (followed to depth 50) around a 2 MB body of boundary-like lines.
    let depth = 200;
    let mut msg = String::new();
    for d in 0..depth {
        msg.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{d}\"\r\n\r\n--b{d}\r\n"
        ));
    }
    msg.push_str("Content-Type: text/plain\r\n\r\n");
    msg.push_str(&"--b1x\r\n".repeat(size(1 << 20) / 7));
    for d in (0..depth).rev() {
        msg.push_str(&format!("\r\n--b{d}--\r\n"));
    }
    timed("nested multiparts", || body_structure(msg.as_bytes(), true));
    // 200 000 empty parts (10 000 are parsed).
    let many = format!(
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n{}--b--\r\n",
        "--b\r\n\r\n".repeat(size(2 << 20) / 10)
    );
    let bs = timed("many parts", || body_structure(many.as_bytes(), false));
    if let BodyStructure::Multi { bodies, .. } = bs {
        assert!(bodies.as_ref().len() <= 10_000);
    }
}

#[test]
fn header_fields_filter_with_many_names_and_fields() {
    // BODY[HEADER.FIELDS (5000 names)] of a message with 200 000 header fields: each field
    // was compared with every name.
    let fields = size(2 << 20) / 10;
    let msg = format!("{}\r\nbody\r\n", "X-Field: 1\r\n".repeat(fields));
    let names: Vec<AString<'static>> = (0..5000)
        .map(|i| AString::try_from(format!("X-Name-{i}")).unwrap())
        .chain([AString::try_from("x-field").unwrap()])
        .collect();
    let names = Vec1::try_from(names).unwrap();
    let got = timed("HEADER.FIELDS", || {
        section(
            msg.as_bytes(),
            Some(&Section::HeaderFields(None, names.clone())),
        )
    })
    .unwrap();
    assert_eq!(got.len(), msg.len() - "body\r\n".len());
    let got = timed("HEADER.FIELDS.NOT", || {
        section(msg.as_bytes(), Some(&Section::HeaderFieldsNot(None, names)))
    })
    .unwrap();
    assert_eq!(got, b"\r\n");
}

struct Plain {
    seq: u32,
}

impl SearchMessage for Plain {
    fn seq(&self) -> u32 {
        self.seq
    }
    fn uid(&self) -> u32 {
        self.seq * 2
    }
    fn flags(&self) -> MessageFlags<'_> {
        MessageFlags::default()
    }
    fn size(&self) -> u64 {
        1
    }
    fn internal_date(&self) -> i64 {
        0
    }
    fn raw(&mut self) -> Option<&[u8]> {
        None
    }
}

#[test]
fn search_with_long_sequence_sets_on_a_large_mailbox() {
    // `SEARCH 1,3,5,… UID 2,6,10,…` (30 000 numbers each, as fit in one command) on a
    // 100 000-message mailbox: each message was compared with every element.
    let n: u32 = 100_000;
    let k = u32::try_from(size(2 << 20) / 70).unwrap();
    let seqs = (0..k)
        .map(|i| (2 * i + 1).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let uids = (0..k)
        .map(|i| (4 * i + 2).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cmd = format!("t SEARCH {seqs} NOT UID {uids},*\r\n");
    let (_, cmd) = CommandCodec::default().decode(cmd.as_bytes()).unwrap();
    let CommandBody::Search { criteria, .. } = cmd.body else {
        panic!("not a search");
    };
    let env = SearchEnv {
        max_seq: n,
        max_uid: 2 * n,
    };
    let sets = SearchSets::new(criteria.as_ref(), &env);
    let hits = timed("SEARCH sets", || {
        (1..=n)
            .filter(|&seq| {
                criteria
                    .as_ref()
                    .iter()
                    .all(|c| matches_with(c, &mut Plain { seq }, &env, &sets))
            })
            .count()
    });
    // odd sequence numbers up to 2k-1 whose uid (2·seq) is not 4i+2 (seq = 2i+1): none,
    // except the last message (uid * is excluded anyway).
    assert_eq!(hits, 0);
    let m = |seq: u32, c: &SearchKey<'_>| matches_with(c, &mut Plain { seq }, &env, &sets);
    assert!(m(3, &criteria.as_ref()[0]) && !m(4, &criteria.as_ref()[0]));
    assert!(!m(2 * k + 1, &criteria.as_ref()[0]));
    assert!(!m(n, &criteria.as_ref()[1]) && m(2 * k + 2, &criteria.as_ref()[1]));
}

#[test]
fn hostile_header_values_for_envelope_and_decoding() {
    let n = size(2 << 20) / 4;
    let shapes: Vec<(&str, String)> = vec![
        ("=? x n", "=?".repeat(n / 2)),
        ("=?utf-8?q? x n", "=?utf-8?q?".repeat(n / 10)),
        ("=?utf-8?b? x n", "=?utf-8?b?a".repeat(n / 11)),
        ("=?x?q?a?= x n", "=?x?q?a?= ".repeat(n / 10)),
        ("( x n", "(".repeat(n)),
        ("\" x n", "\"a".repeat(n / 2)),
        ("< x n", "<".repeat(n)),
        ("@ x n", "a@".repeat(n / 2)),
        (", x n", ",".repeat(n)),
        ("group x n", "g:".repeat(n / 2)),
        ("<@route x n", format!("<{}a@b>", "@r,".repeat(n / 3))),
        ("[ x n", "a@[".repeat(n / 3)),
        ("folds", format!("a{}", "\r\n ".repeat(n / 3))),
    ];
    for (name, value) in &shapes {
        let msg = format!(
            "From: {value}\r\nTo: {value}\r\nSubject: {value}\r\nIn-Reply-To: {value}\r\n\r\nb\r\n"
        );
        let e = timed(name, || envelope(msg.as_bytes()));
        assert!(e.subject.0.is_some());
        let s = timed(name, || Summary::from_message(msg.as_bytes()));
        assert_eq!(s.size, msg.len() as u64);
    }
}
