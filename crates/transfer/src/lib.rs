//! The move protocol: how `mailctl user move` copies a user's home from the source node to
//! the destination node's imapd. Synchronous (`std::io::Read + Write`), no tokio: mailctl
//! runs the [`Client`] in its own thread, imapd runs [`serve`] in a blocking task over its
//! (TLS) stream.
//!
//! # Why a file-level copy
//!
//! The copy is a file-level, rsync-like transfer of the user's whole home directory (the
//! Maildir tree, `dovecot-uidlist`, `dovecot-keywords`, `subscriptions`, imapd's
//! `postern-index` files — they hold MODSEQs — Sieve scripts, METADATA files): the same
//! files the delivery agent and imapd read, so UIDVALIDITY, UIDs, flags, keywords and
//! MODSEQs survive byte for byte. An IMAP-level copy could not keep UIDs/MODSEQs and would
//! re-parse every message. The receiver lives in the destination's imapd, which already owns
//! the mail as `vmail`, has TLS and knows the home layout.
//!
//! Consistency needs no distributed lock: while the account is marked "moving" in the shared
//! database nothing writes to the home (deliveries and logins fail temporarily, the source
//! imapd's sessions are kicked); the sender repeats [`scan`] → [`Manifest::diff`] → `put`
//! passes until one finds nothing changed, compares hashed manifests ([`Client::verify`],
//! [`Manifest::same_content`]) and then [`Client::commit`] renames the staging directory to
//! the home atomically.
//!
//! # Wire format
//!
//! One JSON object per `\n`-terminated line, at most [`MAX_LINE`] bytes. The server speaks
//! first:
//!
//! ```text
//! S: {"greeting":"postern-move 1","nonce":"<64 hex>"}
//! C: {"op":"auth","nonce":"<64 hex>","mac":"<hex HMAC-SHA256(secret, "postern-move client" || server_nonce || client_nonce)>"}
//! S: {"ok":true,"mac":"<hex HMAC-SHA256(secret, "postern-move server" || client_nonce || server_nonce)>"}
//!    (or {"ok":false,"error":"…"} and the connection is closed: one attempt per connection)
//! C: {"op":"begin","address":"a@b"}
//! S: {"ok":true,"status":"fresh"}  |  {"ok":true,"status":"staging","entries":N}  |
//!    {"ok":true,"status":"home_exists","entries":N}   then N lines, one Entry each
//! C: {"op":"mkdir","entry":Entry}                        S: {"ok":true}
//! C: {"op":"put","entry":Entry}, exactly entry.size raw bytes, then {"done":true}
//!    ({"done":false,"error":"…"} when the sender's file changed: the server discards it)
//!                                                        S: {"ok":true}
//! C: {"op":"symlink","entry":Entry}                      S: {"ok":true}
//! C: {"op":"delete","path":"…"}                          S: {"ok":true}
//! C: {"op":"verify"}                                     S: {"ok":true,"entries":N} + N lines
//! C: {"op":"commit"}                                     S: {"ok":true}
//! C: {"op":"abort","entries":N|null} (+ N lines)         S: {"ok":true}
//! ```
//!
//! Any failure is `{"ok":false,"error":"text"}` and the connection stays usable (after a
//! `put` the body has been read and thrown away). Binary nonces and MACs are lowercase hex.
//!
//! # Limits
//!
//! Everything either side reads is bounded: lines [`MAX_LINE`], manifests [`MAX_ENTRIES`]
//! and 512 MiB of entry lines (hashes must be 64 lowercase hex digits),
//! paths ([`check_path`]: UTF-8, `/`-separated, no empty/`.`/`..` component, no NUL or `\`,
//! components ≤ 255 bytes, ≤ 4096 bytes, depth ≤ 64), files [`MAX_FILE_SIZE`]. The server
//! never follows a symlink: every existing path component in staging must be a real
//! directory, files are created with `O_NOFOLLOW | O_EXCL` and renamed into place.
//!
//! # Symbolic links
//!
//! ManageSieve (like Pigeonhole) makes the active script `~/.dovecot.sieve` a link to
//! `sieve/NAME.sieve`, so a home may hold links. [`scan`] carries a link as a
//! [`Kind::Symlink`] entry with its [`Entry::target`] when the target is relative and stays
//! inside the home ([`check_link_target`]: `..` only at its start, never above the home);
//! any other link is refused, naming it. On the wire:
//!
//! ```text
//! C: {"op":"symlink","entry":Entry}                      S: {"ok":true}
//! ```
//!
//! The server checks the path and target the same way, creates the link under a temporary
//! name next to it and renames it into place (replacing a file or link there, never a
//! directory). Since every later request refuses a path whose directory part passes
//! through anything but a real directory, no `put`, `mkdir`, `symlink` or `delete` ever
//! goes through a carried link; `delete` of a link removes the link. `verify` and
//! [`Manifest::same_content`] compare targets; [`Manifest::diff`] answers a changed or new
//! link with an [`Action::Put`] of its entry, which [`Client::put`] sends as `symlink`.
//!
//! # Destination layout
//!
//! The home is `home_of(address)` (imapd: the `[mailbox] home` template); staging is the
//! sibling `<home>.postern-move` on the same file system. A `put` writes
//! `<dir>/<name>.tmp-<n>` next to its target, sets mode and mtime and renames it into place
//! — without an fsync per file (20,000 small messages took several times longer with one):
//! `verify` first syncs the file system (`syncfs`), then hashes, so what it vouches for is
//! on disk; after a power cut a file whose data was lost keeps its size and mtime, its hash
//! differs at the next verify and the sender sends it again. `commit` syncs the file
//! system, fsyncs every directory in staging, removes an empty `<home>` left by someone
//! (refuses a non-empty one), renames staging to the home and fsyncs the parent.
//!
//! One connection at a time may work on a home (a second `begin` for it is refused while
//! the first connection lasts). A `put` that would leave less than 1 % of the file system
//! (at most 1 GiB) or of its inodes (at most 10,000) free is refused before its body is
//! read, and the connection ends: a move onto a full node fails at once instead of filling
//! the disk every other user's deliveries need. Moves are not checked against the
//! account's quota (the account already holds the mail; quota applies where mail is added).
//! The home's parent (the domain's directory) is created when missing; nothing else outside
//! `<home>.postern-move` and `<home>` is written. A staging directory left by an interrupted
//! move is reused by the next `begin` ([`Status::Staging`]); temporaries of a put cut short
//! show up in its manifest and are deleted by the next pass's diff.

#![forbid(unsafe_code)]

use std::io;

use serde::{Deserialize, Serialize};

mod client;
mod manifest;
mod path;
mod server;
mod wire;

pub use client::Client;
pub use manifest::scan;
pub use path::{check_link_target, check_path};
pub use server::{STAGING_SUFFIX, check_address, serve, serve_with};

/// `[proxy] move_port`'s default.
pub const DEFAULT_PORT: u16 = 24244;

/// Longest protocol line either side accepts.
pub const MAX_LINE: usize = 64 * 1024;

/// Most entries in a manifest (a scan, a staging directory, a manifest on the wire).
pub const MAX_ENTRIES: usize = 1_000_000;

/// Largest file `put` accepts.
pub const MAX_FILE_SIZE: u64 = 64 << 30;

/// Chunk size of file bodies on the wire and on disk.
pub const CHUNK: usize = 64 * 1024;

/// Longest path (bytes), path component (bytes) and deepest path (components).
pub const MAX_PATH: usize = 4096;
/// Longest path component in bytes.
pub const MAX_COMPONENT: usize = 255;
/// Deepest path in components.
pub const MAX_DEPTH: usize = 64;

/// Shortest shared secret in bytes (after a trailing newline is removed).
pub const MIN_SECRET: usize = 32;

/// What an entry of a home is: regular files, directories, and symbolic links whose target
/// stays inside the home (ManageSieve's `~/.dovecot.sieve` → `sieve/NAME.sieve`; see
/// [`check_link_target`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link; [`Entry::target`] holds its target. Carried as a link, never
    /// followed.
    Symlink,
}

/// One file or directory below a home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative, `/`-separated; `""` never appears (the root is implied).
    pub path: String,
    pub kind: Kind,
    /// Bytes; 0 for a directory.
    pub size: u64,
    /// Seconds since the epoch (Maildir and the uidlist need no finer).
    pub mtime: i64,
    /// Permission bits only (`0o777`).
    pub mode: u32,
    /// Lowercase hex SHA-256 of a file's content; `Some` only when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A symbolic link's target (`Some` exactly for [`Kind::Symlink`]): relative, staying
    /// inside the home ([`check_link_target`]). Absent on the wire otherwise, so peers
    /// without links read the same JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A home's entries, sorted by path; at most [`MAX_ENTRIES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// One step of [`Manifest::diff`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the directory (or fix its mode when it exists).
    Mkdir(Entry),
    /// Send the file (new, or its size, mtime or mode differ), or — for a
    /// [`Kind::Symlink`] entry — create the link (new, or its target differs).
    Put(Entry),
    /// Remove the file or (empty) directory at this path.
    Delete(String),
}

/// The state of the destination when a move begins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// No staging, no home: nothing copied yet.
    Fresh,
    /// A staging directory from an earlier attempt (its manifest, no hashes).
    Staging(Manifest),
    /// The home exists and is not empty (a committed move, or someone else's data): its
    /// manifest with hashes.
    HomeExists(Manifest),
}

/// Why a transfer step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Local I/O or the connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer broke the protocol (bad line, too long, unexpected answer).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The shared secrets differ (or the peer is not a Postern node).
    #[error("authentication failed: the nodes' move secrets differ")]
    Auth,
    /// The server refused the request; the connection is still usable.
    #[error("the destination refused: {0}")]
    Remote(String),
    /// A path breaks the rules, or a home holds something other than files, directories and
    /// links inside it.
    #[error("{0}")]
    Path(String),
    /// The shared secret file is unusable.
    #[error("move secret: {0}")]
    Secret(String),
    /// `put`'s body yielded fewer or more bytes than the entry's size (the source file
    /// changed while it was sent): nothing was stored and the connection is still usable.
    #[error("{0}")]
    Changed(String),
}

impl TransferError {
    /// Whether the connection can still be used after this error (the server refused one
    /// request, or a file changed while it was sent).
    pub fn connection_usable(&self) -> bool {
        matches!(self, Self::Remote(_) | Self::Changed(_))
    }
}

/// Reads the shared secret: the file must not be readable by group or others, and hold at
/// least [`MIN_SECRET`] bytes after one trailing newline (`\n` or `\r\n`) is removed.
pub fn read_secret(path: &std::path::Path) -> Result<Vec<u8>, TransferError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let file =
        std::fs::File::open(path).map_err(|e| TransferError::Secret(format!("{shown}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| TransferError::Secret(format!("{shown}: {e}")))?;
    if !meta.is_file() {
        return Err(TransferError::Secret(format!(
            "{shown}: not a regular file"
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(TransferError::Secret(format!(
            "{shown}: readable by group or others (mode {:o}); chmod 600 it",
            meta.mode() & 0o777
        )));
    }
    let mut secret = Vec::new();
    file.take(64 * 1024 + 1)
        .read_to_end(&mut secret)
        .map_err(|e| TransferError::Secret(format!("{shown}: {e}")))?;
    if secret.len() > 64 * 1024 {
        return Err(TransferError::Secret(format!(
            "{shown}: longer than 64 KiB"
        )));
    }
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    if secret.len() < MIN_SECRET {
        return Err(TransferError::Secret(format!(
            "{shown}: {} bytes, at least {MIN_SECRET} needed (e.g. `openssl rand -hex 32`)",
            secret.len()
        )));
    }
    Ok(secret)
}
