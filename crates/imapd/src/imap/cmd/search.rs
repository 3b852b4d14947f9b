//! SEARCH (and ESEARCH results), SORT, THREAD over the selected mailbox.

use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::extensions::sort::SortCriterion;
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::search::SearchKey;
use postern_imap_message as msg;
use postern_imap_message::{MessageFlags, SearchEnv, SearchMessage, SortItem};
use postern_maildir::{Mailbox, MessageMeta};

use crate::imap::resp::{self, num_set, untagged};
use crate::imap::session::Session;
use crate::imap::tagged::{Tagged, other};

/// How to answer a SEARCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SearchReturn {
    /// `* SEARCH 1 2 3`.
    Classic,
    /// `* ESEARCH (TAG "t") …` with the chosen parts.
    Extended {
        min: bool,
        max: bool,
        all: bool,
        count: bool,
        /// SEARCHRES (RFC 5182): keep the result for `$` (see `cmd/searchres.rs`).
        save: bool,
    },
}

struct Msg<'a> {
    seq: u32,
    meta: &'a MessageMeta,
    recent: bool,
    mbox: &'a Mailbox,
    raw: Option<Option<Vec<u8>>>,
    summary: Option<Option<msg::Summary>>,
}

impl SearchMessage for Msg<'_> {
    fn seq(&self) -> u32 {
        self.seq
    }
    fn uid(&self) -> u32 {
        self.meta.uid
    }
    fn flags(&self) -> MessageFlags<'_> {
        let f = &self.meta.flags;
        MessageFlags {
            seen: f.seen,
            answered: f.answered,
            flagged: f.flagged,
            deleted: f.deleted,
            draft: f.draft,
            recent: self.recent,
            keywords: &f.keywords,
        }
    }
    fn size(&self) -> u64 {
        self.meta.size
    }
    fn internal_date(&self) -> i64 {
        self.meta.internal_date
    }
    fn modseq(&self) -> u64 {
        self.meta.modseq
    }
    fn raw(&mut self) -> Option<&[u8]> {
        if self.raw.is_none() {
            self.raw = Some(self.mbox.read(self.meta.uid).ok());
        }
        self.raw.as_ref().and_then(|r| r.as_deref())
    }
    fn summary(&mut self) -> Option<&msg::Summary> {
        if self.summary.is_none() {
            self.summary = Some(
                self.mbox
                    .cache_get(self.meta.uid)
                    .and_then(|b| msg::Summary::from_bytes(&b)),
            );
        }
        self.summary.as_ref().and_then(Option::as_ref)
    }
}

fn charset_ok(c: Option<&Charset<'_>>) -> bool {
    c.is_none_or(|c| {
        let s: &str = c.as_ref();
        s.eq_ignore_ascii_case("UTF-8") || s.eq_ignore_ascii_case("US-ASCII")
    })
}

fn has_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(has_modseq),
        SearchKey::Not(k) => has_modseq(k),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        SearchKey::ModSequence { .. } => true,
        _ => false,
    }
}

impl Session {
    /// The (seq, uid) of messages matching all `criteria`, in mailbox order.
    fn matching(&self, criteria: &[SearchKey<'_>]) -> Vec<(u32, u32, u64)> {
        let Some(sel) = self.state.sel() else {
            return Vec::new();
        };
        let env = SearchEnv {
            max_seq: u32::try_from(sel.uids.len()).unwrap_or(u32::MAX),
            max_uid: sel.uids.last().copied().unwrap_or(0),
        };
        let sets = msg::SearchSets::new(criteria, &env);
        let mut hits = Vec::new();
        for (i, &uid) in sel.uids.iter().enumerate() {
            if sel.gone.contains(&uid) {
                continue;
            }
            let Some(meta) = sel.mbox.get(uid) else {
                continue;
            };
            let mut m = Msg {
                seq: u32::try_from(i + 1).unwrap_or(u32::MAX),
                meta,
                recent: sel.recent.contains(&uid),
                mbox: &sel.mbox,
                raw: None,
                summary: None,
            };
            if criteria
                .iter()
                .all(|k| msg::matches_with(k, &mut m, &env, &sets))
            {
                hits.push((m.seq, uid, meta.modseq));
            }
        }
        hits
    }

    pub(crate) fn search(
        &mut self,
        tag: &str,
        charset: Option<&Charset<'_>>,
        criteria: Vec1<SearchKey<'static>>,
        uid: bool,
        ret: &SearchReturn,
        out: &mut Vec<u8>,
    ) -> Tagged {
        // UIDONLY (RFC 9586 §3): also for the SEARCH RETURN forms parsed outside `handle`.
        if self.enabled.uidonly && (!uid || super::uidonly::uses_seqs(criteria.as_ref())) {
            return Tagged::bad(format!("[UIDREQUIRED] {}", super::uidonly::TEXT));
        }
        if !charset_ok(charset) {
            // RFC 5182 §2.1: a SEARCH with SAVE that fails (NO) empties `$`.
            self.forget_search(ret);
            return Tagged::no(other("BADCHARSET (UTF-8 US-ASCII)"), "Unsupported charset");
        }
        let crit = criteria.into_inner();
        let modseq = crit.iter().any(has_modseq);
        // RFC 7162 §3.1: the first CONDSTORE enabling command with a mailbox selected
        // reports HIGHESTMODSEQ in its tagged OK
        let announce_modseq = modseq && !self.enabled.condstore && self.state.sel().is_some();
        if modseq {
            self.enabled.condstore = true;
        }
        let hits = self.matching(&crit);
        if matches!(ret, SearchReturn::Extended { save: true, .. }) {
            let pairs: Vec<(u32, u32)> = hits.iter().map(|h| (h.0, h.1)).collect();
            self.save_search(ret, &pairs);
        }
        let ids: Vec<u32> = hits.iter().map(|h| if uid { h.1 } else { h.0 }).collect();
        let top = hits.iter().map(|h| h.2).max();
        let ret = match ret {
            SearchReturn::Classic if self.enabled.rev2 => &SearchReturn::Extended {
                min: false,
                max: false,
                all: true,
                count: false,
                save: false,
            },
            r => r,
        };
        match ret {
            SearchReturn::Classic => {
                let mut line = String::from("SEARCH");
                for id in &ids {
                    line.push(' ');
                    line.push_str(&id.to_string());
                }
                if modseq && let Some(t) = top {
                    line.push_str(&format!(" (MODSEQ {t})"));
                }
                untagged(out, &line);
            }
            // RFC 5182 §2.2: SAVE alone returns no ESEARCH response.
            SearchReturn::Extended {
                min: false,
                max: false,
                all: false,
                count: false,
                save: true,
            } => {}
            SearchReturn::Extended {
                min,
                max,
                all,
                count,
                ..
            } => {
                let mut line = format!("ESEARCH (TAG \"{tag}\")");
                if uid {
                    line.push_str(" UID");
                }
                if *min && let Some(v) = ids.iter().min() {
                    line.push_str(&format!(" MIN {v}"));
                }
                if *max && let Some(v) = ids.iter().max() {
                    line.push_str(&format!(" MAX {v}"));
                }
                if *count {
                    line.push_str(&format!(" COUNT {}", ids.len()));
                }
                if *all && !ids.is_empty() {
                    line.push_str(&format!(" ALL {}", num_set(&ids)));
                }
                // RFC 7162 §3.1.5: with only MIN and/or MAX, the mod-sequence of the
                // message(s) returned; otherwise the highest of all matching messages
                let top = if !*all && !*count && (*min || *max) {
                    let of = |id: Option<&u32>| {
                        let id = *id?;
                        hits.iter()
                            .find(|h| if uid { h.1 == id } else { h.0 == id })
                            .map(|h| h.2)
                    };
                    let lo = if *min { of(ids.iter().min()) } else { None };
                    let hi = if *max { of(ids.iter().max()) } else { None };
                    lo.max(hi)
                } else {
                    top
                };
                if modseq
                    && !ids.is_empty()
                    && let Some(t) = top
                {
                    line.push_str(&format!(" MODSEQ {t}"));
                }
                untagged(out, &line);
            }
        }
        self.sync(out, false);
        match self.state.sel() {
            Some(sel) if announce_modseq => Tagged::ok_code(
                other(format!(
                    "HIGHESTMODSEQ {}",
                    sel.mbox.highest_modseq().max(1)
                )),
                "SEARCH completed",
            ),
            _ => Tagged::ok("SEARCH completed"),
        }
    }

    fn sort_items(&self, criteria: &[SearchKey<'_>]) -> Vec<SortItem> {
        let hits = self.matching(criteria);
        let Some(sel) = self.state.sel() else {
            return Vec::new();
        };
        hits.into_iter()
            .filter_map(|(seq, uid, _)| {
                let meta = sel.mbox.get(uid)?;
                let fields = match sel
                    .mbox
                    .cache_get(uid)
                    .and_then(|b| msg::Summary::from_bytes(&b))
                {
                    Some(s) => s.sort,
                    None => msg::SortFields::from_message(&sel.mbox.read(uid).ok()?),
                };
                Some(SortItem {
                    seq,
                    uid,
                    internal_date: meta.internal_date,
                    size: meta.size,
                    fields,
                })
            })
            .collect()
    }

    pub(crate) fn sort(
        &mut self,
        criteria: &Vec1<SortCriterion>,
        charset: &Charset<'_>,
        search: Vec1<SearchKey<'static>>,
        uid: bool,
        out: &mut Vec<u8>,
    ) -> Tagged {
        if !charset_ok(Some(charset)) {
            return Tagged::no(other("BADCHARSET (UTF-8 US-ASCII)"), "Unsupported charset");
        }
        let mut items = self.sort_items(&search.into_inner());
        msg::sort(criteria.as_ref(), &mut items);
        let mut line = String::from("SORT");
        for it in &items {
            line.push(' ');
            line.push_str(&(if uid { it.uid } else { it.seq }).to_string());
        }
        untagged(out, &line);
        self.sync(out, false);
        Tagged::ok("SORT completed")
    }

    pub(crate) fn thread(
        &mut self,
        algorithm: &ThreadingAlgorithm<'_>,
        charset: &Charset<'_>,
        search: Vec1<SearchKey<'static>>,
        uid: bool,
        out: &mut Vec<u8>,
    ) -> Tagged {
        if !charset_ok(Some(charset)) {
            return Tagged::no(other("BADCHARSET (UTF-8 US-ASCII)"), "Unsupported charset");
        }
        let items = self.sort_items(&search.into_inner());
        let Some(threads) = msg::thread(algorithm, &items, uid) else {
            return Tagged::bad("Unsupported threading algorithm");
        };
        resp::data(out, Data::Thread(threads));
        self.sync(out, false);
        Tagged::ok("THREAD completed")
    }
}
