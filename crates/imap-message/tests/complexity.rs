//! Attacker-shaped input must cost linear (or n log n) work. Each input here is large enough
//! that a quadratic or worse algorithm would run for minutes, so finishing at all is the
//! assertion; the results are checked too.

use imap_codec::imap_types::extensions::thread::Thread;
use postern_imap_message::{
    SortFields, SortItem, Summary, base_subject, envelope, thread_references,
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
    let msgs = size(300_000) / 1000;
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
    let n = size(300_000) / 1000;
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
