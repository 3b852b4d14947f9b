//! The per-message cache blobs (`postern-cache`) as seen from a mailbox.

use crate::cache::{self, Cache};
use crate::error::{IoContext, Result};

use super::Mailbox;

impl Mailbox {
    /// The cached blob of a message, if any (and intact).
    pub fn cache_get(&self, uid: u32) -> Option<Vec<u8>> {
        let f = match self.find(uid) {
            Some(i) => &self.files[i],
            None => {
                let p = self.find_pending(uid).ok()?;
                &self.pending[p].1
            }
        };
        if f.cache_len == 0 && f.cache_off == 0 {
            return None;
        }
        self.cache.as_ref()?.get(uid, f.cache_off, f.cache_len)
    }

    /// Stores a blob for a message (replacing an earlier one). Unknown UIDs and blobs over
    /// 16 MiB are ignored.
    pub fn cache_put(&mut self, uid: u32, blob: &[u8]) -> Result<()> {
        if !self.find_any(uid) || blob.len() > cache::MAX_BLOB {
            return Ok(());
        }
        if self
            .cache
            .as_ref()
            .is_some_and(|c| !c.is_current(&self.dir))
        {
            self.refresh_cache()?;
        }
        if self.cache.is_none() {
            self.cache = Cache::open(&self.dir, self.st.uid_validity, true, self.md.file_mode())?;
            if let Some(c) = &mut self.cache
                && c.ino == self.cache_snap.0
            {
                c.pos = c.pos.max(self.cache_snap.1);
            }
        }
        let Some(c) = &mut self.cache else {
            return Ok(());
        };
        let path = self.dir.join(cache::CACHE_FILE);
        let off = c.append(uid, blob).ctx("append", &path)?;
        self.set_cache_loc(uid, off, blob.len() as u32);
        Ok(())
    }

    pub(super) fn set_cache_loc(&mut self, uid: u32, off: u64, len: u32) {
        let f = match self.find(uid) {
            Some(i) => &mut self.files[i],
            None => match self.find_pending(uid) {
                Ok(p) => &mut self.pending[p].1,
                Err(_) => return,
            },
        };
        f.cache_off = off;
        f.cache_len = len;
    }

    pub(super) fn refresh_cache(&mut self) -> Result<()> {
        if self
            .cache
            .as_ref()
            .is_some_and(|c| !c.is_current(&self.dir))
        {
            self.cache = None;
        }
        if self.cache.is_none() {
            self.cache = Cache::open(&self.dir, self.st.uid_validity, false, self.md.file_mode())?;
            match &mut self.cache {
                Some(c) if c.ino == self.cache_snap.0 => c.pos = c.pos.max(self.cache_snap.1),
                Some(_) => {}
                None => return Ok(()),
            }
        }
        let mut found = Vec::new();
        if let Some(c) = &mut self.cache {
            c.scan(|u, o, l| found.push((u, o, l)))?;
        }
        for (u, o, l) in found {
            self.set_cache_loc(u, o, l);
        }
        Ok(())
    }

    pub(super) fn cache_tail(&self) -> u64 {
        match &self.cache {
            Some(c) if c.ino == self.cache_snap.0 => c.pos.saturating_sub(self.cache_snap.1),
            Some(c) => c.pos,
            None => 0,
        }
    }
}
