//! Helpers shared by the fuzz targets.

use std::path::PathBuf;

use postern_maildir::{Flags, Maildir};

/// A fresh temporary directory, in memory (`/dev/shm`) when there is one: the targets that
/// read files write the fuzzer's bytes there and fsync a lot.
pub fn tempdir() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("postern-fuzz-")
        .tempdir_in(&shm);
    builder.unwrap_or_else(|_| tempfile::tempdir().expect("a temporary directory"))
}

/// Sample messages: plain, multipart with an attachment and a reply in a thread.
pub const MESSAGES: [&[u8]; 3] = [
    b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: hello\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\nhello world\r\n",
    b"From: bob@example.test\r\nTo: Alice <alice@example.test>, carol@example.test\r\nSubject: =?UTF-8?Q?caf=C3=A9?= report\r\nDate: Tue, 3 Mar 2026 11:00:00 +0100\r\nMessage-ID: <2@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 report\r\n--b1\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--b1--\r\n",
    b"From: carol@example.test\r\nTo: bob@example.test\r\nSubject: Re: hello\r\nDate: Wed, 4 Mar 2026 12:00:00 -0500\r\nMessage-ID: <3@example.test>\r\nIn-Reply-To: <1@example.test>\r\nReferences: <1@example.test>\r\n\r\nreply\r\n",
];

/// A Maildir (in a fresh temporary directory) holding [`MESSAGES`].
pub fn maildir_with_messages() -> (tempfile::TempDir, Maildir) {
    let dir = tempdir();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).expect("a Maildir");
    for (i, m) in MESSAGES.iter().enumerate() {
        let flags = if i == 0 {
            Flags::default()
        } else {
            Flags {
                seen: true,
                ..Flags::default()
            }
        };
        md.deliver(None, m, &flags).expect("delivery");
    }
    (dir, md)
}
