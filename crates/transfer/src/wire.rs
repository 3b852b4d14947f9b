//! Lines, hex and the handshake's MACs, shared by client and server.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::path::{check_link_target, check_path};
use crate::{Entry, Kind, MAX_ENTRIES, MAX_LINE, Manifest, TransferError};

/// The greeting's protocol name and version.
pub(crate) const GREETING: &str = "postern-move 1";
const CLIENT_LABEL: &[u8] = b"postern-move client";
const SERVER_LABEL: &[u8] = b"postern-move server";
pub(crate) const NONCE_LEN: usize = 32;

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

/// A fresh random nonce.
pub(crate) fn nonce() -> Result<[u8; NONCE_LEN], TransferError> {
    use ring::rand::SecureRandom;
    let mut n = [0u8; NONCE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| TransferError::Io(io::Error::other("no random numbers")))?;
    Ok(n)
}

fn mac_input(label: &[u8], first: &[u8], second: &[u8]) -> Vec<u8> {
    [label, first, second].concat()
}

/// The client's proof: HMAC-SHA256(secret, "postern-move client" || server_nonce || client_nonce).
pub(crate) fn client_mac(secret: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, &mac_input(CLIENT_LABEL, server_nonce, client_nonce))
        .as_ref()
        .to_vec()
}

/// The server's proof: HMAC-SHA256(secret, "postern-move server" || client_nonce || server_nonce).
pub(crate) fn server_mac(secret: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, &mac_input(SERVER_LABEL, client_nonce, server_nonce))
        .as_ref()
        .to_vec()
}

/// Constant-time check of a client proof.
pub(crate) fn verify_client_mac(
    secret: &[u8],
    server_nonce: &[u8],
    client_nonce: &[u8],
    mac: &[u8],
) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(
        &key,
        &mac_input(CLIENT_LABEL, server_nonce, client_nonce),
        mac,
    )
    .is_ok()
}

/// Constant-time check of a server proof.
pub(crate) fn verify_server_mac(
    secret: &[u8],
    client_nonce: &[u8],
    server_nonce: &[u8],
    mac: &[u8],
) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(
        &key,
        &mac_input(SERVER_LABEL, client_nonce, server_nonce),
        mac,
    )
    .is_ok()
}

/// Reads one line of at most [`MAX_LINE`] bytes (without its `\n`); `None` at a clean end
/// of stream.
pub(crate) fn read_line<R: BufRead>(r: &mut R) -> Result<Option<Vec<u8>>, TransferError> {
    let mut line = Vec::new();
    let n = r.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if line.len() > MAX_LINE {
            return Err(TransferError::Protocol(format!(
                "a line longer than {MAX_LINE} bytes"
            )));
        }
        return Err(TransferError::Protocol(
            "the connection ended inside a line".into(),
        ));
    }
    line.pop();
    Ok(Some(line))
}

/// Reads and parses one JSON line; the end of the stream is an error here.
pub(crate) fn read_json<R: BufRead, T: DeserializeOwned>(r: &mut R) -> Result<T, TransferError> {
    let line = read_line(r)?.ok_or_else(|| {
        TransferError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection",
        ))
    })?;
    serde_json::from_slice(&line)
        .map_err(|e| TransferError::Protocol(format!("bad line from the peer: {e}")))
}

/// Writes one JSON line (not flushed).
pub(crate) fn write_json<W: Write, T: Serialize>(w: &mut W, value: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)
}

/// Writes a header line, then every entry of `manifest` on a line of its own, and flushes.
pub(crate) fn write_manifest<S: Read + Write, T: Serialize>(
    r: &mut BufReader<S>,
    header: &T,
    manifest: &Manifest,
) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(64 * 1024, r.get_mut());
    write_json(&mut w, header)?;
    for e in &manifest.entries {
        write_json(&mut w, e)?;
    }
    w.flush()?;
    drop(w);
    r.get_mut().flush()
}

/// Most bytes of entry lines in one manifest read from the peer: about 2.5 times what
/// [`MAX_ENTRIES`] entries of a real home take (~200 MiB). Without it, a broken or hostile
/// peer could make the reader hold [`MAX_ENTRIES`] lines of up to [`MAX_LINE`] bytes each.
pub(crate) const MAX_MANIFEST_BYTES: usize = 512 << 20;

/// Reads one entry line and checks it: its path, and a hash that is 64 lowercase hex
/// digits when there is one.
pub(crate) fn read_entry<R: BufRead>(r: &mut R) -> Result<Entry, TransferError> {
    let mut unbounded = usize::MAX;
    read_entry_within(r, &mut unbounded)
}

/// [`read_entry`], taking the line's bytes from `budget` (an error when it runs out).
fn read_entry_within<R: BufRead>(r: &mut R, budget: &mut usize) -> Result<Entry, TransferError> {
    let line = read_line(r)?.ok_or_else(|| {
        TransferError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection",
        ))
    })?;
    *budget = budget.checked_sub(line.len() + 1).ok_or_else(|| {
        TransferError::Protocol(format!(
            "a manifest of more than {MAX_MANIFEST_BYTES} bytes"
        ))
    })?;
    let e: Entry = serde_json::from_slice(&line)
        .map_err(|e| TransferError::Protocol(format!("bad line from the peer: {e}")))?;
    check_path(&e.path)?;
    if let Some(h) = &e.sha256
        && !(h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    {
        return Err(TransferError::Protocol(format!(
            "{}: not a SHA-256 in lowercase hex",
            e.path
        )));
    }
    match (&e.kind, &e.target) {
        (Kind::Symlink, Some(t)) => check_link_target(&e.path, t)?,
        (Kind::Symlink, None) => {
            return Err(TransferError::Protocol(format!(
                "{}: a symbolic link without a target",
                e.path
            )));
        }
        (_, Some(_)) => {
            return Err(TransferError::Protocol(format!(
                "{}: a target on something that is not a link",
                e.path
            )));
        }
        (_, None) => {}
    }
    Ok(e)
}

/// Reads `count` entry lines into a manifest (bounded by [`MAX_ENTRIES`] and
/// [`MAX_MANIFEST_BYTES`]), sorted by path.
pub(crate) fn read_manifest<R: BufRead>(
    r: &mut R,
    count: usize,
) -> Result<Manifest, TransferError> {
    read_manifest_within(r, count, MAX_MANIFEST_BYTES)
}

fn read_manifest_within<R: BufRead>(
    r: &mut R,
    count: usize,
    mut budget: usize,
) -> Result<Manifest, TransferError> {
    if count > MAX_ENTRIES {
        return Err(TransferError::Protocol(format!(
            "a manifest of {count} entries (at most {MAX_ENTRIES})"
        )));
    }
    let mut entries = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        entries.push(read_entry_within(r, &mut budget)?);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Manifest { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)).unwrap(), bytes);
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
        assert!(unhex("+1").is_none());
    }

    #[test]
    fn lines_are_bounded() {
        let ok = format!("{}\n", "a".repeat(MAX_LINE));
        let mut r = io::Cursor::new(ok.into_bytes());
        assert_eq!(read_line(&mut r).unwrap().unwrap().len(), MAX_LINE);
        assert!(read_line(&mut r).unwrap().is_none());
        // One byte more is refused, and never more than the limit (+1) is buffered.
        let long = format!("{}\n", "a".repeat(MAX_LINE + 1));
        let mut r = io::Cursor::new(long.into_bytes());
        assert!(matches!(read_line(&mut r), Err(TransferError::Protocol(_))));
        assert!(r.position() <= MAX_LINE as u64 + 1);
        // A line cut by the end of the stream is an error, not a request.
        let mut r = io::Cursor::new(b"{\"op\":\"commit\"}".to_vec());
        assert!(read_line(&mut r).is_err());
    }

    #[test]
    fn manifests_read_from_the_peer_are_bounded_in_bytes_and_hashes_are_hex() {
        let line = |path: &str, sha: &str| {
            format!(
                "{{\"path\":\"{path}\",\"kind\":\"File\",\"size\":1,\"mtime\":1,\"mode\":384,\"sha256\":\"{sha}\"}}\n"
            )
        };
        let good = "ab".repeat(32);
        let two = format!("{}{}", line("a", &good), line("b", &good));
        let m = read_manifest(&mut io::Cursor::new(two.clone().into_bytes()), 2).unwrap();
        assert_eq!(m.entries.len(), 2);
        // The whole manifest counts: a budget one byte short of both lines is refused.
        let err = read_manifest_within(
            &mut io::Cursor::new(two.clone().into_bytes()),
            2,
            two.len() - 1,
        )
        .unwrap_err();
        assert!(
            matches!(&err, TransferError::Protocol(m) if m.contains("bytes")),
            "{err:?}"
        );
        read_manifest_within(&mut io::Cursor::new(two.clone().into_bytes()), 2, two.len()).unwrap();
        // A "hash" as long as a line may be (64 KiB per entry, a million entries) is refused.
        for bad in [
            "ab".repeat(30_000),
            "AB".repeat(32),
            "zz".repeat(32),
            String::new(),
        ] {
            let one = line("a", &bad);
            assert!(
                read_manifest(&mut io::Cursor::new(one.into_bytes()), 1).is_err(),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn macs_are_direction_bound() {
        let s = b"0123456789abcdef0123456789abcdef";
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let c = client_mac(s, &a, &b);
        assert!(verify_client_mac(s, &a, &b, &c));
        assert!(!verify_client_mac(s, &b, &a, &c));
        assert!(
            !verify_server_mac(s, &b, &a, &c),
            "a client proof is no server proof"
        );
        assert!(verify_server_mac(s, &b, &a, &server_mac(s, &b, &a)));
    }
}
