//! Appending several messages as one change (IMAP MULTIAPPEND, RFC 3502): all of them or
//! none.
//!
//! [`Mailbox::begin_append`] hands out an [`AppendBatch`]; each [`AppendBatch::add`] writes one
//! message to `tmp/` and fsyncs it (so the caller can build messages one at a time, and stop
//! at any of them: dropping the batch removes what it wrote). [`Mailbox::append_batch`] then,
//! under one lock: links every file into `cur/`, fsyncs `cur/` once, gives all of them UIDs in
//! one `dovecot-uidlist` write (one fsync) and logs them in the index. A failure before the
//! uidlist records them removes the links again, so no session ever sees a part of the batch;
//! a failure after (the index log write) unlinks them too, and other sessions then find their
//! UIDs expunged. Only then are the UIDs returned, so an acknowledged batch is on disk whole.
//!
//! What a crash can still do: between the first link into `cur/` and the uidlist's fsync
//! (all under the lock) a power cut or kill leaves the messages linked so far, which the next
//! scan adopts. No APPEND was acknowledged for them; the window is a few file system calls.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use crate::deliver::{crlf_to_lf, virtual_size};
use crate::error::{MaildirError, Result};
use crate::filename;
use crate::flags::Flags;
use crate::fsutil::{create_excl, fsync_dir};
use crate::index::{Msg, Rec};

use super::messages::{build_suffix, has_keyword, quota_adjust};
use super::{Mailbox, watch};

/// One message written to `tmp/`, waiting for [`Mailbox::append_batch`].
#[derive(Debug)]
struct Staged {
    base: String,
    tmp: PathBuf,
    flags: Flags,
    vsize: u64,
    /// Bytes as stored (LF line ends).
    size: u64,
}

/// Messages staged in a mailbox's `tmp/` for one [`Mailbox::append_batch`]. Dropped without
/// being committed, it removes its files.
#[derive(Debug)]
pub struct AppendBatch {
    dir: PathBuf,
    mode: u32,
    items: Vec<Staged>,
    /// Octets as given to [`AppendBatch::add`] (what IMAP counts against a quota).
    given: u64,
}

impl Mailbox {
    /// An empty batch of messages to append to this mailbox.
    pub fn begin_append(&self) -> AppendBatch {
        AppendBatch {
            dir: self.dir.clone(),
            mode: self.md.file_mode(),
            items: Vec::new(),
            given: 0,
        }
    }

    /// Appends every message of `batch`, in order, or none (see the
    /// [module documentation](self)). Returns their UIDs, ascending and in the order added.
    /// The messages join [`Mailbox::messages`] at the next [`Mailbox::sync`].
    pub fn append_batch(&mut self, mut batch: AppendBatch) -> Result<Vec<u32>> {
        if batch.items.is_empty() {
            return Ok(Vec::new());
        }
        if batch.dir != self.dir {
            return Err(MaildirError::io(
                "append",
                &batch.dir,
                io::Error::other("batch staged for another mailbox"),
            ));
        }
        let lock = self.lock()?;
        self.read_index(true)?;
        let mut all_kw: Vec<String> = Vec::new();
        for it in &batch.items {
            for k in &it.flags.keywords {
                if !has_keyword(&all_kw, k) {
                    all_kw.push(k.clone());
                }
            }
        }
        self.letters_locked(&all_kw)?;
        let cur = self.dir.join("cur");
        let follow = self.cur_as_recorded();
        let own = watch::Own::new(&cur);
        let mut linked: Vec<String> = Vec::with_capacity(batch.items.len());
        let undo = |linked: &[String]| {
            for n in linked {
                let _ = fs::remove_file(cur.join(n));
            }
            if !linked.is_empty() {
                let _ = fsync_dir(&cur);
            }
        };
        for it in &batch.items {
            let letters: Vec<u8> = it
                .flags
                .keywords
                .iter()
                .filter_map(|k| self.keywords.letter_of(k))
                .collect();
            let name = format!("{}{}", it.base, build_suffix("", &it.flags, &letters));
            let path = cur.join(&name);
            own.expect(&name);
            let made = match fs::hard_link(&it.tmp, &path) {
                // Where links do not work, the file moves.
                Err(_) if fs::symlink_metadata(&path).is_err() => fs::rename(&it.tmp, &path),
                r => r,
            };
            if let Err(e) = made {
                undo(&linked);
                return Err(MaildirError::io("link", &path, e));
            }
            linked.push(name);
        }
        let mut dates = Vec::with_capacity(linked.len());
        for n in &linked {
            match fs::metadata(cur.join(n)) {
                Ok(m) => dates.push(m.mtime()),
                Err(e) => {
                    undo(&linked);
                    return Err(MaildirError::io("stat", cur.join(n), e));
                }
            }
        }
        if let Err(e) = fsync_dir(&cur) {
            undo(&linked);
            return Err(e);
        }
        let bases: Vec<String> = batch.items.iter().map(|it| it.base.clone()).collect();
        let uids = match self.assign_uids(&bases) {
            Ok(u) if u.len() == bases.len() => u,
            Ok(_) => {
                undo(&linked);
                return Err(MaildirError::io(
                    "assign UID",
                    &cur,
                    io::Error::other("the uidlist was rebuilt meanwhile"),
                ));
            }
            Err(e) => {
                undo(&linked);
                return Err(e);
            }
        };
        let mut modseq = self.st.highest_modseq;
        let mut recs = Vec::with_capacity(uids.len() + 1);
        for ((it, name), (&uid, &date)) in
            batch.items.iter().zip(&linked).zip(uids.iter().zip(&dates))
        {
            if self.find_any(uid) {
                continue;
            }
            modseq += 1;
            recs.push(Rec::New(Msg {
                uid,
                modseq,
                size: it.vsize,
                date,
                base: it.base.clone(),
                suffix: name[it.base.len()..].to_owned(),
                cache_off: 0,
                cache_len: 0,
            }));
        }
        recs.extend(follow.then(|| self.followed_cur()).flatten());
        if let Err(e) = self.commit(recs, false) {
            // The UIDs are taken; the files go, so every session finds them expunged.
            undo(&linked);
            return Err(e);
        }
        own.done();
        drop(lock);
        let stored: u64 = batch.items.iter().map(|it| it.size).sum();
        quota_adjust(&self.md, stored as i64, batch.items.len() as i64);
        batch.remove_files();
        Ok(uids)
    }
}

impl AppendBatch {
    /// Writes one more message (CRLF or LF line ends; kept with LF) with its flags and
    /// internal date (unix seconds; default now) to `tmp/`, fsynced.
    pub fn add(&mut self, data: &[u8], flags: &Flags, internal_date: Option<i64>) -> Result<()> {
        let body = crlf_to_lf(data);
        let size = body.len() as u64;
        let vsize = virtual_size(&body);
        let tmp_dir = self.dir.join("tmp");
        for _ in 0..8 {
            let base = filename::generate(size, vsize);
            let path = tmp_dir.join(&base);
            let mut f = match create_excl(&path, self.mode) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(MaildirError::io("create", &path, e)),
            };
            let written = (|| {
                f.write_all(&body)?;
                if let Some(when) = internal_date.and_then(system_time) {
                    f.set_modified(when)?;
                }
                f.sync_all()
            })();
            if let Err(e) = written {
                drop(f);
                let _ = fs::remove_file(&path);
                return Err(MaildirError::io("write", &path, e));
            }
            self.items.push(Staged {
                base,
                tmp: path,
                flags: flags.clone(),
                vsize,
                size,
            });
            self.given = self.given.saturating_add(data.len() as u64);
            return Ok(());
        }
        Err(MaildirError::NameCollision { dir: tmp_dir })
    }

    /// How many messages are staged.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The octets given to [`AppendBatch::add`], all messages together.
    pub fn bytes(&self) -> u64 {
        self.given
    }

    fn remove_files(&mut self) {
        for it in self.items.drain(..) {
            let _ = fs::remove_file(&it.tmp);
        }
    }
}

impl Drop for AppendBatch {
    fn drop(&mut self) {
        self.remove_files();
    }
}

fn system_time(t: i64) -> Option<std::time::SystemTime> {
    if t >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(t.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(t.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Maildir;

    fn setup() -> (tempfile::TempDir, Maildir) {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
        (dir, md)
    }

    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn uidlist_records(md: &Maildir) -> usize {
        let text = fs::read_to_string(md.root().join("dovecot-uidlist")).unwrap_or_default();
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count()
    }

    /// RFC 3502, Introduction: "A MULTIAPPEND APPEND operation is atomic; either all
    /// messages are successfully appended, or no messages are appended". A link that fails
    /// on the third message leaves no file in `cur/` or `tmp/` and no uidlist record; the
    /// mailbox's UIDs are not disturbed.
    #[test]
    fn a_failure_on_the_third_message_leaves_nothing() {
        let (_d, md) = setup();
        let mut mb = md.open_mailbox("INBOX").unwrap();
        let mut b = mb.begin_append();
        for i in 0..4 {
            b.add(
                format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes(),
                &Flags::default(),
                None,
            )
            .unwrap();
        }
        assert_eq!(files(&mb.path().join("tmp")).len(), 4);
        // The third message's name in cur/ is taken: its link fails.
        let third = mb
            .path()
            .join("cur")
            .join(format!("{}:2,", b.items[2].base));
        fs::write(&third, b"squatter").unwrap();
        assert!(mb.append_batch(b).is_err());
        assert_eq!(
            files(&mb.path().join("cur")),
            vec![third.file_name().unwrap().to_string_lossy().into_owned()]
        );
        fs::remove_file(&third).unwrap();
        assert!(files(&mb.path().join("tmp")).is_empty());
        assert_eq!(uidlist_records(&md), 0);
        let mut again = md.open_mailbox("INBOX").unwrap();
        assert!(again.sync().unwrap().new.is_empty());
        assert!(again.messages().is_empty());
        // And the next append still works and gets UID 1.
        let mut b = mb.begin_append();
        b.add(b"Subject: x\r\n\r\ny\r\n", &Flags::default(), None)
            .unwrap();
        assert_eq!(mb.append_batch(b).unwrap(), vec![1]);
    }

    /// A batch dropped before it is committed (the caller stopped at a bad message) removes
    /// its files from `tmp/`.
    #[test]
    fn a_dropped_batch_removes_its_files() {
        let (_d, md) = setup();
        let mb = md.open_mailbox("INBOX").unwrap();
        let mut b = mb.begin_append();
        b.add(b"a\r\n", &Flags::default(), None).unwrap();
        b.add(b"b\r\n", &Flags::default(), None).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b.bytes(), 6);
        drop(b);
        assert!(files(&mb.path().join("tmp")).is_empty());
        assert_eq!(uidlist_records(&md), 0);
    }

    /// All messages of a batch get consecutive UIDs, their flags, keywords and dates, and
    /// are in the uidlist when the call returns.
    #[test]
    fn a_batch_appends_all_with_flags_and_dates() {
        let (_d, md) = setup();
        let mut mb = md.open_mailbox("INBOX").unwrap();
        let mut single = mb.begin_append();
        single.add(b"first\r\n", &Flags::default(), None).unwrap();
        assert_eq!(mb.append_batch(single).unwrap(), vec![1]);
        let mut b = mb.begin_append();
        let seen = Flags {
            seen: true,
            keywords: vec!["$Work".into()],
            ..Flags::default()
        };
        b.add(b"Subject: a\r\n\r\n1\r\n", &seen, Some(1_000_000_000))
            .unwrap();
        b.add(b"Subject: b\n\n2\n", &Flags::default(), None)
            .unwrap();
        b.add(
            b"Subject: c\r\n\r\n3\r\n",
            &Flags {
                draft: true,
                ..Flags::default()
            },
            None,
        )
        .unwrap();
        let uids = mb.append_batch(b).unwrap();
        assert_eq!(uids, vec![2, 3, 4]);
        assert_eq!(uidlist_records(&md), 4);
        assert!(files(&mb.path().join("tmp")).is_empty());
        let report = mb.sync().unwrap();
        assert_eq!(report.new, vec![1, 2, 3, 4]);
        let m2 = mb.get(2).unwrap();
        assert!(m2.flags.seen);
        assert_eq!(m2.flags.keywords, vec!["$Work".to_owned()]);
        assert_eq!(m2.internal_date, 1_000_000_000);
        assert!(mb.get(4).unwrap().flags.draft);
        assert_eq!(mb.read(3).unwrap(), b"Subject: b\r\n\r\n2\r\n");
    }

    /// A batch made for one mailbox cannot be committed to another.
    #[test]
    fn a_batch_stays_with_its_mailbox() {
        let (_d, md) = setup();
        md.create_folder("Other").unwrap();
        let inbox = md.open_mailbox("INBOX").unwrap();
        let mut other = md.open_mailbox("Other").unwrap();
        let mut b = inbox.begin_append();
        b.add(b"x\r\n", &Flags::default(), None).unwrap();
        assert!(other.append_batch(b).is_err());
        assert!(files(&inbox.path().join("tmp")).is_empty());
    }
}
