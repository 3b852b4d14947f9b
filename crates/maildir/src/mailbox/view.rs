//! What a session sees: lookups in the view, pending changes moved into it at a sync,
//! \Recent, the expunge history, and keyword letters turned into flags.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::error::Result;
use crate::flags::Flags;
use crate::index::{Msg, Rec};
use crate::keywords::{DovecotKeywords, KEYWORDS_FILE};

use super::{Mailbox, MessageMeta, SyncReport};

impl Mailbox {
    /// Moves pending changes into the view and reports them.
    pub(super) fn finish_view(&mut self) -> SyncReport {
        let mut r = SyncReport::default();
        if self.ghosts > 0 {
            let mut keep = Vec::with_capacity(self.files.len());
            for (m, f) in self.metas.iter().zip(&self.files) {
                if f.gone {
                    r.expunged.push(m.uid);
                }
                keep.push(!f.gone);
            }
            let mut k = keep.iter();
            self.metas.retain(|_| *k.next().unwrap_or(&true));
            let mut k = keep.iter();
            self.files.retain(|_| *k.next().unwrap_or(&true));
            self.ghosts = 0;
        }
        let changed = std::mem::take(&mut self.changed);
        if !self.pending.is_empty() {
            let pend = std::mem::take(&mut self.pending);
            r.new = pend.iter().map(|(m, _)| m.uid).collect();
            if self.metas.last().is_none_or(|l| l.uid < pend[0].0.uid) {
                for (m, f) in pend {
                    self.metas.push(m);
                    self.files.push(f);
                }
            } else {
                let old_m = std::mem::take(&mut self.metas);
                let old_f = std::mem::take(&mut self.files);
                let mut a = old_m.into_iter().zip(old_f).peekable();
                let mut b = pend.into_iter().peekable();
                loop {
                    let take_a = match (a.peek(), b.peek()) {
                        (Some((x, _)), Some((y, _))) => x.uid < y.uid,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (None, None) => break,
                    };
                    let next = if take_a { a.next() } else { b.next() };
                    if let Some((m, f)) = next {
                        self.metas.push(m);
                        self.files.push(f);
                    }
                }
            }
        }
        r.changed = changed
            .into_iter()
            .filter(|u| self.find(*u).is_some() && r.new.binary_search(u).is_err())
            .collect();
        let last = self.metas.last().map_or(0, |m| m.uid);
        self.view_uid_next = self.st.uid_next.max(last + 1);
        self.view_highest = self.view_highest.max(self.st.highest_modseq);
        r
    }

    /// UIDs expunged with a MODSEQ above `modseq`, ascending (QRESYNC `VANISHED (EARLIER)`);
    /// `None` when the history no longer reaches back that far.
    pub fn expunged_since(&self, modseq: u64) -> Option<Vec<u32>> {
        if modseq < self.st.expunge_floor {
            return None;
        }
        let mut v: Vec<u32> = self
            .st
            .expunges
            .iter()
            .filter(|&&(_, m)| m > modseq)
            .map(|&(u, _)| u)
            .collect();
        v.sort_unstable();
        v.dedup();
        Some(v)
    }

    /// IMAP4rev1 `\Recent`: the UIDs of this view that no session has claimed yet; they are
    /// claimed now (persisted in the index), so no other session sees them as recent.
    /// Empty when the lock cannot be had.
    pub fn claim_recent(&mut self) -> Vec<u32> {
        let Some(last) = self.metas.last().map(|m| m.uid) else {
            return Vec::new();
        };
        if last < self.st.first_recent {
            return Vec::new();
        }
        let Ok(_lock) = self.lock() else {
            return Vec::new();
        };
        if self.read_index(true).is_err() {
            return Vec::new();
        }
        let first = self.st.first_recent;
        if last < first {
            return Vec::new();
        }
        if self.commit(vec![Rec::Recent(last + 1)], false).is_err() {
            return Vec::new();
        }
        self.metas
            .iter()
            .zip(&self.files)
            .filter(|(m, f)| m.uid >= first && !f.gone)
            .map(|(m, _)| m.uid)
            .collect()
    }

    /// The UIDs of this view that no session has claimed as \Recent yet (a read-only
    /// EXAMINE session sees them as recent); claims nothing.
    pub fn unclaimed_recent_uids(&self) -> Vec<u32> {
        let first = self.st.first_recent;
        let start = self.metas.partition_point(|m| m.uid < first);
        self.metas[start..]
            .iter()
            .zip(&self.files[start..])
            .filter(|(_, f)| !f.gone)
            .map(|(m, _)| m.uid)
            .collect()
    }

    /// How many messages no session has claimed as \Recent yet (STATUS RECENT of a mailbox
    /// that is not selected); claims nothing.
    pub fn unclaimed_recent(&self) -> usize {
        let first = self.st.first_recent;
        self.metas
            .iter()
            .zip(&self.files)
            .filter(|(m, f)| m.uid >= first && !f.gone)
            .count()
    }

    pub(super) fn find(&self, uid: u32) -> Option<usize> {
        self.metas.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub(super) fn find_pending(&self, uid: u32) -> std::result::Result<usize, usize> {
        self.pending.binary_search_by_key(&uid, |(m, _)| m.uid)
    }

    /// True when `uid` is in the shared state (in the view and not gone, or pending).
    pub(super) fn find_any(&self, uid: u32) -> bool {
        self.find(uid).is_some_and(|i| !self.files[i].gone) || self.find_pending(uid).is_ok()
    }

    pub(super) fn reload_keywords(&mut self) {
        let path = self.dir.join(KEYWORDS_FILE);
        let stamp = fs::metadata(&path)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
        if stamp != self.kw_stamp || stamp.is_none() {
            self.keywords = DovecotKeywords::load(&self.dir).unwrap_or_default();
            self.kw_stamp = stamp;
        }
    }

    pub(super) fn flags_of(&mut self, suffix: &str) -> Flags {
        let (mut f, letters) = Flags::from_info(suffix);
        if letters.is_empty() {
            return f;
        }
        if !self.kw_checked && letters.iter().any(|&l| self.keywords.name_of(l).is_none()) {
            self.kw_checked = true;
            self.reload_keywords();
        }
        f.keywords = letters
            .iter()
            .filter_map(|&l| self.keywords.name_of(l).map(str::to_owned))
            .collect();
        f
    }

    /// Letters for keywords, registering new ones (the caller holds the lock).
    pub(super) fn letters_locked(&mut self, keywords: &[String]) -> Result<Vec<u8>> {
        if keywords.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(l) = keywords
            .iter()
            .map(|k| self.keywords.letter_of(k))
            .collect::<Option<Vec<u8>>>()
        {
            return Ok(l);
        }
        let (letters, _dropped, kw) =
            crate::keywords::letters_locked(&self.dir, keywords, self.md.file_mode())?;
        self.keywords = kw;
        self.kw_stamp = fs::metadata(self.dir.join(KEYWORDS_FILE))
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
        Ok(letters)
    }

    pub(super) fn meta(&mut self, m: &Msg) -> MessageMeta {
        MessageMeta {
            uid: m.uid,
            flags: self.flags_of(&m.suffix),
            modseq: m.modseq.max(1),
            size: m.size,
            internal_date: m.date,
        }
    }
}
