//! What the IMAP OBJECTID (RFC 8474) and SAVEDATE (RFC 8514) extensions need from a
//! mailbox, kept where Dovecot keeps it so a tree served by both agrees:
//!
//! - **Mailbox GUID** (the source of MAILBOXID): the `G` field of the `dovecot-uidlist`
//!   header, 32 hex digits, written by Dovecot and by us when the uidlist is created. The
//!   uidlist lives in the mailbox directory, so the GUID follows a RENAME; a deleted and
//!   recreated name gets a new uidlist and so a new GUID. [`Mailbox::mailbox_guid`] writes
//!   one into a uidlist that lacks it.
//! - **Message GUID** (the source of EMAILID): Dovecot's rule for Maildir — the record's `G`
//!   extension field when it has one, else the file name base. A base never changes while
//!   the file lives (flag changes rename only the info part). [`Mailbox::copy_to`] writes the
//!   source's GUID as the copy's `G` field, so a COPY or MOVE (copy, then expunge) keeps it.
//! - **Save date**: the seconds at the start of the file name base. Every writer (our
//!   deliveries, APPEND and COPY/MOVE, Dovecot, lmtp-deliver) names a file when it saves it
//!   into *this* mailbox (`filename::generate` at that moment), and nothing renames the base
//!   later: unlike the file's ctime it survives flag renames, and unlike the mtime (the
//!   INTERNALDATE) it is not the client's APPEND date.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use crate::error::{IoContext, MaildirError, Result};
use crate::filename;
use crate::fsutil::is_not_found;
use crate::uidlist::{self, UIDLIST_FILE, Uidlist};

use super::Mailbox;
use super::messages::lf_to_crlf;

/// Per process and uidlist: the `G` fields of its records (uid → GUID) as of the bytes read,
/// so a COPY or FETCH EMAILID reads only what was appended since. Only records that have a
/// `G` field are kept.
struct GuidMap {
    dev: u64,
    ino: u64,
    /// Bytes parsed (up to the last complete line).
    len: u64,
    map: Arc<HashMap<u32, String>>,
}

static GUIDS: LazyLock<Mutex<HashMap<PathBuf, GuidMap>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Uidlists remembered at most (all forgotten when full).
const GUIDS_MAX: usize = 256;

impl Mailbox {
    /// The mailbox GUID from the `dovecot-uidlist` header (32 lowercase hex digits). A
    /// uidlist without one (or none at all) is rewritten with a new random GUID, under the
    /// lock, first.
    pub fn mailbox_guid(&mut self) -> Result<String> {
        if let Some(g) = read_header_guid(&self.dir)? {
            return Ok(g);
        }
        let _lock = self.lock()?;
        self.read_index(true)?;
        self.refresh_uidlist()?;
        if let Some(g) = read_header_guid(&self.dir)? {
            return Ok(g);
        }
        let next = self.st.uid_next.max(self.uidlist.next_uid);
        // `can_append` is false without a GUID, so this is a full rewrite that adds one.
        self.uidlist.has_guid = false;
        self.write_uidlist(&[], next, &std::collections::HashSet::new(), None)?;
        read_header_guid(&self.dir)?.ok_or_else(|| {
            MaildirError::io(
                "read",
                self.dir.join(UIDLIST_FILE),
                io::Error::other("no mailbox GUID after rewrite"),
            )
        })
    }

    /// Dovecot's message GUIDs of these UIDs: the uidlist record's `G` field, else the file
    /// name base. UIDs not in this view are left out.
    pub fn mail_guids(&self, uids: &[u32]) -> Result<HashMap<u32, String>> {
        let mut out = HashMap::with_capacity(uids.len());
        if uids.is_empty() {
            return Ok(out);
        }
        let g = self.uidlist_guids()?;
        for &u in uids {
            let Some(i) = self.find(u) else { continue };
            let guid = g
                .as_ref()
                .and_then(|m| m.get(&u).cloned())
                .unwrap_or_else(|| self.files[i].base.to_string());
            out.insert(u, guid);
        }
        Ok(out)
    }

    /// The `G` fields of the uidlist's records (uid → GUID), read incrementally: only what
    /// was appended since this process last looked (all of it after a rewrite). The file is
    /// read without the process-wide map's lock held; the map is shared, not copied.
    fn uidlist_guids(&self) -> Result<Option<Arc<HashMap<u32, String>>>> {
        let path = self.dir.join(UIDLIST_FILE);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(MaildirError::io("open", &path, e)),
        };
        let md = f.metadata().ctx("stat", &path)?;
        let known = GUIDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.dir)
            .filter(|e| e.dev == md.dev() && e.ino == md.ino() && e.len <= md.len())
            .map(|e| (e.len, e.map.clone()));
        let (mut len, mut map) = known.unwrap_or_default();
        if len == md.len() {
            return Ok(Some(map));
        }
        let mut data = Vec::new();
        if len > 0 {
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(len)).ctx("seek", &path)?;
        }
        f.read_to_end(&mut data).ctx("read", &path)?;
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let text = String::from_utf8_lossy(&data[..complete]);
        let mut lines = text.split_terminator('\n');
        if len == 0 {
            lines.next(); // the header
        }
        for line in lines {
            if let Some(r) = uidlist::parse_record(line, 3)
                && let Some(g) = r.ext_value(b'G')
                && !g.is_empty()
            {
                Arc::make_mut(&mut map).insert(r.uid, g.to_owned());
            }
        }
        len += complete as u64;
        let mut cache = GUIDS.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= GUIDS_MAX {
            cache.clear();
        }
        cache.insert(
            self.dir.clone(),
            GuidMap {
                dev: md.dev(),
                ino: md.ino(),
                len,
                map: map.clone(),
            },
        );
        Ok(Some(map))
    }

    /// When the message was saved into this mailbox (unix seconds): the time at the start of
    /// its file name base (see the [module documentation](self)). `None` for a file named
    /// otherwise, or a UID not in this view.
    pub fn save_date(&self, uid: u32) -> Option<i64> {
        let i = self.find(uid)?;
        let p = filename::parse(&self.files[i].base)?;
        i64::try_from(p.secs).ok().filter(|&s| s > 0)
    }

    /// At most `max` bytes of the start of a message, with CRLF line endings (what
    /// [`Mailbox::read`] gives, cut). Never reads more than `max` bytes of the file.
    pub fn read_prefix(&self, uid: u32, max: usize) -> Result<Vec<u8>> {
        let (file, path) = self.open_message(uid)?;
        let mut data = Vec::with_capacity(max.min(1 << 16));
        file.take(max as u64)
            .read_to_end(&mut data)
            .ctx("read", &path)?;
        let mut out = lf_to_crlf(&data, data.len() as u64);
        out.truncate(max);
        Ok(out)
    }

    /// The header of a message (up to and including the blank line that ends it), at most
    /// `max` bytes, with CRLF line endings. Reads the file in 8 KiB steps and stops at the
    /// end of the header, so a large body is never read.
    pub fn read_header(&self, uid: u32, max: usize) -> Result<Vec<u8>> {
        let (mut file, path) = self.open_message(uid)?;
        let mut data: Vec<u8> = Vec::with_capacity(8192.min(max));
        let mut buf = [0u8; 8192];
        loop {
            let want = buf.len().min(max - data.len());
            if want == 0 {
                break;
            }
            let n = file.read(&mut buf[..want]).ctx("read", &path)?;
            if n == 0 {
                break;
            }
            let from = data.len().saturating_sub(2);
            data.extend_from_slice(&buf[..n]);
            let tail = &data[from..];
            let end = tail
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| from + p + 2)
                .or_else(|| {
                    data[from.saturating_sub(1)..]
                        .windows(3)
                        .position(|w| w == b"\n\r\n")
                        .map(|p| from.saturating_sub(1) + p + 3)
                });
            if let Some(end) = end {
                data.truncate(end);
                break;
            }
        }
        Ok(lf_to_crlf(&data, data.len() as u64))
    }

    /// The open file of a message, found again when someone renamed it.
    fn open_message(&self, uid: u32) -> Result<(File, PathBuf)> {
        let i = self.find(uid).ok_or(MaildirError::Expunged(uid))?;
        let f = &self.files[i];
        let cur = self.dir.join("cur");
        let path = cur.join(format!("{}{}", f.base, f.suffix));
        match File::open(&path) {
            Ok(file) => Ok((file, path)),
            Err(e) if is_not_found(&e) => match self.locate(&f.base)? {
                Some(name) => {
                    let path = cur.join(&name);
                    match File::open(&path) {
                        Ok(file) => Ok((file, path)),
                        Err(e) if is_not_found(&e) => Err(MaildirError::Expunged(uid)),
                        Err(e) => Err(MaildirError::io("open", path, e)),
                    }
                }
                None => Err(MaildirError::Expunged(uid)),
            },
            Err(e) => Err(MaildirError::io("open", &path, e)),
        }
    }
}

/// A message GUID that can be written as a uidlist record's `G` field: non-empty, at most
/// 255 bytes, printable ASCII without space or `:` (so the record line parses back).
pub(super) fn valid_guid_field(g: &str) -> bool {
    !g.is_empty() && g.len() <= 255 && g.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// The `G` field of a mailbox directory's uidlist header, if the file has a valid one.
fn read_header_guid(dir: &std::path::Path) -> Result<Option<String>> {
    let path = dir.join(UIDLIST_FILE);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(MaildirError::io("open", &path, e)),
    };
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..]).ctx("read", &path)?;
        if r == 0 {
            break;
        }
        n += r;
        if buf[..n].contains(&b'\n') {
            break;
        }
    }
    let Some(end) = buf[..n].iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let mut line = buf[..end].to_vec();
    line.push(b'\n');
    Ok(Uidlist::parse(&line).ok().and_then(|l| l.guid))
}

#[cfg(test)]
mod tests {
    use crate::flags::Flags;
    use crate::store::Maildir;

    fn md() -> (tempfile::TempDir, Maildir) {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
        (dir, md)
    }

    /// RFC 8474 §4.1: "The server MUST NOT change the MAILBOXID of a mailbox when it is
    /// renamed"; a mailbox deleted and created again under the same name is a new mailbox.
    #[test]
    fn mailbox_guid_follows_rename_and_is_new_after_delete() {
        let (_d, md) = md();
        md.create_folder("A").unwrap();
        let mut a = md.open_mailbox("A").unwrap();
        let g1 = a.mailbox_guid().unwrap();
        assert_eq!(g1.len(), 32);
        // The uidlist written for it has the mailbox's UIDVALIDITY.
        let dir = md.mailbox_dir(Some("A")).unwrap();
        let list = crate::uidlist::Uidlist::load(&dir)
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(list.uid_validity != 0 && list.uid_validity == a.uid_validity());
        assert_eq!(list.guid.as_deref(), Some(g1.as_str()));
        drop(a);
        let mut a = md.open_mailbox("A").unwrap();
        let uid = a
            .append(b"S: 1\r\n\r\nx\r\n", &Flags::default(), None)
            .unwrap();
        a.sync().unwrap();
        assert_eq!(uid, 1);
        assert_eq!(a.mailbox_guid().unwrap(), g1);
        assert_eq!(md.open_mailbox("A").unwrap().mailbox_guid().unwrap(), g1);
        md.rename_folder("A", "B").unwrap();
        assert_eq!(md.open_mailbox("B").unwrap().mailbox_guid().unwrap(), g1);
        md.delete_folder("B").unwrap();
        md.create_folder("B").unwrap();
        let g2 = md.open_mailbox("B").unwrap().mailbox_guid().unwrap();
        assert_ne!(g1, g2);
    }

    /// A uidlist without a GUID (an old Dovecot or a hand-made one) gets one, kept after.
    #[test]
    fn a_uidlist_without_guid_gets_one() {
        let (_d, md) = md();
        let mut mb = md.open_mailbox("INBOX").unwrap();
        mb.append(b"Subject: x\r\n\r\nhi\r\n", &Flags::default(), None)
            .unwrap();
        mb.sync().unwrap();
        let path = md.root().join("dovecot-uidlist");
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        let head: Vec<&str> = head.split(' ').filter(|f| !f.starts_with('G')).collect();
        std::fs::write(&path, format!("{}\n{rest}", head.join(" "))).unwrap();
        let mut mb = md.open_mailbox("INBOX").unwrap();
        let g = mb.mailbox_guid().unwrap();
        assert_eq!(g.len(), 32);
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.lines().next().unwrap().contains(&format!("G{g}")));
        assert_eq!(after.lines().count(), 2, "{after}");
        assert_eq!(md.open_mailbox("INBOX").unwrap().mailbox_guid().unwrap(), g);
    }

    /// The message GUID is the base, and a copy carries it as its uidlist record's `G`
    /// field (Dovecot's per-record GUID), so copies and moves keep it; the save date is the
    /// copy's own.
    #[test]
    fn copies_keep_the_message_guid() {
        let (_d, md) = md();
        md.create_folder("A").unwrap();
        md.create_folder("B").unwrap();
        let mut a = md.open_mailbox("A").unwrap();
        let uid = a
            .append(b"Subject: x\r\n\r\nhi\r\n", &Flags::default(), Some(1000))
            .unwrap();
        a.sync().unwrap();
        let ga = a.mail_guids(&[uid]).unwrap()[&uid].clone();
        assert!(ga.contains('.'), "the base: {ga}");
        assert!(a.save_date(uid).unwrap() > 1_700_000_000);
        let mut b = md.open_mailbox("B").unwrap();
        let pairs = a.copy_to(&[uid], &mut b).unwrap();
        b.sync().unwrap();
        let ub = pairs[0].1;
        assert_eq!(b.mail_guids(&[ub]).unwrap()[&ub], ga);
        let mut c = md.open_mailbox("A").unwrap();
        let back = b.copy_to(&[ub], &mut c).unwrap();
        c.sync().unwrap();
        assert_eq!(c.mail_guids(&[back[0].1]).unwrap()[&back[0].1], ga);
        let text =
            std::fs::read_to_string(md.mailbox_dir(Some("B")).unwrap().join("dovecot-uidlist"))
                .unwrap();
        assert!(text.contains(&format!(" G{ga} ")), "{text}");
        // Read by a fresh process view too (the per-process map rebuilt from the file).
        super::GUIDS.lock().unwrap().clear();
        let b2 = md.open_mailbox("B").unwrap();
        assert_eq!(b2.mail_guids(&[ub]).unwrap()[&ub], ga);
    }

    /// The header alone: the body is not read, a header without end is cut at `max`.
    #[test]
    fn read_header_stops_at_the_blank_line() {
        let (_d, md) = md();
        let mut mb = md.open_mailbox("INBOX").unwrap();
        let mut long = b"Subject: x\n".to_vec();
        for i in 0..2000 {
            long.extend_from_slice(format!("X-Pad-{i}: {}\n", "p".repeat(20)).as_bytes());
        }
        long.extend_from_slice(b"\nbody\n\nmore\n");
        let uid = mb.append(&long, &Flags::default(), None).unwrap();
        let short = mb
            .append(b"A: 1\r\nB: 2\r\n\r\nbody", &Flags::default(), None)
            .unwrap();
        let nohead = mb
            .append(b"no header end", &Flags::default(), None)
            .unwrap();
        mb.sync().unwrap();
        let h = mb.read_header(uid, 1 << 20).unwrap();
        assert!(
            h.len() > 8192 * 4 && h.ends_with(b"pppp\r\n\r\n"),
            "{}",
            h.len()
        );
        assert_eq!(
            mb.read_header(short, 1 << 20).unwrap(),
            b"A: 1\r\nB: 2\r\n\r\n"
        );
        let lfs = long[..100].iter().filter(|&&b| b == b'\n').count();
        assert_eq!(mb.read_header(uid, 100).unwrap().len(), 100 + lfs);
        assert_eq!(mb.read_header(nohead, 1 << 20).unwrap(), b"no header end");
    }

    #[test]
    fn read_prefix_is_bounded_and_crlf() {
        let (_d, md) = md();
        let mut mb = md.open_mailbox("INBOX").unwrap();
        let mut body = b"Subject: x\n\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', 100_000));
        let uid = mb.append(&body, &Flags::default(), None).unwrap();
        mb.sync().unwrap();
        let p = mb.read_prefix(uid, 20).unwrap();
        assert_eq!(p, b"Subject: x\r\n\r\naaaaaa");
        assert_eq!(p.len(), 20);
    }
}
