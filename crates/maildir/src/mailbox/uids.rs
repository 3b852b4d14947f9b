//! UIDs for new files, kept in `dovecot-uidlist` (shared with Dovecot).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use crate::error::Result;
use crate::filename::{self, size_field};
use crate::index::Msg;
use crate::uidlist::{self, Refreshed, Tracker, Uidlist, UidlistRecord};

use super::Mailbox;
use super::scan::{compute_vsize, split_name, stat_mtimes};

/// A uidlist read in full by a session of this process: its tracker and the records at or
/// above the index's next UID then (`floor`), the only ones a later session can need.
struct Loaded {
    tracker: Tracker,
    floor: u32,
    high: Vec<(u32, String, Option<u64>)>,
}

/// Per process and mailbox directory: the last full read of its uidlist, so another session
/// of the mailbox starts from there and reads only what was appended since (a 100,000-line
/// uidlist is parsed once per process, not once per session).
static LOADED: LazyLock<Mutex<HashMap<PathBuf, Loaded>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Directories remembered at most (all forgotten when full).
const LOADED_MAX: usize = 1024;
/// Records above the floor kept at most (more: not remembered).
const LOADED_HIGH_MAX: usize = 10_000;

impl Mailbox {
    /// Reads what was appended to the uidlist (or all of it) and notes the records of bases
    /// not in the state. The caller holds the lock.
    pub(super) fn refresh_uidlist(&mut self) -> Result<()> {
        // Only UIDs above what the index knows can be taken for unknown files.
        let floor = self.st.uid_next;
        if !self.uidlist.loaded {
            self.resume_uidlist(floor);
        }
        let mut recs: Vec<(u32, String, Option<u64>)> = Vec::new();
        let how = self
            .uidlist
            .refresh(&self.dir, |r| recs.push((r.uid, r.base.clone(), r.vsize())))?;
        if matches!(
            how,
            Refreshed::Reloaded | Refreshed::Missing | Refreshed::Broken
        ) {
            self.uid_map.clear();
        }
        if how == Refreshed::Reloaded {
            let high: Vec<_> = recs.iter().filter(|r| r.0 >= floor).cloned().collect();
            if high.len() <= LOADED_HIGH_MAX {
                let mut map = LOADED.lock().unwrap_or_else(|e| e.into_inner());
                if map.len() >= LOADED_MAX && !map.contains_key(&self.dir) {
                    map.clear();
                }
                map.insert(
                    self.dir.clone(),
                    Loaded {
                        tracker: self.uidlist.clone(),
                        floor,
                        high,
                    },
                );
            }
        }
        for (uid, base, vsize) in recs {
            if uid >= floor && !self.find_any(uid) {
                self.uid_map.insert(base, (uid, vsize));
            }
        }
        Ok(())
    }

    /// A session that has not read the uidlist yet starts where another session of this
    /// process last read it in full (the refresh that follows reads what was appended since,
    /// or everything again when the file was replaced). Exact: the records that session saw
    /// at or above its floor are all that can be at or above ours (the index's next UID only
    /// grows, and is read under the lock).
    fn resume_uidlist(&mut self, floor: u32) {
        let map = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        let Some(l) = map.get(&self.dir) else {
            return;
        };
        if l.tracker.uid_validity != self.st.uid_validity || floor < l.floor {
            return;
        }
        self.uidlist = l.tracker.clone();
        self.uid_map.clear();
        for (uid, base, vsize) in &l.high {
            if *uid >= floor && !self.find_any(*uid) {
                self.uid_map.insert(base.clone(), (*uid, *vsize));
            }
        }
    }

    /// UIDs for files found in `cur/` that the index does not know: the uidlist's when it has
    /// one for the base (Dovecot assigned it), otherwise new ones in arrival order, appended
    /// to the uidlist. `rebuild`: the uidlist of a rebuild (its UIDs are all taken). Returns
    /// the messages, ascending, with MODSEQs from `modseq` on.
    pub(super) fn resolve_new(
        &mut self,
        names: Vec<String>,
        modseq: &mut u64,
        rebuild: Option<&Uidlist>,
        uid_next: u32,
    ) -> Result<Vec<Msg>> {
        if rebuild.is_none() {
            self.refresh_uidlist()?;
        }
        let cur = self.dir.join("cur");
        struct Item {
            uid: u32,
            base: String,
            suffix: String,
            size: u64,
            date: i64,
            key: (u64, u32, String),
            cand: Option<u32>,
        }
        let mut items = Vec::new();
        let mtimes = stat_mtimes(&cur, &names)?;
        for (name, mtime) in names.into_iter().zip(mtimes) {
            let path = cur.join(&name);
            let Some(mtime) = mtime else { continue };
            let (base, suffix) = split_name(&name);
            let cand = self.uid_map.get(base).copied();
            let size = match size_field(&name, 'W').or(cand.and_then(|c| c.1)) {
                Some(s) => s,
                None => match compute_vsize(&path)? {
                    Some(s) => s,
                    None => continue,
                },
            };
            let p = filename::parse(&name);
            items.push(Item {
                uid: 0,
                base: base.to_owned(),
                suffix: suffix.to_owned(),
                size,
                date: mtime,
                key: (
                    p.as_ref().map_or(u64::MAX, |p| p.secs),
                    p.as_ref().and_then(|p| p.usecs).unwrap_or(0),
                    name.clone(),
                ),
                cand: cand.map(|c| c.0),
            });
        }
        // UIDs the uidlist already has for these files. Outside a rebuild, only UIDs above
        // what the index knows: an expunged UID never comes back.
        let mut used = HashSet::new();
        for it in &mut items {
            if let Some(u) = it.cand
                && (rebuild.is_some() || (u >= uid_next && !self.find_any(u)))
                && used.insert(u)
            {
                it.uid = u;
            }
        }
        let mut order: Vec<usize> = (0..items.len()).filter(|&i| items[i].uid == 0).collect();
        order.sort_by(|&a, &b| items[a].key.cmp(&items[b].key));
        let mut next = uid_next
            .max(self.uidlist.next_uid)
            .max(rebuild.map_or(1, |l| l.next_uid))
            .max(used.iter().max().map_or(1, |u| u + 1));
        let mut new_recs = Vec::new();
        for i in order {
            items[i].uid = next;
            new_recs.push(UidlistRecord::new(next, items[i].base.clone()));
            next += 1;
        }
        let live: HashSet<u32> = items.iter().map(|i| i.uid).collect();
        self.write_uidlist(&new_recs, next, &live, rebuild)?;
        for it in &items {
            self.uid_map.remove(&it.base);
        }
        items.sort_by_key(|i| i.uid);
        Ok(items
            .into_iter()
            .map(|it| {
                *modseq += 1;
                Msg {
                    uid: it.uid,
                    modseq: *modseq,
                    size: it.size,
                    date: it.date,
                    base: it.base,
                    suffix: it.suffix,
                    cache_off: 0,
                    cache_len: 0,
                }
            })
            .collect())
    }

    /// New UIDs for files already linked into `cur/` by this session (the caller holds the
    /// lock), appended to the uidlist.
    pub(super) fn assign_uids(&mut self, bases: &[String]) -> Result<Vec<u32>> {
        self.assign_uids_with(bases, &[])
    }

    /// [`Mailbox::assign_uids`], writing `guids[i]` (when given) as the `G` field (Dovecot's
    /// message GUID) of the record of `bases[i]`.
    pub(super) fn assign_uids_with(
        &mut self,
        bases: &[String],
        guids: &[Option<String>],
    ) -> Result<Vec<u32>> {
        self.refresh_uidlist()?;
        if self.uidlist.loaded && self.uidlist.uid_validity != self.st.uid_validity {
            self.rebuild_locked()?;
            let known: HashMap<&str, u32> = self
                .pending
                .iter()
                .map(|(m, f)| (&*f.base, m.uid))
                .chain(
                    self.metas
                        .iter()
                        .zip(&self.files)
                        .map(|(m, f)| (&*f.base, m.uid)),
                )
                .collect();
            return Ok(bases
                .iter()
                .filter_map(|b| known.get(b.as_str()).copied())
                .collect());
        }
        let mut next = self.st.uid_next.max(self.uidlist.next_uid);
        let mut recs = Vec::new();
        for (i, b) in bases.iter().enumerate() {
            let mut r = UidlistRecord::new(next, b.clone());
            if let Some(Some(g)) = guids.get(i)
                && super::objectid::valid_guid_field(g)
            {
                r.ext.push(format!("G{g}"));
            }
            recs.push(r);
            next += 1;
        }
        let live: HashSet<u32> = recs.iter().map(|r| r.uid).collect();
        self.write_uidlist(&recs, next, &live, None)?;
        Ok(recs.iter().map(|r| r.uid).collect())
    }

    /// Adds records to the uidlist: appended when the file allows it, else a full rewrite
    /// that also drops records of expunged messages.
    pub(super) fn write_uidlist(
        &mut self,
        recs: &[UidlistRecord],
        next_uid: u32,
        live: &HashSet<u32>,
        rebuild: Option<&Uidlist>,
    ) -> Result<()> {
        let state_count = if rebuild.is_some() {
            0
        } else {
            self.metas.len() - self.ghosts + self.pending.len()
        };
        let lines = self.uidlist.lines + recs.len();
        let want_compress = lines > 100 && (state_count + live.len()) * 4 < lines * 3;
        if self.uidlist.can_append() && !want_compress {
            return self.uidlist.append(&self.dir, recs);
        }
        let uv = rebuild.map_or(self.st.uid_validity, |l| l.uid_validity);
        let mut list = match Uidlist::load(&self.dir)? {
            Some(Ok(l)) if l.uid_validity == uv => l,
            _ => {
                // Missing or unusable: start from what the index knows.
                let mut l = Uidlist::new(uv);
                if rebuild.is_none() {
                    l.records = self
                        .snapshot()
                        .msgs
                        .into_iter()
                        .map(|m| UidlistRecord::new(m.uid, m.base))
                        .collect();
                }
                l
            }
        };
        let known_next = if rebuild.is_some() {
            u32::MAX
        } else {
            self.st.uid_next
        };
        list.records.retain(|r| {
            live.contains(&r.uid)
                || r.uid >= known_next
                || (rebuild.is_none() && self.find_any(r.uid))
        });
        list.records.extend(recs.iter().cloned());
        list.records.sort_by_key(|r| r.uid);
        list.records.dedup_by_key(|r| r.uid);
        list.version = 3;
        list.next_uid = list
            .next_uid
            .max(next_uid)
            .max(list.records.last().map_or(1, |r| r.uid + 1));
        if list.guid.is_none() {
            list.guid = Some(uidlist::random_guid());
        }
        list.problems = 0;
        self.uidlist.recreate(&self.dir, &list, self.md.file_mode())
    }
}
