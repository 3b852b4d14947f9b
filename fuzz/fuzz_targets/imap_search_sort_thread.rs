//! imap-message: SEARCH, SORT and THREAD commands (the first line, as a client sends it
//! after the tag) over hostile messages (the rest, separated by NUL bytes) and the samples.
#![no_main]

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::search::SearchKey;
use libfuzzer_sys::fuzz_target;
use postern_imap_message as im;

/// Messages taken from one input at most.
const MAX_MESSAGES: usize = 12;

struct Msg {
    seq: u32,
    uid: u32,
    date: i64,
    raw: Vec<u8>,
    keywords: Vec<String>,
    summary: im::Summary,
    cached: bool,
}

impl im::SearchMessage for Msg {
    fn seq(&self) -> u32 {
        self.seq
    }
    fn uid(&self) -> u32 {
        self.uid
    }
    fn flags(&self) -> im::MessageFlags<'_> {
        im::MessageFlags {
            seen: self.seq % 2 == 0,
            answered: self.seq % 3 == 0,
            flagged: self.seq % 5 == 0,
            deleted: false,
            draft: false,
            recent: self.seq == 1,
            keywords: &self.keywords,
        }
    }
    fn size(&self) -> u64 {
        self.raw.len() as u64
    }
    fn internal_date(&self) -> i64 {
        self.date
    }
    fn modseq(&self) -> u64 {
        u64::from(self.uid) * 3
    }
    fn raw(&mut self) -> Option<&[u8]> {
        Some(&self.raw)
    }
    fn summary(&mut self) -> Option<&im::Summary> {
        self.cached.then_some(&self.summary)
    }
}

fn all(keys: &[SearchKey<'_>], msg: &mut Msg, env: &im::SearchEnv) -> bool {
    keys.iter().all(|k| im::matches(k, msg, env))
}

fuzz_target!(|data: &[u8]| {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..=i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut command = b"a ".to_vec();
    command.extend_from_slice(line);
    if !command.ends_with(b"\n") {
        command.extend_from_slice(b"\r\n");
    }
    let Ok((_, cmd)) = CommandCodec::default().decode(&command) else {
        return;
    };
    let raws = postern_fuzz::MESSAGES
        .iter()
        .map(|m| m.to_vec())
        .chain(rest.split(|&b| b == 0).map(<[u8]>::to_vec))
        .take(MAX_MESSAGES);
    let mut msgs: Vec<Msg> = raws
        .enumerate()
        .map(|(i, raw)| {
            let n = i as u32 + 1;
            Msg {
                seq: n,
                uid: n * 7,
                date: 1_700_000_000 + i64::from(n) * 86_400,
                summary: im::Summary::from_message(&raw),
                keywords: vec!["$Junk".into(), format!("k{n}")],
                cached: i % 2 == 0,
                raw,
            }
        })
        .collect();
    let env = im::SearchEnv {
        max_seq: msgs.len() as u32,
        max_uid: msgs.len() as u32 * 7,
    };
    let (keys, then) = match &cmd.body {
        CommandBody::Search { criteria, .. } => (criteria.as_ref(), None),
        CommandBody::Sort {
            sort_criteria,
            search_criteria,
            uid,
            ..
        } => (
            search_criteria.as_ref(),
            Some((Some(sort_criteria), None, *uid)),
        ),
        CommandBody::Thread {
            algorithm,
            search_criteria,
            uid,
            ..
        } => (
            search_criteria.as_ref(),
            Some((None, Some(algorithm), *uid)),
        ),
        _ => return,
    };
    for key in keys {
        let _ = im::needs_content(key);
        let _ = im::needs_body(key);
    }
    let hits: Vec<usize> = (0..msgs.len())
        .filter(|&i| all(keys, &mut msgs[i], &env))
        .collect();
    // A summary must not change the answer.
    for m in &mut msgs {
        let with = all(keys, m, &env);
        m.cached = !m.cached;
        assert_eq!(
            with,
            all(keys, m, &env),
            "SEARCH differs with and without the summary"
        );
    }
    let Some((sort, thread, uid)) = then else {
        return;
    };
    let mut items: Vec<im::SortItem> = hits
        .iter()
        .map(|&i| {
            let m = &msgs[i];
            im::SortItem {
                seq: m.seq,
                uid: m.uid,
                internal_date: m.date,
                size: m.raw.len() as u64,
                fields: im::sort_key(&m.raw),
            }
        })
        .collect();
    if let Some(criteria) = sort {
        im::sort(criteria.as_ref(), &mut items);
        let mut seqs: Vec<u32> = items.iter().map(|i| i.seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), items.len(), "SORT lost or doubled a message");
    }
    if let Some(algorithm) = thread {
        let _ = im::thread(algorithm, &items, uid);
    }
});
