//! PREVIEW (RFC 8970) and THREADID's thread roots: computed from a bounded prefix of the
//! message file ([`msg::PREVIEW_INPUT`] bytes; for a thread root the header alone, at most
//! [`ROOT_INPUT`] bytes) and kept in a per-process cache, so a client that asks again (or
//! asks `PREVIEW (LAZY)`) costs a map look-up.
//!
//! Cost: one message's preview reads at most 256 KiB and parses them once (linear in that);
//! `FETCH 1:* PREVIEW` costs that per message not yet cached, like `FETCH 1:* BODY[TEXT]`
//! would, without ever decoding more than the prefix of a large body. `PREVIEW (LAZY)`
//! computes at most [`LAZY_BUDGET`] uncached previews per command and answers NIL for the
//! rest (RFC 8970: with LAZY the server may answer NIL for a preview it cannot give
//! without expense; the client fetches those later without LAZY).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use postern_imap_message as msg;
use postern_maildir::Mailbox;

/// Most header bytes read for a thread root: `References` of a long thread fit.
pub(crate) const ROOT_INPUT: usize = 64 * 1024;
/// Uncached previews one `PREVIEW (LAZY)` FETCH computes before answering NIL.
pub(crate) const LAZY_BUDGET: usize = 50;
/// Entries the cache holds at most (then it starts over): about 1 KiB each at worst.
const CACHE_MAX: usize = 20_000;

/// (mailbox directory, UIDVALIDITY, UID).
type Key = (PathBuf, u32, u32);

#[derive(Default)]
struct Cache {
    previews: HashMap<Key, Arc<str>>,
    roots: HashMap<Key, Option<Arc<str>>>,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::default()));

fn key(mbox: &Mailbox, uid: u32) -> Key {
    (mbox.path().to_path_buf(), mbox.uid_validity(), uid)
}

/// The cached preview of a message, if any.
pub(crate) fn cached(mbox: &Mailbox, uid: u32) -> Option<Arc<str>> {
    let c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    c.previews.get(&key(mbox, uid)).cloned()
}

/// The preview of a message, computed (and cached) when not cached. `None` when the file
/// cannot be read (expunged meanwhile).
pub(crate) fn preview(mbox: &Mailbox, uid: u32) -> Option<Arc<str>> {
    if let Some(p) = cached(mbox, uid) {
        return Some(p);
    }
    let data = mbox.read_prefix(uid, msg::PREVIEW_INPUT).ok()?;
    let p: Arc<str> = msg::preview(&data).into();
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if c.previews.len() >= CACHE_MAX {
        c.previews.clear();
    }
    c.previews.insert(key(mbox, uid), p.clone());
    Some(p)
}

#[cfg(test)]
thread_local! {
    /// Calls of [`thread_root`] on this thread (tests count the look-ups a command makes).
    pub(crate) static ROOT_LOOKUPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The Message-ID of the root of a message's thread (see [`msg::thread_root`]), cached.
pub(crate) fn thread_root(mbox: &Mailbox, uid: u32) -> Option<Arc<str>> {
    #[cfg(test)]
    ROOT_LOOKUPS.with(|c| c.set(c.get() + 1));
    let k = key(mbox, uid);
    if let Some(r) = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .roots
        .get(&k)
    {
        return r.clone();
    }
    let data = mbox.read_header(uid, ROOT_INPUT).ok()?;
    let r: Option<Arc<str>> = msg::thread_root(&data).map(Into::into);
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if c.roots.len() >= CACHE_MAX {
        c.roots.clear();
    }
    c.roots.insert(k, r.clone());
    r
}
